//! Sort index entries and the radix sort over them.
//!
//! ```text
//!   IndexEntry (24 bytes)
//!   [ prefix[0]: key bytes 0..8 as BE u64 | prefix[1]: key bytes 8..16 | tail ]
//!   tail = record address (low 48 bits) | min(key length, 0xFFFF) << 48
//! ```
//!
//! Sorting moves entries only, never records. Entries compare by their two prefix words;
//! only when those are equal do we look further: if either key fits in the prefix, the
//! shorter key is the smaller (zero padding makes it a prefix of the other), and only when
//! both keys are longer than the prefix are the full keys compared (memcmp, no
//! deserialization).
//!
//! The sort is an in-place MSD radix sort (American flag sort) on the prefix bytes that
//! hands ranges of at most [`SORT_RADIX_THRESHOLD`] entries to `sort_unstable_by`.

use std::cmp::Ordering;

use crate::constants::{SORT_KEY_PREFIX_SIZE, SORT_RADIX_THRESHOLD};

/// Addresses must fit below the key-length bits.
pub(crate) const ADDRESS_BITS: u32 = 48;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;
const KEY_LEN_SATURATED: u64 = 0xFFFF;

/// One record in the sort index. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    prefix: [u64; 2],
    tail: u64,
}

impl IndexEntry {
    /// The entry for the record at `address` whose key is `key`.
    #[inline]
    pub(crate) fn new(key: &[u8], address: u64) -> IndexEntry {
        assert!(
            address <= ADDRESS_MASK,
            "record address {address} beyond 2^48"
        );
        let mut padded = [0u8; SORT_KEY_PREFIX_SIZE];
        let n = key.len().min(SORT_KEY_PREFIX_SIZE);
        padded[..n].copy_from_slice(&key[..n]);
        let (high, low) = padded.split_at(8);
        let key_len = (key.len() as u64).min(KEY_LEN_SATURATED);
        IndexEntry {
            prefix: [
                u64::from_be_bytes(high.try_into().expect("8 bytes")),
                u64::from_be_bytes(low.try_into().expect("8 bytes")),
            ],
            tail: address | key_len << ADDRESS_BITS,
        }
    }

    /// The record's address in the record area.
    #[inline]
    pub(crate) fn address(&self) -> u64 {
        self.tail & ADDRESS_MASK
    }

    #[inline]
    fn key_len(&self) -> u64 {
        self.tail >> ADDRESS_BITS
    }

    /// Byte `depth` (0..16) of the key prefix.
    #[inline]
    fn byte(&self, depth: usize) -> usize {
        let word = self.prefix[depth / 8];
        ((word >> (56 - 8 * (depth % 8))) & 0xff) as usize
    }

    /// Compares what the entries alone can tell; `None` when the full keys must decide.
    #[inline]
    pub(crate) fn compare_prefix(&self, other: &IndexEntry) -> Option<Ordering> {
        match self.prefix.cmp(&other.prefix) {
            Ordering::Equal => {
                let fits = SORT_KEY_PREFIX_SIZE as u64;
                if self.key_len() <= fits || other.key_len() <= fits {
                    Some(self.key_len().cmp(&other.key_len()))
                } else {
                    None
                }
            }
            unequal => Some(unequal),
        }
    }
}

/// Sorts `entries` by key. `full_compare` decides between entries whose prefixes tie and
/// whose keys are both longer than the prefix.
pub(crate) fn sort_entries<F>(entries: &mut [IndexEntry], full_compare: &mut F)
where
    F: FnMut(&IndexEntry, &IndexEntry) -> Ordering,
{
    radix_sort(entries, 0, full_compare);
}

fn compare<F>(a: &IndexEntry, b: &IndexEntry, full_compare: &mut F) -> Ordering
where
    F: FnMut(&IndexEntry, &IndexEntry) -> Ordering,
{
    a.compare_prefix(b).unwrap_or_else(|| full_compare(a, b))
}

fn radix_sort<F>(entries: &mut [IndexEntry], depth: usize, full_compare: &mut F)
where
    F: FnMut(&IndexEntry, &IndexEntry) -> Ordering,
{
    if entries.len() <= SORT_RADIX_THRESHOLD || depth == SORT_KEY_PREFIX_SIZE {
        entries.sort_unstable_by(|a, b| compare(a, b, full_compare));
        return;
    }
    let mut counts = [0usize; 256];
    for entry in entries.iter() {
        counts[entry.byte(depth)] += 1;
    }
    if counts.contains(&entries.len()) {
        // Every entry shares this byte: nothing to move, look at the next one.
        return radix_sort(entries, depth + 1, full_compare);
    }
    let mut heads = [0usize; 256];
    let mut tails = [0usize; 256];
    let mut sum = 0;
    for bucket in 0..256 {
        heads[bucket] = sum;
        sum += counts[bucket];
        tails[bucket] = sum;
    }
    permute(entries, depth, &mut heads, &tails);
    let mut start = 0;
    for &end in &tails {
        if end - start > 1 {
            radix_sort(&mut entries[start..end], depth + 1, full_compare);
        }
        start = end;
    }
}

/// American flag sort's in-place permutation: swap each entry into its bucket.
fn permute(
    entries: &mut [IndexEntry],
    depth: usize,
    heads: &mut [usize; 256],
    tails: &[usize; 256],
) {
    for bucket in 0..256 {
        while heads[bucket] < tails[bucket] {
            let target = entries[heads[bucket]].byte(depth);
            if target == bucket {
                heads[bucket] += 1;
            } else {
                entries.swap(heads[bucket], heads[target]);
                heads[target] += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn check(keys: Vec<Vec<u8>>) {
        let mut entries: Vec<IndexEntry> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| IndexEntry::new(k, i as u64))
            .collect();
        sort_entries(&mut entries, &mut |a, b| {
            keys[a.address() as usize].cmp(&keys[b.address() as usize])
        });
        let sorted: Vec<&Vec<u8>> = entries
            .iter()
            .map(|e| &keys[e.address() as usize])
            .collect();
        let mut expected: Vec<&Vec<u8>> = keys.iter().collect();
        expected.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn sorts_random_keys_of_every_length() {
        let mut state = 7;
        for max_len in [0usize, 1, 8, 10, 16, 17, 40] {
            let keys = (0..5000)
                .map(|_| {
                    let len = if max_len == 0 {
                        0
                    } else {
                        splitmix(&mut state) as usize % (max_len + 1)
                    };
                    // Few distinct bytes, so prefixes tie often.
                    (0..len).map(|_| (splitmix(&mut state) % 3) as u8).collect()
                })
                .collect();
            check(keys);
        }
    }

    #[test]
    fn sorts_shared_prefixes_and_zero_padding() {
        let mut keys = vec![
            b"ab".to_vec(),
            b"ab\0".to_vec(),
            b"ab\0\0".to_vec(),
            b"a".to_vec(),
            vec![],
        ];
        let long = vec![9u8; 20];
        for i in 0..3000u32 {
            let mut key = long.clone();
            key.extend_from_slice(&(i % 997).to_be_bytes());
            keys.push(key);
        }
        check(keys);
    }

    #[test]
    fn presorted_and_reversed_and_equal() {
        check((0..4000u32).map(|i| i.to_be_bytes().to_vec()).collect());
        check(
            (0..4000u32)
                .rev()
                .map(|i| i.to_be_bytes().to_vec())
                .collect(),
        );
        check(vec![b"same".to_vec(); 3000]);
    }
}
