//! weir's memory kernel: memory segments under a hard budget, paged views, spill I/O
//! (io_uring with a portable fallback), external sort, spilling hash aggregation and the
//! hybrid hash join.
//!
//! ```text
//!   MemoryManager (one budget, fixed-size segments, owners, reservations, leak check)
//!     ├─ memory::  MemorySegment, PagedOutputView / PagedInputView over segment lists
//!     ├─ sort::    InMemorySorter (normalized-key index) ─▶ ExternalSorter ─▶ runs ─▶ merge
//!     ├─ hash::    HashAggregate and HashJoin: tables in segments, partitions that spill
//!     │            and are processed again level by level, a sort-based fallback
//!     └─ spill::   SpillStore: checksummed blocks (docs/FORMAT.md §3) written and read
//!                  through io_uring or pread/pwrite, files unlinked at creation
//! ```
//!
//! Everything large that weir holds lives in [`memory::MemorySegment`]s handed out by a
//! [`memory::MemoryManager`]: an operator that cannot get a segment spills instead of
//! failing, and every test checks that all segments came home. The kernel works on opaque
//! byte records and byte keys; it knows nothing of serde or the network. Unsafe code lives
//! in the modules docs/SAFETY.md lists, each block with its invariant.
//!
//! ```
//! use weir_kernel::memory::{MemoryManager, PagedOutputView};
//!
//! let manager = MemoryManager::with_budget(1 << 20)?;
//! let owner = manager.owner("example");
//! let mut view = PagedOutputView::new(owner.clone());
//! view.write_u64_le(42)?;
//! let mut reader = view.reader();
//! assert_eq!(reader.read_u64_le()?, 42);
//! drop(view);
//! manager.leak_check()?;
//! # Ok::<(), weir_kernel::KernelError>(())
//! ```
#![cfg_attr(
    test,
    allow(
        clippy::too_many_lines,
        reason = "a test is a scenario read top to bottom"
    )
)]
#![doc(test(attr(deny(warnings))))]
// Unsafe code is confined to the modules that allow it by name (see docs/SAFETY.md).
#![deny(unsafe_code)]
// A library reports through its caller (errors, metrics), never on the process's streams.
#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod constants;
mod error;
pub mod fuzz;
pub mod hash;
pub mod memory;
pub mod sort;
pub mod spill;
pub mod sys;

pub use error::{KernelError, LeakedOwner, Result};
