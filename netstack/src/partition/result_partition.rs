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
//! freely: a full builder is finished and the next one comes from the pool.
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
    /// Bytes written into buffers, length prefixes included (a broadcast record counts
    /// once per subpartition).
    pub bytes_written: u64,
    /// Buffers handed out by the subpartitions (data and events).
    pub buffers_out: u64,
    /// Bytes handed out by the subpartitions (data and events).
    pub bytes_out: u64,
    /// Finished data buffers queued in all subpartitions now.
    pub backlog: usize,
    /// Times a write answered [`Emit::NoBuffer`] (backpressure).
    pub no_buffer_answers: u64,
}

/// Where a write stopped for want of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    kind: Target,
    record_len: usize,
    // The subpartition being written and the framed bytes already in it.
    subpartition: usize,
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
/// Each subpartition holds at most one unfinished builder, so the pool must be able to lend
/// one segment per subpartition plus one, or a writer could wait forever on segments held
/// by half-full builders.
pub struct ResultPartition {
    pool: LocalBufferPool,
    subpartitions: Vec<Arc<ResultSubpartition>>,
    // The unfinished builder of each subpartition, if any.
    builders: Vec<Option<BufferBuilder>>,
    pending: Option<Pending>,
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
    /// When `subpartitions` is 0 or does not fit a `u32`, or the pool may hold no more
    /// segments than there are subpartitions.
    pub fn new(pool: LocalBufferPool, subpartitions: usize) -> ResultPartition {
        assert!(
            subpartitions >= 1,
            "a partition has at least one subpartition"
        );
        assert!(
            pool.max_segments() > subpartitions,
            "a pool of at most {} segments cannot serve {subpartitions} subpartitions \
             (needs one each plus one)",
            pool.max_segments()
        );
        ResultPartition {
            pool,
            subpartitions: (0..subpartitions)
                .map(|i| Arc::new(ResultSubpartition::new(SubpartitionIndex::from_usize(i))))
                .collect(),
            builders: (0..subpartitions).map(|_| None).collect(),
            pending: None,
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

    /// Writes `record`, length prefixed, to every subpartition (each gets its own copy of
    /// the bytes).
    ///
    /// # Panics
    ///
    /// As [`try_emit_record`](Self::try_emit_record).
    pub fn try_broadcast_record(&mut self, record: &[u8]) -> Emit {
        self.emit(record, Target::All)
    }

    fn emit(&mut self, record: &[u8], kind: Target) -> Emit {
        self.assert_writable();
        let prefix = u32::try_from(record.len())
            .unwrap_or_else(|_| panic!("a record of {} bytes exceeds u32::MAX", record.len()))
            .to_le_bytes();
        let first = match kind {
            Target::One(index) => index.as_usize(),
            Target::All => 0,
        };
        let mut pending = self.pending.take().unwrap_or(Pending {
            kind,
            record_len: record.len(),
            subpartition: first,
            offset: 0,
        });
        assert!(
            pending.kind == kind && pending.record_len == record.len(),
            "a pending write of {} bytes to {:?} must be repeated before another",
            pending.record_len,
            pending.kind
        );
        let last = match kind {
            Target::One(index) => index.as_usize(),
            Target::All => self.subpartitions.len() - 1,
        };
        while pending.subpartition <= last {
            match self.write_framed(pending.subpartition, &prefix, record, pending.offset) {
                Ok(()) => {
                    pending.subpartition += 1;
                    pending.offset = 0;
                }
                Err(offset) => {
                    pending.offset = offset;
                    self.pending = Some(pending);
                    self.no_buffer_answers += 1;
                    return Emit::NoBuffer;
                }
            }
        }
        self.records_out += 1;
        Emit::Done
    }

    /// Writes the framed record (`prefix` then `record`) into subpartition `index` from
    /// framed offset `offset`. `Err` carries the offset reached when no segment was free.
    fn write_framed(
        &mut self,
        index: usize,
        prefix: &[u8; RECORD_LENGTH_PREFIX_BYTES],
        record: &[u8],
        mut offset: usize,
    ) -> Result<(), usize> {
        let framed_len = RECORD_LENGTH_PREFIX_BYTES + record.len();
        while offset < framed_len {
            let Some(builder) = self.builder(index) else {
                return Err(offset);
            };
            let written = if offset < RECORD_LENGTH_PREFIX_BYTES {
                builder.append(&prefix[offset..])
            } else {
                builder.append(&record[offset - RECORD_LENGTH_PREFIX_BYTES..])
            };
            assert!(written > 0, "a builder with room took no bytes");
            offset += written;
            self.bytes_written += written as u64;
            self.commit_or_finish(index);
        }
        Ok(())
    }

    /// The builder of subpartition `index`, taking a segment from the pool (and queueing
    /// its consumer) when it has none; `None` when the pool has none free.
    fn builder(&mut self, index: usize) -> Option<&mut BufferBuilder> {
        if self.builders[index].is_none() {
            let (builder, consumer) = self.pool.try_request()?.into_builder(DataType::Data);
            self.subpartitions[index].add(consumer);
            self.builders[index] = Some(builder);
        }
        self.builders[index].as_mut()
    }

    /// Publishes the bytes written to subpartition `index`; a full builder is finished, so
    /// its buffer counts in the backlog and the next write takes a new segment.
    fn commit_or_finish(&mut self, index: usize) {
        let slot = &mut self.builders[index];
        match slot.take() {
            Some(builder) if builder.is_full() => {
                builder.finish();
            }
            Some(mut builder) => {
                builder.commit();
                *slot = Some(builder);
            }
            None => {}
        }
    }

    fn finish_builders(&mut self) {
        for builder in self.builders.iter_mut().filter_map(Option::take) {
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
        let Some(mut segment) = self.pool.try_request() else {
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
            ..PartitionMetrics::default()
        };
        for subpartition in &self.subpartitions {
            let counts = subpartition.metrics();
            metrics.buffers_out += counts.buffers_out;
            metrics.bytes_out += counts.bytes_out;
            metrics.backlog += counts.backlog;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::test_support::{Rng, manager};
    use crate::partition::{ChannelSelector, HashSelector};
    use crate::pool::NetworkBufferPool;

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

    /// A broadcast stopped half-way for want of a buffer continues where it stopped.
    #[test]
    fn a_pending_broadcast_continues_where_it_stopped() {
        let manager = manager(3);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 3).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(3, 3).unwrap(), 2);
        let mut readers = readers(&partition);
        let record = Rng::new(9).bytes(6000);
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
            1,
            "the local pool keeps its min of 3"
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
