//! Network buffers: segments with readable bytes and a data type, reference counted, and
//! the single-writer/single-reader builder that fills them without copying.
//!
//! ```text
//!   task thread                               subpartition / network thread
//!   BufferBuilder ──append, commit──▶ segment ◀──build── BufferConsumer ──▶ NetworkBuffer
//!                   (Release store)             (Acquire load)              (Arc, zero copy)
//! ```

#[allow(
    unsafe_code,
    reason = "one writer and readers share segment bytes across threads; docs/SAFETY.md"
)]
mod builder;
mod data_type;
mod network_buffer;
mod recycler;

pub use builder::{BufferBuilder, BufferConsumer};
pub use data_type::DataType;
pub use network_buffer::NetworkBuffer;
pub use recycler::Recycler;

#[cfg(test)]
// The loom models use only part of it.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod test_support;
