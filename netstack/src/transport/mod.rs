//! The transport between worker processes: the wire protocol ([`frame`]) and the event
//! loop that carries every channel between two processes over one TCP connection
//! ([`service`], the face tasks use).
//!
//! ```text
//!   service (NetworkService) ──▶ config ─ validate ─▶ startup (bind, dial, Hello)
//!        │ commands via shared                              │ greeted streams
//!        ▼                                                  ▼
//!   event_loop ──▶ schedule (passes, poll timeout, drain)   requests (retry backoff)
//!        │         strangers (late accepts)                 liveness (heartbeats)
//!        ▼
//!   connection (queues, credit, views, bounded writes) ──▶ frame (the bytes)
//! ```
//!
//! Imports run down the picture only: the timing decisions (schedule, requests,
//! liveness) take instants and know no sockets, so they are unit-tested with made-up
//! clocks; the sockets live in `event_loop`, `strangers` and `startup`.

mod config;
mod connection;
mod event_loop;
pub mod frame;
mod liveness;
mod requests;
mod schedule;
pub mod service;
mod shared;
mod startup;
mod strangers;

pub use frame::{BufferHeader, ErrorKind, FrameDecoder, Message, PartitionId, ReceiverId};
pub use service::{NetworkConfig, NetworkService, TransportMetrics};
