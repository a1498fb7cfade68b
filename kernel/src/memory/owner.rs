//! `Owner`: a named consumer of memory, to which every segment and reservation is
//! accounted.
//!
//! ```text
//!   MemoryManager ──owner("sort[3]")──▶ Owner ──allocate(n)──▶ MemorySegment × n
//!        ▲                                │                        │ drop
//!        │                                └──reserve(n)──▶ Reservation
//!        └──────────── budget and free list ◀───────────────────────┘
//! ```
//!
//! An owner is cheap to clone and `Send + Sync`, so the task threads of one operator can
//! allocate through it concurrently. Each segment keeps its owner alive, and the owner keeps
//! the manager's arena alive, so a segment can never outlive the memory it points into.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::manager::ManagerShared;
use super::reservation::Reservation;
use super::segment::{MemorySegment, SegmentIndex};
use crate::error::{KernelError, Result};

/// A named consumer of memory. Created by [`MemoryManager::owner`](super::MemoryManager::owner).
#[derive(Clone)]
pub struct Owner {
    shared: Arc<OwnerShared>,
}

/// The state behind an [`Owner`], shared with each of its segments.
pub(crate) struct OwnerShared {
    name: String,
    manager: Arc<ManagerShared>,
    segments: AtomicUsize,
    reserved_bytes: AtomicUsize,
    closed: AtomicBool,
}

impl Owner {
    pub(super) fn new(name: String, manager: Arc<ManagerShared>) -> Owner {
        Owner {
            shared: Arc::new(OwnerShared {
                name,
                manager,
                segments: AtomicUsize::new(0),
                reserved_bytes: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub(super) fn shared(&self) -> &Arc<OwnerShared> {
        &self.shared
    }

    /// The owner's name, as used in errors and leak reports.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Segments this owner holds now.
    pub fn segments(&self) -> usize {
        self.shared.segments.load(Ordering::Relaxed)
    }

    /// Bytes this owner holds in reservations now (not counting its segments).
    pub fn reserved_bytes(&self) -> usize {
        self.shared.reserved_bytes.load(Ordering::Relaxed)
    }

    /// The size of this owner's manager's segments.
    pub fn segment_size(&self) -> usize {
        self.shared.manager.segment_size()
    }

    /// Allocates one segment.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`] when the budget has no segment left,
    /// [`KernelError::OwnerClosed`] after [`MemoryManager::release_all`](super::MemoryManager::release_all).
    #[inline]
    pub fn allocate_one(&self) -> Result<MemorySegment> {
        self.check_open()?;
        let segment_size = self.segment_size();
        self.shared
            .manager
            .acquire(segment_size, &self.shared.name)?;
        self.shared.segments.fetch_add(1, Ordering::Relaxed);
        Ok(self.shared.hand_out())
    }

    /// Allocates `count` segments, all or none.
    ///
    /// # Errors
    ///
    /// As [`Owner::allocate_one`].
    pub fn allocate(&self, count: usize) -> Result<Vec<MemorySegment>> {
        self.check_open()?;
        let bytes = count
            .checked_mul(self.segment_size())
            .ok_or_else(|| self.shared.manager.exceeded(usize::MAX, &self.shared.name))?;
        self.shared.manager.acquire(bytes, &self.shared.name)?;
        self.shared.segments.fetch_add(count, Ordering::Relaxed);
        Ok((0..count).map(|_| self.shared.hand_out()).collect())
    }

    /// Reserves `segments` segments of budget without taking segments yet.
    ///
    /// # Errors
    ///
    /// As [`Owner::allocate_one`].
    pub fn reserve(&self, segments: usize) -> Result<Reservation> {
        let mut reservation = self.empty_reservation();
        reservation.try_grow(segments)?;
        Ok(reservation)
    }

    /// Reserves `bytes` of budget for memory that cannot live in segments (metadata).
    ///
    /// # Errors
    ///
    /// As [`Owner::allocate_one`].
    pub fn reserve_bytes(&self, bytes: usize) -> Result<Reservation> {
        let mut reservation = self.empty_reservation();
        reservation.try_grow_bytes(bytes)?;
        Ok(reservation)
    }

    /// A reservation of nothing, to grow later.
    pub fn empty_reservation(&self) -> Reservation {
        Reservation::new(self.clone())
    }

    pub(super) fn check_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(KernelError::OwnerClosed {
                consumer: self.shared.name.clone(),
            });
        }
        Ok(())
    }

    /// Takes `bytes` of budget for a reservation.
    pub(super) fn acquire_reserved(&self, bytes: usize) -> Result<()> {
        self.check_open()?;
        self.shared.manager.acquire(bytes, &self.shared.name)?;
        self.shared
            .reserved_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Gives `bytes` of a reservation back to the budget.
    pub(super) fn release_reserved(&self, bytes: usize) {
        let before = self
            .shared
            .reserved_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
        assert!(
            before >= bytes,
            "owner {} released more than it reserved",
            self.name()
        );
        self.shared.manager.release(bytes);
    }

    /// Turns `count` segments' worth of reserved budget into segments.
    pub(super) fn convert_reserved(&self, count: usize) -> Vec<MemorySegment> {
        let bytes = count * self.segment_size();
        let before = self
            .shared
            .reserved_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
        assert!(
            before >= bytes,
            "owner {} converted more than it reserved",
            self.name()
        );
        self.shared.segments.fetch_add(count, Ordering::Relaxed);
        (0..count).map(|_| self.shared.hand_out()).collect()
    }

    /// Turns one segment's worth of reserved budget into a segment.
    pub(super) fn convert_reserved_one(&self) -> MemorySegment {
        let bytes = self.segment_size();
        let before = self
            .shared
            .reserved_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
        assert!(
            before >= bytes,
            "owner {} converted more than it reserved",
            self.name()
        );
        self.shared.segments.fetch_add(1, Ordering::Relaxed);
        self.shared.hand_out()
    }

    pub(super) fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

impl OwnerShared {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn manager(&self) -> &Arc<ManagerShared> {
        &self.manager
    }

    pub(super) fn segments(&self) -> usize {
        self.segments.load(Ordering::Relaxed)
    }

    pub(super) fn reserved_bytes(&self) -> usize {
        self.reserved_bytes.load(Ordering::Relaxed)
    }

    /// Wraps a free segment for this owner, whose budget the caller already holds.
    #[inline]
    fn hand_out(self: &Arc<Self>) -> MemorySegment {
        let index = self.manager.take_index();
        let ptr = self.manager.arena().segment_ptr(index);
        let size = self.manager.segment_size();
        MemorySegment::new(ptr, size, SegmentIndex(index), Arc::clone(self))
    }

    /// Called by a segment's `Drop`: the segment goes home and its budget with it.
    #[inline]
    pub(crate) fn take_back(&self, index: SegmentIndex, keep_budget: bool) {
        let before = self.segments.fetch_sub(1, Ordering::Relaxed);
        assert!(
            before > 0,
            "owner {} returned a segment it did not hold",
            self.name
        );
        self.manager.put_index(index.0);
        if keep_budget {
            let size = self.manager.segment_size();
            self.reserved_bytes.fetch_add(size, Ordering::Relaxed);
        } else {
            self.manager.release(self.manager.segment_size());
        }
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Owner")
            .field("name", &self.shared.name)
            .field("segments", &self.segments())
            .field("reserved_bytes", &self.reserved_bytes())
            .finish()
    }
}
