//! How a worker process's transport is set up ([`NetworkConfig`]), the ranges its fields
//! must keep, and how errors name a peer process.
//!
//! ```text
//!   NetworkConfig::new(process, peers)      the defaults of constants.rs
//!     .with_peer_timeout(t)                 heartbeat = min(default, t / 4)
//!     validate() ──▶ startup ──▶ event loop (timers, retries, drain)
//! ```
//!
//! Every process gets the same `peers` list (timely's model), so a process index names
//! one peer everywhere and errors can say "worker 1 at 127.0.0.1:40000".

use std::net::SocketAddr;
use std::time::Duration;

use crate::constants::{
    CONNECT_TIMEOUT_DEFAULT, DRAIN_TIMEOUT_DEFAULT, HEARTBEAT_INTERVAL_DEFAULT,
    HEARTBEATS_PER_PEER_TIMEOUT, PEER_TIMEOUT_DEFAULT, PEER_TIMEOUT_MIN,
    REQUEST_BACKOFF_INITIAL_DEFAULT, REQUEST_TIMEOUT_DEFAULT,
};
use crate::error::{NetError, Result};

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
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_backoff_initial: REQUEST_BACKOFF_INITIAL_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            drain_timeout: DRAIN_TIMEOUT_DEFAULT,
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

/// How errors name process `peer`: "worker 1 at 127.0.0.1:40000", or "worker 1" for an
/// index outside `peers`.
pub(super) fn peer_name(peer: u32, peers: &[SocketAddr]) -> String {
    match peers.get(peer as usize) {
        Some(address) => format!("worker {peer} at {address}"),
        None => format!("worker {peer}"),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn two_peers() -> Vec<SocketAddr> {
        vec![
            "127.0.0.1:40000".parse().expect("an address"),
            "127.0.0.1:40001".parse().expect("an address"),
        ]
    }

    fn field_of(result: Result<()>) -> Option<&'static str> {
        match result {
            Err(NetError::InvalidConfig { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn the_defaults_are_valid_and_keep_four_heartbeats_per_timeout() {
        let config = NetworkConfig::new(1, two_peers());
        config.validate().expect("the defaults are valid");
        assert!(config.heartbeat_interval * HEARTBEATS_PER_PEER_TIMEOUT <= config.peer_timeout);
        let short = config.with_peer_timeout(Duration::from_millis(400));
        assert_eq!(short.heartbeat_interval, Duration::from_millis(100));
        short
            .validate()
            .expect("a short timeout with its interval is valid");
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let peers = two_peers();
        assert_eq!(
            field_of(NetworkConfig::new(2, peers.clone()).validate()),
            Some("process")
        );
        let mut config = NetworkConfig::new(0, peers);
        config.peer_timeout = Duration::from_millis(99);
        assert_eq!(field_of(config.validate()), Some("peer_timeout"));
        config.peer_timeout = Duration::from_secs(1);
        config.heartbeat_interval = Duration::from_secs(1);
        assert_eq!(field_of(config.validate()), Some("heartbeat_interval"));
        config.heartbeat_interval = Duration::ZERO;
        assert_eq!(field_of(config.validate()), Some("heartbeat_interval"));
    }

    #[test]
    fn peers_are_named_with_their_address_when_known() {
        let peers = two_peers();
        assert_eq!(peer_name(1, &peers), "worker 1 at 127.0.0.1:40001");
        assert_eq!(peer_name(7, &peers), "worker 7");
    }
}
