//! `NetworkBufferPool`: the network memory of a process, a fixed grant of segments taken
//! once at startup and lent to [`LocalBufferPool`]s.
//!
//! The grant never grows. Every local pool is guaranteed its `min`; the grant refuses a new
//! pool whose `min` does not fit beside the others' ([`NetError::InsufficientBuffers`]).
//! The excess, the segments no pool is guaranteed, is shared out whenever a pool is created
//! or dropped (redistribution): each pool's size becomes its `min` plus a share of the
//! excess proportional to `max - min`, the shares adding up exactly (cumulative rounding).
//! A pool fetches segments lazily up to its size; a pool above its new size returns its free
//! segments at once and the lent ones as they come back.
//!
//! ```text
//!   total 16, pools (min 3, max 8) and (min 2, max 2 + 10):  excess 11, capacity 5 + 10
//!   sizes: 3 + 11·5/15 = 6 (rounded: 3 + 3)   and   2 + 11 − 3 = 10 … exact sum 16
//! ```

use std::fmt;
use std::sync::{Arc, Weak};
use std::task::Waker;

use weir_kernel::memory::{MemorySegment, Owner};

use super::local_buffer_pool::{LocalBufferPool, LocalPoolSpec, LocalShared};
use crate::error::{NetError, Result};
use crate::sync::{Mutex, MutexGuard};

/// The fixed grant of network segments. Cheap to clone: clones share the grant.
#[derive(Clone)]
pub struct NetworkBufferPool {
    shared: Arc<GlobalShared>,
}

/// The grant, shared by the pool handles and every local pool.
pub(crate) struct GlobalShared {
    total: usize,
    segment_size: usize,
    state: Mutex<GlobalState>,
    // Held while pools are created, dropped and resized, so sizes are computed from one
    // consistent set of pools. Lock order: factory, then a local pool, then the grant.
    factory: Mutex<Vec<Weak<LocalShared>>>,
}

struct GlobalState {
    // At most `total` segments.
    free: Vec<MemorySegment>,
    // Local pools waiting for a segment to come back, woken on the next return.
    waiting: Vec<Waker>,
    // The sum of the live pools' minimums: at most `total`.
    required: usize,
}

impl NetworkBufferPool {
    /// Takes `segments` segments from `owner` now, all or none.
    ///
    /// # Errors
    ///
    /// [`NetError::Kernel`] with the kernel's budget error (requested and available bytes)
    /// when the budget cannot grant them.
    ///
    /// # Panics
    ///
    /// When `segments` is 0: a network stack without buffers is a configuration bug.
    pub fn new(owner: &Owner, segments: usize) -> Result<NetworkBufferPool> {
        assert!(
            segments > 0,
            "a network buffer pool needs at least one segment"
        );
        let free = owner.allocate(segments)?;
        Ok(NetworkBufferPool {
            shared: Arc::new(GlobalShared {
                total: segments,
                segment_size: owner.segment_size(),
                state: Mutex::new(GlobalState {
                    free,
                    waiting: Vec::new(),
                    required: 0,
                }),
                factory: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A local pool guaranteed `min` segments that may grow to `max` while the grant has
    /// excess: shorthand for [`create_pool`](Self::create_pool) without per-subpartition
    /// caps or overdraft.
    ///
    /// # Errors
    ///
    /// As [`create_pool`](Self::create_pool).
    ///
    /// # Panics
    ///
    /// As [`create_pool`](Self::create_pool).
    pub fn create_local_pool(&self, min: usize, max: usize) -> Result<LocalBufferPool> {
        self.create_pool(LocalPoolSpec::new(min, max))
    }

    /// A local pool sized and capped by `spec`; the sizes of every pool are then
    /// redistributed.
    ///
    /// # Errors
    ///
    /// [`NetError::InsufficientBuffers`] when `spec.min` does not fit beside the minimums
    /// of the live pools.
    ///
    /// # Panics
    ///
    /// When the spec is inconsistent (see [`LocalPoolSpec`]): a sizing bug.
    pub fn create_pool(&self, spec: LocalPoolSpec) -> Result<LocalBufferPool> {
        spec.assert_consistent();
        let mut pools = self.shared.lock_factory();
        {
            let mut state = self.shared.lock();
            let available = self.shared.total - state.required;
            if available < spec.min {
                return Err(NetError::InsufficientBuffers {
                    required: spec.min,
                    available,
                    total: self.shared.total,
                });
            }
            state.required += spec.min;
        }
        let pool = LocalBufferPool::new(Arc::clone(&self.shared), spec);
        pools.push(pool.downgrade());
        self.shared.redistribute(&mut pools);
        Ok(pool)
    }

    /// Takes `count` segments out of the grant for one owner's exclusive use (a remote
    /// input channel's exclusive buffers): counted as required, like a pool's minimum, so
    /// the others are resized around them. Segments lent to pools above their new size may
    /// have to come back first; this waits for them up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`NetError::InsufficientBuffers`] when `count` does not fit beside the required
    /// segments, or not all came back within `timeout` (nothing is kept then).
    pub fn take_exclusive(
        &self,
        count: usize,
        timeout: std::time::Duration,
    ) -> Result<Vec<MemorySegment>> {
        {
            let mut pools = self.shared.lock_factory();
            {
                let mut state = self.shared.lock();
                let available = self.shared.total - state.required;
                if available < count {
                    return Err(NetError::InsufficientBuffers {
                        required: count,
                        available,
                        total: self.shared.total,
                    });
                }
                state.required += count;
            }
            self.shared.redistribute(&mut pools);
        }
        let deadline = std::time::Instant::now() + timeout;
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut taken = Vec::with_capacity(count);
        while taken.len() < count {
            match self.shared.take_or_wait(Some(&waker)) {
                Some(segment) => taken.push(segment),
                None => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        let available = taken.len();
                        self.give_back_exclusive(taken, count);
                        return Err(NetError::InsufficientBuffers {
                            required: count,
                            available,
                            total: self.shared.total,
                        });
                    }
                    std::thread::park_timeout(deadline - now);
                }
            }
        }
        Ok(taken)
    }

    /// Returns exclusive segments taken with [`take_exclusive`](Self::take_exclusive):
    /// `segments` now (any number, the rest may follow with
    /// [`give_back`](Self::give_back)) and `count` off the required total.
    pub fn give_back_exclusive(&self, segments: Vec<MemorySegment>, count: usize) {
        self.shared.give_back(segments);
        self.shared.pool_dropped(count);
    }

    /// Returns segments to the grant (an exclusive segment that came back after its owner
    /// gave the rest back).
    pub fn give_back(&self, segments: Vec<MemorySegment>) {
        self.shared.give_back(segments);
    }

    /// Segments in the grant.
    pub fn total_segments(&self) -> usize {
        self.shared.total
    }

    /// Segments not lent to any local pool now.
    pub fn free_segments(&self) -> usize {
        self.shared.lock().free.len()
    }

    /// The sum of the live local pools' guaranteed minimums.
    pub fn required_segments(&self) -> usize {
        self.shared.lock().required
    }

    /// Bytes per segment.
    pub fn segment_size(&self) -> usize {
        self.shared.segment_size
    }
}

impl GlobalShared {
    fn lock(&self) -> MutexGuard<'_, GlobalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_factory(&self) -> MutexGuard<'_, Vec<Weak<LocalShared>>> {
        self.factory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free segment, or `None` after registering `waker` to be woken when one returns.
    /// The check and the registration happen under one lock, so a return between them
    /// cannot be missed.
    pub(crate) fn take_or_wait(&self, waker: Option<&Waker>) -> Option<MemorySegment> {
        let mut state = self.lock();
        let segment = state.free.pop();
        if segment.is_none()
            && let Some(waker) = waker
            && !state.waiting.iter().any(|w| w.will_wake(waker))
        {
            state.waiting.push(waker.clone());
        }
        segment
    }

    /// Whether a segment is free now.
    pub(crate) fn has_free(&self) -> bool {
        !self.lock().free.is_empty()
    }

    /// Takes `segments` back and wakes every local pool waiting for one.
    pub(crate) fn give_back(&self, segments: Vec<MemorySegment>) {
        if segments.is_empty() {
            return;
        }
        let waiting = {
            let mut state = self.lock();
            state.free.extend(segments);
            assert!(
                state.free.len() <= self.total,
                "more segments came back than were granted"
            );
            std::mem::take(&mut state.waiting)
        };
        // Woken outside the lock: a waker may run code that requests a segment.
        for waker in waiting {
            waker.wake();
        }
    }

    /// A local pool is gone: its minimum is no longer required, and the others share the
    /// excess it leaves.
    pub(crate) fn pool_dropped(&self, min: usize) {
        let mut pools = self.lock_factory();
        self.lock().required -= min;
        self.redistribute(&mut pools);
    }

    /// Sets every live pool's size: its minimum plus its share of the excess.
    fn redistribute(&self, pools: &mut Vec<Weak<LocalShared>>) {
        // A dropped pool may live on in the segments it lent; it no longer counts.
        let live: Vec<Arc<LocalShared>> = pools
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|pool| !pool.is_destroyed())
            .collect();
        *pools = live.iter().map(Arc::downgrade).collect();
        let required = self.lock().required;
        let sizes = pool_sizes(
            self.total - required,
            live.iter().map(|pool| (pool.min(), pool.max())),
        );
        for (pool, size) in live.iter().zip(sizes) {
            // Each pool returns its free excess to the grant itself (local lock, then the
            // grant's: the order every request takes).
            pool.set_size(size);
        }
    }
}

/// The size of each pool `(min, max)` given `excess` segments beyond the minimums: `min`
/// plus a share proportional to `max - min` (each share capped at `excess`), with
/// cumulative rounding so that the shares add up to `excess` exactly, or every pool gets
/// its `max` when the excess covers them all.
fn pool_sizes(excess: usize, pools: impl Iterator<Item = (usize, usize)> + Clone) -> Vec<usize> {
    let room = |(min, max): (usize, usize)| (max - min).min(excess);
    let capacity: u128 = pools.clone().map(|pool| room(pool) as u128).sum();
    if capacity <= excess as u128 {
        return pools
            .map(|(min, max)| min + (max - min).min(excess))
            .collect();
    }
    let mut cumulative = 0u128;
    let mut given = 0usize;
    pools
        .map(|pool| {
            cumulative += room(pool) as u128;
            let until_here = usize::try_from(excess as u128 * cumulative / capacity)
                .expect("a share of the excess fits");
            let share = until_here - given;
            given = until_here;
            pool.0 + share
        })
        .collect()
}

/// Unparks a thread waiting for exclusive segments.
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl fmt::Debug for NetworkBufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkBufferPool")
            .field("total_segments", &self.total_segments())
            .field("free_segments", &self.free_segments())
            .field("required_segments", &self.required_segments())
            .field("segment_size", &self.segment_size())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::buffer::test_support::manager;

    #[test]
    fn the_grant_is_taken_once_at_startup() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let pool = NetworkBufferPool::new(&owner, 6).unwrap();
        assert_eq!(owner.segments(), 6);
        assert_eq!(pool.total_segments(), 6);
        assert_eq!(pool.free_segments(), 6);
        assert_eq!(pool.segment_size(), 4096);
        drop(pool);
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_grant_beyond_the_budget_is_a_kernel_error_with_the_numbers() {
        let manager = manager(4);
        let owner = manager.owner("network");
        let error = NetworkBufferPool::new(&owner, 5).unwrap_err();
        assert!(
            matches!(&error, NetError::Kernel(kernel) if kernel.is_budget_exceeded()),
            "{error}"
        );
        assert!(error.to_string().contains("5 segments"), "{error}");
        assert_eq!(owner.segments(), 0, "all or none");
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_local_pool_whose_minimum_does_not_fit_beside_the_others_is_refused() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let pool = NetworkBufferPool::new(&owner, 8).unwrap();
        let first = pool.create_local_pool(5, 6).unwrap();
        let error = pool.create_local_pool(4, 4).unwrap_err();
        assert!(matches!(
            error,
            NetError::InsufficientBuffers {
                required: 4,
                available: 3,
                total: 8
            }
        ));
        assert_eq!(
            error.to_string(),
            "insufficient network buffers: a local pool requires 4 segments, 3 of 8 available"
        );
        drop(first);
        assert_eq!(pool.required_segments(), 0);
        let second = pool.create_local_pool(4, 4).unwrap();
        drop((second, pool));
        manager.leak_check().unwrap();
    }

    #[test]
    fn exclusive_segments_are_required_and_shrink_the_pools() {
        let manager = manager(6);
        let owner = manager.owner("network");
        let grant = NetworkBufferPool::new(&owner, 6).unwrap();
        let pool = grant.create_local_pool(1, 6).unwrap();
        assert_eq!(pool.size(), 6);
        let lent: Vec<_> = (0..6).map(|_| pool.try_request().unwrap()).collect();
        let waiting = {
            let grant = grant.clone();
            std::thread::spawn(move || grant.take_exclusive(4, Duration::from_secs(10)))
        };
        // The pool shrinks to 2; the exclusive taker waits for 4 segments to come back.
        std::thread::sleep(Duration::from_millis(20));
        drop(lent);
        let exclusive = waiting.join().unwrap().unwrap();
        assert_eq!(exclusive.len(), 4);
        assert_eq!(pool.size(), 2);
        assert_eq!(grant.required_segments(), 5);
        let error = grant.take_exclusive(2, Duration::ZERO).unwrap_err();
        assert!(matches!(
            error,
            NetError::InsufficientBuffers {
                required: 2,
                available: 1,
                ..
            }
        ));
        grant.give_back_exclusive(exclusive, 4);
        assert_eq!(pool.size(), 6);
        drop((pool, grant));
        manager.leak_check().unwrap();
    }

    #[test]
    fn sizes_share_the_excess_in_proportion_and_add_up_exactly() {
        // Excess 11 over capacities 5 and 10.
        assert_eq!(pool_sizes(11, [(3, 8), (2, 12)].into_iter()), [6, 10]);
        // Enough excess for everyone: every pool at its max.
        assert_eq!(pool_sizes(20, [(3, 8), (2, 12)].into_iter()), [8, 12]);
        // No excess: every pool at its min.
        assert_eq!(pool_sizes(0, [(3, 8), (2, 12)].into_iter()), [3, 2]);
        // Unbounded pools are capped at the excess, and three equal shares of 10 add up.
        let sizes = pool_sizes(10, [(1, usize::MAX), (1, usize::MAX), (1, 4)].into_iter());
        assert_eq!(sizes.iter().sum::<usize>(), 13, "{sizes:?}");
        assert!(sizes[2] <= 4, "{sizes:?}");
    }

    #[test]
    fn creating_and_dropping_pools_redistributes_the_excess() {
        let manager = manager(10);
        let owner = manager.owner("network");
        let grant = NetworkBufferPool::new(&owner, 10).unwrap();
        let first = grant.create_local_pool(2, 10).unwrap();
        assert_eq!(first.size(), 10, "alone, the pool may use the whole grant");
        let lent: Vec<_> = (0..8).map(|_| first.try_request().unwrap()).collect();
        let second = grant.create_local_pool(4, 10).unwrap();
        // Excess 4, shared 4 : 4 by the room above each minimum (capped at the excess).
        assert_eq!((first.size(), second.size()), (4, 6));
        assert_eq!(first.held_segments(), 8, "lent segments come back later");
        let taken: Vec<_> = (0..2).map(|_| second.try_request().unwrap()).collect();
        assert!(second.try_request().is_none(), "the grant is empty");
        drop(lent);
        assert_eq!(
            first.held_segments(),
            4,
            "four above the new size went back"
        );
        assert_eq!(first.free_segments(), 4);
        let more: Vec<_> = (0..4).map(|_| second.try_request().unwrap()).collect();
        drop(second);
        assert_eq!(first.size(), 10, "the dropped pool's share came back");
        drop((taken, more, first, grant));
        manager.leak_check().unwrap();
    }
}
