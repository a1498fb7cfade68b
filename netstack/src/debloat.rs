//! Buffer debloating (Flink's FLIP-183): size buffers so the data in flight to a gate takes
//! about a target time (default 1 s) to consume, however fast the consumer is.
//!
//! ```text
//!   gate consumes bytes ──▶ ThroughputMeter (bytes / time with data available;
//!                            time the gate sat empty is not counted)
//!        every period (200 ms) ──▶ BufferDebloater::update(throughput, buffers in use)
//!          desired in-flight bytes = throughput × target
//!          size = desired / most buffers in use over the last `samples` periods
//!          ──▶ EMA over `samples` (growth ≤ 2× per step)
//!          ──▶ clamp [min size, segment size] ──▶ announce when it moved ≥ threshold,
//!              reached a bound, or stayed ≥ settle band off for a whole EMA span:
//!              local channels set the producer's size, remote ones send NewBufferSize;
//!              the producer trims the buffers it starts from then on
//! ```
//!
//! **Why the most buffers in use of recent spans, not the last count.** A consumer that is not
//! the bottleneck of its job (its producers are held back by another consumer) sees its
//! queues run nearly empty now and then: 2 or 3 buffers in use where 30 were a second
//! before. Dividing by that count blows the size up tenfold, and when the queues fill
//! again they hold ten times the data wanted until the average comes back down, seconds
//! later: the in-flight time oscillates, and a barrier sent then waits far beyond the
//! target. Back-pressured queues fill to the most buffers they can hold, so that is the
//! count the size must be right for; a starved consumer has less in flight anyway, and
//! a size too small for its few buffers costs it nothing while it waits for data. The
//! starved phases last seconds (W6 saw 1 to 5 s), longer than one span of the moving
//! average (4 s at the defaults), so the peak is kept over
//! [`DEBLOAT_IN_USE_PEAK_SPANS`] spans: a lasting drop is followed after that.
//!
//! **Why shrinking is faster than growing.** Buffers too large cost at once: every byte
//! queued delays the next barrier, and when the consumer's throughput halves (another job
//! takes its CPU) the queued data takes twice the target to drain. Buffers too small
//! cost little while they stay well above the minimum. At Flink's symmetric average a
//! halving takes 7 periods (1.4 s) to cross the threshold, so a barrier every 2 s
//! likely meets the doubled queue; shrinking [`DEBLOAT_SHRINK_SPEEDUP`] times faster
//! announces it in 1 to 2 periods. Under noisy throughput the size settles a little
//! below the mean's goal (less in flight than the target, not more).
//!
//! **Why the settle band.** The threshold (Flink's 25%) keeps noise from flapping the
//! size, but on its own it also keeps a lasting error: a size falling toward its goal is
//! announced in steps of at least 25%, so the last announcement can sit up to 1/0.75 =
//! 1.33× above the goal and stay there for good: a third more data in flight than the
//! target, and a barrier waiting that much longer. The smoothed size staying beyond the
//! settle band (5%) on the same side for `samples` periods in a row (one span of the
//! moving average, 4 s at the defaults) is a bias, not noise, so it is announced too.
//!
//! Time comes from a [`Clock`], so the tests drive it by hand and are deterministic.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::constants::{DEBLOAT_IN_USE_PEAK_SPANS, DEBLOAT_SHRINK_SPEEDUP};
use crate::error::{NetError, Result};

/// A monotonic clock: the time since some fixed start.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The time now.
    fn now(&self) -> Duration;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock moved by hand (tests); clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// Bytes a gate consumed per second of time it had data to consume.
#[derive(Debug)]
pub struct ThroughputMeter {
    clock: Arc<dyn Clock>,
    bytes: u64,
    start: Duration,
    // When the gate ran empty, while it is.
    idle_since: Option<Duration>,
    idle: Duration,
}

impl ThroughputMeter {
    /// A meter starting now.
    pub fn new(clock: Arc<dyn Clock>) -> ThroughputMeter {
        let start = clock.now();
        ThroughputMeter {
            clock,
            bytes: 0,
            start,
            idle_since: None,
            idle: Duration::ZERO,
        }
    }

    /// The gate consumed `bytes`.
    pub fn record(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// The gate has nothing to consume: the time until [`resume`](Self::resume) does not
    /// count (an idle consumer is not a slow one).
    pub fn pause(&mut self) {
        if self.idle_since.is_none() {
            self.idle_since = Some(self.clock.now());
        }
    }

    /// The gate has data again.
    pub fn resume(&mut self) {
        if let Some(since) = self.idle_since.take() {
            self.idle += self.clock.now().saturating_sub(since);
        }
    }

    /// Bytes per second since the last call (or the start), counting only time with data;
    /// `None` when no such time passed. Starts the next measurement.
    pub fn take_throughput(&mut self) -> Option<f64> {
        let now = self.clock.now();
        if let Some(since) = self.idle_since {
            self.idle += now.saturating_sub(since);
            self.idle_since = Some(now);
        }
        let busy = now.saturating_sub(self.start).saturating_sub(self.idle);
        let bytes = std::mem::take(&mut self.bytes);
        self.start = now;
        self.idle = Duration::ZERO;
        (!busy.is_zero()).then(|| bytes as f64 / busy.as_secs_f64())
    }
}

/// How buffers are debloated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DebloatConfig {
    /// Whether buffer sizes follow the throughput at all.
    pub enabled: bool,
    /// The time the data in flight should take to consume.
    pub target: Duration,
    /// How often the size is recomputed.
    pub period: Duration,
    /// Samples the moving average spans.
    pub samples: u32,
    /// The smallest change, in percent of the announced size, worth announcing at once.
    pub threshold_percent: u32,
    /// The smallest change, in percent of the announced size, announced once it has
    /// lasted `samples` periods on the same side (a bias, not noise); at most
    /// `threshold_percent`.
    pub settle_percent: u32,
    /// The size announced when debloating starts (Flink 2.0's starting segment size):
    /// starting at the segment size would put a whole pool of full segments in flight and
    /// leave the average seconds of work to come down; growing is fast (up to 2× a period).
    pub initial_size: usize,
    /// The smallest buffer size in bytes.
    pub min_size: usize,
    /// The largest buffer size in bytes (the segment size).
    pub max_size: usize,
}

impl DebloatConfig {
    /// Flink's defaults (enabled; 1 s target; 200 ms period; 20 samples; 25% threshold;
    /// 256 B minimum; starting at 1 KiB, or the segment size if smaller) and a 5% settle
    /// band for segments of `segment_size` bytes.
    pub fn new(segment_size: usize) -> DebloatConfig {
        DebloatConfig {
            enabled: true,
            target: Duration::from_secs(1),
            period: Duration::from_millis(200),
            samples: 20,
            threshold_percent: 25,
            settle_percent: 5,
            initial_size: segment_size.min(1024),
            min_size: 256.min(segment_size),
            max_size: segment_size,
        }
    }

    /// Checks every field's range.
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidConfig`] naming the field, its value and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, value: String, expected: &'static str| {
            Err(NetError::InvalidConfig {
                field,
                value,
                expected,
            })
        };
        if self.target.is_zero() || self.target > Duration::from_secs(60) {
            return invalid(
                "debloat target",
                format!("{:?}", self.target),
                "above 0 and at most 60 s",
            );
        }
        if self.period < Duration::from_millis(10) || self.period > Duration::from_secs(60) {
            return invalid(
                "debloat period",
                format!("{:?}", self.period),
                "10 ms to 60 s",
            );
        }
        if !(1..=1000).contains(&self.samples) {
            return invalid("debloat samples", self.samples.to_string(), "1 to 1000");
        }
        if !(1..=100).contains(&self.threshold_percent) {
            return invalid(
                "debloat threshold",
                format!("{}%", self.threshold_percent),
                "1% to 100%",
            );
        }
        if !(1..=self.threshold_percent).contains(&self.settle_percent) {
            return invalid(
                "debloat settle band",
                format!("{}%", self.settle_percent),
                "1% up to the threshold",
            );
        }
        if self.min_size == 0 || self.min_size > self.max_size {
            return invalid(
                "debloat min size",
                format!("{} bytes", self.min_size),
                "1 byte up to the segment size",
            );
        }
        if !(self.min_size..=self.max_size).contains(&self.initial_size) {
            return invalid(
                "debloat initial size",
                format!("{} bytes", self.initial_size),
                "from the min size up to the segment size",
            );
        }
        Ok(())
    }
}

/// What one debloating step decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DebloatStep {
    /// The buffer size after this step (the announced one if not announced now).
    pub size: usize,
    /// Whether producers must be told the new size.
    pub announce: bool,
    /// Throughput × target: the bytes in flight wanted.
    pub desired_in_flight: f64,
}

/// Turns throughput samples into buffer sizes (see the module docs).
#[derive(Debug, Clone)]
pub struct BufferDebloater {
    config: DebloatConfig,
    // The smoothed size, and the size last announced.
    smoothed: f64,
    announced: usize,
    // The buffers in use of the last `samples` × DEBLOAT_IN_USE_PEAK_SPANS periods,
    // oldest first (capacity fixed at that).
    in_use_window: VecDeque<usize>,
    // Periods in a row the rounded size has been beyond the settle band, and on which
    // side (true: above the announced size).
    drift_periods: u32,
    drift_above: bool,
}

impl BufferDebloater {
    /// A debloater starting at the initial size (the largest when disabled).
    ///
    /// # Errors
    ///
    /// As [`DebloatConfig::validate`].
    pub fn new(config: DebloatConfig) -> Result<BufferDebloater> {
        config.validate()?;
        let start = if config.enabled {
            config.initial_size
        } else {
            config.max_size
        };
        Ok(BufferDebloater {
            config,
            smoothed: start as f64,
            announced: start,
            in_use_window: VecDeque::with_capacity(Self::in_use_window_len(&config)),
            drift_periods: 0,
            drift_above: false,
        })
    }

    /// The size last announced.
    pub fn size(&self) -> usize {
        self.announced
    }

    /// One period's step: `throughput` bytes/s consumed with `buffers_in_use` buffers in
    /// flight to the gate now (the size follows the most of the last `samples` periods).
    pub fn update(&mut self, throughput: f64, buffers_in_use: usize) -> DebloatStep {
        let config = self.config;
        let desired_in_flight = throughput.max(0.0) * config.target.as_secs_f64();
        if !config.enabled {
            return DebloatStep {
                size: self.announced,
                announce: false,
                desired_in_flight,
            };
        }
        let (min, max) = (config.min_size as f64, config.max_size as f64);
        if self.in_use_window.len() == Self::in_use_window_len(&config) {
            self.in_use_window.pop_front();
        }
        self.in_use_window.push_back(buffers_in_use.max(1));
        let in_use_peak = self.in_use_window.iter().copied().max().unwrap_or(1);
        let wanted = desired_in_flight / in_use_peak as f64;
        // An exponential moving average over `samples` periods, shrinking
        // DEBLOAT_SHRINK_SPEEDUP times faster than it grows; growth at most 2× a step, so
        // one burst does not blow buffers up.
        let alpha = 2.0 / (f64::from(config.samples) + 1.0);
        let alpha = if wanted < self.smoothed {
            (alpha * f64::from(DEBLOAT_SHRINK_SPEEDUP)).min(1.0)
        } else {
            alpha
        };
        let next = (self.smoothed + alpha * (wanted - self.smoothed)).min(self.smoothed * 2.0);
        self.smoothed = next.clamp(min, max);
        let size = self.smoothed.round() as usize;
        let change_percent = size.abs_diff(self.announced) as f64 * 100.0 / self.announced as f64;
        let at_bound =
            (size == config.min_size || size == config.max_size) && size != self.announced;
        let settled = self.drift(size, change_percent);
        let announce = at_bound || settled || change_percent >= f64::from(config.threshold_percent);
        if announce {
            self.announced = size;
            self.drift_periods = 0;
        }
        DebloatStep {
            size: self.announced,
            announce,
            desired_in_flight,
        }
    }

    /// Periods over which the most buffers in use is kept.
    fn in_use_window_len(config: &DebloatConfig) -> usize {
        config.samples as usize * DEBLOAT_IN_USE_PEAK_SPANS as usize
    }

    /// Counts the periods in a row `size` has been beyond the settle band on one side of
    /// the announced size; whether that lasted a whole moving-average span.
    fn drift(&mut self, size: usize, change_percent: f64) -> bool {
        if change_percent < f64::from(self.config.settle_percent) {
            self.drift_periods = 0;
            return false;
        }
        let above = size > self.announced;
        if self.drift_periods == 0 || above != self.drift_above {
            self.drift_above = above;
            self.drift_periods = 0;
        }
        self.drift_periods += 1;
        self.drift_periods >= self.config.samples
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const SEGMENT: usize = 32 * 1024;

    fn debloater() -> BufferDebloater {
        BufferDebloater::new(DebloatConfig::new(SEGMENT)).unwrap()
    }

    #[test]
    fn the_meter_counts_only_time_with_data() {
        let clock = ManualClock::default();
        let mut meter = ThroughputMeter::new(Arc::new(clock.clone()));
        meter.record(1000);
        clock.advance(Duration::from_millis(100));
        meter.pause();
        clock.advance(Duration::from_millis(900));
        meter.resume();
        meter.record(1000);
        clock.advance(Duration::from_millis(100));
        let throughput = meter.take_throughput().unwrap();
        assert!((throughput - 10_000.0).abs() < 1e-6, "{throughput}");
        // Idle for a whole period: no measurement, not "zero throughput".
        meter.pause();
        clock.advance(Duration::from_millis(200));
        assert_eq!(meter.take_throughput(), None);
    }

    #[test]
    fn steady_throughput_converges_to_throughput_times_target_over_buffers() {
        let mut debloater = debloater();
        // 1 MB/s with 100 buffers in flight: 10 000 bytes each.
        let mut step = debloater.update(1e6, 100);
        for _ in 0..100 {
            step = debloater.update(1e6, 100);
        }
        // Within the settle band, not only within the threshold.
        assert!(step.size.abs_diff(10_000) * 20 <= step.size, "{step:?}");
        assert!(
            (debloater.smoothed - 10_000.0).abs() < 50.0,
            "{}",
            debloater.smoothed
        );
        assert_eq!(step.desired_in_flight, 1e6);
    }

    #[test]
    fn a_lasting_bias_below_the_threshold_is_announced_after_one_span() {
        let mut debloater = debloater();
        for _ in 0..200 {
            debloater.update(2e5, 20);
        }
        let settled = debloater.size();
        assert!(settled.abs_diff(10_000) * 20 <= 10_000, "{settled}");
        // 15% fewer bytes wanted: below the 25% threshold, beyond the 5% settle band. The
        // smoothed size crosses the band within a period or two (shrinking is fast) and
        // must stay beyond it for 20 (one span) before it is announced.
        let steps: Vec<bool> = (0..60)
            .map(|_| debloater.update(1.7e5, 20).announce)
            .collect();
        let first = steps.iter().position(|&a| a).expect("announced");
        assert!((19..30).contains(&first), "announced at period {first}");
        assert_eq!(steps.iter().filter(|&&a| a).count(), 1, "{steps:?}");
        assert!(
            debloater.size().abs_diff(8_500) * 20 <= 8_500,
            "{}",
            debloater.size()
        );
    }

    #[test]
    fn queues_running_empty_now_and_then_do_not_blow_buffers_up() {
        let mut debloater = debloater();
        for _ in 0..200 {
            debloater.update(2e5, 20);
        }
        let settled = debloater.size();
        // Starved for 2 s of every 4 (2 buffers in use instead of 20): the size follows
        // the full queues, not the empty ones.
        for period in 0..200 {
            let in_use = if period % 20 < 10 { 2 } else { 20 };
            let step = debloater.update(2e5, in_use);
            assert!(
                step.size.abs_diff(settled) * 20 <= settled,
                "{period}: {step:?}"
            );
        }
        // A lasting drop is followed once the peak has aged out (5 spans of 20 periods)
        // and the average has moved.
        for _ in 0..300 {
            debloater.update(2e5, 10);
        }
        let size = debloater.size();
        assert!(size.abs_diff(20_000) * 20 <= 20_000, "{size}");
    }

    #[test]
    fn a_halved_throughput_is_announced_in_two_periods_a_doubled_one_more_slowly() {
        let mut debloater = debloater();
        for _ in 0..300 {
            debloater.update(2e5, 20);
        }
        let settled = debloater.size();
        let announced_at = (1..=10).find(|_| debloater.update(1e5, 20).announce);
        assert!(matches!(announced_at, Some(1 | 2)), "{announced_at:?}");
        for _ in 0..300 {
            debloater.update(1e5, 20);
        }
        assert!(debloater.size().abs_diff(settled / 2) * 20 <= settled / 2);
        // Back up: growing takes the symmetric average's time (several periods).
        let announced_at = (1..=20).find(|_| debloater.update(2e5, 20).announce);
        assert!(matches!(announced_at, Some(3..=8)), "{announced_at:?}");
    }

    #[test]
    fn a_throughput_drop_shrinks_buffers_within_a_few_periods() {
        let mut debloater = debloater();
        for _ in 0..50 {
            debloater.update(1e7, 10);
        }
        assert_eq!(debloater.size(), SEGMENT, "fast: the largest buffers");
        // The consumer slows down 100×. Shrinking, the average moves 4 × 2/21 of the way
        // per period, so the 25% threshold is crossed in the first period (it took 5 at
        // the symmetric average).
        let announced_at = (1..=10).find(|_| debloater.update(1e5, 10).announce);
        assert_eq!(announced_at, Some(1));
        for _ in 0..100 {
            debloater.update(1e5, 10);
        }
        // The announced size ends within the threshold of the 10 000 bytes wanted.
        let size = debloater.size();
        assert!(size.abs_diff(10_000) * 4 <= size, "{size}");
    }

    /// Noise is followed faster down than up, so the size settles a little below the
    /// noiseless one (announced once, by the settle band) and then stays.
    #[test]
    fn noisy_samples_do_not_oscillate_beyond_the_threshold() {
        let mut debloater = debloater();
        for _ in 0..200 {
            debloater.update(4e5, 20);
        }
        let settled = debloater.size();
        let mut announcements = Vec::new();
        let mut state = 7u64;
        for _ in 0..500 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            // ±20% noise around 400 kB/s.
            let noise = 0.8 + 0.4 * ((state >> 11) as f64 / (1u64 << 53) as f64);
            let step = debloater.update(4e5 * noise, 20);
            if step.announce {
                announcements.push(step.size);
            }
        }
        assert!(
            announcements.len() <= 1,
            "settled at {settled}: {announcements:?}"
        );
        let size = debloater.size();
        assert!(
            size <= settled && size * 10 >= settled * 8,
            "{settled} -> {size}"
        );
    }

    #[test]
    fn sizes_stay_within_the_bounds_and_reaching_one_is_announced() {
        let mut debloater = debloater();
        let mut reached_min = false;
        for _ in 0..200 {
            let step = debloater.update(10.0, 100);
            assert!(step.size >= 256);
            reached_min |= step.announce && step.size == 256;
        }
        assert!(reached_min);
        assert_eq!(debloater.size(), 256);
        let mut growth = Vec::new();
        for _ in 0..40 {
            growth.push(debloater.update(1e9, 1).size);
        }
        assert!(
            growth.windows(2).all(|w| w[1] <= w[0] * 2),
            "growth at most 2x: {growth:?}"
        );
        assert_eq!(debloater.size(), SEGMENT);
    }

    #[test]
    fn disabled_keeps_the_size_and_invalid_configs_name_the_field() {
        let mut debloater = BufferDebloater::new(DebloatConfig {
            enabled: false,
            ..DebloatConfig::new(SEGMENT)
        })
        .unwrap();
        assert!(!debloater.update(1.0, 10).announce);
        assert_eq!(debloater.size(), SEGMENT);
        let error = BufferDebloater::new(DebloatConfig {
            min_size: SEGMENT + 1,
            ..DebloatConfig::new(SEGMENT)
        })
        .unwrap_err();
        assert!(error.to_string().contains("debloat min size"), "{error}");
        let error = DebloatConfig {
            settle_percent: 30,
            ..DebloatConfig::new(SEGMENT)
        }
        .validate()
        .unwrap_err();
        assert!(error.to_string().contains("settle band"), "{error}");
        let error = DebloatConfig {
            samples: 0,
            ..DebloatConfig::new(SEGMENT)
        }
        .validate()
        .unwrap_err();
        assert!(error.to_string().contains("1 to 1000"), "{error}");
    }
}
