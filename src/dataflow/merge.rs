//! Two inputs read at once: the gates of two exchanges polled in turn by one task, so two
//! streams that do not end can meet (a streaming union, a windowed join).
//!
//! ```text
//!   left  ══exchange══▶ gate 0 ─┐
//!                               ├─ poll each in turn: records (decoded) into the chain,
//!   right ══exchange══▶ gate 1 ─┘  watermarks into each gate's minimum; the chain's
//!                                  watermark is the smaller of the two gates' (a gate
//!                                  that ended counts as END); nothing available on
//!                                  either: flush when idle, listen on both, park
//! ```
//!
//! A union ([`super::Stream::union`]) reads its inputs one after the other, which a
//! batch job wants (no buffering of one side) and an unbounded left input never lets
//! end; [`super::Stream::merge`] reads both at once.

use std::time::{Duration, Instant};

use weir_netstack::constants::GATE_PARK_TIMEOUT_DEFAULT;
use weir_netstack::input::current_thread_waker;
use weir_netstack::{ChannelIndex, DataType, GatePoll, InputGate, NetworkBuffer, RecordReader};

use super::barrier::Barrier;
use super::event_time::{GateWatermark, Watermark};
use super::operators::decode;
use super::{Data, Driver, Push, TaskContext};
use crate::error::Result;

/// One of the two inputs: its gate, a record reader per channel, its event time.
struct Input {
    gate: InputGate,
    readers: Vec<RecordReader>,
    watermark: Option<GateWatermark>,
    /// The gate's watermark so far (END once the gate ended).
    level: Watermark,
    ended: bool,
    /// The last barrier the gate aligned.
    barrier: Option<Barrier>,
}

impl Input {
    fn new(gate: InputGate) -> Input {
        let readers = (0..gate.channel_count())
            .map(|i| RecordReader::new(ChannelIndex(u32::try_from(i).expect("few channels"))))
            .collect();
        Input {
            gate,
            readers,
            watermark: None,
            level: Watermark {
                time: i64::MIN,
                emitted_us: 0,
                idle_ms: 0,
            },
            ended: false,
            barrier: None,
        }
    }

    /// Polls the gate once: whether it gave something. Records go to `down`; a watermark
    /// that advances the gate's minimum raises `level`.
    fn poll<T: Data>(&mut self, down: &mut dyn Push<T>) -> Result<bool> {
        match self.gate.poll_next()? {
            GatePoll::Buffer(channel, buffer) => {
                self.take(channel, buffer, down)?;
                Ok(true)
            }
            GatePoll::Pending => Ok(false),
            GatePoll::EndOfPartitions => {
                self.ended = true;
                self.level.time = Watermark::END;
                Ok(true)
            }
        }
    }

    fn take<T: Data>(
        &mut self,
        channel: ChannelIndex,
        buffer: NetworkBuffer,
        down: &mut dyn Push<T>,
    ) -> Result<()> {
        let reader = &mut self.readers[channel.as_usize()];
        match buffer.data_type() {
            DataType::Data => {
                reader.push(buffer);
                while let Some(record) = reader.next_record()? {
                    if let Some(watermark) = &mut self.watermark {
                        watermark.touch(channel);
                    }
                    down.push(decode(record)?)?;
                }
            }
            DataType::EndOfPartition => reader.finish()?,
            DataType::Barrier => self.barrier = Some(Barrier::decode(buffer.as_bytes())?),
            _ => {
                let channels = self.gate.channel_count();
                let advanced =
                    GateWatermark::on_event(&mut self.watermark, channels, channel, &buffer)?;
                self.raise(advanced);
            }
        }
        Ok(())
    }

    /// The clock moved: idle channels may let the gate's watermark advance.
    fn tick(&mut self) {
        let advanced = self.watermark.as_mut().and_then(GateWatermark::tick);
        self.raise(advanced);
    }

    fn raise(&mut self, advanced: Option<Watermark>) {
        if let Some(advanced) = advanced.filter(|w| w.time > self.level.time) {
            self.level = advanced;
        }
    }
}

/// Passes on each barrier id that both inputs (those not ended) have aligned, after
/// `forwarded`: the last it passes. Both gates align their own channels. Without
/// checkpoints neither waits for the other: an input whose barrier came first goes on
/// being read (no input can then stall the other); with checkpoints it waits (see
/// `MergeIn::run`).
fn pass_barriers<T: Data>(
    ctx: &TaskContext,
    inputs: &[Input; 2],
    forwarded: u64,
    down: &mut dyn Push<T>,
) -> Result<u64> {
    let live: Vec<&Input> = inputs.iter().filter(|input| !input.ended).collect();
    let Some(ready) = live
        .iter()
        .map(|input| input.barrier.map_or(0, |b| b.id))
        .min()
    else {
        return Ok(forwarded);
    };
    let latest = live
        .iter()
        .filter_map(|input| input.barrier)
        .max_by_key(|b| b.id);
    if let Some(latest) = latest {
        for id in forwarded + 1..=ready {
            let barrier = Barrier { id, ..latest };
            ctx.barrier_aligned(&barrier, Duration::ZERO);
            down.barrier(barrier)?;
            ctx.barrier_passed(&barrier)?;
        }
    }
    Ok(forwarded.max(ready))
}

/// The start of a stage that reads two exchanges at once into one chain.
pub(crate) struct MergeIn<T> {
    gates: Option<[InputGate; 2]>,
    down: Box<dyn Push<T>>,
}

impl<T> MergeIn<T> {
    pub(crate) fn new(gates: [InputGate; 2], down: Box<dyn Push<T>>) -> MergeIn<T> {
        MergeIn {
            gates: Some(gates),
            down,
        }
    }
}

impl<T: Data> Driver for MergeIn<T> {
    fn run(&mut self, ctx: &mut TaskContext) -> Result<()> {
        let [left, right] = self.gates.take().expect("the gates are read once");
        let mut inputs = [Input::new(left), Input::new(right)];
        let down = &mut *self.down;
        let waker = current_thread_waker();
        let (mut listening, mut emitted, mut forwarded) = (false, i64::MIN, 0);
        loop {
            let mut progressed = false;
            // With checkpoints, an input whose barrier came first waits for the other's
            // (aligned: nothing after a barrier is read before the snapshot).
            let blocking = ctx.checkpointing();
            let live = |input: &&mut Input| {
                let waiting = blocking && input.barrier.map_or(0, |b| b.id) > forwarded;
                !input.ended && !waiting
            };
            for input in inputs.iter_mut().filter(live) {
                progressed |= input.poll(down)?;
            }
            if inputs.iter().all(|input| input.ended) {
                break;
            }
            if !progressed {
                for input in &mut inputs {
                    input.tick();
                }
            }
            // An input whose every live channel is idle does not hold the other back.
            let idle = |input: &Input| {
                !input.ended
                    && input
                        .watermark
                        .as_ref()
                        .is_some_and(GateWatermark::all_idle)
            };
            let level = match (idle(&inputs[0]), idle(&inputs[1])) {
                (false, true) => inputs[0].level,
                (true, false) => inputs[1].level,
                _ if inputs[0].level.time <= inputs[1].level.time => inputs[0].level,
                _ => inputs[1].level,
            };
            if level.time > emitted {
                emitted = level.time;
                down.watermark(level)?;
            }
            forwarded = pass_barriers(ctx, &inputs, forwarded, down)?;
            if progressed {
                listening = false;
            } else if !listening {
                // Register, then poll once more: data may have arrived in between.
                ctx.input_idle();
                for input in &inputs {
                    input.gate.register_listener(&waker);
                }
                listening = true;
            } else {
                ctx.check_cancelled()?;
                let parked = Instant::now();
                std::thread::park_timeout(GATE_PARK_TIMEOUT_DEFAULT);
                ctx.add_idle(parked.elapsed());
                listening = false;
            }
        }
        for input in &inputs {
            ctx.record_gate(&input.gate);
        }
        down.finish()
    }
}
