//! W5: end-to-end latency across worker processes (docs/WORKLOADS.md), as a dataflow
//! program. Each source task emits (key, timestamp) records at its share of a fixed rate;
//! a hash exchange sends them to every worker's sink task, which records now − timestamp
//! in an HdrHistogram; the sinks' histograms are collected on worker 0 and merged.
//!
//! ```text
//!   source_push(paced: rate / tasks) ──key_by(key).partition()──▶ fold(histogram) ──▶ collect
//!     idle (TaskContext::input_idle) while it waits for its next record's time, so
//!     `--flush idle` sends what it wrote at once; every | timeout | full as configured
//! ```
//!
//! Timestamps are wall-clock nanoseconds: the workers of a local launch share the clock;
//! across hosts the figures include the clocks' offset. Each source sends a number of
//! records fixed by rate and duration (it catches up when late), so the count the sinks
//! must record is known apart from the job.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use weir::config::Config;
use weir::dataflow::{Collected, Dataflow, Push, TaskContext, WorkerReport};
use weir::error::{Result, WeirError};
use weir::netstack::transport::NetworkConfig;

use crate::args::flush_name;
use crate::report::{Report, round};

/// Largest latency recorded: 60 s, in nanoseconds.
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// Records between two checks of the job's cancel flag in a source.
const CANCEL_CHECK_RECORDS: u64 = 1024;

/// What to measure.
#[derive(Debug, Clone)]
pub struct LatencyJob {
    /// Records per second, over all sources.
    pub rate: u64,
    /// How long the sources emit.
    pub duration: Duration,
    /// Workers (at least 2: latency is measured across processes), slots, flushing.
    pub config: Config,
}

/// A record of W5: a key and the wall-clock time its source emitted it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Stamp {
    key: u64,
    sent_ns: u64,
}

/// A sink task's latencies, in nanoseconds (sent as its recorded buckets).
#[derive(Debug, Clone)]
pub struct Latencies(pub Histogram<u64>);

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies(Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid bounds"))
    }
}

impl Serialize for Latencies {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let buckets: Vec<(u64, u64)> = self
            .0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        buckets.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Latencies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Latencies, D::Error> {
        let mut latencies = Latencies::default();
        for (value, count) in Vec::<(u64, u64)>::deserialize(d)? {
            latencies
                .0
                .record_n(value.clamp(1, LATENCY_NS_MAX), count)
                .map_err(serde::de::Error::custom)?;
        }
        Ok(latencies)
    }
}

/// The job's result.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// Worker processes.
    pub workers: usize,
    /// Task slots per worker.
    pub slots: usize,
    /// Records per second, over all sources.
    pub rate: u64,
    /// The flush mode.
    pub flush: String,
    /// Latencies the sinks recorded.
    pub records: u64,
    /// Median latency.
    pub latency_p50_ms: f64,
    /// 99th percentile.
    pub latency_p99_ms: f64,
    /// 99.9th percentile.
    pub latency_p999_ms: f64,
    /// The largest latency.
    pub latency_max_ms: f64,
    /// The job's wall time.
    pub wall_s: f64,
    /// Time the sinks waited for input, summed over the workers.
    pub idle_s: f64,
    /// Time the sources waited for buffers, summed over the workers.
    pub back_pressured_s: f64,
    /// Bytes sent between workers.
    pub remote_bytes: u64,
    /// Every record the sources must send was recorded once, and every segment came home.
    pub valid: bool,
}

impl LatencyReport {
    /// The docs/WORKLOADS.md JSON line.
    pub fn to_json(&self) -> String {
        Report::new("W5", self).to_json()
    }
}

/// Runs W5 with this process as worker 0 beside worker processes started with
/// `worker_args`.
///
/// # Errors
///
/// An invalid job (a rate of 0, fewer than 2 workers); the runtime's errors.
pub fn run_latency(job: &LatencyJob, worker_args: &[String]) -> Result<LatencyReport> {
    validate(job)?;
    let timeout = job.duration + Duration::from_secs(120);
    let (report, sinks) = crate::cluster::run_job(&job.config, worker_args, timeout, |network| {
        let (flow, sinks) = program(job);
        let report = weir::dataflow::execute(&flow, &job.config, network)?;
        Ok((report, sinks.take()))
    })?;
    let mut latencies = Latencies::default();
    for sink in &sinks {
        latencies.0.add(&sink.0).map_err(|e| WeirError::Data {
            message: format!("cannot merge latency histograms: {e}"),
        })?;
    }
    let records = latencies.0.len();
    let quantile = |q: f64| round(latencies.0.value_at_quantile(q) as f64 / 1e6, 3);
    Ok(LatencyReport {
        workers: job.config.workers,
        slots: job.config.slots,
        rate: job.rate,
        flush: flush_name(job.config.flush),
        records,
        latency_p50_ms: quantile(0.5),
        latency_p99_ms: quantile(0.99),
        latency_p999_ms: quantile(0.999),
        latency_max_ms: round(latencies.0.max() as f64 / 1e6, 3),
        wall_s: round(report.wall_s(), 3),
        idle_s: round(report.total(|w| w.idle_us) as f64 / 1e6, 3),
        back_pressured_s: round(report.total(|w| w.back_pressured_us) as f64 / 1e6, 3),
        remote_bytes: report.total(|w| w.remote_bytes),
        valid: sinks.len() == job.config.parallelism()
            && records == job.config.parallelism() as u64 * records_per_source(job)
            && report.leak_free(),
    })
}

/// This worker's part of W5 (processes 1 to N − 1).
///
/// # Errors
///
/// As [`run_latency`].
pub fn run_latency_worker(job: &LatencyJob, network: NetworkConfig) -> Result<WorkerReport> {
    validate(job)?;
    let (flow, _sinks) = program(job);
    weir::dataflow::execute(&flow, &job.config, Some(network))
}

fn validate(job: &LatencyJob) -> Result<()> {
    job.config.validate()?;
    let usage = |message: String| Err(WeirError::Usage { message });
    if job.rate == 0 {
        return usage("--rate 0: at least 1 record per second".to_owned());
    }
    if job.config.workers < 2 {
        return usage(format!(
            "--workers {}: at least 2 (latency is measured across processes)",
            job.config.workers
        ));
    }
    Ok(())
}

/// The time between two records of one source task.
fn interval(job: &LatencyJob) -> Duration {
    Duration::from_secs_f64(job.config.parallelism() as f64 / job.rate as f64)
}

/// How many records each source task sends: one per interval within the duration.
fn records_per_source(job: &LatencyJob) -> u64 {
    let interval = interval(job);
    (0u64..)
        .take_while(|&k| interval.mul_f64(k as f64) < job.duration)
        .count() as u64
}

fn program(job: &LatencyJob) -> (Dataflow, Collected<Latencies>) {
    let flow = Dataflow::new();
    let (interval, count) = (interval(job), records_per_source(job));
    let sinks = flow
        .source_push("paced", 0, move |ctx, down| {
            paced(ctx, down, interval, count)
        })
        .key_by(|stamp: &Stamp| stamp.key)
        .partition()
        .fold(
            |_| Latencies::default(),
            |latencies, stamp: Stamp| {
                let latency = now_ns().saturating_sub(stamp.sent_ns);
                latencies
                    .0
                    .record(latency.clamp(1, LATENCY_NS_MAX))
                    .expect("clamped into the bounds");
            },
            |latencies| latencies,
        )
        .collect();
    (flow, sinks)
}

/// Emits `count` records, one every `interval`, each stamped when emitted; says it is
/// idle (for `--flush idle`) while it waits for the next record's time.
fn paced(
    ctx: &TaskContext,
    down: &mut dyn Push<Stamp>,
    interval: Duration,
    count: u64,
) -> Result<()> {
    let start = Instant::now();
    let mut key = (ctx.task() as u64) << 48;
    for sent in 0..count {
        let due = interval.mul_f64(sent as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            ctx.input_idle();
            std::thread::sleep(wait);
        }
        if sent % CANCEL_CHECK_RECORDS == 0 {
            ctx.check_cancelled()?;
        }
        key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
        down.push(Stamp {
            key,
            sent_ns: now_ns(),
        })?;
    }
    Ok(())
}

fn now_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_cross_an_exchange_as_their_buckets() {
        let mut latencies = Latencies::default();
        for v in [1_000u64, 2_000, 2_000, 5_000_000] {
            latencies.0.record(v).unwrap();
        }
        let bytes = weir_serde_fmt::to_vec(&latencies).unwrap();
        let back: Latencies = weir_serde_fmt::from_slice(&bytes).unwrap();
        assert_eq!(back.0.len(), 4);
        assert_eq!(
            back.0.value_at_quantile(0.5),
            latencies.0.value_at_quantile(0.5)
        );
        assert_eq!(back.0.max(), latencies.0.max());
    }

    #[test]
    fn each_source_sends_what_rate_and_duration_say() {
        let job = LatencyJob {
            rate: 1000,
            duration: Duration::from_millis(100),
            config: Config {
                workers: 2,
                ..Config::default()
            },
        };
        // 2 tasks at 500/s each for 0.1 s: 50 records each.
        assert_eq!(records_per_source(&job), 50);
        let one = LatencyJob {
            config: Config::default(),
            ..job
        };
        assert!(
            validate(&one)
                .unwrap_err()
                .to_string()
                .contains("at least 2")
        );
    }
}
