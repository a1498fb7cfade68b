//! `Levels`: the spill state of a [`HashJoin`](super::HashJoin) — which partitions of the
//! current level spilled, their runs and bloom filters, and the spilled pairs still to
//! join at deeper levels.
//!
//! ```text
//!   mark_spilled(p) ──▶ p's bloom filter from the reserve; add_build_run(p, run)
//!   spill_probe(p)  ──▶ bloom says no: filtered ──▶ maybe: p's probe run (writer from
//!                       the reserve, opened on first use)
//!   end_level ──▶ per spilled partition: probe run closed, bloom filter and probe writer
//!                 back to the reserve ──▶ Pair { build runs, probe run, depth, parent }
//!                 pushed when it can still make rows (it has probe records, or the join
//!                 keeps unmatched build records)
//!   pop_pair ──▶ Pair::needs_sort? ──▶ no: the join rebuilds its table from it (enter)
//!                                  ──▶ yes: MergeJoin sorts and merges it
//! ```
//!
//! The levels take the join's [`JoinContext`] by `&mut` for what they share with the rest
//! of the join (store, configuration, stats), and never see its table. A pair "does not
//! shrink" when its build bytes are at least [`HASH_SHRINK_PERCENT_MIN`] percent of those
//! of the pair whose join spilled it: a new seed did not split it (one hot key), so hashing
//! again would only repeat the work. Invariant: the reserve holds every bloom filter and
//! probe writer segment between levels, so each level starts with the same memory.

use super::bloom::Bloom;
use super::join_config::JoinConfig;
use super::join_context::JoinContext;
use super::join_run::write_record;
use crate::constants::{HASH_JOIN_PROBE_WRITE_BEHIND, HASH_SHRINK_PERCENT_MIN};
use crate::error::Result;
use crate::memory::Reservation;
use crate::spill::{RunOptions, RunOutput, SpillRun};

/// A partition's state at the current level.
#[derive(Debug, Default)]
struct PartitionState {
    spilled: bool,
    build_runs: Vec<SpillRun>,
    build_bytes: u64,
    bloom: Option<Bloom>,
    probe: Option<RunOutput>,
}

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
    pub(super) fn needs_sort(&self, config: &JoinConfig) -> bool {
        self.depth > config.recursion_depth_max
            || self
                .parent_bytes
                .is_some_and(|parent| self.build_bytes * 100 >= parent * HASH_SHRINK_PERCENT_MIN)
    }

    /// The level the pair is joined at.
    pub(super) fn depth(&self) -> usize {
        self.depth
    }

    /// The pair's build runs and probe run.
    pub(super) fn into_runs(self) -> (Vec<SpillRun>, Option<SpillRun>) {
        (self.build_runs, self.probe)
    }
}

/// The spill state of a join across its levels. See the module documentation.
#[derive(Debug)]
pub(super) struct Levels {
    partitions: Vec<PartitionState>,
    /// Bloom filter and probe writer segments of spilled partitions.
    reserve: Reservation,
    pending: Vec<Pair>,
    depth: usize,
    /// Build bytes of the pair this level joins (none for the input).
    input_bytes: Option<u64>,
}

impl Levels {
    /// The input level of `partitions` partitions, none spilled.
    pub(super) fn new(reserve: Reservation, partitions: usize) -> Levels {
        Levels {
            partitions: empty_partitions(partitions),
            reserve,
            pending: Vec::new(),
            depth: 0,
            input_bytes: None,
        }
    }

    /// Partitions of a level.
    pub(super) fn count(&self) -> usize {
        self.partitions.len()
    }

    /// Whether `partition` spilled at this level.
    #[inline]
    pub(super) fn is_spilled(&self, partition: usize) -> bool {
        self.partitions[partition].spilled
    }

    /// Marks `partition` spilled, with a bloom filter from the reserve.
    ///
    /// # Errors
    ///
    /// The reserve is out of segments (a bug: it holds one per partition).
    pub(super) fn mark_spilled(
        &mut self,
        context: &mut JoinContext,
        partition: usize,
    ) -> Result<()> {
        if !self.partitions[partition].spilled {
            let segment = self.reserve.allocate_one()?;
            let state = &mut self.partitions[partition];
            state.spilled = true;
            state.bloom = Some(Bloom::new(segment));
            context.stats.partitions_spilled += 1;
        }
        Ok(())
    }

    /// The bloom filter of spilled `partition`, for its build keys.
    ///
    /// # Panics
    ///
    /// When `partition` has not spilled.
    pub(super) fn bloom_mut(&mut self, partition: usize) -> &mut Bloom {
        self.partitions[partition].bloom.as_mut().expect("spilled")
    }

    /// Adds a finished build run to `partition`.
    pub(super) fn add_build_run(&mut self, partition: usize, run: SpillRun) {
        let state = &mut self.partitions[partition];
        state.build_bytes += run.payload_bytes();
        state.build_runs.push(run);
    }

    /// Sends a probe record (key hashing to `hash`) of spilled `partition` to its probe
    /// run, unless the bloom filter rules a match out; returns whether it was written.
    ///
    /// # Errors
    ///
    /// A probe run that cannot be created or written.
    ///
    /// # Panics
    ///
    /// When `partition` has not spilled.
    pub(super) fn spill_probe(
        &mut self,
        context: &mut JoinContext,
        partition: usize,
        hash: u64,
        key: &[u8],
        record: &[u8],
    ) -> Result<bool> {
        let state = &mut self.partitions[partition];
        if !state.bloom.as_ref().expect("spilled").may_contain(hash) {
            context.stats.bloom_filtered += 1;
            return Ok(false);
        }
        if state.probe.is_none() {
            let writer = context.store.create_run(RunOptions {
                compress: context.config.compress,
                write_behind: HASH_JOIN_PROBE_WRITE_BEHIND,
            })?;
            let segments = self
                .reserve
                .allocate(JoinConfig::segments_per_probe_writer())?;
            state.probe = Some(RunOutput::new(writer, segments));
        }
        write_record(state.probe.as_mut().expect("opened"), key, record)?;
        Ok(true)
    }

    /// Ends the current level: probe runs are closed, bloom filters and probe writers go
    /// back to the reserve, and every spilled pair that can still produce rows is pushed
    /// on the pending stack (the others' runs are deleted).
    ///
    /// # Errors
    ///
    /// The last write of a probe run fails.
    pub(super) fn end_level(&mut self, context: &mut JoinContext) -> Result<()> {
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
                    context.stats.spilled_bytes += run.disk_bytes();
                    Some(run)
                }
                None => None,
            };
            if state.spilled && (probe.is_some() || context.join_type.keeps_unmatched_build()) {
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

    /// Starts the level that joins `pair` by hashing again.
    pub(super) fn enter(&mut self, context: &mut JoinContext, pair: &Pair) {
        self.depth = pair.depth;
        self.input_bytes = Some(pair.build_bytes);
        let stats = &mut context.stats;
        stats.recursion_depth_max = stats.recursion_depth_max.max(pair.depth as u64);
    }
}

fn empty_partitions(count: usize) -> Vec<PartitionState> {
    (0..count).map(|_| PartitionState::default()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
