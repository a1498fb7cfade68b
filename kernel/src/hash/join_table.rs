//! `JoinTable`: the build side of a hash join in segments, one record area per partition,
//! and a bucket array over the partitions that stay in memory.
//!
//! ```text
//!   partition p = (top 32 bits of hash × partitions) >> 32
//!   areas[p]: [varint key_len << 1][varint 1 + record_len][key][matched: u8][record] ...
//!   buckets (after index): 8-byte entries, linear probing, one per build record
//!     [ tag: 16 remixed bits of the hash | partition: 7 bits | position + 1: 41 bits ]
//!     (0 = empty)
//! ```
//!
//! Build records are appended to their partition's area, which takes segments from the
//! table's reservation as it grows; a full table answers "no room" and the join spills a
//! partition (its area is written out and its segments come back). Once the build side
//! ends, [`JoinTable::index`] fills a bucket array sized for the records that stayed.
//! Duplicate keys take a bucket each, so a probe walks the cluster from its key's home
//! bucket to the first empty one and reports every record with the same tag and key.
//! The matched byte before each record is set when a probe record matches it (right outer
//! joins emit the records left unmatched).
//!
//! Invariants:
//! 1. The reservation's segments, the bucket segments and the areas' segments add up to
//!    `segments_total`.
//! 2. After `index`, every record of a partition marked in memory has exactly one bucket,
//!    and no bucket points anywhere else.

use super::area::RecordArea;
use crate::constants::{HASH_BUCKET_SIZE, HASH_LOAD_PERCENT_MAX, HASH_TAG_BITS};
use crate::error::Result;
use crate::memory::{MemorySegment, Reservation};

use super::hasher::hash_bytes;

/// Bits of a bucket entry for the record's position in its area (plus one).
const POSITION_BITS: u32 = 41;
const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;
/// Bits of a bucket entry for the partition.
const PARTITION_BITS: u32 = 64 - HASH_TAG_BITS - POSITION_BITS;
const _: () = assert!(PARTITION_BITS == 7);

/// The tag of a hash: 16 bits of it remixed by a multiply, so that they depend on every
/// bit. The top bits themselves choose the partition (and the low ones the home bucket),
/// so within one table they would tell few keys apart.
#[inline]
fn tag_of(hash: u64) -> u64 {
    hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - HASH_TAG_BITS)
}

/// A build record in memory.
#[derive(Debug)]
pub(crate) struct BuildRecord<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) record: &'a [u8],
    pub(crate) matched: bool,
}

/// The build side of a hash join. See the module documentation.
#[derive(Debug)]
pub(crate) struct JoinTable {
    memory: Reservation,
    segments_total: usize,
    seed: u64,
    log2: u32,
    areas: Vec<RecordArea>,
    records: Vec<u64>,
    buckets: Vec<MemorySegment>,
    bucket_mask: usize,
    bucket_shift: u32,
}

impl JoinTable {
    /// An empty table over the budget `memory` holds, hashing with `seed`.
    pub(crate) fn new(memory: Reservation, seed: u64, partitions: usize) -> JoinTable {
        assert!(partitions > 0 && partitions < 1 << PARTITION_BITS);
        let segment_size = memory.owner().segment_size();
        let log2 = segment_size.trailing_zeros();
        JoinTable {
            segments_total: memory.segments(),
            memory,
            seed,
            log2,
            areas: (0..partitions).map(|_| RecordArea::new(log2)).collect(),
            records: vec![0; partitions],
            buckets: Vec::new(),
            bucket_mask: 0,
            bucket_shift: (segment_size / HASH_BUCKET_SIZE).trailing_zeros(),
        }
    }

    /// The seed keys are hashed with.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// Partitions of the table.
    pub(crate) fn partitions(&self) -> usize {
        self.areas.len()
    }

    /// The partition of a hash: its top 32 bits scaled to the partition count.
    #[inline]
    pub(crate) fn partition_of(&self, hash: u64) -> usize {
        (((hash >> 32) * self.areas.len() as u64) >> 32) as usize
    }

    /// Bytes of the table's whole budget.
    pub(crate) fn capacity_bytes(&self) -> u64 {
        (self.segments_total as u64) << self.log2
    }

    /// Bytes a build record takes in the table.
    pub(crate) fn footprint(key: &[u8], record: &[u8]) -> u64 {
        RecordArea::footprint(key.len(), record.len() + 1)
    }

    /// Bytes of `partition`'s records in memory.
    pub(crate) fn bytes(&self, partition: usize) -> u64 {
        self.areas[partition].end()
    }

    /// The partition (among those `allowed`) holding the most bytes, when any holds some.
    pub(crate) fn largest(&self, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.areas.len())
            .filter(|&p| allowed(p) && self.areas[p].end() > 0)
            .max_by_key(|&p| self.areas[p].end())
    }

    /// Appends a build record to its partition; `Ok(false)` when the budget has no room
    /// for it (nothing changed).
    ///
    /// # Errors
    ///
    /// A memory error other than the budget running out.
    pub(crate) fn append(&mut self, partition: usize, key: &[u8], record: &[u8]) -> Result<bool> {
        assert!(self.buckets.is_empty(), "append to an indexed table");
        let area = &mut self.areas[partition];
        let len = JoinTable::footprint(key, record);
        if area.room() < len {
            let short = len - area.room();
            let count = short.div_ceil(1 << self.log2) as usize;
            let segments = match self.memory.allocate(count) {
                Ok(segments) => segments,
                Err(error) if error.is_budget_exceeded() => return Ok(false),
                Err(error) => return Err(error),
            };
            for segment in segments {
                area.push_segment(segment);
            }
        }
        let (address, _) = area.append_parts(key, &[0], record);
        assert!(address < POSITION_MASK, "join partition beyond 2^41 bytes");
        self.records[partition] += 1;
        Ok(true)
    }

    /// Calls `visit(key, record)` for each record of `partition` in memory, in order.
    ///
    /// # Errors
    ///
    /// The first error of `visit`.
    pub(crate) fn for_each(
        &self,
        partition: usize,
        scratch: &mut Vec<u8>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let area = &self.areas[partition];
        let mut position = 0;
        while position < area.end() {
            let len = area.header(position).total_len() as u64;
            let (key, acc) = area.record(position, scratch);
            visit(key, &acc[1..])?;
            position += len;
        }
        Ok(())
    }

    /// Empties `partition` (written out) and takes its segments back.
    pub(crate) fn drop_partition(&mut self, partition: usize) {
        assert!(
            self.buckets.is_empty(),
            "drop of a partition of an indexed table"
        );
        for segment in self.areas[partition].take_segments() {
            self.memory.give_back(segment);
        }
        self.records[partition] = 0;
    }

    /// Fills a bucket array with every record of the partitions `in_memory` marks;
    /// `Ok(false)` when the budget cannot hold the array (the caller spills a partition).
    ///
    /// # Errors
    ///
    /// A memory error other than the budget running out.
    pub(crate) fn index(&mut self, in_memory: &[bool]) -> Result<bool> {
        assert!(self.buckets.is_empty(), "a table indexed twice");
        let records: u64 = (0..self.partitions())
            .filter(|&p| in_memory[p])
            .map(|p| self.records[p])
            .sum();
        let per_segment = 1usize << self.bucket_shift;
        let wanted = (records as usize * 100).div_ceil(HASH_LOAD_PERCENT_MAX) + 1;
        let count = wanted.next_power_of_two().max(per_segment);
        self.buckets = match self.memory.allocate(count / per_segment) {
            Ok(segments) => segments,
            Err(error) if error.is_budget_exceeded() => return Ok(false),
            Err(error) => return Err(error),
        };
        let segment_size = 1 << self.log2;
        for segment in &mut self.buckets {
            segment.fill(0, segment_size, 0);
        }
        self.bucket_mask = count - 1;
        let mut scratch = Vec::new();
        for partition in (0..self.partitions()).filter(|&p| in_memory[p]) {
            let mut position = 0;
            while position < self.areas[partition].end() {
                let area = &self.areas[partition];
                let len = area.header(position).total_len() as u64;
                let hash = hash_bytes(self.seed, area.record(position, &mut scratch).0);
                let mut index = hash as usize & self.bucket_mask;
                while self.bucket(index) != 0 {
                    index = (index + 1) & self.bucket_mask;
                }
                let entry = (tag_of(hash) << (64 - HASH_TAG_BITS))
                    | ((partition as u64) << POSITION_BITS)
                    | (position + 1);
                self.set_bucket(index, entry);
                position += len;
            }
        }
        Ok(true)
    }

    /// Whether the table has been indexed.
    pub(crate) fn is_indexed(&self) -> bool {
        !self.buckets.is_empty()
    }

    #[inline]
    fn bucket(&self, index: usize) -> u64 {
        let segment = index >> self.bucket_shift;
        let offset = (index & ((1 << self.bucket_shift) - 1)) * HASH_BUCKET_SIZE;
        self.buckets[segment].get_u64_le(offset)
    }

    #[inline]
    fn set_bucket(&mut self, index: usize, entry: u64) {
        let segment = index >> self.bucket_shift;
        let offset = (index & ((1 << self.bucket_shift) - 1)) * HASH_BUCKET_SIZE;
        self.buckets[segment].put_u64_le(offset, entry);
    }

    /// The bucket a probe of `hash` starts at.
    #[inline]
    pub(crate) fn home(&self, hash: u64) -> usize {
        hash as usize & self.bucket_mask
    }

    /// The next record from bucket `*index` on whose key is `key` (of hash `hash`), as
    /// (partition, position); moves `*index` past it. `None` at the cluster's end.
    #[inline]
    pub(crate) fn next_match(
        &self,
        hash: u64,
        key: &[u8],
        index: &mut usize,
    ) -> Option<(usize, u64)> {
        assert!(self.is_indexed(), "a probe before the index");
        let tag = tag_of(hash);
        loop {
            let entry = self.bucket(*index);
            if entry == 0 {
                return None;
            }
            *index = (*index + 1) & self.bucket_mask;
            if entry >> (64 - HASH_TAG_BITS) != tag {
                continue;
            }
            let partition = ((entry >> POSITION_BITS) & ((1 << PARTITION_BITS) - 1)) as usize;
            let position = (entry & POSITION_MASK) - 1;
            let area = &self.areas[partition];
            if area.key_equals(position, &area.header(position), key) {
                return Some((partition, position));
            }
        }
    }

    /// The record at `position` of `partition`.
    pub(crate) fn record<'a>(
        &'a self,
        partition: usize,
        position: u64,
        scratch: &'a mut Vec<u8>,
    ) -> BuildRecord<'a> {
        let (key, acc) = self.areas[partition].record(position, scratch);
        BuildRecord {
            key,
            record: &acc[1..],
            matched: acc[0] != 0,
        }
    }

    /// Sets the matched byte of the record at `position` of `partition`.
    pub(crate) fn set_matched(&mut self, partition: usize, position: u64) {
        let area = &mut self.areas[partition];
        let at = position + area.header(position).acc_offset() as u64;
        area.write_at(at, &[1]);
    }

    /// The position after the record at `position` of `partition` (its
    /// [`JoinTable::bytes`] after the last).
    pub(crate) fn after(&self, partition: usize, position: u64) -> u64 {
        position + self.areas[partition].header(position).total_len() as u64
    }

    /// Empties the table for reuse with `seed`; every segment goes back to the budget.
    pub(crate) fn clear(&mut self, seed: u64) {
        for segment in self.buckets.drain(..) {
            self.memory.give_back(segment);
        }
        for area in &mut self.areas {
            for segment in area.take_segments() {
                self.memory.give_back(segment);
            }
        }
        self.records.fill(0);
        self.bucket_mask = 0;
        self.seed = seed;
        assert_eq!(
            self.memory.segments(),
            self.segments_total,
            "a join table lost track of its memory"
        );
    }

    /// Frees every segment and returns the whole budget.
    pub(crate) fn into_memory(mut self) -> Reservation {
        self.clear(self.seed);
        self.memory
    }

    /// Segments in use (areas and buckets), for assertions.
    #[cfg(test)]
    fn segments_used(&self) -> usize {
        self.buckets.len() + self.areas.iter().map(RecordArea::segments).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hasher::seed_at;
    use crate::memory::test_manager;

    #[test]
    fn duplicates_are_all_found_and_marked() {
        let manager = test_manager(12);
        let memory = manager.owner("join").reserve(12).unwrap();
        let seed = seed_at(3, 0);
        let mut table = JoinTable::new(memory, seed, 10);
        let mut appended = 0;
        for i in 0u32..300 {
            let key = (i % 50).to_le_bytes();
            let hash = hash_bytes(seed, &key);
            let partition = table.partition_of(hash);
            assert!(table.append(partition, &key, &i.to_le_bytes()).unwrap());
            appended += 1;
        }
        assert_eq!(appended, 300);
        assert!(table.index(&[true; 10]).unwrap());
        let mut scratch = Vec::new();
        for k in 0u32..51 {
            let key = k.to_le_bytes();
            let hash = hash_bytes(seed, &key);
            let mut index = table.home(hash);
            let mut found = Vec::new();
            while let Some((partition, position)) = table.next_match(hash, &key, &mut index) {
                let record = table.record(partition, position, &mut scratch);
                assert_eq!(record.key, key);
                assert!(!record.matched);
                found.push(u32::from_le_bytes(record.record.try_into().unwrap()));
                table.set_matched(partition, position);
            }
            found.sort_unstable();
            let expected: Vec<u32> = (0..300).filter(|i| k < 50 && i % 50 == k).collect();
            assert_eq!(found, expected, "key {k}");
        }
        assert!(table.segments_used() > 1);
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_full_table_says_no_room_and_a_dropped_partition_frees_it() {
        let manager = test_manager(4);
        let memory = manager.owner("join").reserve(4).unwrap();
        let mut table = JoinTable::new(memory, 1, 10);
        let mut n = 0u32;
        while table
            .append((n % 2) as usize, &n.to_le_bytes(), &[0; 100])
            .unwrap()
        {
            n += 1;
        }
        assert!(n > 100, "{n}");
        let largest = table.largest(|_| true).unwrap();
        table.drop_partition(largest);
        assert!(table.append(largest, b"k", &[0; 100]).unwrap());
        assert!(table.bytes(1 - largest) > 0);
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }
}
