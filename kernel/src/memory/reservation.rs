//! `Reservation`: an RAII grant of budget to a named consumer.
//!
//! A reservation holds budget without holding segments yet. An operator that may spill
//! reserves its merge memory before it starts, so the final merge can never run out; it
//! grows a reservation with [`Reservation::try_grow`] and answers
//! [`KernelError::BudgetExceeded`](crate::KernelError::BudgetExceeded) by spilling. Byte
//! reservations account for metadata that cannot live in segments (a `Vec` of run
//! descriptors, a bloom filter) in the same budget.
//!
//! Dropping a reservation returns what it still holds. Segments taken out of it with
//! [`Reservation::allocate`] carry their budget with them and return it when dropped.

use std::fmt;

use super::owner::Owner;
use super::segment::MemorySegment;
use crate::error::{KernelError, Result};

/// Budget held for one consumer; released on drop.
///
/// Invariant: the owner's reserved-bytes counter includes exactly `bytes` for this
/// reservation, and the manager's used bytes include them too.
pub struct Reservation {
    owner: Owner,
    bytes: usize,
}

impl Reservation {
    pub(super) fn new(owner: Owner) -> Reservation {
        Reservation { owner, bytes: 0 }
    }

    /// The consumer this reservation belongs to.
    pub fn consumer(&self) -> &str {
        self.owner.name()
    }

    /// The owner this reservation belongs to.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Whole segments' worth of budget held.
    pub fn segments(&self) -> usize {
        self.bytes / self.owner.segment_size()
    }

    /// Grows by `segments` segments of budget.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`] when the budget cannot grant them; the reservation
    /// is unchanged.
    pub fn try_grow(&mut self, segments: usize) -> Result<()> {
        let bytes = segments
            .checked_mul(self.owner.segment_size())
            .ok_or_else(|| KernelError::BudgetExceeded {
                consumer: self.consumer().to_owned(),
                requested_bytes: usize::MAX,
                available_bytes: 0,
                segment_size: self.owner.segment_size(),
            })?;
        self.try_grow_bytes(bytes)
    }

    /// Grows by `bytes` of budget.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`] when the budget cannot grant them; the reservation
    /// is unchanged.
    pub fn try_grow_bytes(&mut self, bytes: usize) -> Result<()> {
        self.owner.acquire_reserved(bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Returns `segments` segments of budget.
    ///
    /// # Panics
    ///
    /// When the reservation holds less than that.
    pub fn shrink(&mut self, segments: usize) {
        self.shrink_bytes(segments * self.owner.segment_size());
    }

    /// Returns `bytes` of budget.
    ///
    /// # Panics
    ///
    /// When the reservation holds less than that.
    pub fn shrink_bytes(&mut self, bytes: usize) {
        assert!(
            bytes <= self.bytes,
            "reservation {} shrinks by {bytes} bytes but holds {}",
            self.consumer(),
            self.bytes
        );
        self.bytes -= bytes;
        self.owner.release_reserved(bytes);
    }

    /// Returns everything held.
    pub fn free(&mut self) {
        self.shrink_bytes(self.bytes);
    }

    /// Moves `segments` segments of budget into a new reservation of the same consumer.
    ///
    /// # Panics
    ///
    /// When the reservation holds less than that.
    pub fn split(&mut self, segments: usize) -> Reservation {
        self.split_bytes(segments * self.owner.segment_size())
    }

    /// Moves `bytes` of budget into a new reservation of the same consumer.
    ///
    /// # Panics
    ///
    /// When the reservation holds less than that.
    pub fn split_bytes(&mut self, bytes: usize) -> Reservation {
        assert!(
            bytes <= self.bytes,
            "reservation {} splits off {bytes} bytes but holds {}",
            self.consumer(),
            self.bytes
        );
        self.bytes -= bytes;
        Reservation {
            owner: self.owner.clone(),
            bytes,
        }
    }

    /// Takes `count` segments out of the reserved budget. The segments carry their budget
    /// with them; the reservation shrinks by as much.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`] when the reservation holds fewer than `count`
    /// segments' worth; the reservation is unchanged.
    pub fn allocate(&mut self, count: usize) -> Result<Vec<MemorySegment>> {
        self.take(count)?;
        Ok(self.owner.convert_reserved(count))
    }

    /// Takes one segment out of the reserved budget.
    ///
    /// # Errors
    ///
    /// As [`Reservation::allocate`].
    pub fn allocate_one(&mut self) -> Result<MemorySegment> {
        self.take(1)?;
        Ok(self.owner.convert_reserved_one())
    }

    /// Checks that `count` segments' worth is held and takes it off the reservation.
    fn take(&mut self, count: usize) -> Result<()> {
        let held = self.segments();
        if count > held {
            return Err(KernelError::BudgetExceeded {
                consumer: self.consumer().to_owned(),
                requested_bytes: count.saturating_mul(self.owner.segment_size()),
                available_bytes: self.bytes,
                segment_size: self.owner.segment_size(),
            });
        }
        self.owner.check_open()?;
        self.bytes -= count * self.owner.segment_size();
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.free();
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("consumer", &self.consumer())
            .field("bytes", &self.bytes)
            .finish()
    }
}
