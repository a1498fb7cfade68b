//! Buffer pools: the network memory granted at startup, and the per-partition and
//! per-gate pools that lend it out.
//!
//! ```text
//!   Owner ──allocate(N) once──▶ NetworkBufferPool (free list of N segments)
//!                                  │ min segments at creation, more up to max on demand
//!                                  ▼
//!                               LocalBufferPool ──try_request──▶ PooledSegment
//!                                  ▲                               │ into_builder / into_buffer
//!                                  └──── recycle on last drop ─────┘
//! ```
//!
//! A local pool keeps its `min` segments for its whole life and returns any segment above
//! `min` to the network pool when it comes back, so the memory a pool lends out never
//! exceeds `max` and the network pool never grows after startup.

mod local_buffer_pool;
mod network_buffer_pool;
mod pooled_segment;

pub use local_buffer_pool::LocalBufferPool;
pub use network_buffer_pool::NetworkBufferPool;
pub use pooled_segment::PooledSegment;
