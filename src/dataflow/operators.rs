//! The operators of a chain: each a [`Push`] that does its work and pushes on, or a
//! [`Driver`] that feeds a chain from an exchange.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_kernel::hash::{
    AggregateConfig, Aggregator, HashAggregate, HashJoin, JoinConfig, JoinRow, JoinType, ProbeHash,
    hash_bytes,
};
use weir_kernel::memory::Owner;
use weir_kernel::sort::{ExternalSorter, SortConfig};
use weir_kernel::spill::SpillStore;
use weir_netstack::partition::{channel_for_key_group, key_group};
use weir_netstack::{
    ChannelIndex, DataType, GateHandler, GateReader, InputGate, NetworkBuffer, RecordWriter,
};

use super::barrier::OncePerId;
use super::event_time::{GateWatermark, Watermark};
use super::graph::{Exchange, MemoryOp};
use super::group_cache::GroupCache;
use super::metrics::Meter;
use super::runtime::{Counters, OperatorSlot, Target};
use super::{Barrier, Data, Driver, Key, Push, TaskContext};
use crate::checkpoint::SnapshotSlot;
use crate::error::{Result, WeirError};
use crate::output::OutputFile;

/// How partial accumulators of one key are folded together.
pub(crate) type Merge<A> = Arc<dyn Fn(&mut A, A) + Send + Sync>;

/// The serde-fmt key encoding of `key` appended to `out`: what exchanges hash and kernel
/// operators compare.
///
/// # Panics
///
/// When the key's type has no key encoding (a map, an unsized sequence of floats): a bug
/// of the program, found on its first record.
pub(crate) fn append_key<K: Key>(out: &mut Vec<u8>, key: &K) {
    weir_serde_fmt::key::append_to_vec(out, key)
        .expect("the key type has a serde-fmt key encoding");
}

/// `record`'s serde-fmt encoding appended to `out`.
pub(crate) fn append_record<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    record: &T,
) -> Result<()> {
    weir_serde_fmt::append_to_vec(out, record).map_err(|e| WeirError::Data {
        message: format!("a record cannot be encoded: {e}"),
    })?;
    Ok(())
}

/// A (key, record) pair encoded for a kernel operator, in buffers reused record after
/// record.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

impl Encoded {
    /// Encodes `key` (key format) and `value` (record format) in place of the last pair.
    fn set<K: Key, V: Data>(&mut self, key: &K, value: &V) -> Result<()> {
        self.key.clear();
        append_key(&mut self.key, key);
        self.value.clear();
        append_record(&mut self.value, value)
    }

    /// Encodes `key` (key format) in place of the last key.
    fn set_key<K: Key>(&mut self, key: &K) {
        self.key.clear();
        append_key(&mut self.key, key);
    }

    /// Encodes `value` (record format) in place of the last value.
    fn set_value<V: Data>(&mut self, value: &V) -> Result<()> {
        self.value.clear();
        append_record(&mut self.value, value)
    }
}

/// Decodes a record the chain (or a peer) encoded.
pub(crate) fn decode<T: Data>(bytes: &[u8]) -> Result<T> {
    weir_serde_fmt::from_slice(bytes).map_err(|e| WeirError::Data {
        message: format!("a malformed record of {} bytes: {e}", bytes.len()),
    })
}

/// Decodes a key the chain encoded.
pub(crate) fn decode_key<K: Key>(bytes: &[u8]) -> Result<K> {
    weir_serde_fmt::key::from_slice(bytes).map_err(|e| WeirError::Data {
        message: format!("a malformed key of {} bytes: {e}", bytes.len()),
    })
}

pub(crate) struct Map<T, U> {
    pub(crate) f: Arc<dyn Fn(T) -> U + Send + Sync>,
    pub(crate) down: Box<dyn Push<U>>,
}

impl<T: Data, U: Data> Push<T> for Map<T, U> {
    #[inline]
    fn push(&mut self, record: T) -> Result<()> {
        self.down.push((self.f)(record))
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.down.finish()
    }

    fn is_done(&self) -> bool {
        self.down.is_done()
    }
}

pub(crate) struct Filter<T> {
    pub(crate) f: Arc<dyn Fn(&T) -> bool + Send + Sync>,
    pub(crate) down: Box<dyn Push<T>>,
}

impl<T: Data> Push<T> for Filter<T> {
    #[inline]
    fn push(&mut self, record: T) -> Result<()> {
        if (self.f)(&record) {
            self.down.push(record)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.down.finish()
    }

    fn is_done(&self) -> bool {
        self.down.is_done()
    }
}

pub(crate) struct FlatMap<T, U, I> {
    pub(crate) f: Arc<dyn Fn(T) -> I + Send + Sync>,
    pub(crate) down: Box<dyn Push<U>>,
    pub(crate) _items: PhantomData<fn() -> I>,
}

impl<T: Data, U: Data, I: IntoIterator<Item = U>> Push<T> for FlatMap<T, U, I> {
    fn push(&mut self, record: T) -> Result<()> {
        for item in (self.f)(record) {
            self.down.push(item)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.down.finish()
    }

    fn is_done(&self) -> bool {
        self.down.is_done()
    }
}

/// Folds a task's records into one state, pushed at the end ([`super::Stream::fold`]).
pub(crate) struct Fold<T, A, U, F> {
    pub(crate) state: Option<A>,
    pub(crate) f: Arc<F>,
    pub(crate) finish: Arc<dyn Fn(A) -> U + Send + Sync>,
    pub(crate) down: Box<dyn Push<U>>,
    pub(crate) _records: PhantomData<fn(T)>,
}

impl<T: Data, A: Send, U: Data, F: Fn(&mut A, T) + Send + Sync> Push<T> for Fold<T, A, U, F> {
    #[inline]
    fn push(&mut self, record: T) -> Result<()> {
        if let Some(state) = &mut self.state {
            (self.f)(state, record);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(state) = self.state.take() {
            self.down.push((self.finish)(state))?;
        }
        self.down.finish()
    }
}

/// Counts the records of a task and pushes the count at the end.
pub(crate) struct Count {
    pub(crate) count: u64,
    pub(crate) down: Box<dyn Push<u64>>,
}

impl<T: Data> Push<T> for Count {
    fn push(&mut self, _record: T) -> Result<()> {
        self.count += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.down.push(self.count)?;
        self.down.finish()
    }
}

pub(crate) struct Discard;

impl<T: Data> Push<T> for Discard {
    fn push(&mut self, _record: T) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Collects into the job's shared result at the end (so a failed task delivers nothing).
pub(crate) struct CollectSink<T> {
    pub(crate) records: Arc<Mutex<Vec<T>>>,
    pub(crate) local: Vec<T>,
}

impl<T: Data> Push<T> for CollectSink<T> {
    fn push(&mut self, record: T) -> Result<()> {
        self.local.push(record);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let mut records = self.records.lock().expect("collected records");
        records.append(&mut self.local);
        Ok(())
    }
}

pub(crate) struct LinesSink<T> {
    out: BufWriter<File>,
    /// The part file, written beside its target and renamed into place when the task
    /// finishes: a failed task leaves the previous part (or none), never a partial one.
    output: Option<OutputFile>,
    line: Arc<dyn Fn(&T) -> String + Send + Sync>,
}

impl<T> LinesSink<T> {
    pub(crate) fn create(
        dir: &Path,
        task: usize,
        line: Arc<dyn Fn(&T) -> String + Send + Sync>,
    ) -> Result<LinesSink<T>> {
        std::fs::create_dir_all(dir).map_err(|e| WeirError::file("create directory", dir, e))?;
        let path = dir.join(format!("part-{task}"));
        let output = OutputFile::create("write_lines", &path, &[])?;
        Ok(LinesSink {
            out: BufWriter::new(output.try_clone()?),
            output: Some(output),
            line,
        })
    }

    fn temp_path(&self) -> &Path {
        self.output
            .as_ref()
            .map_or(Path::new("write_lines output"), OutputFile::temp_path)
    }
}

impl<T: Data> Push<T> for LinesSink<T> {
    fn push(&mut self, record: T) -> Result<()> {
        let mut line = (self.line)(&record);
        line.push('\n');
        if let Err(e) = self.out.write_all(line.as_bytes()) {
            return Err(WeirError::file("write output", self.temp_path(), e));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Err(e) = self.out.flush() {
            return Err(WeirError::file("write output", self.temp_path(), e));
        }
        match self.output.take() {
            Some(output) => output.commit(),
            None => Ok(()),
        }
    }
}

/// One downstream `Push` shared by several upstream chains (a union): it finishes when
/// the last of them finished.
pub(crate) struct Shared<T> {
    // The downstream and the upstreams that have not finished.
    inner: Arc<Mutex<SharedDown<T>>>,
}

type SharedDown<T> = (Box<dyn Push<T>>, usize, OncePerId);

impl<T> Shared<T> {
    pub(crate) fn new(down: Box<dyn Push<T>>, upstreams: usize) -> Shared<T> {
        Shared {
            inner: Arc::new(Mutex::new((down, upstreams, OncePerId::default()))),
        }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Data> Push<T> for Shared<T> {
    fn push(&mut self, record: T) -> Result<()> {
        self.inner.lock().expect("union").0.push(record)
    }

    fn is_done(&self) -> bool {
        self.inner.lock().expect("union").0.is_done()
    }

    /// Passed on once per id, by the first upstream to bring it.
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        let mut inner = self.inner.lock().expect("union");
        if inner.2.first(&barrier) {
            inner.0.barrier(barrier)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let mut inner = self.inner.lock().expect("union");
        inner.1 -= 1;
        if inner.1 == 0 {
            inner.0.finish()?;
        }
        Ok(())
    }
}

/// Drivers run one after the other (a join's build input, then its probe input).
pub(crate) struct Sequence(pub(crate) Vec<Box<dyn Driver>>);

impl Driver for Sequence {
    fn run(&mut self, ctx: &mut TaskContext) -> Result<()> {
        for driver in &mut self.0 {
            driver.run(ctx)?;
        }
        Ok(())
    }
}

/// The channel (consumer task) of `channels` a hash exchange sends a record with these
/// key bytes to: the bytes' hash, folded to 32 bits, through `max_parallelism` key groups.
#[inline]
pub(crate) fn channel_of_key_bytes(key: &[u8], channels: u32, max_parallelism: u32) -> u32 {
    let hash = hash_bytes(0, key);
    let group = key_group((hash ^ (hash >> 32)) as u32, max_parallelism);
    channel_for_key_group(group, channels, max_parallelism).0
}

/// The end of a stage: records encoded into the exchange's record writer.
pub(crate) struct ExchangeOut<T> {
    writer: RecordWriter<Target>,
    counters: Arc<Counters>,
    finished: bool,
    target: Target,
    exchange: Arc<Exchange<T>>,
    channels: u32,
    max_parallelism: u32,
    next: u32,
    record: Vec<u8>,
    key: Vec<u8>,
    /// The last watermark sent.
    watermark: i64,
    /// The last barrier sent.
    barrier: u64,
}

impl<T> ExchangeOut<T> {
    pub(crate) fn new(
        (writer, target): (RecordWriter<Target>, Target),
        exchange: Arc<Exchange<T>>,
        counters: Arc<Counters>,
    ) -> ExchangeOut<T> {
        let channels = u32::try_from(writer.partition().subpartition_count()).expect("few tasks");
        ExchangeOut {
            writer,
            counters,
            finished: false,
            target,
            exchange,
            channels,
            max_parallelism: weir_netstack::partition::default_max_parallelism(channels),
            next: 0,
            record: Vec::new(),
            key: Vec::new(),
            watermark: i64::MIN,
            barrier: 0,
        }
    }
}

impl<T: Data> Push<T> for ExchangeOut<T> {
    fn push(&mut self, record: T) -> Result<()> {
        self.record.clear();
        append_record(&mut self.record, &record)?;
        let channel = match &*self.exchange {
            Exchange::Hash(key) => {
                self.key.clear();
                key(&record, &mut self.key);
                channel_of_key_bytes(&self.key, self.channels, self.max_parallelism)
            }
            Exchange::RoundRobin => {
                self.next = (self.next + 1) % self.channels;
                self.next
            }
            Exchange::Gather => 0,
            Exchange::Broadcast => return Ok(self.writer.broadcast(&self.record)?),
        };
        self.target.0.store(channel, Ordering::Relaxed);
        Ok(self.writer.emit(&self.record)?)
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        if watermark.time <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark.time;
        self.writer
            .broadcast_event(DataType::Event, &watermark.encode())?;
        // A watermark is worth sending now: windows downstream wait for it.
        self.writer.flush_all();
        Ok(())
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        if barrier.id <= self.barrier {
            return Ok(());
        }
        self.barrier = barrier.id;
        self.writer
            .broadcast_event(DataType::Barrier, &barrier.encode())?;
        // Behind the data written so far, on every channel: its consumers align it.
        self.writer.flush_all();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        // The END watermark: this task's output never holds its consumers' event time
        // back (nor fails to close their windows).
        self.watermark(Watermark::now(Watermark::END, 0))?;
        self.writer.finish()?;
        self.finished = true;
        let metrics = self.writer.metrics();
        self.counters.add_exchanged(
            metrics.records_out,
            metrics.bytes_written,
            metrics.back_pressured,
        );
        Ok(())
    }
}

impl<T> Drop for ExchangeOut<T> {
    fn drop(&mut self) {
        // A task that failed: its consumers get no more data, and the buffers go home.
        if !self.finished {
            self.writer.release();
        }
    }
}

/// Buffers between two samples of a gate's in-flight bytes and buffer size.
const GATE_SAMPLE_BUFFERS: u64 = 64;

/// The start of a stage: records of the exchange's gate, decoded, into the chain.
pub(crate) struct ExchangeIn<T> {
    gate: Option<InputGate>,
    down: Box<dyn Push<T>>,
    /// Its channel state in checkpoints (`None` without).
    slot: Option<SnapshotSlot>,
}

impl<T> ExchangeIn<T> {
    pub(crate) fn new(
        gate: InputGate,
        down: Box<dyn Push<T>>,
        slot: Option<SnapshotSlot>,
    ) -> ExchangeIn<T> {
        ExchangeIn {
            gate: Some(gate),
            down,
            slot,
        }
    }
}

impl<T: Data> Driver for ExchangeIn<T> {
    fn run(&mut self, ctx: &mut TaskContext) -> Result<()> {
        replay_channel_state(self.slot.as_ref(), &mut *self.down)?;
        let gate = self.gate.take().expect("a gate is read once");
        let mut reader = GateReader::new(gate);
        let mut handler = ChainInput {
            ctx,
            down: &mut *self.down,
            buffers: 0,
            watermark: None,
            slot: self.slot.as_ref(),
            last_barrier: 0,
            recording: None,
            frame: Vec::new(),
        };
        reader.run(&mut handler)?;
        ctx.record_gate(reader.gate());
        self.down.finish()
    }
}

/// Pushes the channel state of the checkpoint restored into `down`: records that were in
/// flight on the late channels of a barrier released unaligned, in no operator's state.
/// They go before anything the gates bring.
pub(crate) fn replay_channel_state<T: Data>(
    slot: Option<&SnapshotSlot>,
    down: &mut dyn Push<T>,
) -> Result<()> {
    let Some(mut piece) = SnapshotSlot::restored_piece(slot)? else {
        return Ok(());
    };
    let mut frame = Vec::new();
    while piece.next_frame(&mut frame)? {
        let record = frame.get(4..).ok_or_else(|| WeirError::Data {
            message: "a channel state frame shorter than its channel index".to_owned(),
        })?;
        down.push(decode(record)?)?;
    }
    Ok(())
}

/// Appends `record` of `channel` to checkpoint `id`'s channel state in `slot`: a frame
/// `[channel: u32][record]` built in `frame`. Answers its bytes.
pub(crate) fn append_channel_state(
    slot: &SnapshotSlot,
    id: u64,
    frame: &mut Vec<u8>,
    (channel, record): (usize, &[u8]),
) -> Result<u64> {
    frame.clear();
    frame.extend_from_slice(&u32::try_from(channel).unwrap_or(u32::MAX).to_le_bytes());
    frame.extend_from_slice(record);
    slot.append(id, frame)?;
    Ok(frame.len() as u64)
}

/// A task's chain as the handler of its gate reader: records decoded into the chain, the
/// task's outputs flushed when idle (`--flush idle`), its idle time and gate counted.
struct ChainInput<'a, T> {
    ctx: &'a TaskContext,
    down: &'a mut dyn Push<T>,
    buffers: u64,
    /// The gate's event time, from its first watermark on.
    watermark: Option<GateWatermark>,
    /// The gate's place in checkpoints (its channel state).
    slot: Option<&'a SnapshotSlot>,
    /// The id of the last barrier handed down the chain.
    last_barrier: u64,
    /// A barrier the gate released unaligned, snapshotted already: the records of its
    /// late channels go into its checkpoint until their barrier comes.
    recording: Option<Recording>,
    /// A channel state frame being built.
    frame: Vec<u8>,
}

/// The channel state of one checkpoint being recorded.
struct Recording {
    barrier: Barrier,
    /// By channel: whether its records are recorded (its barrier has not come).
    late: Vec<bool>,
    bytes: u64,
}

impl<T> ChainInput<'_, T> {
    /// Adds `record` of a late channel to the channel state: a frame
    /// `[channel: u32][record]`.
    fn record_state(&mut self, channel: ChannelIndex, record: &[u8]) -> Result<()> {
        let (Some(recording), Some(slot)) = (&mut self.recording, self.slot) else {
            return Ok(());
        };
        let id = recording.barrier.id;
        recording.bytes +=
            append_channel_state(slot, id, &mut self.frame, (channel.as_usize(), record))?;
        Ok(())
    }

    /// Every late channel's barrier has come (or the channel ended): the channel state
    /// is whole, the task acknowledges the checkpoint.
    fn end_recording(&mut self, gate: &InputGate) -> Result<()> {
        let Some(recording) = &mut self.recording else {
            return Ok(());
        };
        if gate.late_channels() > 0 {
            for (i, late) in recording.late.iter_mut().enumerate() {
                *late = gate.is_late(ChannelIndex(u32::try_from(i).unwrap_or(u32::MAX)));
            }
            return Ok(());
        }
        let recording = self.recording.take().expect("checked above");
        if let Some(slot) = self.slot {
            slot.end(recording.barrier.id)?;
        }
        self.ctx.counters().add_unaligned(recording.bytes);
        self.ctx.barrier_passed(&recording.barrier)
    }
}

impl<T: Data> GateHandler for ChainInput<'_, T> {
    type Error = WeirError;

    #[inline]
    fn record(&mut self, channel: ChannelIndex, record: &[u8]) -> Result<()> {
        if let Some(watermark) = &mut self.watermark {
            watermark.touch(channel);
        }
        if let Some(recording) = &self.recording
            && recording.late[channel.as_usize()]
        {
            self.record_state(channel, record)?;
        }
        self.down.push(decode(record)?)
    }

    fn event(
        &mut self,
        channel: ChannelIndex,
        buffer: &NetworkBuffer,
        gate: &InputGate,
    ) -> Result<()> {
        if buffer.data_type() == DataType::Barrier {
            let barrier = Barrier::decode(buffer.as_bytes())?;
            if barrier.id <= self.last_barrier {
                // A late channel's copy of a barrier released unaligned.
                return Ok(());
            }
            self.last_barrier = barrier.id;
            if let Some(old) = self.recording.take() {
                // Its checkpoint was declined (timed out) while a late channel still owed
                // its barrier: the next one goes on without it.
                self.ctx.abandon_checkpoint(
                    old.barrier.id,
                    format!(
                        "checkpoint {}: barrier {} came before the channel state was whole",
                        old.barrier.id, barrier.id
                    ),
                );
            }
            self.ctx
                .barrier_aligned(&barrier, gate.metrics().last_alignment);
            self.down.barrier(barrier)?;
            if gate.late_channels() == 0 {
                return self.ctx.barrier_passed(&barrier);
            }
            // Released unaligned: the snapshot is taken; the late channels' records
            // until their barrier complete it.
            if let Some(slot) = self.slot {
                slot.begin(barrier.id)?;
            }
            self.recording = Some(Recording {
                barrier,
                late: (0..gate.channel_count())
                    .map(|i| gate.is_late(ChannelIndex(u32::try_from(i).unwrap_or(u32::MAX))))
                    .collect(),
                bytes: 0,
            });
            return Ok(());
        }
        let channels = gate.channel_count();
        match GateWatermark::on_event(&mut self.watermark, channels, channel, buffer)? {
            Some(watermark) => self.down.watermark(watermark),
            None => Ok(()),
        }
    }

    fn buffer(&mut self, gate: &InputGate) -> Result<()> {
        if self.recording.is_some() {
            self.end_recording(gate)?;
        }
        self.buffers += 1;
        if self.buffers.is_multiple_of(GATE_SAMPLE_BUFFERS) {
            self.ctx.record_gate(gate);
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<()> {
        self.ctx.input_idle();
        // Waiting for input: channels may have fallen idle and let event time advance.
        if let Some(advanced) = self.watermark.as_mut().and_then(GateWatermark::tick) {
            self.down.watermark(advanced)?;
        }
        Ok(())
    }

    fn check_cancelled(&mut self) -> Result<()> {
        self.ctx.check_cancelled()
    }

    fn parked(&mut self, _gate: &InputGate, slept: Duration) {
        self.ctx.add_idle(slept);
    }
}

/// Accumulators as their serde-fmt encoding, merged by decoding both, folding and
/// encoding the result. When every value of `A` encodes to the same size
/// ([`weir_serde_fmt::fixed_size`]: sums, counts, min/max and tuples or structs of them),
/// the result is written over the stored accumulator in place; otherwise the kernel
/// appends it and compacts the dead copies (the variable-size path).
struct SerdeMerge<A> {
    merge: Merge<A>,
    size: Option<usize>,
}

impl<A> fmt::Debug for SerdeMerge<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SerdeMerge")
    }
}

impl<A: Data> SerdeMerge<A> {
    fn merged(&self, acc: &[u8], other: &[u8], out: &mut Vec<u8>) {
        // Both were encoded by this job: a failure is a bug.
        let mut acc: A = weir_serde_fmt::from_slice(acc).expect("an accumulator this job encoded");
        let other: A = weir_serde_fmt::from_slice(other).expect("an accumulator this job encoded");
        (self.merge)(&mut acc, other);
        weir_serde_fmt::append_to_vec(out, &acc).expect("an accumulator encodes");
    }

    /// Folds `other` into the fixed-size accumulator `acc`, in place.
    ///
    /// # Panics
    ///
    /// When `A`'s encoding is not the size its type promised (a custom `Serialize` that
    /// writes other fields than its `Deserialize` reads: a bug of the program).
    fn merged_in_place(&self, acc: &mut [u8], other: &[u8]) {
        let mut value: A =
            weir_serde_fmt::from_slice(acc).expect("an accumulator this job encoded");
        let other: A = weir_serde_fmt::from_slice(other).expect("an accumulator this job encoded");
        (self.merge)(&mut value, other);
        let written = weir_serde_fmt::to_slice(acc, &value)
            .expect("an accumulator of a fixed size fits its place");
        assert_eq!(written, acc.len(), "an accumulator changed its fixed size");
    }
}

impl<A: Data> Aggregator for SerdeMerge<A> {
    fn accumulator_size(&self) -> Option<usize> {
        self.size
    }

    fn update(&self, acc: &mut [u8], value: &[u8]) {
        self.merged_in_place(acc, value);
    }

    fn merge(&self, acc: &mut [u8], other: &[u8]) {
        self.merged_in_place(acc, other);
    }

    fn init(&self, value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }

    fn update_into(&self, acc: &[u8], value: &[u8], out: &mut Vec<u8>) {
        self.merged(acc, value, out);
    }

    fn merge_into(&self, acc: &[u8], other: &[u8], out: &mut Vec<u8>) {
        self.merged(acc, other, out);
    }
}

/// A kernel hash aggregation of `segments` of `owner`'s memory, merging with `merge`.
pub(crate) fn aggregate_table<A: Data>(
    owner: &Owner,
    segments: usize,
    store: Arc<dyn SpillStore>,
    merge: &Merge<A>,
) -> Result<HashAggregate> {
    Ok(HashAggregate::new(
        owner,
        segments,
        store,
        Box::new(SerdeMerge {
            merge: Arc::clone(merge),
            size: weir_serde_fmt::fixed_size::<A>().filter(|&size| size > 0),
        }),
        AggregateConfig::default(),
    )?)
}

/// Emits every group of a finished aggregation as `(key, accumulator)`, counted by
/// `meter`, and finishes downstream.
fn emit_groups<K: Key, A: Data>(
    aggregate: HashAggregate,
    meter: &mut Meter,
    down: &mut dyn Push<(K, A)>,
) -> Result<()> {
    meter.finishing();
    let mut groups = aggregate.finish()?;
    while let Some((key, acc)) = groups.next()? {
        meter.emitted(key.len() + acc.len());
        down.push((decode_key(key)?, decode(acc)?))?;
        meter.gave(1);
    }
    meter.done(groups.stats().spilled_bytes);
    drop(groups);
    down.finish()
}

/// An accumulator the group cache evicts: encoded and merged into the kernel table,
/// counted by `meter`.
fn evict_into<A: Data>(
    table: &mut HashAggregate,
    meter: &mut Meter,
    scratch: &mut Vec<u8>,
    key: &[u8],
    acc: &A,
) -> Result<()> {
    scratch.clear();
    append_record(scratch, acc)?;
    meter.stored(key.len() + scratch.len());
    Ok(table.push_partial(key, scratch)?)
}

/// Records a combiner's table takes before it judges whether the table reduces them.
const COMBINE_PROBATION: u64 = 1 << 16;
/// A combiner whose table holds more than this percentage of groups per record taken
/// (after [`COMBINE_PROBATION`] records) forwards from then on: its table does not pay.
const COMBINE_MAX_GROUP_PERCENT: u64 = 50;

/// Where a combiner's accumulators go: its kernel table, or — once the table has shown
/// that it does not reduce the input (keys that repeat only in runs, which the cache
/// already folds, or not at all) — straight on to the exchange, as DataFusion skips
/// partial aggregation.
struct CombineOut<K, A> {
    table: Option<HashAggregate>,
    /// A new, empty table for the combiner (its share of memory, its spill store).
    fresh: Box<dyn Fn() -> Result<HashAggregate> + Send>,
    taken: u64,
    meter: Meter,
    down: Box<dyn Push<(K, A)>>,
    pair: Encoded,
}

impl<K: Key, A: Data> CombineOut<K, A> {
    /// An accumulator of the key whose encoding is `key` (from the cache).
    fn put_encoded(&mut self, key: &[u8], acc: A) -> Result<()> {
        if self.table.is_none() {
            self.meter.gave(1);
            return self.down.push((decode_key(key)?, acc));
        }
        let mut value = std::mem::take(&mut self.pair.value);
        value.clear();
        append_record(&mut value, &acc)?;
        let stored = self.store(key, &value);
        self.pair.value = value;
        if !stored? {
            self.meter.gave(1);
            return self.down.push((decode_key(key)?, acc));
        }
        self.taken()
    }

    /// An accumulator of `key`.
    fn put(&mut self, key: K, acc: A) -> Result<()> {
        if self.table.is_none() {
            self.meter.gave(1);
            return self.down.push((key, acc));
        }
        self.pair.set(&key, &acc)?;
        let pair = std::mem::take(&mut self.pair);
        let stored = self.store(&pair.key, &pair.value);
        self.pair = pair;
        if !stored? {
            self.meter.gave(1);
            return self.down.push((key, acc));
        }
        self.taken()
    }

    /// Folds the encoded pair into the table. A full table is never spilled (a combiner
    /// pre-aggregates, and writing its partial groups to disk would only add I/O): its
    /// groups are handed on to the exchange, and a fresh table takes the pair. `false`
    /// when even a fresh table cannot hold it (a group larger than the combiner's memory):
    /// the caller sends it on by itself.
    fn store(&mut self, key: &[u8], value: &[u8]) -> Result<bool> {
        self.meter.stored(key.len() + value.len());
        let table = self.table.as_mut().expect("a combiner with its table");
        if table.try_push_partial(key, value)? {
            return Ok(true);
        }
        // The full table's memory comes home before the new one takes its share.
        let full = self.table.take().expect("a combiner with its table");
        self.hand_on(full)?;
        let fresh = self.table.insert((self.fresh)()?);
        Ok(fresh.try_push_partial(key, value)?)
    }

    /// Counts an accumulator the table took; at the end of the probation, forwards from
    /// now on if the table holds too many groups for the records it took.
    fn taken(&mut self) -> Result<()> {
        self.taken += 1;
        if self.taken != COMBINE_PROBATION {
            return Ok(());
        }
        let table = self.table.as_ref().expect("a table took the records");
        let groups = table.groups_in_memory() as u64;
        if groups * 100 <= self.taken * COMBINE_MAX_GROUP_PERCENT {
            return Ok(());
        }
        let table = self.table.take().expect("a table took the records");
        self.hand_on(table)
    }

    /// Every group of `table` on to the exchange.
    fn hand_on(&mut self, table: HashAggregate) -> Result<()> {
        let mut groups = table.finish()?;
        while let Some((key, acc)) = groups.next()? {
            self.meter.emitted(key.len() + acc.len());
            self.down.push((decode_key(key)?, decode(acc)?))?;
            self.meter.gave(1);
        }
        self.meter.spilled(groups.stats().spilled_bytes);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        match self.table.take() {
            Some(table) => emit_groups(table, &mut self.meter, &mut *self.down),
            None => {
                self.meter.done(0);
                self.down.finish()
            }
        }
    }
}

/// Pre-aggregation before an exchange: a record's accumulator folded into its key's,
/// through the typed [`GroupCache`] when the accumulator has a fixed size, then the
/// kernel table (or, when that does not pay, the exchange).
pub(crate) struct Combine<K, T, A> {
    cache: Option<GroupCache<A>>,
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    lift: Arc<dyn Fn(&T) -> A + Send + Sync>,
    merge: Merge<A>,
    out: CombineOut<K, A>,
}

impl<K: Key, T: Data, A: Data> Combine<K, T, A> {
    pub(crate) fn new(
        ctx: &mut TaskContext,
        key: Arc<dyn Fn(&T) -> K + Send + Sync>,
        lift: Arc<dyn Fn(&T) -> A + Send + Sync>,
        merge: Merge<A>,
        down: Box<dyn Push<(K, A)>>,
    ) -> Result<Combine<K, T, A>> {
        ctx.refuse_checkpoints("an aggregation's combiner")?;
        let OperatorSlot {
            owner,
            segments,
            meter,
        } = ctx.operator(MemoryOp::Combine);
        let store = ctx.spill_store();
        Ok(Combine {
            cache: GroupCache::for_type(),
            key,
            lift,
            out: CombineOut {
                table: Some(aggregate_table(
                    &owner,
                    segments,
                    Arc::clone(&store),
                    &merge,
                )?),
                fresh: {
                    let merge = Arc::clone(&merge);
                    Box::new(move || aggregate_table(&owner, segments, Arc::clone(&store), &merge))
                },
                taken: 0,
                meter,
                down,
                pair: Encoded::default(),
            },
            merge,
        })
    }
}

impl<K: Key, T: Data, A: Data> Push<T> for Combine<K, T, A> {
    fn push(&mut self, record: T) -> Result<()> {
        self.out.meter.took(1);
        let key = (self.key)(&record);
        let value = (self.lift)(&record);
        let out = &mut self.out;
        let value = match &mut self.cache {
            Some(cache) => match cache.fold(&key, value, &self.merge, |key, acc| {
                out.put_encoded(key, acc)
            })? {
                Some(value) => value,
                None => return Ok(()),
            },
            None => value,
        };
        out.put(key, value)
    }

    /// Passed on at once: the operator emits at the end of its input.
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.out.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        let out = &mut self.out;
        out.meter.finishing();
        if let Some(cache) = &mut self.cache {
            cache.flush(|key, acc| out.put_encoded(key, acc))?;
        }
        out.finish()
    }
}

/// The final aggregation after the exchange: partial accumulators merged per key,
/// through the typed [`GroupCache`] when the accumulator has a fixed size.
pub(crate) struct Aggregate<K, A> {
    table: Option<HashAggregate>,
    cache: Option<GroupCache<A>>,
    merge: Merge<A>,
    meter: Meter,
    down: Box<dyn Push<(K, A)>>,
    pair: Encoded,
}

impl<K: Key, A: Data> Aggregate<K, A> {
    pub(crate) fn new(
        ctx: &mut TaskContext,
        merge: Merge<A>,
        down: Box<dyn Push<(K, A)>>,
    ) -> Result<Aggregate<K, A>> {
        ctx.refuse_checkpoints("an aggregation")?;
        let slot = ctx.operator(MemoryOp::Aggregate);
        Ok(Aggregate {
            table: Some(aggregate_table(
                &slot.owner,
                slot.segments,
                ctx.spill_store(),
                &merge,
            )?),
            cache: GroupCache::for_type(),
            merge,
            meter: slot.meter,
            down,
            pair: Encoded::default(),
        })
    }
}

impl<K: Key, A: Data> Push<(K, A)> for Aggregate<K, A> {
    fn push(&mut self, (key, acc): (K, A)) -> Result<()> {
        self.meter.took(1);
        let table = self.table.as_mut().expect("pushed before finish");
        let acc = match &mut self.cache {
            Some(cache) => {
                let (meter, scratch) = (&mut self.meter, &mut self.pair.value);
                match cache.fold(&key, acc, &self.merge, |key, acc| {
                    evict_into(table, meter, scratch, key, &acc)
                })? {
                    Some(acc) => acc,
                    None => return Ok(()),
                }
            }
            None => acc,
        };
        self.pair.set(&key, &acc)?;
        self.meter
            .stored(self.pair.key.len() + self.pair.value.len());
        Ok(table.push_partial(&self.pair.key, &self.pair.value)?)
    }

    /// Passed on at once: the operator emits at the end of its input.
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.meter.finishing();
        let mut table = self.table.take().expect("finished once");
        if let Some(cache) = &mut self.cache {
            let (meter, scratch) = (&mut self.meter, &mut self.pair.value);
            cache.flush(|key, acc| evict_into(&mut table, meter, scratch, key, &acc))?;
        }
        emit_groups(table, &mut self.meter, &mut *self.down)
    }
}

/// An external sort of a task's records by key, with an optional limit.
pub(crate) struct Sort<K, T> {
    sorter: Option<ExternalSorter>,
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    limit: Option<u64>,
    meter: Meter,
    down: Box<dyn Push<T>>,
    pair: Encoded,
}

impl<K: Key, T: Data> Sort<K, T> {
    pub(crate) fn new(
        ctx: &mut TaskContext,
        key: Arc<dyn Fn(&T) -> K + Send + Sync>,
        limit: Option<u64>,
        down: Box<dyn Push<T>>,
    ) -> Result<Sort<K, T>> {
        ctx.refuse_checkpoints("a sort")?;
        let slot = ctx.operator(MemoryOp::Sort);
        Ok(Sort {
            sorter: Some(ExternalSorter::new(
                &slot.owner,
                slot.segments,
                ctx.spill_store(),
                SortConfig::default(),
            )?),
            key,
            limit,
            meter: slot.meter,
            down,
            pair: Encoded::default(),
        })
    }
}

impl<K: Key, T: Data> Push<T> for Sort<K, T> {
    fn push(&mut self, record: T) -> Result<()> {
        self.meter.took(1);
        self.pair.set(&(self.key)(&record), &record)?;
        self.meter
            .stored(self.pair.key.len() + self.pair.value.len());
        let sorter = self.sorter.as_mut().expect("pushed before finish");
        Ok(sorter.push(&self.pair.key, &self.pair.value)?)
    }

    /// Passed on at once: the operator emits at the end of its input.
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.meter.finishing();
        let sorter = self.sorter.take().expect("finished once");
        let mut sorted = sorter.finish()?;
        let mut left = self.limit.unwrap_or(u64::MAX);
        while left > 0
            && let Some((_, record)) = sorted.next()?
        {
            self.meter.emitted(record.len());
            self.down.push(decode(record)?)?;
            self.meter.gave(1);
            left -= 1;
        }
        self.meter.done(sorted.stats().spilled_bytes);
        drop(sorted);
        self.down.finish()
    }
}

/// A kernel hash join shared by its build and probe inputs: the build input fills it
/// (through the lock: both are opened before either runs), the probe input takes it when
/// the build is done and then owns it, so probing takes no lock.
pub(crate) struct Join<L, R> {
    inner: Arc<Mutex<Option<JoinInner<L, R>>>>,
}

struct JoinInner<L, R> {
    join: Option<HashJoin>,
    meter: Meter,
    down: Box<dyn Push<(Option<L>, Option<R>)>>,
    pair: Encoded,
}

impl<L, R> Clone for Join<L, R> {
    fn clone(&self) -> Self {
        Join {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<L: Data, R: Data> Join<L, R> {
    pub(crate) fn new(
        ctx: &mut TaskContext,
        join_type: JoinType,
        down: Box<dyn Push<(Option<L>, Option<R>)>>,
    ) -> Result<Join<L, R>> {
        ctx.refuse_checkpoints("a hash join")?;
        let slot = ctx.operator(MemoryOp::Join);
        let join = HashJoin::new(
            &slot.owner,
            slot.segments,
            ctx.spill_store(),
            join_type,
            JoinConfig::default(),
        )?;
        Ok(Join {
            inner: Arc::new(Mutex::new(Some(JoinInner {
                join: Some(join),
                meter: slot.meter,
                down,
                pair: Encoded::default(),
            }))),
        })
    }

    /// Runs `f` on the join while the build side has it.
    fn building<T>(&self, f: impl FnOnce(&mut JoinInner<L, R>) -> T) -> T {
        let mut inner = self.inner.lock().expect("join");
        f(inner
            .as_mut()
            .expect("the build runs before the probe takes the join"))
    }

    /// The join, for the probe side to own.
    fn take(&self) -> JoinInner<L, R> {
        self.inner
            .lock()
            .expect("join")
            .take()
            .expect("the probe takes the join once")
    }
}

/// Decodes one joined row and pushes it; `probe`, when there, is the typed probe record
/// the row's probe bytes encode (moved, not decoded).
fn push_row<L: Data, R: Data>(
    down: &mut dyn Push<(Option<L>, Option<R>)>,
    meter: &mut Meter,
    row: JoinRow<'_>,
    probe: &mut Option<L>,
) -> Result<()> {
    meter.emitted(row.probe.map_or(0, <[u8]>::len) + row.build.map_or(0, <[u8]>::len));
    let left = match row.probe {
        Some(bytes) => Some(match probe.take() {
            Some(record) => record,
            None => decode(bytes)?,
        }),
        None => None,
    };
    let right = row.build.map(decode).transpose()?;
    down.push((left, right))
}

/// The build (right) input of a join.
pub(crate) struct JoinBuild<K, L, R> {
    pub(crate) join: Join<L, R>,
    pub(crate) key: Arc<dyn Fn(&R) -> K + Send + Sync>,
}

impl<K: Key, L: Data, R: Data> Push<R> for JoinBuild<K, L, R> {
    fn push(&mut self, record: R) -> Result<()> {
        self.join.building(|inner| {
            let JoinInner {
                join, pair, meter, ..
            } = inner;
            pair.set(&(self.key)(&record), &record)?;
            meter.stored(pair.key.len() + pair.value.len());
            Ok(join
                .as_mut()
                .expect("building")
                .push_build(&pair.key, &pair.value)?)
        })
    }

    fn finish(&mut self) -> Result<()> {
        self.join
            .building(|inner| Ok(inner.join.as_mut().expect("building").finish_build()?))
    }
}

/// Probes a join keeps in flight: each probe's bucket is prefetched when its record
/// arrives and looked up this many records later, so the cache misses of a table larger
/// than the cache overlap instead of stalling one after another.
const PROBES_IN_FLIGHT: usize = 16;

/// A probe record waiting for its bucket: the record, its encoded key and record, and its
/// hash.
struct PendingProbe<L> {
    record: Option<L>,
    pair: Encoded,
    hash: Option<ProbeHash>,
}

/// The probe (left) input of a join, [`PROBES_IN_FLIGHT`] records ahead of its lookups;
/// its end drains the spilled partitions and finishes downstream.
pub(crate) struct JoinProbe<K, L, R> {
    shared: Join<L, R>,
    /// The join, once taken from `shared` (at the first record or the end).
    join: Option<JoinInner<L, R>>,
    key: Arc<dyn Fn(&L) -> K + Send + Sync>,
    ring: Vec<PendingProbe<L>>,
    head: usize,
    pending: usize,
}

impl<K, L: Data, R: Data> JoinProbe<K, L, R> {
    pub(crate) fn new(join: Join<L, R>, key: Arc<dyn Fn(&L) -> K + Send + Sync>) -> Self {
        JoinProbe {
            shared: join,
            join: None,
            key,
            ring: (0..PROBES_IN_FLIGHT)
                .map(|_| PendingProbe {
                    record: None,
                    pair: Encoded::default(),
                    hash: None,
                })
                .collect(),
            head: 0,
            pending: 0,
        }
    }

    fn join(&mut self) -> &mut JoinInner<L, R> {
        let shared = &self.shared;
        self.join.get_or_insert_with(|| shared.take())
    }

    /// Probes the oldest pending record.
    fn probe_oldest(&mut self) -> Result<()> {
        let (head, pending) = (self.head, &mut self.pending);
        self.head = (head + 1) % PROBES_IN_FLIGHT;
        *pending -= 1;
        let inner = self.join.as_mut().expect("a pending probe has the join");
        let probe = &mut self.ring[head];
        let join = inner.join.as_mut().expect("probing");
        let (down, meter) = (&mut *inner.down, &mut inner.meter);
        let hash = probe.hash.take().expect("a pending probe has its hash");
        // The kernel's callback answers kernel errors: a failure downstream stops the
        // probe with a placeholder and is returned in its place.
        let mut failure = None;
        let record = &mut probe.record;
        let probed = join.probe_hashed(hash, &probe.pair.key, &probe.pair.value, |row| {
            push_row(down, meter, row, record).map_err(|error| {
                failure = Some(error);
                weir_kernel::KernelError::Malformed {
                    position: 0,
                    what: "a join row its consumer failed on",
                }
            })
        });
        // Unmatched, or sent to a spilled partition: its bytes are what is kept.
        *record = None;
        match failure {
            Some(error) => Err(error),
            None => Ok(probed?),
        }
    }
}

impl<K: Key, L: Data, R: Data> Push<L> for JoinProbe<K, L, R> {
    fn push(&mut self, record: L) -> Result<()> {
        if self.pending == PROBES_IN_FLIGHT {
            self.probe_oldest()?;
        }
        let key = (self.key)(&record);
        let index = (self.head + self.pending) % PROBES_IN_FLIGHT;
        self.join();
        let inner = self.join.as_mut().expect("taken above");
        let join = inner.join.as_mut().expect("probing");
        let slot = &mut self.ring[index];
        slot.pair.set_key(&key);
        // A key the build side certainly lacks, of a join that emits nothing for it, is
        // done here: its record is never encoded.
        let Some(hash) = join.prefetch_unless_filtered(&slot.pair.key) else {
            return Ok(());
        };
        slot.pair.set_value(&record)?;
        inner
            .meter
            .stored(slot.pair.key.len() + slot.pair.value.len());
        slot.hash = Some(hash);
        slot.record = Some(record);
        self.pending += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.join().meter.finishing();
        while self.pending > 0 {
            self.probe_oldest()?;
        }
        let JoinInner {
            join, down, meter, ..
        } = self.join.as_mut().expect("taken above");
        let mut rows = join.take().expect("finished once").finish()?;
        while let Some(row) = rows.next()? {
            push_row(&mut **down, meter, row, &mut None)?;
        }
        let stats = rows.stats();
        meter.took(stats.build_records + stats.probe_records);
        meter.gave(stats.output_rows);
        meter.done(stats.spilled_bytes);
        drop(rows);
        down.finish()
    }
}
