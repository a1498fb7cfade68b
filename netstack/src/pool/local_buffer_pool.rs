//! `LocalBufferPool`: the segments of one result partition or one input gate, lent out
//! one at a time, between a guaranteed `min` and a `max`.
//!
//! The pool's current size lies between the two and is set by the grant's redistribution
//! (see [`NetworkBufferPool`](super::NetworkBufferPool)). Segments are fetched from the
//! grant lazily, up to the size; a returning segment stays in the pool while the pool holds
//! no more than its size, and goes back to the grant otherwise.
//!
//! ```text
//!   request: capped subpartition ──▶ None
//!            local free list ──empty──▶ grant (while held < size, or < size + overdraft
//!            mid-record) ──empty──▶ None
//!   return:  held ≤ size ──▶ local free list      held > size ──▶ the grant
//!            (either way, local waiters are woken: a slot or a segment opened up)
//! ```
//!
//! Two limits guard a partition against its own writer, as in Flink: a **per-subpartition
//! cap** (a subpartition may hold at most `max_per_subpartition` segments lent and not yet
//! returned, so one slow or skewed channel cannot take the whole pool) and an
//! **overdraft** (a writer in the middle of a record may take up to `max_overdraft`
//! segments beyond the size while the grant has them free, rather than block mid-record).
//!
//! `try_request` answers `None` when no segment may be lent (expected pressure: the caller
//! waits, which is backpressure). `poll_request` does the same but registers a [`Waker`]
//! that is woken when a request may succeed. The check and the registration happen under
//! the same lock a returning segment takes, so a wake-up cannot be lost between them; the
//! wakers are called after every lock is released.

use std::fmt;
use std::sync::{Arc, Weak};
use std::task::Waker;

use weir_kernel::memory::MemorySegment;

use super::network_buffer_pool::GlobalShared;
use super::pooled_segment::PooledSegment;
use crate::buffer::Recycler;
use crate::constants::{
    BUFFERS_PER_CHANNEL_DEFAULT, FLOATING_BUFFERS_PER_GATE_DEFAULT,
    MAX_BUFFERS_PER_SUBPARTITION_DEFAULT, MAX_OVERDRAFT_BUFFERS_DEFAULT,
};
use crate::sync::{Mutex, MutexGuard};

/// How a local pool is sized and capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPoolSpec {
    /// Segments the pool is guaranteed (at least 1).
    pub min: usize,
    /// The most segments the pool may hold, overdraft aside (at least `min`).
    pub max: usize,
    /// Subpartitions whose lent segments are counted against `max_per_subpartition`
    /// (0 for a pool that does not serve a partition).
    pub subpartitions: usize,
    /// The most segments one subpartition may hold lent at once.
    pub max_per_subpartition: usize,
    /// Segments a writer in the middle of a record may take beyond the pool's size.
    pub max_overdraft: usize,
}

impl LocalPoolSpec {
    /// A pool of `min` to `max` segments, without per-subpartition cap or overdraft.
    pub fn new(min: usize, max: usize) -> LocalPoolSpec {
        LocalPoolSpec {
            min,
            max,
            subpartitions: 0,
            max_per_subpartition: usize::MAX,
            max_overdraft: 0,
        }
    }

    /// The pool of a pipelined result partition of `subpartitions` subpartitions, with
    /// the defaults of Flink's sizing rules: min = subpartitions + 1 (one open builder each
    /// and one to finish a record), max = subpartitions × [`BUFFERS_PER_CHANNEL_DEFAULT`] +
    /// [`FLOATING_BUFFERS_PER_GATE_DEFAULT`], a cap of
    /// [`MAX_BUFFERS_PER_SUBPARTITION_DEFAULT`] per subpartition and an overdraft of
    /// [`MAX_OVERDRAFT_BUFFERS_DEFAULT`].
    pub fn for_partition(subpartitions: usize) -> LocalPoolSpec {
        LocalPoolSpec {
            min: subpartitions + 1,
            max: subpartitions * BUFFERS_PER_CHANNEL_DEFAULT + FLOATING_BUFFERS_PER_GATE_DEFAULT,
            subpartitions,
            max_per_subpartition: MAX_BUFFERS_PER_SUBPARTITION_DEFAULT,
            max_overdraft: MAX_OVERDRAFT_BUFFERS_DEFAULT,
        }
    }

    pub(super) fn assert_consistent(&self) {
        assert!(
            self.min > 0,
            "a local buffer pool needs at least one segment"
        );
        assert!(
            self.max >= self.min,
            "local buffer pool max {} below min {}",
            self.max,
            self.min
        );
        assert!(
            self.max_per_subpartition > 0,
            "a subpartition must be allowed one segment"
        );
    }
}

/// A pool of segments for one partition or gate. Dropping it returns its free segments to
/// the [`NetworkBufferPool`](super::NetworkBufferPool); segments still lent out go there
/// when they come back.
pub struct LocalBufferPool {
    shared: Arc<LocalShared>,
    // The recycler of segments lent to subpartition `i`, which counts them back.
    subpartition_recyclers: Vec<Arc<dyn Recycler>>,
}

/// The pool's state, shared with the segments it lent (as their recycler) and known to the
/// grant (weakly) for redistribution.
pub(crate) struct LocalShared {
    global: Arc<GlobalShared>,
    spec: LocalPoolSpec,
    state: Mutex<LocalState>,
}

struct LocalState {
    // Free segments; `free.len() <= held`, and `held <= size` whenever `free` is not
    // empty.
    free: Vec<MemorySegment>,
    // Segments this pool holds, free or lent.
    held: usize,
    // The current size, set by redistribution: `min <= size <= max`.
    size: usize,
    // Segments lent to each subpartition and not yet returned.
    lent_to: Vec<usize>,
    // Requesters to wake when a segment comes back or the size grows.
    waiting: Vec<Waker>,
    // The pool handle dropped: every returning segment goes to the grant.
    destroyed: bool,
}

/// Recycles segments lent to one subpartition, counting them back.
#[derive(Debug)]
struct SubpartitionRecycler {
    pool: Arc<LocalShared>,
    subpartition: usize,
}

impl LocalBufferPool {
    pub(super) fn new(global: Arc<GlobalShared>, spec: LocalPoolSpec) -> LocalBufferPool {
        let shared = Arc::new(LocalShared {
            global,
            spec,
            state: Mutex::new(LocalState {
                free: Vec::new(),
                held: 0,
                size: spec.min,
                lent_to: vec![0; spec.subpartitions],
                waiting: Vec::new(),
                destroyed: false,
            }),
        });
        let subpartition_recyclers = (0..spec.subpartitions)
            .map(|subpartition| {
                Arc::new(SubpartitionRecycler {
                    pool: Arc::clone(&shared),
                    subpartition,
                }) as Arc<dyn Recycler>
            })
            .collect();
        LocalBufferPool {
            shared,
            subpartition_recyclers,
        }
    }

    pub(super) fn downgrade(&self) -> Weak<LocalShared> {
        Arc::downgrade(&self.shared)
    }

    /// A free segment, or `None` when none may be lent now (see the module docs).
    pub fn try_request(&self) -> Option<PooledSegment> {
        self.request(None, false, None)
    }

    /// As [`try_request`](Self::try_request), but on `None` `waker` is woken when a
    /// segment may be available (then ask again: another requester may win it).
    pub fn poll_request(&self, waker: &Waker) -> Option<PooledSegment> {
        self.request(None, false, Some(waker))
    }

    /// A segment for `subpartition` (counted against its cap until it returns), taking an
    /// overdraft segment when `overdraft` and the pool is at its size; on `None` `waker`,
    /// if given, is woken when a request may succeed.
    ///
    /// # Panics
    ///
    /// When `subpartition` is not below the spec's `subpartitions`.
    pub(crate) fn request(
        &self,
        subpartition: Option<usize>,
        overdraft: bool,
        waker: Option<&Waker>,
    ) -> Option<PooledSegment> {
        let shared = &self.shared;
        let spec = &shared.spec;
        let mut state = shared.lock();
        let capped = subpartition.is_some_and(|s| state.lent_to[s] >= spec.max_per_subpartition);
        let segment = if capped {
            None
        } else if let Some(segment) = state.free.pop() {
            Some(segment)
        } else if state.held < state.size
            || (overdraft && state.held < state.size + spec.max_overdraft)
        {
            // Lock order: local, then the grant (never the reverse).
            let segment = shared.global.take_or_wait(waker);
            state.held += usize::from(segment.is_some());
            segment
        } else {
            None
        };
        match (&segment, subpartition) {
            (Some(_), Some(s)) => state.lent_to[s] += 1,
            (Some(_), None) => {}
            (None, _) => {
                if let Some(waker) = waker
                    && !state.waiting.iter().any(|w| w.will_wake(waker))
                {
                    state.waiting.push(waker.clone());
                }
            }
        }
        drop(state);
        let recycler = match subpartition {
            Some(s) => Arc::clone(&self.subpartition_recyclers[s]),
            None => Arc::clone(&self.shared) as Arc<dyn Recycler>,
        };
        segment.map(|segment| PooledSegment::new(segment, recycler))
    }

    /// Whether a request would get a segment now (a hint: another requester may take it
    /// first), counting the overdraft when `overdraft` (a writer mid-record), ignoring the
    /// per-subpartition cap.
    pub fn may_lend(&self, overdraft: bool) -> bool {
        let shared = &self.shared;
        let state = shared.lock();
        if !state.free.is_empty() {
            return true;
        }
        let room = state.held < state.size
            || (overdraft && state.held < state.size + shared.spec.max_overdraft);
        drop(state);
        room && shared.global.has_free()
    }

    /// How the pool is sized and capped.
    pub fn spec(&self) -> LocalPoolSpec {
        self.shared.spec
    }

    /// The guaranteed number of segments.
    pub fn min_segments(&self) -> usize {
        self.shared.spec.min
    }

    /// The most segments the pool may hold, overdraft aside.
    pub fn max_segments(&self) -> usize {
        self.shared.spec.max
    }

    /// The current size set by redistribution: the segments the pool may hold now,
    /// overdraft aside.
    pub fn size(&self) -> usize {
        self.shared.lock().size
    }

    /// Segments the pool holds now, free or lent.
    pub fn held_segments(&self) -> usize {
        self.shared.lock().held
    }

    /// Segments free in the pool now.
    pub fn free_segments(&self) -> usize {
        self.shared.lock().free.len()
    }

    /// Segments lent to `subpartition` and not yet returned.
    ///
    /// # Panics
    ///
    /// When `subpartition` is not below the spec's `subpartitions`.
    pub fn lent_to_subpartition(&self, subpartition: usize) -> usize {
        self.shared.lock().lent_to[subpartition]
    }
}

impl LocalShared {
    fn lock(&self) -> MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn min(&self) -> usize {
        self.spec.min
    }

    pub(super) fn max(&self) -> usize {
        self.spec.max
    }

    pub(super) fn is_destroyed(&self) -> bool {
        self.lock().destroyed
    }

    /// Sets the size (redistribution): free segments above it go back to the grant now,
    /// lent ones when they return; a pool that grew wakes its waiters.
    pub(super) fn set_size(&self, size: usize) {
        let (excess, waiting) = {
            let mut state = self.lock();
            if state.destroyed {
                return;
            }
            let grew = size > state.size;
            state.size = size;
            let keep = state
                .free
                .len()
                .saturating_sub(state.held.saturating_sub(size));
            let excess = state.free.split_off(keep);
            state.held -= excess.len();
            let waiting = if grew {
                std::mem::take(&mut state.waiting)
            } else {
                Vec::new()
            };
            (excess, waiting)
        };
        self.global.give_back(excess);
        for waker in waiting {
            waker.wake();
        }
    }

    fn recycle_from(&self, subpartition: Option<usize>, segment: MemorySegment) {
        let (to_global, waiting) = {
            let mut state = self.lock();
            assert!(
                state.held > state.free.len(),
                "a segment came back that was not lent"
            );
            if let Some(s) = subpartition {
                state.lent_to[s] -= 1;
            }
            let to_global = if state.destroyed || state.held > state.size {
                state.held -= 1;
                Some(segment)
            } else {
                state.free.push(segment);
                None
            };
            (to_global, std::mem::take(&mut state.waiting))
        };
        // Outside the local lock: the grant wakes its own waiters, and a woken requester
        // may come straight back into this pool.
        self.global.give_back(to_global.into_iter().collect());
        for waker in waiting {
            waker.wake();
        }
    }
}

impl Recycler for LocalShared {
    fn recycle(&self, segment: MemorySegment) {
        self.recycle_from(None, segment);
    }
}

impl Recycler for SubpartitionRecycler {
    fn recycle(&self, segment: MemorySegment) {
        self.pool.recycle_from(Some(self.subpartition), segment);
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
        self.shared.global.pool_dropped(self.shared.spec.min);
    }
}

impl fmt::Debug for LocalShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("LocalBufferPool")
            .field("spec", &self.spec)
            .field("size", &state.size)
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::DataType;
    use crate::buffer::test_support::{CountingWaker, manager};
    use crate::pool::NetworkBufferPool;

    #[test]
    fn fetches_lazily_up_to_its_size_then_answers_none() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 8).unwrap();
        let local = global.create_local_pool(2, 3).unwrap();
        assert_eq!((local.min_segments(), local.max_segments()), (2, 3));
        assert_eq!(
            local.size(),
            3,
            "alone with excess, the pool may reach its max"
        );
        assert_eq!(global.free_segments(), 8, "nothing fetched yet");
        let lent: Vec<PooledSegment> = (0..3).map(|_| local.try_request().unwrap()).collect();
        assert_eq!(local.held_segments(), 3);
        assert_eq!(global.free_segments(), 5);
        assert!(local.try_request().is_none(), "at its size");
        drop(lent);
        assert_eq!(
            local.held_segments(),
            3,
            "kept: the pool is not above its size"
        );
        assert_eq!(local.free_segments(), 3);
        drop(local);
        assert_eq!(global.free_segments(), 8);
        drop(global);
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_subpartition_at_its_cap_gets_nothing_until_one_of_its_segments_returns() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 8).unwrap();
        let local = global
            .create_pool(LocalPoolSpec {
                max_per_subpartition: 2,
                subpartitions: 2,
                ..LocalPoolSpec::new(3, 8)
            })
            .unwrap();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let first: Vec<PooledSegment> = (0..2)
            .map(|_| local.request(Some(0), false, None).unwrap())
            .collect();
        assert!(
            local.request(Some(0), false, Some(&waker)).is_none(),
            "capped"
        );
        let other = local.request(Some(1), false, None).unwrap();
        assert_eq!(
            (local.lent_to_subpartition(0), local.lent_to_subpartition(1)),
            (2, 1)
        );
        drop(other);
        assert_eq!(local.lent_to_subpartition(1), 0);
        let mut first = first.into_iter();
        drop(first.next());
        assert!(counter.wakes() >= 1, "a return of subpartition 0 wakes");
        let again = local.request(Some(0), false, None).unwrap();
        drop((again, first, local, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_writer_mid_record_may_overdraw_and_the_overdraft_goes_back_to_the_grant() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 8).unwrap();
        let local = global
            .create_pool(LocalPoolSpec {
                max_overdraft: 2,
                ..LocalPoolSpec::new(2, 2)
            })
            .unwrap();
        let sized: Vec<PooledSegment> = (0..2).map(|_| local.try_request().unwrap()).collect();
        assert!(local.try_request().is_none());
        let over: Vec<PooledSegment> = (0..2)
            .map(|_| local.request(None, true, None).unwrap())
            .collect();
        assert!(
            local.request(None, true, None).is_none(),
            "overdraft used up"
        );
        assert_eq!(local.held_segments(), 4);
        drop(over);
        assert_eq!(local.held_segments(), 2);
        assert_eq!(global.free_segments(), 6);
        drop((sized, local, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_pool_that_grows_wakes_its_waiters() {
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        let first = global.create_local_pool(1, 4).unwrap();
        let second = global.create_local_pool(2, 2).unwrap();
        assert_eq!((first.size(), second.size()), (2, 2));
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let lent: Vec<PooledSegment> = (0..2)
            .map(|_| first.poll_request(&waker).unwrap())
            .collect();
        assert!(first.poll_request(&waker).is_none());
        drop(second);
        assert_eq!(first.size(), 4);
        assert!(counter.wakes() >= 1);
        let more = first.poll_request(&waker).unwrap();
        drop((more, lent, first, global));
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
        let taken: Vec<PooledSegment> = (0..3).map(|_| first.try_request().unwrap()).collect();
        let second = global.create_local_pool(1, 2).unwrap();
        assert_eq!((first.size(), second.size()), (1, 2));
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        assert!(second.poll_request(&waker).is_none(), "grant empty");
        let mut taken = taken.into_iter();
        drop(taken.next());
        assert!(
            counter.wakes() >= 1,
            "a segment above first's size went to the grant"
        );
        let own = second.poll_request(&waker).unwrap();
        assert_eq!(own.size(), 4096);
        drop((own, taken, first, second, global));
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
