//! A seeded 64-bit hash of key bytes, in the style of wyhash: each 8-byte word is folded
//! into the state by a 64×64→128-bit multiply whose halves are xored ("mum").
//!
//! Every bit of the result depends on every input bit, so a hash table can take its
//! bucket index from the low bits, its tag from the high bits and its spill partition from
//! the top bits of the same value. A new seed gives an independent function: a partition
//! whose keys all share their top bits under one seed spreads out again under the next,
//! which is what lets a spilled partition be split once more. Not for adversarial input
//! (no DoS resistance is claimed), and not stable across versions of weir: hashes never
//! reach the disk.

/// The two odd constants of wyhash (final version 4).
const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;

/// Multiplies to 128 bits and folds the halves together.
#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Reads up to eight bytes as a little-endian word, zero padded.
#[inline]
fn word(bytes: &[u8]) -> u64 {
    if let Ok(whole) = <[u8; 8]>::try_from(bytes) {
        return u64::from_le_bytes(whole);
    }
    let mut padded = [0; 8];
    padded[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(padded)
}

/// The hash of `bytes` under `seed`.
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let len = bytes.len() as u64;
    let mut state = mum(seed ^ P0, P1 ^ len);
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        let (low, high) = chunk.split_at(8);
        state = mum(word(low) ^ P1, word(high) ^ state);
    }
    let rest = chunks.remainder();
    let (low, high) = rest.split_at(rest.len().min(8));
    state = mum(word(low) ^ P1, word(high) ^ state);
    // The length enters twice: a key and the same key with trailing zeros differ.
    mum(state ^ P0, len ^ P1)
}

/// The seed of recursion level `depth` derived from a base seed: level 0 hashes the
/// input, level `d` re-aggregates partitions spilled at level `d - 1`.
#[inline]
pub fn seed_at(base: u64, depth: usize) -> u64 {
    mum(base ^ P1, (depth as u64).wrapping_add(1).wrapping_mul(P0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_lengths_change_the_hash() {
        let seed = seed_at(7, 0);
        assert_ne!(hash_bytes(seed, b""), hash_bytes(seed, b"\0"));
        assert_ne!(hash_bytes(seed, b"a"), hash_bytes(seed, b"a\0"));
        assert_ne!(hash_bytes(seed, b"key"), hash_bytes(seed_at(7, 1), b"key"));
        assert_eq!(hash_bytes(seed, b"key"), hash_bytes(seed, b"key"));
        assert_ne!(seed_at(7, 0), seed_at(7, 1));
        assert_ne!(seed_at(7, 0), seed_at(8, 0));
    }

    /// Sequential integer keys (the common case: order keys) spread evenly over the top
    /// bits (partitions), the low bits (buckets) and flip about half the bits per input bit.
    #[test]
    fn sequential_keys_spread_over_partitions_and_buckets() {
        let seed = seed_at(1, 0);
        let mut top = [0u32; 32];
        let mut low = [0u32; 64];
        let n = 64_000u64;
        for i in 0..n {
            let hash = hash_bytes(seed, &i.to_be_bytes());
            top[(hash >> 59) as usize] += 1;
            low[(hash & 63) as usize] += 1;
        }
        let even_top = (n / 32) as u32;
        let even_low = (n / 64) as u32;
        assert!(
            top.iter().all(|&c| c.abs_diff(even_top) < even_top / 5),
            "{top:?}"
        );
        assert!(
            low.iter().all(|&c| c.abs_diff(even_low) < even_low / 5),
            "{low:?}"
        );
        let mut flipped = 0;
        for bit in 0..64 {
            let a = hash_bytes(seed, &12345u64.to_le_bytes());
            let b = hash_bytes(seed, &(12345u64 ^ (1 << bit)).to_le_bytes());
            flipped += (a ^ b).count_ones();
        }
        let average = f64::from(flipped) / 64.0;
        assert!((24.0..40.0).contains(&average), "avalanche {average}");
    }

    /// Keys that collide in their top bits under one seed spread out under the next.
    #[test]
    fn a_new_seed_splits_a_partition_again() {
        let (first, second) = (seed_at(3, 0), seed_at(3, 1));
        let mut counts = [0u32; 8];
        let mut kept = 0;
        for i in 0u32..40_000 {
            let key = i.to_le_bytes();
            if hash_bytes(first, &key) >> 61 == 5 {
                kept += 1;
                counts[(hash_bytes(second, &key) >> 61) as usize] += 1;
            }
        }
        let even = kept / 8;
        assert!(
            counts.iter().all(|&c| c.abs_diff(even) < even / 4),
            "{counts:?}"
        );
    }
}
