//! `HashAggregate`: groups (key, value) byte pairs by key within a memory budget.
//!
//! ```text
//!   push(key, value) ──▶ Table (seed 0) ──full──▶ largest partitions (top hash bits) ──▶
//!                          ▲                       one run each, their groups dropped
//!                          └── rebuilt around the groups that stay ◀──────┘
//!
//!   finish ──▶ partitions that never spilled: streamed from the table
//!              partitions that spilled: their last groups spilled too ──▶ pending stack
//!                                                                             │
//!   AggregateStream::next ◀── re-aggregate one partition with the next seed ◀─┤
//!                         ◀── or, when it does not shrink or is too deep,     │
//!                             sort it (ExternalSorter) and merge equal keys ◀─┘
//! ```
//!
//! When the table is full, the largest partitions (together at least
//! [`HASH_SPILL_SHARE_PERCENT`] percent of the table's bytes) are written out as partial
//! aggregates and dropped; the others stay and keep aggregating. A partition that never
//! spills never touches the disk, so an input a little larger than memory spills only
//! part of its groups (the hybrid idea of Flink's hash join, applied to aggregation).
//!
//! Memory is split once, up front, like the external sorter's: a run writer and a run
//! reader (enough to re-aggregate a partition while spilling its sub-partitions), and the
//! table, which holds the rest. A sort fallback borrows the table's memory and gives it
//! back, so once aggregation has started it never fails for lack of memory: when the table
//! is full it spills. A group too large for the whole table (a variable-size accumulator
//! of one hot key) is written as a run of its own, and its partition ends up sorted; merging
//! such a group's partial accumulators is the one place where memory outside the budget
//! grows with the data (one accumulator, on the heap).
//!
//! A spilled partition is a list of runs holding partial aggregates, `[varint key_len << 1]
//! [varint acc_len][key][acc]` each (docs/FORMAT.md, section 5), in no order. Each spill
//! writes one run (one file) per partition it empties. After an error the aggregation (or
//! its stream) must be dropped; dropping returns every segment and deletes every run.

use std::sync::Arc;

use super::aggregate_level::{Kept, Partition, empty_partitions};
use super::aggregator::Aggregator;
use super::area::{HEADER_LEN_MAX, encode_header};
use super::config::{AggregateConfig, AggregateStats};
use super::hasher::{hash_bytes, seed_at};
use super::table::{Slot, Table};
use crate::constants::{HASH_PREFETCH_BATCH, HASH_SPILL_SHARE_PERCENT};
use crate::error::{KernelError, Result};
use crate::memory::{Owner, Reservation};
use crate::sort::{ExternalSorter, SortedStream};
use crate::spill::{RunInput, RunOptions, RunOutput, SpillRun, SpillStore};

/// What is being folded into a group.
#[derive(Debug, Clone, Copy)]
enum Fold<'a> {
    /// An input value.
    Value(&'a [u8]),
    /// A partial accumulator: read back from a spill, or given to `push_partial`.
    Partial(&'a [u8]),
}

/// Aggregates (key, value) byte pairs by key. See the module documentation.
#[derive(Debug)]
pub struct HashAggregate {
    store: Arc<dyn SpillStore>,
    config: AggregateConfig,
    aggregator: Box<dyn Aggregator>,
    /// Whether the aggregator's accumulators are of fixed size (updated in place).
    fixed: bool,
    /// `None` only while a sort fallback holds the table's memory.
    table: Option<Table>,
    io: Reservation,
    /// The level the table aggregates at now, and the bytes of its input partition.
    depth: usize,
    input_bytes: Option<u64>,
    /// This level's partitions.
    partitions: Vec<Partition>,
    /// Spilled partitions of every level, the most recent last.
    pending: Vec<Partition>,
    stats: AggregateStats,
    acc: Vec<u8>,
    scratch: Vec<u8>,
}

impl HashAggregate {
    /// An aggregation by `aggregator` that takes `memory_segments` segments of budget from
    /// `owner` now and spills to `store`.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] for a configuration out of range or fewer segments
    /// than [`AggregateConfig::memory_segments_min`]; [`KernelError::BudgetExceeded`] when
    /// the budget cannot grant the memory.
    pub fn new(
        owner: &Owner,
        memory_segments: usize,
        store: Arc<dyn SpillStore>,
        aggregator: Box<dyn Aggregator>,
        config: AggregateConfig,
    ) -> Result<HashAggregate> {
        config.validate()?;
        let min = config.memory_segments_min();
        if memory_segments < min {
            return Err(KernelError::InvalidConfig {
                field: "hash aggregate memory",
                value: format!("{memory_segments} segments, below the minimum of {min}"),
                expected: "a run writer, a run reader and a table a sort fallback can use",
            });
        }
        let mut memory = owner.reserve(memory_segments)?;
        let io = memory.split(config.segments_per_writer() + config.segments_per_reader());
        let table = Table::new(memory, seed_at(config.seed, 0), config.partition_bits())?;
        Ok(HashAggregate {
            store,
            config,
            fixed: aggregator.accumulator_size().is_some(),
            aggregator,
            table: Some(table),
            io,
            depth: 0,
            input_bytes: None,
            partitions: empty_partitions(config.partitions),
            pending: Vec::new(),
            stats: AggregateStats::default(),
            acc: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// What the aggregation did so far.
    pub fn stats(&self) -> AggregateStats {
        self.stats
    }

    /// Groups in the in-memory table now (spilled ones not counted): with
    /// [`AggregateStats::records`], how much a pre-aggregation reduces its input.
    pub fn groups_in_memory(&self) -> usize {
        self.table.as_ref().map_or(0, |table| table.groups())
    }

    /// Folds `value` into the group of `key`.
    ///
    /// # Errors
    ///
    /// A spill that fails (disk full, quota, I/O error).
    ///
    /// # Panics
    ///
    /// When the aggregator panics on the value (a value too short for its offsets).
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.stats.records += 1;
        self.fold(key, Fold::Value(value))
    }

    /// Folds each `(key, value)` of `pairs` into the group of its key, as many
    /// [`HashAggregate::push`]es would, but faster when the groups do not fit the cache:
    /// the keys are hashed [`HASH_PREFETCH_BATCH`] at a time and their buckets prefetched
    /// before the first is looked up, so that the lookups' cache misses overlap.
    ///
    /// # Errors
    ///
    /// A spill that fails (disk full, quota, I/O error); the pairs after the one that
    /// failed are not folded.
    ///
    /// # Panics
    ///
    /// When the aggregator panics on a value (a value too short for its offsets).
    pub fn push_batch<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, pairs: &[(K, V)]) -> Result<()> {
        let mut hashes = [0u64; HASH_PREFETCH_BATCH];
        for chunk in pairs.chunks(HASH_PREFETCH_BATCH) {
            let table = self.table();
            for ((key, _), hash) in chunk.iter().zip(&mut hashes) {
                *hash = hash_bytes(table.seed(), key.as_ref());
                table.prefetch_bucket(*hash);
            }
            for ((key, value), &hash) in chunk.iter().zip(&hashes) {
                self.stats.records += 1;
                self.fold_hashed(hash, key.as_ref(), Fold::Value(value.as_ref()))?;
            }
        }
        Ok(())
    }

    /// Merges `acc`, a partial accumulator of the group of `key` (from another
    /// aggregation by the same aggregator: the local pre-aggregation of a two-phase
    /// aggregation, or another worker's), into the group.
    ///
    /// # Errors
    ///
    /// A spill that fails (disk full, quota, I/O error).
    ///
    /// # Panics
    ///
    /// When the aggregator's accumulators are of fixed size and `acc` is not of that size.
    pub fn push_partial(&mut self, key: &[u8], acc: &[u8]) -> Result<()> {
        if let Some(size) = self.aggregator.accumulator_size() {
            assert_eq!(
                acc.len(),
                size,
                "partial accumulator of {} bytes for {:?}",
                acc.len(),
                self.aggregator
            );
        }
        self.stats.records += 1;
        self.fold(key, Fold::Partial(acc))
    }

    /// [`HashAggregate::push_partial`] that never spills: `Ok(false)` when the table
    /// has no room for the group (nothing was folded, nothing written), for a caller that
    /// would rather hand the table's groups on and start a new one than write to disk — a
    /// combiner before an exchange, whose groups are partial anyway. A table that spilled
    /// before (through [`HashAggregate::push_partial`]) still has its runs.
    ///
    /// # Errors
    ///
    /// As [`HashAggregate::push_partial`], but never a spill's.
    ///
    /// # Panics
    ///
    /// As [`HashAggregate::push_partial`].
    pub fn try_push_partial(&mut self, key: &[u8], acc: &[u8]) -> Result<bool> {
        if let Some(size) = self.aggregator.accumulator_size() {
            assert_eq!(
                acc.len(),
                size,
                "partial accumulator of {} bytes",
                acc.len()
            );
        }
        let hash = hash_bytes(self.table().seed(), key);
        let folded = self.fold_or_refuse(hash, key, Fold::Partial(acc))?;
        if folded {
            self.stats.records += 1;
        }
        Ok(folded)
    }

    /// The aggregator, for a stream that merges the groups of a sorted partition.
    pub(super) fn aggregator(&self) -> &dyn Aggregator {
        &*self.aggregator
    }

    /// Counts a group the stream emitted.
    pub(super) fn count_group(&mut self) {
        self.stats.groups += 1;
    }

    pub(super) fn table(&self) -> &Table {
        self.table.as_ref().expect("the table is home")
    }

    fn table_mut(&mut self) -> &mut Table {
        self.table.as_mut().expect("the table is home")
    }

    fn fold(&mut self, key: &[u8], input: Fold<'_>) -> Result<()> {
        let hash = hash_bytes(self.table().seed(), key);
        self.fold_hashed(hash, key, input)
    }

    /// Folds `input` into the group of `key`, whose hash under the table's seed is `hash`.
    #[inline]
    fn fold_hashed(&mut self, hash: u64, key: &[u8], input: Fold<'_>) -> Result<()> {
        loop {
            if self.fold_or_refuse(hash, key, input)? {
                return Ok(());
            }
            if self.table().groups() == 0 {
                // Too large for the whole table: a run of its own (`self.acc` holds it).
                return self.spill_single(hash, key);
            }
            // No room. Spill the largest partitions and try again: the group stays if its
            // partition stays (and is folded into then), or starts afresh if it went to
            // disk as a partial result. Each spill empties at least one partition, so the
            // group's own partition goes at the latest when it is the last one left.
            self.spill()?;
        }
    }

    /// Folds `input` into the group of `key` if the table has room: `Ok(false)` when it
    /// has none (the table unchanged; `self.acc` holds the group's new accumulator).
    #[inline]
    fn fold_or_refuse(&mut self, hash: u64, key: &[u8], input: Fold<'_>) -> Result<bool> {
        let table = self.table.as_mut().expect("the table is home");
        let aggregator = &*self.aggregator;
        match table.find(hash, key) {
            Slot::Found { address, .. } if self.fixed => {
                table.update_in_place(address, |acc| match input {
                    Fold::Value(value) => aggregator.update(acc, value),
                    Fold::Partial(other) => aggregator.merge(acc, other),
                });
                Ok(true)
            }
            Slot::Found { address, .. } => {
                self.acc.clear();
                let (_, old) = table.record(address, &mut self.scratch);
                match input {
                    Fold::Value(value) => aggregator.update_into(old, value, &mut self.acc),
                    Fold::Partial(other) => aggregator.merge_into(old, other, &mut self.acc),
                }
                table.replace(hash, key, &self.acc)
            }
            Slot::Vacant { index } => {
                self.acc.clear();
                match input {
                    Fold::Value(value) => aggregator.init(value, &mut self.acc),
                    Fold::Partial(other) => self.acc.extend_from_slice(other),
                }
                table.insert(index, hash, key, &self.acc)
            }
        }
    }

    /// Writes the largest partitions of the table to their runs, until at least
    /// [`HASH_SPILL_SHARE_PERCENT`] percent of its record bytes are written, and rebuilds
    /// the table around the groups that stay.
    fn spill(&mut self) -> Result<()> {
        let table = self.table_mut();
        let chosen = table.largest_partitions(HASH_SPILL_SHARE_PERCENT);
        assert!(!chosen.is_empty(), "a spill of an empty table");
        let ranges = table.scatter();
        for partition in chosen {
            let range = ranges[partition].clone();
            self.spill_range(partition, range.clone())?;
            self.table_mut().drop_partition(partition, range);
        }
        self.table_mut().rebuild();
        self.stats.table_spills += 1;
        Ok(())
    }

    /// Writes the groups of buckets `range` (of a scattered table) as a run of `partition`.
    fn spill_range(&mut self, partition: usize, range: std::ops::Range<usize>) -> Result<()> {
        let mut output = self.create_output()?;
        let table = self.table.as_ref().expect("the table is home");
        for index in range {
            let address = table
                .entry_address(index)
                .expect("a scattered range holds groups");
            table.write_record(address, &mut output)?;
        }
        self.finish_output(partition, output)
    }

    /// Writes one group (its accumulator in `self.acc`) as a run of its own.
    fn spill_single(&mut self, hash: u64, key: &[u8]) -> Result<()> {
        let mut output = self.create_output()?;
        let mut header = [0; HEADER_LEN_MAX];
        let len = encode_header(key.len(), self.acc.len(), &mut header);
        output.write_bytes(&header[..len])?;
        output.write_bytes(key)?;
        output.write_bytes(&self.acc)?;
        let partition = self.table().partition_of(hash);
        self.finish_output(partition, output)
    }

    fn create_output(&mut self) -> Result<RunOutput> {
        let writer = self.store.create_run(RunOptions {
            compress: self.config.compress,
            write_behind: self.config.write_behind,
        })?;
        let segments = self.io.allocate(self.config.segments_per_writer())?;
        Ok(RunOutput::new(writer, segments))
    }

    fn finish_output(&mut self, partition: usize, output: RunOutput) -> Result<()> {
        let (run, segments) = output.finish()?;
        for segment in segments {
            self.io.give_back(segment);
        }
        self.stats.spilled_bytes += run.disk_bytes();
        let target = &mut self.partitions[partition];
        if target.runs.is_empty() {
            self.stats.partitions_spilled += 1;
        }
        target.bytes += run.payload_bytes();
        target.runs.push(run);
        Ok(())
    }

    /// Ends the current level: the groups of partitions that spilled join them on disk and
    /// those partitions go on the pending stack; returns the groups left to stream from
    /// the table.
    pub(super) fn end_level(&mut self) -> Result<Kept> {
        let spilled: Vec<bool> = self.partitions.iter().map(|p| !p.runs.is_empty()).collect();
        if !spilled.contains(&true) {
            return Ok(Kept::All);
        }
        let ranges = self.table_mut().scatter();
        let mut keep = Vec::new();
        for (partition, range) in ranges.into_iter().enumerate() {
            if !spilled[partition] {
                keep.push(range);
            } else if !range.is_empty() {
                self.spill_range(partition, range)?;
            }
        }
        let depth = self.depth + 1;
        let parent_bytes = self.input_bytes;
        let partitions = std::mem::replace(
            &mut self.partitions,
            empty_partitions(self.config.partitions),
        );
        for partition in partitions.into_iter().rev() {
            if !partition.runs.is_empty() {
                self.pending.push(Partition {
                    depth,
                    parent_bytes,
                    ..partition
                });
            }
        }
        Ok(Kept::Buckets(keep))
    }

    /// Re-aggregates `partition` in the (emptied) table with its level's seed; returns the
    /// groups to stream, as [`HashAggregate::end_level`].
    ///
    /// # Errors
    ///
    /// A failed read of the partition's runs or write of its sub-partitions.
    pub(super) fn reaggregate(&mut self, partition: Partition) -> Result<Kept> {
        self.assert_io_home();
        let seed = seed_at(self.config.seed, partition.depth);
        self.table_mut().clear(seed);
        self.depth = partition.depth;
        self.input_bytes = Some(partition.bytes);
        self.stats.recursion_depth_max = self.stats.recursion_depth_max.max(self.depth as u64);
        for run in partition.runs {
            self.read_run(&run, |this, key, acc| this.fold(key, Fold::Partial(acc)))?;
        }
        self.end_level()
    }

    /// The next spilled partition to stream, if any.
    pub(super) fn pop_partition(&mut self) -> Option<Partition> {
        self.pending.pop()
    }

    /// Whether `partition` is to be sorted rather than re-aggregated.
    pub(super) fn needs_sort(&self, partition: &Partition) -> bool {
        partition.needs_sort(&self.config)
    }

    /// Sorts `partition`'s partial aggregates by key with the table's memory, which
    /// [`HashAggregate::return_memory`] takes back from the sorted stream.
    ///
    /// # Errors
    ///
    /// A failed read of the partition's runs, or a failed spill of the sorter.
    pub(super) fn sort_partition(&mut self, partition: Partition) -> Result<SortedStream> {
        self.stats.sort_fallbacks += 1;
        let memory = self.take_memory();
        let config = self.config.sort_config();
        let mut sorter = ExternalSorter::with_reservation(memory, Arc::clone(&self.store), config)?;
        for run in partition.runs {
            self.read_run(&run, |_, key, acc| sorter.push(key, acc))?;
        }
        let sorted = sorter.finish()?;
        self.stats.spilled_bytes += sorted.stats().spilled_bytes;
        Ok(sorted)
    }

    /// Calls `sink(self, key, acc)` for every partial aggregate of `run`.
    ///
    /// # Errors
    ///
    /// A failed or corrupt read; [`KernelError::Malformed`] for a record whose lengths
    /// do not fit the run or the aggregator; the first error of `sink`.
    fn read_run(
        &mut self,
        run: &SpillRun,
        mut sink: impl FnMut(&mut HashAggregate, &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let buffers = self.io.allocate(self.config.segments_per_reader())?;
        let mut input = RunInput::new(self.store.open_run(run, buffers)?);
        let mut scratch = Vec::new();
        let fixed = self.aggregator.accumulator_size();
        while !input.is_at_end()? {
            let key_word = input.read_varint()?;
            let acc_len = input.read_varint()?;
            let key_len = key_word >> 1;
            let left = run.payload_bytes() - input.bytes_read();
            if key_word & 1 == 1
                || key_len.saturating_add(acc_len) > left
                || fixed.is_some_and(|n| n as u64 != acc_len)
            {
                return Err(KernelError::Malformed {
                    position: input.bytes_read(),
                    what: "partial aggregate marked dead, or its lengths do not fit the run or the aggregator",
                });
            }
            let (key_len, len) = (key_len as usize, (key_len + acc_len) as usize);
            match input.try_take(len)? {
                Some(range) => {
                    let (key, acc) = input.block_bytes(range).split_at(key_len);
                    sink(self, key, acc)?;
                }
                None => {
                    scratch.clear();
                    scratch.resize(len, 0);
                    input.read_exact(&mut scratch)?;
                    let (key, acc) = scratch.split_at(key_len);
                    sink(self, key, acc)?;
                }
            }
        }
        for segment in input.into_segments() {
            self.io.give_back(segment);
        }
        Ok(())
    }

    /// Checks that every run writer's and reader's segment came back between runs.
    fn assert_io_home(&self) {
        assert_eq!(
            self.io.segments(),
            self.config.segments_per_writer() + self.config.segments_per_reader(),
            "a run writer or reader kept segments of the aggregation"
        );
    }

    /// Lends the table's memory out (to a sort fallback).
    fn take_memory(&mut self) -> Reservation {
        self.assert_io_home();
        self.table.take().expect("the table is home").into_memory()
    }

    /// Takes the table's memory back.
    ///
    /// # Errors
    ///
    /// Only on a broken budget (the memory holds less than a segment).
    pub(super) fn return_memory(&mut self, memory: Reservation) -> Result<()> {
        assert!(self.table.is_none(), "the table is home already");
        let bits = self.config.partition_bits();
        self.table = Some(Table::new(memory, seed_at(self.config.seed, 0), bits)?);
        Ok(())
    }
}
