//! Where a buffer's segment goes when the last reference to it drops.

use std::fmt;

use weir_kernel::memory::MemorySegment;

/// Takes back the segment of a buffer whose last reference dropped: a buffer pool
/// implements it to put the segment on its free list.
///
/// A buffer without a recycler simply drops its segment, which returns it to its
/// [`MemoryManager`](weir_kernel::memory::MemoryManager).
///
/// `recycle` runs on whichever thread dropped the last reference (a task thread, the
/// network thread), so it must be cheap and must not block on the buffer's own pool users.
pub trait Recycler: Send + Sync + fmt::Debug {
    /// Takes back `segment`.
    fn recycle(&self, segment: MemorySegment);
}
