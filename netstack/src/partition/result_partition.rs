//! `ResultPartition`: the output of one producer task, N subpartitions over one buffer
//! pool, written by one thread.
//!
//! ```text
//!   try_emit_record(bytes, i) ──▶ [len u32 LE][bytes …] ──▶ builder of i ──full──▶ finish;
//!                                                             │            next segment from pool
//!                                         consumer (queued at first write) ▼
//!   LocalBufferPool ──try_request──▶ segment ──▶ ResultSubpartition i ──poll_buffer──▶ reader
//! ```
//!
//! Records are framed as a 4-byte little-endian length and the bytes, and span buffers
//! freely: a full builder is finished and the next one comes from the pool. A broadcast
//! record is written once, into one broadcast builder whose consumer every subpartition
//! reads through its own copy (one copy of the bytes, N references); switching between
//! unicast and broadcast writes finishes the other mode's open builders, so the order of
//! records per subpartition is the order they were written.
//!
//! **No buffer, no blocking.** When the pool has no free segment, the `try_` methods
//! answer [`Emit::NoBuffer`] instead of waiting (expected pressure is a typed answer). A
//! record may then be partly written: the partition remembers where it stopped, and the
//! caller must call the same method again with the same record and target (typically after
//! a consumer returned buffers), which continues where it stopped. Every byte is therefore
//! written exactly once and the stream stays well framed. Until the pending record is done,
//! calling anything else that writes is a bug and panics. Blocking, if wanted, is a loop
//! around the `try_` call that waits on the pool (not provided here).
//!
//! Each subpartition holds at most one unfinished builder, so the pool must be able to
//! lend one segment per subpartition plus one, or a writer could wait forever on segments
//! held by half-full builders: `new` asserts `max_segments > subpartitions`.

use std::fmt;
use std::sync::Arc;
use std::task::Waker;

use super::ids::SubpartitionIndex;
use super::subpartition::ResultSubpartition;
use crate::buffer::{BufferBuilder, DataType};
use crate::constants::RECORD_LENGTH_PREFIX_BYTES;
use crate::pool::LocalBufferPool;

/// The answer of a `try_` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "on NoBuffer the same call must be repeated"]
pub enum Emit {
    /// Everything was written.
    Done,
    /// The pool had no free segment; call again with the same arguments to continue.
    NoBuffer,
}

/// Counters of a partition, read with [`ResultPartition::metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionMetrics {
    /// Records completely written (a broadcast record counts once).
    pub records_out: u64,
    /// Bytes written into buffers, length prefixes included (a broadcast record's bytes
    /// once: they are shared).
    pub bytes_written: u64,
    /// Buffers handed out by the subpartitions (data and events).
    pub buffers_out: u64,
    /// Bytes handed out by the subpartitions (data and events).
    pub bytes_out: u64,
    /// Finished data buffers queued in all subpartitions now.
    pub backlog: usize,
    /// Bytes committed and queued in all subpartitions, not yet handed out.
    pub queued_bytes: u64,
    /// Segments the partition's pool holds now (free or lent).
    pub pool_held: usize,
    /// The pool's current size (its share of the grant).
    pub pool_size: usize,
    /// Times a write answered [`Emit::NoBuffer`] (backpressure).
    pub no_buffer_answers: u64,
    /// Time a [`RecordWriter`](super::RecordWriter) spent waiting for a buffer (zero when
    /// read from the partition itself, which never waits).
    pub back_pressured: std::time::Duration,
}

impl PartitionMetrics {
    /// The pool's usage: segments held over its current size (above 1 in overdraft).
    pub fn pool_usage(&self) -> f64 {
        self.pool_held as f64 / self.pool_size.max(1) as f64
    }
}

/// Where a write stopped for want of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    kind: Target,
    record_len: usize,
    // The framed bytes already written.
    offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    One(SubpartitionIndex),
    All,
}

/// The output of one producer: N subpartitions over one buffer pool, written by one
/// thread; records are framed as a 4-byte little-endian length and the bytes and span
/// buffers freely.
///
/// **No buffer, no blocking.** When the pool has no free segment, the `try_` methods answer
/// [`Emit::NoBuffer`] instead of waiting. A record may then be partly written: the
/// partition remembers where it stopped, and the caller must repeat the same call with the
/// same record and target (typically after readers returned buffers), which continues where
/// it stopped, so every byte is written exactly once. Until then any other write panics.
///
/// Each subpartition holds at most one unfinished builder, so the pool must be guaranteed
/// one segment per subpartition plus one, or a writer could wait forever on segments held
/// by half-full builders.
pub struct ResultPartition {
    pool: LocalBufferPool,
    // Whether the pool counts segments per subpartition (its cap).
    counted: bool,
    subpartitions: Vec<Arc<ResultSubpartition>>,
    // The unfinished unicast builder of each subpartition, if any.
    builders: Vec<Option<BufferBuilder>>,
    // The unfinished broadcast builder, read by every subpartition, if any.
    broadcast: Option<BufferBuilder>,
    pending: Option<Pending>,
    // Woken when a write that answered NoBuffer may succeed.
    waker: Option<Waker>,
    finished: bool,
    released: bool,
    records_out: u64,
    bytes_written: u64,
    no_buffer_answers: u64,
}

impl ResultPartition {
    /// A partition of `subpartitions` subpartitions writing into segments of `pool`.
    ///
    /// # Panics
    ///
    /// When `subpartitions` is 0 or does not fit a `u32`, the pool is guaranteed no more
    /// segments than there are subpartitions, or the pool counts segments for a different
    /// number of subpartitions.
    pub fn new(pool: LocalBufferPool, subpartitions: usize) -> ResultPartition {
        assert!(
            subpartitions >= 1,
            "a partition has at least one subpartition"
        );
        assert!(
            pool.min_segments() > subpartitions,
            "a pool guaranteed {} segments cannot serve {subpartitions} subpartitions \
             (needs one each plus one)",
            pool.min_segments()
        );
        let counted = pool.spec().subpartitions;
        assert!(
            counted == 0 || counted == subpartitions,
            "a pool counting {counted} subpartitions serves a partition of {subpartitions}"
        );
        ResultPartition {
            pool,
            counted: counted != 0,
            subpartitions: (0..subpartitions)
                .map(|i| Arc::new(ResultSubpartition::new(SubpartitionIndex::from_usize(i))))
                .collect(),
            builders: (0..subpartitions).map(|_| None).collect(),
            broadcast: None,
            pending: None,
            waker: None,
            finished: false,
            released: false,
            records_out: 0,
            bytes_written: 0,
            no_buffer_answers: 0,
        }
    }

    /// The number of subpartitions.
    pub fn subpartition_count(&self) -> usize {
        self.subpartitions.len()
    }

    /// Subpartition `index`, to hand to its reader (any thread).
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn subpartition(&self, index: SubpartitionIndex) -> Arc<ResultSubpartition> {
        Arc::clone(&self.subpartitions[index.as_usize()])
    }

    /// Writes `record`, length prefixed, to subpartition `target`.
    ///
    /// # Panics
    ///
    /// When `target` is out of range, the record exceeds `u32::MAX` bytes, the partition
    /// finished or was released, or another write is pending (see the module docs).
    pub fn try_emit_record(&mut self, record: &[u8], target: SubpartitionIndex) -> Emit {
        assert!(
            target.as_usize() < self.subpartitions.len(),
            "{target} of a partition of {}",
            self.subpartitions.len()
        );
        self.emit(record, Target::One(target))
    }

    /// Writes `record`, length prefixed, to every subpartition: the bytes once, into a
    /// buffer every subpartition reads.
    ///
    /// # Panics
    ///
    /// As [`try_emit_record`](Self::try_emit_record).
    pub fn try_broadcast_record(&mut self, record: &[u8]) -> Emit {
        self.emit(record, Target::All)
    }

    fn emit(&mut self, record: &[u8], kind: Target) -> Emit {
        // Fast path: the record fits the open unicast builder of its target.
        if let Target::One(index) = kind
            && self.pending.is_none()
            && let Some(builder) = &mut self.builders[index.as_usize()]
            && builder.try_append_framed(record)
        {
            let full = builder.is_full();
            self.bytes_written += (RECORD_LENGTH_PREFIX_BYTES + record.len()) as u64;
            self.records_out += 1;
            if full {
                self.finish_full(kind);
            }
            return Emit::Done;
        }
        self.assert_writable();
        let prefix = u32::try_from(record.len())
            .unwrap_or_else(|_| panic!("a record of {} bytes exceeds u32::MAX", record.len()))
            .to_le_bytes();
        let mut pending = self.pending.take().unwrap_or_else(|| {
            self.switch_mode(kind);
            Pending {
                kind,
                record_len: record.len(),
                offset: 0,
            }
        });
        assert!(
            pending.kind == kind && pending.record_len == record.len(),
            "a pending write of {} bytes to {:?} must be repeated before another",
            pending.record_len,
            pending.kind
        );
        match self.write_framed(kind, &prefix, record, pending.offset) {
            Ok(()) => {
                self.records_out += 1;
                Emit::Done
            }
            Err(offset) => {
                pending.offset = offset;
                self.pending = Some(pending);
                self.no_buffer_answers += 1;
                Emit::NoBuffer
            }
        }
    }

    /// Finishes the open builders of the other mode, so a subpartition reads its records
    /// in the order they were written.
    fn switch_mode(&mut self, kind: Target) {
        match kind {
            Target::One(_) => {
                if let Some(broadcast) = self.broadcast.take() {
                    broadcast.finish();
                }
            }
            Target::All => {
                for builder in self.builders.iter_mut().filter_map(Option::take) {
                    builder.finish();
                }
            }
        }
    }

    /// Writes the framed record (`prefix` then `record`) for `kind` from framed offset
    /// `offset`. `Err` carries the offset reached when no segment was free.
    fn write_framed(
        &mut self,
        kind: Target,
        prefix: &[u8; RECORD_LENGTH_PREFIX_BYTES],
        record: &[u8],
        mut offset: usize,
    ) -> Result<(), usize> {
        let framed_len = RECORD_LENGTH_PREFIX_BYTES + record.len();
        while offset < framed_len {
            // A segment asked for after the record's first byte may be an overdraft one.
            let Some(builder) = self.builder(kind, offset > 0) else {
                return Err(offset);
            };
            let written = if offset < RECORD_LENGTH_PREFIX_BYTES {
                builder.append(&prefix[offset..])
            } else {
                builder.append(&record[offset - RECORD_LENGTH_PREFIX_BYTES..])
            };
            assert!(written > 0, "a builder with room took no bytes");
            offset += written;
            // A debloated (trimmed) buffer full in the middle of a record, with no segment
            // to go on with: grow it by what the record still needs (up to the segment)
            // rather than block mid-record (Flink's FLINK-33077). Only by that much: under
            // steady backpressure the pool is always empty, and growing to the whole
            // segment would undo debloating.
            let trimmed_full = offset < framed_len
                && builder.is_full()
                && builder.capacity() < builder.segment_size();
            if trimmed_full
                && !self.pool.may_lend(true)
                && let Some(builder) = self.open_builder(kind)
            {
                builder.trim(builder.written_bytes() + (framed_len - offset));
            }
            self.bytes_written += written as u64;
            self.commit_or_finish(kind);
        }
        Ok(())
    }

    /// The open builder for `kind`, if any.
    fn open_builder(&mut self, kind: Target) -> Option<&mut BufferBuilder> {
        match kind {
            Target::One(index) => self.builders[index.as_usize()].as_mut(),
            Target::All => self.broadcast.as_mut(),
        }
    }

    /// The open builder for `kind`, taking a segment from the pool (and queueing its
    /// consumer, or a copy of it in every subpartition for broadcast) when there is none;
    /// `None` when the pool has none to lend.
    fn builder(&mut self, kind: Target, mid_record: bool) -> Option<&mut BufferBuilder> {
        let slot = match kind {
            Target::One(index) => &mut self.builders[index.as_usize()],
            Target::All => &mut self.broadcast,
        };
        if slot.is_none() {
            let counted = match kind {
                Target::One(index) if self.counted => Some(index.as_usize()),
                _ => None,
            };
            let segment = self
                .pool
                .request(counted, mid_record, self.waker.as_ref())?;
            let (mut builder, consumer) = segment.into_builder(DataType::Data);
            // Debloating: the smallest size any reader of the buffer asked for.
            let size = match kind {
                Target::One(index) => self.subpartitions[index.as_usize()].buffer_size(),
                Target::All => self
                    .subpartitions
                    .iter()
                    .map(|s| s.buffer_size())
                    .filter(|&size| size > 0)
                    .min()
                    .unwrap_or(0),
            };
            if size > 0 {
                builder.trim(size);
            }
            match kind {
                Target::One(index) => self.subpartitions[index.as_usize()].add(consumer),
                Target::All => {
                    let (last, rest) = self
                        .subpartitions
                        .split_last()
                        .expect("a partition has a subpartition");
                    for subpartition in rest {
                        subpartition.add(consumer.copy());
                    }
                    last.add(consumer);
                }
            }
            *slot = Some(builder);
        }
        slot.as_mut()
    }

    /// Publishes the bytes written for `kind`; a full builder is finished, so its buffer
    /// counts in the backlog and the next write takes a new segment.
    fn commit_or_finish(&mut self, kind: Target) {
        let slot = match kind {
            Target::One(index) => &mut self.builders[index.as_usize()],
            Target::All => &mut self.broadcast,
        };
        match slot {
            Some(builder) if builder.is_full() => self.finish_full(kind),
            Some(builder) => builder.commit(),
            None => {}
        }
    }

    /// Finishes the full open builder for `kind`. A finished buffer is readable without a
    /// flush: its reader is told, or it could sleep on it while this writer waits for the
    /// buffer to come back.
    fn finish_full(&mut self, kind: Target) {
        let slot = match kind {
            Target::One(index) => &mut self.builders[index.as_usize()],
            Target::All => &mut self.broadcast,
        };
        if let Some(builder) = slot.take() {
            builder.finish();
        }
        match kind {
            Target::One(index) => self.subpartitions[index.as_usize()].notify_data_available(),
            Target::All => self
                .subpartitions
                .iter()
                .for_each(|s| s.notify_data_available()),
        }
    }

    fn finish_builders(&mut self) {
        let broadcast = self.broadcast.take();
        for builder in self
            .builders
            .iter_mut()
            .filter_map(Option::take)
            .chain(broadcast)
        {
            builder.finish();
        }
    }

    /// Writes one event of `data_type` with payload `bytes` to every subpartition: one
    /// segment, shared by all (N references, no copies). A priority event overtakes queued
    /// data; any other event follows every record written before it, so the open builders
    /// are finished first.
    ///
    /// # Panics
    ///
    /// When `data_type` is data or EndOfPartition (use [`try_finish`](Self::try_finish)),
    /// the payload exceeds a segment, a record write is pending, or the partition finished
    /// or was released.
    pub fn try_broadcast_event(&mut self, data_type: DataType, bytes: &[u8]) -> Emit {
        assert!(data_type.is_event(), "{data_type:?} is not an event");
        assert_ne!(
            data_type,
            DataType::EndOfPartition,
            "try_finish ends a partition"
        );
        self.broadcast_event(data_type, bytes)
    }

    fn broadcast_event(&mut self, data_type: DataType, bytes: &[u8]) -> Emit {
        self.assert_writable();
        assert!(
            self.pending.is_none(),
            "an event while a record write is pending"
        );
        let Some(mut segment) = self.pool.request(None, false, self.waker.as_ref()) else {
            self.no_buffer_answers += 1;
            return Emit::NoBuffer;
        };
        assert!(
            bytes.len() <= segment.size(),
            "an event of {} bytes exceeds a {}-byte segment",
            bytes.len(),
            segment.size()
        );
        segment.segment_mut().put_bytes(0, bytes);
        let event = segment.into_buffer(bytes.len(), data_type);
        if !data_type.is_priority() {
            self.finish_builders();
        }
        for subpartition in &self.subpartitions {
            if data_type == DataType::EndOfPartition {
                subpartition.finish(event.clone());
            } else {
                subpartition.add_event(event.clone());
            }
        }
        Emit::Done
    }

    /// Sets the waker woken when a write that answered [`Emit::NoBuffer`] may succeed
    /// (a segment came back to the pool or the pool grew); registered with the pool in the
    /// same step as the failed request, so a return in between cannot be missed.
    pub fn set_waker(&mut self, waker: Option<Waker>) {
        self.waker = waker;
    }

    /// Makes everything written to subpartition `index` so far available to its reader.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn flush(&mut self, index: SubpartitionIndex) {
        self.subpartitions[index.as_usize()].flush();
    }

    /// Makes everything written so far available to the readers, unfinished buffers too.
    pub fn flush_all(&mut self) {
        for subpartition in &self.subpartitions {
            subpartition.flush();
        }
    }

    /// Finishes every open buffer and queues EndOfPartition in every subpartition; nothing
    /// may be written afterwards. Answers [`Emit::NoBuffer`] (call again) when the pool has
    /// no segment for the event.
    ///
    /// # Panics
    ///
    /// When a record write is pending, or the partition finished or was released.
    pub fn try_finish(&mut self) -> Emit {
        let emit = self.broadcast_event(DataType::EndOfPartition, &[]);
        self.finished = emit == Emit::Done;
        emit
    }

    /// Drops every open builder and everything queued, in flight or not (a cancelled or
    /// failed task): each segment goes home once the buffers readers still hold drop.
    pub fn release(&mut self) {
        self.released = true;
        self.pending = None;
        self.broadcast = None;
        self.builders.iter_mut().for_each(|builder| *builder = None);
        for subpartition in &self.subpartitions {
            subpartition.release();
        }
    }

    /// Whether EndOfPartition was queued.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether a record write stopped for want of a buffer and must be repeated.
    pub fn is_write_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The counters now.
    pub fn metrics(&self) -> PartitionMetrics {
        let mut metrics = PartitionMetrics {
            records_out: self.records_out,
            bytes_written: self.bytes_written,
            no_buffer_answers: self.no_buffer_answers,
            pool_held: self.pool.held_segments(),
            pool_size: self.pool.size(),
            ..PartitionMetrics::default()
        };
        for subpartition in &self.subpartitions {
            let counts = subpartition.metrics();
            metrics.buffers_out += counts.buffers_out;
            metrics.bytes_out += counts.bytes_out;
            metrics.backlog += counts.backlog;
            metrics.queued_bytes += counts.queued_bytes;
        }
        metrics
    }

    fn assert_writable(&self) {
        assert!(!self.finished, "a write after the partition finished");
        assert!(!self.released, "a write after the partition was released");
    }
}

impl fmt::Debug for ResultPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultPartition")
            .field("subpartitions", &self.subpartitions.len())
            .field("pool", &self.pool)
            .field("pending", &self.pending)
            .field("finished", &self.finished)
            .field("released", &self.released)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::NetworkBuffer;
    use crate::buffer::test_support::{Rng, manager};
    use crate::partition::{ChannelSelector, HashSelector};
    use crate::pool::{LocalPoolSpec, NetworkBufferPool};

    /// What one subpartition's reader saw: the data byte stream, and the events with the
    /// number of stream bytes read before each.
    #[derive(Debug, Default)]
    struct Reader {
        stream: Vec<u8>,
        events: Vec<(DataType, Vec<u8>, usize)>,
    }

    impl Reader {
        fn poll_all(&mut self, subpartition: &ResultSubpartition) {
            while let Some(polled) = subpartition.poll_buffer() {
                let buffer = polled.buffer;
                match buffer.data_type() {
                    DataType::Data => self.stream.extend_from_slice(buffer.as_bytes()),
                    other => {
                        let at = self.stream.len();
                        self.events.push((other, buffer.as_bytes().to_vec(), at));
                    }
                }
            }
        }

        /// The length-prefixed records of the stream, which must end on a record boundary.
        fn records(&self) -> Vec<Vec<u8>> {
            let mut records = Vec::new();
            let mut rest = &self.stream[..];
            while !rest.is_empty() {
                let (prefix, tail) = rest.split_at(RECORD_LENGTH_PREFIX_BYTES);
                let len = u32::from_le_bytes(prefix.try_into().unwrap()) as usize;
                records.push(tail[..len].to_vec());
                rest = &tail[len..];
            }
            records
        }
    }

    fn readers(partition: &ResultPartition) -> Vec<Reader> {
        (0..partition.subpartition_count())
            .map(|_| Reader::default())
            .collect()
    }

    fn poll_all(partition: &ResultPartition, readers: &mut [Reader]) {
        for (i, reader) in readers.iter_mut().enumerate() {
            reader.poll_all(&partition.subpartition(SubpartitionIndex::from_usize(i)));
        }
    }

    /// Repeats `write` until done, draining every reader on NoBuffer; counts the NoBuffers.
    fn until_done(
        partition: &mut ResultPartition,
        readers: &mut [Reader],
        mut write: impl FnMut(&mut ResultPartition) -> Emit,
    ) -> usize {
        let mut waits = 0;
        while write(partition) == Emit::NoBuffer {
            waits += 1;
            assert!(waits < 1000, "no progress");
            poll_all(partition, readers);
        }
        waits
    }

    /// Seeded records of 0 to 10 000 bytes (some larger than two 4 KiB buffers) to random
    /// subpartitions through a pool of 5 segments: every record arrives once, in order per
    /// subpartition, despite many NoBuffer answers.
    #[test]
    fn random_records_arrive_once_in_order_per_subpartition() {
        let seed = 0x5eed_0001;
        let mut rng = Rng::new(seed);
        let manager = manager(5);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 5).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(4, 5).unwrap(), 3);
        let mut readers = readers(&partition);
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
        let count = if cfg!(miri) { 12 } else { 200 };
        let mut waits = 0;
        for _ in 0..count {
            let len = if rng.below(4) == 0 {
                rng.below(10_000)
            } else {
                rng.below(300)
            };
            let record = rng.bytes(len);
            let target = SubpartitionIndex::from_usize(rng.below(3));
            waits += until_done(&mut partition, &mut readers, |p| {
                p.try_emit_record(&record, target)
            });
            expected[target.as_usize()].push(record);
            if rng.below(10) == 0 {
                partition.flush_all();
                poll_all(&partition, &mut readers);
            }
        }
        assert!(waits > 0, "seed {seed}: the pool never ran dry");
        until_done(&mut partition, &mut readers, ResultPartition::try_finish);
        poll_all(&partition, &mut readers);
        for (i, reader) in readers.iter().enumerate() {
            assert_eq!(
                reader.records(),
                expected[i],
                "seed {seed}: subpartition {i}"
            );
            let end = (DataType::EndOfPartition, Vec::new(), reader.stream.len());
            assert_eq!(reader.events, [end], "seed {seed}");
        }
        let metrics = partition.metrics();
        let framed: usize = expected.iter().flatten().map(|r| r.len() + 4).sum();
        assert_eq!(metrics.records_out, count);
        assert_eq!(metrics.bytes_written, framed as u64);
        assert_eq!(metrics.bytes_out, framed as u64);
        assert_eq!(metrics.backlog, 0);
        assert!(metrics.no_buffer_answers >= waits as u64);
        assert!(metrics.buffers_out as usize >= framed / 4096);
        drop((partition, global));
        manager.leak_check().unwrap();
    }

    /// Broadcast records and events: every subpartition sees the same stream, events at
    /// the record boundary where they were written, priority events ahead of queued data.
    #[test]
    fn broadcast_records_and_events_keep_their_order() {
        // 2 + 1 + 4 + 1 + 1 segments: nothing is read until the end.
        let manager = manager(9);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 9).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(9, 9).unwrap(), 2);
        let mut readers = readers(&partition);
        let big = Rng::new(3).bytes(5000);
        assert_eq!(partition.try_broadcast_record(b"first"), Emit::Done);
        assert_eq!(
            partition.try_broadcast_event(DataType::Barrier, b"cp-1"),
            Emit::Done
        );
        assert_eq!(partition.try_broadcast_record(&big), Emit::Done);
        assert_eq!(
            partition.try_emit_record(b"only-1", SubpartitionIndex(1)),
            Emit::Done
        );
        assert_eq!(
            partition.try_broadcast_event(DataType::PriorityEvent, b"cancel"),
            Emit::Done
        );
        assert_eq!(partition.try_finish(), Emit::Done);
        assert!(partition.is_finished());
        poll_all(&partition, &mut readers);
        for (i, reader) in readers.iter().enumerate() {
            let mut expected = vec![b"first".to_vec(), big.clone()];
            if i == 1 {
                expected.push(b"only-1".to_vec());
            }
            assert_eq!(reader.records(), expected);
            assert_eq!(
                reader.events,
                [
                    (DataType::PriorityEvent, b"cancel".to_vec(), 0),
                    (DataType::Barrier, b"cp-1".to_vec(), 9),
                    (DataType::EndOfPartition, Vec::new(), reader.stream.len()),
                ]
            );
        }
        assert_eq!(partition.metrics().records_out, 3);
        drop((partition, global));
        manager.leak_check().unwrap();
    }

    /// A broadcast record is written once: every subpartition reads the same segment.
    /// A reader asks for 256-byte buffers: new buffers are trimmed, and a record's last
    /// buffer grows past the hint when the pool has nothing more to lend.
    #[test]
    fn debloated_buffers_are_trimmed_and_grow_rather_than_block_mid_record() {
        let manager = manager(2);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(2, 2).unwrap(), 1);
        let subpartition = partition.subpartition(SubpartitionIndex(0));
        subpartition.set_buffer_size(256);
        let target = SubpartitionIndex(0);
        assert_eq!(partition.try_emit_record(&[1; 200], target), Emit::Done);
        partition.flush_all();
        let first = subpartition.poll_buffer().unwrap().buffer;
        assert_eq!(first.len(), 204);
        // 52 bytes end the first trimmed buffer, 256 fill a second one; the pool has no
        // third segment, so the second grows by the framed record's last 696 bytes (and
        // no more).
        assert_eq!(partition.try_emit_record(&[2; 1000], target), Emit::Done);
        assert_eq!(
            partition.try_emit_record(&[3; 10], target),
            Emit::NoBuffer,
            "the grown buffer has no room past the record"
        );
        partition.flush_all();
        let sizes: Vec<usize> = std::iter::from_fn(|| subpartition.poll_buffer())
            .map(|p| p.buffer.len())
            .collect();
        assert_eq!(sizes, [52, 952]);
        drop(first);
        assert_eq!(partition.try_emit_record(&[3; 10], target), Emit::Done);
        drop((partition, subpartition, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_broadcast_record_is_one_copy_read_by_every_subpartition() {
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(4, 4).unwrap(), 3);
        assert_eq!(partition.try_broadcast_record(b"to all"), Emit::Done);
        partition.flush_all();
        let buffers: Vec<NetworkBuffer> = (0..3)
            .map(|i| {
                let subpartition = partition.subpartition(SubpartitionIndex::from_usize(i));
                subpartition.poll_buffer().unwrap().buffer
            })
            .collect();
        assert!(buffers.iter().all(|b| b.as_bytes() == b"\x06\0\0\0to all"));
        assert!(buffers[1].shares_segment_with(&buffers[0]));
        assert!(buffers[2].shares_segment_with(&buffers[0]));
        assert_eq!(partition.metrics().bytes_written, 10);
        assert_eq!(partition.metrics().pool_held, 1);
        drop((buffers, partition, global));
        manager.leak_check().unwrap();
    }

    /// With a pool that counts per subpartition, a subpartition at its cap gets no more
    /// segments while the others still do.
    #[test]
    fn a_subpartition_at_its_cap_waits_while_the_others_write() {
        let manager = manager(16);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 16).unwrap();
        let spec = LocalPoolSpec {
            max_per_subpartition: 2,
            ..LocalPoolSpec::for_partition(2)
        };
        let mut partition = ResultPartition::new(global.create_pool(spec).unwrap(), 2);
        let mut readers = readers(&partition);
        let full = vec![3; 4096 - RECORD_LENGTH_PREFIX_BYTES];
        for _ in 0..2 {
            assert_eq!(
                partition.try_emit_record(&full, SubpartitionIndex(0)),
                Emit::Done
            );
        }
        assert_eq!(
            partition.try_emit_record(b"x", SubpartitionIndex(0)),
            Emit::NoBuffer
        );
        poll_all(&partition, &mut readers);
        assert_eq!(
            partition.try_emit_record(b"x", SubpartitionIndex(0)),
            Emit::Done,
            "its buffers were read and came home"
        );
        assert_eq!(
            partition.try_emit_record(b"y", SubpartitionIndex(1)),
            Emit::Done
        );
        until_done(&mut partition, &mut readers, ResultPartition::try_finish);
        poll_all(&partition, &mut readers);
        assert_eq!(readers[0].records(), [full.clone(), full, b"x".to_vec()]);
        assert_eq!(readers[1].records(), [b"y".to_vec()]);
        drop((partition, global));
        manager.leak_check().unwrap();
    }

    /// A broadcast stopped half-way for want of a buffer continues where it stopped.
    #[test]
    fn a_pending_broadcast_continues_where_it_stopped() {
        let manager = manager(3);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 3).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(3, 3).unwrap(), 2);
        let mut readers = readers(&partition);
        // Four segments' worth, written once for both subpartitions.
        let record = Rng::new(9).bytes(13_000);
        assert_eq!(partition.try_broadcast_record(&record), Emit::NoBuffer);
        assert!(partition.is_write_pending());
        let waits = until_done(&mut partition, &mut readers, |p| {
            p.try_broadcast_record(&record)
        });
        assert!(waits >= 1);
        assert!(!partition.is_write_pending());
        until_done(&mut partition, &mut readers, ResultPartition::try_finish);
        poll_all(&partition, &mut readers);
        for reader in &readers {
            assert_eq!(reader.records(), std::slice::from_ref(&record));
        }
        drop((partition, global));
        manager.leak_check().unwrap();
    }

    #[test]
    #[should_panic(expected = "must be repeated before another")]
    fn another_write_while_one_is_pending_is_a_bug() {
        let manager = manager(2);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(2, 2).unwrap(), 1);
        let record = vec![7; 9000];
        assert_eq!(
            partition.try_emit_record(&record, SubpartitionIndex(0)),
            Emit::NoBuffer
        );
        let _ = partition.try_emit_record(b"other", SubpartitionIndex(0));
    }

    /// Releasing with buffers queued, in a reader's hands and half written returns every
    /// segment once the reader lets go.
    #[test]
    fn release_while_in_flight_returns_every_segment() {
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        let pool = global.create_local_pool(3, 4).unwrap();
        let mut partition = ResultPartition::new(pool, 2);
        let subpartition = partition.subpartition(SubpartitionIndex(0));
        let record = vec![1; 5000];
        assert_eq!(
            partition.try_emit_record(&record, SubpartitionIndex(0)),
            Emit::Done
        );
        assert_eq!(
            partition.try_emit_record(b"small", SubpartitionIndex(1)),
            Emit::Done
        );
        let in_hand = subpartition.poll_buffer().unwrap().buffer;
        assert_eq!(in_hand.len(), 4096);
        let big = vec![2; 9000];
        assert_eq!(
            partition.try_emit_record(&big, SubpartitionIndex(1)),
            Emit::NoBuffer
        );
        partition.release();
        assert!(subpartition.poll_buffer().is_none());
        assert_eq!(
            global.free_segments(),
            0,
            "the local pool keeps what it fetched, up to its size"
        );
        drop(in_hand);
        drop((subpartition, partition));
        assert_eq!(global.free_segments(), 4);
        drop(global);
        manager.leak_check().unwrap();
    }

    /// The writer on its own thread, a reader polling every subpartition on this one: on
    /// NoBuffer the writer yields until the reader has returned buffers.
    #[test]
    fn writer_and_reader_on_two_threads() {
        let mut rng = Rng::new(0x5eed_0002);
        let count = if cfg!(miri) { 6 } else { 150 };
        let records: Vec<(Vec<u8>, SubpartitionIndex)> = (0..count)
            .map(|_| {
                let len = rng.below(6000);
                (rng.bytes(len), SubpartitionIndex::from_usize(rng.below(2)))
            })
            .collect();
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(3, 4).unwrap(), 2);
        let subpartitions = [
            partition.subpartition(SubpartitionIndex(0)),
            partition.subpartition(SubpartitionIndex(1)),
        ];
        let to_write = records.clone();
        let writer = std::thread::spawn(move || {
            for (record, target) in &to_write {
                while partition.try_emit_record(record, *target) == Emit::NoBuffer {
                    std::thread::yield_now();
                }
            }
            while partition.try_finish() == Emit::NoBuffer {
                std::thread::yield_now();
            }
            partition
        });
        let mut readers = [Reader::default(), Reader::default()];
        while readers.iter().any(|r| r.events.is_empty()) {
            for (reader, subpartition) in readers.iter_mut().zip(&subpartitions) {
                reader.poll_all(subpartition);
            }
            std::thread::yield_now();
        }
        let partition = writer.join().unwrap();
        for (i, reader) in readers.iter().enumerate() {
            let expected: Vec<Vec<u8>> = records
                .iter()
                .filter(|(_, target)| target.as_usize() == i)
                .map(|(record, _)| record.clone())
                .collect();
            assert_eq!(reader.records(), expected, "subpartition {i}");
        }
        drop((subpartitions, partition, global));
        manager.leak_check().unwrap();
    }

    /// Hash selection end to end: every record lands on the channel its key picks.
    #[test]
    fn records_routed_by_a_hash_selector_land_on_their_channel() {
        let mut rng = Rng::new(21);
        let manager = manager(6);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 6).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(6, 6).unwrap(), 4);
        let mut readers = readers(&partition);
        let mut selector = HashSelector::new(|record: &[u8]| u32::from(record[0]));
        selector.setup(4);
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 4];
        for _ in 0..40 {
            let len = 1 + rng.below(50);
            let record = rng.bytes(len);
            let channel = selector.select_channel(&record);
            let target = channel.to_subpartition();
            until_done(&mut partition, &mut readers, |p| {
                p.try_emit_record(&record, target)
            });
            expected[channel.as_usize()].push(record);
        }
        until_done(&mut partition, &mut readers, ResultPartition::try_finish);
        poll_all(&partition, &mut readers);
        for (i, reader) in readers.iter().enumerate() {
            assert_eq!(reader.records(), expected[i]);
        }
        drop((partition, global));
        manager.leak_check().unwrap();
    }
}
