//! `AggregateConfig` and `AggregateStats`: how a hash aggregation spills, and what it did.
//!
//! The configuration sizes the memory split of [`HashAggregate`](super::HashAggregate)
//! (a run writer, a run reader and a table a sort fallback can borrow) and the shape of
//! its recursion (partitions per spill, levels before sorting). The stats are the numbers
//! docs/WORKLOADS.md reports for a spilling job.

use crate::constants::{
    HASH_PARTITIONS_DEFAULT, HASH_PARTITIONS_MAX, HASH_PARTITIONS_MIN,
    HASH_RECURSION_DEPTH_DEFAULT, HASH_RECURSION_DEPTH_MAX, SORT_FAN_IN_MAX,
    SPILL_READ_AHEAD_DEFAULT, SPILL_WRITE_BEHIND_DEFAULT,
};
use crate::error::{KernelError, Result};
use crate::sort::SortConfig;

/// Segments a table needs at least: a bucket segment and two of records.
const TABLE_SEGMENTS_MIN: usize = 3;

/// How a [`HashAggregate`](super::HashAggregate) spills and re-aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateConfig {
    /// Partitions one spill splits the groups into: a power of two from
    /// [`HASH_PARTITIONS_MIN`] to [`HASH_PARTITIONS_MAX`].
    pub partitions: usize,
    /// Levels of hash re-aggregation before a partition is sorted instead (0: every
    /// spilled partition is sorted); at most [`HASH_RECURSION_DEPTH_MAX`].
    pub recursion_depth_max: usize,
    /// The base of every level's hash seed.
    pub seed: u64,
    /// LZ4-compress spilled blocks.
    pub compress: bool,
    /// Blocks a run reader reads ahead (at least 1).
    pub read_ahead: usize,
    /// Blocks a run writer keeps in flight (at least 1).
    pub write_behind: usize,
}

impl Default for AggregateConfig {
    fn default() -> AggregateConfig {
        AggregateConfig {
            partitions: HASH_PARTITIONS_DEFAULT,
            recursion_depth_max: HASH_RECURSION_DEPTH_DEFAULT,
            seed: 0x5745_4952_4841_5348,
            compress: false,
            read_ahead: SPILL_READ_AHEAD_DEFAULT,
            write_behind: SPILL_WRITE_BEHIND_DEFAULT,
        }
    }
}

impl AggregateConfig {
    pub(super) fn segments_per_reader(&self) -> usize {
        self.read_ahead + 1
    }

    pub(super) fn segments_per_writer(&self) -> usize {
        self.write_behind + 1
    }

    /// The sorter configuration a partition that falls back to sorting uses.
    pub(super) fn sort_config(&self) -> SortConfig {
        SortConfig {
            compress: self.compress,
            read_ahead: self.read_ahead,
            write_behind: self.write_behind,
            fan_in_max: SORT_FAN_IN_MAX,
        }
    }

    pub(super) fn partition_bits(&self) -> u32 {
        self.partitions.trailing_zeros()
    }

    /// The smallest memory, in segments, an aggregation with this configuration accepts:
    /// a run writer, a run reader, and a table large enough to lend to a sort fallback.
    pub fn memory_segments_min(&self) -> usize {
        let table = TABLE_SEGMENTS_MIN.max(self.sort_config().memory_segments_min());
        self.segments_per_writer() + self.segments_per_reader() + table
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.recursion_depth_max > HASH_RECURSION_DEPTH_MAX {
            return Err(KernelError::InvalidConfig {
                field: "recursion_depth_max",
                value: self.recursion_depth_max.to_string(),
                expected: "0 to 16",
            });
        }
        validate_spilling(self.partitions, self.read_ahead, self.write_behind)
    }
}

/// Checks a hash operator's partition count (a power of two from 2 to 64) and its run
/// reader's and writer's depths (1 to 64 blocks).
pub(super) fn validate_spilling(
    partitions: usize,
    read_ahead: usize,
    write_behind: usize,
) -> Result<()> {
    if !partitions.is_power_of_two()
        || !(HASH_PARTITIONS_MIN..=HASH_PARTITIONS_MAX).contains(&partitions)
    {
        return Err(KernelError::InvalidConfig {
            field: "partitions",
            value: partitions.to_string(),
            expected: "a power of two from 2 to 64",
        });
    }
    validate_io(read_ahead, write_behind)
}

fn validate_io(read_ahead: usize, write_behind: usize) -> Result<()> {
    for (field, value) in [("write_behind", write_behind), ("read_ahead", read_ahead)] {
        if !(1..=64).contains(&value) {
            return Err(KernelError::InvalidConfig {
                field,
                value: value.to_string(),
                expected: "1 to 64",
            });
        }
    }
    Ok(())
}

/// What an aggregation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AggregateStats {
    /// Records pushed (values and partial accumulators).
    pub records: u64,
    /// Groups streamed out so far.
    pub groups: u64,
    /// Bytes written to disk, re-aggregation and sort fallbacks included.
    pub spilled_bytes: u64,
    /// Partitions (at every level) that received at least one run.
    pub partitions_spilled: u64,
    /// Times a full table was spilled.
    pub table_spills: u64,
    /// The deepest level a table re-aggregated at (0: nothing was re-aggregated).
    pub recursion_depth_max: u64,
    /// Partitions aggregated by sorting because they did not shrink or were too deep.
    pub sort_fallbacks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_out_of_range_name_the_field() {
        let fields = [
            AggregateConfig {
                partitions: 128,
                ..AggregateConfig::default()
            },
            AggregateConfig {
                recursion_depth_max: 17,
                ..AggregateConfig::default()
            },
            AggregateConfig {
                read_ahead: 0,
                ..AggregateConfig::default()
            },
            AggregateConfig {
                write_behind: 0,
                ..AggregateConfig::default()
            },
        ]
        .map(|config| match config.validate() {
            Err(KernelError::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        });
        assert_eq!(
            fields,
            [
                "partitions",
                "recursion_depth_max",
                "read_ahead",
                "write_behind"
            ]
        );
        assert_eq!(AggregateConfig::default().memory_segments_min(), 5 + 3 + 13);
    }
}
