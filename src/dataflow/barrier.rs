//! Barriers from the runtime: numbered markers the sources inject on a schedule, that
//! travel in order with the records through every chain and exchange and are aligned at
//! every gate (the netstack's alignment: a channel's data behind its barrier waits until
//! the barrier has come on every channel). They are what a checkpoint will snapshot at;
//! today they measure how long a barrier takes to cross a loaded dataflow (W6: its delay
//! behind the data in flight, which buffer debloating bounds).
//!
//! ```text
//!   source: every `Config::barrier_interval` of its own clock, barrier k (1, 2, …; none
//!           skipped: a source that was blocked sends the ones it missed back to back)
//!     ─▶ chain (each operator passes it on) ─▶ exchange: a Barrier buffer on every
//!        channel, flushed ─▶ gate: aligned ─▶ delay = now − scheduled, counted
//!        ─▶ the next chain, and so on to the sinks
//! ```
//!
//! Wire form (docs/FORMAT.md §12): a `DataType::Barrier` buffer of 17 bytes, `'B'`, the id
//! and the scheduled time in microseconds since the Unix epoch, little-endian.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event_time::unix_micros;
use crate::checkpoint::Store;
use crate::error::{Result, WeirError};

/// The first byte of a barrier's wire form.
const TAG: u8 = b'B';
/// Bytes of a barrier's wire form.
pub(crate) const WIRE_LEN: usize = 17;

/// A barrier: its number, and when its source was to inject it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// 1 for a source's first barrier, then one more each interval.
    pub id: u64,
    /// When the source's schedule called for it, in microseconds since the Unix epoch.
    pub scheduled_us: u64,
}

impl Barrier {
    /// The wire form.
    pub(crate) fn encode(&self) -> [u8; WIRE_LEN] {
        let mut bytes = [0; WIRE_LEN];
        bytes[0] = TAG;
        bytes[1..9].copy_from_slice(&self.id.to_le_bytes());
        bytes[9..].copy_from_slice(&self.scheduled_us.to_le_bytes());
        bytes
    }

    /// A barrier from its wire form.
    ///
    /// # Errors
    ///
    /// [`WeirError::Data`] for bytes that are not one.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Barrier> {
        if bytes.len() != WIRE_LEN || bytes[0] != TAG {
            return Err(WeirError::Data {
                message: format!("a malformed barrier event of {} bytes", bytes.len()),
            });
        }
        let word = |range: std::ops::Range<usize>| {
            u64::from_le_bytes(bytes[range].try_into().expect("8 bytes"))
        };
        Ok(Barrier {
            id: word(1..9),
            scheduled_us: word(9..17),
        })
    }
}

/// A source task's barrier schedule: barrier k is due `k × interval` after the source
/// started. With checkpoints it is paced instead: the next barrier is due an interval
/// after the last was sent, and not before the last one's checkpoint completed or was
/// declined (by a task of this worker, or by the coordinator when it timed out after ten
/// intervals, at least a second; the schedule moves on after that time regardless):
/// one checkpoint at a time, so snapshots slower than the interval never pile up.
#[derive(Debug)]
pub(crate) struct BarrierSchedule {
    interval: Duration,
    started: Cell<Option<(Instant, u64)>>,
    sent: Cell<u64>,
    /// The id before the first this schedule sends.
    first: u64,
    /// With checkpoints: their store, and when the last barrier was sent.
    paced: Option<(Arc<Store>, Cell<Option<Instant>>)>,
}

impl BarrierSchedule {
    /// A schedule whose first barrier is `after + 1` (a job restored from checkpoint
    /// `after` goes on numbering from it).
    pub(crate) fn new(interval: Duration, after: u64) -> BarrierSchedule {
        BarrierSchedule {
            interval,
            started: Cell::new(None),
            sent: Cell::new(after),
            first: after,
            paced: None,
        }
    }

    /// A paced schedule for the checkpoints of `store` (see the type's documentation).
    pub(crate) fn paced(interval: Duration, after: u64, store: Arc<Store>) -> BarrierSchedule {
        BarrierSchedule {
            paced: Some((store, Cell::new(None))),
            ..BarrierSchedule::new(interval, after)
        }
    }

    /// The next barrier of a paced schedule, when due.
    fn next_paced(&self, store: &Store, last: &Cell<Option<Instant>>) -> Option<Barrier> {
        let now = Instant::now();
        let since = last
            .get()
            .map_or(Duration::MAX, |at| now.duration_since(at));
        if since < self.interval {
            return None;
        }
        let previous = self.sent.get();
        let timeout = crate::checkpoint::checkpoint_timeout(self.interval);
        let waiting = previous > self.first && !store.settled(previous);
        if waiting && since < timeout {
            return None;
        }
        last.set(Some(now));
        self.sent.set(previous + 1);
        Some(Barrier {
            id: previous + 1,
            scheduled_us: unix_micros(),
        })
    }

    /// Pushes into `down` every barrier due by now that was not sent yet (the first call
    /// starts the schedule), each through `send` (which pushes it down, and may take a
    /// snapshot around it).
    pub(crate) fn inject(&self, mut send: impl FnMut(Barrier) -> Result<()>) -> Result<()> {
        if let Some((store, last)) = &self.paced {
            if last.get().is_none() {
                // The first interval counts from the source's start.
                last.set(Some(Instant::now()));
            }
            return match self.next_paced(store, last) {
                Some(barrier) => send(barrier),
                None => Ok(()),
            };
        }
        let (started, started_us) = match self.started.get() {
            Some(start) => start,
            None => {
                let start = (Instant::now(), unix_micros());
                self.started.set(Some(start));
                return Ok(());
            }
        };
        // Due is read again after each barrier: sending one may block (backpressure)
        // past the next one's time.
        let due = || {
            self.first + (started.elapsed().as_micros() / self.interval.as_micros().max(1)) as u64
        };
        while self.sent.get() < due() {
            let id = self.sent.get() + 1;
            self.sent.set(id);
            let offset = u64::try_from(self.interval.as_micros()).unwrap_or(u64::MAX);
            let nth = id - self.first;
            send(Barrier {
                id,
                scheduled_us: started_us.saturating_add(offset.saturating_mul(nth)),
            })?;
        }
        Ok(())
    }
}

/// Passes a barrier on once per id, for an operator fed by several inputs in turn (a
/// union's shared downstream): the ids of the first input to bring each one.
#[derive(Debug, Default)]
pub(crate) struct OncePerId {
    last: u64,
}

impl OncePerId {
    /// Whether `barrier` is new.
    pub(crate) fn first(&mut self, barrier: &Barrier) -> bool {
        let new = barrier.id > self.last;
        self.last = self.last.max(barrier.id);
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_barrier_reads_back_what_was_written_and_bad_bytes_are_an_error() {
        let barrier = Barrier {
            id: 7,
            scheduled_us: 1_234_567,
        };
        assert_eq!(Barrier::decode(&barrier.encode()).unwrap(), barrier);
        assert!(Barrier::decode(&[b'B'; 5]).is_err());
        let mut wrong = barrier.encode();
        wrong[0] = b'W';
        assert!(Barrier::decode(&wrong).is_err());
    }
}
