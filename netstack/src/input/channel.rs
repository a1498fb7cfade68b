//! `InputChannel`: a gate's channel, local (same process) or remote (over TCP).

use std::task::Waker;

use super::local_channel::LocalInputChannel;
use super::remote_channel::RemoteInputChannel;
use crate::buffer::NetworkBuffer;
use crate::error::Result;
use crate::partition::ChannelIndex;

/// One input channel of a gate.
#[derive(Debug)]
pub enum InputChannel {
    /// Reads a subpartition of this process directly.
    Local(LocalInputChannel),
    /// Reads a subpartition of another process through the transport.
    Remote(RemoteInputChannel),
}

impl InputChannel {
    /// The channel's index in its gate.
    pub fn index(&self) -> ChannelIndex {
        match self {
            InputChannel::Local(channel) => channel.index(),
            InputChannel::Remote(channel) => channel.index(),
        }
    }

    /// The next buffer, `None` when nothing is available now.
    ///
    /// # Errors
    ///
    /// A remote channel's failure.
    pub fn poll_next(&mut self) -> Result<Option<NetworkBuffer>> {
        match self {
            InputChannel::Local(channel) => Ok(channel.poll_next()),
            InputChannel::Remote(channel) => channel.poll_next(),
        }
    }

    /// Registers `waker`, woken once when data may have become available.
    pub fn register_listener(&self, waker: &Waker) {
        match self {
            InputChannel::Local(channel) => channel.register_listener(waker),
            InputChannel::Remote(channel) => channel.register_listener(waker),
        }
    }

    /// Whether EndOfPartition was handed out.
    pub fn is_ended(&self) -> bool {
        match self {
            InputChannel::Local(channel) => channel.is_ended(),
            InputChannel::Remote(channel) => channel.is_ended(),
        }
    }

    /// The producer's backlog as last reported.
    pub fn backlog(&self) -> usize {
        match self {
            InputChannel::Local(channel) => channel.backlog(),
            InputChannel::Remote(channel) => channel.backlog(),
        }
    }

    /// Asks the producer for buffers of `bytes` bytes (debloating).
    pub fn announce_buffer_size(&self, bytes: usize) {
        match self {
            InputChannel::Local(channel) => channel.announce_buffer_size(bytes),
            InputChannel::Remote(channel) => channel.announce_buffer_size(bytes),
        }
    }

    /// Buffers in flight to this channel (see the channel types).
    pub fn buffers_in_use(&self) -> usize {
        match self {
            InputChannel::Local(channel) => channel.buffers_in_use(),
            InputChannel::Remote(channel) => channel.buffers_in_use(),
        }
    }

    /// Buffers handed out so far.
    pub fn buffers_in(&self) -> u64 {
        match self {
            InputChannel::Local(channel) => channel.buffers_in(),
            InputChannel::Remote(channel) => channel.buffers_in(),
        }
    }

    /// Bytes handed out so far.
    pub fn bytes_in(&self) -> u64 {
        match self {
            InputChannel::Local(channel) => channel.bytes_in(),
            InputChannel::Remote(channel) => channel.bytes_in(),
        }
    }
}

impl From<LocalInputChannel> for InputChannel {
    fn from(channel: LocalInputChannel) -> InputChannel {
        InputChannel::Local(channel)
    }
}

impl From<RemoteInputChannel> for InputChannel {
    fn from(channel: RemoteInputChannel) -> InputChannel {
        InputChannel::Remote(channel)
    }
}
