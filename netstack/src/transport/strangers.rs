//! Connections accepted after startup. Every peer is connected by then, so whatever such
//! a connection says closes it: a stranger, a port scanner, or a peer that restarted and
//! dials again. None may disturb the real connections.
//!
//! ```text
//!   listener readable ──accept all──▶ waiting (≤ STRANGERS_MAX, oldest dropped first)
//!   readable ──read──▶ a frame, garbage, EOF or an error ──▶ dropped (counted rejected)
//!   deadline (peer timeout) passed, nothing said ─────────▶ dropped (counted rejected)
//! ```
//!
//! Each call answers how many it dropped; the event loop adds them to
//! `connections_rejected`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::frame::FrameDecoder;
use crate::constants::{STRANGER_TOKEN_FIRST, STRANGERS_MAX};

/// A connection accepted after startup, waiting for its Hello (which never comes right).
struct Stranger {
    stream: TcpStream,
    decoder: FrameDecoder,
    deadline: Instant,
}

/// The strangers waiting, by their event-loop token.
pub(super) struct Strangers {
    waiting: HashMap<Token, Stranger>,
    next_token: usize,
}

impl Strangers {
    /// None waiting yet.
    pub(super) fn new() -> Strangers {
        Strangers {
            waiting: HashMap::new(),
            next_token: STRANGER_TOKEN_FIRST,
        }
    }

    /// The token is a stranger's.
    pub(super) fn contains(&self, token: Token) -> bool {
        self.waiting.contains_key(&token)
    }

    /// Accepts every connection waiting on the listener, each to say hello by
    /// `deadline`; answers how many were dropped.
    pub(super) fn accept_all(
        &mut self,
        listener: &TcpListener,
        registry: &Registry,
        deadline: Instant,
    ) -> u64 {
        let mut dropped = 0;
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        dropped += 1;
                        continue;
                    }
                    let stranger = Stranger {
                        stream,
                        decoder: FrameDecoder::new(),
                        deadline,
                    };
                    self.waiting.insert(token, stranger);
                    if self.waiting.len() > STRANGERS_MAX {
                        // Tokens grow: the smallest is the oldest.
                        let oldest = *self.waiting.keys().min().expect("not empty");
                        dropped += self.drop(oldest, registry);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or a failed accept (out of descriptors, a connection reset
                // before it was taken): the next readiness event tries again.
                Err(_) => return dropped,
            }
        }
    }

    /// Reads what the stranger said: a whole frame, garbage, EOF or an error drops it
    /// (answers 1); one still silent keeps waiting (0).
    pub(super) fn greet(&mut self, token: Token, registry: &Registry) -> u64 {
        let Some(stranger) = self.waiting.get_mut(&token) else {
            return 0;
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
        if done { self.drop(token, registry) } else { 0 }
    }

    /// Drops the strangers whose deadline passed at `now`; answers how many.
    pub(super) fn expire(&mut self, now: Instant, registry: &Registry) -> u64 {
        let expired: Vec<Token> = self
            .waiting
            .iter()
            .filter(|(_, stranger)| stranger.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        expired
            .into_iter()
            .map(|token| self.drop(token, registry))
            .sum()
    }

    /// The earliest deadline of a stranger.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.waiting.values().map(|s| s.deadline).min()
    }

    fn drop(&mut self, token: Token, registry: &Registry) -> u64 {
        match self.waiting.remove(&token) {
            Some(mut stranger) => {
                let _ = registry.deregister(&mut stranger.stream);
                1
            }
            None => 0,
        }
    }
}
