//! `NetworkBufferPool`: the network memory of a process, a fixed grant of segments taken
//! once at startup and lent to [`LocalBufferPool`]s.
//!
//! The grant never grows: when it is used up, a local pool gets `None` and waits for a
//! segment to come back (backpressure), and a new local pool whose minimum does not fit is
//! refused with [`NetError::InsufficientBuffers`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use weir_kernel::memory::{MemorySegment, Owner};

use super::local_buffer_pool::LocalBufferPool;
use crate::error::{NetError, Result};

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
}

struct GlobalState {
    // At most `total` segments.
    free: Vec<MemorySegment>,
    // Local pools waiting for a segment to come back, woken on the next return.
    waiting: Vec<Waker>,
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
                }),
            }),
        })
    }

    /// A local pool that holds `min` segments for its whole life and may borrow more, up
    /// to `max`, while the grant has them free.
    ///
    /// # Errors
    ///
    /// [`NetError::InsufficientBuffers`] when fewer than `min` segments are free now.
    ///
    /// # Panics
    ///
    /// When `min` is 0 or `max < min` (a sizing bug).
    pub fn create_local_pool(&self, min: usize, max: usize) -> Result<LocalBufferPool> {
        assert!(min > 0, "a local buffer pool needs at least one segment");
        assert!(max >= min, "local buffer pool max {max} below min {min}");
        let segments = {
            let mut state = self.shared.lock();
            let available = state.free.len();
            if available < min {
                return Err(NetError::InsufficientBuffers {
                    required: min,
                    available,
                    total: self.shared.total,
                });
            }
            state.free.split_off(available - min)
        };
        Ok(LocalBufferPool::new(
            Arc::clone(&self.shared),
            segments,
            max,
        ))
    }

    /// Segments in the grant.
    pub fn total_segments(&self) -> usize {
        self.shared.total
    }

    /// Segments not lent to any local pool now.
    pub fn free_segments(&self) -> usize {
        self.shared.lock().free.len()
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

    /// Takes `segment` back and wakes every local pool waiting for one.
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
}

impl fmt::Debug for NetworkBufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkBufferPool")
            .field("total_segments", &self.total_segments())
            .field("free_segments", &self.free_segments())
            .field("segment_size", &self.segment_size())
            .finish()
    }
}

#[cfg(test)]
mod tests {
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
    fn a_local_pool_whose_minimum_does_not_fit_is_refused() {
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
        assert_eq!(pool.free_segments(), 8);
        let second = pool.create_local_pool(4, 4).unwrap();
        drop((second, pool));
        manager.leak_check().unwrap();
    }
}
