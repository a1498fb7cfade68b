//! `TaskTimeMeter`: where a task's time goes, as Flink reports it per task — busy,
//! idle (waiting for input) and back-pressured (waiting for an output buffer), in
//! milliseconds per second (`busyTimeMsPerSecond`, `idleTimeMsPerSecond`,
//! `backPressuredTimeMsPerSecond`); the three add up to 1000.
//!
//! ```text
//!   task thread:  ──busy──┤idle()  (gate empty, parked)  busy()├──busy── emit ─┐
//!                                                                             │ waits for a
//!   RecordWriter::metrics().back_pressured ── delta ──▶ add_back_pressured() ◀┘ buffer
//!   take() ──▶ TaskTimes { elapsed, idle, back_pressured, busy = the rest }
//! ```
//!
//! The task marks when it starts and stops waiting for input; the time it waited for
//! output buffers is measured where it waits (the record writer) and handed over as a
//! duration, so the meter never sits on the hot path of a write. Time comes from a
//! [`Clock`], so the tests are deterministic.

use std::sync::Arc;
use std::time::Duration;

use crate::debloat::Clock;

/// Where a task's time went over one window (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTimes {
    /// The window's length.
    pub elapsed: Duration,
    /// Time working: the window less idle and back-pressured time.
    pub busy: Duration,
    /// Time waiting for input.
    pub idle: Duration,
    /// Time waiting for an output buffer.
    pub back_pressured: Duration,
}

impl TaskTimes {
    /// Busy milliseconds per second of the window (0 for an empty window).
    pub fn busy_ms_per_s(&self) -> f64 {
        self.per_second(self.busy)
    }

    /// Idle milliseconds per second of the window.
    pub fn idle_ms_per_s(&self) -> f64 {
        self.per_second(self.idle)
    }

    /// Back-pressured milliseconds per second of the window.
    pub fn back_pressured_ms_per_s(&self) -> f64 {
        self.per_second(self.back_pressured)
    }

    fn per_second(&self, part: Duration) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            part.as_secs_f64() * 1000.0 / self.elapsed.as_secs_f64()
        }
    }
}

/// Splits a task's time into busy, idle and back-pressured (see the module docs).
#[derive(Debug)]
pub struct TaskTimeMeter {
    clock: Arc<dyn Clock>,
    start: Duration,
    // Since when the task has been waiting for input, while it is.
    idle_since: Option<Duration>,
    idle: Duration,
    back_pressured: Duration,
}

impl TaskTimeMeter {
    /// A meter whose first window starts now, with the task busy.
    pub fn new(clock: Arc<dyn Clock>) -> TaskTimeMeter {
        let start = clock.now();
        TaskTimeMeter {
            clock,
            start,
            idle_since: None,
            idle: Duration::ZERO,
            back_pressured: Duration::ZERO,
        }
    }

    /// The task waits for input from now (a no-op while it already does).
    pub fn idle(&mut self) {
        if self.idle_since.is_none() {
            self.idle_since = Some(self.clock.now());
        }
    }

    /// The task works again (a no-op while it does).
    pub fn busy(&mut self) {
        if let Some(since) = self.idle_since.take() {
            self.idle += self.clock.now().saturating_sub(since);
        }
    }

    /// The task spent `waited` waiting for an output buffer (as its record writer
    /// measured it) since it last said so.
    pub fn add_back_pressured(&mut self, waited: Duration) {
        self.back_pressured += waited;
    }

    /// The times since the last call (or the start); starts the next window.
    pub fn take(&mut self) -> TaskTimes {
        let now = self.clock.now();
        if let Some(since) = self.idle_since {
            self.idle += now.saturating_sub(since);
            self.idle_since = Some(now);
        }
        let elapsed = now.saturating_sub(self.start);
        // The writer's measure and the clock's may disagree by a little: never more than
        // the window.
        let idle = std::mem::take(&mut self.idle).min(elapsed);
        let back_pressured = std::mem::take(&mut self.back_pressured).min(elapsed - idle);
        self.start = now;
        TaskTimes {
            elapsed,
            busy: elapsed - idle - back_pressured,
            idle,
            back_pressured,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::debloat::ManualClock;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn idle_back_pressured_and_busy_add_up_to_the_window() {
        let clock = ManualClock::default();
        let mut meter = TaskTimeMeter::new(Arc::new(clock.clone()));
        clock.advance(100 * MS);
        meter.idle();
        clock.advance(300 * MS);
        meter.idle();
        clock.advance(100 * MS);
        meter.busy();
        meter.busy();
        clock.advance(500 * MS);
        meter.add_back_pressured(200 * MS);
        let times = meter.take();
        assert_eq!(
            times,
            TaskTimes {
                elapsed: 1000 * MS,
                busy: 400 * MS,
                idle: 400 * MS,
                back_pressured: 200 * MS,
            }
        );
        assert!((times.busy_ms_per_s() - 400.0).abs() < 1e-9);
        assert!((times.idle_ms_per_s() - 400.0).abs() < 1e-9);
        assert!((times.back_pressured_ms_per_s() - 200.0).abs() < 1e-9);
    }

    #[test]
    fn a_window_ending_while_idle_counts_it_and_the_next_goes_on_idle() {
        let clock = ManualClock::default();
        let mut meter = TaskTimeMeter::new(Arc::new(clock.clone()));
        meter.idle();
        clock.advance(250 * MS);
        assert_eq!(meter.take().idle, 250 * MS);
        clock.advance(250 * MS);
        meter.busy();
        clock.advance(500 * MS);
        // More back-pressure than the window holds (clocks disagree): capped.
        meter.add_back_pressured(2000 * MS);
        let times = meter.take();
        assert_eq!((times.idle, times.back_pressured), (250 * MS, 500 * MS));
        assert_eq!(times.busy, Duration::ZERO);
        assert_eq!(TaskTimes::default().busy_ms_per_s(), 0.0);
    }
}
