//! weir's memory kernel: memory segments under a hard budget, paged views, and (in later
//! modules) spill I/O, external sort, hash aggregation and hybrid hash join.
//!
//! Everything large that weir holds lives in [`memory::MemorySegment`]s handed out by a
//! [`memory::MemoryManager`]. The kernel works on opaque byte records and byte keys; it
//! knows nothing of serde or the network.
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
