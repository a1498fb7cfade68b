//! Event time: record timestamps, watermarks that travel with the records, and idle inputs.
//!
//! ```text
//!   source ─▶ event_time(ts, Watermarks::bounded(b)) ─▶ map/filter… ─▶ exchange ══▶ gate
//!             max timestamp seen − b − 1, every          forwarded      one Event buffer per
//!             `interval` while it advances               in the chain   channel (25 bytes)
//!
//!   gate: watermark = min over its channels' last watermarks, leaving out channels idle
//!         longer than their source's idle timeout (none sent a record or a watermark);
//!         never goes back; forwarded into the chain when it advances.
//!   end of a task's output: the END watermark (i64::MAX) on every channel, so a finished
//!   input never holds the others back.
//! ```
//!
//! A watermark of time `t` says that no more records with a timestamp at or below `t`
//! follow (Flink's definition); a record at or below the watermark that reaches a window
//! operator is late. Timestamps are milliseconds (any epoch; the Nexmark queries use Unix
//! milliseconds).
//!
//! Idleness is judged where the records arrive (a gate), not declared by the source: a
//! channel counts as active while records or watermarks reach the gate, and an assigner
//! emits watermarks only when records come (a source that stops sending holds its
//! channel's watermark until its idle timeout leaves it out). A gate whose every
//! unfinished channel is idle holds its watermark where it is.
//!
//! Operators that only forward (`map`, `filter`, `flat_map`, their fallible forms, `limit`,
//! `tee`) pass watermarks on; the batch operators (sort, aggregate, join, union, fold) drop
//! them and emit at the end of their input. On the wire a watermark is an event buffer
//! (docs/FORMAT.md, section 11): `b'W'`, the time (i64), the source's emit time in
//! microseconds since the Unix epoch (u64) and its idle timeout in milliseconds (u32),
//! little-endian.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_netstack::{ChannelIndex, DataType, NetworkBuffer};

use super::operators::append_record;
use super::{Barrier, Data, Push};
use crate::checkpoint::SnapshotSlot;
use crate::error::{Result, WeirError};

/// The first byte of a watermark event.
const WATERMARK_TAG: u8 = b'W';
/// A watermark event's bytes: tag, time, emit time, idle timeout.
pub(crate) const WATERMARK_EVENT_LEN: usize = 1 + 8 + 8 + 4;
/// Records between two looks at the clock in the timestamp assigner.
const CLOCK_EVERY_RECORDS: u32 = 64;
/// How often the assigner emits a watermark that advanced, by default.
pub const WATERMARK_INTERVAL_DEFAULT: Duration = Duration::from_millis(20);

/// Event time has reached `time`: no record with a timestamp at or below it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// The event time, in milliseconds.
    pub time: i64,
    /// When the source's assigner emitted it, in microseconds since the Unix epoch: the
    /// window operators measure how long after it their results leave.
    pub emitted_us: u64,
    /// The idle timeout of the source that emitted it, in milliseconds (0: never idle).
    pub idle_ms: u32,
}

impl Watermark {
    /// The time of the last watermark, at the end of an input: every window fires.
    pub const END: i64 = i64::MAX;

    /// A watermark of `time` emitted now.
    pub fn now(time: i64, idle_ms: u32) -> Watermark {
        Watermark {
            time,
            emitted_us: unix_micros(),
            idle_ms,
        }
    }

    /// Its event bytes.
    pub(crate) fn encode(&self) -> [u8; WATERMARK_EVENT_LEN] {
        let mut out = [0; WATERMARK_EVENT_LEN];
        out[0] = WATERMARK_TAG;
        out[1..9].copy_from_slice(&self.time.to_le_bytes());
        out[9..17].copy_from_slice(&self.emitted_us.to_le_bytes());
        out[17..21].copy_from_slice(&self.idle_ms.to_le_bytes());
        out
    }

    /// The watermark of an event's bytes; `None` for another event.
    ///
    /// # Errors
    ///
    /// [`WeirError::Data`] for a watermark event of the wrong length.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Option<Watermark>> {
        if bytes.first() != Some(&WATERMARK_TAG) {
            return Ok(None);
        }
        if bytes.len() != WATERMARK_EVENT_LEN {
            return Err(WeirError::Data {
                message: format!(
                    "a watermark event of {} bytes (expected {WATERMARK_EVENT_LEN})",
                    bytes.len()
                ),
            });
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(Some(Watermark {
            time: word(1) as i64,
            emitted_us: word(9),
            idle_ms: u32::from_le_bytes(bytes[17..21].try_into().expect("4 bytes")),
        }))
    }
}

/// Microseconds since the Unix epoch now.
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// How a stream's watermarks are made: bounded out-of-orderness (Flink's
/// `forBoundedOutOfOrderness`), emitted every `interval` while they advance, with an
/// optional idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    bound_ms: i64,
    interval: Duration,
    idle: Option<Duration>,
}

impl Watermarks {
    /// Records may come up to `out_of_orderness` behind the latest timestamp seen: the
    /// watermark is that timestamp minus the bound, minus one millisecond.
    pub fn bounded(out_of_orderness: Duration) -> Watermarks {
        Watermarks {
            bound_ms: i64::try_from(out_of_orderness.as_millis()).unwrap_or(i64::MAX),
            interval: WATERMARK_INTERVAL_DEFAULT,
            idle: None,
        }
    }

    /// Timestamps that only grow (a bound of zero).
    pub fn ascending() -> Watermarks {
        Watermarks::bounded(Duration::ZERO)
    }

    /// Emit a watermark that advanced at most every `interval` (default
    /// [`WATERMARK_INTERVAL_DEFAULT`]): shorter means results sooner after their window
    /// ends, and one more event buffer per channel per interval.
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Watermarks {
        self.interval = interval;
        self
    }

    /// A channel that sent no record and no watermark for `timeout` is idle: the gates
    /// downstream leave it out of their minimum until it sends again (Flink's
    /// `withIdleness`). Records it sends after may then be late.
    #[must_use]
    pub fn idle_after(mut self, timeout: Duration) -> Watermarks {
        self.idle = Some(timeout);
        self
    }

    fn idle_ms(&self) -> u32 {
        self.idle.map_or(0, |idle| {
            u32::try_from(idle.as_millis()).unwrap_or(u32::MAX).max(1)
        })
    }
}

/// The timestamp of a record, in milliseconds.
pub(crate) type Timestamp<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// The timestamp assigner in a chain: forwards records, tracks the largest timestamp and
/// emits watermarks behind it (see [`Watermarks`]). Watermarks from upstream (an exchange)
/// are replaced by its own, except the END one.
pub(crate) struct EventTime<T> {
    pub(crate) timestamp: Timestamp<T>,
    pub(crate) strategy: Watermarks,
    pub(crate) down: Box<dyn Push<T>>,
    pub(crate) max_seen: i64,
    pub(crate) emitted: i64,
    pub(crate) since_clock: u32,
    /// Records between two looks at the clock: [`CLOCK_EVERY_RECORDS`] while records
    /// come faster than the interval, every record when they come slower (so a slow
    /// source's watermark never waits for 64 records).
    pub(crate) clock_every: u32,
    pub(crate) last_clock: Option<Instant>,
    pub(crate) last_emit: Option<Instant>,
    /// Its place in the task's checkpoints: the largest timestamp and the watermark
    /// emitted are its state.
    pub(crate) slot: Option<SnapshotSlot>,
}

impl<T> EventTime<T> {
    pub(crate) fn new(
        timestamp: Timestamp<T>,
        strategy: Watermarks,
        down: Box<dyn Push<T>>,
    ) -> EventTime<T> {
        EventTime {
            timestamp,
            strategy,
            down,
            max_seen: i64::MIN,
            emitted: i64::MIN,
            since_clock: 0,
            clock_every: 1,
            last_clock: None,
            last_emit: None,
            slot: None,
        }
    }

    /// Takes part in the task's checkpoints through `slot`, restoring what the checkpoint
    /// the job started from holds.
    pub(crate) fn snapshots(&mut self, slot: Option<SnapshotSlot>) -> Result<()> {
        if let Some((max_seen, emitted)) = SnapshotSlot::restored_value(slot.as_ref())? {
            self.max_seen = max_seen;
            self.emitted = emitted;
        }
        self.slot = slot;
        Ok(())
    }

    /// Emits the watermark behind the largest timestamp when it advanced and the
    /// interval since the last one passed.
    /// `records` came since the last look at the clock.
    fn maybe_emit(&mut self, records: u32) -> Result<()> {
        let now = Instant::now();
        // Records slower than 64 per interval: look at the clock at every record.
        let slow = self.last_clock.is_some_and(|last| {
            now.duration_since(last) * CLOCK_EVERY_RECORDS > self.strategy.interval * records
        });
        self.clock_every = if slow { 1 } else { CLOCK_EVERY_RECORDS };
        self.last_clock = Some(now);
        let time = self
            .max_seen
            .saturating_sub(self.strategy.bound_ms)
            .saturating_sub(1);
        if time <= self.emitted {
            return Ok(());
        }
        if self
            .last_emit
            .is_some_and(|last| now.duration_since(last) < self.strategy.interval)
        {
            return Ok(());
        }
        self.last_emit = Some(now);
        self.emitted = time;
        self.down
            .watermark(Watermark::now(time, self.strategy.idle_ms()))
    }
}

impl<T: Data> Push<T> for EventTime<T> {
    #[inline]
    fn push(&mut self, record: T) -> Result<()> {
        let time = (self.timestamp)(&record);
        self.max_seen = self.max_seen.max(time);
        self.down.push(record)?;
        self.since_clock += 1;
        if self.since_clock >= self.clock_every || self.last_emit.is_none() {
            let records = std::mem::take(&mut self.since_clock);
            self.maybe_emit(records)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        if watermark.time == Watermark::END {
            self.emitted = Watermark::END;
            return self.down.watermark(watermark);
        }
        Ok(())
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        if let Some(slot) = &self.slot {
            let mut bytes = Vec::new();
            append_record(&mut bytes, &(self.max_seen, self.emitted))?;
            slot.write(barrier.id, |piece| piece.frame(&bytes))?;
        }
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.down.finish()
    }

    fn is_done(&self) -> bool {
        self.down.is_done()
    }
}

/// One input channel's watermark state at a gate.
#[derive(Debug, Clone, Copy)]
struct ChannelMark {
    time: i64,
    emitted_us: u64,
    /// A record came since the gate last looked at the clock.
    touched: bool,
    last_active: Instant,
}

/// A gate's watermark: the minimum over its channels that are not idle.
#[derive(Debug)]
pub(crate) struct GateWatermark {
    channels: Vec<ChannelMark>,
    /// The largest idle timeout any channel's source declared (0: none).
    idle: Option<Duration>,
    out: i64,
    /// Every channel that has not finished was idle at the last look.
    all_idle: bool,
}

impl GateWatermark {
    pub(crate) fn new(channels: usize) -> GateWatermark {
        let now = Instant::now();
        GateWatermark {
            channels: vec![
                ChannelMark {
                    time: i64::MIN,
                    emitted_us: 0,
                    touched: false,
                    last_active: now,
                };
                channels
            ],
            idle: None,
            out: i64::MIN,
            all_idle: false,
        }
    }

    /// Whether every channel that has not finished was idle at the last look: a reader
    /// of several gates leaves such a gate out of its minimum.
    pub(crate) fn all_idle(&self) -> bool {
        self.all_idle
    }

    /// The watermark event `buffer` of `channel` into `gate` (made for `channels` channels
    /// at the first one): the gate's watermark when it advanced. Other buffers are no
    /// watermark and change nothing.
    ///
    /// # Errors
    ///
    /// As [`Watermark::decode`].
    pub(crate) fn on_event(
        gate: &mut Option<GateWatermark>,
        channels: usize,
        channel: ChannelIndex,
        buffer: &NetworkBuffer,
    ) -> Result<Option<Watermark>> {
        if buffer.data_type() != DataType::Event {
            return Ok(None);
        }
        let Some(watermark) = Watermark::decode(buffer.as_bytes())? else {
            return Ok(None);
        };
        Ok(gate
            .get_or_insert_with(|| GateWatermark::new(channels))
            .channel_watermark(channel, watermark))
    }

    /// A record of `channel` came.
    #[inline]
    pub(crate) fn touch(&mut self, channel: ChannelIndex) {
        if let Some(mark) = self.channels.get_mut(channel.as_usize()) {
            mark.touched = true;
        }
    }

    /// A watermark of `channel` came: the gate's watermark when it advanced.
    pub(crate) fn channel_watermark(
        &mut self,
        channel: ChannelIndex,
        watermark: Watermark,
    ) -> Option<Watermark> {
        let now = Instant::now();
        if watermark.idle_ms > 0 {
            let idle = Duration::from_millis(u64::from(watermark.idle_ms));
            self.idle = Some(self.idle.map_or(idle, |known| known.max(idle)));
        }
        if let Some(mark) = self.channels.get_mut(channel.as_usize()) {
            if watermark.time > mark.time {
                mark.time = watermark.time;
                mark.emitted_us = watermark.emitted_us;
            }
            mark.last_active = now;
            mark.touched = false;
        }
        self.advance(now)
    }

    /// The clock moved (the gate is waiting for input): the gate's watermark when
    /// channels that fell idle let it advance.
    pub(crate) fn tick(&mut self) -> Option<Watermark> {
        self.idle?;
        self.advance(Instant::now())
    }

    fn advance(&mut self, now: Instant) -> Option<Watermark> {
        let mut min: Option<&ChannelMark> = None;
        let (mut unfinished, mut active) = (0, 0);
        for mark in &mut self.channels {
            if mark.touched {
                mark.touched = false;
                mark.last_active = now;
            }
            let finished = mark.time == Watermark::END;
            let idle = !finished
                && self
                    .idle
                    .is_some_and(|idle| now.duration_since(mark.last_active) > idle);
            unfinished += usize::from(!finished);
            active += usize::from(!finished && !idle);
            if !idle && min.is_none_or(|m| mark.time < m.time) {
                min = Some(mark);
            }
        }
        self.all_idle = unfinished > 0 && active == 0;
        // Every channel that has not finished is idle: event time stays where it is (a
        // finished channel's END must not close every window of the idle ones).
        if self.all_idle {
            return None;
        }
        let min = min?;
        if min.time <= self.out {
            return None;
        }
        self.out = min.time;
        Some(Watermark {
            time: min.time,
            emitted_us: min.emitted_us,
            idle_ms: self.idle.map_or(0, |idle| {
                u32::try_from(idle.as_millis()).unwrap_or(u32::MAX)
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(time: i64) -> Watermark {
        Watermark {
            time,
            emitted_us: 7,
            idle_ms: 0,
        }
    }

    #[test]
    fn a_watermark_event_round_trips_and_other_events_are_not_watermarks() {
        let w = Watermark {
            time: -5,
            emitted_us: 123,
            idle_ms: 40,
        };
        assert_eq!(Watermark::decode(&w.encode()).unwrap(), Some(w));
        assert_eq!(Watermark::decode(b"B123").unwrap(), None);
        assert!(Watermark::decode(&w.encode()[..10]).is_err());
    }

    #[test]
    fn the_gate_watermark_is_the_minimum_and_never_goes_back() {
        let mut gate = GateWatermark::new(2);
        assert_eq!(gate.channel_watermark(ChannelIndex(0), mark(10)), None);
        assert_eq!(
            gate.channel_watermark(ChannelIndex(1), mark(5))
                .map(|w| w.time),
            Some(5)
        );
        assert_eq!(
            gate.channel_watermark(ChannelIndex(1), mark(20))
                .map(|w| w.time),
            Some(10)
        );
        // A channel's watermark going back changes nothing.
        assert_eq!(gate.channel_watermark(ChannelIndex(0), mark(3)), None);
        assert_eq!(
            gate.channel_watermark(ChannelIndex(0), mark(Watermark::END))
                .map(|w| w.time),
            Some(20)
        );
    }

    #[test]
    fn an_idle_channel_does_not_hold_the_gate_back() {
        let mut gate = GateWatermark::new(2);
        let idle = Watermark {
            idle_ms: 5,
            ..mark(1)
        };
        gate.channel_watermark(ChannelIndex(1), idle);
        assert_eq!(
            gate.channel_watermark(
                ChannelIndex(0),
                Watermark {
                    idle_ms: 5,
                    ..mark(50)
                }
            )
            .map(|w| w.time),
            Some(1)
        );
        std::thread::sleep(Duration::from_millis(20));
        // Channel 0 stays active; channel 1 sent nothing for longer than 5 ms.
        gate.touch(ChannelIndex(0));
        assert_eq!(gate.tick().map(|w| w.time), Some(50));
    }

    #[test]
    fn a_finished_channel_beside_idle_ones_does_not_end_event_time() {
        let mut gate = GateWatermark::new(2);
        let idle = |time| Watermark {
            idle_ms: 5,
            ..mark(time)
        };
        gate.channel_watermark(ChannelIndex(1), idle(7));
        gate.channel_watermark(ChannelIndex(0), idle(Watermark::END));
        std::thread::sleep(Duration::from_millis(20));
        // Channel 1 is idle and channel 0 finished: nothing may close channel 1's windows.
        assert_eq!(gate.tick(), None);
        assert!(gate.all_idle());
        // Channel 1 sends again: its own watermark counts.
        assert_eq!(
            gate.channel_watermark(ChannelIndex(1), idle(9))
                .map(|w| w.time),
            Some(9)
        );
        assert!(!gate.all_idle());
    }

    #[test]
    fn a_gate_without_idle_timeouts_waits_for_every_channel() {
        let mut gate = GateWatermark::new(2);
        gate.channel_watermark(ChannelIndex(0), mark(9));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(gate.tick(), None);
    }
}
