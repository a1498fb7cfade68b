//! The levels of a [`HashJoin`]: the end of one (spilled pairs pushed), the next pair
//! rebuilt with a new seed or sorted for a sort-merge join, and the runs they read.
//!
//! ```text
//!   end_level ──▶ per spilled partition: probe run closed, bloom filter and probe writer
//!                 back to the reserve ──▶ Pair { build runs, probe run, depth, parent }
//!                 pushed when it can still make rows (it has probe records, or the join
//!                 keeps unmatched build records)
//!   pop_pair ──▶ shrank and shallow enough: rebuild (read build runs with seed_at(depth))
//!            ──▶ otherwise: sort_pair (both sides through ExternalSorter) ──▶ MergeJoin
//! ```
//!
//! A pair "does not shrink" when its build bytes are at least [`HASH_SHRINK_PERCENT_MIN`]
//! percent of those of the pair whose join spilled it: a new seed did not split it (one hot
//! key), so hashing again would only repeat the work. Runs hold
//! `[varint key_len][varint record_len][key][record]` (docs/FORMAT.md, section 8).

use std::sync::Arc;

use super::hasher::{hash_bytes, seed_at};
use super::join::{HashJoin, empty_partitions};
use super::join_config::JoinConfig;
use super::join_table::JoinTable;
use super::merge_join::MergeJoin;
use crate::constants::{HASH_JOIN_GROUP_SEGMENTS, HASH_SHRINK_PERCENT_MIN};
use crate::error::{KernelError, Result};
use crate::memory::Reservation;
use crate::sort::ExternalSorter;
use crate::spill::{RunInput, RunOutput, SpillRun};

/// A spilled partition's build runs and probe run, waiting to be joined.
#[derive(Debug)]
pub(super) struct Pair {
    build_runs: Vec<SpillRun>,
    build_bytes: u64,
    probe: Option<SpillRun>,
    depth: usize,
    /// Build bytes of the pair whose join spilled this one (none for the input).
    parent_bytes: Option<u64>,
}

impl Pair {
    /// Whether hashing again is hopeless (or not allowed): sort-merge it instead.
    fn needs_sort(&self, config: &JoinConfig) -> bool {
        self.depth > config.recursion_depth_max
            || self
                .parent_bytes
                .is_some_and(|parent| self.build_bytes * 100 >= parent * HASH_SHRINK_PERCENT_MIN)
    }
}

impl HashJoin {
    /// Ends the current level: probe runs are closed, bloom filters and probe writers go
    /// back to the reserve, and every spilled pair that can still produce rows is pushed
    /// on the pending stack (the others' runs are deleted).
    pub(super) fn end_level(&mut self) -> Result<()> {
        let count = self.partitions.len();
        let partitions = std::mem::replace(&mut self.partitions, empty_partitions(count));
        for state in partitions.into_iter().rev() {
            if let Some(bloom) = state.bloom {
                self.reserve.give_back(bloom.into_segment());
            }
            let probe = match state.probe {
                Some(output) => {
                    let (run, segments) = output.finish()?;
                    for segment in segments {
                        self.reserve.give_back(segment);
                    }
                    self.stats.spilled_bytes += run.disk_bytes();
                    Some(run)
                }
                None => None,
            };
            if state.spilled && (probe.is_some() || self.join_type.keeps_unmatched_build()) {
                self.pending.push(Pair {
                    build_runs: state.build_runs,
                    build_bytes: state.build_bytes,
                    probe,
                    depth: self.depth + 1,
                    parent_bytes: self.input_bytes,
                });
            }
        }
        Ok(())
    }

    /// The next spilled pair, if any.
    pub(super) fn pop_pair(&mut self) -> Option<Pair> {
        self.pending.pop()
    }

    /// Whether `pair` is to be sort-merged rather than joined by hashing again.
    pub(super) fn needs_sort(&self, pair: &Pair) -> bool {
        pair.needs_sort(&self.config)
    }

    /// Builds the table again from `pair`'s build runs with its level's seed; returns its
    /// probe run, which the caller probes before [`HashJoin::end_level`].
    ///
    /// # Errors
    ///
    /// A failed read of the build runs, or a failed spill of a sub-partition.
    pub(super) fn rebuild(&mut self, pair: Pair) -> Result<Option<SpillRun>> {
        self.assert_io_home();
        let seed = seed_at(self.config.seed, pair.depth);
        self.table_mut().clear(seed);
        self.probing = false;
        self.depth = pair.depth;
        self.input_bytes = Some(pair.build_bytes);
        self.stats.recursion_depth_max = self.stats.recursion_depth_max.max(pair.depth as u64);
        for run in &pair.build_runs {
            self.read_run(run, |join, key, record| {
                join.insert_build(hash_bytes(seed, key), key, record)
            })?;
        }
        drop(pair.build_runs);
        self.finish_build()?;
        Ok(pair.probe)
    }

    /// Sorts both sides of `pair` with the table's memory for a sort-merge join.
    ///
    /// # Errors
    ///
    /// A failed read of the pair's runs, or a failed spill of a sorter.
    pub(super) fn sort_pair(&mut self, pair: Pair) -> Result<MergeJoin> {
        self.assert_io_home();
        self.stats.sort_merge_fallbacks += 1;
        let mut memory = self.table.take().expect("the table is home").into_memory();
        let group = memory.split(HASH_JOIN_GROUP_SEGMENTS);
        let build_memory = memory.split(memory.segments() / 2);
        let config = self.config.sort_config();
        let mut sorter =
            ExternalSorter::with_reservation(build_memory, Arc::clone(&self.store), config)?;
        for run in &pair.build_runs {
            self.read_run(run, |_, key, record| sorter.push(key, record))?;
        }
        drop(pair.build_runs);
        let build = sorter.finish()?;
        self.stats.spilled_bytes += build.stats().spilled_bytes;
        let mut sorter = ExternalSorter::with_reservation(memory, Arc::clone(&self.store), config)?;
        if let Some(run) = &pair.probe {
            self.read_run(run, |_, key, record| sorter.push(key, record))?;
        }
        drop(pair.probe);
        let probe = sorter.finish()?;
        self.stats.spilled_bytes += probe.stats().spilled_bytes;
        Ok(MergeJoin::new(
            self.join_type,
            build,
            probe,
            group,
            self.table_log2(),
        ))
    }

    fn table_log2(&self) -> u32 {
        self.io.owner().segment_size().trailing_zeros()
    }

    /// Takes the table's memory back from a sort-merge fallback.
    pub(super) fn return_memory(&mut self, memory: Reservation) {
        assert!(self.table.is_none(), "the table is home already");
        let partitions = self.partitions.len();
        self.table = Some(JoinTable::new(
            memory,
            seed_at(self.config.seed, 0),
            partitions,
        ));
    }

    /// Opens `run` with the io reader's segments.
    pub(super) fn open_run(&mut self, run: &SpillRun) -> Result<RunInput> {
        let buffers = self.io.allocate(self.config.segments_per_reader())?;
        Ok(RunInput::new(self.store.open_run(run, buffers)?))
    }

    /// Gives the io reader's segments back from a finished input.
    pub(super) fn close_run(&mut self, input: RunInput) {
        for segment in input.into_segments() {
            self.io.give_back(segment);
        }
    }

    /// Calls `sink(self, key, record)` for every record of `run`.
    fn read_run(
        &mut self,
        run: &SpillRun,
        mut sink: impl FnMut(&mut HashJoin, &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut input = self.open_run(run)?;
        let (mut key, mut record) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.record),
        );
        while read_record(&mut input, run.payload_bytes(), &mut key, &mut record)? {
            sink(self, &key, &record)?;
        }
        (self.key, self.record) = (key, record);
        self.close_run(input);
        Ok(())
    }

    /// Checks that the run writer's and reader's segments came back between runs.
    fn assert_io_home(&self) {
        assert_eq!(
            self.io.segments(),
            self.config.segments_per_writer() + self.config.segments_per_reader(),
            "a run writer or reader kept segments of the join"
        );
    }
}

/// Writes one record of a join run: `[varint key_len][varint record_len][key][record]`.
pub(super) fn write_record(output: &mut RunOutput, key: &[u8], record: &[u8]) -> Result<()> {
    output.write_varint(key.len() as u64)?;
    output.write_varint(record.len() as u64)?;
    output.write_bytes(key)?;
    output.write_bytes(record)
}

/// Reads the next record of a join run of `payload` bytes into `key` and `record`;
/// `false` at its end.
///
/// # Errors
///
/// A failed or corrupt read; [`KernelError::Malformed`] for lengths past the run's end.
pub(super) fn read_record(
    input: &mut RunInput,
    payload: u64,
    key: &mut Vec<u8>,
    record: &mut Vec<u8>,
) -> Result<bool> {
    if input.is_at_end()? {
        return Ok(false);
    }
    let key_len = input.read_varint()?;
    let record_len = input.read_varint()?;
    let left = payload - input.bytes_read().min(payload);
    if key_len.saturating_add(record_len) > left {
        return Err(KernelError::Malformed {
            position: input.bytes_read(),
            what: "join record whose lengths run past the end of its run",
        });
    }
    key.resize(key_len as usize, 0);
    input.read_exact(key)?;
    record.resize(record_len as usize, 0);
    input.read_exact(record)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::test_manager;
    use crate::spill::{RunOptions, SpillConfig, open_store};

    /// The worked example of docs/FORMAT.md, section 8.
    #[test]
    fn format_doc_example() {
        let manager = test_manager(8);
        let owner = manager.owner("join");
        let dir = std::env::temp_dir().join(format!("weir-join-format-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = open_store(&SpillConfig::new(dir.clone())).unwrap();
        let options = RunOptions {
            compress: false,
            write_behind: 1,
        };
        let mut output = RunOutput::new(
            store.create_run(options).unwrap(),
            owner.allocate(2).unwrap(),
        );
        let (key, record) = (7u64.to_be_bytes(), 1234i64.to_le_bytes());
        write_record(&mut output, &key, &record).unwrap();
        let (run, segments) = output.finish().unwrap();
        drop(segments);
        let expected = [
            0x08, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xd2, 0x04, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(run.payload_bytes(), 18);
        let mut input = RunInput::new(store.open_run(&run, owner.allocate(2).unwrap()).unwrap());
        let mut bytes = vec![0; 18];
        input.read_exact(&mut bytes).unwrap();
        assert_eq!(bytes, expected);
        drop((input, run));
        let mut table = JoinTable::new(owner.reserve(2).unwrap(), 0, 10);
        assert!(table.append(3, &key, &record).unwrap());
        assert_eq!(table.bytes(3), 19);
        let doc = include_str!("../../../docs/FORMAT.md");
        assert!(doc.contains("08                          varint 8: key_len"));
        assert!(doc.contains("d2 04 00 00 00 00 00 00     record: 1234 cents"));
        drop(table.into_memory());
        manager.leak_check().unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn pairs_that_do_not_shrink_or_go_too_deep_are_sorted() {
        let config = JoinConfig {
            recursion_depth_max: 2,
            ..JoinConfig::default()
        };
        let pair = |depth, build_bytes, parent_bytes| Pair {
            build_runs: Vec::new(),
            build_bytes,
            probe: None,
            depth,
            parent_bytes,
        };
        assert!(!pair(1, 1000, None).needs_sort(&config));
        assert!(!pair(2, 700, Some(1000)).needs_sort(&config));
        assert!(pair(2, 750, Some(1000)).needs_sort(&config));
        assert!(pair(3, 10, Some(1000)).needs_sort(&config));
    }
}
