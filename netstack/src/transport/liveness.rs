//! When a connection sends a heartbeat, and when its peer has been silent too long: the
//! timing of one connection, kept apart from the sockets so it is tested with made-up
//! instants.
//!
//! ```text
//!   sent anything ──▶ last_sent       now − last_sent ≥ interval, none queued ──▶ Heartbeat
//!   read anything ──▶ last_received   now − last_received ≥ timeout ──▶ Silent (fail it)
//! ```
//!
//! The receive deadline looks only at what arrived: a stopped peer also stops reading, so
//! this side's writes block and its heartbeats queue unsent, and the verdict must not wait
//! for them.

use std::time::{Duration, Instant};

/// What a connection's timer asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pulse {
    /// Nothing to do before [`Liveness::next_deadline`].
    Quiet,
    /// Queue a heartbeat (one: no other is queued until it leaves).
    Heartbeat,
    /// Nothing arrived for this long, at least the peer timeout: the peer is stopped,
    /// hung or partitioned.
    Silent(Duration),
}

/// The liveness timing of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    interval: Duration,
    timeout: Duration,
    last_received: Instant,
    last_sent: Instant,
    heartbeat_queued: bool,
}

impl Liveness {
    /// A connection that just received and sent its Hello at `now`.
    pub(crate) fn new(now: Instant, interval: Duration, timeout: Duration) -> Liveness {
        Liveness {
            interval,
            timeout,
            last_received: now,
            last_sent: now,
            heartbeat_queued: false,
        }
    }

    /// Bytes arrived at `now`.
    pub(crate) fn received(&mut self, now: Instant) {
        self.last_received = self.last_received.max(now);
    }

    /// Bytes left at `now`.
    pub(crate) fn sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// The queued heartbeat was taken for writing; the next may be queued once nothing
    /// was sent for an interval again.
    pub(crate) fn heartbeat_taken(&mut self) {
        self.heartbeat_queued = false;
    }

    /// What to do at `now`; a heartbeat asked for counts as queued.
    pub(crate) fn check(&mut self, now: Instant) -> Pulse {
        let silent = now.saturating_duration_since(self.last_received);
        if silent >= self.timeout {
            return Pulse::Silent(silent);
        }
        if !self.heartbeat_queued && now.saturating_duration_since(self.last_sent) >= self.interval
        {
            self.heartbeat_queued = true;
            return Pulse::Heartbeat;
        }
        Pulse::Quiet
    }

    /// The next instant [`check`](Self::check) may answer other than `Quiet`.
    pub(crate) fn next_deadline(&self) -> Instant {
        let silent = self.last_received + self.timeout;
        if self.heartbeat_queued {
            silent
        } else {
            silent.min(self.last_sent + self.interval)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(250);
    const TIMEOUT: Duration = Duration::from_secs(1);

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn an_idle_connection_sends_one_heartbeat_per_interval() {
        let base = Instant::now();
        let mut liveness = Liveness::new(base, INTERVAL, TIMEOUT);
        assert_eq!(liveness.check(at(base, 100)), Pulse::Quiet);
        assert_eq!(liveness.next_deadline(), at(base, 250));
        assert_eq!(liveness.check(at(base, 250)), Pulse::Heartbeat);
        // Queued, not yet written: no second one, and the next deadline is the timeout.
        assert_eq!(liveness.check(at(base, 600)), Pulse::Quiet);
        assert_eq!(liveness.next_deadline(), at(base, 1000));
        liveness.heartbeat_taken();
        liveness.sent(at(base, 610));
        liveness.received(at(base, 620));
        assert_eq!(liveness.check(at(base, 700)), Pulse::Quiet);
        assert_eq!(liveness.next_deadline(), at(base, 860));
        assert_eq!(liveness.check(at(base, 860)), Pulse::Heartbeat);
    }

    #[test]
    fn traffic_postpones_heartbeats_and_keeps_the_peer_alive() {
        let base = Instant::now();
        let mut liveness = Liveness::new(base, INTERVAL, TIMEOUT);
        for ms in (100..5000).step_by(100) {
            liveness.sent(at(base, ms));
            liveness.received(at(base, ms));
            assert_eq!(liveness.check(at(base, ms + 50)), Pulse::Quiet, "{ms}");
        }
    }

    #[test]
    fn a_peer_silent_for_the_timeout_fails_even_while_this_side_cannot_write() {
        let base = Instant::now();
        let mut liveness = Liveness::new(base, INTERVAL, TIMEOUT);
        // This side keeps writing (or not): only what arrives counts.
        liveness.sent(at(base, 900));
        assert_eq!(liveness.check(at(base, 999)), Pulse::Quiet);
        assert_eq!(
            liveness.check(at(base, 1500)),
            Pulse::Silent(Duration::from_millis(1500))
        );
        liveness.received(at(base, 1600));
        assert_eq!(
            liveness.check(at(base, 1700)),
            Pulse::Heartbeat,
            "alive again"
        );
        // An earlier instant (taken before a later one was recorded) changes nothing.
        liveness.received(at(base, 10));
        assert_eq!(liveness.next_deadline(), at(base, 2600));
    }
}
