//! `HashJoin`: a hybrid hash join of byte records on byte keys within a memory budget.
//!
//! ```text
//!   push_build(key, record) ──▶ JoinTable: partition p = top hash bits scaled to P (10–127)
//!       no room ──▶ the largest partition's records ──▶ a build run of p; p is spilled,
//!                   its keys go into p's bloom filter; p keeps buffering, and its buffer
//!                   is written before another partition spills once it fills a segment
//!   finish_build ──▶ spilled partitions write their last records; the bucket array is
//!                    built over the partitions that stayed (spilling more if it lacks room)
//!   probe(key, record, emit) ──▶ in memory: matches emitted at once
//!                            ──▶ spilled, bloom says no: dropped (or emitted unmatched)
//!                            ──▶ spilled, bloom says maybe: the probe run of p
//!   probe_hashed_group(hash, key, records, emit): a run of probe records with one key,
//!       looked up once (a key repeated from the last lookup is not looked up again)
//!   finish ──▶ JoinStream: unmatched build records (right outer), then each spilled pair
//!              (build runs, probe run) joined again with the next seed (rebuild),
//!              recursively, or by sort-merge when it does not shrink or is too deep
//!              (sort_pair lends the table's memory to a MergeJoin)
//! ```
//!
//! The join is three parts and a table: a [`JoinContext`] (store, configuration, run io,
//! stats) that it lends by `&mut` to the [`Levels`] (which partitions spilled, their runs,
//! the pairs still to join) and to a [`MergeJoin`]; neither of those sees the table or the
//! join. `finish` lives with [`JoinStream`](super::JoinStream), which stands above the join.
//!
//! The probe side is the left input, the build side the right one (see [`JoinType`]).
//! Partitions that never spill never touch the disk, so a build side a little larger than
//! memory spills only some partitions, and only their probe records are written (the
//! hybrid hash join of DeWitt et al., as in Flink's `MutableHashTable`).
//!
//! Memory is split once, up front: a build run writer and a run reader; per partition a
//! bloom filter segment and a probe run writer, taken when the partition spills; the
//! table, which holds the rest and is lent whole to a sort-merge fallback. Once the join
//! has started it never fails for lack of memory: it spills. A build record larger than
//! half the table goes to its partition's run directly, rather than evicting the rest.
//!
//! Runs hold `[varint key_len][varint record_len][key][record]` (docs/FORMAT.md, section
//! 8). After an error the join (or its stream) must be dropped; dropping returns every
//! segment and deletes every run.

use std::sync::Arc;

use super::hasher::{hash_bytes, seed_at};
use super::join_config::{JoinConfig, JoinStats, JoinType};
use super::join_context::JoinContext;
use super::join_level::{Levels, Pair};
use super::join_row::JoinRow;
use super::join_run::{read_record, write_record};
use super::join_table::{Cursor, JoinTable};
use super::merge_join::MergeJoin;
use crate::constants::{HASH_JOIN_FILTER_PASS_PERCENT_MAX, HASH_JOIN_FILTER_PROBATION};
use crate::error::Result;
use crate::memory::{Owner, Reservation};
use crate::spill::{RunOutput, SpillRun, SpillStore};

/// An output row of the table, resolved to bytes by the caller.
#[derive(Debug, Clone, Copy)]
pub(super) enum Emit {
    /// The build record at (partition, position) with the current probe record.
    Pair { partition: usize, position: u64 },
    /// The build record at (partition, position) alone.
    Build { partition: usize, position: u64 },
    /// The current probe record alone.
    Probe,
}

/// Where a probe record goes.
#[derive(Debug)]
pub(super) enum Route {
    /// Its partition is in memory: walk the matches.
    Match(Matcher),
    /// It has no match and the join keeps such probe records: emit it alone.
    Unmatched,
    /// Nothing to emit now (written to a probe run, or dropped).
    Done,
}

/// A probe of the table in progress, resumable between output rows.
#[derive(Debug)]
pub(super) struct Matcher {
    cursor: Cursor,
    matched: bool,
    done: bool,
}

/// A probe key hashed for one join, by [`HashJoin::prefetch`]: handed to
/// [`HashJoin::probe_hashed`] with the same key, it spares hashing the key twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeHash {
    seed: u64,
    hash: u64,
}

/// A hybrid hash join. See the module documentation.
#[derive(Debug)]
pub struct HashJoin {
    /// Store, configuration, run io and stats, lent to the levels and a merge fallback.
    context: JoinContext,
    /// `None` only while a sort-merge fallback holds the table's memory.
    table: Option<JoinTable>,
    /// Which partitions spilled, and the spilled pairs still to join.
    levels: Levels,
    probing: bool,
    scratch: Vec<u8>,
    /// Probes the key filter answered, and those it let through: a filter that lets
    /// most through (a probe side that mostly matches) is asked no more.
    filter_asked: u64,
    filter_passed: u64,
}

impl HashJoin {
    /// A `join_type` join that takes `memory_segments` segments of budget from `owner` now
    /// and spills to `store`.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`](crate::KernelError::InvalidConfig) for a
    /// configuration out of range or fewer segments than
    /// [`JoinConfig::memory_segments_min`] (for the partitions chosen);
    /// [`KernelError::BudgetExceeded`](crate::KernelError::BudgetExceeded) when the budget
    /// cannot grant the memory.
    pub fn new(
        owner: &Owner,
        memory_segments: usize,
        store: Arc<dyn SpillStore>,
        join_type: JoinType,
        config: JoinConfig,
    ) -> Result<HashJoin> {
        config.validate(memory_segments)?;
        let partitions = config.partitions_for(memory_segments);
        let mut memory = owner.reserve(memory_segments)?;
        let io = memory.split(config.segments_per_writer() + config.segments_per_reader());
        let reserve = memory.split(config.reserved_segments(memory_segments));
        let table = JoinTable::new(memory, seed_at(config.seed, 0), partitions);
        Ok(HashJoin {
            context: JoinContext::new(store, config, join_type, io),
            table: Some(table),
            levels: Levels::new(reserve, partitions),
            probing: false,
            scratch: Vec::new(),
            filter_asked: 0,
            filter_passed: 0,
        })
    }

    /// What the join did so far.
    pub fn stats(&self) -> JoinStats {
        self.context.stats
    }

    /// Partitions of the build side.
    pub fn partitions(&self) -> usize {
        self.levels.count()
    }

    /// Adds a build (right) record with `key`.
    ///
    /// # Errors
    ///
    /// A spill that fails (disk full, quota, I/O error).
    ///
    /// # Panics
    ///
    /// After [`HashJoin::finish_build`].
    pub fn push_build(&mut self, key: &[u8], record: &[u8]) -> Result<()> {
        assert!(!self.probing, "push_build after finish_build");
        self.context.stats.build_records += 1;
        let hash = hash_bytes(self.table().seed(), key);
        self.insert_build(hash, key, record)
    }

    /// Ends the build side: spilled partitions write their last records, and the
    /// partitions in memory are indexed for probing.
    ///
    /// # Errors
    ///
    /// A spill that fails.
    ///
    /// # Panics
    ///
    /// When called twice.
    pub fn finish_build(&mut self) -> Result<()> {
        assert!(!self.probing, "finish_build called twice");
        self.probing = true;
        for partition in 0..self.levels.count() {
            if self.levels.is_spilled(partition) && self.table().bytes(partition) > 0 {
                self.spill_partition(partition)?;
            }
        }
        loop {
            let in_memory: Vec<bool> = (0..self.levels.count())
                .map(|p| !self.levels.is_spilled(p))
                .collect();
            if self.table_mut().index(&in_memory)? {
                return Ok(());
            }
            let largest = self
                .table()
                .largest(|p| in_memory[p])
                .expect("an empty table's bucket array fits its memory");
            self.spill_partition(largest)?;
        }
    }

    /// Joins a probe (left) record with `key`: calls `emit` for each output row it makes
    /// now. Rows of probe records whose partition spilled come from the stream of
    /// [`HashJoin::finish`].
    ///
    /// # Errors
    ///
    /// A write of a probe run that fails; the first error of `emit`.
    ///
    /// # Panics
    ///
    /// Before [`HashJoin::finish_build`].
    pub fn probe(
        &mut self,
        key: &[u8],
        record: &[u8],
        emit: impl FnMut(JoinRow<'_>) -> Result<()>,
    ) -> Result<()> {
        let hash = self.hash(key);
        self.probe_hashed(hash, key, record, emit)
    }

    /// [`HashJoin::probe`] of a key whose hash [`HashJoin::prefetch`] returned.
    ///
    /// # Errors
    ///
    /// A write of a probe run that fails; the first error of `emit`.
    ///
    /// # Panics
    ///
    /// Before [`HashJoin::finish_build`], or when `hash` is another join's (another
    /// seed).
    pub fn probe_hashed(
        &mut self,
        hash: ProbeHash,
        key: &[u8],
        record: &[u8],
        mut emit: impl FnMut(JoinRow<'_>) -> Result<()>,
    ) -> Result<()> {
        assert!(self.probing, "probe before finish_build");
        assert_eq!(
            hash.seed,
            self.table().seed(),
            "a probe hash of another join"
        );
        debug_assert_eq!(
            hash.hash,
            hash_bytes(hash.seed, key),
            "a hash of another key"
        );
        self.context.stats.probe_records += 1;
        let table = self.table.as_mut().expect("the table is home");
        // The common cases, without the detour through `Route`: a repeat of the last key
        // looked up (whose partition is in memory: probing spills none), or a key of a
        // partition in memory.
        let partition = table.partition_of(hash.hash);
        let cursor = match table.remembered(hash.hash, key) {
            Some(cursor) => Some(cursor),
            None if !self.levels.is_spilled(partition) => Some(table.find(hash.hash, key)),
            None => None,
        };
        if let Some(cursor) = cursor {
            debug_assert!(!self.levels.is_spilled(partition));
            let mut matcher = Matcher {
                cursor,
                matched: false,
                done: false,
            };
            return self.emit_matches(&mut matcher, key, record, emit);
        }
        let mut matcher = match self.route(hash.hash, key, record)? {
            Route::Done => return Ok(()),
            Route::Unmatched => {
                self.context.stats.output_rows += 1;
                return emit(JoinRow {
                    key,
                    build: None,
                    probe: Some(record),
                });
            }
            Route::Match(matcher) => matcher,
        };
        self.emit_matches(&mut matcher, key, record, emit)
    }

    /// [`HashJoin::probe_hashed`] of several probe records that share one key: the key is
    /// looked up once. A probe side clustered by key (line items in order-key order) hands
    /// each run of equal keys at once. An inner or right outer join whose partition is in
    /// memory also resolves each build record once, and emits its pairs with every probe
    /// record in turn (the rows come out by build record, then probe record); the other
    /// cases join the records one at a time.
    ///
    /// # Errors
    ///
    /// A write of a probe run that fails; the first error of `emit`.
    ///
    /// # Panics
    ///
    /// Before [`HashJoin::finish_build`], or when `hash` is another join's (another
    /// seed).
    pub fn probe_hashed_group(
        &mut self,
        hash: ProbeHash,
        key: &[u8],
        records: &[&[u8]],
        mut emit: impl FnMut(JoinRow<'_>) -> Result<()>,
    ) -> Result<()> {
        assert!(self.probing, "probe before finish_build");
        assert_eq!(
            hash.seed,
            self.table().seed(),
            "a probe hash of another join"
        );
        let pairs_only = matches!(
            self.context.join_type,
            JoinType::Inner | JoinType::RightOuter
        );
        let table = self.table.as_mut().expect("the table is home");
        let partition = table.partition_of(hash.hash);
        if !pairs_only || records.is_empty() || self.levels.is_spilled(partition) {
            for record in records {
                self.probe_hashed(hash, key, record, &mut emit)?;
            }
            return Ok(());
        }
        debug_assert_eq!(
            hash.hash,
            hash_bytes(hash.seed, key),
            "a hash of another key"
        );
        self.context.stats.probe_records += records.len() as u64;
        let mut cursor = table.find(hash.hash, key);
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut result = Ok(());
        'matches: while let Some((partition, position)) = table.next_match(&mut cursor) {
            if self.context.join_type.keeps_unmatched_build() {
                table.set_matched(partition, position);
            }
            let build = table.record(partition, position, &mut scratch).record;
            for record in records {
                self.context.stats.output_rows += 1;
                result = emit(JoinRow {
                    key,
                    build: Some(build),
                    probe: Some(record),
                });
                if result.is_err() {
                    break 'matches;
                }
            }
        }
        self.scratch = scratch;
        result
    }

    /// Calls `emit` with each row of a probe in progress.
    #[inline]
    fn emit_matches(
        &mut self,
        matcher: &mut Matcher,
        key: &[u8],
        record: &[u8],
        mut emit: impl FnMut(JoinRow<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut result = Ok(());
        while let Some(row) = self.next_emit(matcher) {
            self.context.stats.output_rows += 1;
            result = emit(self.row(row, key, record, &mut scratch));
            if result.is_err() {
                break;
            }
        }
        self.scratch = scratch;
        result
    }

    /// Hashes `key` for a probe and starts loading the bucket the probe will read into
    /// the cache: a caller that sees its probe records a few ahead calls this for each as
    /// it arrives and probes it later with [`HashJoin::probe_hashed`], so the cache
    /// misses of the bucket array (random by design) overlap instead of stalling each
    /// probe in turn. The prefetch is a hint: it changes nothing, and does nothing before
    /// [`HashJoin::finish_build`].
    ///
    /// # Panics
    ///
    /// While a spilled pair is being joined (the join is inside its stream then, so this
    /// cannot happen through the public interface).
    #[inline]
    pub fn prefetch(&self, key: &[u8]) -> ProbeHash {
        let hash = self.hash(key);
        if self.probing {
            self.table().prefetch(hash.hash);
        }
        hash
    }

    /// [`HashJoin::prefetch`] of a probe key that first asks the table's key filter:
    /// `None` when the key certainly has no match and the join type emits nothing for an
    /// unmatched probe record (inner, left and right semi, right outer and anti) — the
    /// record is counted as probed and needs no [`HashJoin::probe_hashed`] — else its
    /// hash, its bucket being loaded. Keys of spilled partitions always pass (their own bloom filters act when
    /// the partition is joined).
    ///
    /// # Panics
    ///
    /// Before [`HashJoin::finish_build`].
    #[inline]
    pub fn prefetch_unless_filtered(&mut self, key: &[u8]) -> Option<ProbeHash> {
        assert!(self.probing, "probe before finish_build");
        let hash = self.hash(key);
        let drops_unmatched = self.context.join_type.drops_unmatched_probe();
        let asking = drops_unmatched
            && (self.filter_asked < HASH_JOIN_FILTER_PROBATION
                || self.filter_passed * 100
                    < self.filter_asked * HASH_JOIN_FILTER_PASS_PERCENT_MAX);
        let table = self.table.as_ref().expect("the table is home");
        if asking && !self.levels.is_spilled(table.partition_of(hash.hash)) {
            self.filter_asked += 1;
            if !table.may_contain(hash.hash) {
                self.context.stats.probe_records += 1;
                self.context.stats.key_filtered += 1;
                return None;
            }
            self.filter_passed += 1;
        }
        table.prefetch(hash.hash);
        Some(hash)
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> ProbeHash {
        let seed = self.table().seed();
        ProbeHash {
            seed,
            hash: hash_bytes(seed, key),
        }
    }

    /// Whether the build side has ended.
    pub(super) fn is_probing(&self) -> bool {
        self.probing
    }

    /// The context the join's parts share, for a stream that reads runs or merges.
    pub(super) fn context_mut(&mut self) -> &mut JoinContext {
        &mut self.context
    }

    /// The join type.
    pub(super) fn join_type(&self) -> JoinType {
        self.context.join_type
    }

    /// Ends the current level: its spilled pairs that can still make rows are pushed.
    ///
    /// # Errors
    ///
    /// The last write of a probe run fails.
    pub(super) fn end_level(&mut self) -> Result<()> {
        self.levels.end_level(&mut self.context)
    }

    /// The next spilled pair, if any.
    pub(super) fn pop_pair(&mut self) -> Option<Pair> {
        self.levels.pop_pair()
    }

    /// Whether `pair` is to be sort-merged rather than joined by hashing again.
    pub(super) fn needs_sort(&self, pair: &Pair) -> bool {
        pair.needs_sort(&self.context.config)
    }

    /// Builds the table again from `pair`'s build runs with its level's seed; returns its
    /// probe run, which the caller probes before [`HashJoin::end_level`].
    ///
    /// # Errors
    ///
    /// A failed read of the build runs, or a failed spill of a sub-partition.
    pub(super) fn rebuild(&mut self, pair: Pair) -> Result<Option<SpillRun>> {
        self.context.assert_io_home();
        let seed = seed_at(self.context.config.seed, pair.depth());
        self.table_mut().clear(seed);
        self.probing = false;
        self.levels.enter(&mut self.context, &pair);
        let (build_runs, probe) = pair.into_runs();
        for run in &build_runs {
            // Not `JoinContext::read_run`: inserting may spill, which needs the context.
            let mut input = self.context.open_run(run)?;
            let (mut key, mut record) = self.context.take_buffers();
            while read_record(&mut input, run.payload_bytes(), &mut key, &mut record)? {
                self.insert_build(hash_bytes(seed, &key), &key, &record)?;
            }
            self.context.put_buffers(key, record);
            self.context.close_run(input);
        }
        drop(build_runs);
        self.finish_build()?;
        Ok(probe)
    }

    /// Lends the table's memory to a sort-merge join of `pair`; [`HashJoin::return_memory`]
    /// takes it back.
    ///
    /// # Errors
    ///
    /// A failed read of the pair's runs, or a failed spill of a sorter.
    pub(super) fn sort_pair(&mut self, pair: Pair) -> Result<MergeJoin> {
        self.context.assert_io_home();
        let memory = self.table.take().expect("the table is home").into_memory();
        let (build_runs, probe) = pair.into_runs();
        MergeJoin::sort(&mut self.context, memory, build_runs, probe)
    }

    /// Takes the table's memory back from a sort-merge fallback.
    ///
    /// # Panics
    ///
    /// When the table holds its memory already.
    pub(super) fn return_memory(&mut self, memory: Reservation) {
        assert!(self.table.is_none(), "the table is home already");
        let seed = seed_at(self.context.config.seed, 0);
        self.table = Some(JoinTable::new(memory, seed, self.levels.count()));
    }

    pub(super) fn table(&self) -> &JoinTable {
        self.table.as_ref().expect("the table is home")
    }

    pub(super) fn table_mut(&mut self) -> &mut JoinTable {
        self.table.as_mut().expect("the table is home")
    }

    /// Resolves an output row of the table to bytes.
    #[inline]
    pub(super) fn row<'a>(
        &'a self,
        emit: Emit,
        probe_key: &'a [u8],
        probe_record: &'a [u8],
        scratch: &'a mut Vec<u8>,
    ) -> JoinRow<'a> {
        match emit {
            Emit::Pair {
                partition,
                position,
            } => JoinRow {
                key: probe_key,
                build: Some(self.table().record(partition, position, scratch).record),
                probe: Some(probe_record),
            },
            Emit::Build {
                partition,
                position,
            } => {
                let build = self.table().record(partition, position, scratch);
                JoinRow {
                    key: build.key,
                    build: Some(build.record),
                    probe: None,
                }
            }
            Emit::Probe => JoinRow {
                key: probe_key,
                build: None,
                probe: Some(probe_record),
            },
        }
    }

    /// Adds a build record whose key hashes to `hash`, spilling until it fits.
    fn insert_build(&mut self, hash: u64, key: &[u8], record: &[u8]) -> Result<()> {
        let partition = self.table().partition_of(hash);
        if JoinTable::footprint(key, record) * 2 > self.table().capacity_bytes() {
            // Room for it would take most of the table: a run of its own, at once.
            return self.spill_single(partition, hash, key, record);
        }
        loop {
            if self.table_mut().append(partition, key, record)? {
                return Ok(());
            }
            match self.victim() {
                Some(largest) => self.spill_partition(largest)?,
                // Too large for the whole table: a run of its own.
                None => return self.spill_single(partition, hash, key, record),
            }
        }
    }

    /// The partition to write out when the table is full: the spilled partition buffering
    /// the most records if it holds a segment's worth (they go to disk anyway, and writing
    /// them keeps the partitions in memory there), or else the largest partition.
    fn victim(&self) -> Option<usize> {
        let table = self.table();
        let segment_size = self.context.segment_size() as u64;
        table
            .largest(|p| self.levels.is_spilled(p))
            .filter(|&p| table.bytes(p) >= segment_size)
            .or_else(|| table.largest(|_| true))
    }

    /// Writes the build records `partition` holds in memory to a new run of it.
    fn spill_partition(&mut self, partition: usize) -> Result<()> {
        self.levels.mark_spilled(&mut self.context, partition)?;
        let mut output = self.context.create_output()?;
        let table = self.table.as_ref().expect("the table is home");
        let bloom = self.levels.bloom_mut(partition);
        let seed = table.seed();
        table.for_each(partition, &mut self.scratch, |key, record| {
            bloom.insert(hash_bytes(seed, key));
            write_record(&mut output, key, record)
        })?;
        self.finish_build_run(partition, output)?;
        self.table_mut().drop_partition(partition);
        Ok(())
    }

    /// Writes one build record as a run of its own.
    fn spill_single(
        &mut self,
        partition: usize,
        hash: u64,
        key: &[u8],
        record: &[u8],
    ) -> Result<()> {
        self.levels.mark_spilled(&mut self.context, partition)?;
        let mut output = self.context.create_output()?;
        self.levels.bloom_mut(partition).insert(hash);
        write_record(&mut output, key, record)?;
        self.finish_build_run(partition, output)
    }

    fn finish_build_run(&mut self, partition: usize, output: RunOutput) -> Result<()> {
        let run = self.context.finish_io_output(output)?;
        self.levels.add_build_run(partition, run);
        Ok(())
    }

    /// Sends a probe record (key hashing to `hash`) where it goes.
    pub(super) fn route(&mut self, hash: u64, key: &[u8], record: &[u8]) -> Result<Route> {
        let table = self.table.as_mut().expect("the table is home");
        let partition = table.partition_of(hash);
        if !self.levels.is_spilled(partition) {
            return Ok(Route::Match(Matcher {
                cursor: table.find(hash, key),
                matched: false,
                done: false,
            }));
        }
        if self
            .levels
            .spill_probe(&mut self.context, partition, hash, key, record)?
        {
            return Ok(Route::Done);
        }
        // The bloom filter ruled a match out.
        Ok(if self.context.join_type.keeps_unmatched_probe() {
            Route::Unmatched
        } else {
            Route::Done
        })
    }

    /// The next output row of a probe in progress, if any.
    #[inline]
    pub(super) fn next_emit(&mut self, matcher: &mut Matcher) -> Option<Emit> {
        if matcher.done {
            return None;
        }
        let table = self.table.as_mut().expect("the table is home");
        while let Some((partition, position)) = table.next_match(&mut matcher.cursor) {
            matcher.matched = true;
            match self.context.join_type {
                JoinType::LeftSemi => {
                    matcher.done = true;
                    return Some(Emit::Probe);
                }
                JoinType::LeftAnti => {
                    matcher.done = true;
                    return None;
                }
                // A key's build records are all marked by the first probe that matches
                // it, so one marked record means the key is done.
                JoinType::RightSemi | JoinType::RightAnti => {
                    if table.is_matched(partition, position) {
                        matcher.done = true;
                        return None;
                    }
                    table.set_matched(partition, position);
                    if self.context.join_type == JoinType::RightSemi {
                        return Some(Emit::Build {
                            partition,
                            position,
                        });
                    }
                    continue;
                }
                JoinType::RightOuter | JoinType::FullOuter => {
                    table.set_matched(partition, position);
                }
                JoinType::Inner | JoinType::LeftOuter => {}
            }
            return Some(Emit::Pair {
                partition,
                position,
            });
        }
        matcher.done = true;
        (!matcher.matched && self.context.join_type.keeps_unmatched_probe()).then_some(Emit::Probe)
    }
}
