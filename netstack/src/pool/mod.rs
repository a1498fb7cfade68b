//! Buffer pools: the network memory granted at startup, and the per-partition and
//! per-gate pools that lend it out.
//!
//! ```text
//!   Owner ──allocate(N) once──▶ NetworkBufferPool (free list of N segments)
//!                                  │ lazily, up to each pool's size (min ≤ size ≤ max,
//!                                  ▼  redistributed when pools come and go)
//!                               LocalBufferPool ──try_request──▶ PooledSegment
//!                                  ▲                               │ into_builder / into_buffer
//!                                  └──── recycle on last drop ─────┘
//! ```
//!
//! A local pool is guaranteed its `min` segments for its whole life; it may hold up to its
//! current size, a share of the grant's excess set whenever a pool is created or dropped,
//! and returns any segment above that size to the grant when it comes back. So the memory a
//! pool lends never exceeds `max` plus its overdraft, and the grant never grows after
//! startup.

mod local_buffer_pool;
mod network_buffer_pool;
mod pooled_segment;

pub use local_buffer_pool::{LocalBufferPool, LocalPoolSpec};
pub use network_buffer_pool::NetworkBufferPool;
pub use pooled_segment::PooledSegment;
