//! A small cache of typed accumulators in front of a kernel hash aggregation.
//!
//! ```text
//!   record ─key bytes, hash─▶ slot (home … home+WAYS−1) ─hit─▶ merge(&mut A, value)
//!                                                      └miss─▶ take a free slot, or evict
//!                                                              one: (key, encode(A)) ──▶ kernel table
//! ```
//!
//! The kernel table stores accumulators as serde-fmt bytes, so a fold there decodes the
//! stored accumulator and the new value and re-encodes the result. Most aggregations
//! see few distinct keys at a time — Q1's four groups, the lines of one order arriving
//! together — so a few hundred typed accumulators held as values catch almost every
//! record: a hit costs the key's encoding, a hash and the user's `merge`, no serde.
//! Evicted accumulators (and all of them at the end) go to the kernel table, which
//! merges, spills and emits them as before; the result is the same as without the cache
//! because `merge` is associative and commutative.
//!
//! Only accumulators of a fixed encoded size are cached ([`weir_serde_fmt::fixed_size`]):
//! their values hold no heap data, so the cache's memory is a small constant (slots ×
//! (the accumulator + the key's bytes)) that cannot grow with a hot key's list. When
//! fewer than one record in [`MIN_HIT_PERCENT`] hits after [`PROBATION`] records (keys
//! that all differ, as after a combiner), the cache empties into the table and steps
//! aside.

use weir_kernel::hash::hash_bytes;

use super::operators::{Merge, append_key};
use super::{Data, Key};
use crate::error::Result;

/// Slots in the cache (a power of two).
const SLOTS: usize = 256;
/// Slots a key may occupy, from its home slot on: collisions of a few keys do not evict.
const WAYS: usize = 4;
/// Records looked up before the cache judges its hit rate.
const PROBATION: u64 = 1 << 16;
/// The hit rate, in percent, below which the cache steps aside.
const MIN_HIT_PERCENT: u64 = 10;
/// Seed of the cache's hash (any constant: it never leaves the task).
const SEED: u64 = 0x6772_6f75_7073;

#[derive(Debug)]
struct Slot<A> {
    hash: u64,
    key: Vec<u8>,
    acc: Option<A>,
}

/// Typed accumulators for the most recent keys. See the module documentation.
#[derive(Debug)]
pub(crate) struct GroupCache<A> {
    slots: Vec<Slot<A>>,
    key: Vec<u8>,
    lookups: u64,
    hits: u64,
    victim: usize,
    on: bool,
}

impl<A: Data> GroupCache<A> {
    /// A cache for `A`, or `None` when `A`'s values differ in encoded size (they may hold
    /// heap data the budget cannot bound).
    pub(crate) fn for_type() -> Option<GroupCache<A>> {
        weir_serde_fmt::fixed_size::<A>()?;
        Some(GroupCache {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    hash: 0,
                    key: Vec::new(),
                    acc: None,
                })
                .collect(),
            key: Vec::new(),
            lookups: 0,
            hits: 0,
            victim: 0,
            on: true,
        })
    }

    /// Folds `value` into the cached accumulator of `key`, making room by handing an
    /// accumulator to `evict` (its key's bytes and value) when the key's slots are taken.
    /// Returns `value` untouched when the cache has stepped aside: the caller then folds
    /// it into the table itself.
    ///
    /// # Errors
    ///
    /// What `evict` fails with.
    #[inline]
    pub(crate) fn fold<K: Key>(
        &mut self,
        key: &K,
        value: A,
        merge: &Merge<A>,
        mut evict: impl FnMut(&[u8], A) -> Result<()>,
    ) -> Result<Option<A>> {
        if !self.on {
            return Ok(Some(value));
        }
        self.key.clear();
        append_key(&mut self.key, key);
        let hash = hash_bytes(SEED, &self.key);
        self.lookups += 1;
        let home = hash as usize;
        let mut free = None;
        for way in 0..WAYS {
            let index = (home + way) & (SLOTS - 1);
            let slot = &mut self.slots[index];
            match &mut slot.acc {
                Some(acc) if slot.hash == hash && slot.key == self.key => {
                    merge(acc, value);
                    self.hits += 1;
                    return Ok(None);
                }
                Some(_) => {}
                None => {
                    free.get_or_insert(index);
                }
            }
        }
        let index = match free {
            Some(index) => index,
            None => {
                self.victim = (self.victim + 1) % WAYS;
                let index = (home + self.victim) & (SLOTS - 1);
                let slot = &mut self.slots[index];
                if let Some(acc) = slot.acc.take() {
                    evict(&slot.key, acc)?;
                }
                index
            }
        };
        let slot = &mut self.slots[index];
        std::mem::swap(&mut slot.key, &mut self.key);
        slot.hash = hash;
        slot.acc = Some(value);
        if self.lookups == PROBATION && self.hits * 100 < self.lookups * MIN_HIT_PERCENT {
            self.on = false;
            self.flush(evict)?;
        }
        Ok(None)
    }

    /// Hands every cached accumulator to `evict`, leaving the cache empty.
    ///
    /// # Errors
    ///
    /// What `evict` fails with.
    pub(crate) fn flush(&mut self, mut evict: impl FnMut(&[u8], A) -> Result<()>) -> Result<()> {
        for slot in &mut self.slots {
            if let Some(acc) = slot.acc.take() {
                evict(&slot.key, acc)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    /// Each key's count and sum.
    type Groups = HashMap<u64, (u64, u64)>;

    /// Folds `keys` (each with value 1 and its own number) through a cache whose
    /// evictions, flush and returned values land in a map; returns it and the cache.
    fn through_cache(keys: &[u64]) -> (Groups, GroupCache<(u64, u64)>) {
        let merge: Merge<(u64, u64)> = Arc::new(|acc, value| {
            acc.0 += value.0;
            acc.1 += value.1;
        });
        let mut table = Groups::new();
        let mut add = |key: u64, (n, sum): (u64, u64)| {
            let entry = table.entry(key).or_default();
            entry.0 += n;
            entry.1 += sum;
        };
        let mut cache = GroupCache::for_type().expect("a fixed-size accumulator");
        for &key in keys {
            let evict = |bytes: &[u8], acc| {
                add(weir_serde_fmt::key::from_slice(bytes).expect("a key"), acc);
                Ok(())
            };
            if let Some(value) = cache.fold(&key, (1, key), &merge, evict).expect("fold") {
                add(key, value);
            }
        }
        cache
            .flush(|bytes, acc| {
                add(weir_serde_fmt::key::from_slice(bytes).expect("a key"), acc);
                Ok(())
            })
            .expect("flush");
        (table, cache)
    }

    fn model(keys: &[u64]) -> Groups {
        let mut expected = Groups::new();
        for &key in keys {
            let entry = expected.entry(key).or_default();
            entry.0 += 1;
            entry.1 += key;
        }
        expected
    }

    #[test]
    fn runs_of_keys_hit_and_evicted_groups_are_not_lost() {
        // 20,000 keys in runs of 4, revisited in a second pass: far more keys than slots.
        let keys: Vec<u64> = (0..2)
            .flat_map(|_| (0..20_000u64).flat_map(|k| [k * 31; 4]))
            .collect();
        let (table, cache) = through_cache(&keys);
        assert_eq!(table, model(&keys));
        assert!(cache.on, "three hits in four keep the cache on");
        assert!(cache.hits * 4 >= cache.lookups * 3 - 4);
    }

    /// The home slot of a key.
    fn home(key: u64) -> usize {
        let mut bytes = Vec::new();
        append_key(&mut bytes, &key);
        hash_bytes(SEED, &bytes) as usize & (SLOTS - 1)
    }

    #[test]
    fn a_few_keys_hit_and_more_keys_than_ways_on_one_home_still_add_up() {
        let keys: Vec<u64> = (0..100_000u64).map(|i| i % 6).collect();
        let (table, cache) = through_cache(&keys);
        assert_eq!(table, model(&keys));
        // Six keys over 256 slots: only first sightings miss unless five share a window.
        assert!(cache.lookups - cache.hits <= 6 + WAYS as u64);

        // WAYS + 2 keys with one home slot: they evict each other, nothing is lost.
        let same_home: Vec<u64> = (0..)
            .filter(|&key| home(key) == home(0))
            .take(WAYS + 2)
            .collect();
        let keys: Vec<u64> = (0..50_000)
            .map(|i| same_home[i % same_home.len()])
            .collect();
        let (table, _) = through_cache(&keys);
        assert_eq!(table, model(&keys));
    }

    #[test]
    fn distinct_keys_make_the_cache_step_aside() {
        let keys: Vec<u64> = (0..3 * PROBATION)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .collect();
        let (table, cache) = through_cache(&keys);
        assert_eq!(table, model(&keys));
        assert!(!cache.on);
        assert_eq!(cache.lookups, PROBATION);
    }

    #[test]
    fn variable_size_accumulators_are_not_cached() {
        assert!(GroupCache::<(u64, String)>::for_type().is_none());
        assert!(GroupCache::<Vec<u64>>::for_type().is_none());
        assert!(GroupCache::<[i64; 3]>::for_type().is_some());
    }
}
