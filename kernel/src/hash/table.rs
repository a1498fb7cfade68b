//! `Table`: the hash table of an aggregation, every byte of it in segments.
//!
//! ```text
//!   buckets: a power of two of 8-byte entries in segments, linear probing
//!     [ tag: top 16 bits of the hash | address + 1: 48 bits ]   (0 = empty)
//!                                           │
//!   record area: segments, append only, records span segments freely
//!     [varint key_len][varint acc_len][key][acc] [varint..][..] ...
//! ```
//!
//! A lookup walks buckets from `hash & mask`, compares the tag and only then the key in
//! the record area. A fixed-size accumulator is updated where it lies; a variable-size
//! one whose length changes is appended again and its bucket repointed, leaving the old
//! record as garbage until the table is cleared (after a spill or at the end) or, when the
//! area is full and at least [`HASH_COMPACT_GARBAGE_PERCENT_MIN`] percent of it is garbage,
//! compacted in place.
//!
//! Memory: the table holds one [`Reservation`] of its whole budget, and takes bucket and
//! record segments out of it (and gives them back) as it grows and clears, so no other
//! consumer can take its memory in between. The bucket array doubles while the load is
//! above [`HASH_LOAD_PERCENT_MAX`] and it may take at most `1 /`
//! [`HASH_BUCKET_SHARE_INVERSE`] of the memory; when neither buckets nor records can grow,
//! inserting answers "no room" and the caller spills.
//!
//! Invariants:
//! 1. `memory.segments() + buckets.len() + area.len() == segments_total`.
//! 2. Outside `scatter`ed state, every record reachable from a bucket lies below
//!    `area_end` and its key hashes (with `seed`) to the bucket's tag.
//! 3. `groups` counts the non-empty buckets.

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

/// Encodes a record header (`key_len`, `acc_len`) into `out`; returns its length.
pub(crate) fn encode_header(
    key_len: usize,
    acc_len: usize,
    out: &mut [u8; HEADER_LEN_MAX],
) -> usize {
    let mut word = [0; VARINT_U64_BYTES_MAX];
    let first = varint::encode_u64(key_len as u64, &mut word);
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
    /// Bytes of the record area no bucket points to any more.
    garbage_bytes: u64,
    /// Set by [`Table::scatter`]: buckets are grouped by partition, not probed.
    scattered: bool,
    scratch: Vec<u8>,
}

impl Table {
    /// A table over the budget `memory` holds, hashing with `seed`: one bucket segment to
    /// begin with.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`](crate::KernelError::BudgetExceeded) when `memory`
    /// holds less than a segment.
    pub(crate) fn new(mut memory: Reservation, seed: u64) -> Result<Table> {
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

    /// Bytes of the record area no bucket points to.
    #[cfg(test)]
    pub(crate) fn garbage_bytes(&self) -> u64 {
        self.garbage_bytes
    }

    /// The seed keys are hashed with.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
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
    /// After [`Table::scatter`], before [`Table::clear`].
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

    /// Adds `key` with accumulator `acc` at the vacant bucket `index` (from
    /// [`Table::find`]); `Ok(false)` when there is no room (nothing changed but perhaps a
    /// larger bucket array).
    ///
    /// # Errors
    ///
    /// A memory error other than the table's budget running out.
    pub(crate) fn insert(
        &mut self,
        index: usize,
        hash: u64,
        key: &[u8],
        acc: &[u8],
    ) -> Result<bool> {
        let mut index = index;
        if (self.groups + 1) * 100 > self.buckets_len() * HASH_LOAD_PERCENT_MAX {
            if !self.grow()? {
                return Ok(false);
            }
            match self.find(hash, key) {
                Slot::Vacant { index: vacant } => index = vacant,
                Slot::Found { .. } => panic!("insert of a key the table holds"),
            }
        }
        let Some(address) = self.append(key, acc)? else {
            return Ok(false);
        };
        debug_assert_eq!(self.bucket(index), 0, "insert into a full bucket");
        self.set_bucket(index, (hash & !ADDRESS_MASK) | (address + 1));
        self.groups += 1;
        Ok(true)
    }

    /// Replaces the accumulator of the record at `address` (bucket `index`, key `key`) by
    /// `acc`: in place when the length is unchanged, appended anew otherwise; `Ok(false)`
    /// when there is no room for the new record (nothing changed).
    ///
    /// # Errors
    ///
    /// A memory error other than the table's budget running out.
    pub(crate) fn replace(
        &mut self,
        index: usize,
        address: u64,
        key: &[u8],
        acc: &[u8],
    ) -> Result<bool> {
        let header = self.header(address);
        if header.acc_len == acc.len() {
            let start = address + (header.header_len + header.key_len) as u64;
            self.write_at(start, acc);
            return Ok(true);
        }
        let Some(moved) = self.append(key, acc)? else {
            return Ok(false);
        };
        let tag = self.bucket(index) & !ADDRESS_MASK;
        self.set_bucket(index, tag | (moved + 1));
        self.garbage_bytes += header.total_len() as u64;
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
        // Keys and accumulators under 128 bytes, both length bytes in one segment: the
        // common case, read without a loop.
        let (segment, offset) = self.locate(address);
        if offset + 2 <= 1 << self.log2 {
            let lengths = self.area[segment].bytes(offset, 2);
            if lengths[0] < 0x80 && lengths[1] < 0x80 {
                return RecordHeader {
                    header_len: 2,
                    key_len: usize::from(lengths[0]),
                    acc_len: usize::from(lengths[1]),
                };
            }
        }
        let mut position = address;
        let key_len = self.varint(&mut position);
        let acc_len = self.varint(&mut position);
        RecordHeader {
            header_len: (position - address) as usize,
            key_len,
            acc_len,
        }
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

    /// Writes the record at `address`, header included, to `output`; returns its length.
    ///
    /// # Errors
    ///
    /// The output's error.
    pub(crate) fn write_record(&self, address: u64, output: &mut RunOutput) -> Result<usize> {
        let len = self.header(address).total_len();
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

    /// Groups the non-empty buckets by partition (the top `bits` bits of their hash) and
    /// returns each partition's range of bucket indexes. The table is no longer a hash table
    /// until [`Table::clear`]: it can be read by [`Table::entry_address`] only.
    pub(crate) fn scatter(&mut self, bits: u32) -> Vec<Range<usize>> {
        assert!((1..=HASH_TAG_BITS).contains(&bits));
        self.scattered = true;
        let partitions = 1usize << bits;
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

    /// Appends a record; `Ok(None)` when the budget has no segment for it (the area may
    /// have grown by the segments it could get, which later records use).
    fn append(&mut self, key: &[u8], acc: &[u8]) -> Result<Option<u64>> {
        let mut header = [0; HEADER_LEN_MAX];
        let header_len = encode_header(key.len(), acc.len(), &mut header);
        let total = (header_len + key.len() + acc.len()) as u64;
        if !self.make_room(total)? {
            return Ok(None);
        }
        let end = self.area_end + total;
        let address = self.area_end;
        assert!(end < ADDRESS_MASK, "record area beyond 2^48 bytes");
        self.write_at(address, &header[..header_len]);
        self.write_at(address + header_len as u64, key);
        self.write_at(address + (header_len + key.len()) as u64, acc);
        self.area_end = end;
        Ok(Some(address))
    }

    /// Makes sure `len` more bytes fit in the record area, taking segments from the budget
    /// and, when it has none left and enough of the area is garbage, compacting.
    fn make_room(&mut self, len: u64) -> Result<bool> {
        let mut compacted = false;
        loop {
            if (self.area.len() as u64) << self.log2 >= self.area_end + len {
                return Ok(true);
            }
            match self.memory.allocate_one() {
                Ok(segment) => self.area.push(segment),
                Err(error) if !error.is_budget_exceeded() => return Err(error),
                Err(_) if compacted => return Ok(false),
                Err(_) => {
                    if self.garbage_bytes * 100 < self.area_end * HASH_COMPACT_GARBAGE_PERCENT_MIN {
                        return Ok(false);
                    }
                    self.compact();
                    compacted = true;
                }
            }
        }
    }

    /// Slides the live records down over the garbage, in address order, repointing their
    /// buckets; gives surplus record segments back to the budget. A record is live when the
    /// lookup of its key finds it; it is copied out before it is written lower down, so
    /// overlapping moves are safe, and every bucket points to intact bytes throughout.
    fn compact(&mut self) {
        let mut record = std::mem::take(&mut self.scratch);
        let (mut source, mut target) = (0u64, 0u64);
        while source < self.area_end {
            let header = self.header(source);
            let len = header.total_len();
            record.clear();
            record.resize(len, 0);
            self.read_at(source, &mut record);
            let key = &record[header.header_len..header.header_len + header.key_len];
            let hash = hash_bytes(self.seed, key);
            if let Slot::Found { index, address } = self.find(hash, key)
                && address == source
            {
                if target != source {
                    self.write_at(target, &record);
                    let tag = self.bucket(index) & !ADDRESS_MASK;
                    self.set_bucket(index, tag | (target + 1));
                }
                target += len as u64;
            }
            source += len as u64;
        }
        self.scratch = record;
        self.area_end = target;
        self.garbage_bytes = 0;
        let keep = target.div_ceil(1 << self.log2) as usize;
        while self.area.len() > keep {
            let segment = self.area.pop().expect("a surplus segment");
            self.memory.give_back(segment);
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
    fn varint(&self, position: &mut u64) -> usize {
        let mut value = 0;
        let mut shift = 0;
        loop {
            let (segment, offset) = self.locate(*position);
            let byte = self.area[segment].get_u8(offset);
            *position += 1;
            match varint::decode_step(byte, shift, &mut value) {
                Ok(Some(done)) => return done as usize,
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

    fn insert(table: &mut Table, key: &[u8], acc: &[u8]) -> bool {
        let hash = hash_bytes(table.seed(), key);
        match table.find(hash, key) {
            Slot::Vacant { index } => table.insert(index, hash, key, acc).unwrap(),
            Slot::Found { .. } => panic!("key present"),
        }
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
        let manager = test_manager(4);
        let mut table = Table::new(manager.owner("hash").reserve(4).unwrap(), 3).unwrap();
        let acc = [1234i64.to_le_bytes(), 3i64.to_le_bytes()].concat();
        assert!(insert(&mut table, b"AF", &acc));
        let expected = [
            0x02, 0x10, 0x41, 0x46, 0xd2, 0x04, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut bytes = vec![0; 20];
        table.read_at(0, &mut bytes);
        assert_eq!(bytes, expected);
        assert_eq!(table.record_bytes(), 20);
        let doc = include_str!("../../../docs/FORMAT.md");
        assert!(doc.contains("d2 04 00 00 00 00 00 00     sum 1234"));
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    #[test]
    fn inserts_grow_the_buckets_until_memory_runs_out() {
        let manager = test_manager(16);
        let table_memory = manager.owner("hash").reserve(16).unwrap();
        let mut table = Table::new(table_memory, 42).unwrap();
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
        let manager = test_manager(8);
        let mut table = Table::new(manager.owner("hash").reserve(8).unwrap(), 1).unwrap();
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
        let manager = test_manager(4);
        let mut table = Table::new(manager.owner("hash").reserve(4).unwrap(), 9).unwrap();
        assert!(insert(&mut table, b"key", b"ab"));
        let hash = hash_bytes(9, b"key");
        let Slot::Found { index, address } = table.find(hash, b"key") else {
            panic!("present");
        };
        assert!(table.replace(index, address, b"key", b"xy").unwrap());
        assert_eq!(table.garbage_bytes(), 0, "same length: in place");
        assert!(table.replace(index, address, b"key", b"xyz").unwrap());
        assert_eq!(table.garbage_bytes(), 2 + 3 + 2);
        assert_eq!(lookup(&table, b"key"), Some(b"xyz".to_vec()));
        drop(table.into_memory());
        manager.leak_check().unwrap();
    }

    /// A growing accumulator leaves garbage behind; when the area is full the table
    /// compacts instead of reporting no room, and every group survives the move.
    #[test]
    fn a_full_area_of_garbage_is_compacted() {
        let manager = test_manager(6);
        let mut table = Table::new(manager.owner("hash").reserve(6).unwrap(), 2).unwrap();
        for i in 0u32..20 {
            assert!(insert(&mut table, &i.to_le_bytes(), &[i as u8; 3]));
        }
        let key = b"growing";
        let hash = hash_bytes(2, key);
        assert!(insert(&mut table, key, &[]));
        let mut acc = Vec::new();
        for round in 0..400 {
            acc.push(round as u8);
            let Slot::Found { index, address } = table.find(hash, key) else {
                panic!("present");
            };
            assert!(
                table.replace(index, address, key, &acc).unwrap(),
                "round {round}"
            );
        }
        assert!(
            table.record_bytes() < 3 * 4096,
            "compacted: {} bytes",
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
        let manager = test_manager(8);
        let mut table = Table::new(manager.owner("hash").reserve(8).unwrap(), 5).unwrap();
        for i in 0u32..300 {
            assert!(insert(&mut table, &i.to_le_bytes(), &[]));
        }
        let ranges = table.scatter(3);
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
}
