//! The arena: one anonymous mapping per manager, cut into equal segments.
//!
//! ```text
//!  base                                                         base + segments * size
//!   |  segment 0  |  segment 1  |  segment 2  |   ...   |  segment n-1  |
//!   ^ 4096-aligned, and so is every segment start (size is a multiple of 4096)
//! ```
//!
//! The mapping is reserved up front and costs nothing until a page is touched, so the
//! arena may span the whole budget while the process's resident memory grows only with the
//! segments in use. Transparent huge pages are requested; on release a segment's pages are
//! either kept for reuse or handed back to the kernel with `MADV_DONTNEED`
//! ([`ReleasePolicy`]).
//!
//! This module and `segment` are the only places in the memory layer with `unsafe`.

use std::ptr::NonNull;

use memmap2::{MmapMut, MmapOptions};

use crate::constants::SEGMENT_ALIGN;
use crate::error::{KernelError, Result};

/// What happens to a segment's pages when the segment is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReleasePolicy {
    /// Keep the pages resident; the next allocation reuses them without a page fault.
    /// The fastest choice, and the default: a budget is a budget, whether in use or not.
    #[default]
    Reuse,
    /// `madvise(MADV_DONTNEED)` the segment's pages on release, so an idle process gives
    /// its memory back; the next allocation pays one zero-fill page fault per page touched.
    ReturnToOs,
}

/// The mapping behind a manager's segments.
///
/// Invariants:
/// 1. `base` points to the start of `map`, a private anonymous read-write mapping of at
///    least `segment_count * segment_size` bytes, aligned to [`SEGMENT_ALIGN`].
/// 2. `map` is never moved out of or unmapped while the arena lives, so `base` stays valid
///    for the arena's lifetime.
pub(crate) struct Arena {
    base: NonNull<u8>,
    segment_size: usize,
    segment_count: usize,
    policy: ReleasePolicy,
    // Held only to keep the mapping alive; every access goes through `base`.
    _map: MmapMut,
}

// SAFETY: the arena hands out disjoint segments, each owned by exactly one `MemorySegment`;
// the arena itself never reads or writes segment bytes, so sharing the base pointer across
// threads cannot create a data race (invariant 1 and the manager's free-list invariant).
unsafe impl Send for Arena {}
// SAFETY: as for `Send`: `&Arena` only gives out addresses, never access to bytes.
unsafe impl Sync for Arena {}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("segment_size", &self.segment_size)
            .field("segment_count", &self.segment_count)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Arena {
    /// Maps an arena of `segment_count` segments of `segment_size` bytes.
    ///
    /// # Errors
    ///
    /// [`KernelError::ArenaMap`] when the operating system refuses the mapping.
    pub(crate) fn new(
        segment_size: usize,
        segment_count: usize,
        policy: ReleasePolicy,
    ) -> Result<Arena> {
        assert!(segment_size.is_power_of_two());
        assert!(segment_size.is_multiple_of(SEGMENT_ALIGN));
        // A zero-length mapping is invalid; an empty budget still gets one page to point at.
        let bytes = segment_size
            .checked_mul(segment_count)
            .expect("arena size overflows usize")
            .max(SEGMENT_ALIGN);
        let mut map = MmapOptions::new()
            .len(bytes)
            .map_anon()
            .map_err(|source| KernelError::ArenaMap { bytes, source })?;
        request_huge_pages(&map);
        let base = NonNull::new(map.as_mut_ptr()).expect("mmap returned a null mapping");
        assert_eq!(
            base.as_ptr() as usize % SEGMENT_ALIGN,
            0,
            "mmap is page aligned"
        );
        Ok(Arena {
            base,
            segment_size,
            segment_count,
            policy,
            _map: map,
        })
    }

    pub(crate) fn segment_size(&self) -> usize {
        self.segment_size
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.segment_count
    }

    /// The first byte of segment `index`.
    pub(crate) fn segment_ptr(&self, index: u32) -> NonNull<u8> {
        let index = index as usize;
        assert!(
            index < self.segment_count,
            "segment {index} outside the arena"
        );
        let offset = index * self.segment_size;
        // SAFETY: `offset` is within the mapping by the assert above and invariant 1, so the
        // result stays inside the same allocation and cannot wrap.
        unsafe { self.base.add(offset) }
    }

    /// Called when segment `index` goes back on the free list.
    pub(crate) fn on_release(&self, index: u32) {
        if self.policy == ReleasePolicy::ReturnToOs {
            self.discard(index);
        }
    }

    #[cfg(not(miri))]
    fn discard(&self, index: u32) {
        let ptr = self.segment_ptr(index);
        // SAFETY: the range is one whole segment inside the mapping (invariant 1), aligned to
        // a page; the segment is being released, so no reference to its bytes is alive, and
        // MADV_DONTNEED on private anonymous memory only replaces the pages with zero pages.
        let rc =
            unsafe { libc::madvise(ptr.as_ptr().cast(), self.segment_size, libc::MADV_DONTNEED) };
        // The advice only fails for invalid ranges, which invariant 1 rules out.
        assert_eq!(rc, 0, "madvise(MADV_DONTNEED) failed on a segment");
    }

    #[cfg(miri)]
    fn discard(&self, _index: u32) {}
}

/// Transparent huge pages cut the TLB misses of large scans; the kernel may decline.
#[cfg(all(target_os = "linux", not(miri)))]
fn request_huge_pages(map: &MmapMut) {
    // Advice is a hint: when THP is disabled the call fails and we run on 4 KiB pages.
    let _ = map.advise(memmap2::Advice::HugePage);
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn request_huge_pages(_map: &MmapMut) {}
