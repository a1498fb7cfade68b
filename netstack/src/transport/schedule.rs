//! The event loop's schedule, apart from the sockets: which connections a pass serves,
//! how long a poll may wait, and when a stopping loop ends. Every decision takes the
//! instants it needs, so it is tested with made-up ones.
//!
//! ```text
//!   busy (work left last pass) ─┐
//!   readiness events ───────────┼─▶ Pass: each connection once, by peer index ──serve──▶
//!   commands, due retries ──────┘        ≤ FRAMES_PER_PASS read + written each
//!          ▲                                               │ work left / heartbeat queued
//!          └──────────────────────── busy ◀────────────────┘
//!   poll timeout: zero while anything is busy, else until the earliest deadline
//!   (liveness, request retries, strangers' hellos, the drain's end), else forever
//! ```
//!
//! Fairness comes from the shape: a connection with work left is served again next pass
//! without waiting for readiness, but never twice in one pass, so a connection flooding
//! the loop delays the others by at most one bounded serving per pass.

use std::time::{Duration, Instant};

/// The connections with work left after a pass: the next pass serves them at once.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    busy: Vec<u32>,
}

impl Schedule {
    /// How long the next poll may wait at `now`: not at all while a connection has work
    /// left, until `deadline` if there is one, else until an event comes.
    pub(super) fn poll_timeout(&self, deadline: Option<Instant>, now: Instant) -> Option<Duration> {
        if self.busy.is_empty() {
            deadline.map(|at| at.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        }
    }

    /// Starts a pass with the connections left busy by the last one.
    pub(super) fn begin_pass(&mut self) -> Pass {
        Pass {
            touched: std::mem::take(&mut self.busy),
        }
    }

    /// `peer` has work left (or a heartbeat queued): the next pass serves it.
    pub(super) fn busy(&mut self, peer: u32) {
        if !self.busy.contains(&peer) {
            self.busy.push(peer);
        }
    }
}

/// The connections one pass serves.
#[derive(Debug)]
pub(super) struct Pass {
    touched: Vec<u32>,
}

impl Pass {
    /// `peer` had an event, a command, or a retried request: serve it this pass.
    pub(super) fn touch(&mut self, peer: u32) {
        self.touched.push(peer);
    }

    /// The connections to serve, each once, in peer order.
    pub(super) fn into_order(mut self) -> Vec<u32> {
        self.touched.sort_unstable();
        self.touched.dedup();
        self.touched
    }
}

/// Whether the loop is stopping, and when it must end even if readers still wait.
#[derive(Debug, Clone, Copy)]
pub(super) struct Drain {
    since: Option<Instant>,
    timeout: Duration,
}

impl Drain {
    /// A running loop that, once stopped, drains for at most `timeout`.
    pub(super) fn new(timeout: Duration) -> Drain {
        Drain {
            since: None,
            timeout,
        }
    }

    /// Stop asked at `now`: drain from the first ask (a second one changes nothing).
    pub(super) fn stop(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    /// Abort asked at `now`: end at the next look, drained or not.
    pub(super) fn abort(&mut self, now: Instant) {
        self.since = Some(now);
        self.timeout = Duration::ZERO;
    }

    /// When the drain ends, once stopping.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + self.timeout)
    }

    /// The loop ends at `now`: it is stopping, and the drain's time is up or everything
    /// was sent (`drained`, asked only while stopping: it looks at every subpartition).
    pub(super) fn is_over(&self, now: Instant, drained: impl FnOnce() -> bool) -> bool {
        self.since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.timeout || drained())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn an_idle_loop_waits_until_the_earliest_deadline_and_a_busy_one_not_at_all() {
        let base = Instant::now();
        let mut schedule = Schedule::default();
        assert_eq!(
            schedule.poll_timeout(None, base),
            None,
            "no timer: wait for events"
        );
        assert_eq!(
            schedule.poll_timeout(Some(at(base, 250)), at(base, 100)),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            schedule.poll_timeout(Some(at(base, 50)), at(base, 100)),
            Some(Duration::ZERO),
            "a deadline already passed"
        );
        schedule.busy(3);
        assert_eq!(
            schedule.poll_timeout(Some(at(base, 250)), base),
            Some(Duration::ZERO)
        );
        let _ = schedule.begin_pass();
        assert_eq!(
            schedule.poll_timeout(None, base),
            None,
            "the pass took the busy list"
        );
    }

    #[test]
    fn the_deadline_is_the_earliest_of_liveness_retries_and_the_drain() {
        use super::super::frame::{PartitionId, ReceiverId};
        use super::super::liveness::Liveness;
        use super::super::requests::{PendingRequest, PendingRequests};
        let base = Instant::now();
        let liveness = Liveness::new(base, Duration::from_millis(250), Duration::from_secs(1));
        let mut requests = PendingRequests::default();
        let partition = PartitionId {
            dataset: 1,
            producer: 0,
        };
        let request = PendingRequest::new(
            0,
            ReceiverId(1),
            partition,
            0,
            2,
            base,
            Duration::from_millis(100),
            Duration::from_secs(10),
        );
        requests.back_off(request, base);
        let mut drain = Drain::new(Duration::from_secs(30));
        let earliest = |drain: &Drain| {
            [liveness.next_deadline()]
                .into_iter()
                .chain(requests.next_deadline())
                .chain(drain.deadline())
                .min()
        };
        let schedule = Schedule::default();
        assert_eq!(
            schedule.poll_timeout(earliest(&drain), base),
            Some(Duration::from_millis(100)),
            "the retry"
        );
        drain.abort(base);
        assert_eq!(
            schedule.poll_timeout(earliest(&drain), base),
            Some(Duration::ZERO),
            "an abort ends the wait"
        );
    }

    #[test]
    fn each_connection_is_served_once_per_pass_and_a_busy_one_starves_nobody() {
        let mut schedule = Schedule::default();
        // Peer 2 always has work left; 0 and 1 get readiness events now and then.
        let mut served = [0_u32; 3];
        for pass in 0..10 {
            let mut this = schedule.begin_pass();
            if pass % 2 == 0 {
                this.touch(0);
            }
            this.touch(1);
            this.touch(2);
            this.touch(1); // an event and a command for the same connection
            let order = this.into_order();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "once each, by index");
            for peer in order {
                served[peer as usize] += 1;
                if peer == 2 {
                    schedule.busy(2);
                }
            }
            schedule.busy(2); // a heartbeat queued on a busy connection: still once
        }
        assert_eq!(served, [5, 10, 10]);
    }

    #[test]
    fn stop_drains_from_the_first_ask_and_abort_ends_at_once() {
        let base = Instant::now();
        let mut drain = Drain::new(Duration::from_millis(300));
        assert!(
            !drain.is_over(base, || unreachable!("not asked while running")),
            "running"
        );
        assert_eq!(drain.deadline(), None);
        drain.stop(at(base, 100));
        drain.stop(at(base, 200));
        assert_eq!(drain.deadline(), Some(at(base, 400)));
        assert!(!drain.is_over(at(base, 399), || false));
        assert!(drain.is_over(at(base, 101), || true), "everything sent");
        assert!(drain.is_over(at(base, 400), || false), "time is up");
        drain.abort(at(base, 150));
        assert!(drain.is_over(at(base, 150), || false));
    }
}
