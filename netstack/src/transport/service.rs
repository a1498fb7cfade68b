//! `NetworkService`: one worker process's end of the transport — one TCP connection per
//! peer process carrying every channel between the two, driven by one mio event loop
//! thread.
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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use weir_kernel::memory::{MemorySegment, Owner};

use super::frame::{BufferHeader, ErrorKind, FrameDecoder, Message, PartitionId, ReceiverId};
use super::liveness::{Liveness, Pulse};
use super::startup::connect_all;
use crate::buffer::{DataType, NetworkBuffer};
use crate::constants::{
    HEARTBEAT_INTERVAL_DEFAULT, HEARTBEATS_PER_PEER_TIMEOUT, PEER_TIMEOUT_DEFAULT,
    PEER_TIMEOUT_MIN, STRANGERS_MAX,
};
use crate::error::{NetError, Result};
use crate::input::{ChannelEvents, RemoteShared};
use crate::partition::{ResultPartition, ResultSubpartition, SubpartitionIndex};
use crate::pool::PooledSegment;

/// Frames read and frames written per connection per pass of the event loop.
pub const FRAMES_PER_PASS: usize = 64;

/// How a worker process's transport is set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// This process's index in `peers`.
    pub process: u32,
    /// Every process's listening address, by process index (timely's model: the same
    /// list on every process).
    pub peers: Vec<SocketAddr>,
    /// How long to wait for every peer to connect at startup.
    pub connect_timeout: Duration,
    /// The first wait before a partition request for a partition not yet registered is
    /// retried; it doubles on every retry.
    pub request_backoff_initial: Duration,
    /// How long a partition request may wait for its partition before PartitionNotFound.
    pub request_timeout: Duration,
    /// How long a stopping service keeps sending what its readers still wait for.
    pub drain_timeout: Duration,
    /// A connection that sent nothing for this long sends a Heartbeat (shorter than
    /// `peer_timeout`).
    pub heartbeat_interval: Duration,
    /// A connection on which nothing at all arrived for this long fails, with every
    /// channel on it: the peer is stopped, hung or partitioned. Also how long a connection
    /// accepted from a stranger may take to say hello.
    pub peer_timeout: Duration,
}

impl NetworkConfig {
    /// A configuration with the defaults: 30 s to connect, requests retried from 100 ms
    /// (doubling) for up to 10 s, 30 s to drain at shutdown, a heartbeat after 1 s without
    /// sending, and a peer silent for 10 s failed.
    pub fn new(process: u32, peers: Vec<SocketAddr>) -> NetworkConfig {
        NetworkConfig {
            process,
            peers,
            connect_timeout: Duration::from_secs(30),
            request_backoff_initial: Duration::from_millis(100),
            request_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            peer_timeout: PEER_TIMEOUT_DEFAULT,
        }
    }

    /// Sets the peer timeout, and the heartbeat interval to match: the default interval or
    /// a quarter of the timeout, whichever is shorter.
    #[must_use]
    pub fn with_peer_timeout(mut self, timeout: Duration) -> NetworkConfig {
        self.peer_timeout = timeout;
        self.heartbeat_interval =
            HEARTBEAT_INTERVAL_DEFAULT.min(timeout / HEARTBEATS_PER_PEER_TIMEOUT);
        self
    }

    /// Checks the fields that have a range.
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidConfig`] naming the field: a process index outside `peers`, a
    /// peer timeout below [`PEER_TIMEOUT_MIN`], or a heartbeat interval that is zero or not
    /// shorter than the peer timeout.
    pub fn validate(&self) -> Result<()> {
        if self.process as usize >= self.peers.len() {
            return Err(NetError::InvalidConfig {
                field: "process",
                value: self.process.to_string(),
                expected: "an index of peers",
            });
        }
        if self.peer_timeout < PEER_TIMEOUT_MIN {
            return Err(NetError::InvalidConfig {
                field: "peer_timeout",
                value: format!("{:?}", self.peer_timeout),
                expected: "at least 100 ms",
            });
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.peer_timeout {
            return Err(NetError::InvalidConfig {
                field: "heartbeat_interval",
                value: format!(
                    "{:?} with a peer timeout of {:?}",
                    self.heartbeat_interval, self.peer_timeout
                ),
                expected: "above 0 and shorter than the peer timeout",
            });
        }
        Ok(())
    }
}

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

/// One process's transport: connections to every peer and the event loop serving them.
pub struct NetworkService {
    shared: Arc<ServiceShared>,
    thread: Option<JoinHandle<()>>,
}

struct ServiceShared {
    process: u32,
    peers: Vec<SocketAddr>,
    commands: Mutex<Vec<Command>>,
    waker: mio::Waker,
    partitions: Mutex<HashMap<PartitionId, Vec<Arc<ResultSubpartition>>>>,
    next_receiver: AtomicU64,
    metrics: Mutex<TransportMetrics>,
    // The first fatal error of the event loop itself (not of one connection).
    failure: Mutex<Option<String>>,
}

#[derive(Debug)]
enum Command {
    OpenChannel {
        peer: u32,
        channel: Arc<RemoteShared>,
    },
    CreditAvailable(ReceiverId),
    Cancelled(ReceiverId),
    ReaderAvailable {
        peer: u32,
        receiver: ReceiverId,
    },
    FloatingAvailable(ReceiverId),
    BufferSize {
        receiver: ReceiverId,
        bytes: u32,
    },
    Stop,
    Abort,
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_error(what: &str, error: &io::Error) -> NetError {
    NetError::Remote {
        peer: "the transport".to_owned(),
        message: format!("cannot {what}: {error}"),
    }
}

pub(super) fn peer_name(peer: u32, peers: &[SocketAddr]) -> String {
    match peers.get(peer as usize) {
        Some(address) => format!("worker {peer} at {address}"),
        None => format!("worker {peer}"),
    }
}

impl ServiceShared {
    fn post(&self, command: Command) {
        lock(&self.commands).push(command);
        self.wake();
    }

    fn wake(&self) {
        // A failed wake means the event loop is gone; its channels have failed already.
        let _ = self.waker.wake();
    }
}

/// The [`ChannelEvents`] of remote channels: commands to the event loop.
#[derive(Debug)]
struct LoopEvents {
    shared: Weak<ServiceShared>,
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
struct CommandWaker {
    shared: Weak<ServiceShared>,
    peer: u32,
    receiver: ReceiverId,
    floating: bool,
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

/// A remote reader of one of this process's subpartitions.
struct ViewReader {
    subpartition: Arc<ResultSubpartition>,
    credit: u32,
    sequence: u32,
    queued: bool,
    waker: Waker,
}

/// Where an arriving payload goes.
enum Target {
    Data(PooledSegment),
    Event(MemorySegment),
    // A channel that is gone: read and drop the bytes.
    Discard,
}

struct Incoming {
    header: BufferHeader,
    target: Target,
    filled: usize,
}

struct Outgoing {
    header: Vec<u8>,
    written: usize,
    payload: Option<NetworkBuffer>,
}

struct Connection {
    name: String,
    stream: TcpStream,
    decoder: FrameDecoder,
    incoming: Option<Incoming>,
    outgoing: Option<Outgoing>,
    control: VecDeque<Message>,
    credit_pending: VecDeque<ReceiverId>,
    views: HashMap<ReceiverId, ViewReader>,
    available: VecDeque<ReceiverId>,
    channels: HashMap<ReceiverId, Arc<RemoteShared>>,
    // The socket said WouldBlock on write: wait for a WRITABLE event.
    write_blocked: bool,
    // The peer closed its end.
    closed: bool,
    // When to send a heartbeat, and when the peer has been silent too long.
    liveness: Liveness,
    // Bytes arrived during this read pass (the clock is read once per pass, not per read).
    read_any: bool,
    // Bytes left during this write pass.
    wrote_any: bool,
}

/// A connection accepted after startup, waiting for its Hello (which never comes right:
/// every peer is connected already).
struct Stranger {
    stream: TcpStream,
    decoder: FrameDecoder,
    deadline: Instant,
}

/// A partition request waiting for its partition to be registered.
struct PendingRequest {
    peer: u32,
    receiver: ReceiverId,
    partition: PartitionId,
    subpartition: u32,
    credit: u32,
    // A buffer size the reader announced before the partition was registered (debloating
    // starts at once), applied when the view is attached.
    buffer_size: Option<u32>,
    next_try: Instant,
    delay: Duration,
    deadline: Instant,
}

struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    shared: Arc<ServiceShared>,
    connections: HashMap<u32, Connection>,
    // Connections accepted after startup, waiting for their Hello.
    strangers: HashMap<Token, Stranger>,
    next_stranger: usize,
    // Which connection each local remote channel reads through.
    channel_peer: HashMap<ReceiverId, u32>,
    pending_requests: Vec<PendingRequest>,
    events_owner: Owner,
    request_backoff_initial: Duration,
    request_timeout: Duration,
    drain_timeout: Duration,
    heartbeat_interval: Duration,
    peer_timeout: Duration,
    stopping: Option<Instant>,
    scratch: Vec<u8>,
}

impl EventLoop {
    fn new(
        poll: Poll,
        listener: StdListener,
        shared: Arc<ServiceShared>,
        config: &NetworkConfig,
        events_owner: Owner,
    ) -> Result<EventLoop> {
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| io_error("watch the listener", &e))?;
        Ok(EventLoop {
            poll,
            listener,
            shared,
            connections: HashMap::new(),
            strangers: HashMap::new(),
            next_stranger: 1 << 20,
            channel_peer: HashMap::new(),
            pending_requests: Vec::new(),
            events_owner,
            request_backoff_initial: config.request_backoff_initial,
            request_timeout: config.request_timeout,
            drain_timeout: config.drain_timeout,
            heartbeat_interval: config.heartbeat_interval,
            peer_timeout: config.peer_timeout,
            stopping: None,
            scratch: vec![0; 16 * 1024],
        })
    }

    fn add_connection(&mut self, peer: u32, stream: StdStream) -> Result<()> {
        stream
            .set_nonblocking(true)
            .and_then(|()| stream.set_read_timeout(None))
            .map_err(|e| io_error("configure a connection", &e))?;
        let mut stream = TcpStream::from_std(stream);
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(peer as usize),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| io_error("watch a connection", &e))?;
        self.connections.insert(
            peer,
            Connection {
                name: peer_name(peer, &self.shared.peers),
                stream,
                decoder: FrameDecoder::new(),
                incoming: None,
                outgoing: None,
                control: VecDeque::new(),
                credit_pending: VecDeque::new(),
                views: HashMap::new(),
                available: VecDeque::new(),
                channels: HashMap::new(),
                write_blocked: false,
                closed: false,
                liveness: Liveness::new(Instant::now(), self.heartbeat_interval, self.peer_timeout),
                read_any: false,
                wrote_any: false,
            },
        );
        Ok(())
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut busy: Vec<u32> = Vec::new();
        loop {
            let timeout = if !busy.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                *lock(&self.shared.failure) = Some(format!("event loop poll failed: {error}"));
                break;
            }
            let mut touched: Vec<u32> = std::mem::take(&mut busy);
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) if self.strangers.contains_key(&Token(t)) => self.greet(Token(t)),
                    Token(t) => {
                        let peer = t as u32;
                        if event.is_writable()
                            && let Some(connection) = self.connections.get_mut(&peer)
                        {
                            connection.write_blocked = false;
                        }
                        touched.push(peer);
                    }
                }
            }
            let commands = std::mem::take(&mut *lock(&self.shared.commands));
            for command in commands {
                if let Some(peer) = self.command(command) {
                    touched.push(peer);
                }
            }
            self.retry_requests(&mut touched);
            touched.sort_unstable();
            touched.dedup();
            for peer in touched {
                match self.serve(peer) {
                    Ok(true) => busy.push(peer),
                    Ok(false) => {}
                    Err(error) => self.fail_connection(peer, &error),
                }
            }
            // After serving, so what arrived while this thread was not running counts.
            for peer in self.check_liveness() {
                if !busy.contains(&peer) {
                    busy.push(peer);
                }
            }
            if let Some(since) = self.stopping
                && (self.drained() || since.elapsed() >= self.drain_timeout)
            {
                break;
            }
        }
        let peers: Vec<u32> = self.connections.keys().copied().collect();
        for peer in peers {
            self.close_connection(peer);
        }
    }

    /// Whether nothing is left to send: every view finished, no frame is half written, and
    /// every registered subpartition was consumed (or released) — one whose remote reader
    /// has not asked for it yet still holds its data.
    fn drained(&self) -> bool {
        self.connections
            .values()
            .all(|c| c.views.is_empty() && c.outgoing.is_none() && c.control.is_empty())
            && lock(&self.shared.partitions)
                .values()
                .flatten()
                .all(|subpartition| subpartition.is_consumed())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let request = self.pending_requests.iter().map(|r| r.next_try);
        let stop = self.stopping.map(|since| since + self.drain_timeout);
        let liveness = self
            .connections
            .values()
            .filter(|c| !c.closed)
            .map(|c| c.liveness.next_deadline());
        let strangers = self.strangers.values().map(|s| s.deadline);
        request.chain(stop).chain(liveness).chain(strangers).min()
    }

    /// The timers of every connection: queues heartbeats (answers the connections that
    /// have one to send), fails connections whose peer has been silent for the peer
    /// timeout, and drops strangers past their deadline. Bounded: one look per connection.
    fn check_liveness(&mut self) -> Vec<u32> {
        let now = Instant::now();
        let mut heartbeats = Vec::new();
        let mut silent = Vec::new();
        for (&peer, connection) in &mut self.connections {
            if connection.closed {
                continue;
            }
            match connection.liveness.check(now) {
                Pulse::Quiet => {}
                Pulse::Heartbeat => {
                    connection.control.push_back(Message::Heartbeat);
                    heartbeats.push(peer);
                }
                Pulse::Silent(duration) => silent.push((peer, duration)),
            }
        }
        for (peer, silent) in silent {
            let error = NetError::PeerSilent {
                peer: peer_name(peer, &self.shared.peers),
                silent_ms: u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
            };
            self.fail_connection(peer, &error);
        }
        let expired: Vec<Token> = self
            .strangers
            .iter()
            .filter(|(_, stranger)| stranger.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            self.drop_stranger(token);
        }
        heartbeats
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one arm per command a task sends the event loop"
    )]
    fn command(&mut self, command: Command) -> Option<u32> {
        match command {
            Command::OpenChannel { peer, channel } => {
                let receiver = channel.spec().receiver;
                let Some(connection) = self.connections.get_mut(&peer) else {
                    channel.fail(format!(
                        "no connection to {}",
                        peer_name(peer, &self.shared.peers)
                    ));
                    return None;
                };
                let waker = Waker::from(Arc::new(CommandWaker {
                    shared: Arc::downgrade(&self.shared),
                    peer,
                    receiver,
                    floating: true,
                }));
                channel.set_floating_waker(waker);
                connection.control.push_back(Message::PartitionRequest {
                    partition: channel.spec().partition,
                    subpartition: channel.spec().subpartition,
                    receiver,
                    initial_credit: channel.initial_credit(),
                });
                connection.channels.insert(receiver, channel);
                self.channel_peer.insert(receiver, peer);
                Some(peer)
            }
            Command::CreditAvailable(receiver) => {
                let peer = *self.channel_peer.get(&receiver)?;
                self.connections
                    .get_mut(&peer)?
                    .credit_pending
                    .push_back(receiver);
                Some(peer)
            }
            Command::FloatingAvailable(receiver) => {
                let peer = *self.channel_peer.get(&receiver)?;
                let channel = self.connections.get(&peer)?.channels.get(&receiver)?;
                channel.request_floating();
                Some(peer)
            }
            Command::Cancelled(receiver) => {
                let peer = self.channel_peer.remove(&receiver)?;
                let connection = self.connections.get_mut(&peer)?;
                connection.channels.remove(&receiver);
                connection
                    .control
                    .push_back(Message::CancelPartition { receiver });
                Some(peer)
            }
            Command::ReaderAvailable { peer, receiver } => {
                let connection = self.connections.get_mut(&peer)?;
                let view = connection.views.get_mut(&receiver)?;
                if !view.queued {
                    view.queued = true;
                    connection.available.push_back(receiver);
                }
                Some(peer)
            }
            Command::BufferSize { receiver, bytes } => {
                let peer = *self.channel_peer.get(&receiver)?;
                self.connections
                    .get_mut(&peer)?
                    .control
                    .push_back(Message::NewBufferSize {
                        receiver,
                        size: bytes,
                    });
                Some(peer)
            }
            Command::Stop => {
                self.stopping.get_or_insert_with(Instant::now);
                None
            }
            Command::Abort => {
                self.stopping = Some(Instant::now());
                self.drain_timeout = Duration::ZERO;
                None
            }
        }
    }

    /// Partition requests whose partition may have been registered by now.
    fn retry_requests(&mut self, touched: &mut Vec<u32>) {
        let now = Instant::now();
        let due: Vec<PendingRequest> = {
            let (due, waiting) = std::mem::take(&mut self.pending_requests)
                .into_iter()
                .partition(|r| r.next_try <= now);
            self.pending_requests = waiting;
            due
        };
        for mut request in due {
            if self.attach_view(&request) {
                touched.push(request.peer);
            } else if now >= request.deadline {
                if let Some(connection) = self.connections.get_mut(&request.peer) {
                    connection.control.push_back(Message::ErrorResponse {
                        receiver: Some(request.receiver),
                        kind: ErrorKind::PartitionNotFound,
                        message: format!(
                            "{} subpartition {} was not registered at worker {} within {:?}",
                            request.partition,
                            request.subpartition,
                            self.shared.process,
                            self.request_timeout
                        ),
                    });
                    touched.push(request.peer);
                }
            } else {
                request.next_try = (now + request.delay).min(request.deadline);
                request.delay *= 2;
                self.pending_requests.push(request);
            }
        }
    }

    /// Creates the view reader of a partition request if the partition is registered.
    fn attach_view(&mut self, request: &PendingRequest) -> bool {
        let subpartition = {
            let partitions = lock(&self.shared.partitions);
            let Some(subpartitions) = partitions.get(&request.partition) else {
                return false;
            };
            match subpartitions.get(request.subpartition as usize) {
                Some(subpartition) => Arc::clone(subpartition),
                None => return false,
            }
        };
        let Some(connection) = self.connections.get_mut(&request.peer) else {
            return true;
        };
        if let Some(size) = request.buffer_size {
            subpartition.set_buffer_size(size as usize);
        }
        let waker = Waker::from(Arc::new(CommandWaker {
            shared: Arc::downgrade(&self.shared),
            peer: request.peer,
            receiver: request.receiver,
            floating: false,
        }));
        connection.views.insert(
            request.receiver,
            ViewReader {
                subpartition,
                credit: request.credit,
                sequence: 0,
                queued: true,
                waker,
            },
        );
        connection.available.push_back(request.receiver);
        true
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let token = Token(self.next_stranger);
                    self.next_stranger += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        lock(&self.shared.metrics).connections_rejected += 1;
                        continue;
                    }
                    let stranger = Stranger {
                        stream,
                        decoder: FrameDecoder::new(),
                        deadline: Instant::now() + self.peer_timeout,
                    };
                    self.strangers.insert(token, stranger);
                    if self.strangers.len() > STRANGERS_MAX {
                        // Tokens grow: the smallest is the oldest.
                        let oldest = *self.strangers.keys().min().expect("not empty");
                        self.drop_stranger(oldest);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or a failed accept (out of descriptors, a connection reset
                // before it was taken): the next readiness event tries again.
                Err(_) => return,
            }
        }
    }

    /// A connection accepted after startup: every peer is connected already, so whatever
    /// it says closes it (counted in the metrics); garbage never disturbs the other
    /// connections, and one that says nothing is closed at its deadline.
    fn greet(&mut self, token: Token) {
        let Some(stranger) = self.strangers.get_mut(&token) else {
            return;
        };
        let done = loop {
            let spare = stranger.decoder.spare();
            match stranger.stream.read(spare) {
                Ok(0) => break true,
                Ok(read) => match stranger.decoder.advance(read) {
                    Ok(None) => {}
                    Ok(Some(_)) | Err(_) => break true,
                },
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if done {
            self.drop_stranger(token);
        }
    }

    fn drop_stranger(&mut self, token: Token) {
        if let Some(mut stranger) = self.strangers.remove(&token) {
            let _ = self.poll.registry().deregister(&mut stranger.stream);
            lock(&self.shared.metrics).connections_rejected += 1;
        }
    }

    /// Reads and writes up to the per-pass bound; `Ok(true)` when work is left.
    fn serve(&mut self, peer: u32) -> Result<bool> {
        if !self.connections.contains_key(&peer) {
            return Ok(false);
        }
        let more_to_read = self.read(peer)?;
        let more_to_write = self.write(peer)?;
        Ok(more_to_read || more_to_write)
    }

    fn read(&mut self, peer: u32) -> Result<bool> {
        let result = self.read_frames(peer);
        if let Some(connection) = self.connections.get_mut(&peer)
            && connection.read_any
        {
            connection.read_any = false;
            connection.liveness.received(Instant::now());
        }
        result
    }

    fn read_frames(&mut self, peer: u32) -> Result<bool> {
        for _ in 0..FRAMES_PER_PASS {
            let connection = self.connections.get_mut(&peer).expect("checked by serve");
            if connection.closed {
                return Ok(false);
            }
            if let Some(incoming) = &mut connection.incoming {
                let size = incoming.header.size as usize;
                let target: &mut [u8] = match &mut incoming.target {
                    Target::Data(segment) => {
                        &mut segment.segment_mut().as_mut_slice()[incoming.filled..size]
                    }
                    Target::Event(segment) => &mut segment.as_mut_slice()[incoming.filled..size],
                    Target::Discard => {
                        let left = (size - incoming.filled).min(self.scratch.len());
                        &mut self.scratch[..left]
                    }
                };
                match connection.stream.read(target) {
                    Ok(0) => return Err(lost("closed the connection in the middle of a buffer")),
                    Ok(read) => {
                        connection.read_any = true;
                        incoming.filled += read;
                        if incoming.filled == size {
                            let incoming = connection.incoming.take().expect("present");
                            self.deliver(peer, incoming)?;
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(lost(&error.to_string())),
                }
                continue;
            }
            let spare = connection.decoder.spare();
            match connection.stream.read(spare) {
                Ok(0) => {
                    connection.closed = true;
                    if !connection.channels.is_empty() || !connection.views.is_empty() {
                        return Err(lost("closed the connection"));
                    }
                    return Ok(false);
                }
                Ok(read) => {
                    connection.read_any = true;
                    if let Some(message) = connection.decoder.advance(read)? {
                        self.handle(peer, message)?;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(lost(&error.to_string())),
            }
        }
        Ok(true)
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one arm per message kind of the wire protocol (docs/FORMAT.md §6)"
    )]
    fn handle(&mut self, peer: u32, message: Message) -> Result<()> {
        let connection = self.connections.get_mut(&peer).expect("checked by serve");
        match message {
            Message::BufferResponse(header) => {
                let channel = connection.channels.get(&header.receiver).map(Arc::clone);
                let target = match (&channel, header.data_type) {
                    (None, _) => Target::Discard,
                    (Some(channel), DataType::Data) => match channel.request_buffer() {
                        Some(segment) if segment.size() >= header.size as usize => {
                            Target::Data(segment)
                        }
                        Some(segment) => {
                            return Err(protocol(format!(
                                "a buffer of {} bytes for {} exceeds its {}-byte segment",
                                header.size,
                                header.receiver,
                                segment.size()
                            )));
                        }
                        None => {
                            return Err(protocol(format!(
                                "{} sent a data buffer for {} without credit",
                                connection.name, header.receiver
                            )));
                        }
                    },
                    (Some(_), _) => {
                        let segment = self.events_owner.allocate_one()?;
                        if segment.size() < header.size as usize {
                            return Err(protocol(format!(
                                "an event of {} bytes exceeds a {}-byte segment",
                                header.size,
                                segment.size()
                            )));
                        }
                        Target::Event(segment)
                    }
                };
                let incoming = Incoming {
                    header,
                    target,
                    filled: 0,
                };
                if header.size == 0 {
                    self.deliver(peer, incoming)?;
                } else {
                    connection.incoming = Some(incoming);
                }
            }
            Message::BacklogAnnouncement { receiver, .. } => {
                if let Some(channel) = connection.channels.get(&receiver) {
                    channel.request_floating();
                }
            }
            Message::ErrorResponse {
                receiver: Some(receiver),
                message,
                ..
            } => {
                if let Some(channel) = connection.channels.remove(&receiver) {
                    channel.fail(message);
                }
            }
            Message::ErrorResponse {
                receiver: None,
                message,
                ..
            } => return Err(lost(&format!("reported a fatal error: {message}"))),
            Message::PartitionRequest {
                partition,
                subpartition,
                receiver,
                initial_credit,
            } => {
                let now = Instant::now();
                self.pending_requests.push(PendingRequest {
                    peer,
                    receiver,
                    partition,
                    subpartition,
                    credit: initial_credit,
                    buffer_size: None,
                    next_try: now,
                    delay: self.request_backoff_initial,
                    deadline: now + self.request_timeout,
                });
                let mut touched = Vec::new();
                self.retry_requests(&mut touched);
            }
            Message::AddCredit { receiver, credit } => {
                if let Some(view) = connection.views.get_mut(&receiver) {
                    view.credit = view.credit.saturating_add(credit);
                    if !view.queued {
                        view.queued = true;
                        connection.available.push_back(receiver);
                    }
                }
            }
            Message::CancelPartition { receiver } => {
                if let Some(view) = connection.views.remove(&receiver) {
                    view.subpartition.release();
                }
                self.pending_requests
                    .retain(|r| !(r.peer == peer && r.receiver == receiver));
            }
            Message::Close => connection.closed = true,
            Message::NewBufferSize { receiver, size } => {
                if let Some(view) = connection.views.get(&receiver) {
                    view.subpartition.set_buffer_size(size as usize);
                } else if let Some(request) = self
                    .pending_requests
                    .iter_mut()
                    .find(|r| r.peer == peer && r.receiver == receiver)
                {
                    request.buffer_size = Some(size);
                }
            }
            // Barriers block a channel at its reader, which simply stops reading it; the
            // producer has nothing to resume.
            Message::ResumeConsumption { .. } => {}
            // Its arrival already counted as life (every byte read does).
            Message::Heartbeat => lock(&self.shared.metrics).heartbeats_received += 1,
            Message::Hello { .. } => {
                return Err(protocol(format!("{} said hello twice", connection.name)));
            }
        }
        Ok(())
    }

    fn deliver(&mut self, peer: u32, incoming: Incoming) -> Result<()> {
        let connection = self.connections.get_mut(&peer).expect("checked by serve");
        let header = incoming.header;
        let size = header.size as usize;
        let buffer = match incoming.target {
            Target::Discard => return Ok(()),
            Target::Data(segment) => segment.into_buffer(size, header.data_type),
            Target::Event(segment) => NetworkBuffer::new(segment, size, header.data_type),
        };
        {
            let mut metrics = lock(&self.shared.metrics);
            metrics.buffers_received += 1;
            metrics.bytes_received += size as u64;
        }
        let Some(channel) = connection.channels.get(&header.receiver) else {
            return Ok(());
        };
        let end = header.data_type == DataType::EndOfPartition;
        channel.on_buffer(buffer, header.sequence, header.backlog)?;
        if end {
            connection.channels.remove(&header.receiver);
            self.channel_peer.remove(&header.receiver);
        }
        Ok(())
    }

    /// Writes frames until the socket would block, nothing is left, or the pass's bound;
    /// `Ok(true)` when work is left. Any byte written counts as sent for the heartbeat.
    fn write(&mut self, peer: u32) -> Result<bool> {
        let connection = self.connections.get_mut(&peer).expect("checked by serve");
        if connection.write_blocked {
            return Ok(false);
        }
        let result = write_frames(connection, &self.shared);
        if connection.wrote_any {
            connection.wrote_any = false;
            connection.liveness.sent(Instant::now());
        }
        result
    }

    /// Fails every channel of the connection with `error` naming the peer, releases the
    /// subpartitions it was reading, and closes it.
    fn fail_connection(&mut self, peer: u32, error: &NetError) {
        let cause = match error {
            NetError::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        };
        // A peer that closes once it sent everything and owes nothing (it finished before
        // this worker did) is no failure worth reporting.
        let benign = self.connections.get(&peer).is_some_and(|connection| {
            connection
                .channels
                .values()
                .all(|channel| channel.is_complete())
                && connection
                    .views
                    .values()
                    .all(|view| view.subpartition.is_consumed())
        });
        if !benign {
            // The channels carry the error to their tasks; the count is for the rest.
            lock(&self.shared.metrics).connections_failed += 1;
        }
        if let Some(connection) = self.connections.get_mut(&peer)
            && matches!(error, NetError::MalformedFrame { .. })
        {
            // Best effort: tell the peer why before closing.
            let mut bytes = Vec::new();
            let mut message = cause.clone();
            let mut end = message.len().min(super::frame::ERROR_MESSAGE_BYTES_MAX);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            Message::ErrorResponse {
                receiver: None,
                kind: ErrorKind::Protocol,
                message,
            }
            .encode(&mut bytes);
            let _ = connection.stream.write(&bytes);
        }
        if let Some(connection) = self.connections.get(&peer) {
            for channel in connection.channels.values() {
                channel.fail(format!("connection lost: {cause}"));
            }
        }
        self.close_connection(peer);
    }

    fn close_connection(&mut self, peer: u32) {
        let Some(mut connection) = self.connections.remove(&peer) else {
            return;
        };
        for view in connection.views.values() {
            view.subpartition.release();
        }
        self.channel_peer.retain(|_, p| *p != peer);
        self.pending_requests.retain(|r| r.peer != peer);
        let _ = self.poll.registry().deregister(&mut connection.stream);
    }
}

/// Writes the connection's frames until the socket would block, nothing is left, or the
/// pass's bound; `Ok(true)` when work is left.
fn write_frames(connection: &mut Connection, shared: &ServiceShared) -> Result<bool> {
    for _ in 0..FRAMES_PER_PASS {
        if connection.outgoing.is_none() && !next_frame(connection, shared) {
            return Ok(false);
        }
        let outgoing = connection.outgoing.as_mut().expect("a frame to write");
        let header_left = outgoing.header.len().saturating_sub(outgoing.written);
        let payload_at = outgoing.written.saturating_sub(outgoing.header.len());
        let payload = outgoing
            .payload
            .as_ref()
            .map_or(&[][..], |b| &b.as_bytes()[payload_at..]);
        let slices = [
            IoSlice::new(&outgoing.header[outgoing.header.len() - header_left..]),
            IoSlice::new(payload),
        ];
        match connection.stream.write_vectored(&slices) {
            Ok(0) => return Err(lost("stopped accepting bytes")),
            Ok(written) => {
                connection.wrote_any = true;
                outgoing.written += written;
                let total =
                    outgoing.header.len() + outgoing.payload.as_ref().map_or(0, NetworkBuffer::len);
                if outgoing.written == total {
                    connection.outgoing = None;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                connection.write_blocked = true;
                return Ok(false);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(lost(&error.to_string())),
        }
    }
    Ok(true)
}

/// Chooses the connection's next frame: control messages first, then accumulated credit,
/// then a buffer of the next view reader with something it may send (round robin).
fn next_frame(connection: &mut Connection, shared: &ServiceShared) -> bool {
    if let Some(message) = connection.control.pop_front() {
        if message == Message::Heartbeat {
            connection.liveness.heartbeat_taken();
            lock(&shared.metrics).heartbeats_sent += 1;
        }
        connection.outgoing = Some(encoded(&message, None));
        return true;
    }
    while let Some(receiver) = connection.credit_pending.pop_front() {
        let Some(channel) = connection.channels.get(&receiver) else {
            continue;
        };
        let credit = channel.take_unannounced_credit();
        if credit > 0 {
            let mut metrics = lock(&shared.metrics);
            metrics.credit_messages += 1;
            metrics.credit_announced += u64::from(credit);
            drop(metrics);
            connection.outgoing = Some(encoded(&Message::AddCredit { receiver, credit }, None));
            return true;
        }
    }
    while let Some(receiver) = connection.available.pop_front() {
        let Some(view) = connection.views.get_mut(&receiver) else {
            continue;
        };
        view.queued = false;
        let polled = view
            .subpartition
            .poll_buffer_with_credit(view.credit > 0)
            .or_else(|| {
                // Nothing now: listen, then look once more (data may have come in between).
                view.subpartition.register_listener(&view.waker);
                view.subpartition.poll_buffer_with_credit(view.credit > 0)
            });
        let Some(polled) = polled else {
            continue;
        };
        let buffer = polled.buffer;
        if buffer.data_type() == DataType::Data {
            view.credit -= 1;
        }
        let header = BufferHeader {
            receiver,
            subpartition: view.subpartition.index().0,
            sequence: view.sequence,
            backlog: u32::try_from(polled.backlog).unwrap_or(u32::MAX),
            data_type: buffer.data_type(),
            size: u32::try_from(buffer.len()).expect("a buffer fits a frame"),
        };
        view.sequence = view.sequence.wrapping_add(1);
        if buffer.data_type() == DataType::EndOfPartition {
            connection.views.remove(&receiver);
        } else {
            view.queued = true;
            connection.available.push_back(receiver);
        }
        {
            let mut metrics = lock(&shared.metrics);
            metrics.buffers_sent += 1;
            metrics.bytes_sent += buffer.len() as u64;
        }
        connection.outgoing = Some(encoded(&Message::BufferResponse(header), Some(buffer)));
        return true;
    }
    false
}

fn encoded(message: &Message, payload: Option<NetworkBuffer>) -> Outgoing {
    let mut header = Vec::with_capacity(40);
    message.encode(&mut header);
    Outgoing {
        header,
        written: 0,
        payload,
    }
}

fn lost(what: &str) -> NetError {
    NetError::Remote {
        peer: "the peer".to_owned(),
        message: what.to_owned(),
    }
}

fn protocol(detail: String) -> NetError {
    NetError::MalformedFrame { detail }
}
