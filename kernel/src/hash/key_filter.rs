//! `KeyFilter`: a blocked bloom filter over the keys a join table holds in memory, so a
//! probe whose key is certainly absent is answered from one word, without the bucket
//! array (a probe side that mostly misses — a large scan against a small, filtered build
//! side — then pays a cache hit instead of a miss).
//!
//! ```text
//!   words: 2^k little-endian u64s in segments, about 16 bits per key
//!   key hash ──remix──▶ word (top k bits) + 3 bit positions (three 6-bit fields)
//!   insert: word |= mask          may_contain: word & mask == mask
//! ```
//!
//! The remix is its own multiply: the hash's top bits already choose the table's
//! partition and its low bits the home bucket, so within one table they are far from
//! uniform. False positives are about 1% at 16 bits per key; there are no false
//! negatives. The filter is an optimization: a table that cannot spare its segments
//! goes without (every key "may" be there).

use crate::memory::MemorySegment;

/// Bits of filter per key the table holds (rounded up to a power of two of words).
const BITS_PER_KEY: usize = 16;

/// A blocked bloom filter in segments. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct KeyFilter {
    segments: Vec<MemorySegment>,
    /// log2 of the words (0 with no segments).
    words_log2: u32,
    /// log2 of the words in one segment.
    segment_words_log2: u32,
}

impl KeyFilter {
    /// Segments a filter for `keys` keys needs with segments of `segment_size` bytes.
    pub(crate) fn segments_for(keys: usize, segment_size: usize) -> usize {
        (Self::words_for(keys) * 8).div_ceil(segment_size)
    }

    fn words_for(keys: usize) -> usize {
        (keys * BITS_PER_KEY)
            .div_ceil(64)
            .next_power_of_two()
            .max(8)
    }

    /// An empty filter for `keys` keys over `segments` (as many as
    /// [`KeyFilter::segments_for`] said), zeroed here.
    pub(crate) fn new(keys: usize, mut segments: Vec<MemorySegment>) -> KeyFilter {
        let segment_size = segments.first().map_or(0, MemorySegment::size);
        assert!(segment_size.is_power_of_two() && segment_size >= 8);
        assert_eq!(segments.len(), Self::segments_for(keys, segment_size));
        for segment in &mut segments {
            segment.fill(0, segment_size, 0);
        }
        KeyFilter {
            segments,
            words_log2: Self::words_for(keys).trailing_zeros(),
            segment_words_log2: (segment_size / 8).trailing_zeros(),
        }
    }

    /// The word and the three bits of `hash`.
    #[inline]
    fn place(&self, hash: u64) -> (usize, usize, u64) {
        let mixed = (hash ^ (hash >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let word = if self.words_log2 == 0 {
            0
        } else {
            (mixed >> (64 - self.words_log2)) as usize
        };
        let mask =
            (1u64 << (mixed & 63)) | (1 << ((mixed >> 6) & 63)) | (1 << ((mixed >> 12) & 63));
        let segment = word >> self.segment_words_log2;
        let offset = (word & ((1 << self.segment_words_log2) - 1)) * 8;
        (segment, offset, mask)
    }

    /// Adds a key by its hash.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) {
        if self.segments.is_empty() {
            return;
        }
        let (segment, offset, mask) = self.place(hash);
        let word = self.segments[segment].get_u64_le(offset);
        self.segments[segment].put_u64_le(offset, word | mask);
    }

    /// Whether a key of this hash may have been added (`false`: it certainly was not).
    /// A filter without segments says every key may be there.
    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        if self.segments.is_empty() {
            return true;
        }
        let (segment, offset, mask) = self.place(hash);
        self.segments[segment].get_u64_le(offset) & mask == mask
    }

    /// Segments the filter holds (0: it filters nothing).
    #[cfg(test)]
    pub(crate) fn segments(&self) -> usize {
        self.segments.len()
    }

    /// The segments, to give back; the filter is empty (lets every key through) after.
    pub(crate) fn take_segments(&mut self) -> Vec<MemorySegment> {
        self.words_log2 = 0;
        std::mem::take(&mut self.segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;
    use crate::memory::{MemoryConfig, MemoryManager};

    #[test]
    fn added_keys_always_pass_and_few_others_do() {
        let manager = MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            ..MemoryConfig::with_budget(64 * 4096)
        })
        .unwrap();
        let owner = manager.owner("filter");
        let keys = 10_000;
        let segments = owner.allocate(KeyFilter::segments_for(keys, 4096)).unwrap();
        let mut filter = KeyFilter::new(keys, segments);
        let hash = |i: u64| hash_bytes(7, &i.to_be_bytes());
        for i in 0..keys as u64 {
            filter.insert(hash(i));
        }
        assert!((0..keys as u64).all(|i| filter.may_contain(hash(i))));
        let false_positives = (keys as u64..keys as u64 + 100_000)
            .filter(|&i| filter.may_contain(hash(i)))
            .count();
        assert!(false_positives < 3_000, "{false_positives} of 100000");
        drop(filter.take_segments());
        assert!(
            filter.may_contain(hash(keys as u64 + 1)),
            "empty: lets all through"
        );
        manager.leak_check().unwrap();
    }
}
