//! The transport between worker processes: the wire protocol ([`frame`]) and the event
//! loop that carries every channel between two processes over one TCP connection
//! ([`service`]).

pub mod frame;
mod liveness;
pub mod service;
mod startup;

pub use frame::{BufferHeader, ErrorKind, FrameDecoder, Message, PartitionId, ReceiverId};
pub use service::{NetworkConfig, NetworkService, TransportMetrics};
