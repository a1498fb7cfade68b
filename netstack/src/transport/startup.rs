//! Startup: bind, connect to the lower-indexed peers, accept the higher ones, and greet
//! every connection on its own.
//!
//! ```text
//!   dial lower peers (retry until the connect deadline) ─┐
//!   accept anyone on the port ───────────────────────────┼─▶ greetings, each non-blocking
//!                                                         │   with its own deadline:
//!   say Hello, read exactly one Hello frame ◀─────────────┘   Peer(n) | Waiting | Failed
//! ```
//!
//! No connection waits for another: a stranger that stays silent or sends garbage is
//! dropped at its own deadline or at its first bad byte (and counted), while the real peers
//! greet beside it. A greeting reads no byte past the Hello frame, so what a peer sends
//! right after it stays in the socket for the event loop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::time::{Duration, Instant};

use super::config::{NetworkConfig, peer_name};
use super::frame::{FrameDecoder, Message, PROTOCOL_VERSION};
use crate::constants::{
    STARTUP_CONNECT_ATTEMPT_MAX, STARTUP_CONNECT_RETRY, STARTUP_POLL_INTERVAL, STRANGERS_MAX,
};
use crate::error::{NetError, Result};

/// Every peer connected and greeted.
#[derive(Debug)]
pub(super) struct Startup {
    pub(super) listener: StdListener,
    pub(super) connections: Vec<(u32, StdStream)>,
    /// Accepted connections dropped before they said a valid Hello.
    pub(super) rejected: u64,
}

/// One connection saying Hello and waiting for the other side's.
#[derive(Debug)]
pub(super) struct Greeting {
    stream: StdStream,
    from: SocketAddr,
    // The peer this process dialled; `None` for an accepted connection (anyone).
    dialled: Option<u32>,
    hello: Vec<u8>,
    written: usize,
    decoder: FrameDecoder,
    // The process index the other side said, once its Hello arrived.
    heard: Option<u32>,
    deadline: Instant,
}

/// Where a greeting stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Hello not complete in either direction yet.
    Waiting,
    /// Both Hellos went through; the other side is this process.
    Peer(u32),
    /// Closed, garbage, a wrong version, or the deadline passed.
    Failed(String),
}

impl Greeting {
    /// Greets `stream` as process `me`, giving up at `deadline`.
    pub(super) fn new(
        stream: StdStream,
        from: SocketAddr,
        dialled: Option<u32>,
        me: u32,
        deadline: Instant,
    ) -> io::Result<Greeting> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let mut hello = Vec::new();
        Message::Hello {
            process: me,
            version: PROTOCOL_VERSION,
        }
        .encode(&mut hello);
        Ok(Greeting {
            stream,
            from,
            dialled,
            hello,
            written: 0,
            decoder: FrameDecoder::new(),
            heard: None,
            deadline,
        })
    }

    /// Writes what it can of this side's Hello and reads what it can of the other's.
    pub(super) fn step(&mut self, now: Instant) -> Step {
        while self.written < self.hello.len() {
            match (&self.stream).write(&self.hello[self.written..]) {
                Ok(0) => return Step::Failed("closed before hello".to_owned()),
                Ok(written) => self.written += written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(format!("cannot say hello: {e}")),
            }
        }
        while self.heard.is_none() {
            match (&self.stream).read(self.decoder.spare()) {
                Ok(0) => return Step::Failed("closed before saying hello".to_owned()),
                Ok(read) => match self.decoder.advance(read) {
                    Ok(None) => {}
                    Ok(Some(Message::Hello { process, version })) => {
                        if version != PROTOCOL_VERSION {
                            return Step::Failed(format!(
                                "protocol version {version}, expected {PROTOCOL_VERSION}"
                            ));
                        }
                        self.heard = Some(process);
                    }
                    Ok(Some(other)) => return Step::Failed(format!("sent {other:?} before hello")),
                    Err(error) => return Step::Failed(error.to_string()),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(format!("no hello: {e}")),
            }
        }
        match self.heard {
            Some(process) if self.written == self.hello.len() => Step::Peer(process),
            _ if now >= self.deadline => Step::Failed("no hello before its deadline".to_owned()),
            _ => Step::Waiting,
        }
    }
}

/// A lower-indexed peer this process connects to.
#[derive(Debug)]
struct Dial {
    peer: u32,
    next_try: Option<Instant>,
    last_error: String,
}

/// The startup in progress.
struct Handshakes<'a> {
    config: &'a NetworkConfig,
    deadline: Instant,
    dials: Vec<Dial>,
    greetings: Vec<Greeting>,
    connections: Vec<(u32, StdStream)>,
    rejected: u64,
    last_rejection: Option<String>,
}

/// Binds, connects to the lower-indexed peers, accepts the higher ones, and exchanges
/// Hello on each connection, every one on its own (bounded by the connect timeout).
///
/// # Errors
///
/// [`NetError::Remote`] naming the peer that could not be reached or greeted within the
/// connect timeout, or that answered as another process; an I/O error binding the address
/// or accepting is reported the same way.
pub(super) fn connect_all(config: &NetworkConfig) -> Result<Startup> {
    let me = config.process;
    let listener = StdListener::bind(config.peers[me as usize]).map_err(|e| NetError::Remote {
        peer: peer_name(me, &config.peers),
        message: format!("cannot listen: {e}"),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| startup_error(me, config, format!("cannot configure the listener: {e}")))?;
    let now = Instant::now();
    let mut handshakes = Handshakes {
        config,
        deadline: now + config.connect_timeout,
        dials: (0..me)
            .map(|peer| Dial {
                peer,
                next_try: Some(now),
                last_error: "not tried".to_owned(),
            })
            .collect(),
        greetings: Vec::new(),
        connections: Vec::new(),
        rejected: 0,
        last_rejection: None,
    };
    while handshakes.connections.len() + 1 < config.peers.len() {
        let progress = handshakes.dial()? | handshakes.accept(&listener)?;
        if !(handshakes.greet()? | progress) {
            handshakes.check_deadline()?;
            std::thread::sleep(STARTUP_POLL_INTERVAL);
        }
    }
    Ok(Startup {
        listener,
        connections: handshakes.connections,
        rejected: handshakes.rejected,
    })
}

impl Handshakes<'_> {
    /// Connects to every lower peer whose retry is due; `Ok(true)` when one connected.
    fn dial(&mut self) -> Result<bool> {
        let mut progress = false;
        let me = self.config.process;
        for dial in &mut self.dials {
            let now = Instant::now();
            if dial.next_try.is_none_or(|at| at > now) {
                continue;
            }
            let address = self.config.peers[dial.peer as usize];
            let attempt = self
                .deadline
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), STARTUP_CONNECT_ATTEMPT_MAX);
            let greeting = StdStream::connect_timeout(&address, attempt).and_then(|stream| {
                Greeting::new(stream, address, Some(dial.peer), me, self.deadline)
            });
            match greeting {
                Ok(greeting) => {
                    dial.next_try = None;
                    self.greetings.push(greeting);
                    progress = true;
                }
                Err(error) => {
                    dial.last_error = error.to_string();
                    dial.next_try = Some(Instant::now() + STARTUP_CONNECT_RETRY);
                }
            }
        }
        Ok(progress)
    }

    /// Accepts every waiting connection; `Ok(true)` when there was one.
    fn accept(&mut self, listener: &StdListener) -> Result<bool> {
        let me = self.config.process;
        let mut progress = false;
        loop {
            match listener.accept() {
                Ok((stream, from)) => {
                    progress = true;
                    // A stranger gets the peer timeout to say hello; a real peer says it at
                    // once.
                    let deadline = (Instant::now() + self.config.peer_timeout).min(self.deadline);
                    match Greeting::new(stream, from, None, me, deadline) {
                        Ok(greeting) => self.greetings.push(greeting),
                        Err(error) => self.reject(from, &error.to_string()),
                    }
                    let accepted = self.greetings.iter().filter(|g| g.dialled.is_none());
                    if accepted.count() > STRANGERS_MAX
                        && let Some(oldest) =
                            self.greetings.iter().position(|g| g.dialled.is_none())
                    {
                        let dropped = self.greetings.remove(oldest);
                        self.reject(dropped.from, "dropped: too many connections greeting");
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(progress),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(startup_error(
                        me,
                        self.config,
                        format!("cannot accept: {error}"),
                    ));
                }
            }
        }
    }

    /// Advances every greeting; `Ok(true)` when one finished (either way).
    fn greet(&mut self) -> Result<bool> {
        let now = Instant::now();
        let mut progress = false;
        for mut greeting in std::mem::take(&mut self.greetings) {
            match greeting.step(now) {
                Step::Waiting => self.greetings.push(greeting),
                Step::Peer(process) => {
                    progress = true;
                    self.admit(greeting, process)?;
                }
                Step::Failed(reason) => {
                    progress = true;
                    match greeting.dialled {
                        // The peer may have been restarting or not listening yet: dial again.
                        Some(peer) => self.redial(peer, reason),
                        None => self.reject(greeting.from, &reason),
                    }
                }
            }
        }
        Ok(progress)
    }

    /// Keeps a greeted connection if it is a peer this process expects.
    fn admit(&mut self, greeting: Greeting, process: u32) -> Result<()> {
        let me = self.config.process;
        if let Some(peer) = greeting.dialled {
            if process != peer {
                return Err(NetError::Remote {
                    peer: peer_name(peer, &self.config.peers),
                    message: format!("answered as worker {process}"),
                });
            }
            self.connections.push((peer, greeting.stream));
            return Ok(());
        }
        let expected = process > me
            && (process as usize) < self.config.peers.len()
            && !self.connections.iter().any(|(p, _)| *p == process);
        if expected {
            self.connections.push((process, greeting.stream));
        } else {
            let reason = format!("it said it is worker {process}");
            self.reject(greeting.from, &reason);
        }
        Ok(())
    }

    fn redial(&mut self, peer: u32, reason: String) {
        if let Some(dial) = self.dials.iter_mut().find(|d| d.peer == peer) {
            dial.last_error = reason;
            dial.next_try = Some(Instant::now() + STARTUP_CONNECT_RETRY);
        }
    }

    fn reject(&mut self, from: SocketAddr, reason: &str) {
        self.rejected += 1;
        self.last_rejection = Some(format!("{from}: {reason}"));
    }

    /// Fails the startup once the connect timeout passed, naming a missing peer.
    fn check_deadline(&self) -> Result<()> {
        if Instant::now() < self.deadline {
            return Ok(());
        }
        let timeout = self.config.connect_timeout;
        if let Some(dial) = self.dials.iter().find(|d| d.next_try.is_some()) {
            return Err(NetError::Remote {
                peer: peer_name(dial.peer, &self.config.peers),
                message: format!("cannot connect within {timeout:?}: {}", dial.last_error),
            });
        }
        let me = self.config.process;
        let expected = self.config.peers.len() as u32 - me - 1;
        let accepted = self.connections.iter().filter(|(p, _)| *p > me).count();
        let mut message = format!(
            "{accepted} of {expected} higher-numbered workers connected within {timeout:?}"
        );
        if let Some(rejection) = &self.last_rejection {
            message.push_str(&format!(
                "; {} connections rejected, the last from {rejection}",
                self.rejected
            ));
        }
        Err(startup_error(me, self.config, message))
    }
}

fn startup_error(me: u32, config: &NetworkConfig, message: String) -> NetError {
    NetError::Remote {
        peer: peer_name(me, &config.peers),
        message,
    }
}
