//! `LocalInputChannel`: a consumer reading one producer's subpartition in the same
//! process.
//!
//! ```text
//!   ResultSubpartition ──poll_buffer──▶ LocalInputChannel ──poll_next──▶ InputGate
//!   (Arc, shared with       (same segment:     (tracks backlog and
//!    the producer)           no copy)           EndOfPartition)
//! ```
//!
//! The channel holds the subpartition through an `Arc` and hands out the very buffers the
//! subpartition builds, so a local exchange never copies bytes. Once it has handed out
//! EndOfPartition the channel has ended and answers `None` for good.

use std::sync::Arc;
use std::task::Waker;

use crate::buffer::{DataType, NetworkBuffer};
use crate::partition::{ChannelIndex, ResultSubpartition};

/// Reads one producer's [`ResultSubpartition`] directly: the buffers it hands out are the
/// subpartition's own (no copy).
#[derive(Debug)]
pub struct LocalInputChannel {
    index: ChannelIndex,
    subpartition: Arc<ResultSubpartition>,
    // The backlog the subpartition reported with the last buffer.
    backlog: usize,
    ended: bool,
    buffers_in: u64,
    bytes_in: u64,
}

impl LocalInputChannel {
    /// Channel `index` of its gate, reading `subpartition`.
    pub fn new(index: ChannelIndex, subpartition: Arc<ResultSubpartition>) -> LocalInputChannel {
        LocalInputChannel {
            index,
            subpartition,
            backlog: 0,
            ended: false,
            buffers_in: 0,
            bytes_in: 0,
        }
    }

    /// This channel's index in its gate.
    pub fn index(&self) -> ChannelIndex {
        self.index
    }

    /// The next buffer (data or an event, EndOfPartition last); `None` when nothing is
    /// available now, and always after EndOfPartition was handed out.
    ///
    /// # Panics
    ///
    /// As [`ResultSubpartition::poll_buffer`].
    pub fn poll_next(&mut self) -> Option<NetworkBuffer> {
        if self.ended {
            return None;
        }
        let polled = self.subpartition.poll_buffer()?;
        self.backlog = polled.backlog;
        self.buffers_in += 1;
        self.bytes_in += polled.buffer.len() as u64;
        if polled.buffer.data_type() == DataType::EndOfPartition {
            self.ended = true;
        }
        Some(polled.buffer)
    }

    /// Registers `waker` with the subpartition: woken once when data may have become
    /// available (poll again after registering; a wake-up may be spurious).
    pub fn register_listener(&self, waker: &Waker) {
        self.subpartition.register_listener(waker);
    }

    /// Asks the producer for buffers of `bytes` bytes (debloating): set directly on the
    /// subpartition.
    pub fn announce_buffer_size(&self, bytes: usize) {
        self.subpartition.set_buffer_size(bytes);
    }

    /// Buffers in flight to this channel and not yet handed out: every data buffer queued
    /// in the subpartition, finished or still being filled (what the producer writes into
    /// and a barrier waits behind).
    pub fn buffers_in_use(&self) -> usize {
        if self.ended {
            0
        } else {
            self.subpartition.data_buffers_queued()
        }
    }

    /// Whether EndOfPartition was handed out.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Finished data buffers queued behind the last buffer handed out (as the
    /// subpartition reported it then).
    pub fn backlog(&self) -> usize {
        self.backlog
    }

    /// Buffers handed out so far (data and events).
    pub fn buffers_in(&self) -> u64 {
        self.buffers_in
    }

    /// Bytes handed out so far (data and events).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::test_support::manager;
    use crate::partition::SubpartitionIndex;
    use crate::pool::NetworkBufferPool;

    #[test]
    fn reads_the_subpartitions_own_buffers_in_order_then_ends() {
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        let pool = global.create_local_pool(4, 4).unwrap();
        let subpartition = Arc::new(ResultSubpartition::new(SubpartitionIndex(2)));
        let mut channel = LocalInputChannel::new(ChannelIndex(2), Arc::clone(&subpartition));
        assert_eq!(channel.index(), ChannelIndex(2));
        assert!(channel.poll_next().is_none(), "nothing queued yet");

        let (mut builder, consumer) = pool.try_request().unwrap().into_builder(DataType::Data);
        subpartition.add(consumer);
        builder.append_and_commit(b"abc");
        builder.finish();
        let mut segment = pool.try_request().unwrap();
        segment.segment_mut().put_bytes(0, b"ev");
        let event = segment.into_buffer(2, DataType::Event);
        subpartition.add_event(event.clone());
        subpartition.finish(
            pool.try_request()
                .unwrap()
                .into_buffer(0, DataType::EndOfPartition),
        );

        let data = channel.poll_next().unwrap();
        assert_eq!(
            (data.data_type(), data.as_bytes()),
            (DataType::Data, &b"abc"[..])
        );
        let got = channel.poll_next().unwrap();
        assert!(got.shares_segment_with(&event), "the same buffer, no copy");
        assert!(!channel.is_ended());
        let end = channel.poll_next().unwrap();
        assert_eq!(end.data_type(), DataType::EndOfPartition);
        assert!(channel.is_ended());
        assert!(channel.poll_next().is_none(), "nothing after the end");
        assert_eq!((channel.buffers_in(), channel.bytes_in()), (3, 5));
        assert_eq!(channel.backlog(), 0);
        drop((data, got, end, event, channel, subpartition, pool, global));
        manager.leak_check().unwrap();
    }
}
