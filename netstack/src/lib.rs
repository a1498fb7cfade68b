//! weir's network stack: network buffers and pools over memory segments, result partitions
//! and subpartitions, input gates and channels, credit-based flow control and buffer
//! debloating, and the TCP transport.
//!
//! Not built yet: this crate holds the place of the network layer in the workspace so that
//! the dependency graph (`netstack` → `kernel`) is fixed from the start.

pub use weir_kernel as kernel;
