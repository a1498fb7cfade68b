//! The producer side: a result partition, its subpartitions, and the selectors that pick
//! a record's subpartition.
//!
//! ```text
//!   record ──RecordWriter──ChannelSelector──▶ ResultPartition::try_emit_record ──▶ ResultSubpartition[i]
//!            (waits for buffers,                (length prefix, builders            (queue of consumers
//!             flushes by FlushMode)              from the LocalBufferPool)            and events)
//! ```

mod ids;
mod record_writer;
mod result_partition;
mod selector;
mod subpartition;

pub use ids::{ChannelIndex, SubpartitionIndex};
pub use record_writer::{FlushMode, IdleFlusher, RecordWriter, WriterCanceller};
pub use result_partition::{Emit, PartitionMetrics, ResultPartition};
pub use selector::{
    BroadcastSelector, ChannelSelector, ForwardSelector, HashSelector, RescaleSelector,
    RoundRobinSelector, channel_for_key_group, default_max_parallelism, key_group,
    rescale_channels,
};
pub use subpartition::{PolledBuffer, ResultSubpartition, SubpartitionMetrics};
