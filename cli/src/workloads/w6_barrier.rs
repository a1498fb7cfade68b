//! W6: barriers under backpressure (docs/WORKLOADS.md), as a dataflow program. Each
//! worker runs a source task that emits as fast as credit allows (always back-pressured)
//! and a slow map (a fixed busy time per record); records go from every source to every
//! map by key. The runtime injects a barrier at every source each interval
//! (`Config::barrier_interval`); its delay is the time from its scheduled injection until
//! the map's gate has aligned it on every input channel: the time it queued behind the
//! data in flight, plus alignment. Buffer debloating shrinks that data to about `target`
//! worth of the map's throughput.
//!
//! ```text
//!   source_push(flood for `duration`) ──key_by(key).partition()──▶ map(busy) ──▶ fold(count)
//!     every interval: Barrier k (the runtime's)   the map's gate aligns it: delay, alignment
//! ```
//!
//! With `committed` set (`--output DIR`), W6 runs in its checkpointable form: a replayable
//! source of as many records as the maps take in `duration` (the workers × `duration` /
//! `busy`), the same exchange and slow map, and a committed file sink (exactly once,
//! `Stream::write_committed`) into `DIR`; with `Config::checkpoint` too, every barrier is a
//! checkpoint and the JSON line gains their durations (`checkpoint_p50_ms`, …), the cost of
//! a checkpoint behind back-pressured data. Throughput is then the records over the wall.
//!
//! ```text
//!   generate(n) ──key_by(key).partition()──▶ map(busy) ──▶ write_committed(DIR)
//! ```
//!
//! Barriers scheduled within the warm-up (default 10 s of 40) are aligned but not
//! counted; the throughput counts the records emitted after it. The warm-up covers
//! connection set-up, the sources filling every queue, and the debloater's first
//! moving-average span (4 s); it is stated in the JSON line (`warmup_s`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir::config::Config;
use weir::dataflow::{
    BarrierSample, Collected, Dataflow, JobReport, Push, TaskContext, WorkerReport,
};
use weir::error::{Result, WeirError};
use weir::netstack::transport::NetworkConfig;

use crate::report::{Report, round};

/// Records a source pushes between two looks at its clock, the cancel flag and its
/// barrier schedule.
const BATCH: u64 = 64;

/// The stage of the slow map (the source's is 0).
const MAP_STAGE: u32 = 1;

/// What W6 runs.
#[derive(Debug, Clone)]
pub struct BarrierJob {
    /// The map's busy time per record.
    pub busy: Duration,
    /// How long the sources emit.
    pub duration: Duration,
    /// Barriers scheduled before this much time has passed are aligned but not counted
    /// (buffers start at full size; debloating needs a few seconds to settle).
    pub warmup: Duration,
    /// The checkpointable form's output directory (`None`: the flooding source and a
    /// count per map task).
    pub committed: Option<PathBuf>,
    /// Workers, debloating and its target, the barrier interval (`barrier_interval` set),
    /// and checkpoints (only with `committed`).
    pub config: Config,
}

impl BarrierJob {
    fn interval(&self) -> Duration {
        self.config
            .barrier_interval
            .unwrap_or(Duration::from_secs(2))
    }

    /// The first barrier id scheduled after the warm-up.
    fn first_measured(&self) -> u64 {
        let interval = self.interval().as_micros().max(1);
        (self.warmup.as_micros().div_ceil(interval) as u64).max(1)
    }

    /// The records of the checkpointable form: what the maps take in `duration`.
    fn records(&self) -> u64 {
        let per_map = self.duration.as_micros() / self.busy.as_micros().max(1);
        (per_map as u64).saturating_mul(self.config.workers.max(1) as u64)
    }
}

/// A record of W6: its key, and whether its source emitted it after the warm-up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Item {
    key: u64,
    measured: bool,
}

/// The dataflow program every worker builds: each map task's count of measured records.
/// In the checkpointable form, nothing is collected.
fn program(job: &BarrierJob) -> (Dataflow, Option<Collected<u64>>) {
    let flow = Dataflow::new();
    if let Some(out) = &job.committed {
        let busy = job.busy;
        flow.generate(job.records(), |i| {
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
        })
        .key_by(|key: &u64| *key)
        .partition()
        .map(move |key: u64| {
            spin(busy);
            key
        })
        .write_committed(out, |key| format!("{key:016x}"));
        return (flow, None);
    }
    let counts = barrier_pipeline(&flow, job.duration, job.warmup, job.busy).collect();
    (flow, Some(counts))
}

/// Busy for `busy`: the slow map's work.
fn spin(busy: Duration) {
    let until = Instant::now() + busy;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// W6's pipeline in `flow`: a source that floods for `duration`, a hash exchange and a
/// map busy for `busy` per record; each map task's count of the records emitted after
/// `warmup`. Its source is the flow's next stage, its map the one after.
pub fn barrier_pipeline(
    flow: &Dataflow,
    duration: Duration,
    warmup: Duration,
    busy: Duration,
) -> weir::dataflow::Stream<u64> {
    flow.source_push("flood", 0, move |ctx, down| {
        flood(ctx, down, duration, warmup)
    })
    .key_by(|item: &Item| item.key)
    .partition()
    .map(move |item: Item| {
        spin(busy);
        item
    })
    .fold(
        |_| 0u64,
        |n, item: Item| *n += u64::from(item.measured),
        |n| n,
    )
}

/// Emits records as fast as the exchange takes them for `duration`, in batches between
/// looks at the clock (and the runtime's barrier schedule).
fn flood(
    ctx: &TaskContext,
    down: &mut dyn Push<Item>,
    duration: Duration,
    warmup: Duration,
) -> Result<()> {
    let start = Instant::now();
    let mut key = (ctx.task() as u64) << 48;
    loop {
        ctx.check_cancelled()?;
        ctx.inject_barriers(down)?;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return Ok(());
        }
        let measured = elapsed >= warmup;
        for _ in 0..BATCH {
            key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
            down.push(Item { key, measured })?;
        }
    }
}

/// One worker's gate in W6's JSON line.
#[derive(Debug, Clone, Serialize)]
struct GateSummary {
    process: u32,
    barriers: usize,
    barrier_delay_p50_ms: f64,
    barrier_delay_p99_ms: f64,
    alignment_p50_ms: f64,
    alignment_p99_ms: f64,
    /// The debloated buffer size at the end (0 without debloating).
    buffer_size_bytes: u64,
    inflight_bytes_max: u64,
    /// Milliseconds per second of the job its tasks waited for buffers (the source) and
    /// for input.
    back_pressured_ms_per_s: f64,
    idle_ms_per_s: f64,
}

/// W6's JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct BarrierReport {
    workers: usize,
    debloat: bool,
    target_ms: u128,
    busy_us: u128,
    seconds: f64,
    warmup_s: f64,
    barrier_interval_s: f64,
    barriers: usize,
    barrier_delay_p50_ms: f64,
    barrier_delay_p99_ms: f64,
    alignment_p50_ms: f64,
    alignment_p99_ms: f64,
    inflight_bytes_max: u64,
    buffer_size_bytes: u64,
    records_per_s: f64,
    /// The checkpointable form: whether it took checkpoints; those completed after the
    /// warm-up, their duration (barrier scheduled to manifest in place) and largest size.
    committed: bool,
    checkpointed: bool,
    checkpoints: usize,
    checkpoint_p50_ms: f64,
    checkpoint_p99_ms: f64,
    checkpoint_bytes_max: u64,
    /// The longest a task's file took to finish in the background (the asynchronous part).
    checkpoint_async_ms_max: f64,
    /// `--alignment-timeout-ms` (absent: aligned), the barriers the gates released
    /// unaligned and the bytes of channel state they recorded (summed over the workers).
    alignment_timeout_ms: Option<u128>,
    barriers_unaligned: u64,
    channel_state_bytes: u64,
    wall_s: f64,
    valid: bool,
    gates: Vec<GateSummary>,
}

impl BarrierReport {
    /// The docs/WORKLOADS.md JSON line.
    pub fn to_json(&self) -> String {
        Report::new("W6", self).to_json()
    }
}

/// The value at `quantile` (nearest rank) of microseconds, in milliseconds; 0 when empty.
fn quantile_ms(values: &[u64], quantile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    round(sorted[rank - 1] as f64 / 1e3, 1)
}

/// The map gates' barriers after the warm-up.
fn measured<'a>(job: &BarrierJob, worker: &'a WorkerReport) -> Vec<&'a BarrierSample> {
    let first = job.first_measured();
    worker
        .barriers
        .iter()
        .filter(|b| b.stage == MAP_STAGE && b.id >= first)
        .collect()
}

/// One worker's map gate in W6's JSON line.
fn gate_summary(job: &BarrierJob, w: &WorkerReport, wall_s: f64) -> GateSummary {
    let per_s = |us: u64| round(us as f64 / 1e3 / wall_s.max(1e-9), 1);
    let barriers = measured(job, w);
    let delays: Vec<u64> = barriers.iter().map(|b| b.delay_us).collect();
    let alignments: Vec<u64> = barriers.iter().map(|b| b.alignment_us).collect();
    GateSummary {
        process: w.process,
        barriers: barriers.len(),
        barrier_delay_p50_ms: quantile_ms(&delays, 0.5),
        barrier_delay_p99_ms: quantile_ms(&delays, 0.99),
        alignment_p50_ms: quantile_ms(&alignments, 0.5),
        alignment_p99_ms: quantile_ms(&alignments, 0.99),
        buffer_size_bytes: w.buffer_size,
        inflight_bytes_max: w.in_flight_bytes,
        back_pressured_ms_per_s: per_s(w.back_pressured_us),
        idle_ms_per_s: per_s(w.idle_us),
    }
}

fn summarize(job: &BarrierJob, report: &JobReport, counts: &[u64]) -> BarrierReport {
    let wall_s = report.wall_s();
    let gates: Vec<GateSummary> = report
        .workers
        .iter()
        .map(|w| gate_summary(job, w, wall_s))
        .collect();
    let all = |f: fn(&BarrierSample) -> u64| -> Vec<u64> {
        report
            .workers
            .iter()
            .flat_map(|w| measured(job, w).into_iter().map(f))
            .collect()
    };
    let (delays, alignments) = (all(|b| b.delay_us), all(|b| b.alignment_us));
    let measured_s = job.duration.saturating_sub(job.warmup).as_secs_f64();
    let records_per_s = match job.committed {
        Some(_) => (job.records() as f64 / wall_s.max(1e-9)).round(),
        None => (counts.iter().sum::<u64>() as f64 / measured_s.max(1e-9)).round(),
    };
    let checkpoints: Vec<_> = report
        .workers
        .iter()
        .flat_map(|w| &w.checkpoints)
        .filter(|c| c.id >= job.first_measured() && !c.is_final)
        .collect();
    let durations: Vec<u64> = checkpoints.iter().map(|c| c.duration_us).collect();
    BarrierReport {
        workers: report.workers.len(),
        debloat: job.config.debloat,
        target_ms: job.config.debloat_target.as_millis(),
        busy_us: job.busy.as_micros(),
        seconds: job.duration.as_secs_f64(),
        warmup_s: job.warmup.as_secs_f64(),
        barrier_interval_s: job.interval().as_secs_f64(),
        barriers: delays.len(),
        barrier_delay_p50_ms: quantile_ms(&delays, 0.5),
        barrier_delay_p99_ms: quantile_ms(&delays, 0.99),
        alignment_p50_ms: quantile_ms(&alignments, 0.5),
        alignment_p99_ms: quantile_ms(&alignments, 0.99),
        inflight_bytes_max: report.max_of(|w| w.in_flight_bytes),
        buffer_size_bytes: report.max_of(|w| w.buffer_size),
        records_per_s,
        committed: job.committed.is_some(),
        checkpointed: job.config.checkpoint.is_some(),
        checkpoints: checkpoints.len(),
        checkpoint_p50_ms: quantile_ms(&durations, 0.5),
        checkpoint_p99_ms: quantile_ms(&durations, 0.99),
        checkpoint_bytes_max: checkpoints.iter().map(|c| c.bytes).max().unwrap_or(0),
        checkpoint_async_ms_max: round(
            report.max_of(|w| w.checkpoint_async_us_max) as f64 / 1e3,
            1,
        ),
        alignment_timeout_ms: job.config.alignment_timeout.map(|t| t.as_millis()),
        barriers_unaligned: report.total(|w| w.barriers_unaligned),
        channel_state_bytes: report.total(|w| w.channel_state_bytes),
        wall_s: round(wall_s, 3),
        valid: !delays.is_empty() && report.leak_free(),
        gates,
    }
}

/// Runs W6 with this process as worker 0 beside worker processes started with
/// `worker_args`; prints each worker's barrier delays.
///
/// # Errors
///
/// An invalid job; the runtime's errors; no barrier aligned after the warm-up.
pub fn run_barrier(job: &BarrierJob, worker_args: &[String]) -> Result<BarrierReport> {
    job.config.validate()?;
    let timeout = job.duration + Duration::from_secs(300);
    let (report, counts) = crate::cluster::run_job(&job.config, worker_args, timeout, |network| {
        let (flow, counts) = program(job);
        let report = weir::dataflow::execute(&flow, &job.config, network)?;
        Ok((report, counts.map(|c| c.take()).unwrap_or_default()))
    })?;
    for worker in &report.workers {
        let delays: Vec<String> = measured(job, worker)
            .iter()
            .map(|b| format!("{:.0}", b.delay_us as f64 / 1e3))
            .collect();
        eprintln!(
            "weir bench barrier: worker {} barrier delays (ms, in order): {}",
            worker.process,
            delays.join(" ")
        );
    }
    let summary = summarize(job, &report, &counts);
    if summary.barriers == 0 {
        return Err(WeirError::WrongAnswer {
            detail: "no barrier was aligned after the warm-up: run longer than the warm-up \
                     plus the barrier interval"
                .to_owned(),
        });
    }
    Ok(summary)
}

/// This worker's part of W6 (processes 1 to N − 1).
///
/// # Errors
///
/// As [`run_barrier`].
pub fn run_barrier_worker(job: &BarrierJob, network: NetworkConfig) -> Result<WorkerReport> {
    job.config.validate()?;
    let (flow, _counts) = program(job);
    weir::dataflow::execute(&flow, &job.config, Some(network))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barriers_of_the_warm_up_are_not_measured() {
        let job = BarrierJob {
            busy: Duration::ZERO,
            duration: Duration::from_secs(40),
            warmup: Duration::from_secs(10),
            committed: None,
            config: Config {
                barrier_interval: Some(Duration::from_secs(2)),
                ..Config::default()
            },
        };
        assert_eq!(job.first_measured(), 5);
        let mut worker = WorkerReport::default();
        for id in 1..=8 {
            for stage in [MAP_STAGE, 2] {
                worker.barriers.push(BarrierSample {
                    id,
                    stage,
                    delay_us: id * 1000,
                    alignment_us: 10,
                });
            }
        }
        let ids: Vec<u64> = measured(&job, &worker).iter().map(|b| b.id).collect();
        assert_eq!(ids, [5, 6, 7, 8]);
        assert!((quantile_ms(&[1000, 3000, 2000], 0.5) - 2.0).abs() < 1e-9);
        assert!(quantile_ms(&[], 0.99).abs() < 1e-9);
    }
}
