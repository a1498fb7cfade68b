//! `Bloom`: the bloom filter of a spilled join partition, one segment of bits.
//!
//! Every build record written to a spilled partition's runs sets
//! [`HASH_JOIN_BLOOM_HASHES`] bits chosen from its key's hash; a probe record of that
//! partition whose bits are not all set has no match and is not written to disk. The bit
//! positions come from the hash by double hashing (Kirsch and Mitzenmacher), after a
//! remix: the partition is taken from the top bits of the same hash, so within one
//! partition those bits are far from uniform.

use crate::constants::HASH_JOIN_BLOOM_HASHES;
use crate::memory::MemorySegment;

/// A bloom filter in one segment. See the module documentation.
#[derive(Debug)]
pub(crate) struct Bloom {
    segment: MemorySegment,
    /// Bits in the segment minus one: a power of two minus one.
    mask: u64,
}

impl Bloom {
    /// An empty filter over `segment`'s bits.
    pub(crate) fn new(mut segment: MemorySegment) -> Bloom {
        let size = segment.size();
        segment.fill(0, size, 0);
        assert!(size.is_power_of_two());
        Bloom {
            mask: (size as u64 * 8) - 1,
            segment,
        }
    }

    #[inline]
    fn positions(&self, hash: u64) -> impl Iterator<Item = u64> + use<> {
        let mixed = (hash ^ (hash >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let (first, step) = (mixed & 0xffff_ffff, (mixed >> 32) | 1);
        let mask = self.mask;
        (0..u64::from(HASH_JOIN_BLOOM_HASHES))
            .map(move |i| first.wrapping_add(i.wrapping_mul(step)) & mask)
    }

    /// Adds a key by its hash.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) {
        for bit in self.positions(hash) {
            let offset = (bit / 8) as usize;
            let byte = self.segment.get_u8(offset);
            self.segment.put_u8(offset, byte | (1 << (bit % 8)));
        }
    }

    /// Whether a key of this hash may have been added (false: it certainly was not).
    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|bit| self.segment.get_u8((bit / 8) as usize) & (1 << (bit % 8)) != 0)
    }

    /// The segment, to give back.
    pub(crate) fn into_segment(self) -> MemorySegment {
        self.segment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hasher::{hash_bytes, seed_at};
    use crate::memory::test_manager;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let manager = test_manager(1);
        let mut bloom = Bloom::new(manager.owner("bloom").allocate_one().unwrap());
        let seed = seed_at(1, 0);
        // 4 KiB: 32 768 bits; 2 000 keys is 16 bits a key.
        for i in 0u32..2000 {
            bloom.insert(hash_bytes(seed, &i.to_le_bytes()));
        }
        assert!((0u32..2000).all(|i| bloom.may_contain(hash_bytes(seed, &i.to_le_bytes()))));
        let false_positives = (2000u32..22_000)
            .filter(|i| bloom.may_contain(hash_bytes(seed, &i.to_le_bytes())))
            .count();
        assert!(false_positives < 20_000 / 50, "{false_positives}");
        drop(bloom.into_segment());
        manager.leak_check().unwrap();
    }
}
