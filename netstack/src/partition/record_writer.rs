//! `RecordWriter`: a task's output, a [`ResultPartition`] driven by a [`ChannelSelector`],
//! which waits for buffers (backpressure) and flushes by the job's flush mode.
//!
//! ```text
//!   emit(record) ──selector──▶ try_emit_record ──NoBuffer──▶ wait for the pool's wake-up
//!                                   │ Done                   (time counted as back-pressured;
//!                                   ▼                         cancel() ends the wait)
//!                    FlushMode::EveryRecord: flush the target now
//!                    FlushMode::Timeout(t):  an output flusher thread flushes every t
//!                    FlushMode::WhenFull:    buffers go out when full (or on flush_all)
//!                    FlushMode::WhenIdle:    when full, and whenever the task runs out of
//!                                            input (it calls input_idle)
//! ```
//!
//! A record is serialized by the caller once; the writer frames and copies it into the
//! partition's buffers once (a broadcast record too: its buffer is shared by every
//! subpartition). The flusher thread only marks committed bytes readable: it never copies,
//! and under backpressure it has nothing to do. Flush-when-idle is the task's call to
//! [`RecordWriter::flush_all`] when it runs out of input.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ids::SubpartitionIndex;
use super::result_partition::{Emit, PartitionMetrics, ResultPartition};
use super::selector::ChannelSelector;
use super::subpartition::ResultSubpartition;
use crate::buffer::DataType;
use crate::error::{NetError, Result};

/// When written records become readable before their buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// After every record (buffer timeout 0): the lowest latency, the most buffers.
    EveryRecord,
    /// Every interval, by an output flusher thread (Flink's buffer timeout).
    Timeout(Duration),
    /// Only when a buffer is full, or the task calls
    /// [`flush_all`](RecordWriter::flush_all).
    WhenFull,
    /// When a buffer is full, and as soon as the task has no more input available
    /// ([`input_idle`](RecordWriter::input_idle)): low latency without tiny buffers under
    /// load.
    WhenIdle,
}

impl FlushMode {
    /// The default buffer timeout: 100 ms.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

    /// Flink's buffer timeout: `Some(0)` flushes every record, `Some(t)` every `t`, `None`
    /// only when full.
    pub fn from_buffer_timeout(timeout: Option<Duration>) -> FlushMode {
        match timeout {
            Some(t) if t.is_zero() => FlushMode::EveryRecord,
            Some(t) => FlushMode::Timeout(t),
            None => FlushMode::WhenFull,
        }
    }
}

impl Default for FlushMode {
    fn default() -> FlushMode {
        FlushMode::Timeout(FlushMode::DEFAULT_TIMEOUT)
    }
}

/// Writes records through a selector into a partition, waiting while no buffer is free.
pub struct RecordWriter<S> {
    partition: ResultPartition,
    selector: S,
    flush_mode: FlushMode,
    signal: Arc<Signal>,
    flusher: Option<OutputFlusher>,
    // The target a record that answered NoBuffer is pending for (a selector may not be
    // asked twice for one record: round robin would move on).
    pending_target: Option<SubpartitionIndex>,
    back_pressured: Duration,
}

/// Cancels a [`RecordWriter`]'s waits from another thread.
#[derive(Debug, Clone)]
pub struct WriterCanceller(Arc<Signal>);

impl WriterCanceller {
    /// Ends the writer's current and future waits for a buffer with
    /// [`NetError::Cancelled`].
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

/// Flushes a [`RecordWriter`]'s output as [`RecordWriter::input_idle`] does, from
/// wherever its task notices it ran out of input — a gate reader's idle hook at the start
/// of an operator chain whose end owns the writer.
#[derive(Debug, Clone)]
pub struct IdleFlusher(Arc<[Arc<ResultSubpartition>]>);

impl IdleFlusher {
    /// The task has no more input available for now: what was written goes out.
    pub fn input_idle(&self) {
        for subpartition in self.0.iter() {
            subpartition.flush();
        }
    }
}

impl<S: ChannelSelector> RecordWriter<S> {
    /// A writer of `partition` through `selector` (set up here for the partition's
    /// subpartitions), flushing by `flush_mode`; with [`FlushMode::Timeout`] it starts an
    /// output flusher thread, stopped when the writer finishes or drops.
    ///
    /// # Panics
    ///
    /// As the selector's `setup`, or when the flusher thread cannot be started.
    pub fn new(mut partition: ResultPartition, mut selector: S, flush_mode: FlushMode) -> Self {
        let channels = u32::try_from(partition.subpartition_count())
            .expect("a partition's subpartition count fits a u32");
        selector.setup(channels);
        let signal = Arc::new(Signal::default());
        partition.set_waker(Some(Waker::from(Arc::clone(&signal))));
        let flusher = match flush_mode {
            FlushMode::Timeout(interval) if !interval.is_zero() => Some(OutputFlusher::start(
                (0..partition.subpartition_count())
                    .map(|i| partition.subpartition(SubpartitionIndex::from_usize(i)))
                    .collect(),
                interval,
            )),
            _ => None,
        };
        RecordWriter {
            partition,
            selector,
            flush_mode,
            signal,
            flusher,
            pending_target: None,
            back_pressured: Duration::ZERO,
        }
    }

    /// A handle that cancels this writer's waits.
    pub fn canceller(&self) -> WriterCanceller {
        WriterCanceller(Arc::clone(&self.signal))
    }

    /// Writes `record` to the subpartition the selector picks (to every subpartition for a
    /// broadcast selector), waiting while no buffer is free.
    ///
    /// # Errors
    ///
    /// [`NetError::Cancelled`] when [`WriterCanceller::cancel`] was called; the record may
    /// then be partly written, and the task should [`release`](Self::release).
    ///
    /// # Panics
    ///
    /// As [`ResultPartition::try_emit_record`].
    pub fn emit(&mut self, record: &[u8]) -> Result<()> {
        loop {
            match self.try_emit(record) {
                Emit::Done => return Ok(()),
                Emit::NoBuffer => self.wait()?,
            }
        }
    }

    /// As [`emit`](Self::emit) without waiting: on [`Emit::NoBuffer`] call again with the
    /// same record (it continues where it stopped, to the same subpartition).
    ///
    /// # Panics
    ///
    /// As [`ResultPartition::try_emit_record`].
    pub fn try_emit(&mut self, record: &[u8]) -> Emit {
        if self.selector.is_broadcast() {
            let emit = self.partition.try_broadcast_record(record);
            if emit == Emit::Done && self.flush_mode == FlushMode::EveryRecord {
                self.partition.flush_all();
            }
            return emit;
        }
        let target = match self.pending_target.take() {
            Some(target) => target,
            None => SubpartitionIndex(self.selector.select_channel(record).0),
        };
        let emit = self.partition.try_emit_record(record, target);
        match emit {
            Emit::Done if self.flush_mode == FlushMode::EveryRecord => {
                self.partition.flush(target);
            }
            Emit::Done => {}
            Emit::NoBuffer => self.pending_target = Some(target),
        }
        emit
    }

    /// Writes `record` to every subpartition, whatever the selector, waiting while no
    /// buffer is free.
    ///
    /// # Errors
    ///
    /// As [`emit`](Self::emit).
    ///
    /// # Panics
    ///
    /// As [`ResultPartition::try_broadcast_record`].
    pub fn broadcast(&mut self, record: &[u8]) -> Result<()> {
        self.blocking(|partition| partition.try_broadcast_record(record))?;
        if self.flush_mode == FlushMode::EveryRecord {
            self.partition.flush_all();
        }
        Ok(())
    }

    /// Writes an event to every subpartition (see
    /// [`ResultPartition::try_broadcast_event`]), waiting while no buffer is free.
    ///
    /// # Errors
    ///
    /// As [`emit`](Self::emit).
    ///
    /// # Panics
    ///
    /// As [`ResultPartition::try_broadcast_event`].
    pub fn broadcast_event(&mut self, data_type: DataType, bytes: &[u8]) -> Result<()> {
        self.blocking(|partition| partition.try_broadcast_event(data_type, bytes))
    }

    /// Makes everything written so far readable.
    pub fn flush_all(&mut self) {
        self.partition.flush_all();
    }

    /// The task has no more input available for now: with [`FlushMode::WhenIdle`] what
    /// was written goes out (a no-op in the other modes, which flush on their own terms).
    pub fn input_idle(&mut self) {
        if self.flush_mode == FlushMode::WhenIdle {
            self.partition.flush_all();
        }
    }

    /// A handle that flushes this writer's output when its task runs out of input, with
    /// [`FlushMode::WhenIdle`]; `None` in the other modes (they flush on their own terms).
    pub fn idle_flusher(&self) -> Option<IdleFlusher> {
        (self.flush_mode == FlushMode::WhenIdle).then(|| {
            IdleFlusher(
                (0..self.partition.subpartition_count())
                    .map(|i| {
                        self.partition
                            .subpartition(SubpartitionIndex::from_usize(i))
                    })
                    .collect(),
            )
        })
    }

    /// Ends the output: every open buffer finished and EndOfPartition queued in every
    /// subpartition; the flusher thread stops.
    ///
    /// # Errors
    ///
    /// As [`emit`](Self::emit).
    ///
    /// # Panics
    ///
    /// As [`ResultPartition::try_finish`].
    pub fn finish(&mut self) -> Result<()> {
        self.blocking(ResultPartition::try_finish)?;
        self.flusher = None;
        Ok(())
    }

    /// Drops everything written and not yet read (a failed or cancelled task).
    pub fn release(&mut self) {
        self.flusher = None;
        self.pending_target = None;
        self.partition.release();
    }

    /// The partition's counters, with the time this writer waited for buffers.
    pub fn metrics(&self) -> PartitionMetrics {
        PartitionMetrics {
            back_pressured: self.back_pressured,
            ..self.partition.metrics()
        }
    }

    /// The partition written.
    pub fn partition(&self) -> &ResultPartition {
        &self.partition
    }

    /// How this writer flushes.
    pub fn flush_mode(&self) -> FlushMode {
        self.flush_mode
    }

    fn blocking(&mut self, mut write: impl FnMut(&mut ResultPartition) -> Emit) -> Result<()> {
        loop {
            match write(&mut self.partition) {
                Emit::Done => return Ok(()),
                Emit::NoBuffer => self.wait()?,
            }
        }
    }

    /// Waits for the pool's wake-up (registered by the failed request), counting the time
    /// as back-pressured.
    fn wait(&mut self) -> Result<()> {
        let start = Instant::now();
        let woken = self.signal.wait();
        self.back_pressured += start.elapsed();
        if woken {
            Ok(())
        } else {
            Err(NetError::Cancelled)
        }
    }
}

impl<S> fmt::Debug for RecordWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordWriter")
            .field("partition", &self.partition)
            .field("flush_mode", &self.flush_mode)
            .field("back_pressured", &self.back_pressured)
            .finish_non_exhaustive()
    }
}

/// A wake-up the writer waits for, usable from any thread (the writer may move between
/// threads, so it is not a thread unpark), and cancellation.
#[derive(Debug, Default)]
struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
    cancelled: AtomicBool,
}

#[derive(Debug, Default)]
struct SignalState {
    woken: bool,
}

impl Signal {
    /// Waits until woken (consuming the wake-up) and answers `true`, or `false` once
    /// cancelled.
    fn wait(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !state.woken && !self.cancelled.load(Ordering::Acquire) {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.woken = false;
        !self.cancelled.load(Ordering::Acquire)
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        // Under the lock, so a waiter between its check and its wait cannot miss it.
        let _state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.woken = true;
        self.changed.notify_all();
    }
}

/// The output flusher thread of a buffer timeout: flushes every subpartition every
/// interval until dropped.
struct OutputFlusher {
    stop: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OutputFlusher {
    fn start(subpartitions: Vec<Arc<ResultSubpartition>>, interval: Duration) -> OutputFlusher {
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("weir-output-flusher".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    for subpartition in &subpartitions {
                        subpartition.flush();
                    }
                }
            })
            .expect("the output flusher thread starts");
        OutputFlusher {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for OutputFlusher {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread's wait with Disconnected.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic in the flusher (a bug) surfaces here rather than vanishing.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::test_support::manager;
    use crate::partition::{ForwardSelector, RoundRobinSelector};
    use crate::pool::NetworkBufferPool;

    fn drain(subpartition: &ResultSubpartition) -> Vec<u8> {
        let mut bytes = Vec::new();
        while let Some(polled) = subpartition.poll_buffer() {
            if polled.buffer.data_type() == DataType::Data {
                bytes.extend_from_slice(polled.buffer.as_bytes());
            }
        }
        bytes
    }

    #[test]
    fn buffer_timeout_zero_flushes_every_record_and_none_waits_for_a_full_buffer() {
        assert_eq!(
            FlushMode::from_buffer_timeout(Some(Duration::ZERO)),
            FlushMode::EveryRecord
        );
        assert_eq!(FlushMode::from_buffer_timeout(None), FlushMode::WhenFull);
        assert_eq!(
            FlushMode::default(),
            FlushMode::Timeout(Duration::from_millis(100))
        );
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        for (mode, readable, when_idle) in [
            (FlushMode::EveryRecord, 5, 0),
            (FlushMode::WhenFull, 0, 0),
            (FlushMode::WhenIdle, 0, 5),
        ] {
            let partition = ResultPartition::new(global.create_local_pool(2, 2).unwrap(), 1);
            let subpartition = partition.subpartition(SubpartitionIndex(0));
            let mut writer = RecordWriter::new(partition, ForwardSelector, mode);
            writer.emit(b"a").unwrap();
            assert_eq!(drain(&subpartition).len(), readable, "{mode:?}");
            writer.input_idle();
            assert_eq!(drain(&subpartition).len(), when_idle, "{mode:?} when idle");
            assert_eq!(
                writer.idle_flusher().is_some(),
                mode == FlushMode::WhenIdle,
                "{mode:?}"
            );
            writer.emit(b"c").unwrap();
            if let Some(flusher) = writer.idle_flusher() {
                flusher.input_idle();
                assert_eq!(
                    drain(&subpartition).len(),
                    5,
                    "the handle flushes as the writer"
                );
            }
            writer.emit(b"b").unwrap();
            writer.flush_all();
            assert_eq!(
                drain(&subpartition).len(),
                15 - readable - 2 * when_idle,
                "{mode:?}"
            );
            writer.finish().unwrap();
        }
        drop(global);
        manager.leak_check().unwrap();
    }

    #[test]
    fn the_output_flusher_makes_records_readable_within_the_timeout() {
        let manager = manager(2);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let partition = ResultPartition::new(global.create_local_pool(2, 2).unwrap(), 1);
        let subpartition = partition.subpartition(SubpartitionIndex(0));
        let mode = FlushMode::Timeout(Duration::from_millis(5));
        let mut writer = RecordWriter::new(partition, ForwardSelector, mode);
        writer.emit(b"late").unwrap();
        let mut seen = Vec::new();
        // Bounded: the flusher runs every 5 ms; 2 s means it never ran.
        for _ in 0..400 {
            seen.extend(drain(&subpartition));
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(seen, b"\x04\0\0\0late");
        writer.finish().unwrap();
        drop((writer, subpartition, global));
        manager.leak_check().unwrap();
    }

    /// A pool of 2 segments, a reader on another thread: the writer waits for buffers,
    /// counts the time, and every record arrives.
    #[test]
    fn a_writer_waits_for_buffers_and_counts_the_time() {
        let manager = manager(3);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 3).unwrap();
        let partition = ResultPartition::new(global.create_local_pool(3, 3).unwrap(), 2);
        let subpartitions: Vec<_> = (0..2)
            .map(|i| partition.subpartition(SubpartitionIndex(i)))
            .collect();
        let reader = std::thread::spawn(move || {
            let mut bytes = [0usize; 2];
            let mut ended = [false; 2];
            while ended != [true; 2] {
                for (i, subpartition) in subpartitions.iter().enumerate() {
                    while let Some(polled) = subpartition.poll_buffer() {
                        match polled.buffer.data_type() {
                            DataType::EndOfPartition => ended[i] = true,
                            _ => bytes[i] += polled.buffer.len(),
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            bytes
        });
        let mut writer = RecordWriter::new(
            partition,
            RoundRobinSelector::starting_at(0),
            FlushMode::WhenFull,
        );
        let record = [9u8; 1000];
        for _ in 0..100 {
            writer.emit(&record).unwrap();
        }
        writer.finish().unwrap();
        let bytes = reader.join().unwrap();
        assert_eq!(bytes, [50 * 1004, 50 * 1004]);
        let metrics = writer.metrics();
        assert_eq!(metrics.records_out, 100);
        assert!(metrics.no_buffer_answers > 0);
        assert!(metrics.back_pressured > Duration::ZERO);
        drop((writer, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn cancel_ends_a_wait_for_a_buffer() {
        let manager = manager(2);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let partition = ResultPartition::new(global.create_local_pool(2, 2).unwrap(), 1);
        let mut writer = RecordWriter::new(partition, ForwardSelector, FlushMode::WhenFull);
        let canceller = writer.canceller();
        let cancelling = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            canceller.cancel();
        });
        // Nobody reads: the third segment never comes.
        let error = writer.emit(&[1; 10_000]).unwrap_err();
        assert!(matches!(error, NetError::Cancelled), "{error}");
        cancelling.join().unwrap();
        writer.release();
        drop((writer, global));
        manager.leak_check().unwrap();
    }
}
