//! What task threads and the event loop thread share: the command queue and the waker
//! that announces it, the registered partitions, the counters, and the loop's own fatal
//! error. Everything a task does to the transport is a [`Command`] posted here.
//!
//! ```text
//!   task thread ──post(Command)──▶ commands (Mutex<Vec>) ──wake──▶ event loop: take all,
//!   remote channel ─LoopEvents──▶      │                           handle each once
//!   subpartition / gate pool ──CommandWaker (a std Waker)──┘
//!   register_partition ──▶ partitions ◀── PartitionRequest (event loop)
//!   event loop ──▶ metrics, failure ──▶ NetworkService::metrics / stop
//! ```
//!
//! The handles hold the shared state weakly: a channel or listener outliving the service
//! posts into nothing rather than keeping a dead event loop's state alive.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Wake;

use super::frame::{PartitionId, ReceiverId};
use crate::error::NetError;
use crate::input::{ChannelEvents, RemoteShared};
use crate::partition::ResultSubpartition;

/// Counters of the transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportMetrics {
    /// BufferResponses sent (data and events).
    pub buffers_sent: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// BufferResponses received.
    pub buffers_received: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// AddCredit messages sent.
    pub credit_messages: u64,
    /// Credit announced in them.
    pub credit_announced: u64,
    /// Heartbeats sent (on connections that had sent nothing else for an interval).
    pub heartbeats_sent: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Connections to peers that failed (lost, silent past the peer timeout, malformed,
    /// or failed by the peer); each channel on one got the error.
    pub connections_failed: u64,
    /// Accepted connections that never said a valid Hello (strangers, garbage, duplicate
    /// peers), closed without disturbing the others.
    pub connections_rejected: u64,
}

/// The state of one service that its handles and its event loop share.
pub(super) struct ServiceShared {
    pub(super) process: u32,
    pub(super) peers: Vec<SocketAddr>,
    pub(super) commands: Mutex<Vec<Command>>,
    pub(super) waker: mio::Waker,
    pub(super) partitions: Mutex<HashMap<PartitionId, Vec<Arc<ResultSubpartition>>>>,
    pub(super) next_receiver: AtomicU64,
    pub(super) metrics: Mutex<TransportMetrics>,
    /// The first fatal error of the event loop itself (not of one connection).
    pub(super) failure: Mutex<Option<String>>,
}

/// What a task thread (or a waker it left) asks of the event loop.
#[derive(Debug)]
pub(super) enum Command {
    /// Send a PartitionRequest for the channel to `peer` and route its buffers to it.
    OpenChannel {
        peer: u32,
        channel: Arc<RemoteShared>,
    },
    /// The channel has credit to announce (AddCredit).
    CreditAvailable(ReceiverId),
    /// The channel's reader is gone: CancelPartition.
    Cancelled(ReceiverId),
    /// A subpartition read by `peer` has something to send again.
    ReaderAvailable { peer: u32, receiver: ReceiverId },
    /// The gate's pool has a floating buffer again for a channel that wants one.
    FloatingAvailable(ReceiverId),
    /// The channel's debloater chose a buffer size: NewBufferSize.
    BufferSize { receiver: ReceiverId, bytes: u32 },
    /// Drain what readers still wait for, then stop.
    Stop,
    /// Stop at once.
    Abort,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn io_error(what: &str, error: &io::Error) -> NetError {
    NetError::Remote {
        peer: "the transport".to_owned(),
        message: format!("cannot {what}: {error}"),
    }
}

impl ServiceShared {
    pub(super) fn post(&self, command: Command) {
        lock(&self.commands).push(command);
        self.wake();
    }

    pub(super) fn wake(&self) {
        // A failed wake means the event loop is gone; its channels have failed already.
        let _ = self.waker.wake();
    }
}

/// The [`ChannelEvents`] of remote channels: commands to the event loop.
#[derive(Debug)]
pub(super) struct LoopEvents {
    pub(super) shared: Weak<ServiceShared>,
}

impl ChannelEvents for LoopEvents {
    fn credit_available(&self, receiver: ReceiverId) {
        if let Some(shared) = self.shared.upgrade() {
            shared.post(Command::CreditAvailable(receiver));
        }
    }

    fn cancelled(&self, receiver: ReceiverId) {
        if let Some(shared) = self.shared.upgrade() {
            shared.post(Command::Cancelled(receiver));
        }
    }

    fn buffer_size(&self, receiver: ReceiverId, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        if let Some(shared) = self.shared.upgrade() {
            shared.post(Command::BufferSize { receiver, bytes });
        }
    }
}

/// Wakes the event loop for one command when fired (a subpartition listener or the gate
/// pool's availability).
pub(super) struct CommandWaker {
    pub(super) shared: Weak<ServiceShared>,
    pub(super) peer: u32,
    pub(super) receiver: ReceiverId,
    pub(super) floating: bool,
}

impl Wake for CommandWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.shared.upgrade() {
            shared.post(if self.floating {
                Command::FloatingAvailable(self.receiver)
            } else {
                Command::ReaderAvailable {
                    peer: self.peer,
                    receiver: self.receiver,
                }
            });
        }
    }
}
