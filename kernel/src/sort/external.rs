//! `ExternalSorter`: sorts more records than fit in memory.
//!
//! ```text
//!   push ──▶ InMemorySorter ──full──▶ sort ──▶ RunOutput ──▶ run 0, run 1, ... (disk)
//!                                                 (write-behind overlaps the next fill)
//!   finish ──▶ [merge passes while runs > fan-in] ──▶ final merge:
//!              loser tree over { runs on disk, the sorted in-memory buffer } ──▶ next()
//! ```
//!
//! Memory is split once, up front: a sort buffer (records and index) and a merge
//! reservation sized for `fan_in` runs of read-ahead plus one run writer. Both are taken
//! from the budget in [`ExternalSorter::new`], so once sorting has started neither spilling
//! nor merging can fail for lack of memory. A record larger than the whole buffer is
//! written as a run of its own.

use std::sync::Arc;

use super::cursor::Cursor;
use super::in_memory::InMemorySorter;
use super::loser_tree::LoserTree;
use super::record::{HEADER_LEN_MAX, RecordHeader};
use crate::constants::{
    SORT_FAN_IN_MAX, SORT_FAN_IN_MIN, SORT_MERGE_SHARE_INVERSE, SPILL_READ_AHEAD_DEFAULT,
    SPILL_WRITE_BEHIND_DEFAULT,
};
use crate::error::{KernelError, Result};
use crate::memory::compare_bytes;
use crate::memory::{Owner, Reservation};
use crate::spill::{RunInput, RunOptions, RunOutput, SpillRun, SpillStore};

/// Records ahead of the one being read that are prefetched when reading the buffer in
/// sorted (random memory) order: enough to cover a miss at a few hundred cycles per record.
pub(crate) const PREFETCH_DISTANCE: usize = 8;

/// How an [`ExternalSorter`] spills and merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortConfig {
    /// LZ4-compress spilled blocks.
    pub compress: bool,
    /// Blocks each run reader reads ahead during a merge.
    pub read_ahead: usize,
    /// Blocks a run writer keeps in flight.
    pub write_behind: usize,
    /// The most runs merged at once (at most [`SORT_FAN_IN_MAX`]).
    pub fan_in_max: usize,
}

impl Default for SortConfig {
    fn default() -> SortConfig {
        SortConfig {
            compress: false,
            read_ahead: SPILL_READ_AHEAD_DEFAULT,
            write_behind: SPILL_WRITE_BEHIND_DEFAULT,
            fan_in_max: SORT_FAN_IN_MAX,
        }
    }
}

impl SortConfig {
    fn segments_per_run(&self) -> usize {
        self.read_ahead + 1
    }

    fn segments_per_writer(&self) -> usize {
        self.write_behind + 1
    }

    /// The smallest memory, in segments, a sorter with this configuration accepts: a
    /// two-way merge, one run writer and two segments of sort buffer.
    pub fn memory_segments_min(&self) -> usize {
        SORT_FAN_IN_MIN * self.segments_per_run() + self.segments_per_writer() + 2
    }

    fn validate(&self) -> Result<()> {
        let invalid = |field, value: usize, expected| KernelError::InvalidConfig {
            field,
            value: value.to_string(),
            expected,
        };
        if !(SORT_FAN_IN_MIN..=SORT_FAN_IN_MAX).contains(&self.fan_in_max) {
            return Err(invalid("fan_in_max", self.fan_in_max, "2 to 128"));
        }
        if !(1..=64).contains(&self.write_behind) {
            return Err(invalid("write_behind", self.write_behind, "1 to 64"));
        }
        if self.read_ahead > 64 {
            return Err(invalid("read_ahead", self.read_ahead, "0 to 64"));
        }
        Ok(())
    }
}

/// What a sort did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SortStats {
    /// Records pushed.
    pub records: u64,
    /// Runs written in the sort phase (the buffer spilled, or a record larger than it).
    pub runs: u64,
    /// Runs written by intermediate merge passes.
    pub merge_runs: u64,
    /// Bytes written to disk, sort phase and merge passes together.
    pub spilled_bytes: u64,
    /// Merge passes over disk data, the final merge included (0 when nothing spilled).
    pub merge_passes: u64,
    /// Runs one merge reads at most, from the memory split.
    pub fan_in: u64,
}

/// Sorts (key, record) byte pairs by unsigned lexicographic key order within a budget.
#[derive(Debug)]
pub struct ExternalSorter {
    store: Arc<dyn SpillStore>,
    config: SortConfig,
    buffer: InMemorySorter,
    merge: Reservation,
    runs: Vec<SpillRun>,
    // The last run spilled, sealed but maybe still being written: finished (waited for)
    // only when the next spill or the merge needs it, so its writes overlap the next fill.
    pending: Option<RunOutput>,
    scratch: Vec<u8>,
    stats: SortStats,
}

impl ExternalSorter {
    /// A sorter that takes `memory_segments` segments of budget from `owner` now and
    /// spills to `store`.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] for a configuration out of range or fewer segments
    /// than [`SortConfig::memory_segments_min`]; [`KernelError::BudgetExceeded`] when the
    /// budget cannot grant the memory.
    pub fn new(
        owner: &Owner,
        memory_segments: usize,
        store: Arc<dyn SpillStore>,
        config: SortConfig,
    ) -> Result<ExternalSorter> {
        check_memory(&config, memory_segments)?;
        let memory = owner.reserve(memory_segments)?;
        ExternalSorter::with_reservation(memory, store, config)
    }

    /// A sorter over the budget `memory` already holds, spilling to `store`: for an
    /// operator that hands its own memory to a sort (hash aggregation falling back to
    /// sort-based aggregation) and takes it back with [`SortedStream::into_reservation`],
    /// so that no other consumer can take it in between.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] for a configuration out of range or fewer segments
    /// than [`SortConfig::memory_segments_min`]; `memory` is dropped then.
    pub fn with_reservation(
        mut memory: Reservation,
        store: Arc<dyn SpillStore>,
        config: SortConfig,
    ) -> Result<ExternalSorter> {
        let memory_segments = memory.segments();
        check_memory(&config, memory_segments)?;
        let per_run = config.segments_per_run();
        let writer = config.segments_per_writer();
        let merge_share = (memory_segments / SORT_MERGE_SHARE_INVERSE).saturating_sub(writer);
        let fan_in = (merge_share / per_run).clamp(SORT_FAN_IN_MIN, config.fan_in_max);
        let merge_segments = fan_in * per_run + writer;
        let merge = memory.split(merge_segments);
        Ok(ExternalSorter {
            store,
            config,
            buffer: InMemorySorter::new(memory),
            merge,
            runs: Vec::new(),
            pending: None,
            scratch: Vec::new(),
            stats: SortStats {
                fan_in: fan_in as u64,
                ..SortStats::default()
            },
        })
    }

    /// What the sort did so far.
    pub fn stats(&self) -> SortStats {
        self.stats
    }

    fn fan_in(&self) -> usize {
        self.stats.fan_in as usize
    }

    /// Adds a (key, record) pair.
    ///
    /// # Errors
    ///
    /// A spill that fails (disk full, quota, I/O error).
    pub fn push(&mut self, key: &[u8], record: &[u8]) -> Result<()> {
        if !self.buffer.push(key, record)? {
            if !self.buffer.is_empty() {
                self.spill_buffer()?;
            }
            if !self.buffer.push(key, record)? {
                let header = RecordHeader {
                    key_len: key.len(),
                    value_len: record.len(),
                    embedded: false,
                };
                self.spill_single(&header, key, record)?;
            }
        }
        self.stats.records += 1;
        Ok(())
    }

    /// Adds a record whose key is its own first `key_len` bytes; the stream returns the
    /// whole record, and the key is stored once.
    ///
    /// # Errors
    ///
    /// A spill that fails (disk full, quota, I/O error).
    ///
    /// # Panics
    ///
    /// When `key_len` exceeds the record's length.
    pub fn push_keyed(&mut self, record: &[u8], key_len: usize) -> Result<()> {
        if !self.buffer.push_keyed(record, key_len)? {
            if !self.buffer.is_empty() {
                self.spill_buffer()?;
            }
            if !self.buffer.push_keyed(record, key_len)? {
                let (key, value) = record.split_at(key_len);
                let header = RecordHeader {
                    key_len,
                    value_len: value.len(),
                    embedded: true,
                };
                self.spill_single(&header, key, value)?;
            }
        }
        self.stats.records += 1;
        Ok(())
    }

    fn create_output(&mut self) -> Result<RunOutput> {
        let writer = self.store.create_run(RunOptions {
            compress: self.config.compress,
            write_behind: self.config.write_behind,
        })?;
        let segments = self.merge.allocate(self.config.segments_per_writer())?;
        Ok(RunOutput::new(writer, segments))
    }

    fn finish_output(&mut self, output: RunOutput) -> Result<SpillRun> {
        let (run, segments) = output.finish()?;
        for segment in segments {
            self.merge.give_back(segment);
        }
        self.stats.spilled_bytes += run.disk_bytes();
        Ok(run)
    }

    /// Waits for the last run spilled, if any, and adds it to the runs.
    fn complete_pending(&mut self) -> Result<()> {
        if let Some(output) = self.pending.take() {
            let run = self.finish_output(output)?;
            self.runs.push(run);
            self.stats.runs += 1;
        }
        Ok(())
    }

    /// Sorts the buffer and writes it out as a run, leaving its last writes in flight.
    fn spill_buffer(&mut self) -> Result<()> {
        self.complete_pending()?;
        self.buffer.sort();
        let mut output = self.create_output()?;
        for i in 0..self.buffer.len() {
            self.buffer.prefetch(i + PREFETCH_DISTANCE);
            let entry = self.buffer.entry(i, &mut self.scratch)?;
            match self.buffer.entry_raw(&entry) {
                Some(raw) => output.write_bytes(raw)?,
                None => {
                    let body = self.buffer.entry_bytes(&entry, &self.scratch);
                    write_record(&mut output, &entry.header, body)?;
                }
            }
        }
        output.seal()?;
        self.pending = Some(output);
        self.buffer.clear();
        Ok(())
    }

    /// Writes one record too large for the buffer as a run of its own.
    fn spill_single(&mut self, header: &RecordHeader, key: &[u8], value: &[u8]) -> Result<()> {
        self.complete_pending()?;
        let mut output = self.create_output()?;
        let mut encoded = [0; HEADER_LEN_MAX];
        let len = header.encode(&mut encoded);
        output.write_bytes(&encoded[..len])?;
        output.write_bytes(key)?;
        output.write_bytes(value)?;
        let run = self.finish_output(output)?;
        self.runs.push(run);
        self.stats.runs += 1;
        Ok(())
    }

    /// Ends input and starts the merge. Merge passes run here while there are more runs
    /// than the fan-in; the final merge streams from [`SortedStream::next`].
    ///
    /// # Errors
    ///
    /// A failed read or write of a run.
    pub fn finish(mut self) -> Result<SortedStream> {
        self.complete_pending()?;
        self.buffer.sort();
        while self.runs.len() > self.fan_in() {
            self.merge_pass()?;
        }
        if !self.runs.is_empty() {
            self.stats.merge_passes += 1;
        }
        let runs = std::mem::take(&mut self.runs);
        let mut cursors = vec![Cursor::memory()];
        for run in &runs {
            cursors.push(self.open_cursor(run)?);
        }
        SortedStream::new(self, cursors, runs)
    }

    fn open_cursor(&mut self, run: &SpillRun) -> Result<Cursor> {
        let buffers = self.merge.allocate(self.config.segments_per_run())?;
        let reader = self.store.open_run(run, buffers)?;
        Ok(Cursor::run(RunInput::new(reader), run.payload_bytes()))
    }

    /// Merges the smallest runs into one. The first pass merges just enough runs that every
    /// later pass (the final merge included) reads a full fan-in.
    fn merge_pass(&mut self) -> Result<()> {
        let (count, fan_in) = (self.runs.len(), self.fan_in());
        let first = (count - 1) % (fan_in - 1) + 1;
        let take = if first == 1 { fan_in } else { first };
        self.runs
            .sort_by_key(|run| std::cmp::Reverse(run.payload_bytes()));
        let group = self.runs.split_off(count - take);
        let mut cursors = Vec::with_capacity(group.len());
        for run in &group {
            cursors.push(self.open_cursor(run)?);
        }
        let mut output = self.create_output()?;
        merge_into(&mut cursors, &self.buffer, &mut output)?;
        let run = self.finish_output(output)?;
        for cursor in cursors {
            self.give_back_input(cursor.into_input());
        }
        drop(group);
        self.runs.push(run);
        self.stats.merge_runs += 1;
        self.stats.merge_passes += 1;
        Ok(())
    }

    fn give_back_input(&mut self, input: Option<RunInput>) {
        for segment in input.into_iter().flat_map(RunInput::into_segments) {
            self.merge.give_back(segment);
        }
    }
}

/// Checks the configuration and that `memory_segments` is at least its minimum.
fn check_memory(config: &SortConfig, memory_segments: usize) -> Result<()> {
    config.validate()?;
    if memory_segments < config.memory_segments_min() {
        return Err(KernelError::InvalidConfig {
            field: "sort memory",
            value: format!("{memory_segments} segments"),
            expected: "at least a two-way merge, a run writer and two buffer segments",
        });
    }
    Ok(())
}

fn write_record(output: &mut RunOutput, header: &RecordHeader, body: &[u8]) -> Result<()> {
    let mut encoded = [0; HEADER_LEN_MAX];
    let len = header.encode(&mut encoded);
    output.write_bytes(&encoded[..len])?;
    output.write_bytes(body)
}

/// `less(a, b)` for the loser tree: exhausted inputs sort last.
#[inline]
fn less(cursors: &[Cursor], buffer: &InMemorySorter, a: usize, b: usize) -> bool {
    let (a, b) = (&cursors[a], &cursors[b]);
    match (a.is_exhausted(), b.is_exhausted()) {
        (_, true) => !a.is_exhausted(),
        (true, false) => false,
        (false, false) => compare_bytes(a.key(buffer), b.key(buffer)).is_lt(),
    }
}

/// Merges run cursors (not the buffer) into `output`.
fn merge_into(
    cursors: &mut [Cursor],
    buffer: &InMemorySorter,
    output: &mut RunOutput,
) -> Result<()> {
    for cursor in cursors.iter_mut() {
        cursor.advance(buffer)?;
    }
    let mut tree = LoserTree::new(cursors.len(), &mut |a, b| less(cursors, buffer, a, b));
    loop {
        let winner = tree.winner();
        if cursors[winner].is_exhausted() {
            return Ok(());
        }
        let cursor = &cursors[winner];
        match cursor.raw(buffer) {
            Some(raw) => output.write_bytes(raw)?,
            None => write_record(output, cursor.header(), cursor.bytes(buffer))?,
        }
        cursors[winner].advance(buffer)?;
        tree.replay(&mut |a, b| less(cursors, buffer, a, b));
    }
}

/// The sorted records, streamed from the final merge. Holds the sorter's memory and runs
/// until dropped.
#[derive(Debug)]
pub struct SortedStream {
    sorter: ExternalSorter,
    cursors: Vec<Cursor>,
    tree: LoserTree,
    // Runs stay alive (and on disk) while their readers stream them.
    _runs: Vec<SpillRun>,
    started: bool,
}

impl SortedStream {
    fn new(
        sorter: ExternalSorter,
        mut cursors: Vec<Cursor>,
        runs: Vec<SpillRun>,
    ) -> Result<SortedStream> {
        for cursor in &mut cursors {
            cursor.advance(&sorter.buffer)?;
        }
        let tree = LoserTree::new(cursors.len(), &mut |a, b| {
            less(&cursors, &sorter.buffer, a, b)
        });
        Ok(SortedStream {
            sorter,
            cursors,
            tree,
            _runs: runs,
            started: false,
        })
    }

    /// What the sort did.
    pub fn stats(&self) -> SortStats {
        self.sorter.stats
    }

    /// Ends the stream (read or not) and returns the sorter's whole budget in one
    /// reservation: every segment of the buffer and the readers given back, the runs
    /// deleted.
    ///
    /// # Panics
    ///
    /// Only on a broken internal invariant (a run still being written).
    pub fn into_reservation(self) -> Reservation {
        let SortedStream {
            sorter, cursors, ..
        } = self;
        let ExternalSorter {
            buffer,
            mut merge,
            pending,
            ..
        } = sorter;
        assert!(pending.is_none(), "a sorted stream has no run in flight");
        for segment in cursors
            .into_iter()
            .filter_map(Cursor::into_input)
            .flat_map(RunInput::into_segments)
        {
            merge.give_back(segment);
        }
        merge.absorb(buffer.into_reservation());
        merge
    }

    /// The next record as `(key, record)`, or `None` after the last. The slices are valid
    /// until the next call.
    ///
    /// # Errors
    ///
    /// A failed or corrupt read of a run.
    #[allow(
        clippy::should_implement_trait,
        reason = "a lending iterator: items borrow the stream"
    )]
    pub fn next(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        let buffer = &self.sorter.buffer;
        if self.started {
            let winner = self.tree.winner();
            self.cursors[winner].advance(buffer)?;
            let cursors = &self.cursors;
            self.tree.replay(&mut |a, b| less(cursors, buffer, a, b));
        }
        self.started = true;
        let cursor = &self.cursors[self.tree.winner()];
        if cursor.is_exhausted() {
            return Ok(None);
        }
        let body = cursor.bytes(buffer);
        let header = cursor.header();
        Ok(Some((
            &body[..header.key_len],
            &body[header.record_range()],
        )))
    }
}
