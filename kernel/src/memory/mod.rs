//! Memory: segments under a hard budget, and paged views over them.
//!
//! ```text
//!   MemoryManager (budget, arena, free list)
//!     ├── owner("sort[3]") ─▶ Owner ─▶ allocate(n) ─▶ MemorySegment (32 KiB, aligned)
//!     │                         └────▶ reserve(n) ──▶ Reservation (RAII budget)
//!     └── leak_check / release_all / stats
//!
//!   PagedOutputView ──writes──▶ [seg][seg][seg] ──reads──▶ PagedInputView
//! ```
//!
//! Every byte of bulk data in weir lives in a [`MemorySegment`]. Segments return to the
//! budget when dropped; the manager can name every owner that still holds memory.

mod address;
#[allow(
    unsafe_code,
    reason = "maps the arena and returns pages to the OS; docs/SAFETY.md"
)]
mod arena;
mod manager;
mod owner;
mod paged_input;
mod paged_output;
mod reservation;
#[allow(
    unsafe_code,
    reason = "segment bytes are a raw range of the arena; docs/SAFETY.md"
)]
mod segment;
pub mod varint;

pub use address::RecordAddress;
pub use arena::ReleasePolicy;
pub use manager::{MemoryConfig, MemoryManager, MemoryStats};
pub use owner::Owner;
pub use paged_input::PagedInputView;
pub use paged_output::{PagedOutputView, SegmentSource};
pub use reservation::Reservation;
pub use segment::{MemorySegment, SegmentIndex, compare_bytes};

/// A manager of `segments` 4 KiB segments, for the memory layer's unit tests.
#[cfg(test)]
pub(crate) fn test_manager(segments: usize) -> MemoryManager {
    MemoryManager::new(MemoryConfig {
        segment_size: 4096,
        ..MemoryConfig::with_budget(segments * 4096)
    })
    .expect("a valid test configuration")
}
