//! `MergeJoin`: the sort-merge fallback of a hash join, for a spilled pair that hashing
//! cannot split (one hot key larger than memory) or that is too deep.
//!
//! ```text
//!   build runs ──▶ ExternalSorter ──▶ sorted build ──┐  head: the next build record
//!   probe run  ──▶ ExternalSorter ──▶ sorted probe ──┤
//!                                                    ▼
//!   for each probe record: build records of smaller keys are passed (emitted unmatched
//!   by a right outer join); those of its key are loaded as the group (in
//!   HASH_JOIN_GROUP_SEGMENTS segments, or written to a run when larger) and paired with
//!   it and with every following probe record of the same key
//! ```
//!
//! Both sorters share the table's memory, half each, less the group's segments. A group
//! larger than its segments is read back from its run once per probe record of its key:
//! the output of such a key is the product of both sides anyway. The merge borrows the
//! join's [`JoinContext`] (its runs are the join's, its spills count in the join's stats),
//! never the join itself; [`MergeJoin::into_memory`] gives every segment back for the
//! join's table.

use std::sync::Arc;

use super::area::RecordArea;
use super::join_config::JoinType;
use super::join_context::JoinContext;
use super::join_row::JoinRow;
use super::join_run::{read_record, write_record};
use crate::constants::HASH_JOIN_GROUP_SEGMENTS;
use crate::error::Result;
use crate::memory::Reservation;
use crate::sort::{ExternalSorter, SortedStream};
use crate::spill::{RunInput, SpillRun};

/// An output row of the merge, resolved to bytes by [`MergeJoin::row`].
#[derive(Debug, Clone, Copy)]
pub(super) enum MergeEmit {
    /// The held build record with the current probe record.
    Pair,
    /// The held build record alone.
    Build,
    /// The current probe record alone.
    Probe,
}

/// The outcome of one decision of the merge.
#[derive(Debug)]
enum Step {
    Row(MergeEmit),
    Continue,
    Done,
}

/// Where the records of the current group are read from.
#[derive(Debug)]
enum Cursor {
    Memory(u64),
    Disk(RunInput),
}

/// What the merge is doing.
#[derive(Debug)]
enum State {
    /// Deciding what the next probe (or build) record makes.
    Idle,
    /// Pairing the group with the current probe record.
    Pairing(Cursor),
    /// Emitting an unmatched group alone (right outer).
    Flushing(Cursor),
}

/// The sort-merge join of one spilled pair. See the module documentation.
#[derive(Debug)]
pub(super) struct MergeJoin {
    join_type: JoinType,
    build: SortedStream,
    probe: SortedStream,
    head_key: Vec<u8>,
    head_record: Vec<u8>,
    has_head: bool,
    group_memory: Reservation,
    group: RecordArea,
    overflow: Option<SpillRun>,
    group_key: Vec<u8>,
    group_valid: bool,
    group_matched: bool,
    probe_key: Vec<u8>,
    probe_record: Vec<u8>,
    probe_pending: bool,
    probe_done: bool,
    state: State,
    held_key: Vec<u8>,
    held_record: Vec<u8>,
    scratch: Vec<u8>,
    started: bool,
}

impl MergeJoin {
    /// Sorts `build_runs` and `probe` with `memory` (the join's table's) for a sort-merge
    /// join of `context`'s type.
    ///
    /// # Errors
    ///
    /// A failed read of the runs, or a failed spill of a sorter.
    pub(super) fn sort(
        context: &mut JoinContext,
        mut memory: Reservation,
        build_runs: Vec<SpillRun>,
        probe: Option<SpillRun>,
    ) -> Result<MergeJoin> {
        context.stats.sort_merge_fallbacks += 1;
        let group = memory.split(HASH_JOIN_GROUP_SEGMENTS);
        let build_memory = memory.split(memory.segments() / 2);
        let config = context.config.sort_config();
        let store = Arc::clone(&context.store);
        let mut sorter =
            ExternalSorter::with_reservation(build_memory, Arc::clone(&store), config)?;
        for run in &build_runs {
            context.read_run(run, |key, record| sorter.push(key, record))?;
        }
        drop(build_runs);
        let build = sorter.finish()?;
        context.stats.spilled_bytes += build.stats().spilled_bytes;
        let mut sorter = ExternalSorter::with_reservation(memory, store, config)?;
        if let Some(run) = &probe {
            context.read_run(run, |key, record| sorter.push(key, record))?;
        }
        drop(probe);
        let probe = sorter.finish()?;
        context.stats.spilled_bytes += probe.stats().spilled_bytes;
        let log2 = context.segment_size().trailing_zeros();
        Ok(MergeJoin::new(context.join_type, build, probe, group, log2))
    }

    fn new(
        join_type: JoinType,
        build: SortedStream,
        probe: SortedStream,
        group_memory: Reservation,
        log2: u32,
    ) -> MergeJoin {
        MergeJoin {
            join_type,
            build,
            probe,
            head_key: Vec::new(),
            head_record: Vec::new(),
            has_head: false,
            group_memory,
            group: RecordArea::new(log2),
            overflow: None,
            group_key: Vec::new(),
            group_valid: false,
            group_matched: false,
            probe_key: Vec::new(),
            probe_record: Vec::new(),
            probe_pending: false,
            probe_done: false,
            state: State::Idle,
            held_key: Vec::new(),
            held_record: Vec::new(),
            scratch: Vec::new(),
            started: false,
        }
    }

    /// Every segment of the merge, to give back to the join's table.
    pub(super) fn into_memory(mut self) -> Reservation {
        self.release_group();
        let mut memory = self.build.into_reservation();
        memory.absorb(self.probe.into_reservation());
        memory.absorb(self.group_memory);
        memory
    }

    /// The bytes of an output row.
    pub(super) fn row(&self, emit: MergeEmit) -> JoinRow<'_> {
        match emit {
            MergeEmit::Pair => JoinRow {
                key: &self.probe_key,
                build: Some(&self.held_record),
                probe: Some(&self.probe_record),
            },
            MergeEmit::Build => JoinRow {
                key: &self.held_key,
                build: Some(&self.held_record),
                probe: None,
            },
            MergeEmit::Probe => JoinRow {
                key: &self.probe_key,
                build: None,
                probe: Some(&self.probe_record),
            },
        }
    }

    /// The next output row, or `None` after the last.
    ///
    /// # Errors
    ///
    /// A failed read of a sorted side or of a group run, or a failed write of a group run.
    pub(super) fn advance(&mut self, context: &mut JoinContext) -> Result<Option<MergeEmit>> {
        if !self.started {
            self.started = true;
            self.advance_build()?;
        }
        loop {
            match std::mem::replace(&mut self.state, State::Idle) {
                State::Pairing(mut cursor) => {
                    if self.next_in_group(&mut cursor)? {
                        self.state = State::Pairing(cursor);
                        return Ok(Some(MergeEmit::Pair));
                    }
                    close_cursor(cursor, context);
                    continue;
                }
                State::Flushing(mut cursor) => {
                    if self.next_in_group(&mut cursor)? {
                        self.state = State::Flushing(cursor);
                        return Ok(Some(MergeEmit::Build));
                    }
                    close_cursor(cursor, context);
                    self.release_group();
                    continue;
                }
                State::Idle => {}
            }
            match self.step(context)? {
                Step::Row(emit) => return Ok(Some(emit)),
                Step::Continue => {}
                Step::Done => return Ok(None),
            }
        }
    }

    /// One decision in the idle state.
    fn step(&mut self, context: &mut JoinContext) -> Result<Step> {
        if !self.probe_pending && !self.probe_done {
            match self.probe.next()? {
                Some((key, record)) => {
                    copy(&mut self.probe_key, key);
                    copy(&mut self.probe_record, record);
                    self.probe_pending = true;
                }
                None => self.probe_done = true,
            }
        }
        if self.group_valid && (!self.probe_pending || self.probe_key != self.group_key) {
            if self.join_type.keeps_unmatched_build() && !self.group_matched {
                copy(&mut self.held_key, &self.group_key);
                self.state = State::Flushing(self.start_cursor(context)?);
            } else {
                self.release_group();
            }
            return Ok(Step::Continue);
        }
        if !self.probe_pending {
            // Every probe record is done: what is left of the build side is unmatched.
            if self.join_type.keeps_unmatched_build() && self.has_head {
                self.hold_head()?;
                return Ok(Step::Row(MergeEmit::Build));
            }
            return Ok(Step::Done);
        }
        if self.group_valid {
            self.probe_pending = false;
            let first_match = !self.group_matched;
            self.group_matched = true;
            return Ok(match self.join_type {
                JoinType::LeftSemi => Step::Row(MergeEmit::Probe),
                JoinType::LeftAnti | JoinType::RightAnti => Step::Continue,
                // The group's build records, once, at its first match; flushing ends
                // the group, so later probes of its key find none.
                JoinType::RightSemi if first_match => {
                    copy(&mut self.held_key, &self.group_key);
                    self.state = State::Flushing(self.start_cursor(context)?);
                    Step::Continue
                }
                JoinType::RightSemi => Step::Continue,
                JoinType::Inner
                | JoinType::LeftOuter
                | JoinType::RightOuter
                | JoinType::FullOuter => {
                    self.state = State::Pairing(self.start_cursor(context)?);
                    Step::Continue
                }
            });
        }
        if self.has_head && self.head_key < self.probe_key {
            if self.join_type.keeps_unmatched_build() {
                self.hold_head()?;
                return Ok(Step::Row(MergeEmit::Build));
            }
            self.advance_build()?;
            return Ok(Step::Continue);
        }
        if self.has_head && self.head_key == self.probe_key {
            self.load_group(context)?;
            return Ok(Step::Continue);
        }
        self.probe_pending = false;
        Ok(if self.join_type.keeps_unmatched_probe() {
            Step::Row(MergeEmit::Probe)
        } else {
            Step::Continue
        })
    }

    fn advance_build(&mut self) -> Result<()> {
        match self.build.next()? {
            Some((key, record)) => {
                copy(&mut self.head_key, key);
                copy(&mut self.head_record, record);
                self.has_head = true;
            }
            None => self.has_head = false,
        }
        Ok(())
    }

    /// Moves the build head into the held record, and reads the next head.
    fn hold_head(&mut self) -> Result<()> {
        std::mem::swap(&mut self.held_key, &mut self.head_key);
        std::mem::swap(&mut self.held_record, &mut self.head_record);
        self.advance_build()
    }

    /// Reads every build record of the head's key into the group.
    fn load_group(&mut self, context: &mut JoinContext) -> Result<()> {
        copy(&mut self.group_key, &self.head_key);
        self.group_valid = true;
        self.group_matched = false;
        let mut output = None;
        while self.has_head && self.head_key == self.group_key {
            if output.is_none() && !self.append_to_group()? {
                let mut spilled = context.create_output()?;
                let mut position = 0;
                while position < self.group.end() {
                    let len = self.group.header(position).total_len() as u64;
                    let (_, record) = self.group.record(position, &mut self.scratch);
                    write_record(&mut spilled, &self.group_key, record)?;
                    position += len;
                }
                for segment in self.group.take_segments() {
                    self.group_memory.give_back(segment);
                }
                output = Some(spilled);
            }
            if let Some(spilled) = &mut output {
                write_record(spilled, &self.group_key, &self.head_record)?;
            }
            self.advance_build()?;
        }
        if let Some(spilled) = output {
            self.overflow = Some(context.finish_io_output(spilled)?);
        }
        Ok(())
    }

    /// Appends the head record to the group in memory; `false` when it has no room.
    fn append_to_group(&mut self) -> Result<bool> {
        let len = RecordArea::footprint(0, self.head_record.len());
        while self.group.room() < len {
            match self.group_memory.allocate_one() {
                Ok(segment) => self.group.push_segment(segment),
                Err(error) if error.is_budget_exceeded() => return Ok(false),
                Err(error) => return Err(error),
            }
        }
        self.group.append(&[], &self.head_record);
        Ok(true)
    }

    fn start_cursor(&mut self, context: &mut JoinContext) -> Result<Cursor> {
        Ok(match &self.overflow {
            Some(run) => Cursor::Disk(context.open_run(run)?),
            None => Cursor::Memory(0),
        })
    }

    /// Reads the next record of the group into the held record; `false` after the last.
    fn next_in_group(&mut self, cursor: &mut Cursor) -> Result<bool> {
        match cursor {
            Cursor::Memory(position) => {
                if *position >= self.group.end() {
                    return Ok(false);
                }
                let len = self.group.header(*position).total_len() as u64;
                let (_, record) = self.group.record(*position, &mut self.scratch);
                copy(&mut self.held_record, record);
                *position += len;
                Ok(true)
            }
            Cursor::Disk(input) => {
                let run = self.overflow.as_ref().expect("a group on disk has its run");
                read_record(
                    input,
                    run.payload_bytes(),
                    &mut self.scratch,
                    &mut self.held_record,
                )
            }
        }
    }

    fn release_group(&mut self) {
        for segment in self.group.take_segments() {
            self.group_memory.give_back(segment);
        }
        self.overflow = None;
        self.group_valid = false;
    }
}

/// Gives a group run reader's segments back.
fn close_cursor(cursor: Cursor, context: &mut JoinContext) {
    if let Cursor::Disk(input) = cursor {
        context.close_run(input);
    }
}

fn copy(target: &mut Vec<u8>, source: &[u8]) {
    target.clear();
    target.extend_from_slice(source);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::join_config::JoinConfig;
    use crate::memory::test_manager;
    use crate::spill::{SpillConfig, open_store};

    type Row = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

    fn expected(build: &[(&[u8], u32)], probe: &[(&[u8], u32)], join_type: JoinType) -> Vec<Row> {
        let bytes = |n: u32| n.to_le_bytes().to_vec();
        let mut rows = Vec::new();
        for &(key, p) in probe {
            let matches: Vec<u32> = build.iter().filter(|b| b.0 == key).map(|b| b.1).collect();
            match join_type {
                JoinType::LeftSemi if !matches.is_empty() => {
                    rows.push((key.to_vec(), None, Some(bytes(p))))
                }
                JoinType::LeftAnti | JoinType::LeftOuter | JoinType::FullOuter
                    if matches.is_empty() =>
                {
                    rows.push((key.to_vec(), None, Some(bytes(p))));
                }
                JoinType::Inner
                | JoinType::LeftOuter
                | JoinType::RightOuter
                | JoinType::FullOuter => rows.extend(
                    matches
                        .iter()
                        .map(|&b| (key.to_vec(), Some(bytes(b)), Some(bytes(p)))),
                ),
                _ => {}
            }
        }
        for &(key, b) in build {
            let probed = probe.iter().any(|p| p.0 == key);
            let alone = match join_type {
                JoinType::RightSemi => probed,
                _ => join_type.keeps_unmatched_build() && !probed,
            };
            if alone {
                rows.push((key.to_vec(), Some(bytes(b)), None));
            }
        }
        rows.sort();
        rows
    }

    /// Duplicates on both sides (a group larger than the group's segments among them),
    /// keys only one side has, at the start, the middle and the end of the key order.
    #[test]
    fn many_to_many_groups_and_unmatched_keys_of_both_sides() {
        let mut build: Vec<(&[u8], u32)> = vec![(b"a", 1), (b"c", 2), (b"c", 3), (b"e", 4)];
        build.extend((0..3000).map(|i| (&b"d"[..], 100 + i)));
        let probe: Vec<(&[u8], u32)> = vec![
            (b"", 5),
            (b"c", 6),
            (b"c", 7),
            (b"d", 8),
            (b"d", 9),
            (b"f", 10),
        ];
        let manager = test_manager(120);
        let dir = std::env::temp_dir().join(format!("weir-merge-join-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = open_store(&SpillConfig::new(dir.clone())).unwrap();
        let config = JoinConfig {
            read_ahead: 1,
            write_behind: 1,
            ..JoinConfig::default()
        };
        let owner = manager.owner("merge");
        for join_type in JoinType::ALL {
            let io = owner
                .reserve(config.segments_per_writer() + config.segments_per_reader())
                .unwrap();
            let mut context = JoinContext::new(Arc::clone(&store), config, join_type, io);
            let sort = |side: &[(&[u8], u32)]| {
                let memory = owner
                    .reserve(config.sort_config().memory_segments_min())
                    .unwrap();
                let mut sorter = ExternalSorter::with_reservation(
                    memory,
                    Arc::clone(&store),
                    config.sort_config(),
                )
                .unwrap();
                for &(key, n) in side {
                    sorter.push(key, &n.to_le_bytes()).unwrap();
                }
                sorter.finish().unwrap()
            };
            let log2 = owner.segment_size().trailing_zeros();
            let group = owner.reserve(2).unwrap();
            let mut merge = MergeJoin::new(join_type, sort(&build), sort(&probe), group, log2);
            let mut rows = Vec::new();
            while let Some(emit) = merge.advance(&mut context).unwrap() {
                let row = merge.row(emit);
                rows.push((
                    row.key.to_vec(),
                    row.build.map(<[u8]>::to_vec),
                    row.probe.map(<[u8]>::to_vec),
                ));
            }
            assert!(
                merge.overflow.is_none(),
                "the group run is gone with its group"
            );
            rows.sort();
            assert_eq!(rows, expected(&build, &probe, join_type), "{join_type:?}");
            assert!(
                context.stats.spilled_bytes > 0,
                "the group of d went to a run"
            );
            drop((merge.into_memory(), context));
        }
        manager.leak_check().unwrap();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no run is left"
        );
        std::fs::remove_dir(&dir).unwrap();
    }
}
