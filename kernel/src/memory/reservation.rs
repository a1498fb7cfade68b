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

    /// Moves everything `other` holds into this reservation.
    ///
    /// # Panics
    ///
    /// When `other` belongs to another owner.
    pub fn absorb(&mut self, mut other: Reservation) {
        assert!(
            std::sync::Arc::ptr_eq(self.owner.shared(), other.owner.shared()),
            "reservation of {} absorbed by one of {}",
            other.consumer(),
            self.consumer()
        );
        self.bytes += std::mem::take(&mut other.bytes);
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

    /// Frees `segment` and keeps its budget in this reservation: the opposite of
    /// [`Reservation::allocate_one`]. A spilling operator uses it to move memory between
    /// its areas without letting another consumer take it in between.
    ///
    /// # Panics
    ///
    /// When the segment belongs to another owner.
    pub fn give_back(&mut self, segment: MemorySegment) {
        assert!(
            segment.is_owned_by(self.owner.shared()),
            "segment of {} given back to a reservation of {}",
            segment.owner_name(),
            self.consumer()
        );
        let size = segment.size();
        segment.release_into_reservation();
        self.bytes += size;
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

#[cfg(test)]
mod tests {
    use crate::memory::test_manager as manager;

    #[test]
    fn grow_shrink_split_and_drop() {
        let manager = manager(10);
        let owner = manager.owner("sort[0]/merge");
        let mut reservation = owner.reserve(4).unwrap();
        assert_eq!(reservation.segments(), 4);
        assert_eq!(manager.stats().used_bytes, 4 * 4096);
        reservation.try_grow(2).unwrap();
        let error = reservation.try_grow(5).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("sort[0]/merge requested 20480 bytes"),
            "{error}"
        );
        assert_eq!(reservation.segments(), 6, "a failed grow changes nothing");
        reservation.shrink(1);
        let split = reservation.split(2);
        assert_eq!((reservation.segments(), split.segments()), (3, 2));
        assert_eq!(owner.reserved_bytes(), 5 * 4096);
        drop(split);
        assert_eq!(manager.stats().used_bytes, 3 * 4096);
        drop(reservation);
        assert_eq!(manager.stats().used_bytes, 0);
        manager.leak_check().unwrap();
    }

    #[test]
    fn reserved_memory_is_there_when_needed() {
        let manager = manager(4);
        let merge_owner = manager.owner("merge");
        let mut merge = merge_owner.reserve(2).unwrap();
        let greedy = manager.owner("greedy");
        let taken = greedy.allocate(2).unwrap();
        assert!(
            greedy.allocate_one().is_err(),
            "the reserved half is not available"
        );
        let segments = merge.allocate(2).unwrap();
        assert_eq!(merge.segments(), 0);
        assert_eq!(merge_owner.segments(), 2);
        assert_eq!(merge_owner.reserved_bytes(), 0);
        assert!(merge.allocate_one().unwrap_err().is_budget_exceeded());
        drop(segments);
        drop(taken);
        manager.leak_check().unwrap();
    }

    #[test]
    fn byte_reservations_share_the_budget() {
        let manager = manager(2);
        let owner = manager.owner("metadata");
        let bytes = owner.reserve_bytes(3000).unwrap();
        assert_eq!(bytes.size_bytes(), 3000);
        assert_eq!(bytes.segments(), 0);
        assert!(
            owner.allocate(2).is_err(),
            "3000 bytes leave room for one segment"
        );
        let one = owner.allocate_one().unwrap();
        drop((bytes, one));
        manager.leak_check().unwrap();
    }

    #[test]
    fn given_back_segments_stay_reserved() {
        let manager = manager(3);
        let owner = manager.owner("sort[0]");
        let mut reservation = owner.reserve(2).unwrap();
        let segments = reservation.allocate(2).unwrap();
        let other = manager.owner("other");
        let third = other.allocate_one().unwrap();
        for segment in segments {
            reservation.give_back(segment);
        }
        assert_eq!(reservation.segments(), 2);
        assert_eq!(owner.segments(), 0);
        assert_eq!(owner.reserved_bytes(), 2 * 4096);
        assert!(
            other.allocate_one().is_err(),
            "the budget did not go back to the pool"
        );
        assert_eq!(manager.stats().segments_in_use, 1);
        drop((third, reservation));
        assert_eq!(manager.stats().used_bytes, 0);
        manager.leak_check().unwrap();
    }

    #[test]
    #[should_panic(expected = "shrinks by")]
    fn shrinking_more_than_held_is_a_bug() {
        let manager = manager(2);
        let mut reservation = manager.owner("a").reserve(1).unwrap();
        reservation.shrink(2);
    }
}
