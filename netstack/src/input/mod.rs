//! The consumer side: input channels reading subpartitions, the input gate merging them,
//! and the record readers that reassemble records from buffers.
//!
//! ```text
//!   ResultSubpartition[i] ──▶ LocalInputChannel i ──▶ InputGate ──(ChannelIndex, buffer)──▶
//!                              (same buffer, no copy)   priority first,   RecordReader[i]
//!   TCP (event loop) ──────▶ RemoteInputChannel j ──▶   then round robin  ──▶ &[u8] records
//!                              (credit-based)
//! ```

mod channel;
mod gate;
mod local_channel;
mod record_reader;
mod remote_channel;

pub use channel::InputChannel;
pub use gate::{GateMetrics, GatePoll, InputGate};
pub use local_channel::LocalInputChannel;
pub use record_reader::RecordReader;
pub use remote_channel::{ChannelEvents, RemoteChannelSpec, RemoteInputChannel, RemoteShared};
