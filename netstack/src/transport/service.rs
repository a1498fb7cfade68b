//! `NetworkService`: one worker process's end of the transport — one TCP connection per
//! peer process carrying every channel between the two, driven by one mio event loop
//! thread. This is the face tasks see: start, register partitions, open channels, read
//! the metrics, stop or abort.
//!
//! ```text
//!   task threads                         event loop thread ("weir-net")
//!   register_partition(id, partition)    PartitionRequest ──▶ view reader on the subpartition
//!   open_channel(peer, …) ──command──▶   ──▶ PartitionRequest(initial credit) to the peer
//!   subpartition listener ──command──▶   reader available ──▶ BufferResponse (writev: header
//!                                          + the segment's bytes), data only with credit
//!   exclusive buffer recycled ─command─▶ AddCredit (all credit accumulated since the last)
//!                                        BufferResponse header ──▶ the channel's credited
//!                                          segment ──read(2) payload straight into it──▶ queue
//! ```
//!
//! Every pass does bounded work per connection (at most [`FRAMES_PER_PASS`] frames read and
//! written) and comes back to a connection with work left without waiting for readiness.
//! Each connection has at most one partially written frame; readers with credit and data
//! take turns (round robin). A data buffer goes out only with credit; events need none. A
//! failure — the peer gone, a malformed frame, an error it reports, or nothing at all from
//! it for the peer timeout (a stopped, hung or partitioned peer; every connection that sent
//! nothing for the heartbeat interval sends a Heartbeat, so a live peer is never silent) —
//! fails the channels of that connection with an error naming the peer and releases the
//! subpartitions it was reading, so no task waits forever. The timers are checked on every
//! pass, busy or idle (the poll waits at most until the next one is due).
//!
//! Where the rest lives: the configuration in `config`, the startup handshake in
//! `startup`, what tasks and the loop share in `shared`, the loop in `event_loop` (its
//! schedule in `schedule`, retries in `requests`, strangers in `strangers`), one
//! connection's state and writing in `connection`, the heartbeat timing in `liveness`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::Poll;
use weir_kernel::memory::Owner;

use super::config::peer_name;
use super::event_loop::{EventLoop, WAKER};
use super::frame::{PartitionId, ReceiverId};
use super::shared::{Command, LoopEvents, ServiceShared, io_error, lock};
use super::startup::connect_all;
use crate::error::{NetError, Result};
use crate::input::{ChannelEvents, RemoteShared};
use crate::partition::{ResultPartition, SubpartitionIndex};

pub use super::config::NetworkConfig;
pub use super::shared::TransportMetrics;
pub use crate::constants::FRAMES_PER_PASS;

/// One process's transport: connections to every peer and the event loop serving them.
pub struct NetworkService {
    shared: Arc<ServiceShared>,
    thread: Option<JoinHandle<()>>,
}

impl NetworkService {
    /// Binds this process's address, connects to every peer (each process connects to the
    /// lower-indexed ones and accepts the higher; both sides say Hello first, every
    /// connection greeted on its own) and starts the event loop. `events_owner`
    /// provides the segments incoming events are read into (events need no credit, so they
    /// do not come from the grant).
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidConfig`] for a configuration [`NetworkConfig::validate`]
    /// rejects; [`NetError::Remote`] naming the peer when it cannot be reached or greeted
    /// within the connect timeout; an I/O error binding the address is reported the same
    /// way. Connections from strangers (silent, or garbage) are closed and counted in
    /// [`TransportMetrics::connections_rejected`], never an error.
    ///
    /// # Panics
    ///
    /// When the event loop thread cannot start.
    pub fn start(config: NetworkConfig, events_owner: Owner) -> Result<NetworkService> {
        config.validate()?;
        let streams = connect_all(&config)?;
        let poll = Poll::new().map_err(|e| io_error("create the event loop", &e))?;
        let waker = mio::Waker::new(poll.registry(), WAKER)
            .map_err(|e| io_error("create the event loop's waker", &e))?;
        let shared = Arc::new(ServiceShared {
            process: config.process,
            peers: config.peers.clone(),
            commands: Mutex::new(Vec::new()),
            waker,
            partitions: Mutex::new(HashMap::new()),
            next_receiver: AtomicU64::new(1),
            metrics: Mutex::new(TransportMetrics {
                connections_rejected: streams.rejected,
                ..TransportMetrics::default()
            }),
            failure: Mutex::new(None),
        });
        let mut event_loop = EventLoop::new(
            poll,
            streams.listener,
            Arc::clone(&shared),
            &config,
            events_owner,
        )?;
        for (peer, stream) in streams.connections {
            event_loop.add_connection(peer, stream)?;
        }
        let thread = std::thread::Builder::new()
            .name(format!("weir-net-{}", config.process))
            .spawn(move || event_loop.run())
            .expect("the event loop thread starts");
        Ok(NetworkService {
            shared,
            thread: Some(thread),
        })
    }

    /// This process's index.
    pub fn process(&self) -> u32 {
        self.shared.process
    }

    /// Makes `partition`'s subpartitions available to remote readers as `id`.
    pub fn register_partition(&self, id: PartitionId, partition: &ResultPartition) {
        let subpartitions = (0..partition.subpartition_count())
            .map(|i| partition.subpartition(SubpartitionIndex::from_usize(i)))
            .collect();
        lock(&self.shared.partitions).insert(id, subpartitions);
        self.shared.wake();
    }

    /// A fresh receiver id for a remote channel of this process.
    pub fn next_receiver(&self) -> ReceiverId {
        ReceiverId(self.shared.next_receiver.fetch_add(1, Ordering::Relaxed))
    }

    /// The handle remote channels report credit and cancellation through.
    pub fn channel_events(&self) -> Arc<dyn ChannelEvents> {
        Arc::new(LoopEvents {
            shared: Arc::downgrade(&self.shared),
        })
    }

    /// How errors name process `peer`: "worker 1 at 127.0.0.1:40000".
    pub fn peer_name(&self, peer: u32) -> String {
        peer_name(peer, &self.shared.peers)
    }

    /// Starts reading a subpartition of process `peer` into `channel`: the event loop sends
    /// the PartitionRequest with the channel's initial credit.
    pub fn open_channel(&self, peer: u32, channel: Arc<RemoteShared>) {
        self.shared.post(Command::OpenChannel { peer, channel });
    }

    /// The counters now.
    pub fn metrics(&self) -> TransportMetrics {
        *lock(&self.shared.metrics)
    }

    /// Stops the event loop once the readers of this process's partitions got everything
    /// (or the drain timeout passed), and waits for it.
    ///
    /// # Errors
    ///
    /// The event loop's own fatal error, if it had one.
    pub fn stop(mut self) -> Result<()> {
        self.stop_and_join();
        match lock(&self.shared.failure).take() {
            Some(message) => Err(NetError::Remote {
                peer: format!("the event loop of worker {}", self.shared.process),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Stops the event loop at once, without waiting for readers (a failed job: its
    /// peers learn of it from the closed connections), and waits for it.
    pub fn abort(mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.post(Command::Abort);
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.post(Command::Stop);
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for NetworkService {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkService")
            .field("process", &self.shared.process)
            .field("peers", &self.shared.peers)
            .finish_non_exhaustive()
    }
}
