//! `Table`: the hash table of an aggregation, every byte of it in segments.
//!
//! ```text
//!   buckets: a power of two of 8-byte entries in segments, linear probing
//!     [ tag: top 16 bits of the hash | address + 1: 48 bits ]   (0 = empty)
//!                                           │
//!   record area: segments, append only, records span segments freely
//!     [varint key_len << 1 | dead][varint acc_len][key][acc] [varint..][..] ...
//! ```
//!
//! A lookup walks buckets from `hash & mask`, compares the tag and only then the key in
//! the record area. A fixed-size accumulator is updated where it lies; a variable-size
//! one whose length changes is appended again, its bucket repointed and the old record
//! marked dead. A partition is spilled by writing its records out and marking them dead.
//! Dead records are garbage until the table is rebuilt: the live records slide down over
//! them and the buckets are filled again from the records (after a spill, or when the area
//! is full and at least [`HASH_COMPACT_GARBAGE_PERCENT_MIN`] percent of it is garbage).
//!
//! Memory: the table holds one [`Reservation`] of its whole budget, and takes bucket and
//! record segments out of it (and gives them back) as it grows, rebuilds and clears, so
//! no other consumer can take its memory in between. The bucket array doubles while the
//! load is above [`HASH_LOAD_PERCENT_MAX`] and it may take at most `1 /`
//! [`HASH_BUCKET_SHARE_INVERSE`] of the memory; when neither buckets nor records can grow,
//! inserting answers "no room" and the caller spills.
//!
//! Invariants:
//! 1. `memory.segments() + buckets.len() + area.len() == segments_total`.
//! 2. Outside `scatter`ed state, every live record is reachable from exactly one bucket,
//!    whose tag is the top bits of its key's hash under `seed`; no bucket points to a dead
//!    record.
//! 3. `groups` counts the live records; `partition_bytes[p]` sums the lengths of the live
//!    records of partition `p`; `garbage_bytes` sums the lengths of the dead ones.

use std::ops::Range;

use super::hasher::hash_bytes;
use crate::constants::{
    HASH_BUCKET_SHARE_INVERSE, HASH_BUCKET_SIZE, HASH_COMPACT_GARBAGE_PERCENT_MIN,
    HASH_LOAD_PERCENT_MAX, HASH_TAG_BITS, VARINT_U64_BYTES_MAX,
};
use crate::error::Result;
use crate::memory::{MemorySegment, Reservation, varint};
use crate::spill::RunOutput;

/// Record addresses fit in the 48 low bits of a bucket entry (plus one).
const ADDRESS_BITS: u32 = 64 - HASH_TAG_BITS;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;

/// Bytes of an encoded record header at most: two varints.
pub(crate) const HEADER_LEN_MAX: usize = 2 * VARINT_U64_BYTES_MAX;

/// Encodes the header of a live record (`key_len`, `acc_len`) into `out`; returns its
/// length.
pub(crate) fn encode_header(
    key_len: usize,
    acc_len: usize,
    out: &mut [u8; HEADER_LEN_MAX],
) -> usize {
    let mut word = [0; VARINT_U64_BYTES_MAX];
    let first = varint::encode_u64((key_len as u64) << 1, &mut word);
    out[..first].copy_from_slice(&word[..first]);
    let second = varint::encode_u64(acc_len as u64, &mut word);
    out[first..first + second].copy_from_slice(&word[..second]);
    first + second
}

/// A record's lengths, decoded from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) header_len: usize,
    pub(crate) key_len: usize,
    pub(crate) acc_len: usize,
    /// Written out or moved: no bucket points to it.
    pub(crate) dead: bool,
}

impl RecordHeader {
    fn total_len(&self) -> usize {
        self.header_len + self.key_len + self.acc_len
    }
}

/// Where a key is, or would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The key's record is at `address`; its bucket is `index`.
    Found { index: usize, address: u64 },
    /// The key is absent; `index` is the empty bucket it would take.
    Vacant { index: usize },
}

/// The hash table of an aggregation. See the module documentation.
#[derive(Debug)]
pub(crate) struct Table {
    memory: Reservation,
    segments_total: usize,
    seed: u64,
    buckets: Vec<MemorySegment>,
    bucket_mask: usize,
    /// log2 of buckets per segment.
    bucket_shift: u32,
    groups: usize,
    area: Vec<MemorySegment>,
    area_end: u64,
    /// log2 of the segment size.
    log2: u32,
    garbage_bytes: u64,
    /// Partitions are the top `partition_bits` bits of the hash.
    partition_bits: u32,
    partition_bytes: Vec<u64>,
    /// Set by [`Table::scatter`]: buckets are grouped by partition, not probed.
    scattered: bool,
    scratch: Vec<u8>,
}

impl Table {
    /// A table over the budget `memory` holds, hashing with `seed`, spilling in
    /// `1 << partition_bits` partitions: one bucket segment to begin with.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`](crate::KernelError::BudgetExceeded) when `memory`
    /// holds less than a segment.
    pub(crate) fn new(mut memory: Reservation, seed: u64, partition_bits: u32) -> Result<Table> {
        assert!((1..=HASH_TAG_BITS).contains(&partition_bits));
        let segments_total = memory.segments();
        let segment_size = memory.owner().segment_size();
        let mut first = memory.allocate_one()?;
        first.fill(0, segment_size, 0);
        let per_segment = segment_size / HASH_BUCKET_SIZE;
        Ok(Table {
            memory,
            segments_total,
            seed,
            buckets: vec![first],
            bucket_mask: per_segment - 1,
            bucket_shift: per_segment.trailing_zeros(),
            groups: 0,
            area: Vec::new(),
            area_end: 0,
            log2: segment_size.trailing_zeros(),
            garbage_bytes: 0,
            partition_bits,
            partition_bytes: vec![0; 1 << partition_bits],
            scattered: false,
            scratch: Vec::new(),
        })
    }

    /// Groups held.
    pub(crate) fn groups(&self) -> usize {
        self.groups
    }

    /// Buckets in the array.
    pub(crate) fn buckets_len(&self) -> usize {
        self.bucket_mask + 1
    }

    /// Bytes of the record area in use, garbage included.
    #[cfg(test)]
    pub(crate) fn record_bytes(&self) -> u64 {
        self.area_end
    }

    /// Bytes of dead records in the record area.
    #[cfg(test)]
    pub(crate) fn garbage_bytes(&self) -> u64 {
        self.garbage_bytes
    }

    /// The seed keys are hashed with.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// The partition of a hash (or of a bucket entry, which keeps the hash's top bits).
    #[inline]
    pub(crate) fn partition_of(&self, hash: u64) -> usize {
        (hash >> (64 - self.partition_bits)) as usize
    }

    /// The partitions holding the most record bytes, largest first, until together they
    /// hold at least `percent` percent of the live bytes (at least one partition, none when
    /// the table is empty).
    pub(crate) fn largest_partitions(&self, percent: u64) -> Vec<usize> {
        let live: u64 = self.partition_bytes.iter().sum();
        let mut order: Vec<usize> = (0..self.partition_bytes.len())
            .filter(|&p| self.partition_bytes[p] > 0)
            .collect();
        order.sort_by_key(|&p| std::cmp::Reverse(self.partition_bytes[p]));
        let mut chosen_bytes = 0;
        let mut count = 0;
        for &p in &order {
            if count > 0 && chosen_bytes * 100 >= live * percent {
                break;
            }
            chosen_bytes += self.partition_bytes[p];
            count += 1;
        }
        order.truncate(count);
        order
    }

    #[inline]
    fn bucket(&self, index: usize) -> u64 {
        bucket_in(&self.buckets, self.bucket_shift, index)
    }

    #[inline]
    fn set_bucket(&mut self, index: usize, entry: u64) {
        let segment = index >> self.bucket_shift;
        let offset = (index & ((1 << self.bucket_shift) - 1)) * HASH_BUCKET_SIZE;
        self.buckets[segment].put_u64_le(offset, entry);
    }

    /// The record address bucket `index` points to, or `None` when it is empty.
    #[inline]
    pub(crate) fn entry_address(&self, index: usize) -> Option<u64> {
        match self.bucket(index) {
            0 => None,
            entry => Some((entry & ADDRESS_MASK) - 1),
        }
    }

    /// Looks `key` (whose hash under the table's seed is `hash`) up.
    ///
    /// # Panics
    ///
    /// After [`Table::scatter`], before [`Table::clear`] or [`Table::rebuild`].
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Slot {
        assert!(!self.scattered, "lookup in a scattered table");
        let tag = hash >> ADDRESS_BITS;
        let mut index = hash as usize & self.bucket_mask;
        loop {
            let entry = self.bucket(index);
            if entry == 0 {
                return Slot::Vacant { index };
            }
            if entry >> ADDRESS_BITS == tag {
                let address = (entry & ADDRESS_MASK) - 1;
                let header = self.header(address);
                if header.key_len == key.len()
                    && self.equals(address + header.header_len as u64, key)
                {
                    return Slot::Found { index, address };
                }
            }
            index = (index + 1) & self.bucket_mask;
        }
    }

    /// Adds `key` (absent, with hash `hash`) with accumulator `acc`; `Ok(false)` when there
    /// is no room (no group changed; the table may have grown or been rebuilt).
    ///
    /// # Errors
    ///
    /// A memory error other than the table's budget running out.
    ///
    /// # Panics
    ///
    /// When the table holds `key` already.
    pub(crate) fn insert(&mut self, hash: u64, key: &[u8], acc: &[u8]) -> Result<bool> {
        if (self.groups + 1) * 100 > self.buckets_len() * HASH_LOAD_PERCENT_MAX && !self.grow()? {
            return Ok(false);
        }
        let Some((address, len)) = self.append(key, acc)? else {
            return Ok(false);
        };
        let Slot::Vacant { index } = self.find(hash, key) else {
            panic!("insert of a key the table holds");
        };
        self.set_bucket(index, (hash & !ADDRESS_MASK) | (address + 1));
        self.groups += 1;
        let partition = self.partition_of(hash);
        self.partition_bytes[partition] += len;
        Ok(true)
    }

    /// Replaces the accumulator of `key` (present, with hash `hash`) by `acc`: in place
    /// when the length is unchanged, appended anew otherwise; `Ok(false)` when there is no
    /// room for the new record (no group changed; the table may have been rebuilt).
    ///
    /// # Errors
    ///
    /// A memory error other than the table's budget running out.
    ///
    /// # Panics
    ///
    /// When the table does not hold `key`.
    pub(crate) fn replace(&mut self, hash: u64, key: &[u8], acc: &[u8]) -> Result<bool> {
        let Slot::Found { address, .. } = self.find(hash, key) else {
            panic!("replace of a key the table lacks");
        };
        let header = self.header(address);
        if header.acc_len == acc.len() {
            let start = address + (header.header_len + header.key_len) as u64;
            self.write_at(start, acc);
            return Ok(true);
        }
        let Some((moved, len)) = self.append(key, acc)? else {
            return Ok(false);
        };
        // Making room may have rebuilt the table and moved the old record.
        let Slot::Found { index, address } = self.find(hash, key) else {
            panic!("a rebuild lost a group");
        };
        let old_len = header.total_len() as u64;
        self.mark_dead(address);
        self.garbage_bytes += old_len;
        self.set_bucket(index, (hash & !ADDRESS_MASK) | (moved + 1));
        let partition = self.partition_of(hash);
        self.partition_bytes[partition] = self.partition_bytes[partition] + len - old_len;
        Ok(true)
    }

    /// Applies `update` to the accumulator of the record at `address` where it lies (through
    /// a copy when it crosses a segment boundary).
    #[inline]
    pub(crate) fn update_in_place(&mut self, address: u64, update: impl FnOnce(&mut [u8])) {
        let header = self.header(address);
        let start = address + (header.header_len + header.key_len) as u64;
        let (segment, offset) = self.locate(start);
        if offset + header.acc_len <= 1 << self.log2 {
            update(self.area[segment].bytes_mut(offset, header.acc_len));
            return;
        }
        let mut copy = std::mem::take(&mut self.scratch);
        copy.clear();
        copy.resize(header.acc_len, 0);
        self.read_at(start, &mut copy);
        update(&mut copy);
        self.write_at(start, &copy);
        self.scratch = copy;
    }

    /// The header of the record at `address`.
    #[inline]
    pub(crate) fn header(&self, address: u64) -> RecordHeader {
        // Keys under 64 bytes and accumulators under 128, both length bytes in one
        // segment: the common case, read without a loop.
        let (segment, offset) = self.locate(address);
        if offset + 2 <= 1 << self.log2 {
            let lengths = self.area[segment].bytes(offset, 2);
            if lengths[0] < 0x80 && lengths[1] < 0x80 {
                return RecordHeader {
                    header_len: 2,
                    key_len: usize::from(lengths[0] >> 1),
                    acc_len: usize::from(lengths[1]),
                    dead: lengths[0] & 1 == 1,
                };
            }
        }
        let mut position = address;
        let key_word = self.varint(&mut position);
        let acc_len = self.varint(&mut position);
        RecordHeader {
            header_len: (position - address) as usize,
            key_len: (key_word >> 1) as usize,
            acc_len: acc_len as usize,
            dead: key_word & 1 == 1,
        }
    }

    /// Marks the record at `address` dead: the low bit of its first header byte.
    fn mark_dead(&mut self, address: u64) {
        let (segment, offset) = self.locate(address);
        let first = self.area[segment].get_u8(offset);
        debug_assert_eq!(first & 1, 0, "a record dies twice");
        self.area[segment].put_u8(offset, first | 1);
    }

    /// The key and accumulator of the record at `address`, copied into `scratch` only when
    /// they cross a segment boundary.
    pub(crate) fn record<'a>(
        &'a self,
        address: u64,
        scratch: &'a mut Vec<u8>,
    ) -> (&'a [u8], &'a [u8]) {
        let header = self.header(address);
        let start = address + header.header_len as u64;
        let len = header.key_len + header.acc_len;
        let (segment, offset) = self.locate(start);
        let body = if offset + len <= 1 << self.log2 {
            self.area[segment].bytes(offset, len)
        } else {
            scratch.clear();
            scratch.resize(len, 0);
            self.read_at(start, scratch);
            &scratch[..]
        };
        body.split_at(header.key_len)
    }

    /// Writes the (live) record at `address`, header included, to `output`; returns its
    /// length.
    ///
    /// # Errors
    ///
    /// The output's error.
    pub(crate) fn write_record(&self, address: u64, output: &mut RunOutput) -> Result<usize> {
        let header = self.header(address);
        assert!(!header.dead, "a dead record is never written out");
        let len = header.total_len();
        let mut position = address;
        let mut left = len;
        while left > 0 {
            let (segment, offset) = self.locate(position);
            let n = left.min((1 << self.log2) - offset);
            output.write_bytes(self.area[segment].bytes(offset, n))?;
            position += n as u64;
            left -= n;
        }
        Ok(len)
    }

    /// Groups the non-empty buckets by partition and returns each partition's range of
    /// bucket indexes. The table is no longer a hash table until [`Table::rebuild`] or
    /// [`Table::clear`]: it can be read by [`Table::entry_address`] only.
    pub(crate) fn scatter(&mut self) -> Vec<Range<usize>> {
        self.scattered = true;
        let partitions = self.partition_bytes.len();
        let bits = self.partition_bits;
        // Class `partitions` holds the empty buckets, after every partition.
        let class = |entry: u64| {
            if entry == 0 {
                partitions
            } else {
                (entry >> (64 - bits)) as usize
            }
        };
        let mut counts = vec![0usize; partitions + 1];
        for index in 0..self.buckets_len() {
            counts[class(self.bucket(index))] += 1;
        }
        let mut ranges = Vec::with_capacity(partitions + 1);
        let mut start = 0;
        for count in counts {
            ranges.push(start..start + count);
            start += count;
        }
        // American flag sort: walk each class's range, swapping strangers home.
        let mut next: Vec<usize> = ranges.iter().map(|range| range.start).collect();
        for current in 0..=partitions {
            while next[current] < ranges[current].end {
                let entry = self.bucket(next[current]);
                let home = class(entry);
                if home == current {
                    next[current] += 1;
                } else {
                    let displaced = self.bucket(next[home]);
                    self.set_bucket(next[home], entry);
                    self.set_bucket(next[current], displaced);
                    next[home] += 1;
                }
            }
        }
        ranges.truncate(partitions);
        ranges
    }

    /// Marks the records of `partition`, whose buckets are `range` of the scattered
    /// table, dead (they have been written out).
    ///
    /// # Panics
    ///
    /// When the table is not scattered, or `range` does not hold exactly the partition.
    pub(crate) fn drop_partition(&mut self, partition: usize, range: Range<usize>) {
        assert!(
            self.scattered,
            "drop of a partition of an unscattered table"
        );
        let mut dropped = 0;
        for index in range {
            let address = self
                .entry_address(index)
                .expect("a scattered range holds groups");
            dropped += self.header(address).total_len() as u64;
            self.mark_dead(address);
            self.set_bucket(index, 0);
            self.groups -= 1;
        }
        assert_eq!(
            dropped, self.partition_bytes[partition],
            "partition {partition} dropped other bytes than it held"
        );
        self.garbage_bytes += dropped;
        self.partition_bytes[partition] = 0;
    }

    /// Slides the live records down over the dead ones, fills the bucket array again from
    /// them (rehashing their keys), and gives surplus record segments back to the budget.
    /// Each record is copied out before it is written lower down, so overlapping moves are
    /// safe.
    pub(crate) fn rebuild(&mut self) {
        let segment_size = 1 << self.log2;
        for segment in &mut self.buckets {
            segment.fill(0, segment_size, 0);
        }
        let groups = self.groups;
        self.groups = 0;
        let mut record = std::mem::take(&mut self.scratch);
        let (mut source, mut target) = (0u64, 0u64);
        while source < self.area_end {
            let header = self.header(source);
            let len = header.total_len() as u64;
            if !header.dead {
                let hash = if target == source {
                    let (key, _) = self.record(source, &mut record);
                    hash_bytes(self.seed, key)
                } else {
                    record.clear();
                    record.resize(len as usize, 0);
                    self.read_at(source, &mut record);
                    self.write_at(target, &record);
                    let key = &record[header.header_len..header.header_len + header.key_len];
                    hash_bytes(self.seed, key)
                };
                let mut index = hash as usize & self.bucket_mask;
                while self.bucket(index) != 0 {
                    index = (index + 1) & self.bucket_mask;
                }
                self.set_bucket(index, (hash & !ADDRESS_MASK) | (target + 1));
                self.groups += 1;
                target += len;
            }
            source += len;
        }
        assert_eq!(
            self.groups, groups,
            "a rebuild found other groups than it held"
        );
        self.scratch = record;
        self.area_end = target;
        self.garbage_bytes = 0;
        self.scattered = false;
        let keep = target.div_ceil(segment_size as u64) as usize;
        while self.area.len() > keep {
            let segment = self.area.pop().expect("a surplus segment");
            self.memory.give_back(segment);
        }
    }

    /// Empties the table for reuse with `seed`; record segments go back to the budget.
    pub(crate) fn clear(&mut self, seed: u64) {
        let segment_size = 1 << self.log2;
        for segment in &mut self.buckets {
            segment.fill(0, segment_size, 0);
        }
        for segment in self.area.drain(..) {
            self.memory.give_back(segment);
        }
        self.seed = seed;
        self.groups = 0;
        self.area_end = 0;
        self.garbage_bytes = 0;
        self.partition_bytes.fill(0);
        self.scattered = false;
        assert_eq!(
            self.memory.segments() + self.buckets.len(),
            self.segments_total,
            "a hash table lost track of its memory"
        );
    }

    /// Frees every segment and returns the whole budget.
    pub(crate) fn into_memory(mut self) -> Reservation {
        for segment in self.buckets.drain(..).chain(self.area.drain(..)) {
            self.memory.give_back(segment);
        }
        assert_eq!(self.memory.segments(), self.segments_total);
        self.memory
    }

    /// Doubles the bucket array when the budget and the bucket share allow; `Ok(false)`
    /// otherwise.
    fn grow(&mut self) -> Result<bool> {
        let count = self.buckets.len() * 2;
        if count > self.segments_total / HASH_BUCKET_SHARE_INVERSE {
            return Ok(false);
        }
        let mut grown = match self.memory.allocate(count) {
            Ok(segments) => segments,
            Err(error) if error.is_budget_exceeded() => return Ok(false),
            Err(error) => return Err(error),
        };
        let segment_size = 1 << self.log2;
        for segment in &mut grown {
            segment.fill(0, segment_size, 0);
        }
        let mask = (self.buckets_len() * 2) - 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        for old in 0..self.buckets_len() {
            let Some(address) = self.entry_address(old) else {
                continue;
            };
            let (key, _) = self.record(address, &mut scratch);
            let hash = hash_bytes(self.seed, key);
            let mut index = hash as usize & mask;
            while bucket_in(&grown, self.bucket_shift, index) != 0 {
                index = (index + 1) & mask;
            }
            let segment = index >> self.bucket_shift;
            let offset = (index & ((1 << self.bucket_shift) - 1)) * HASH_BUCKET_SIZE;
            grown[segment].put_u64_le(offset, self.bucket(old));
        }
        self.scratch = scratch;
        for segment in std::mem::replace(&mut self.buckets, grown) {
            self.memory.give_back(segment);
        }
        self.bucket_mask = mask;
        Ok(true)
    }

    /// Appends a live record; returns its address and length, or `Ok(None)` when there is
    /// no room for it.
    fn append(&mut self, key: &[u8], acc: &[u8]) -> Result<Option<(u64, u64)>> {
        let mut header = [0; HEADER_LEN_MAX];
        let header_len = encode_header(key.len(), acc.len(), &mut header);
        let total = (header_len + key.len() + acc.len()) as u64;
        if !self.make_room(total)? {
            return Ok(None);
        }
        let address = self.area_end;
        let end = address + total;
        assert!(end < ADDRESS_MASK, "record area beyond 2^48 bytes");
        self.write_at(address, &header[..header_len]);
        self.write_at(address + header_len as u64, key);
        self.write_at(address + (header_len + key.len()) as u64, acc);
        self.area_end = end;
        Ok(Some((address, total)))
    }

    /// Makes sure `len` more bytes fit in the record area, taking segments from the budget
    /// and, when it has none left and enough of the area is garbage, rebuilding.
    fn make_room(&mut self, len: u64) -> Result<bool> {
        let mut rebuilt = false;
        loop {
            if (self.area.len() as u64) << self.log2 >= self.area_end + len {
                return Ok(true);
            }
            match self.memory.allocate_one() {
                Ok(segment) => self.area.push(segment),
                Err(error) if !error.is_budget_exceeded() => return Err(error),
                Err(_) if rebuilt => return Ok(false),
                Err(_) => {
                    if self.garbage_bytes * 100 < self.area_end * HASH_COMPACT_GARBAGE_PERCENT_MIN {
                        return Ok(false);
                    }
                    self.rebuild();
                    rebuilt = true;
                }
            }
        }
    }

    #[inline]
    fn locate(&self, position: u64) -> (usize, usize) {
        let segment = (position >> self.log2) as usize;
        let offset = (position & ((1 << self.log2) - 1)) as usize;
        (segment, offset)
    }

    fn write_at(&mut self, mut position: u64, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (segment, offset) = self.locate(position);
            let n = bytes.len().min((1 << self.log2) - offset);
            self.area[segment].put_bytes(offset, &bytes[..n]);
            position += n as u64;
            bytes = &bytes[n..];
        }
    }

    fn read_at(&self, mut position: u64, target: &mut [u8]) {
        let mut filled = 0;
        while filled < target.len() {
            let (segment, offset) = self.locate(position);
            let n = (target.len() - filled).min((1 << self.log2) - offset);
            self.area[segment].get_bytes(offset, &mut target[filled..filled + n]);
            position += n as u64;
            filled += n;
        }
    }

    /// Whether the bytes at `position` are `key`.
    #[inline]
    fn equals(&self, mut position: u64, mut key: &[u8]) -> bool {
        while !key.is_empty() {
            let (segment, offset) = self.locate(position);
            let n = key.len().min((1 << self.log2) - offset);
            if self.area[segment].bytes(offset, n) != &key[..n] {
                return false;
            }
            position += n as u64;
            key = &key[n..];
        }
        true
    }

    /// Decodes a varint the table wrote at `position`, moving past it.
    #[inline]
    fn varint(&self, position: &mut u64) -> u64 {
        let mut value = 0;
        let mut shift = 0;
        loop {
            let (segment, offset) = self.locate(*position);
            let byte = self.area[segment].get_u8(offset);
            *position += 1;
            match varint::decode_step(byte, shift, &mut value) {
                Ok(Some(done)) => return done,
                Ok(None) => shift += 7,
                Err(what) => panic!("hash table record header at {position}: {what}"),
            }
        }
    }
}

#[inline]
fn bucket_in(buckets: &[MemorySegment], shift: u32, index: usize) -> u64 {
    let segment = index >> shift;
    let offset = (index & ((1 << shift) - 1)) * HASH_BUCKET_SIZE;
    buckets[segment].get_u64_le(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::test_manager;

    fn table(segments: usize, seed: u64) -> (crate::memory::MemoryManager, Table) {
        let manager = test_manager(segments);
        let memory = manager.owner("hash").reserve(segments).unwrap();
        let table = Table::new(memory, seed, 3).unwrap();
        (manager, table)
    }

    fn insert(table: &mut Table, key: &[u8], acc: &[u8]) -> bool {
        let hash = hash_bytes(table.seed(), key);
        table.insert(hash, key, acc).unwrap()
    }

    fn replace(table: &mut Table, key: &[u8], acc: &[u8]) -> bool {
        let hash = hash_bytes(table.seed(), key);
        table.replace(hash, key, acc).unwrap()
    }

    fn lookup(table: &Table, key: &[u8]) -> Option<Vec<u8>> {
        match table.find(hash_bytes(table.seed(), key), key) {
            Slot::Found { address, .. } => {
                let mut scratch = Vec::new();
                Some(table.record(address, &mut scratch).1.to_vec())
            }
            Slot::Vacant { .. } => None,
        }
    }

    /// The worked example of docs/FORMAT.md, section 5.
    #[test]
    fn format_doc_example() {
        let (manager, mut table) = table(4, 3);
        let acc = [1234i64.to_le_bytes(), 3i64.to_le_bytes()].concat();
        assert!(insert(&mut table, b"AF", &acc));
        let expected = [
            0x04, 0x10, 0x41, 0x46, 0xd2, 0x04, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut bytes = vec![0; 20];
        table.read_at(0, &mut bytes);
        assert_eq!(bytes, expected);
        assert_eq!(table.record_bytes(), 20);
        let doc = include_str!("../../../docs/FORMAT.md");
        assert!(doc.contains("04                          varint 4 = 2 << 1 | 0: key_len 2, live"));
        assert!(doc.contains("d2 04 00 00 00 00 00 00     sum 1234"));
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    #[test]
    fn inserts_grow_the_buckets_until_memory_runs_out() {
        let (manager, mut table) = table(16, 42);
        let mut n = 0u32;
        while insert(&mut table, &n.to_be_bytes(), &[n as u8; 8]) {
            n += 1;
        }
        assert!(n > 1000, "only {n} groups fit");
        assert_eq!(table.groups(), n as usize);
        assert!(table.buckets_len() > 512, "the bucket array grew");
        for i in 0..n {
            assert_eq!(lookup(&table, &i.to_be_bytes()), Some(vec![i as u8; 8]));
        }
        assert_eq!(lookup(&table, &n.to_be_bytes()), None);
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    #[test]
    fn records_span_segments_and_update_in_place() {
        let (manager, mut table) = table(8, 1);
        let long_key = vec![7u8; 5000];
        assert!(insert(&mut table, &long_key, &[1; 8]));
        assert!(insert(&mut table, b"", &[2; 8]));
        // Push the next accumulator across a segment boundary.
        let filler = vec![3u8; 4096 * 2 - table.record_bytes() as usize - 6];
        assert!(insert(&mut table, &filler, &[]));
        assert!(insert(&mut table, b"k", &[0, 1, 2, 3, 4, 5, 6, 7]));
        let Slot::Found { address, .. } = table.find(hash_bytes(1, b"k"), b"k") else {
            panic!("k is there");
        };
        table.update_in_place(address, |acc| acc.reverse());
        assert_eq!(lookup(&table, b"k"), Some(vec![7, 6, 5, 4, 3, 2, 1, 0]));
        assert_eq!(lookup(&table, &long_key), Some(vec![1; 8]));
        assert_eq!(lookup(&table, b""), Some(vec![2; 8]));
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    #[test]
    fn replace_moves_records_whose_length_changes() {
        let (manager, mut table) = table(4, 9);
        assert!(insert(&mut table, b"key", b"ab"));
        assert!(replace(&mut table, b"key", b"xy"));
        assert_eq!(table.garbage_bytes(), 0, "same length: in place");
        assert!(replace(&mut table, b"key", b"xyz"));
        assert_eq!(table.garbage_bytes(), 2 + 3 + 2);
        assert_eq!(lookup(&table, b"key"), Some(b"xyz".to_vec()));
        let partition = table.partition_of(hash_bytes(9, b"key"));
        assert_eq!(table.partition_bytes[partition], 2 + 3 + 3);
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    /// A growing accumulator leaves garbage behind; when the area is full the table
    /// rebuilds instead of reporting no room, and every group survives the move.
    #[test]
    fn a_full_area_of_garbage_is_rebuilt() {
        let (manager, mut table) = table(6, 2);
        for i in 0u32..20 {
            assert!(insert(&mut table, &i.to_le_bytes(), &[i as u8; 3]));
        }
        let key = b"growing";
        assert!(insert(&mut table, key, &[]));
        let mut acc = Vec::new();
        for round in 0..400 {
            acc.push(round as u8);
            assert!(replace(&mut table, key, &acc), "round {round}");
        }
        assert!(
            table.record_bytes() < 3 * 4096,
            "rebuilt: {} bytes",
            table.record_bytes()
        );
        assert_eq!(lookup(&table, key), Some(acc));
        for i in 0u32..20 {
            assert_eq!(lookup(&table, &i.to_le_bytes()), Some(vec![i as u8; 3]));
        }
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    #[test]
    fn scatter_groups_buckets_by_partition() {
        let (manager, mut table) = table(8, 5);
        for i in 0u32..300 {
            assert!(insert(&mut table, &i.to_le_bytes(), &[]));
        }
        let ranges = table.scatter();
        assert_eq!(ranges.len(), 8);
        let mut seen = 0;
        let mut scratch = Vec::new();
        for (partition, range) in ranges.iter().enumerate() {
            for index in range.clone() {
                let address = table.entry_address(index).expect("non-empty");
                let (key, _) = table.record(address, &mut scratch);
                assert_eq!((hash_bytes(5, key) >> 61) as usize, partition);
                seen += 1;
            }
        }
        assert_eq!(seen, 300);
        table.clear(6);
        assert_eq!(table.groups(), 0);
        assert!(insert(&mut table, b"again", &[]));
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    /// Dropping the largest partitions and rebuilding keeps exactly the other groups,
    /// findable, in a compacted area.
    #[test]
    fn dropped_partitions_leave_the_rest_findable() {
        let (manager, mut table) = table(16, 11);
        for i in 0u32..600 {
            assert!(insert(&mut table, &i.to_le_bytes(), &i.to_be_bytes()));
        }
        let before = table.record_bytes();
        let chosen = table.largest_partitions(50);
        assert!((1..=4).contains(&chosen.len()), "{chosen:?}");
        let ranges = table.scatter();
        for &partition in &chosen {
            table.drop_partition(partition, ranges[partition].clone());
        }
        table.rebuild();
        for i in 0u32..600 {
            let partition = table.partition_of(hash_bytes(11, &i.to_le_bytes()));
            let expected = (!chosen.contains(&partition)).then(|| i.to_be_bytes().to_vec());
            assert_eq!(lookup(&table, &i.to_le_bytes()), expected, "group {i}");
        }
        assert!(table.record_bytes() * 100 <= before * 50 + 50, "compacted");
        assert_eq!(table.garbage_bytes(), 0);
        assert!(table.largest_partitions(100).len() <= 8 - chosen.len());
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }
}
