//! Partition requests that arrived before their partition was registered: each is
//! retried with a doubling backoff until its partition appears or its deadline passes
//! (then the reader is told PartitionNotFound).
//!
//! ```text
//!   PartitionRequest ──▶ push (next_try = now) ──take_due(now)──▶ attach the view?
//!                                                 │ no, before the deadline
//!        waiting ◀── back_off: next_try = min(now + delay, deadline), delay × 2
//!                                                 │ no, at the deadline ──▶ ErrorResponse
//! ```
//!
//! Kept apart from the sockets, with the instants passed in, so the retry timing is
//! tested with made-up instants; the event loop polls no longer than
//! [`PendingRequests::next_deadline`].

use std::time::{Duration, Instant};

use super::frame::{PartitionId, ReceiverId};

/// A partition request waiting for its partition to be registered.
#[derive(Debug, Clone)]
pub(super) struct PendingRequest {
    pub(super) peer: u32,
    pub(super) receiver: ReceiverId,
    pub(super) partition: PartitionId,
    pub(super) subpartition: u32,
    pub(super) credit: u32,
    /// A buffer size the reader announced before the partition was registered
    /// (debloating starts at once), applied when the view is attached.
    pub(super) buffer_size: Option<u32>,
    next_try: Instant,
    delay: Duration,
    deadline: Instant,
}

impl PendingRequest {
    /// A request that arrived at `now`: tried at once, then after `backoff`, doubling,
    /// until `now + timeout`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the wire request's fields and its timing"
    )]
    pub(super) fn new(
        peer: u32,
        receiver: ReceiverId,
        partition: PartitionId,
        subpartition: u32,
        credit: u32,
        now: Instant,
        backoff: Duration,
        timeout: Duration,
    ) -> PendingRequest {
        PendingRequest {
            peer,
            receiver,
            partition,
            subpartition,
            credit,
            buffer_size: None,
            next_try: now,
            delay: backoff,
            deadline: now + timeout,
        }
    }

    /// Its time is up at `now`: answer PartitionNotFound rather than retry.
    pub(super) fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }
}

/// The requests waiting for their partitions.
#[derive(Debug, Default)]
pub(super) struct PendingRequests {
    waiting: Vec<PendingRequest>,
}

impl PendingRequests {
    /// Waits for `request`'s next try.
    pub(super) fn push(&mut self, request: PendingRequest) {
        self.waiting.push(request);
    }

    /// Takes the requests due at `now`, oldest first; the rest keep waiting.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<PendingRequest> {
        let (due, waiting) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|r| r.next_try <= now);
        self.waiting = waiting;
        due
    }

    /// Puts back a request that was tried at `now` in vain and has not expired: the next
    /// try after its current delay (never past its deadline), and the delay doubles.
    pub(super) fn back_off(&mut self, mut request: PendingRequest, now: Instant) {
        request.next_try = (now + request.delay).min(request.deadline);
        request.delay *= 2;
        self.waiting.push(request);
    }

    /// The earliest next try.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|r| r.next_try).min()
    }

    /// The waiting request of `peer`'s reader `receiver`.
    pub(super) fn find_mut(
        &mut self,
        peer: u32,
        receiver: ReceiverId,
    ) -> Option<&mut PendingRequest> {
        self.waiting
            .iter_mut()
            .find(|r| r.peer == peer && r.receiver == receiver)
    }

    /// Forgets the request of `peer`'s reader `receiver` (cancelled).
    pub(super) fn cancel(&mut self, peer: u32, receiver: ReceiverId) {
        self.waiting
            .retain(|r| !(r.peer == peer && r.receiver == receiver));
    }

    /// Forgets every request of `peer` (its connection closed).
    pub(super) fn forget_peer(&mut self, peer: u32) {
        self.waiting.retain(|r| r.peer != peer);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const BACKOFF: Duration = Duration::from_millis(100);
    const TIMEOUT: Duration = Duration::from_millis(1000);

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn request(peer: u32, receiver: u64, now: Instant) -> PendingRequest {
        let partition = PartitionId {
            dataset: 7,
            producer: 0,
        };
        PendingRequest::new(
            peer,
            ReceiverId(receiver),
            partition,
            0,
            2,
            now,
            BACKOFF,
            TIMEOUT,
        )
    }

    #[test]
    fn retries_double_their_delay_and_stop_at_the_deadline() {
        let base = Instant::now();
        let mut requests = PendingRequests::default();
        requests.push(request(1, 1, base));
        let mut tries = Vec::new();
        while let Some(now) = requests.next_deadline() {
            for due in requests.take_due(now) {
                tries.push(now.duration_since(base).as_millis());
                if !due.expired(now) {
                    requests.back_off(due, now);
                }
            }
        }
        // 0, +100, +200, +400, then clamped to the deadline (not +800).
        assert_eq!(tries, vec![0, 100, 300, 700, 1000]);
    }

    #[test]
    fn only_due_requests_are_taken_and_the_earliest_sets_the_deadline() {
        let base = Instant::now();
        let mut requests = PendingRequests::default();
        requests.push(request(1, 1, at(base, 50)));
        requests.push(request(2, 2, at(base, 10)));
        assert_eq!(requests.next_deadline(), Some(at(base, 10)));
        assert!(requests.take_due(at(base, 5)).is_empty());
        let due = requests.take_due(at(base, 10));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].receiver, ReceiverId(2));
        assert_eq!(requests.next_deadline(), Some(at(base, 50)));
    }

    #[test]
    fn cancelled_and_closed_requests_are_forgotten() {
        let base = Instant::now();
        let mut requests = PendingRequests::default();
        requests.push(request(1, 1, base));
        requests.push(request(1, 2, base));
        requests.push(request(2, 3, base));
        requests
            .find_mut(1, ReceiverId(2))
            .expect("waiting")
            .buffer_size = Some(512);
        requests.cancel(1, ReceiverId(1));
        assert!(requests.find_mut(1, ReceiverId(1)).is_none());
        requests.forget_peer(2);
        let left = requests.take_due(base);
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].receiver, left[0].buffer_size),
            (ReceiverId(2), Some(512))
        );
    }
}
