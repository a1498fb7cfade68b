//! `JoinTable`: the build side of a hash join in segments, one record area per partition,
//! and a bucket array over the partitions that stay in memory.
//!
//! ```text
//!   partition p = (top 32 bits of hash × partitions) >> 32
//!   areas[p]: [varint key_len << 1][varint 1 + record_len][key][matched: u8][record] ...
//!   buckets (after index): 8-byte entries, linear probing, one per distinct key, in a
//!   range per partition indexed: [ p0's range ][ p2's range ][ p3's range ] ... (p1 spilled)
//!     home = range start + (low 32 bits of hash × range length) >> 32
//!     [ tag: 16 remixed hash bits | partition: 7 | chained: 1 | value: 40 ]   (0 = empty)
//!       chained = 0: value = the key's one record's position + 1
//!       chained = 1: value = link + 1 ──▶ links: [position + 1: u64][next link + 1: u64]
//! ```
//!
//! Build records are appended to their partition's area, which takes segments from the
//! table's reservation as it grows; a full table answers "no room" and the join spills a
//! partition (its area is written out and its segments come back). Once the build side
//! ends, [`JoinTable::index`] fills a bucket array sized for the records that stayed, one
//! bucket per distinct key: the records of a key with duplicates are chained in links (16
//! bytes each, in segments too), so a hot key takes one bucket and probes of other keys
//! never walk past its records; keys without duplicates cost no link. Each partition's
//! keys have their home buckets in a range of their own, sized for its records, so the
//! index, built a partition at a time, writes a small part of the array at a time (about
//! 130 KiB for W3's 1.5 M orders in 127 partitions, which stays in the cache) rather
//! than all of it at random. The matched byte
//! before each record is set when a probe record matches it (right outer joins emit the
//! records left unmatched).
//!
//! A probe looks its key up once ([`JoinTable::find`]) and walks the matches from there.
//! The table remembers the last key it looked up and where its records are, so a probe
//! side clustered by key (line items in order-key order, about four a key) pays one walk
//! of the bucket array per run of equal keys.
//!
//! Invariants:
//! 1. The reservation's segments, the bucket, link and area segments add up to
//!    `segments_total`.
//! 2. After `index`, every record of a partition marked in memory is reachable from
//!    exactly one bucket (directly or through its key's chain), and every bucket holds
//!    one key.
//! 3. After `index`, the ranges of the partitions marked in memory are not empty and tile
//!    `0..bucket_count` in partition order; the others are empty.

use std::collections::VecDeque;

use super::area::RecordArea;
use super::key_filter::KeyFilter;
use crate::constants::{
    HASH_BUCKET_SIZE, HASH_JOIN_FILTER_KEYS_MAX, HASH_JOIN_INDEX_PREFETCH_DISTANCE,
    HASH_JOIN_MEMO_KEY_BYTES_MAX, HASH_LOAD_PERCENT_MAX, HASH_TAG_BITS,
};
use crate::error::Result;
use crate::memory::{MemorySegment, Reservation};

use super::hasher::hash_bytes;

/// Bits of a bucket entry for its value: a record's position in its area plus one, or a
/// link's index plus one.
const VALUE_BITS: u32 = 40;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
/// The bit of a bucket entry that says its value is a link (the key has duplicates).
const CHAINED: u64 = 1 << VALUE_BITS;
/// Bits of a bucket entry for the partition, above the chained bit.
const PARTITION_SHIFT: u32 = VALUE_BITS + 1;
const PARTITION_BITS: u32 = 64 - HASH_TAG_BITS - PARTITION_SHIFT;
const _: () = assert!(PARTITION_BITS == 7);
/// Bytes of a link: the record's position and the next link's index plus one (0: the end).
const LINK_SIZE: usize = 16;

/// The tag of a hash: 16 bits of it remixed by a multiply, so that they depend on every
/// bit. The top bits themselves choose the partition (and the low ones the home bucket),
/// so within one table they would tell few keys apart.
#[inline]
fn tag_of(hash: u64) -> u64 {
    hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - HASH_TAG_BITS)
}

/// Whether `a` and `b` are equal: an 8-byte key (an integer's) as one word, others
/// through memcmp.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    match (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) {
        (Ok(a), Ok(b)) => u64::from_le_bytes(a) == u64::from_le_bytes(b),
        _ => a == b,
    }
}

/// The partition of a bucket entry.
#[inline]
fn entry_partition(entry: u64) -> usize {
    ((entry >> PARTITION_SHIFT) & ((1 << PARTITION_BITS) - 1)) as usize
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
    /// Buckets in use: the sum of the ranges.
    bucket_count: usize,
    bucket_shift: u32,
    /// Per partition, the (first bucket, bucket count) of the range its keys' home
    /// buckets fall in; (0, 0) for a partition not indexed.
    ranges: Vec<(usize, usize)>,
    links: Vec<MemorySegment>,
    links_len: u64,
    /// The keys of the indexed partitions, when the budget had room for it.
    filter: KeyFilter,
    /// `None` before the index, after it is dropped, and for keys longer than the memo
    /// holds.
    memo: Option<Memo>,
}

/// The matches of one probe key, found by [`JoinTable::find`]: the first record, then the
/// chain of the key's duplicates.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cursor {
    partition: usize,
    /// The first match's position plus one (0: returned already, or none).
    first: u64,
    /// The next link of the key's chain plus one (0: none).
    link: u64,
}

/// The last key [`JoinTable::find`] looked up and what it found: a probe side clustered
/// by key (line items in order-key order) asks for the same key several times in a row,
/// and each repeat then costs a comparison instead of a walk of the bucket array.
#[derive(Debug, Clone, Copy)]
struct Memo {
    hash: u64,
    key_len: usize,
    key: [u8; HASH_JOIN_MEMO_KEY_BYTES_MAX],
    cursor: Cursor,
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
            filter: KeyFilter::default(),
            bucket_count: 0,
            bucket_shift: (segment_size / HASH_BUCKET_SIZE).trailing_zeros(),
            ranges: vec![(0, 0); partitions],
            links: Vec::new(),
            links_len: 0,
            memo: None,
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
        assert!(address < VALUE_MASK, "join partition beyond 2^40 bytes");
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

    /// Fills a bucket array with every record of the partitions `in_memory` marks, one
    /// bucket per key, duplicates chained in links; `Ok(false)` when the budget cannot
    /// hold the array and the links (the table is left unindexed; the caller spills a
    /// partition and tries again).
    ///
    /// # Errors
    ///
    /// A memory error other than the budget running out.
    pub(crate) fn index(&mut self, in_memory: &[bool]) -> Result<bool> {
        assert!(self.buckets.is_empty(), "a table indexed twice");
        // Each partition indexed gets a range of buckets for its records at the highest
        // load, and one more (an empty partition's probes need a bucket to start at).
        let mut count = 0;
        for partition in (0..self.partitions()).filter(|&p| in_memory[p]) {
            let size = (self.records[partition] as usize * 100).div_ceil(HASH_LOAD_PERCENT_MAX);
            self.ranges[partition] = (count, size + 1);
            count += size + 1;
        }
        let per_segment = 1usize << self.bucket_shift;
        self.buckets = match self.memory.allocate(count.div_ceil(per_segment)) {
            Ok(segments) => segments,
            Err(error) if error.is_budget_exceeded() => {
                self.unindex();
                return Ok(false);
            }
            Err(error) => {
                self.unindex();
                return Err(error);
            }
        };
        let segment_size = 1 << self.log2;
        for segment in &mut self.buckets {
            segment.fill(0, segment_size, 0);
        }
        self.bucket_count = count;
        let mut scratch = Vec::new();
        // Records are inserted HASH_JOIN_INDEX_PREFETCH_DISTANCE behind the one whose
        // bucket is being prefetched, so the bucket array's cache misses overlap.
        let distance = HASH_JOIN_INDEX_PREFETCH_DISTANCE;
        let mut ahead: VecDeque<(u64, u64)> = VecDeque::with_capacity(distance);
        for partition in (0..self.partitions()).filter(|&p| in_memory[p]) {
            let mut position = 0;
            while position < self.areas[partition].end() || !ahead.is_empty() {
                if position < self.areas[partition].end() {
                    let area = &self.areas[partition];
                    let header = area.header(position);
                    let hash = hash_bytes(self.seed, area.body(position, &header, &mut scratch).0);
                    let len = header.total_len() as u64;
                    self.prefetch_unchecked(hash);
                    ahead.push_back((hash, position));
                    position += len;
                    if ahead.len() < distance && position < self.areas[partition].end() {
                        continue;
                    }
                }
                let (hash, at) = ahead.pop_front().expect("a record ahead");
                if !self.index_record(hash, partition, at, &mut scratch)? {
                    self.unindex();
                    return Ok(false);
                }
            }
        }
        self.fill_filter(in_memory);
        Ok(true)
    }

    /// Builds the key filter of the indexed partitions, where what the index left of the
    /// budget has room for it (an optimization, never a reason to spill) and the table is
    /// small enough for its filter to stay in the cache.
    fn fill_filter(&mut self, in_memory: &[bool]) {
        let keys: usize = (0..self.partitions())
            .filter(|&p| in_memory[p])
            .map(|p| self.records[p] as usize)
            .sum();
        if keys > HASH_JOIN_FILTER_KEYS_MAX {
            return;
        }
        let Ok(segments) = self
            .memory
            .allocate(KeyFilter::segments_for(keys, 1 << self.log2))
        else {
            return;
        };
        let mut filter = KeyFilter::new(keys, segments);
        let mut scratch = Vec::new();
        for partition in (0..self.partitions()).filter(|&p| in_memory[p]) {
            let area = &self.areas[partition];
            let mut position = 0;
            while position < area.end() {
                let header = area.header(position);
                filter.insert(hash_bytes(
                    self.seed,
                    area.body(position, &header, &mut scratch).0,
                ));
                position += header.total_len() as u64;
            }
        }
        self.filter = filter;
    }

    /// Puts the record at `position` of `partition` in its key's bucket, or at the head of
    /// its key's chain; `Ok(false)` when a link is needed and the budget has none.
    fn index_record(
        &mut self,
        hash: u64,
        partition: usize,
        position: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<bool> {
        let tag = tag_of(hash);
        let mut index = self.home(hash);
        loop {
            let entry = self.bucket(index);
            if entry == 0 {
                let entry = (tag << (64 - HASH_TAG_BITS))
                    | ((partition as u64) << PARTITION_SHIFT)
                    | (position + 1);
                self.set_bucket(index, entry);
                return Ok(true);
            }
            if entry >> (64 - HASH_TAG_BITS) == tag
                && entry_partition(entry) == partition
                && self.same_key(partition, self.first_position(entry), position, scratch)
            {
                return self.chain(index, entry, position);
            }
            index = self.after_bucket(index);
        }
    }

    /// Adds the record at `position` to the chain of the key of bucket `index`.
    fn chain(&mut self, index: usize, entry: u64, position: u64) -> Result<bool> {
        let head = if entry & CHAINED == 0 {
            // The key's first duplicate: its single record becomes the chain's last link.
            match self.push_link(entry & VALUE_MASK, 0)? {
                Some(link) => link + 1,
                None => return Ok(false),
            }
        } else {
            entry & VALUE_MASK
        };
        let Some(link) = self.push_link(position + 1, head)? else {
            return Ok(false);
        };
        let kept = entry & !(VALUE_MASK | CHAINED);
        self.set_bucket(index, kept | CHAINED | (link + 1));
        Ok(true)
    }

    /// Appends a link (a record's position plus one, the next link plus one); returns its
    /// index, or `None` when the budget has no segment for it.
    fn push_link(&mut self, position_plus_one: u64, next: u64) -> Result<Option<u64>> {
        let per_segment = (1u64 << self.log2) / LINK_SIZE as u64;
        if self.links_len == self.links.len() as u64 * per_segment {
            match self.memory.allocate_one() {
                Ok(segment) => self.links.push(segment),
                Err(error) if error.is_budget_exceeded() => return Ok(None),
                Err(error) => return Err(error),
            }
        }
        let link = self.links_len;
        assert!(link < VALUE_MASK, "join links beyond 2^40");
        let (segment, offset) = self.link_at(link);
        self.links[segment].put_u64_le(offset, position_plus_one);
        self.links[segment].put_u64_le(offset + 8, next);
        self.links_len += 1;
        Ok(Some(link))
    }

    #[inline]
    fn link_at(&self, link: u64) -> (usize, usize) {
        let per_segment = (1u64 << self.log2) / LINK_SIZE as u64;
        (
            (link / per_segment) as usize,
            (link % per_segment) as usize * LINK_SIZE,
        )
    }

    /// The (record position, next link plus one) of `link`.
    #[inline]
    fn link(&self, link: u64) -> (u64, u64) {
        let (segment, offset) = self.link_at(link);
        let position = self.links[segment].get_u64_le(offset) - 1;
        (position, self.links[segment].get_u64_le(offset + 8))
    }

    /// The position of a record of the bucket entry's key.
    #[inline]
    fn first_position(&self, entry: u64) -> u64 {
        if entry & CHAINED == 0 {
            (entry & VALUE_MASK) - 1
        } else {
            self.link((entry & VALUE_MASK) - 1).0
        }
    }

    /// Whether the records at positions `a` and `b` of `partition` have equal keys.
    fn same_key(&self, partition: usize, a: u64, b: u64, scratch: &mut Vec<u8>) -> bool {
        let area = &self.areas[partition];
        let key = area.record(b, scratch).0;
        area.key_equals(a, &area.header(a), key)
    }

    /// Gives the bucket array and the links back.
    fn unindex(&mut self) {
        let filter = self.filter.take_segments();
        for segment in self
            .buckets
            .drain(..)
            .chain(self.links.drain(..))
            .chain(filter)
        {
            self.memory.give_back(segment);
        }
        self.links_len = 0;
        self.bucket_count = 0;
        self.ranges.fill((0, 0));
        self.memo = None;
    }

    /// Whether a key of `hash` may be in the table's indexed partitions (`false`: it is
    /// certainly not), from the key filter (without one, every key may be).
    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        self.filter.may_contain(hash)
    }

    /// Whether the table has been indexed.
    pub(crate) fn is_indexed(&self) -> bool {
        !self.buckets.is_empty()
    }

    /// The home bucket of `hash`: the partition's range (from the top bits), scaled by
    /// the low 32 bits. Keys of one partition stay in its range (but for collisions
    /// pushed past its end), so indexing a partition at a time writes a small part of the
    /// bucket array, which stays in the cache.
    #[inline]
    fn home(&self, hash: u64) -> usize {
        let (first, count) = self.ranges[self.partition_of(hash)];
        debug_assert!(count > 0, "the home of a partition not indexed");
        first + ((u64::from(hash as u32) * count as u64) >> 32) as usize
    }

    /// The bucket after `index`, around the end.
    #[inline]
    fn after_bucket(&self, index: usize) -> usize {
        if index + 1 == self.bucket_count {
            0
        } else {
            index + 1
        }
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

    /// Starts loading the home bucket of `hash` into the cache, so that a probe of it a
    /// few records later does not wait for memory (a hint; nothing before the index).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        if self.is_indexed() && self.ranges[self.partition_of(hash)].1 > 0 {
            self.prefetch_unchecked(hash);
        }
    }

    /// [`JoinTable::prefetch`] while the index is being built (the bucket array exists),
    /// of a hash whose partition is indexed.
    #[inline]
    fn prefetch_unchecked(&self, hash: u64) {
        let index = self.home(hash);
        let segment = index >> self.bucket_shift;
        let offset = (index & ((1 << self.bucket_shift) - 1)) * HASH_BUCKET_SIZE;
        self.buckets[segment].prefetch(offset);
    }

    /// The records whose key is `key` (of hash `hash`), to walk with
    /// [`JoinTable::next_match`]. A repeat of the previous call's key is answered from a
    /// memo, without reading the bucket array or the records.
    #[inline]
    pub(crate) fn find(&mut self, hash: u64, key: &[u8]) -> Cursor {
        assert!(self.is_indexed(), "a probe before the index");
        if let Some(cursor) = self.remembered(hash, key) {
            return cursor;
        }
        let cursor = self.search(hash, key);
        self.memo = (key.len() <= HASH_JOIN_MEMO_KEY_BYTES_MAX).then(|| {
            let mut memo = Memo {
                hash,
                key_len: key.len(),
                key: [0; HASH_JOIN_MEMO_KEY_BYTES_MAX],
                cursor,
            };
            memo.key[..key.len()].copy_from_slice(key);
            memo
        });
        cursor
    }

    /// What [`JoinTable::find`] found for `key` when it was the last key looked up; `None`
    /// for another key (or none since the index).
    #[inline]
    pub(crate) fn remembered(&self, hash: u64, key: &[u8]) -> Option<Cursor> {
        let memo = self.memo.as_ref()?;
        (memo.hash == hash && same_bytes(&memo.key[..memo.key_len], key)).then_some(memo.cursor)
    }

    /// Walks the bucket array from the home bucket of `hash` to the bucket of `key`, or to
    /// the empty bucket that ends the cluster (an empty cursor).
    #[inline]
    fn search(&self, hash: u64, key: &[u8]) -> Cursor {
        let tag = tag_of(hash);
        let mut index = self.home(hash);
        loop {
            let entry = self.bucket(index);
            if entry == 0 {
                return Cursor::default();
            }
            index = self.after_bucket(index);
            if entry >> (64 - HASH_TAG_BITS) != tag {
                continue;
            }
            let partition = entry_partition(entry);
            let position = self.first_position(entry);
            let area = &self.areas[partition];
            if area.key_equals(position, &area.header(position), key) {
                let link = if entry & CHAINED == 0 {
                    0
                } else {
                    self.link((entry & VALUE_MASK) - 1).1
                };
                return Cursor {
                    partition,
                    first: position + 1,
                    link,
                };
            }
        }
    }

    /// The next record of a [`JoinTable::find`] as (partition, position), or `None` after
    /// the last.
    #[inline]
    pub(crate) fn next_match(&self, cursor: &mut Cursor) -> Option<(usize, u64)> {
        if cursor.first != 0 {
            let position = cursor.first - 1;
            cursor.first = 0;
            return Some((cursor.partition, position));
        }
        if cursor.link != 0 {
            let (position, next) = self.link(cursor.link - 1);
            cursor.link = next;
            return Some((cursor.partition, position));
        }
        None
    }

    /// The record at `position` of `partition`.
    #[inline]
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

    /// Whether the matched byte of the record at `position` of `partition` is set.
    pub(crate) fn is_matched(&self, partition: usize, position: u64) -> bool {
        let area = &self.areas[partition];
        let at = position + area.header(position).acc_offset() as u64;
        area.byte_at(at) != 0
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
        self.unindex();
        for area in &mut self.areas {
            for segment in area.take_segments() {
                self.memory.give_back(segment);
            }
        }
        self.records.fill(0);
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
        self.buckets.len()
            + self.links.len()
            + self.filter.segments()
            + self.areas.iter().map(RecordArea::segments).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hasher::seed_at;
    use crate::memory::test_manager;

    #[test]
    fn duplicates_are_all_found_and_marked() {
        let manager = test_manager(16);
        let memory = manager.owner("join").reserve(16).unwrap();
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
            let mut cursor = table.find(hash, &key);
            let mut found = Vec::new();
            while let Some((partition, position)) = table.next_match(&mut cursor) {
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
        let used = (0..table.bucket_count)
            .filter(|&i| table.bucket(i) != 0)
            .count();
        assert_eq!(used, 50, "one bucket per key, duplicates in links");
        assert_eq!(table.links_len, 300, "six records a key, all in links");
        assert!(table.segments_used() > 1);
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    /// When the links of the duplicates do not fit, indexing gives every bucket and link
    /// segment back; with a partition dropped it succeeds.
    #[test]
    fn an_index_without_room_for_its_links_leaves_the_table_as_it_was() {
        let manager = test_manager(8);
        let memory = manager.owner("join").reserve(8).unwrap();
        let mut table = JoinTable::new(memory, 5, 10);
        // Partition 0: 200 keys twice (400 records of 7 bytes, one segment, 400 links of
        // 16 bytes: two segments). Partition 1: 153 records of 107 bytes, four segments.
        for i in 0u32..400 {
            assert!(table.append(0, &(i / 2).to_le_bytes(), &[]).unwrap());
        }
        for i in 0u32..153 {
            assert!(
                table
                    .append(1, &(1000 + i).to_le_bytes(), &[0; 100])
                    .unwrap()
            );
        }
        assert_eq!(table.segments_used(), 5);
        // Three segments left: two for 1 024 buckets, one of the two the links need.
        assert!(!table.index(&[true; 10]).unwrap(), "no room for the links");
        assert!(!table.is_indexed());
        assert_eq!(table.segments_used(), 5, "buckets and links went back");
        table.drop_partition(1);
        assert!(table.index(&[true; 10]).unwrap());
        let key = 7u32.to_le_bytes();
        let hash = hash_bytes(5, &key);
        let mut cursor = table.find(hash, &key);
        let mut found = 0;
        while table.next_match(&mut cursor).is_some() {
            found += 1;
        }
        assert_eq!(found, 2);
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    /// A repeated key is answered from the memo with the same records; a table cleared
    /// and indexed again forgets the memo.
    #[test]
    fn the_memo_repeats_a_lookup_and_is_forgotten_with_the_index() {
        let manager = test_manager(8);
        let memory = manager.owner("join").reserve(8).unwrap();
        let mut table = JoinTable::new(memory, 9, 10);
        let matches = |table: &mut JoinTable, key: &[u8]| {
            let hash = hash_bytes(table.seed(), key);
            let mut cursor = table.find(hash, key);
            let mut scratch = Vec::new();
            let mut found = Vec::new();
            while let Some((partition, position)) = table.next_match(&mut cursor) {
                found.push(
                    table
                        .record(partition, position, &mut scratch)
                        .record
                        .to_vec(),
                );
            }
            found.sort();
            found
        };
        let append = |table: &mut JoinTable, key: &[u8], record: &[u8]| {
            let partition = table.partition_of(hash_bytes(table.seed(), key));
            assert!(table.append(partition, key, record).unwrap());
        };
        append(&mut table, b"12345678", b"a");
        append(&mut table, b"12345678", b"b");
        append(&mut table, b"other", b"c");
        assert!(table.index(&[true; 10]).unwrap());
        for _ in 0..3 {
            assert_eq!(matches(&mut table, b"12345678"), [b"a", b"b"]);
        }
        assert_eq!(matches(&mut table, b"other"), [b"c"]);
        assert!(matches(&mut table, b"missing").is_empty());
        assert!(matches(&mut table, b"missing").is_empty());
        assert_eq!(matches(&mut table, b"12345678"), [b"a", b"b"]);
        table.clear(11);
        append(&mut table, b"12345678", b"d");
        assert!(table.index(&[true; 10]).unwrap());
        assert_eq!(matches(&mut table, b"12345678"), [b"d"]);
        // A key longer than the memo holds is looked up every time.
        let long = [7u8; HASH_JOIN_MEMO_KEY_BYTES_MAX + 1];
        assert!(matches(&mut table, &long).is_empty());
        assert_eq!(matches(&mut table, b"12345678"), [b"d"]);
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
