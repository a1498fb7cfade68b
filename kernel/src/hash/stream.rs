//! `AggregateStream`: the groups of a [`HashAggregate`], streamed.
//!
//! ```text
//!   next ──▶ Table source: groups of the current level's table that never spilled
//!        ──▶ exhausted? pop a pending partition:
//!              shrinks and shallow enough ──▶ reaggregate (next seed) ──▶ Table source
//!              otherwise ──▶ sort it with the table's memory ──▶ Sorted source:
//!                            equal keys arrive together and are merged as they stream
//!        ──▶ nothing pending: the end
//! ```
//!
//! Groups come out in no particular order. Each is emitted once, with every value of its
//! key folded in: a key's partial aggregates always go to the same partition at one level,
//! and a partition's groups are emitted only after all of its input has been read.
//!
//! [`HashAggregate::finish`] is defined here, with the stream it makes: the stream stands
//! above the aggregation and uses it, and the aggregation does not need to know its stream.

use std::ops::Range;

use super::aggregate::HashAggregate;
use super::aggregate_level::Kept;
use super::aggregator::Aggregator;
use super::config::AggregateStats;
use crate::error::Result;
use crate::sort::SortedStream;

impl HashAggregate {
    /// Ends input. Partitions that never spilled stream from memory; spilled ones are
    /// re-aggregated one at a time as the stream reaches them.
    ///
    /// # Errors
    ///
    /// A spill of the last groups that fails.
    pub fn finish(mut self) -> Result<AggregateStream> {
        let kept = self.end_level()?;
        Ok(AggregateStream::new(self, kept))
    }
}

/// Where the next group comes from.
#[derive(Debug)]
enum Source {
    /// Buckets of the table, range by range; `current` is the bucket of the last group.
    Table {
        ranges: Vec<Range<usize>>,
        range: usize,
        next: usize,
        current: usize,
    },
    /// Every group of the table (no partition of its level spilled), in address order:
    /// `next` is where the walk goes on, `current` the address of the last group.
    Records { next: u64, current: u64 },
    /// A partition sorted by key.
    Sorted(Box<SortedGroups>),
    /// Nothing left.
    Done,
    /// A read or spill failed; the stream must be dropped.
    Failed,
}

/// The groups of a sorted partition: runs of equal keys merged into one accumulator.
#[derive(Debug)]
struct SortedGroups {
    stream: SortedStream,
    key: Vec<u8>,
    acc: Vec<u8>,
    /// The first record of the next group, read while looking for the end of this one.
    ahead_key: Vec<u8>,
    ahead_acc: Vec<u8>,
    has_ahead: bool,
    exhausted: bool,
    merged: Vec<u8>,
}

impl SortedGroups {
    fn new(stream: SortedStream) -> SortedGroups {
        SortedGroups {
            stream,
            key: Vec::new(),
            acc: Vec::new(),
            ahead_key: Vec::new(),
            ahead_acc: Vec::new(),
            has_ahead: false,
            exhausted: false,
            merged: Vec::new(),
        }
    }

    /// Reads the next whole group into `key` and `acc`; `false` after the last.
    fn advance(&mut self, aggregator: &dyn Aggregator) -> Result<bool> {
        if self.has_ahead {
            std::mem::swap(&mut self.key, &mut self.ahead_key);
            std::mem::swap(&mut self.acc, &mut self.ahead_acc);
            self.has_ahead = false;
        } else if !self.read_into_current()? {
            return Ok(false);
        }
        while !self.exhausted {
            match self.stream.next()? {
                None => self.exhausted = true,
                Some((key, other)) if key == self.key.as_slice() => {
                    merge(aggregator, &mut self.acc, other, &mut self.merged);
                }
                Some((key, acc)) => {
                    self.ahead_key.clear();
                    self.ahead_key.extend_from_slice(key);
                    self.ahead_acc.clear();
                    self.ahead_acc.extend_from_slice(acc);
                    self.has_ahead = true;
                    break;
                }
            }
        }
        Ok(true)
    }

    fn read_into_current(&mut self) -> Result<bool> {
        if self.exhausted {
            return Ok(false);
        }
        match self.stream.next()? {
            None => {
                self.exhausted = true;
                Ok(false)
            }
            Some((key, acc)) => {
                self.key.clear();
                self.key.extend_from_slice(key);
                self.acc.clear();
                self.acc.extend_from_slice(acc);
                Ok(true)
            }
        }
    }
}

/// Merges the partial accumulator `other` into `acc`, through `scratch` when sizes vary.
fn merge(aggregator: &dyn Aggregator, acc: &mut Vec<u8>, other: &[u8], scratch: &mut Vec<u8>) {
    if aggregator.accumulator_size().is_some() {
        aggregator.merge(acc, other);
    } else {
        scratch.clear();
        aggregator.merge_into(acc, other, scratch);
        std::mem::swap(acc, scratch);
    }
}

/// The groups of an aggregation, as `(key, accumulator)`. Holds the aggregation's memory
/// and spilled partitions until dropped.
#[derive(Debug)]
pub struct AggregateStream {
    aggregate: HashAggregate,
    source: Source,
    scratch: Vec<u8>,
}

impl AggregateStream {
    fn new(aggregate: HashAggregate, kept: Kept) -> AggregateStream {
        AggregateStream {
            aggregate,
            source: table_source(kept),
            scratch: Vec::new(),
        }
    }

    /// What the aggregation did so far.
    pub fn stats(&self) -> AggregateStats {
        self.aggregate.stats()
    }

    /// The next group as `(key, accumulator)`, or `None` after the last. The slices are
    /// valid until the next call. Spilled partitions are re-aggregated (or sorted) here, as
    /// the stream reaches them.
    ///
    /// # Errors
    ///
    /// A failed or corrupt read of a spilled partition, or a failed spill while
    /// re-aggregating one. The stream must be dropped after an error.
    ///
    /// # Panics
    ///
    /// When called again after it returned an error (a bug in the caller: the stream's
    /// state is gone).
    #[allow(
        clippy::should_implement_trait,
        reason = "a lending iterator: items borrow the stream"
    )]
    pub fn next(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        assert!(
            !matches!(self.source, Source::Failed),
            "AggregateStream::next after an error: the stream must be dropped"
        );
        match self.seek() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(error) => {
                self.source = Source::Failed;
                return Err(error);
            }
        }
        self.aggregate.count_group();
        match &self.source {
            Source::Table { current, .. } => {
                let table = self.aggregate.table();
                let address = table.entry_address(*current).expect("a group");
                Ok(Some(table.record(address, &mut self.scratch)))
            }
            Source::Records { current, .. } => {
                let table = self.aggregate.table();
                Ok(Some(table.record(*current, &mut self.scratch)))
            }
            Source::Sorted(groups) => Ok(Some((&groups.key, &groups.acc))),
            Source::Done | Source::Failed => unreachable!("seek found a group"),
        }
    }

    /// Makes the next group current, moving to the next source as each runs dry; `false`
    /// after the last group.
    fn seek(&mut self) -> Result<bool> {
        loop {
            if matches!(self.source, Source::Done) {
                return Ok(false);
            }
            if self.advance()? {
                return Ok(true);
            }
            self.source = self.next_source()?;
        }
    }

    /// Moves the current source to its next group; `false` when it has none left.
    fn advance(&mut self) -> Result<bool> {
        match &mut self.source {
            Source::Table {
                ranges,
                range,
                next,
                current,
            } => {
                let table = self.aggregate.table();
                while *range < ranges.len() {
                    let bucket = (*next).max(ranges[*range].start);
                    if bucket >= ranges[*range].end {
                        *range += 1;
                        continue;
                    }
                    *next = bucket + 1;
                    if table.entry_address(bucket).is_some() {
                        *current = bucket;
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Source::Records { next, current } => match self.aggregate.table().live_record(*next) {
                Some((address, after)) => {
                    (*current, *next) = (address, after);
                    Ok(true)
                }
                None => Ok(false),
            },
            Source::Sorted(groups) => groups.advance(self.aggregate.aggregator()),
            Source::Done | Source::Failed => Ok(false),
        }
    }

    /// Takes the next pending partition and makes it the source.
    fn next_source(&mut self) -> Result<Source> {
        if let Source::Sorted(groups) = std::mem::replace(&mut self.source, Source::Done) {
            self.aggregate
                .return_memory(groups.stream.into_reservation())?;
        }
        let Some(partition) = self.aggregate.pop_partition() else {
            return Ok(Source::Done);
        };
        if self.aggregate.needs_sort(&partition) {
            let sorted = self.aggregate.sort_partition(partition)?;
            return Ok(Source::Sorted(Box::new(SortedGroups::new(sorted))));
        }
        let kept = self.aggregate.reaggregate(partition)?;
        Ok(table_source(kept))
    }
}

/// The source of the groups a level left in the table: all of them in address order
/// when no partition spilled, the buckets of the partitions that stayed otherwise.
fn table_source(kept: Kept) -> Source {
    let ranges = match kept {
        Kept::All => {
            return Source::Records {
                next: 0,
                current: 0,
            };
        }
        Kept::Buckets(ranges) => ranges,
    };
    Source::Table {
        ranges,
        range: 0,
        next: 0,
        current: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregation_moves_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<HashAggregate>();
        assert_send::<AggregateStream>();
    }
}
