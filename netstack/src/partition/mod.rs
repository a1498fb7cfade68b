//! The producer side: a result partition, its subpartitions, and the selectors that pick
//! a record's subpartition.
//!
//! ```text
//!   record ──ChannelSelector──▶ ResultPartition::try_emit_record ──▶ ResultSubpartition[i]
//!                                 (length prefix, builders            (queue of consumers
//!                                  from the LocalBufferPool)            and events)
//! ```

mod ids;
mod result_partition;
mod selector;
mod subpartition;

pub use ids::{ChannelIndex, SubpartitionIndex};
pub use result_partition::{Emit, PartitionMetrics, ResultPartition};
pub use selector::{
    BroadcastSelector, ChannelSelector, ForwardSelector, HashSelector, RoundRobinSelector,
    channel_for_key_group, key_group,
};
pub use subpartition::{PolledBuffer, ResultSubpartition, SubpartitionMetrics};
