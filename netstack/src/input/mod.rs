//! The consumer side: input channels reading subpartitions, the input gate merging them,
//! and the record readers that reassemble records from buffers.
//!
//! ```text
//!   ResultSubpartition[i] ──▶ LocalInputChannel i ──▶ InputGate ──(ChannelIndex, buffer)──▶
//!                              (same buffer, no copy)   priority first,   RecordReader[i]
//!   TCP (event loop) ──────▶ RemoteInputChannel j ──▶   then round robin  ──▶ &[u8] records
//!                              (credit-based)
//!
//!   GateReader: InputGate + a RecordReader per channel ──▶ GateHandler (records, events,
//!               idle hook, cancellation), the thread parked while nothing is available
//! ```

mod channel;
mod gate;
mod gate_reader;
mod local_channel;
mod record_reader;
mod remote_channel;
mod thread_waker;

pub use channel::InputChannel;
pub use gate::{GateMetrics, GatePoll, InputGate};
pub use gate_reader::{GateHandler, GateReader};
pub use local_channel::LocalInputChannel;
pub use record_reader::RecordReader;
pub use remote_channel::{ChannelEvents, RemoteChannelSpec, RemoteInputChannel, RemoteShared};
pub use thread_waker::current_thread_waker;
