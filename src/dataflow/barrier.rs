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
use std::time::{Duration, Instant};

use super::event_time::unix_micros;
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
/// started.
#[derive(Debug)]
pub(crate) struct BarrierSchedule {
    interval: Duration,
    started: Cell<Option<(Instant, u64)>>,
    sent: Cell<u64>,
    /// The id before the first this schedule sends.
    first: u64,
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
        }
    }

    /// Pushes into `down` every barrier due by now that was not sent yet (the first call
    /// starts the schedule), each through `send` (which pushes it down, and may take a
    /// snapshot around it).
    pub(crate) fn inject(&self, mut send: impl FnMut(Barrier) -> Result<()>) -> Result<()> {
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
