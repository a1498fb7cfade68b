//! `Table`: the hash table of an aggregation, every byte of it in segments.
//!
//! ```text
//!   buckets: a power of two of 8-byte entries in segments, linear probing
//!     [ tag: top 16 bits of the hash | address + 1: 48 bits ]   (0 = empty)
//!                                           │
//!   record area (area.rs): [varint key_len << 1 | dead][varint acc_len][key][acc] ...
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
//! 1. The reservation's segments, the bucket segments and the area's segments add up to
//!    `segments_total`.
//! 2. Outside `scatter`ed state, every live record is reachable from exactly one bucket,
//!    whose tag is the top bits of its key's hash under `seed`; no bucket points to a dead
//!    record.
//! 3. `groups` counts the live records; `partition_bytes[p]` sums the lengths of the live
//!    records of partition `p`; `garbage_bytes` sums the lengths of the dead ones.

use std::ops::Range;

use super::area::{RecordArea, RecordHeader};
use super::hasher::hash_bytes;
use crate::constants::{
    HASH_BUCKET_SHARE_INVERSE, HASH_BUCKET_SIZE, HASH_COMPACT_GARBAGE_PERCENT_MIN,
    HASH_LOAD_PERCENT_MAX, HASH_PREFETCH_BATCH, HASH_TAG_BITS,
};
use crate::error::Result;
use crate::memory::{MemorySegment, Reservation};
use crate::spill::RunOutput;

/// Record addresses fit in the 48 low bits of a bucket entry (plus one).
const ADDRESS_BITS: u32 = 64 - HASH_TAG_BITS;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;

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
    area: RecordArea,
    garbage_bytes: u64,
    /// Partitions are the top `partition_bits` bits of the hash.
    partition_bits: u32,
    partition_bytes: Vec<u64>,
    /// Set by [`Table::scatter`]: buckets are grouped by partition, not probed.
    scattered: bool,
    /// Rebuilds so far: a bucket index found before a rebuild is stale after it.
    rebuilds: u64,
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
            area: RecordArea::new(segment_size.trailing_zeros()),
            garbage_bytes: 0,
            partition_bits,
            partition_bytes: vec![0; 1 << partition_bits],
            scattered: false,
            rebuilds: 0,
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
    pub(crate) fn record_bytes(&self) -> u64 {
        self.area.end()
    }

    /// Bytes of dead records in the record area.
    pub(crate) fn garbage_bytes(&self) -> u64 {
        self.garbage_bytes
    }

    /// Bytes of live records (keys, accumulators and their headers).
    pub(crate) fn live_bytes(&self) -> u64 {
        self.partition_bytes.iter().sum()
    }

    /// Bytes of live records of `partition`.
    pub(crate) fn partition_live_bytes(&self, partition: usize) -> u64 {
        self.partition_bytes[partition]
    }

    /// Bytes of the whole budget the table holds (buckets and records).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.segments_total * self.memory.owner().segment_size()
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

    /// Asks the CPU to bring the home bucket of `hash` into the cache, ahead of a lookup
    /// (a hint: see [`MemorySegment::prefetch`]).
    #[inline]
    pub(crate) fn prefetch_bucket(&self, hash: u64) {
        let index = hash as usize & self.bucket_mask;
        let segment = index >> self.bucket_shift;
        let offset = (index & ((1 << self.bucket_shift) - 1)) * HASH_BUCKET_SIZE;
        self.buckets[segment].prefetch(offset);
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
                if self
                    .area
                    .key_equals(address, &self.area.header(address), key)
                {
                    return Slot::Found { index, address };
                }
            }
            index = (index + 1) & self.bucket_mask;
        }
    }

    /// The key and accumulator of the record at `address`, copied into `scratch` only when
    /// they cross a segment boundary.
    pub(crate) fn record<'a>(
        &'a self,
        address: u64,
        scratch: &'a mut Vec<u8>,
    ) -> (&'a [u8], &'a [u8]) {
        self.area.record(address, scratch)
    }

    /// The first live record at or after `address` (a record's start, or the area's end):
    /// its address and the address after it. Streaming groups this way reads the records
    /// in address order, sequentially; valid only while the table is not scattered (then
    /// the live records are exactly the groups).
    ///
    /// # Panics
    ///
    /// When the table is scattered.
    #[inline]
    pub(crate) fn live_record(&self, address: u64) -> Option<(u64, u64)> {
        assert!(!self.scattered, "an address walk of a scattered table");
        let (live, header) = self.area.live_from(address)?;
        Some((live, live + header.total_len() as u64))
    }

    /// Applies `update` to the accumulator of the record at `address`, where it lies.
    #[inline]
    pub(crate) fn update_in_place(&mut self, address: u64, update: impl FnOnce(&mut [u8])) {
        self.area.update_acc(address, update);
    }

    /// Writes the record at `address` to `output`; returns its length.
    ///
    /// # Errors
    ///
    /// The output's error.
    pub(crate) fn write_record(&self, address: u64, output: &mut RunOutput) -> Result<usize> {
        self.area.write_record(address, output)
    }

    /// Adds `key` (absent, with hash `hash`) with accumulator `acc`; `Ok(false)` when there
    /// is no room (no group changed; the table may have grown or been rebuilt). `vacant` is
    /// the bucket [`Table::find`] answered for `key`, with the table unchanged since: it is
    /// taken unless the insert grows or rebuilds the table, which looks the key up again.
    ///
    /// # Errors
    ///
    /// A memory error other than the table's budget running out.
    ///
    /// # Panics
    ///
    /// When the table holds `key` already (found again after a growth or rebuild), or
    /// `vacant` is taken.
    pub(crate) fn insert(
        &mut self,
        vacant: usize,
        hash: u64,
        key: &[u8],
        acc: &[u8],
    ) -> Result<bool> {
        let (buckets, rebuilds) = (self.buckets_len(), self.rebuilds);
        if (self.groups + 1) * 100 > self.buckets_len() * HASH_LOAD_PERCENT_MAX && !self.grow()? {
            return Ok(false);
        }
        if !self.make_room(RecordArea::footprint(key.len(), acc.len()))? {
            return Ok(false);
        }
        let (address, len) = self.area.append(key, acc);
        let index = if (buckets, rebuilds) == (self.buckets_len(), self.rebuilds) {
            vacant
        } else {
            let Slot::Vacant { index } = self.find(hash, key) else {
                panic!("insert of a key the table holds");
            };
            index
        };
        assert_eq!(self.bucket(index), 0, "insert into a taken bucket {index}");
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
        let header = self.area.header(address);
        if header.acc_len == acc.len() {
            self.area
                .write_at(address + header.acc_offset() as u64, acc);
            return Ok(true);
        }
        if !self.make_room(RecordArea::footprint(key.len(), acc.len()))? {
            return Ok(false);
        }
        let (moved, len) = self.area.append(key, acc);
        // Making room may have rebuilt the table and moved the old record.
        let Slot::Found { index, address } = self.find(hash, key) else {
            panic!("a rebuild lost a group");
        };
        let old_len = header.total_len() as u64;
        self.area.mark_dead(address);
        self.garbage_bytes += old_len;
        self.set_bucket(index, (hash & !ADDRESS_MASK) | (moved + 1));
        let partition = self.partition_of(hash);
        self.partition_bytes[partition] = self.partition_bytes[partition] + len - old_len;
        Ok(true)
    }

    /// Removes `key` (present, with hash `hash`): its record is marked dead and the
    /// entries after its bucket shift back over the hole (backward-shift deletion, so
    /// linear probing needs no tombstones; a shifted entry's home is found by hashing
    /// its key again).
    ///
    /// # Panics
    ///
    /// When the table does not hold `key`, or is scattered.
    pub(crate) fn remove(&mut self, hash: u64, key: &[u8]) {
        let Slot::Found { index, address } = self.find(hash, key) else {
            panic!("remove of a key the table lacks");
        };
        let len = self.area.header(address).total_len() as u64;
        self.area.mark_dead(address);
        self.garbage_bytes += len;
        let partition = self.partition_of(hash);
        self.partition_bytes[partition] -= len;
        self.groups -= 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        let (mut hole, mut next) = (index, index);
        loop {
            next = (next + 1) & self.bucket_mask;
            let entry = self.bucket(next);
            if entry == 0 {
                break;
            }
            let (moved_key, _) = self.area.record((entry & ADDRESS_MASK) - 1, &mut scratch);
            let home = hash_bytes(self.seed, moved_key) as usize & self.bucket_mask;
            // The entry stays when its home lies cyclically in (hole, next].
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.set_bucket(hole, entry);
                hole = next;
            }
        }
        self.set_bucket(hole, 0);
        self.scratch = scratch;
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
            dropped += self.area.header(address).total_len() as u64;
            self.area.mark_dead(address);
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
    pub(crate) fn rebuild(&mut self) {
        self.rebuilds += 1;
        self.clear_buckets();
        let groups = std::mem::take(&mut self.groups);
        let mut scratch = std::mem::take(&mut self.scratch);
        let (mut source, mut target) = (0u64, 0u64);
        while source < self.area.end() {
            let header: RecordHeader = self.area.header(source);
            let len = header.total_len() as u64;
            if !header.dead {
                if target != source {
                    self.area.move_down(source, target, len as usize);
                }
                let (key, _) = self.area.record(target, &mut scratch);
                let hash = hash_bytes(self.seed, key);
                let index = self.vacant_bucket(hash);
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
        self.scratch = scratch;
        for segment in self.area.truncate(target) {
            self.memory.give_back(segment);
        }
        self.garbage_bytes = 0;
        self.scattered = false;
    }

    /// Empties the table for reuse with `seed`; record segments go back to the budget.
    pub(crate) fn clear(&mut self, seed: u64) {
        self.rebuilds += 1;
        self.clear_buckets();
        for segment in self.area.take_segments() {
            self.memory.give_back(segment);
        }
        self.seed = seed;
        self.groups = 0;
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
        for segment in self.buckets.drain(..).chain(self.area.take_segments()) {
            self.memory.give_back(segment);
        }
        assert_eq!(self.memory.segments(), self.segments_total);
        self.memory
    }

    fn clear_buckets(&mut self) {
        let segment_size = 1 << (self.bucket_shift + HASH_BUCKET_SIZE.trailing_zeros());
        for segment in &mut self.buckets {
            segment.fill(0, segment_size, 0);
        }
    }

    /// The first empty bucket from `hash`'s home.
    fn vacant_bucket(&self, hash: u64) -> usize {
        let mut index = hash as usize & self.bucket_mask;
        while self.bucket(index) != 0 {
            index = (index + 1) & self.bucket_mask;
        }
        index
    }

    /// Doubles the bucket array when the budget and the bucket share allow; `Ok(false)`
    /// otherwise.
    fn grow(&mut self) -> Result<bool> {
        assert!(!self.scattered, "growth of a scattered table");
        let count = self.buckets.len() * 2;
        if count > self.segments_total / HASH_BUCKET_SHARE_INVERSE {
            return Ok(false);
        }
        let grown = match self.memory.allocate(count) {
            Ok(segments) => segments,
            Err(error) if error.is_budget_exceeded() => return Ok(false),
            Err(error) => return Err(error),
        };
        let old = std::mem::replace(&mut self.buckets, grown);
        self.bucket_mask = self.bucket_mask * 2 + 1;
        for segment in old {
            self.memory.give_back(segment);
        }
        self.clear_buckets();
        self.fill_buckets();
        Ok(true)
    }

    /// Points a bucket at every live record of the area (the buckets are empty), walking
    /// the area in address order: the records are read sequentially, where walking the old
    /// buckets would read them in random order (a cache miss per group).
    /// The records are hashed [`HASH_PREFETCH_BATCH`] at a time and their buckets
    /// prefetched before any is written, so that the (random) bucket writes overlap.
    fn fill_buckets(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut batch = [(0u64, 0u64); HASH_PREFETCH_BATCH];
        let mut address = 0;
        let mut filled = 0;
        loop {
            let mut len = 0;
            while len < batch.len() {
                let Some((live, header)) = self.area.live_from(address) else {
                    break;
                };
                let (key, _) = self.area.body(live, &header, &mut scratch);
                let hash = hash_bytes(self.seed, key);
                self.prefetch_bucket(hash);
                batch[len] = (live, hash);
                len += 1;
                address = live + header.total_len() as u64;
            }
            for &(live, hash) in &batch[..len] {
                let vacant = self.vacant_bucket(hash);
                self.set_bucket(vacant, (hash & !ADDRESS_MASK) | (live + 1));
            }
            filled += len;
            if len < batch.len() {
                break;
            }
        }
        assert_eq!(
            filled, self.groups,
            "the area holds other groups than counted"
        );
        self.scratch = scratch;
    }

    /// Makes sure `len` more bytes fit in the record area, taking segments from the budget
    /// and, when it has none left and enough of the area is garbage, rebuilding.
    fn make_room(&mut self, len: u64) -> Result<bool> {
        assert!(
            self.area.end() + len < ADDRESS_MASK,
            "record area beyond 2^48 bytes"
        );
        let mut rebuilt = false;
        while self.area.room() < len {
            match self.memory.allocate_one() {
                Ok(segment) => self.area.push_segment(segment),
                Err(error) if !error.is_budget_exceeded() => return Err(error),
                Err(_) if rebuilt => return Ok(false),
                Err(_) => {
                    if self.garbage_bytes * 100 < self.area.end() * HASH_COMPACT_GARBAGE_PERCENT_MIN
                    {
                        return Ok(false);
                    }
                    self.rebuild();
                    rebuilt = true;
                }
            }
        }
        Ok(true)
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
        let Slot::Vacant { index } = table.find(hash, key) else {
            panic!("insert of a key the table holds");
        };
        table.insert(index, hash, key, acc).unwrap()
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
        let filler = vec![3u8; 4096 * 2 - table.record_bytes() as usize - 10];
        assert!(insert(&mut table, &filler, &[]));
        // "k" is at 8185: two header bytes, one key byte, then its accumulator at 8188.
        assert_eq!(table.record_bytes(), 4096 * 2 - 7);
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
