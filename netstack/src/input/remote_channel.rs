//! `RemoteInputChannel`: a consumer reading a subpartition of another worker process, fed
//! by the transport's event loop under credit-based flow control.
//!
//! ```text
//!   event loop (network thread)                          task thread
//!   BufferResponse header ──request_buffer──▶ segment    poll_next ◀── received queue
//!   payload read into it ──on_buffer (seq check)──▶ queue ──▶ NetworkBuffer ──drop──┐
//!                                                                                   │
//!   exclusive segment home ◀──────────────────── recycle ◀───────────────────────────┘
//!     └─▶ unannounced credit + 1 ──(0 → 1)──▶ ChannelEvents::credit_available ──▶ AddCredit
//! ```
//!
//! The channel owns `exclusive` segments for its whole life (announced as initial credit in
//! the PartitionRequest) and takes floating segments from its gate's pool when the
//! sender's backlog says more is coming: it wants `backlog + exclusive` free segments. Every
//! segment it gains is one more credit; the event loop announces accumulated credit in one
//! AddCredit. A buffer that arrives without a free segment for it, or out of sequence,
//! is a protocol error that fails the channel. Floating segments go back to the gate's pool
//! when their buffer drops; exclusive ones come back to the channel.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::task::Waker;

use weir_kernel::memory::MemorySegment;

use crate::buffer::{DataType, NetworkBuffer, Recycler};
use crate::error::{NetError, Result};
use crate::partition::ChannelIndex;
use crate::pool::{LocalBufferPool, NetworkBufferPool, PooledSegment};
use crate::sync::{Mutex, MutexGuard};
use crate::transport::{PartitionId, ReceiverId};

/// What a remote channel tells the transport; implemented by the event loop's handle.
pub trait ChannelEvents: Send + Sync + fmt::Debug {
    /// The channel has unannounced credit (it went from 0 to more).
    fn credit_available(&self, receiver: ReceiverId);

    /// The channel was released before its end: cancel the subpartition at the producer.
    fn cancelled(&self, receiver: ReceiverId);

    /// The channel's gate wants buffers of `bytes` bytes (debloating): NewBufferSize.
    fn buffer_size(&self, receiver: ReceiverId, bytes: usize);
}

/// Where a remote channel reads from and how many exclusive segments it owns.
#[derive(Debug, Clone)]
pub struct RemoteChannelSpec {
    /// The channel's index in its gate.
    pub index: ChannelIndex,
    /// Its id on the connection.
    pub receiver: ReceiverId,
    /// The partition read.
    pub partition: PartitionId,
    /// The subpartition read.
    pub subpartition: u32,
    /// The peer, as errors name it ("worker 1 at 127.0.0.1:40000").
    pub peer: String,
}

/// The consumer end of a remote subpartition (see the module docs).
#[derive(Debug)]
pub struct RemoteInputChannel {
    shared: Arc<RemoteShared>,
    ended: bool,
    backlog: usize,
    buffers_in: u64,
    bytes_in: u64,
}

/// The channel's state, shared with the event loop and (as recycler) with the buffers made
/// from its exclusive segments.
pub struct RemoteShared {
    spec: RemoteChannelSpec,
    exclusive: usize,
    grant: NetworkBufferPool,
    floating_pool: Arc<LocalBufferPool>,
    events: Arc<dyn ChannelEvents>,
    state: Mutex<RemoteState>,
}

struct RemoteState {
    received: VecDeque<NetworkBuffer>,
    expected_sequence: u32,
    // Free segments, each one credit the sender was (or will be) given.
    exclusive_free: Vec<MemorySegment>,
    floating_free: Vec<PooledSegment>,
    // The sender's backlog as last reported.
    backlog: usize,
    unannounced: u32,
    failure: Option<String>,
    listener: Option<Waker>,
    // Waiting on the gate's pool for floating segments.
    floating_waker: Option<Waker>,
    released: bool,
    // EndOfPartition arrived: the sender owes nothing more.
    end_received: bool,
}

impl RemoteInputChannel {
    /// A channel owning `exclusive` (the initial credit) segments taken from `grant`, and
    /// taking floating ones from `floating_pool`.
    ///
    /// # Errors
    ///
    /// [`NetError::InsufficientBuffers`] when the grant cannot spare the exclusive segments
    /// within `timeout`.
    pub fn new(
        spec: RemoteChannelSpec,
        exclusive: usize,
        grant: &NetworkBufferPool,
        floating_pool: Arc<LocalBufferPool>,
        events: Arc<dyn ChannelEvents>,
        timeout: std::time::Duration,
    ) -> Result<RemoteInputChannel> {
        let segments = grant.take_exclusive(exclusive, timeout)?;
        Ok(RemoteInputChannel {
            shared: Arc::new(RemoteShared {
                spec,
                exclusive,
                grant: grant.clone(),
                floating_pool,
                events,
                state: Mutex::new(RemoteState {
                    received: VecDeque::new(),
                    expected_sequence: 0,
                    exclusive_free: segments,
                    floating_free: Vec::new(),
                    backlog: 0,
                    unannounced: 0,
                    failure: None,
                    listener: None,
                    floating_waker: None,
                    released: false,
                    end_received: false,
                }),
            }),
            ended: false,
            backlog: 0,
            buffers_in: 0,
            bytes_in: 0,
        })
    }

    /// The state the transport's event loop feeds.
    pub fn shared(&self) -> Arc<RemoteShared> {
        Arc::clone(&self.shared)
    }

    /// This channel's index in its gate.
    pub fn index(&self) -> ChannelIndex {
        self.shared.spec.index
    }

    /// The next buffer received (data or an event, EndOfPartition last); `None` when
    /// nothing has arrived.
    ///
    /// # Errors
    ///
    /// The channel's failure: a lost connection, an error from the producer, a protocol
    /// violation, each naming the peer.
    pub fn poll_next(&mut self) -> Result<Option<NetworkBuffer>> {
        if self.ended {
            return Ok(None);
        }
        let mut state = self.shared.lock();
        let Some(buffer) = state.received.pop_front() else {
            return match &state.failure {
                Some(failure) => Err(NetError::Remote {
                    peer: self.shared.spec.peer.clone(),
                    message: failure.clone(),
                }),
                None => Ok(None),
            };
        };
        self.backlog = state.backlog;
        drop(state);
        self.buffers_in += 1;
        self.bytes_in += buffer.len() as u64;
        if buffer.data_type() == DataType::EndOfPartition {
            self.ended = true;
        }
        Ok(Some(buffer))
    }

    /// Registers `waker`, woken once when a buffer arrives or the channel fails.
    pub fn register_listener(&self, waker: &Waker) {
        let mut state = self.shared.lock();
        if state.received.is_empty() && state.failure.is_none() {
            state.listener = Some(waker.clone());
        } else {
            drop(state);
            waker.wake_by_ref();
        }
    }

    /// Whether EndOfPartition was handed out.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Asks the producer for buffers of `bytes` bytes (debloating): a NewBufferSize
    /// message through the transport.
    pub fn announce_buffer_size(&self, bytes: usize) {
        if !self.ended {
            self.shared
                .events
                .buffer_size(self.shared.spec.receiver, bytes);
        }
    }

    /// Buffers in flight to this channel and not yet handed out: received and not yet
    /// read, the sender's backlog as last reported (finished buffers queued there) and the
    /// one buffer its writer is filling. (Flink counts only the first two; missing the
    /// open buffer undercounts every remote channel by one, and the debloater sizes
    /// buffers too large by that share.) Buffers on the wire are not counted: the
    /// receiver cannot tell them from unused credit.
    pub fn buffers_in_use(&self) -> usize {
        if self.ended {
            return 0;
        }
        let state = self.shared.lock();
        state.received.len() + state.backlog + 1
    }

    /// The sender's backlog as last reported.
    pub fn backlog(&self) -> usize {
        self.backlog
    }

    /// Buffers handed out so far.
    pub fn buffers_in(&self) -> u64 {
        self.buffers_in
    }

    /// Bytes handed out so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
}

impl Drop for RemoteInputChannel {
    fn drop(&mut self) {
        let ended = self.ended;
        self.shared.release();
        if !ended {
            self.shared.events.cancelled(self.shared.spec.receiver);
        }
    }
}

impl RemoteShared {
    fn lock(&self) -> MutexGuard<'_, RemoteState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How this channel was set up.
    pub fn spec(&self) -> &RemoteChannelSpec {
        &self.spec
    }

    /// The initial credit: the exclusive segments (saturating at `u32::MAX`).
    pub fn initial_credit(&self) -> u32 {
        u32::try_from(self.exclusive).unwrap_or(u32::MAX)
    }

    /// A free segment for an arriving data buffer (floating first, so those go back to
    /// the gate sooner); `None` means the sender exceeded its credit.
    pub fn request_buffer(self: &Arc<Self>) -> Option<PooledSegment> {
        let mut state = self.lock();
        if let Some(floating) = state.floating_free.pop() {
            return Some(floating);
        }
        let segment = state.exclusive_free.pop()?;
        drop(state);
        Some(PooledSegment::new(
            segment,
            Arc::clone(self) as Arc<dyn Recycler>,
        ))
    }

    /// A buffer arrived with its sequence number and the sender's backlog.
    ///
    /// # Errors
    ///
    /// A sequence gap (the channel fails; the caller fails the connection).
    pub fn on_buffer(
        self: &Arc<Self>,
        buffer: NetworkBuffer,
        sequence: u32,
        backlog: u32,
    ) -> Result<()> {
        let listener = {
            let mut state = self.lock();
            if state.expected_sequence != sequence {
                let detail = format!(
                    "{} received buffer {sequence}, expected {}",
                    self.spec.receiver, state.expected_sequence
                );
                return Err(NetError::MalformedFrame { detail });
            }
            state.expected_sequence = state.expected_sequence.wrapping_add(1);
            state.backlog = backlog as usize;
            state.end_received |= buffer.data_type() == DataType::EndOfPartition;
            if state.released {
                None
            } else {
                state.received.push_back(buffer);
                state.listener.take()
            }
        };
        if let Some(listener) = listener {
            listener.wake();
        }
        self.request_floating();
        Ok(())
    }

    /// Takes floating segments from the gate's pool until the channel holds `backlog +
    /// exclusive` free ones (each is one more credit), or the pool has none (then the
    /// floating waker is registered: call again when it fires).
    pub fn request_floating(self: &Arc<Self>) {
        let mut announce = false;
        {
            let mut state = self.lock();
            if state.released {
                return;
            }
            let required = state.backlog + self.exclusive;
            while state.exclusive_free.len() + state.floating_free.len() < required {
                let waker = state.floating_waker.clone();
                match self.floating_pool.request(None, false, waker.as_ref()) {
                    Some(segment) => {
                        state.floating_free.push(segment);
                        announce |= state.unannounced == 0;
                        state.unannounced += 1;
                    }
                    None => break,
                }
            }
        }
        if announce {
            self.events.credit_available(self.spec.receiver);
        }
    }

    /// Sets the waker fired when the gate's pool may have a floating segment again.
    pub fn set_floating_waker(&self, waker: Waker) {
        self.lock().floating_waker = Some(waker);
    }

    /// Takes the credit not yet announced (0 when none).
    pub fn take_unannounced_credit(&self) -> u32 {
        std::mem::take(&mut self.lock().unannounced)
    }

    /// Fails the channel: the task's next poll returns an error naming the peer with
    /// `message`.
    pub fn fail(&self, message: String) {
        let listener = {
            let mut state = self.lock();
            if state.failure.is_none() {
                state.failure = Some(message);
            }
            state.listener.take()
        };
        if let Some(listener) = listener {
            listener.wake();
        }
    }

    /// Whether the channel expects nothing more from its connection: EndOfPartition
    /// arrived, or the task released it.
    pub fn is_complete(&self) -> bool {
        let state = self.lock();
        state.end_received || state.released
    }

    /// Whether the task released the channel.
    pub fn is_released(&self) -> bool {
        self.lock().released
    }

    /// Credit the sender may still use: the free segments.
    pub fn free_segments(&self) -> usize {
        let state = self.lock();
        state.exclusive_free.len() + state.floating_free.len()
    }

    /// Drops what was received and not read, returns free segments to the grant and the
    /// gate's pool; exclusive segments still in buffers go to the grant when they drop.
    fn release(&self) {
        let (received, exclusive, floating) = {
            let mut state = self.lock();
            state.released = true;
            state.listener = None;
            state.floating_waker = None;
            (
                std::mem::take(&mut state.received),
                std::mem::take(&mut state.exclusive_free),
                std::mem::take(&mut state.floating_free),
            )
        };
        drop((received, floating));
        self.grant.give_back_exclusive(exclusive, self.exclusive);
    }
}

impl Recycler for RemoteShared {
    fn recycle(&self, segment: MemorySegment) {
        let mut surplus = None;
        let announce = {
            let mut state = self.lock();
            if state.released {
                drop(state);
                self.grant.give_back(vec![segment]);
                return;
            }
            state.exclusive_free.push(segment);
            let required = state.backlog + self.exclusive;
            let free = state.exclusive_free.len() + state.floating_free.len();
            if free > required && !state.floating_free.is_empty() {
                // A floating segment is surplus now: back to the gate, no new credit.
                surplus = state.floating_free.pop();
                false
            } else {
                state.unannounced += 1;
                state.unannounced == 1
            }
        };
        // Outside the lock: the pool wakes its own waiters.
        drop(surplus);
        if announce {
            self.events.credit_available(self.spec.receiver);
        }
    }
}

impl fmt::Debug for RemoteShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("RemoteShared")
            .field("receiver", &self.spec.receiver)
            .field("received", &state.received.len())
            .field("exclusive_free", &state.exclusive_free.len())
            .field("floating_free", &state.floating_free.len())
            .field("unannounced", &state.unannounced)
            .field("failure", &state.failure)
            .finish()
    }
}
