//! The transport between worker processes: the wire protocol ([`frame`]).

pub mod frame;

pub use frame::{BufferHeader, ErrorKind, FrameDecoder, Message, PartitionId, ReceiverId};
