//! The event loop thread of one worker's transport: one mio poll over every connection,
//! the listener and the command waker, and the dispatch of what each pass brings.
//!
//! ```text
//!   poll (timeout from Schedule) ──▶ readiness ─┐
//!   commands (task threads) ──────▶ command() ──┼─▶ Pass ──▶ serve(peer): read ≤ N frames
//!   requests due (PendingRequests) ─────────────┘      handle / deliver, write ≤ N frames
//!   liveness: heartbeats queued, silent peers failed ──▶ busy ──▶ next pass
//!   stopping: Drain::is_over ──▶ close every connection, end the thread
//! ```
//!
//! The scheduling decisions live in [`super::schedule`], the retry timing in
//! [`super::requests`], the heartbeat timing in [`super::liveness`], the writing in
//! [`super::connection`]; this module holds the sockets and ties them together. A
//! failure of one connection (lost peer, malformed frame, silence) fails that
//! connection's channels and nothing else; only a failed poll ends the loop with an error.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use weir_kernel::memory::Owner;

use super::config::{NetworkConfig, peer_name};
use super::connection::{Connection, Incoming, Target, ViewReader, lost, protocol};
use super::frame::{BufferHeader, ERROR_MESSAGE_BYTES_MAX, ErrorKind, Message, ReceiverId};
use super::liveness::{Liveness, Pulse};
use super::requests::{PendingRequest, PendingRequests};
use super::schedule::{Drain, Schedule};
use super::shared::{Command, CommandWaker, ServiceShared, io_error, lock};
use super::strangers::Strangers;
use crate::buffer::{DataType, NetworkBuffer};
use crate::constants::{
    DISCARD_SCRATCH_BYTES, FRAMES_PER_PASS, LINGER_POLL, LINGER_TIMEOUT, POLL_EVENTS_CAPACITY,
};
use crate::error::{NetError, Result};
use crate::input::RemoteShared;

/// The listener's token; a peer's token is its process index.
const LISTENER: Token = Token(usize::MAX - 1);
/// The command waker's token.
pub(super) const WAKER: Token = Token(usize::MAX - 2);

/// The event loop: every connection of this process and the state it serves them with.
pub(super) struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    shared: Arc<ServiceShared>,
    connections: HashMap<u32, Connection>,
    strangers: Strangers,
    /// Which connection each local remote channel reads through.
    channel_peer: HashMap<ReceiverId, u32>,
    requests: PendingRequests,
    events_owner: Owner,
    config: NetworkConfig,
    drain: Drain,
    /// Where payloads for channels that are gone are read and dropped.
    scratch: Vec<u8>,
}

impl EventLoop {
    /// A loop over `poll` (whose waker is [`WAKER`]) watching `listener`, no connection
    /// yet; `events_owner` provides the segments incoming events are read into.
    ///
    /// # Errors
    ///
    /// The listener cannot be watched.
    pub(super) fn new(
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
            strangers: Strangers::new(),
            channel_peer: HashMap::new(),
            requests: PendingRequests::default(),
            events_owner,
            config: config.clone(),
            drain: Drain::new(config.drain_timeout),
            scratch: vec![0; DISCARD_SCRATCH_BYTES],
        })
    }

    /// Serves the greeted connection to `peer` from now on.
    ///
    /// # Errors
    ///
    /// The stream cannot be made non-blocking or watched.
    pub(super) fn add_connection(&mut self, peer: u32, stream: StdStream) -> Result<()> {
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
        let liveness = Liveness::new(
            Instant::now(),
            self.config.heartbeat_interval,
            self.config.peer_timeout,
        );
        let name = peer_name(peer, &self.shared.peers);
        self.connections
            .insert(peer, Connection::new(name, stream, liveness));
        Ok(())
    }

    /// Runs passes until stopped and drained (or aborted), then closes every connection.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(POLL_EVENTS_CAPACITY);
        let mut schedule = Schedule::default();
        loop {
            let timeout = schedule.poll_timeout(self.next_deadline(), Instant::now());
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                *lock(&self.shared.failure) = Some(format!("event loop poll failed: {error}"));
                break;
            }
            let mut pass = schedule.begin_pass();
            for event in &events {
                if let Some(peer) = self.readiness(event.token(), event.is_writable()) {
                    pass.touch(peer);
                }
            }
            let commands = std::mem::take(&mut *lock(&self.shared.commands));
            for command in commands {
                if let Some(peer) = self.command(command) {
                    pass.touch(peer);
                }
            }
            for peer in self.retry_requests() {
                pass.touch(peer);
            }
            for peer in pass.into_order() {
                match self.serve(peer) {
                    Ok(true) => schedule.busy(peer),
                    Ok(false) => {}
                    Err(error) => self.fail_connection(peer, &error),
                }
            }
            // After serving, so what arrived while this thread was not running counts.
            for peer in self.check_liveness() {
                schedule.busy(peer);
            }
            if self.drain.is_over(Instant::now(), || self.drained()) {
                break;
            }
        }
        let peers: Vec<u32> = self.connections.keys().copied().collect();
        let closing: Vec<TcpStream> = peers
            .into_iter()
            .filter_map(|peer| self.remove_connection(peer))
            .map(|connection| connection.stream)
            .collect();
        linger(closing, &mut self.scratch);
    }

    /// What a readiness event asks: the peer to serve, if it is a connection's.
    fn readiness(&mut self, token: Token, writable: bool) -> Option<u32> {
        match token {
            LISTENER => {
                let deadline = Instant::now() + self.config.peer_timeout;
                let dropped =
                    self.strangers
                        .accept_all(&self.listener, self.poll.registry(), deadline);
                self.rejected(dropped);
                None
            }
            WAKER => None,
            token if self.strangers.contains(token) => {
                let dropped = self.strangers.greet(token, self.poll.registry());
                self.rejected(dropped);
                None
            }
            Token(t) => {
                let peer = t as u32;
                if writable && let Some(connection) = self.connections.get_mut(&peer) {
                    connection.write_blocked = false;
                }
                Some(peer)
            }
        }
    }

    fn rejected(&self, dropped: u64) {
        if dropped > 0 {
            lock(&self.shared.metrics).connections_rejected += dropped;
        }
    }

    /// Whether nothing is left to send: every view finished, no frame is half written, and
    /// every registered subpartition was consumed (or released) — one whose remote reader
    /// has not asked for it yet still holds its data.
    fn drained(&self) -> bool {
        self.connections.values().all(Connection::is_drained)
            && lock(&self.shared.partitions)
                .values()
                .flatten()
                .all(|subpartition| subpartition.is_consumed())
    }

    /// The earliest timer: a request retry, the drain's end, a heartbeat or silence, a
    /// stranger's deadline.
    fn next_deadline(&self) -> Option<Instant> {
        let liveness = self
            .connections
            .values()
            .filter(|c| !c.closed)
            .map(|c| c.liveness.next_deadline());
        self.requests
            .next_deadline()
            .into_iter()
            .chain(self.drain.deadline())
            .chain(liveness)
            .chain(self.strangers.next_deadline())
            .min()
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
        let dropped = self.strangers.expire(now, self.poll.registry());
        self.rejected(dropped);
        heartbeats
    }

    /// Carries out a task's command; answers the connection it gave work, if any.
    fn command(&mut self, command: Command) -> Option<u32> {
        match command {
            Command::OpenChannel { peer, channel } => self.open_channel(peer, channel),
            Command::CreditAvailable(receiver) => {
                let peer = *self.channel_peer.get(&receiver)?;
                let connection = self.connections.get_mut(&peer)?;
                connection.credit_pending.push_back(receiver);
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
                let cancel = Message::CancelPartition { receiver };
                connection.control.push_back(cancel);
                Some(peer)
            }
            Command::ReaderAvailable { peer, receiver } => {
                let connection = self.connections.get_mut(&peer)?;
                connection.views.get(&receiver)?;
                connection.queue_view(receiver);
                Some(peer)
            }
            Command::BufferSize { receiver, bytes } => {
                let peer = *self.channel_peer.get(&receiver)?;
                let connection = self.connections.get_mut(&peer)?;
                let size = Message::NewBufferSize {
                    receiver,
                    size: bytes,
                };
                connection.control.push_back(size);
                Some(peer)
            }
            Command::Stop => {
                self.drain.stop(Instant::now());
                None
            }
            Command::Abort => {
                self.drain.abort(Instant::now());
                None
            }
        }
    }

    /// Queues the channel's PartitionRequest to `peer` and routes its buffers to it; a
    /// channel to a peer without a connection fails at once.
    fn open_channel(&mut self, peer: u32, channel: Arc<RemoteShared>) -> Option<u32> {
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

    /// Tries the partition requests that are due; answers the connections given work (a
    /// view attached, or PartitionNotFound queued).
    fn retry_requests(&mut self) -> Vec<u32> {
        let now = Instant::now();
        let mut touched = Vec::new();
        for request in self.requests.take_due(now) {
            if self.attach_view(&request) {
                touched.push(request.peer);
            } else if request.expired(now) {
                if let Some(connection) = self.connections.get_mut(&request.peer) {
                    connection.control.push_back(Message::ErrorResponse {
                        receiver: Some(request.receiver),
                        kind: ErrorKind::PartitionNotFound,
                        message: format!(
                            "{} subpartition {} was not registered at worker {} within {:?}",
                            request.partition,
                            request.subpartition,
                            self.shared.process,
                            self.config.request_timeout
                        ),
                    });
                    touched.push(request.peer);
                }
            } else {
                self.requests.back_off(request, now);
            }
        }
        touched
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
        let view = ViewReader {
            subpartition,
            credit: request.credit,
            sequence: 0,
            queued: true,
            waker,
        };
        connection.views.insert(request.receiver, view);
        connection.available.push_back(request.receiver);
        true
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

    /// Reads up to [`FRAMES_PER_PASS`] frames (a payload read counts as one); `Ok(true)`
    /// when the bound was reached before the socket ran dry.
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

    /// Acts on one message from `peer`.
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per message type: the protocol's dispatch reads best as one match"
    )]
    fn handle(&mut self, peer: u32, message: Message) -> Result<()> {
        let connection = self.connections.get_mut(&peer).expect("checked by serve");
        match message {
            Message::BufferResponse(header) => return self.receive(peer, header),
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
                self.requests.push(PendingRequest::new(
                    peer,
                    receiver,
                    partition,
                    subpartition,
                    initial_credit,
                    Instant::now(),
                    self.config.request_backoff_initial,
                    self.config.request_timeout,
                ));
                // This connection is being served: whom the retry touched does not matter.
                let _ = self.retry_requests();
            }
            Message::AddCredit { receiver, credit } => {
                if let Some(view) = connection.views.get_mut(&receiver) {
                    view.credit = view.credit.saturating_add(credit);
                    connection.queue_view(receiver);
                }
            }
            Message::CancelPartition { receiver } => {
                if let Some(view) = connection.views.remove(&receiver) {
                    view.subpartition.release();
                }
                self.requests.cancel(peer, receiver);
            }
            Message::Close => connection.closed = true,
            Message::NewBufferSize { receiver, size } => {
                if let Some(view) = connection.views.get(&receiver) {
                    view.subpartition.set_buffer_size(size as usize);
                } else if let Some(request) = self.requests.find_mut(peer, receiver) {
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

    /// A BufferResponse header: chooses where its payload goes (a credited segment for
    /// data, an event segment, or nowhere for a channel that is gone) and reads it next.
    fn receive(&mut self, peer: u32, header: BufferHeader) -> Result<()> {
        let connection = self.connections.get_mut(&peer).expect("checked by serve");
        let channel = connection.channels.get(&header.receiver).map(Arc::clone);
        let target = match (&channel, header.data_type) {
            (None, _) => Target::Discard,
            (Some(channel), DataType::Data) => match channel.request_buffer() {
                Some(segment) if segment.size() >= header.size as usize => Target::Data(segment),
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
        Ok(())
    }

    /// Hands a whole payload to its channel (or drops it for a channel that is gone).
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
        let result = connection.write_frames(&self.shared.metrics);
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
        let benign = self
            .connections
            .get(&peer)
            .is_some_and(Connection::owes_nothing);
        if !benign {
            // The channels carry the error to their tasks; the count is for the rest.
            lock(&self.shared.metrics).connections_failed += 1;
        }
        if let Some(connection) = self.connections.get_mut(&peer) {
            if matches!(error, NetError::MalformedFrame { .. }) {
                tell_why(&mut connection.stream, &cause);
            }
            for channel in connection.channels.values() {
                channel.fail(format!("connection lost: {cause}"));
            }
        }
        self.close_connection(peer);
    }

    fn close_connection(&mut self, peer: u32) {
        drop(self.remove_connection(peer));
    }

    /// The connection to `peer`, taken out of the loop: its views' subpartitions released,
    /// its channels and requests forgotten, its socket no longer watched.
    fn remove_connection(&mut self, peer: u32) -> Option<Connection> {
        let mut connection = self.connections.remove(&peer)?;
        for view in connection.views.values() {
            view.subpartition.release();
        }
        self.channel_peer.retain(|_, p| *p != peer);
        self.requests.forget_peer(peer);
        let _ = self.poll.registry().deregister(&mut connection.stream);
        Some(connection)
    }
}

/// Closes the sockets of a loop that ended without a reset: each sends its FIN first
/// (`shutdown(Write)`), then what its peer still sends (credits, buffer-size
/// announcements of a consumer that has not finished) is read and dropped until the peer
/// closes too, for at most [`LINGER_TIMEOUT`]. A socket closed with unread bytes in its
/// receive queue, or that receives bytes after it closed, answers with a reset, and a
/// reset makes the peer's kernel drop what the peer had not read yet: the last frames
/// this worker sent, which its peer would then miss ("connection lost").
fn linger(mut streams: Vec<TcpStream>, scratch: &mut [u8]) {
    for stream in &streams {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let started = Instant::now();
    while !streams.is_empty() && started.elapsed() < LINGER_TIMEOUT {
        streams.retain_mut(|stream| {
            loop {
                match stream.read(scratch) {
                    Ok(0) => break false,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break false,
                }
            }
        });
        if !streams.is_empty() {
            std::thread::sleep(LINGER_POLL);
        }
    }
}

/// Best effort: tells a peer that broke the protocol why it is being closed (a fatal
/// ErrorResponse, the cause cut to fit at a character boundary).
fn tell_why(stream: &mut impl Write, cause: &str) {
    let mut end = cause.len().min(ERROR_MESSAGE_BYTES_MAX);
    while !cause.is_char_boundary(end) {
        end -= 1;
    }
    let mut bytes = Vec::new();
    Message::ErrorResponse {
        receiver: None,
        kind: ErrorKind::Protocol,
        message: cause[..end].to_owned(),
    }
    .encode(&mut bytes);
    let _ = stream.write(&bytes);
}
