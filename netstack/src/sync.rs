//! The synchronization primitives of the hand-offs between threads, swapped for loom's
//! model-checked ones when built with `RUSTFLAGS="--cfg loom"`.
//!
//! Only the primitives whose interleavings carry the protocols are swapped: the atomic
//! position word of the builder/consumer hand-off and the mutexes of the pools and
//! subpartitions. `Arc` stays std's everywhere: the recyclers are `Arc<dyn Recycler>`,
//! an unsized coercion loom's `Arc` does not support, and reference counting is not what
//! the loom tests check.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
