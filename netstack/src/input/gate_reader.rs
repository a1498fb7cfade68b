//! `GateReader`: a task's loop over its input gate — buffers into records, events to the
//! caller, and the wait when nothing is available, with cancellation and an idle hook.
//!
//! ```text
//!   InputGate ──poll_next──┬─ Buffer ──▶ handler.buffer(gate)
//!                          │     Data ──▶ RecordReader[channel] ──▶ handler.record(channel, &[u8])
//!                          │     EndOfPartition ──▶ RecordReader::finish (a record boundary?)
//!                          │     other event (a barrier) ──▶ handler.event(channel, buffer, gate)
//!                          ├─ Pending ──▶ handler.idle()   (flush outputs: RecordWriter::input_idle)
//!                          │              register the thread's waker, poll once more
//!                          │   still Pending ──▶ handler.check_cancelled() ──▶ park (bounded)
//!                          │                     ──▶ handler.parked(gate, slept) ──▶ poll
//!                          └─ EndOfPartitions ──▶ Ok(())
//! ```
//!
//! Invariants: the waker is registered on every live channel before the last poll that
//! precedes a park, so data that arrives in between is never slept through; the park is
//! bounded ([`GATE_PARK_TIMEOUT_DEFAULT`] unless set), so a cancellation is seen without a
//! wake-up; every channel's last record is checked to end on a record boundary. The idle
//! hook runs each time the gate runs dry after handing out buffers (or after a park), so
//! output written while busy leaves as soon as the task has nothing to do
//! ([`FlushMode::WhenIdle`](crate::partition::FlushMode::WhenIdle)).

use std::time::{Duration, Instant};

use super::gate::{GatePoll, InputGate};
use super::record_reader::RecordReader;
use super::thread_waker::current_thread_waker;
use crate::buffer::{DataType, NetworkBuffer};
use crate::constants::GATE_PARK_TIMEOUT_DEFAULT;
use crate::error::NetError;
use crate::partition::ChannelIndex;

/// What a [`GateReader`] does with what it reads, and when it waits. Only
/// [`record`](Self::record) is required; the other hooks do nothing by default.
pub trait GateHandler {
    /// The caller's error; the gate's own failures convert into it.
    type Error: From<NetError>;

    /// One record of `channel`.
    ///
    /// # Errors
    ///
    /// Whatever the caller fails with; the reader stops and answers it.
    fn record(&mut self, channel: ChannelIndex, record: &[u8]) -> Result<(), Self::Error>;

    /// A buffer (data or event) was taken from the gate, before it is handled: for
    /// counting buffers or sampling the gate's metrics.
    ///
    /// # Errors
    ///
    /// As [`record`](Self::record).
    fn buffer(&mut self, gate: &InputGate) -> Result<(), Self::Error> {
        let _ = gate;
        Ok(())
    }

    /// An event of `channel` other than data and EndOfPartition (an aligned barrier, a
    /// custom event), with the gate (for its alignment time).
    ///
    /// # Errors
    ///
    /// As [`record`](Self::record).
    fn event(
        &mut self,
        channel: ChannelIndex,
        buffer: &NetworkBuffer,
        gate: &InputGate,
    ) -> Result<(), Self::Error> {
        let _ = (channel, buffer, gate);
        Ok(())
    }

    /// The gate has nothing available: the task is about to wait. Flush outputs here
    /// ([`RecordWriter::input_idle`](crate::RecordWriter::input_idle)).
    ///
    /// # Errors
    ///
    /// As [`record`](Self::record).
    fn idle(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called before each park: an error (a cancellation) stops the reader.
    ///
    /// # Errors
    ///
    /// Whatever stops the task, typically [`NetError::Cancelled`].
    fn check_cancelled(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The task slept `slept` waiting for input (idle time), and polls again next.
    fn parked(&mut self, gate: &InputGate, slept: Duration) {
        let _ = (gate, slept);
    }
}

/// Reads an [`InputGate`] to its end: a [`RecordReader`] per channel, the thread parked
/// while nothing is available (see the module docs).
#[derive(Debug)]
pub struct GateReader {
    gate: InputGate,
    readers: Vec<RecordReader>,
    park_timeout: Duration,
}

impl GateReader {
    /// A reader of `gate`'s records (up to the default record size), parking at most
    /// [`GATE_PARK_TIMEOUT_DEFAULT`] at a time.
    ///
    /// # Panics
    ///
    /// When the gate has more than `u32::MAX` channels (it cannot: its channel indices
    /// are `u32`).
    pub fn new(gate: InputGate) -> GateReader {
        let readers = (0..gate.channel_count())
            .map(|i| {
                RecordReader::new(ChannelIndex(
                    u32::try_from(i).expect("a channel position fits a u32"),
                ))
            })
            .collect();
        GateReader {
            gate,
            readers,
            park_timeout: GATE_PARK_TIMEOUT_DEFAULT,
        }
    }

    /// The longest single park: how late a cancellation (or a caller's periodic work in
    /// [`GateHandler::parked`]) may be seen without a wake-up.
    #[must_use]
    pub fn with_park_timeout(mut self, timeout: Duration) -> GateReader {
        self.park_timeout = timeout;
        self
    }

    /// The gate.
    pub fn gate(&self) -> &InputGate {
        &self.gate
    }

    /// The gate, given back.
    pub fn into_gate(self) -> InputGate {
        self.gate
    }

    /// Reads until every channel has ended, handing records and events to `handler` and
    /// waiting (idle hook, waker, bounded park) while the gate has nothing. Call from the
    /// thread that is to be woken: it registers a waker of the calling thread.
    ///
    /// # Errors
    ///
    /// The first error of the handler, or of the gate (a lost peer, a record too large, a
    /// channel that ended inside a record) converted into the handler's error.
    ///
    /// # Panics
    ///
    /// As [`InputGate::poll_next`].
    pub fn run<H: GateHandler>(&mut self, handler: &mut H) -> Result<(), H::Error> {
        let waker = current_thread_waker();
        let mut listening = false;
        loop {
            match self.gate.poll_next()? {
                GatePoll::Buffer(channel, buffer) => {
                    listening = false;
                    handler.buffer(&self.gate)?;
                    self.take(channel, buffer, handler)?;
                }
                // Register, then poll once more: data may have arrived in between.
                GatePoll::Pending if !listening => {
                    handler.idle()?;
                    self.gate.register_listener(&waker);
                    listening = true;
                }
                GatePoll::Pending => {
                    handler.check_cancelled()?;
                    let parked = Instant::now();
                    std::thread::park_timeout(self.park_timeout);
                    handler.parked(&self.gate, parked.elapsed());
                    listening = false;
                }
                GatePoll::EndOfPartitions => return Ok(()),
            }
        }
    }

    /// Hands one buffer's records (or the event) to `handler`.
    fn take<H: GateHandler>(
        &mut self,
        channel: ChannelIndex,
        buffer: NetworkBuffer,
        handler: &mut H,
    ) -> Result<(), H::Error> {
        let reader = &mut self.readers[channel.as_usize()];
        match buffer.data_type() {
            DataType::Data => {
                reader.push(buffer);
                while let Some(record) = reader.next_record()? {
                    handler.record(channel, record)?;
                }
            }
            DataType::EndOfPartition => reader.finish()?,
            _ => handler.event(channel, &buffer, &self.gate)?,
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::buffer::test_support::manager;
    use crate::input::LocalInputChannel;
    use crate::partition::{
        FlushMode, ForwardSelector, RecordWriter, ResultPartition, SubpartitionIndex,
    };
    use crate::pool::NetworkBufferPool;

    /// Records what it is handed; flushes its writer when idle; stops when told.
    #[derive(Default)]
    struct Seen {
        records: Vec<(u32, Vec<u8>)>,
        events: Vec<(u32, DataType)>,
        buffers: usize,
        idle: usize,
        output: Option<RecordWriter<ForwardSelector>>,
        cancel: Option<Arc<AtomicBool>>,
    }

    impl GateHandler for Seen {
        type Error = NetError;

        fn record(&mut self, channel: ChannelIndex, record: &[u8]) -> Result<(), NetError> {
            self.records.push((channel.0, record.to_vec()));
            if let Some(output) = &mut self.output {
                output.emit(record)?;
            }
            Ok(())
        }

        fn buffer(&mut self, _gate: &InputGate) -> Result<(), NetError> {
            self.buffers += 1;
            Ok(())
        }

        fn event(
            &mut self,
            channel: ChannelIndex,
            buffer: &NetworkBuffer,
            _gate: &InputGate,
        ) -> Result<(), NetError> {
            self.events.push((channel.0, buffer.data_type()));
            Ok(())
        }

        fn idle(&mut self) -> Result<(), NetError> {
            self.idle += 1;
            if let Some(output) = &mut self.output {
                output.input_idle();
            }
            Ok(())
        }

        fn check_cancelled(&mut self) -> Result<(), NetError> {
            match &self.cancel {
                Some(cancel) if cancel.load(Ordering::Acquire) => Err(NetError::Cancelled),
                _ => Ok(()),
            }
        }
    }

    fn gate_over(partitions: &[&ResultPartition], subpartition: u32) -> InputGate {
        InputGate::new(
            partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    LocalInputChannel::new(
                        ChannelIndex(u32::try_from(i).unwrap()),
                        p.subpartition(SubpartitionIndex(subpartition)),
                    )
                })
                .collect(),
        )
    }

    /// Records of two channels, in order per channel, records spanning buffers, a barrier
    /// handed to the caller, and the end once both channels ended.
    #[test]
    fn reads_every_record_and_event_of_every_channel_to_the_end() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 8).unwrap();
        let a = ResultPartition::new(global.create_local_pool(2, 4).unwrap(), 1);
        let b = ResultPartition::new(global.create_local_pool(2, 4).unwrap(), 1);
        let mut reader = GateReader::new(gate_over(&[&a, &b], 0));
        let (mut wa, mut wb) = (
            RecordWriter::new(a, ForwardSelector, FlushMode::WhenFull),
            RecordWriter::new(b, ForwardSelector, FlushMode::WhenFull),
        );
        let big = vec![7u8; 5000];
        let producer = std::thread::spawn(move || {
            for i in 0..50u8 {
                wa.emit(&[i]).unwrap();
            }
            wa.emit(&big).unwrap();
            wa.broadcast_event(DataType::Event, b"e").unwrap();
            wa.finish().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            wb.emit(b"late").unwrap();
            wb.finish().unwrap();
        });
        let mut seen = Seen::default();
        reader.run(&mut seen).unwrap();
        producer.join().unwrap();
        // Channels interleave as the scheduler pleases (under Miri the 20 ms pause may end
        // before channel 0 is drained): only each channel's own order is promised.
        let of_channel = |channel: u32| -> Vec<&Vec<u8>> {
            let records = seen.records.iter().filter(move |(c, _)| *c == channel);
            records.map(|(_, r)| r).collect()
        };
        let from_a = of_channel(0);
        assert_eq!(from_a.len(), 51);
        assert!(
            from_a[..50]
                .iter()
                .enumerate()
                .all(|(i, r)| r[..] == [i as u8])
        );
        assert_eq!(from_a[50].len(), 5000, "a record spanning buffers");
        assert_eq!(of_channel(1), [&b"late".to_vec()]);
        assert_eq!(seen.events, [(0, DataType::Event)]);
        assert!(seen.buffers >= 5 && seen.idle >= 1, "waited for channel 1");
        assert!(reader.gate().is_finished());
        drop((reader, global));
        manager.leak_check().unwrap();
    }

    /// The idle hook runs when the input runs dry: a task's output flushed there reaches
    /// its consumer at once, though a flush-when-idle buffer is far from full.
    #[test]
    fn the_idle_hook_flushes_output_as_soon_as_the_input_runs_dry() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 8).unwrap();
        let input = ResultPartition::new(global.create_local_pool(2, 4).unwrap(), 1);
        let output = ResultPartition::new(global.create_local_pool(2, 4).unwrap(), 1);
        let out = output.subpartition(SubpartitionIndex(0));
        let mut reader = GateReader::new(gate_over(&[&input], 0));
        let mut upstream = RecordWriter::new(input, ForwardSelector, FlushMode::EveryRecord);
        let mut seen = Seen {
            output: Some(RecordWriter::new(
                output,
                ForwardSelector,
                FlushMode::WhenIdle,
            )),
            ..Seen::default()
        };
        let task = std::thread::spawn(move || {
            reader.run(&mut seen).unwrap();
            seen.output.as_mut().unwrap().finish().unwrap();
            seen
        });
        upstream.emit(b"one").unwrap();
        // The task forwards the record and goes idle: the record is readable downstream
        // without any further input (bounded: 10 s means the hook never flushed).
        let deadline = Instant::now() + Duration::from_secs(10);
        let polled = loop {
            if let Some(polled) = out.poll_buffer() {
                break polled;
            }
            assert!(Instant::now() < deadline, "the idle task never flushed");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(&polled.buffer.as_bytes()[4..], b"one");
        drop(polled);
        upstream.finish().unwrap();
        let seen = task.join().unwrap();
        assert!(seen.idle >= 1);
        while out.poll_buffer().is_some() {}
        drop((seen, upstream, out, global));
        manager.leak_check().unwrap();
    }

    /// A cancellation stops a reader that waits for input that never comes.
    #[test]
    fn a_cancelled_reader_stops_waiting() {
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        let input = ResultPartition::new(global.create_local_pool(2, 2).unwrap(), 1);
        let mut reader =
            GateReader::new(gate_over(&[&input], 0)).with_park_timeout(Duration::from_millis(5));
        let cancel = Arc::new(AtomicBool::new(false));
        let mut seen = Seen {
            cancel: Some(Arc::clone(&cancel)),
            ..Seen::default()
        };
        let task = std::thread::spawn(move || reader.run(&mut seen));
        std::thread::sleep(Duration::from_millis(20));
        cancel.store(true, Ordering::Release);
        assert!(matches!(task.join().unwrap(), Err(NetError::Cancelled)));
        let mut input = input;
        input.release();
        drop((input, global));
        manager.leak_check().unwrap();
    }
}
