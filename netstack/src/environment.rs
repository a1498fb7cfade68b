//! `ExchangeEnvironment`: creates a worker's result partitions and input gates from a
//! spec — which channels are local, which remote — out of its network grant and transport,
//! hiding receivers, exclusive-buffer grants and floating pools.
//!
//! ```text
//!   NetworkBufferPool (grant) ──┬─ partition(id, consumers) ──▶ ResultPartition
//!   NetworkService (optional) ──┤     pool: LocalPoolSpec::for_partition; registered as id
//!                               └─ gate([ChannelSource; producers]) ──▶ InputGate
//!                                     Local(subpartition) ──▶ LocalInputChannel
//!                                     Remote{peer, partition, subpartition}
//!                                        ──▶ RemoteInputChannel: a receiver id, exclusive
//!                                            buffers from the grant, the gate's floating
//!                                            pool, its channel opened on the transport
//! ```
//!
//! Invariants: channel `i` of a gate reads `sources[i]`; a gate with a remote channel has
//! one floating pool of [`ExchangeBuffers::floating_per_gate`] segments, shared by its
//! remote channels and dropped with the gate; [`ExchangeBuffers`] counts exactly the
//! segments [`ExchangeEnvironment`] takes from the grant, so a worker sizes its grant
//! (plus [`EVENT_SEGMENTS`](crate::constants::EVENT_SEGMENTS) for incoming events) before
//! it creates anything.

use std::sync::Arc;

use crate::constants::{
    BUFFERS_PER_CHANNEL_DEFAULT, EXCLUSIVE_BUFFERS_TIMEOUT, FLOATING_BUFFERS_PER_GATE_DEFAULT,
};
use crate::error::Result;
use crate::input::RemoteInputChannel;
use crate::input::{InputChannel, InputGate, LocalInputChannel, RemoteChannelSpec};
use crate::partition::{ChannelIndex, ResultPartition, ResultSubpartition};
use crate::pool::{LocalPoolSpec, NetworkBufferPool};
use crate::transport::{NetworkService, PartitionId};

/// How many network buffers an exchange's channels get (Flink's sizing rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeBuffers {
    /// Exclusive buffers per remote input channel: the credit it announces first.
    pub per_channel: usize,
    /// Floating buffers per gate with remote channels, shared by them.
    pub floating_per_gate: usize,
}

impl Default for ExchangeBuffers {
    fn default() -> ExchangeBuffers {
        ExchangeBuffers {
            per_channel: BUFFERS_PER_CHANNEL_DEFAULT,
            floating_per_gate: FLOATING_BUFFERS_PER_GATE_DEFAULT,
        }
    }
}

impl ExchangeBuffers {
    /// The most segments a partition of `consumers` subpartitions takes from the grant.
    pub fn partition_segments(consumers: usize) -> usize {
        LocalPoolSpec::for_partition(consumers).max
    }

    /// The segments a gate with `remote` remote channels takes from the grant: exclusive
    /// buffers and the floating pool (none without remote channels).
    pub fn gate_segments(&self, remote: usize) -> usize {
        match remote {
            0 => 0,
            _ => remote * self.per_channel + self.floating_per_gate,
        }
    }
}

/// Where one channel of a gate reads.
#[derive(Debug)]
pub enum ChannelSource {
    /// A subpartition of a partition in this process.
    Local(Arc<ResultSubpartition>),
    /// Subpartition `subpartition` of partition `partition` of worker `peer`.
    Remote {
        /// The producer's worker (process index).
        peer: u32,
        /// The producer's partition.
        partition: PartitionId,
        /// The subpartition this gate reads.
        subpartition: u32,
    },
}

/// Creates partitions and gates of one worker from its grant and (with remote channels)
/// its transport.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeEnvironment<'a> {
    grant: &'a NetworkBufferPool,
    service: Option<&'a NetworkService>,
    buffers: ExchangeBuffers,
}

impl<'a> ExchangeEnvironment<'a> {
    /// An environment over `grant`; `service` is the transport (`None` in one process).
    pub fn new(
        grant: &'a NetworkBufferPool,
        service: Option<&'a NetworkService>,
        buffers: ExchangeBuffers,
    ) -> ExchangeEnvironment<'a> {
        ExchangeEnvironment {
            grant,
            service,
            buffers,
        }
    }

    /// A result partition of `consumers` subpartitions with its own pool, registered with
    /// the transport as `id` (so remote consumers can read it).
    ///
    /// # Errors
    ///
    /// [`NetError::InsufficientBuffers`](crate::NetError::InsufficientBuffers) when the
    /// grant cannot give the pool its minimum.
    pub fn partition(&self, id: PartitionId, consumers: usize) -> Result<ResultPartition> {
        let pool = self
            .grant
            .create_pool(LocalPoolSpec::for_partition(consumers))?;
        let partition = ResultPartition::new(pool, consumers);
        if let Some(service) = self.service {
            service.register_partition(id, &partition);
        }
        Ok(partition)
    }

    /// A gate whose channel `i` reads `sources[i]`; remote channels get their exclusive
    /// buffers (waiting up to [`EXCLUSIVE_BUFFERS_TIMEOUT`]) and are opened on the
    /// transport.
    ///
    /// # Errors
    ///
    /// [`NetError::InsufficientBuffers`](crate::NetError::InsufficientBuffers) when the
    /// grant cannot give the floating pool or the exclusive buffers.
    ///
    /// # Panics
    ///
    /// When `sources` is empty or longer than `u32::MAX`, or a remote source is given
    /// without a transport.
    pub fn gate(&self, sources: Vec<ChannelSource>) -> Result<InputGate> {
        let remote = sources
            .iter()
            .any(|source| matches!(source, ChannelSource::Remote { .. }));
        let floating = match remote {
            true => Some(Arc::new(self.grant.create_pool(LocalPoolSpec::new(
                1,
                self.buffers.floating_per_gate,
            ))?)),
            false => None,
        };
        let mut channels: Vec<InputChannel> = Vec::with_capacity(sources.len());
        for (i, source) in sources.into_iter().enumerate() {
            let index = ChannelIndex(u32::try_from(i).expect("a gate's channels fit a u32"));
            let channel = match source {
                ChannelSource::Local(subpartition) => {
                    LocalInputChannel::new(index, subpartition).into()
                }
                ChannelSource::Remote {
                    peer,
                    partition,
                    subpartition,
                } => {
                    let service = self.service.expect("remote channels need the transport");
                    let remote = RemoteInputChannel::new(
                        RemoteChannelSpec {
                            index,
                            receiver: service.next_receiver(),
                            partition,
                            subpartition,
                            peer: service.peer_name(peer),
                        },
                        self.buffers.per_channel,
                        self.grant,
                        Arc::clone(floating.as_ref().expect("a floating pool")),
                        service.channel_events(),
                        EXCLUSIVE_BUFFERS_TIMEOUT,
                    )?;
                    service.open_channel(peer, remote.shared());
                    remote.into()
                }
            };
            channels.push(channel);
        }
        Ok(InputGate::new(channels))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::test_support::manager;
    use crate::partition::{FlushMode, ForwardSelector, RecordWriter, SubpartitionIndex};
    use crate::{GateHandler, GateReader, NetError};

    #[derive(Default)]
    struct Count(u64);

    impl GateHandler for Count {
        type Error = NetError;

        fn record(&mut self, _channel: ChannelIndex, _record: &[u8]) -> Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    /// Partitions and a gate over them in one process take from the grant exactly what
    /// `ExchangeBuffers` counts, carry the records, and give every segment back.
    #[test]
    fn local_partitions_and_a_gate_over_them_carry_records_within_their_count() {
        let segments = 2 * ExchangeBuffers::partition_segments(1);
        let manager = manager(segments);
        let owner = manager.owner("network");
        let grant = NetworkBufferPool::new(&owner, segments).unwrap();
        let env = ExchangeEnvironment::new(&grant, None, ExchangeBuffers::default());
        assert_eq!(ExchangeBuffers::default().gate_segments(0), 0);
        assert_eq!(ExchangeBuffers::default().gate_segments(3), 3 * 2 + 8);
        let id = |producer| PartitionId {
            dataset: 0,
            producer,
        };
        let partitions = [
            env.partition(id(0), 1).unwrap(),
            env.partition(id(1), 1).unwrap(),
        ];
        let sources = partitions
            .iter()
            .map(|p| ChannelSource::Local(p.subpartition(SubpartitionIndex(0))))
            .collect();
        let mut reader = GateReader::new(env.gate(sources).unwrap());
        for partition in partitions {
            let mut writer = RecordWriter::new(partition, ForwardSelector, FlushMode::WhenFull);
            for i in 0..100u32 {
                writer.emit(&i.to_le_bytes()).unwrap();
            }
            writer.finish().unwrap();
        }
        let mut count = Count::default();
        reader.run(&mut count).unwrap();
        assert_eq!(count.0, 200);
        drop((reader, grant));
        manager.leak_check().unwrap();
    }
}
