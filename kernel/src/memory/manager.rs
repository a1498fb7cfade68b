//! `MemoryManager`: a hard budget of memory, handed out as segments and reservations.
//!
//! The manager maps one arena for the whole budget at creation and never asks the global
//! allocator for segment memory again. Free segments sit in a bounded lock-free queue;
//! segments never handed out yet are taken from a high-water mark, so a manager with a
//! large budget touches only the pages it actually uses.
//!
//! ```text
//!            used_bytes ≤ budget_bytes                    (every allocation, every thread)
//!  budget:  [ segments in use | reservations | free ...................................]
//!  arena:   [ 0 1 2 ... fresh-1 (handed out once, in use or on the free queue) | fresh .. ]
//! ```
//!
//! Invariants:
//! 1. `used_bytes` = segments in use × segment size + bytes held by reservations
//!    ≤ `budget_bytes`.
//! 2. An index is on the free queue, held by exactly one live segment, or ≥ `fresh`.
//! 3. A released segment's index is queued *before* its budget is released, so whoever
//!    acquires that budget finds an index (on the queue, or fresh) without waiting.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crossbeam::queue::ArrayQueue;

use super::arena::{Arena, ReleasePolicy};
use super::owner::{Owner, OwnerShared};
use crate::constants::{
    SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN, SEGMENTS_PER_MANAGER_MAX,
};
use crate::error::{KernelError, LeakedOwner, Result};

/// How a [`MemoryManager`] is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    /// The budget in bytes; rounded down to whole segments.
    pub budget_bytes: usize,
    /// Bytes per segment: a power of two from 4 KiB to 1 MiB.
    pub segment_size: usize,
    /// What happens to a released segment's pages.
    pub release_policy: ReleasePolicy,
}

impl MemoryConfig {
    /// A budget of `budget_bytes` in segments of the default size (32 KiB).
    pub fn with_budget(budget_bytes: usize) -> MemoryConfig {
        MemoryConfig {
            budget_bytes,
            segment_size: SEGMENT_SIZE_DEFAULT,
            release_policy: ReleasePolicy::default(),
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        let size = self.segment_size;
        if !size.is_power_of_two() || !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&size) {
            return Err(KernelError::InvalidConfig {
                field: "segment_size",
                value: size.to_string(),
                expected: "a power of two from 4096 to 1048576 bytes",
            });
        }
        let segments = self.budget_bytes / size;
        if segments == 0 || segments > SEGMENTS_PER_MANAGER_MAX {
            return Err(KernelError::InvalidConfig {
                field: "budget_bytes",
                value: self.budget_bytes.to_string(),
                expected: "at least one segment and at most 2^32 - 1 segments",
            });
        }
        Ok(())
    }
}

/// A point-in-time view of a manager's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes per segment.
    pub segment_size: usize,
    /// The budget in bytes (a whole number of segments).
    pub budget_bytes: usize,
    /// Bytes in use: segments handed out plus reservations.
    pub used_bytes: usize,
    /// The highest `used_bytes` seen.
    pub peak_bytes: usize,
    /// Segments handed out and not yet returned.
    pub segments_in_use: usize,
    /// Budget still available.
    pub free_bytes: usize,
}

/// The owner of a process's (or a slot's) memory budget.
///
/// `Send + Sync`: share it by reference or in an `Arc`; tasks allocate through their own
/// [`Owner`]s concurrently.
pub struct MemoryManager {
    shared: Arc<ManagerShared>,
}

/// State shared by the manager, its owners and (through them) its segments.
pub(crate) struct ManagerShared {
    arena: Arena,
    budget_bytes: usize,
    used_bytes: AtomicUsize,
    peak_bytes: AtomicUsize,
    free: ArrayQueue<u32>,
    fresh: AtomicUsize,
    // Bounded by the number of live owners: dead entries are pruned on every registration.
    owners: Mutex<Vec<Weak<OwnerShared>>>,
}

impl MemoryManager {
    /// Maps the arena for `config`'s budget.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] for an invalid configuration, [`KernelError::ArenaMap`]
    /// when the mapping fails.
    pub fn new(config: MemoryConfig) -> Result<MemoryManager> {
        config.validate()?;
        let segments = config.budget_bytes / config.segment_size;
        let arena = Arena::new(config.segment_size, segments, config.release_policy)?;
        Ok(MemoryManager {
            shared: Arc::new(ManagerShared {
                arena,
                budget_bytes: segments * config.segment_size,
                used_bytes: AtomicUsize::new(0),
                peak_bytes: AtomicUsize::new(0),
                free: ArrayQueue::new(segments),
                fresh: AtomicUsize::new(0),
                owners: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A manager with `budget_bytes` in 32 KiB segments.
    ///
    /// # Errors
    ///
    /// As [`MemoryManager::new`].
    pub fn with_budget(budget_bytes: usize) -> Result<MemoryManager> {
        MemoryManager::new(MemoryConfig::with_budget(budget_bytes))
    }

    /// A new named owner (consumer) of memory. Names need not be unique; they appear in
    /// errors, leak reports and metrics.
    pub fn owner(&self, name: impl Into<String>) -> Owner {
        let owner = Owner::new(name.into(), Arc::clone(&self.shared));
        let mut owners = self.shared.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.retain(|weak| weak.strong_count() > 0);
        owners.push(Arc::downgrade(owner.shared()));
        owner
    }

    /// Allocates `count` segments for `owner`, all or none.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`] when the budget cannot grant them.
    ///
    /// # Panics
    ///
    /// When `owner` belongs to another manager.
    pub fn allocate(&self, owner: &Owner, count: usize) -> Result<Vec<super::MemorySegment>> {
        self.assert_mine(owner);
        owner.allocate(count)
    }

    /// Returns a segment to the budget. Dropping the segment does the same; this names it.
    pub fn release(&self, segment: super::MemorySegment) {
        drop(segment);
    }

    /// Closes `owner` at the end of its task: it can allocate no more, and whatever it
    /// still holds is reported. Segments and reservations return to the budget when they
    /// are dropped, so a well-behaved task holds nothing here.
    ///
    /// # Errors
    ///
    /// [`KernelError::MemoryLeak`] naming the owner and what it still holds.
    ///
    /// # Panics
    ///
    /// When `owner` belongs to another manager.
    pub fn release_all(&self, owner: &Owner) -> Result<()> {
        self.assert_mine(owner);
        owner.close();
        let leaked = LeakedOwner {
            consumer: owner.name().to_owned(),
            segments: owner.segments(),
            reserved_bytes: owner.reserved_bytes(),
        };
        if leaked.segments > 0 || leaked.reserved_bytes > 0 {
            return Err(KernelError::MemoryLeak {
                owners: vec![leaked],
            });
        }
        Ok(())
    }

    /// Checks that no owner holds memory.
    ///
    /// # Errors
    ///
    /// [`KernelError::MemoryLeak`] naming every owner that still holds segments or
    /// reservations, with the amounts.
    pub fn leak_check(&self) -> Result<()> {
        let owners = self.shared.owners.lock().unwrap_or_else(|e| e.into_inner());
        let leaked: Vec<LeakedOwner> = owners
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|owner| owner.segments() > 0 || owner.reserved_bytes() > 0)
            .map(|owner| LeakedOwner {
                consumer: owner.name().to_owned(),
                segments: owner.segments(),
                reserved_bytes: owner.reserved_bytes(),
            })
            .collect();
        if leaked.is_empty() {
            Ok(())
        } else {
            Err(KernelError::MemoryLeak { owners: leaked })
        }
    }

    /// The manager's counters now.
    pub fn stats(&self) -> MemoryStats {
        let shared = &self.shared;
        let used_bytes = shared.used_bytes.load(Ordering::Relaxed);
        MemoryStats {
            segment_size: shared.segment_size(),
            budget_bytes: shared.budget_bytes,
            used_bytes,
            peak_bytes: shared.peak_bytes.load(Ordering::Relaxed),
            segments_in_use: shared
                .fresh
                .load(Ordering::Relaxed)
                .saturating_sub(shared.free.len()),
            free_bytes: shared.budget_bytes.saturating_sub(used_bytes),
        }
    }

    /// Bytes per segment.
    pub fn segment_size(&self) -> usize {
        self.shared.segment_size()
    }

    /// The budget in bytes.
    pub fn budget_bytes(&self) -> usize {
        self.shared.budget_bytes
    }

    fn assert_mine(&self, owner: &Owner) {
        assert!(
            owner.belongs_to(&self.shared),
            "owner {} belongs to another memory manager",
            owner.name()
        );
    }
}

impl Owner {
    fn belongs_to(&self, manager: &Arc<ManagerShared>) -> bool {
        Arc::ptr_eq(self.shared().manager(), manager)
    }
}

impl Drop for MemoryManager {
    /// Dropping the manager while memory is out is a bug in the caller: memory would be
    /// released behind the back of the budget's accounting. Asserted unless already
    /// unwinding from another panic.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(leak) = self.leak_check() {
            panic!("memory manager dropped while memory is out: {leak}");
        }
    }
}

impl fmt::Debug for MemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryManager")
            .field("stats", &self.stats())
            .field("arena", &self.shared.arena)
            .finish()
    }
}

impl ManagerShared {
    pub(super) fn arena(&self) -> &Arena {
        &self.arena
    }

    #[inline]
    pub(super) fn segment_size(&self) -> usize {
        self.arena.segment_size()
    }

    /// Takes `bytes` of budget for `consumer`, or explains why not.
    #[inline]
    pub(super) fn acquire(&self, bytes: usize, consumer: &str) -> Result<()> {
        let mut used = self.used_bytes.load(Ordering::Relaxed);
        loop {
            let available = self.budget_bytes - used;
            if bytes > available {
                return Err(self.exceeded_with(bytes, available, consumer));
            }
            // Acquire pairs with the Release in `release`, which follows the index push
            // (invariant 3): budget seen free means its index is visible on the queue.
            match self.used_bytes.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => used = actual,
            }
        }
        let now = used + bytes;
        if now > self.peak_bytes.load(Ordering::Relaxed) {
            self.peak_bytes.fetch_max(now, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Gives `bytes` of budget back.
    #[inline]
    pub(super) fn release(&self, bytes: usize) {
        let before = self.used_bytes.fetch_sub(bytes, Ordering::Release);
        assert!(
            before >= bytes,
            "memory budget released more than was acquired"
        );
    }

    pub(super) fn exceeded(&self, bytes: usize, consumer: &str) -> KernelError {
        let used = self.used_bytes.load(Ordering::Relaxed);
        self.exceeded_with(bytes, self.budget_bytes.saturating_sub(used), consumer)
    }

    fn exceeded_with(&self, bytes: usize, available: usize, consumer: &str) -> KernelError {
        KernelError::BudgetExceeded {
            consumer: consumer.to_owned(),
            requested_bytes: bytes,
            available_bytes: available,
            segment_size: self.segment_size(),
        }
    }

    /// An index for a segment whose budget the caller holds.
    #[inline]
    pub(super) fn take_index(&self) -> u32 {
        if let Some(index) = self.free.pop() {
            return index;
        }
        let fresh = self.fresh.fetch_add(1, Ordering::Relaxed);
        // Invariants 1-3: budget held for a segment guarantees an index.
        assert!(
            fresh < self.arena.segment_count(),
            "segment arena exhausted within budget"
        );
        u32::try_from(fresh).expect("segment index fits u32 (checked in MemoryConfig)")
    }

    /// Puts a released segment's index back on the free queue.
    #[inline]
    pub(super) fn put_index(&self, index: u32) {
        self.arena.on_release(index);
        // The queue holds every index, so it is never full (invariant 2).
        assert!(self.free.push(index).is_ok(), "free segment queue overflow");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::test_manager as manager;

    #[test]
    fn config_rejects_bad_sizes() {
        for size in [0, 1000, 2048, 4097, 2 << 20] {
            let config = MemoryConfig {
                segment_size: size,
                ..MemoryConfig::with_budget(1 << 24)
            };
            let error = MemoryManager::new(config).unwrap_err();
            assert!(error.to_string().contains("segment_size"), "{error}");
        }
        let error = MemoryManager::with_budget(1000).unwrap_err();
        assert!(error.to_string().contains("budget_bytes = 1000"), "{error}");
    }

    #[test]
    fn allocation_stops_at_the_budget_with_numbers() {
        let manager = manager(4);
        let owner = manager.owner("sort[3]");
        let held = owner.allocate(3).unwrap();
        let error = owner.allocate(2).unwrap_err();
        assert_eq!(
            error.to_string(),
            "memory budget exceeded: sort[3] requested 8192 bytes (2 segments), \
             4096 bytes (1 segments) available"
        );
        assert_eq!(owner.segments(), 3, "a failed request takes nothing");
        let last = owner.allocate_one().unwrap();
        assert!(owner.allocate_one().unwrap_err().is_budget_exceeded());
        assert_eq!(manager.stats().segments_in_use, 4);
        assert_eq!(manager.stats().free_bytes, 0);
        drop(held);
        drop(last);
        let stats = manager.stats();
        assert_eq!(stats.used_bytes, 0);
        assert_eq!(stats.peak_bytes, 4 * 4096);
        assert_eq!(stats.segments_in_use, 0);
        manager.leak_check().unwrap();
    }

    #[test]
    fn released_segments_are_reused() {
        let manager = manager(2);
        let owner = manager.owner("a");
        let first = owner.allocate_one().unwrap();
        let index = first.index();
        manager.release(first);
        let again = owner.allocate_one().unwrap();
        let other = owner.allocate_one().unwrap();
        assert!(again.index() == index || other.index() == index);
        assert_ne!(again.index(), other.index());
    }

    #[test]
    fn leak_check_names_each_owner_holding_memory() {
        let manager = manager(8);
        let sort = manager.owner("sort[1]");
        let join = manager.owner("join[2]");
        let quiet = manager.owner("map[0]");
        let segments = sort.allocate(2).unwrap();
        let reservation = join.reserve_bytes(100).unwrap();
        drop(quiet.allocate_one().unwrap());
        let error = manager.leak_check().unwrap_err();
        let KernelError::MemoryLeak { owners } = &error else {
            panic!("expected a leak, got {error}");
        };
        let names: Vec<&str> = owners.iter().map(|o| o.consumer.as_str()).collect();
        assert_eq!(names, ["sort[1]", "join[2]"]);
        assert_eq!(owners[0].segments, 2);
        assert_eq!(owners[1].reserved_bytes, 100);
        assert!(
            error
                .to_string()
                .contains("sort[1] (2 segments, 0 reserved bytes)")
        );
        drop(segments);
        drop(reservation);
        manager.leak_check().unwrap();
    }

    #[test]
    fn release_all_closes_the_owner_and_reports_leaks() {
        let manager = manager(4);
        let owner = manager.owner("task[7]");
        let segment = owner.allocate_one().unwrap();
        let error = manager.release_all(&owner).unwrap_err();
        assert!(error.to_string().contains("task[7] (1 segments"), "{error}");
        assert!(matches!(
            owner.allocate_one(),
            Err(KernelError::OwnerClosed { .. })
        ));
        drop(segment);
        manager.release_all(&owner).unwrap();
    }

    #[test]
    #[should_panic(expected = "memory manager dropped while memory is out")]
    fn dropping_the_manager_with_live_segments_is_a_bug() {
        let manager = manager(2);
        let segment = manager.owner("leaky").allocate_one().unwrap();
        drop(manager);
        drop(segment);
    }

    #[test]
    #[should_panic(expected = "belongs to another memory manager")]
    fn owners_are_tied_to_their_manager() {
        let first = manager(2);
        let second = manager(2);
        let owner = first.owner("a");
        let _ = second.allocate(&owner, 1);
    }

    #[test]
    fn return_to_os_zeroes_released_segments() {
        let manager = MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            release_policy: ReleasePolicy::ReturnToOs,
            ..MemoryConfig::with_budget(4096)
        })
        .unwrap();
        let owner = manager.owner("a");
        let mut segment = owner.allocate_one().unwrap();
        segment.fill(0, 4096, 0xab);
        drop(segment);
        let segment = owner.allocate_one().unwrap();
        if cfg!(not(miri)) {
            assert!(
                segment.as_slice().iter().all(|&b| b == 0),
                "pages were discarded"
            );
        }
    }
}
