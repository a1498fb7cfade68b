//! `JoinType`, `JoinConfig` and `JoinStats`: what a hash join computes, how it spills,
//! and what it did.
//!
//! Sides: the **probe** side is the *left* input and the **build** side the *right* one,
//! the usual convention when the smaller input is built (Flink builds the right side of
//! its hybrid hash join as well). So a left outer join keeps every probe record, a right
//! outer join every build record, left semi and anti joins return probe records, and right
//! semi and anti joins return build records (build the smaller side, whichever side the
//! query keeps).

use crate::constants::{
    HASH_JOIN_GROUP_SEGMENTS, HASH_JOIN_PARTITIONS_MAX, HASH_JOIN_PARTITIONS_MIN,
    HASH_JOIN_PROBE_WRITE_BEHIND, HASH_JOIN_SEGMENTS_PER_PARTITION,
    HASH_JOIN_SEGMENTS_RESERVED_PER_PARTITION, HASH_RECURSION_DEPTH_DEFAULT,
    HASH_RECURSION_DEPTH_MAX, SORT_FAN_IN_MAX, SPILL_READ_AHEAD_DEFAULT,
    SPILL_WRITE_BEHIND_DEFAULT,
};
use crate::error::{KernelError, Result};
use crate::sort::SortConfig;

/// Segments the bucket array of a join table needs at least.
const BUCKET_SEGMENTS_MIN: usize = 1;

/// What a [`HashJoin`](super::HashJoin) emits. Left is the probe side, right the build side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinType {
    /// Every (build, probe) pair with equal keys.
    Inner,
    /// Inner pairs, and each probe record without a match once, with no build record.
    LeftOuter,
    /// Inner pairs, and each build record without a match once, with no probe record.
    RightOuter,
    /// Each probe record with at least one match once, with no build record.
    LeftSemi,
    /// Each probe record without a match once, with no build record.
    LeftAnti,
    /// Each build record with at least one match once, with no probe record (emitted at
    /// its first match).
    RightSemi,
    /// Each build record without a match once, with no probe record (emitted after the
    /// probe side).
    RightAnti,
    /// Inner pairs, each probe record without a match once with no build record, and
    /// each build record without a match once with no probe record.
    FullOuter,
}

impl JoinType {
    /// Every join type, for tests and benchmarks.
    pub const ALL: [JoinType; 8] = [
        JoinType::Inner,
        JoinType::LeftOuter,
        JoinType::RightOuter,
        JoinType::LeftSemi,
        JoinType::LeftAnti,
        JoinType::RightSemi,
        JoinType::RightAnti,
        JoinType::FullOuter,
    ];

    /// Whether probe records without a match are emitted.
    pub(super) fn keeps_unmatched_probe(self) -> bool {
        matches!(
            self,
            JoinType::LeftOuter | JoinType::LeftAnti | JoinType::FullOuter
        )
    }

    /// Whether build records without a match are emitted (and need a matched bit).
    pub(super) fn keeps_unmatched_build(self) -> bool {
        matches!(
            self,
            JoinType::RightOuter | JoinType::RightAnti | JoinType::FullOuter
        )
    }

    /// Whether a probe record without a match emits nothing (the joins a key filter can
    /// answer for).
    pub(super) fn drops_unmatched_probe(self) -> bool {
        !self.keeps_unmatched_probe()
    }
}

/// How a [`HashJoin`](super::HashJoin) partitions, spills and recurses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinConfig {
    /// Partitions of the build side, from [`HASH_JOIN_PARTITIONS_MIN`] to
    /// [`HASH_JOIN_PARTITIONS_MAX`]; `None` chooses from memory (one per
    /// [`HASH_JOIN_SEGMENTS_PER_PARTITION`] segments, within that range).
    pub partitions: Option<usize>,
    /// Levels of hash re-partitioning of a spilled pair before it is joined by sort-merge
    /// instead (0: every spilled pair is sort-merged); at most [`HASH_RECURSION_DEPTH_MAX`].
    pub recursion_depth_max: usize,
    /// The base of every level's hash seed.
    pub seed: u64,
    /// LZ4-compress spilled blocks.
    pub compress: bool,
    /// Blocks a run reader reads ahead (at least 1).
    pub read_ahead: usize,
    /// Blocks the build run writer keeps in flight (at least 1).
    pub write_behind: usize,
}

impl Default for JoinConfig {
    fn default() -> JoinConfig {
        JoinConfig {
            partitions: None,
            recursion_depth_max: HASH_RECURSION_DEPTH_DEFAULT,
            seed: 0x5745_4952_4a4f_494e,
            compress: false,
            read_ahead: SPILL_READ_AHEAD_DEFAULT,
            write_behind: SPILL_WRITE_BEHIND_DEFAULT,
        }
    }
}

impl JoinConfig {
    pub(super) fn segments_per_reader(&self) -> usize {
        self.read_ahead + 1
    }

    pub(super) fn segments_per_writer(&self) -> usize {
        self.write_behind + 1
    }

    pub(super) fn segments_per_probe_writer() -> usize {
        HASH_JOIN_PROBE_WRITE_BEHIND + 1
    }

    /// The sorter configuration of a sort-merge fallback.
    pub(super) fn sort_config(&self) -> SortConfig {
        SortConfig {
            compress: self.compress,
            read_ahead: self.read_ahead,
            write_behind: self.write_behind,
            fan_in_max: SORT_FAN_IN_MAX,
        }
    }

    /// Segments of the table a sort-merge fallback can split: two sorters and a group.
    fn table_segments_min(&self) -> usize {
        let sort_merge = 2 * self.sort_config().memory_segments_min() + HASH_JOIN_GROUP_SEGMENTS;
        sort_merge.max(BUCKET_SEGMENTS_MIN + 2)
    }

    fn io_segments(&self) -> usize {
        self.segments_per_writer() + self.segments_per_reader()
    }

    /// The partition count for `memory_segments` of memory.
    pub(super) fn partitions_for(&self, memory_segments: usize) -> usize {
        self.partitions.unwrap_or_else(|| {
            let spare = memory_segments.saturating_sub(self.io_segments());
            (spare / HASH_JOIN_SEGMENTS_PER_PARTITION)
                .clamp(HASH_JOIN_PARTITIONS_MIN, HASH_JOIN_PARTITIONS_MAX)
        })
    }

    /// The smallest memory, in segments, a join with this configuration accepts: a build
    /// run writer, a run reader, a bloom filter and a probe writer per partition, and a
    /// table a sort-merge fallback can split into two sorters.
    pub fn memory_segments_min(&self) -> usize {
        let partitions = self.partitions.unwrap_or(HASH_JOIN_PARTITIONS_MIN);
        self.io_segments()
            + partitions * HASH_JOIN_SEGMENTS_RESERVED_PER_PARTITION
            + self.table_segments_min()
    }

    /// Segments reserved for the partitions, out of `memory_segments`.
    pub(super) fn reserved_segments(&self, memory_segments: usize) -> usize {
        self.partitions_for(memory_segments) * HASH_JOIN_SEGMENTS_RESERVED_PER_PARTITION
    }

    /// Checks the ranges, and that `memory_segments` is enough.
    pub(super) fn validate(&self, memory_segments: usize) -> Result<()> {
        let invalid = |field, value: usize, expected| KernelError::InvalidConfig {
            field,
            value: value.to_string(),
            expected,
        };
        if let Some(partitions) = self.partitions
            && !(HASH_JOIN_PARTITIONS_MIN..=HASH_JOIN_PARTITIONS_MAX).contains(&partitions)
        {
            return Err(invalid("partitions", partitions, "10 to 127"));
        }
        if self.recursion_depth_max > HASH_RECURSION_DEPTH_MAX {
            return Err(invalid(
                "recursion_depth_max",
                self.recursion_depth_max,
                "0 to 16",
            ));
        }
        if !(1..=64).contains(&self.write_behind) {
            return Err(invalid("write_behind", self.write_behind, "1 to 64"));
        }
        if !(1..=64).contains(&self.read_ahead) {
            return Err(invalid("read_ahead", self.read_ahead, "1 to 64"));
        }
        let partitions = self.partitions_for(memory_segments);
        let min = self.io_segments()
            + partitions * HASH_JOIN_SEGMENTS_RESERVED_PER_PARTITION
            + self.table_segments_min();
        if memory_segments < min {
            return Err(KernelError::InvalidConfig {
                field: "hash join memory",
                value: format!(
                    "{memory_segments} segments, below the minimum of {min} for {partitions} partitions"
                ),
                expected: "a run writer and reader, a bloom filter and a probe writer per \
                           partition, and a table two sorters can share",
            });
        }
        Ok(())
    }
}

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JoinStats {
    /// Build records pushed.
    pub build_records: u64,
    /// Probe records pushed.
    pub probe_records: u64,
    /// Rows emitted so far (by `probe` and by the stream).
    pub output_rows: u64,
    /// Bytes written to disk: build and probe runs at every level, sort fallbacks included.
    pub spilled_bytes: u64,
    /// Partitions (at every level) whose build records went to disk.
    pub partitions_spilled: u64,
    /// The deepest level a spilled pair was re-joined at (0: nothing was re-joined).
    pub recursion_depth_max: u64,
    /// Probe records of spilled partitions the bloom filter showed to have no match: not
    /// written to disk (and emitted at once when the join keeps unmatched probe records).
    pub bloom_filtered: u64,
    /// Probe records of partitions in memory the table's key filter showed to have no
    /// match: answered without a lookup.
    pub key_filtered: u64,
    /// Spilled pairs joined by sort-merge because they did not shrink or were too deep.
    pub sort_merge_fallbacks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_memory_within_range() {
        let config = JoinConfig::default();
        let min = config.memory_segments_min();
        assert_eq!(config.partitions_for(min), HASH_JOIN_PARTITIONS_MIN);
        assert_eq!(config.partitions_for(1 << 20), HASH_JOIN_PARTITIONS_MAX);
        assert_eq!(config.partitions_for(16 * 40 + 8), 40);
        assert!(config.validate(min).is_ok());
        assert!(config.validate(min - 1).is_err());
        let fields = [
            JoinConfig {
                partitions: Some(9),
                ..config
            },
            JoinConfig {
                recursion_depth_max: 17,
                ..config
            },
            JoinConfig {
                write_behind: 0,
                ..config
            },
            JoinConfig {
                read_ahead: 0,
                ..config
            },
        ]
        .map(|config| match config.validate(1 << 16) {
            Err(KernelError::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        });
        assert_eq!(
            fields,
            [
                "partitions",
                "recursion_depth_max",
                "write_behind",
                "read_ahead"
            ]
        );
    }
}
