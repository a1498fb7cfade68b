//! `LocalBufferPool`: the segments of one result partition or one input gate, lent out
//! one at a time, between a guaranteed `min` and a `max`.
//!
//! `try_request` answers `None` when no segment is free (expected pressure: the caller
//! waits, which is backpressure). `poll_request` does the same but registers a [`Waker`]
//! that is woken when a request may succeed. The check and the registration happen under
//! the same lock a returning segment takes, so a wake-up cannot be lost between them.
//!
//! ```text
//!   request: local free list ──empty──▶ network pool (while held < max) ──empty──▶ None
//!   return:  held ≤ min ──▶ local free list      held > min ──▶ network pool
//!            (either way, local waiters are woken: a slot or a segment opened up)
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use weir_kernel::memory::MemorySegment;

use super::network_buffer_pool::GlobalShared;
use super::pooled_segment::PooledSegment;
use crate::buffer::Recycler;

/// A pool of segments for one partition or gate. Dropping it returns its free segments to
/// the [`NetworkBufferPool`](super::NetworkBufferPool); segments still lent out go there
/// when they come back.
pub struct LocalBufferPool {
    shared: Arc<LocalShared>,
}

/// The pool's state, shared with the segments it lent (as their recycler).
struct LocalShared {
    global: Arc<GlobalShared>,
    min: usize,
    max: usize,
    state: Mutex<LocalState>,
}

struct LocalState {
    // Free segments; `free.len() <= held`.
    free: Vec<MemorySegment>,
    // Segments this pool holds, free or lent: `held <= max`, and `held >= min` while the
    // pool lives.
    held: usize,
    // Requesters to wake when a segment comes back.
    waiting: Vec<Waker>,
    // The pool handle dropped: every returning segment goes to the network pool.
    destroyed: bool,
}

impl LocalBufferPool {
    pub(super) fn new(
        global: Arc<GlobalShared>,
        segments: Vec<MemorySegment>,
        max: usize,
    ) -> LocalBufferPool {
        let min = segments.len();
        LocalBufferPool {
            shared: Arc::new(LocalShared {
                global,
                min,
                max,
                state: Mutex::new(LocalState {
                    free: segments,
                    held: min,
                    waiting: Vec::new(),
                    destroyed: false,
                }),
            }),
        }
    }

    /// A free segment, or `None` when none is free and the pool may not (or cannot) borrow
    /// one more from the network pool.
    pub fn try_request(&self) -> Option<PooledSegment> {
        self.request(None)
    }

    /// As [`try_request`](Self::try_request), but on `None` `waker` is woken when a
    /// segment may be available (then ask again: another requester may win it).
    pub fn poll_request(&self, waker: &Waker) -> Option<PooledSegment> {
        self.request(Some(waker))
    }

    fn request(&self, waker: Option<&Waker>) -> Option<PooledSegment> {
        let shared = &self.shared;
        let mut state = shared.lock();
        let segment = match state.free.pop() {
            Some(segment) => Some(segment),
            // Lock order: local, then global (never the reverse).
            None if state.held < shared.max => {
                let segment = shared.global.take_or_wait(waker);
                state.held += usize::from(segment.is_some());
                segment
            }
            None => None,
        };
        if segment.is_none()
            && let Some(waker) = waker
            && !state.waiting.iter().any(|w| w.will_wake(waker))
        {
            state.waiting.push(waker.clone());
        }
        drop(state);
        let recycler: Arc<dyn Recycler> = Arc::clone(&self.shared) as Arc<dyn Recycler>;
        segment.map(|segment| PooledSegment::new(segment, recycler))
    }

    /// The guaranteed number of segments.
    pub fn min_segments(&self) -> usize {
        self.shared.min
    }

    /// The most segments the pool may hold.
    pub fn max_segments(&self) -> usize {
        self.shared.max
    }

    /// Segments the pool holds now, free or lent.
    pub fn held_segments(&self) -> usize {
        self.shared.lock().held
    }

    /// Segments free in the pool now.
    pub fn free_segments(&self) -> usize {
        self.shared.lock().free.len()
    }
}

impl LocalShared {
    fn lock(&self) -> MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Recycler for LocalShared {
    fn recycle(&self, segment: MemorySegment) {
        let (to_global, waiting) = {
            let mut state = self.lock();
            assert!(
                state.held > state.free.len(),
                "a segment came back that was not lent"
            );
            let to_global = if state.destroyed || state.held > self.min {
                state.held -= 1;
                Some(segment)
            } else {
                state.free.push(segment);
                None
            };
            (to_global, std::mem::take(&mut state.waiting))
        };
        // Outside the local lock: the network pool wakes its own waiters, and a woken
        // requester may come straight back into this pool.
        self.global.give_back(to_global.into_iter().collect());
        for waker in waiting {
            waker.wake();
        }
    }
}

impl Drop for LocalBufferPool {
    fn drop(&mut self) {
        let free = {
            let mut state = self.shared.lock();
            state.destroyed = true;
            state.waiting.clear();
            let free = std::mem::take(&mut state.free);
            state.held -= free.len();
            free
        };
        self.shared.global.give_back(free);
    }
}

impl fmt::Debug for LocalShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("LocalBufferPool")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("held", &state.held)
            .field("free", &state.free.len())
            .field("destroyed", &state.destroyed)
            .finish()
    }
}

impl fmt::Debug for LocalBufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::DataType;
    use crate::buffer::test_support::{CountingWaker, manager};
    use crate::pool::NetworkBufferPool;

    #[test]
    fn lends_min_then_borrows_up_to_max_then_answers_none() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 8).unwrap();
        let local = global.create_local_pool(2, 3).unwrap();
        assert_eq!((local.min_segments(), local.max_segments()), (2, 3));
        assert_eq!(global.free_segments(), 6);
        let lent: Vec<PooledSegment> = (0..3).map(|_| local.try_request().unwrap()).collect();
        assert_eq!(local.held_segments(), 3);
        assert_eq!(global.free_segments(), 5);
        assert!(local.try_request().is_none(), "at max");
        drop(lent);
        assert_eq!(local.held_segments(), 2, "the one above min went back");
        assert_eq!(local.free_segments(), 2);
        assert_eq!(global.free_segments(), 6);
        drop((local, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn buffers_and_builders_come_home_to_the_local_pool() {
        let manager = manager(2);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let local = global.create_local_pool(2, 2).unwrap();
        let mut segment = local.try_request().unwrap();
        assert_eq!(segment.size(), 4096);
        segment.segment_mut().put_bytes(0, b"event");
        let event = segment.into_buffer(5, DataType::Event);
        let (mut builder, mut consumer) = local.try_request().unwrap().into_builder(DataType::Data);
        builder.append_and_commit(b"data");
        let data = consumer.build();
        assert!(local.try_request().is_none());
        assert_eq!(event.as_bytes(), b"event");
        assert_eq!(data.as_bytes(), b"data");
        drop((event, builder, consumer));
        assert_eq!(local.free_segments(), 1);
        drop(data);
        assert_eq!(local.free_segments(), 2);
        drop((local, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_waiting_requester_is_woken_by_a_local_return() {
        let manager = manager(1);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 1).unwrap();
        let local = global.create_local_pool(1, 1).unwrap();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let lent = local.poll_request(&waker).unwrap();
        assert!(local.poll_request(&waker).is_none());
        // Polling again is harmless: `Waker::will_wake` usually drops the duplicate (not
        // always: under Miri vtables differ), and a spurious wake-up is allowed.
        assert!(local.poll_request(&waker).is_none());
        assert_eq!(counter.wakes(), 0);
        drop(lent);
        assert!(counter.wakes() >= 1);
        let again = local.poll_request(&waker).unwrap();
        drop((again, local, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_waiting_requester_is_woken_when_another_pool_returns_to_the_grant() {
        let manager = manager(3);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 3).unwrap();
        let first = global.create_local_pool(1, 3).unwrap();
        let second = global.create_local_pool(1, 2).unwrap();
        let taken: Vec<PooledSegment> = (0..2).map(|_| first.try_request().unwrap()).collect();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let own = second.poll_request(&waker).unwrap();
        assert!(second.poll_request(&waker).is_none(), "grant empty");
        drop(taken);
        assert!(
            counter.wakes() >= 1,
            "a segment above first's min went to the grant"
        );
        assert!(
            second
                .poll_request(&waker)
                .is_some_and(|s| s.size() == 4096)
        );
        drop((own, first, second, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn segments_lent_by_a_dropped_pool_go_to_the_grant() {
        let manager = manager(2);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let local = global.create_local_pool(2, 2).unwrap();
        let lent = local.try_request().unwrap();
        drop(local);
        assert_eq!(global.free_segments(), 1);
        drop(lent);
        assert_eq!(global.free_segments(), 2);
        drop(global);
        manager.leak_check().unwrap();
    }

    /// A requester thread parks on the pool while a consumer thread returns segments:
    /// every one of the seeded number of requests completes, none waits forever.
    #[test]
    fn requests_on_one_thread_returns_on_another() {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let manager = manager(2);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let local = global.create_local_pool(1, 2).unwrap();
        let (sender, receiver) = std::sync::mpsc::sync_channel::<PooledSegment>(1);
        let returner = std::thread::spawn(move || receiver.into_iter().count());
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let requests = 20;
        for _ in 0..requests {
            let segment = loop {
                match local.poll_request(&waker) {
                    Some(segment) => break segment,
                    None => std::thread::park(),
                }
            };
            sender.send(segment).unwrap();
        }
        drop(sender);
        assert_eq!(returner.join().unwrap(), requests);
        drop((local, global));
        manager.leak_check().unwrap();
    }
}
