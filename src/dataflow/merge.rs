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
//!
//! Barriers, with checkpoints: an input whose barrier came first is not read until the
//! other's comes (aligned), or, with an alignment timeout, until the timeout passed since
//! it came: then the barrier goes down the chain unaligned, and the records of the input
//! still behind (and of any gate's late channels) until their barrier are the checkpoint's
//! channel state, as for a single gate (see [`super::operators::ExchangeIn`]).

use std::time::{Duration, Instant};

use crate::checkpoint::SnapshotSlot;

use weir_netstack::constants::GATE_PARK_TIMEOUT_DEFAULT;
use weir_netstack::input::current_thread_waker;
use weir_netstack::{ChannelIndex, DataType, GatePoll, InputGate, NetworkBuffer, RecordReader};

use super::barrier::Barrier;
use super::event_time::{GateWatermark, Watermark};
use super::operators::{append_channel_state, decode, replay_channel_state};
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

    /// The id of the last barrier the gate handed out (0: none yet).
    fn barrier_id(&self) -> u64 {
        self.barrier.map_or(0, |b| b.id)
    }

    /// Whether the input owes `state`'s barrier: its records go into the channel state
    /// (all of them while its gate has not handed the barrier out, a late channel's after).
    fn owes(&self, state: &ChannelState<'_>, channel: ChannelIndex) -> bool {
        state.recording.as_ref().is_some_and(|recording| {
            self.barrier_id() < recording.barrier.id || self.gate.is_late(channel)
        })
    }

    /// Polls the gate once: whether it gave something. Records go to `down` (and those
    /// it owes the channel state to `state`, its channels numbered from `first`); a
    /// watermark that advances the gate's minimum raises `level`.
    fn poll<T: Data>(
        &mut self,
        down: &mut dyn Push<T>,
        state: &mut ChannelState<'_>,
        first: usize,
    ) -> Result<bool> {
        match self.gate.poll_next()? {
            GatePoll::Buffer(channel, buffer) => {
                self.take(channel, buffer, down, (state, first))?;
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
        (state, first): (&mut ChannelState<'_>, usize),
    ) -> Result<()> {
        let owes = self.owes(state, channel);
        let reader = &mut self.readers[channel.as_usize()];
        match buffer.data_type() {
            DataType::Data => {
                reader.push(buffer);
                while let Some(record) = reader.next_record()? {
                    if let Some(watermark) = &mut self.watermark {
                        watermark.touch(channel);
                    }
                    if owes {
                        state.append(first + channel.as_usize(), record)?;
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

/// The channel state of a barrier passed while an input or a gate's channel still owed
/// it: written into the task's piece of its checkpoint as it comes.
struct ChannelState<'a> {
    slot: Option<&'a SnapshotSlot>,
    recording: Option<Recording>,
    frame: Vec<u8>,
}

/// One checkpoint's channel state being recorded.
struct Recording {
    barrier: Barrier,
    bytes: u64,
}

impl ChannelState<'_> {
    fn append(&mut self, channel: usize, record: &[u8]) -> Result<()> {
        let (Some(recording), Some(slot)) = (&mut self.recording, self.slot) else {
            return Ok(());
        };
        let id = recording.barrier.id;
        recording.bytes += append_channel_state(slot, id, &mut self.frame, (channel, record))?;
        Ok(())
    }

    /// `barrier` went down the chain (the operators snapshotted): the task acknowledges
    /// it, or, while an input or a late channel still owes it, records their records
    /// until they caught up. A recording still open is given up (its checkpoint timed out).
    fn passed(&mut self, ctx: &TaskContext, barrier: Barrier, inputs: &[Input; 2]) -> Result<()> {
        if let Some(old) = self.recording.take() {
            ctx.abandon_checkpoint(
                old.barrier.id,
                format!(
                    "checkpoint {}: barrier {} came before the channel state was whole",
                    old.barrier.id, barrier.id
                ),
            );
        }
        let owed = inputs.iter().any(|input| {
            !input.ended && (input.barrier_id() < barrier.id || input.gate.late_channels() > 0)
        });
        // Without checkpoints an input is never held back: nothing to record.
        if !owed || self.slot.is_none() {
            return ctx.barrier_passed(&barrier);
        }
        if let Some(slot) = self.slot {
            slot.begin(barrier.id)?;
        }
        self.recording = Some(Recording { barrier, bytes: 0 });
        Ok(())
    }

    /// Ends the recording once every input caught up (or ended): the task acknowledges.
    fn end_if_whole(&mut self, ctx: &TaskContext, inputs: &[Input; 2]) -> Result<()> {
        let Some(recording) = &self.recording else {
            return Ok(());
        };
        let id = recording.barrier.id;
        let whole = inputs.iter().all(|input| {
            input.ended || (input.barrier_id() >= id && input.gate.late_channels() == 0)
        });
        if !whole {
            return Ok(());
        }
        let recording = self.recording.take().expect("checked above");
        if let Some(slot) = self.slot {
            slot.end(id)?;
        }
        ctx.counters().add_unaligned(recording.bytes);
        ctx.barrier_passed(&recording.barrier)
    }
}

/// Passes on each barrier id that both inputs (those not ended) have aligned, after
/// `forwarded`: the last it passes. Both gates align their own channels (or release
/// them unaligned). Without checkpoints neither waits for the other: an input whose
/// barrier came first goes on being read (no input can then stall the other); with
/// checkpoints it waits (see `MergeIn::run`), at most the alignment timeout when there
/// is one (`release`: then the barrier passes before the other input's came).
fn pass_barriers<T: Data>(
    ctx: &TaskContext,
    inputs: &[Input; 2],
    (forwarded, release): (u64, bool),
    down: &mut dyn Push<T>,
    state: &mut ChannelState<'_>,
) -> Result<u64> {
    let live: Vec<&Input> = inputs.iter().filter(|input| !input.ended).collect();
    let ids = live.iter().map(|input| input.barrier_id());
    let Some(ready) = (if release { ids.max() } else { ids.min() }) else {
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
            state.passed(ctx, barrier, inputs)?;
        }
    }
    Ok(forwarded.max(ready))
}

/// The chain's watermark: the smaller of the two inputs' (an input whose every live
/// channel is idle does not hold the other back).
fn chain_level(inputs: &[Input; 2]) -> Watermark {
    let idle = |input: &Input| {
        !input.ended
            && input
                .watermark
                .as_ref()
                .is_some_and(GateWatermark::all_idle)
    };
    match (idle(&inputs[0]), idle(&inputs[1])) {
        (false, true) => inputs[0].level,
        (true, false) => inputs[1].level,
        _ if inputs[0].level.time <= inputs[1].level.time => inputs[0].level,
        _ => inputs[1].level,
    }
}

/// The start of a stage that reads two exchanges at once into one chain.
pub(crate) struct MergeIn<T> {
    gates: Option<[InputGate; 2]>,
    down: Box<dyn Push<T>>,
    /// Its channel state in checkpoints (`None` without).
    slot: Option<SnapshotSlot>,
}

impl<T> MergeIn<T> {
    pub(crate) fn new(
        gates: [InputGate; 2],
        down: Box<dyn Push<T>>,
        slot: Option<SnapshotSlot>,
    ) -> MergeIn<T> {
        MergeIn {
            gates: Some(gates),
            down,
            slot,
        }
    }
}

impl<T: Data> Driver for MergeIn<T> {
    fn run(&mut self, ctx: &mut TaskContext) -> Result<()> {
        let [left, right] = self.gates.take().expect("the gates are read once");
        let timeout = left.alignment_timeout();
        // The right gate's channels are numbered after the left's in the channel state.
        let offsets = [0, left.channel_count()];
        let mut inputs = [Input::new(left), Input::new(right)];
        let down = &mut *self.down;
        replay_channel_state(self.slot.as_ref(), down)?;
        let mut state = ChannelState {
            slot: self.slot.as_ref(),
            recording: None,
            frame: Vec::new(),
        };
        let waker = current_thread_waker();
        // The barrier before this run's first (a restored run's barriers start above
        // every checkpoint present).
        let before = ctx.task_checkpoint().map_or(0, |c| c.first_id() - 1);
        let (mut listening, mut emitted, mut forwarded) = (false, i64::MIN, before);
        // Since when an input's barrier waits for the other's.
        let mut waiting_since: Option<Instant> = None;
        loop {
            let mut progressed = false;
            // With checkpoints, an input whose barrier came first waits for the other's
            // (aligned: nothing after a barrier is read before the snapshot).
            let blocking = ctx.checkpointing();
            for (input, first) in inputs.iter_mut().zip(offsets) {
                let waiting = blocking && input.barrier_id() > forwarded;
                if !input.ended && !waiting {
                    progressed |= input.poll(down, &mut state, first)?;
                }
            }
            if inputs.iter().all(|input| input.ended) {
                state.end_if_whole(ctx, &inputs)?;
                break;
            }
            if !progressed {
                for input in &mut inputs {
                    input.tick();
                }
            }
            let level = chain_level(&inputs);
            if level.time > emitted {
                emitted = level.time;
                down.watermark(level)?;
            }
            state.end_if_whole(ctx, &inputs)?;
            let ahead = inputs.iter().any(|input| input.barrier_id() > forwarded);
            let since = *waiting_since.get_or_insert_with(Instant::now);
            let release = blocking && ahead && timeout.is_some_and(|t| since.elapsed() >= t);
            forwarded = pass_barriers(ctx, &inputs, (forwarded, release), down, &mut state)?;
            if !inputs.iter().any(|input| input.barrier_id() > forwarded) {
                waiting_since = None;
            }
            state.end_if_whole(ctx, &inputs)?;
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
