//! The spill state an aggregation hands from one level to the next: a spilled
//! [`Partition`] waiting to be aggregated, and the groups a level [`Kept`] in its table.
//!
//! ```text
//!   HashAggregate::end_level ──▶ Kept (stream these from the table)
//!                            ──▶ Partition { runs, bytes, depth, parent } pending
//!   AggregateStream ──▶ Partition::needs_sort? ──▶ no: reaggregate ──▶ Kept
//!                                              ──▶ yes: sort_partition ──▶ sorted groups
//! ```
//!
//! A leaf of plain data shared by the aggregation and its stream. A partition "does not
//! shrink" when its bytes are at least [`HASH_SHRINK_PERCENT_MIN`] percent of those of the
//! partition whose re-aggregation spilled it: a new seed did not split it (one hot key),
//! so hashing again would only repeat the work.

use super::config::AggregateConfig;
use crate::constants::HASH_SHRINK_PERCENT_MIN;
use crate::spill::SpillRun;

/// A spilled partition waiting to be aggregated.
#[derive(Debug, Default)]
pub(super) struct Partition {
    pub(super) runs: Vec<SpillRun>,
    /// Payload bytes of the runs.
    pub(super) bytes: u64,
    /// The level its data is re-aggregated at.
    pub(super) depth: usize,
    /// Payload bytes of the partition whose re-aggregation spilled it (none for the input).
    pub(super) parent_bytes: Option<u64>,
}

impl Partition {
    /// Whether hashing again is hopeless (or not allowed): sort it instead.
    pub(super) fn needs_sort(&self, config: &AggregateConfig) -> bool {
        self.depth > config.recursion_depth_max
            || self
                .parent_bytes
                .is_some_and(|parent| self.bytes * 100 >= parent * HASH_SHRINK_PERCENT_MIN)
    }
}

/// The groups a level leaves in the table to be streamed from it.
#[derive(Debug)]
pub(super) enum Kept {
    /// Every group: no partition of the level spilled.
    All,
    /// The groups of these bucket ranges (of the scattered table): the partitions that
    /// never spilled.
    Buckets(Vec<std::ops::Range<usize>>),
}

/// `count` partitions, none spilled.
pub(super) fn empty_partitions(count: usize) -> Vec<Partition> {
    (0..count).map(|_| Partition::default()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_that_do_not_shrink_or_go_too_deep_are_sorted() {
        let config = AggregateConfig {
            recursion_depth_max: 2,
            ..AggregateConfig::default()
        };
        let partition = |depth, bytes, parent_bytes| Partition {
            runs: Vec::new(),
            bytes,
            depth,
            parent_bytes,
        };
        assert!(!partition(1, 1000, None).needs_sort(&config));
        assert!(!partition(2, 700, Some(1000)).needs_sort(&config));
        assert!(partition(2, 750, Some(1000)).needs_sort(&config));
        assert!(partition(2, 1200, Some(1000)).needs_sort(&config));
        assert!(partition(3, 10, Some(1000)).needs_sort(&config));
    }
}
