//! The consumer side: input channels reading subpartitions, the input gate merging them,
//! and the record readers that reassemble records from buffers.
//!
//! ```text
//!   ResultSubpartition[i] ──▶ LocalInputChannel i ──▶ InputGate ──(ChannelIndex, buffer)──▶
//!                              (same buffer, no copy)   priority first,   RecordReader[i]
//!                                                       then round robin  ──▶ &[u8] records
//! ```

mod gate;
mod local_channel;
mod record_reader;

pub use gate::{GateMetrics, GatePoll, InputGate};
pub use local_channel::LocalInputChannel;
pub use record_reader::RecordReader;
