//! W6's measurements: one line per worker (its slow map's gate and its two tasks), and
//! the job's JSON line combining them.
//!
//! Everything is measured over the window after the warm-up: from `epoch + warmup` to
//! the end of emission. Per gate: the delay and the alignment time of every barrier, the
//! debloated buffer size, the buffers in use, the estimated in-flight bytes and time to
//! consume them (sampled every 100 ms; without debloating the gate measures no
//! throughput, so the time to consume reads 0), and where the map's and the source's time went
//! (busy / idle / back-pressured milliseconds per second, Flink's task metrics).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_netstack::TaskTimes;

use crate::report::{Report, round};

/// What W6 runs (what its report states beside the figures).
#[derive(Debug, Clone)]
pub struct BarrierJob {
    /// Whether the maps' gates debloat.
    pub debloat: bool,
    /// The debloating target.
    pub target: Duration,
    /// The map's busy time per record.
    pub busy: Duration,
    /// How long the sources emit.
    pub duration: Duration,
    /// The time between barriers.
    pub interval: Duration,
    /// Barriers scheduled before this much time has passed are aligned but not counted
    /// (buffers start at full size; debloating needs a few seconds to settle).
    pub warmup: Duration,
    /// Wall-clock nanoseconds at which the sources start (shared by every worker).
    pub epoch_ns: u64,
}

/// Gate samples of one worker over the measured window (every 100 ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GateSamples {
    /// Samples taken.
    pub count: u64,
    /// Sum of the debloated buffer sizes (the segment size without debloating).
    pub buffer_size_sum: u64,
    /// Sum of the buffers in use.
    pub buffers_in_use_sum: u64,
    /// Sum of the estimated in-flight bytes.
    pub inflight_sum: u64,
    /// The most estimated in-flight bytes.
    pub inflight_max: u64,
    /// Sum of the estimated times to consume the in-flight bytes, in milliseconds.
    pub time_to_consume_ms_sum: u64,
    /// The longest estimated time to consume them, in milliseconds.
    pub time_to_consume_ms_max: u64,
}

impl GateSamples {
    /// Adds one sample. Without debloating the gate estimates no in-flight bytes: they
    /// are its buffers in use × `buffer_size` (whole segments, full under backpressure).
    pub fn add(&mut self, metrics: &weir_netstack::input::GateMetrics, buffer_size: usize) {
        let in_flight = if metrics.debloated_buffer_size == 0 {
            (metrics.buffers_in_use * buffer_size) as u64
        } else {
            metrics.in_flight_bytes
        };
        self.count += 1;
        self.buffer_size_sum += buffer_size as u64;
        self.buffers_in_use_sum += metrics.buffers_in_use as u64;
        self.inflight_sum += in_flight;
        self.inflight_max = self.inflight_max.max(in_flight);
        self.time_to_consume_ms_sum += metrics.time_to_consume_ms;
        self.time_to_consume_ms_max = self.time_to_consume_ms_max.max(metrics.time_to_consume_ms);
    }

    fn mean(&self, sum: u64) -> f64 {
        sum as f64 / self.count.max(1) as f64
    }
}

/// Busy / idle / back-pressured milliseconds per second of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMsPerSecond {
    /// Busy ms per second.
    pub busy: u32,
    /// Idle ms per second.
    pub idle: u32,
    /// Back-pressured ms per second.
    pub back_pressured: u32,
}

impl From<TaskTimes> for TaskMsPerSecond {
    fn from(times: TaskTimes) -> TaskMsPerSecond {
        TaskMsPerSecond {
            busy: times.busy_ms_per_s().round() as u32,
            idle: times.idle_ms_per_s().round() as u32,
            back_pressured: times.back_pressured_ms_per_s().round() as u32,
        }
    }
}

/// One worker's measurements over the window after the warm-up (its last line to the
/// launcher, through [`crate::report::worker_line`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BarrierWorkerReport {
    /// This worker's process index.
    pub process: u32,
    /// Records its map processed in the window.
    pub records: u64,
    /// The window's length, in microseconds.
    pub window_us: u64,
    /// The delay of every barrier of the window, in nanoseconds: scheduled injection at
    /// the sources until the map's gate had it on every channel.
    pub delays_ns: Vec<u64>,
    /// The alignment time of the same barriers: first channel's barrier to the last.
    pub alignments_ns: Vec<u64>,
    /// The injection lag of the same barriers: scheduled until the source that completed
    /// the alignment really injected it (it waits for a buffer, or for a CPU).
    pub injection_lags_ns: Vec<u64>,
    /// Its gate's debloated buffer size at the end (the segment size without debloating).
    pub buffer_size: usize,
    /// Its gate, sampled.
    pub gate: GateSamples,
    /// Its slow map's time.
    pub map: TaskMsPerSecond,
    /// Its source's time.
    pub source: TaskMsPerSecond,
}

impl BarrierWorkerReport {
    /// This gate's figures for the job's JSON line.
    fn summary(&self) -> GateSummary {
        let g = &self.gate;
        let task = |t: &TaskMsPerSecond| [t.busy, t.idle, t.back_pressured];
        GateSummary {
            process: self.process,
            barriers: self.delays_ns.len(),
            barrier_delay_p50_ms: quantile_ms(&sorted(&self.delays_ns), 0.5),
            barrier_delay_p99_ms: quantile_ms(&sorted(&self.delays_ns), 0.99),
            alignment_p50_ms: quantile_ms(&sorted(&self.alignments_ns), 0.5),
            alignment_p99_ms: quantile_ms(&sorted(&self.alignments_ns), 0.99),
            injection_lag_p99_ms: quantile_ms(&sorted(&self.injection_lags_ns), 0.99),
            buffer_size_bytes: self.buffer_size,
            buffer_size_bytes_mean: g.mean(g.buffer_size_sum).round(),
            buffers_in_use_mean: round(g.mean(g.buffers_in_use_sum), 1),
            inflight_bytes_mean: g.mean(g.inflight_sum).round(),
            inflight_bytes_max: g.inflight_max,
            time_to_consume_ms_mean: g.mean(g.time_to_consume_ms_sum).round(),
            time_to_consume_ms_max: g.time_to_consume_ms_max,
            records_per_s: (self.records as f64 * 1e6 / self.window_us.max(1) as f64).round(),
            map_ms_per_s: task(&self.map),
            source_ms_per_s: task(&self.source),
        }
    }
}

/// One gate's figures in W6's JSON line.
#[derive(Debug, Clone, Serialize)]
struct GateSummary {
    process: u32,
    barriers: usize,
    barrier_delay_p50_ms: f64,
    barrier_delay_p99_ms: f64,
    alignment_p50_ms: f64,
    alignment_p99_ms: f64,
    injection_lag_p99_ms: f64,
    buffer_size_bytes: usize,
    buffer_size_bytes_mean: f64,
    buffers_in_use_mean: f64,
    inflight_bytes_mean: f64,
    inflight_bytes_max: u64,
    time_to_consume_ms_mean: f64,
    time_to_consume_ms_max: u64,
    records_per_s: f64,
    /// Busy, idle and back-pressured ms per second of the slow map.
    map_ms_per_s: [u32; 3],
    /// The same of the source.
    source_ms_per_s: [u32; 3],
}

fn sorted(values: &[u64]) -> Vec<u64> {
    let mut values = values.to_vec();
    values.sort_unstable();
    values
}

/// The value at `quantile` (nearest rank) of sorted nanoseconds, in milliseconds; 0 when
/// empty.
fn quantile_ms(sorted_ns: &[u64], quantile: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((quantile * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    round(sorted_ns[rank - 1] as f64 / 1e6, 1)
}

/// The job's result over every worker.
#[derive(Debug)]
pub struct BarrierReport {
    /// Every worker's report.
    pub workers: Vec<BarrierWorkerReport>,
    /// Every barrier's delay, in nanoseconds, sorted.
    pub delays_ns: Vec<u64>,
    /// Every barrier's alignment time, in nanoseconds, sorted.
    pub alignments_ns: Vec<u64>,
    /// The largest in-flight estimate of any gate in the window.
    pub inflight_max: u64,
    /// The largest debloated buffer size at the end.
    pub buffer_size: usize,
    /// Records per second through all maps in the window.
    pub records_per_s: f64,
}

impl BarrierReport {
    /// Combines the workers' reports.
    pub fn combine(reports: &[BarrierWorkerReport]) -> BarrierReport {
        let all = |f: fn(&BarrierWorkerReport) -> &Vec<u64>| {
            sorted(&reports.iter().flat_map(f).copied().collect::<Vec<u64>>())
        };
        BarrierReport {
            workers: reports.to_vec(),
            delays_ns: all(|r| &r.delays_ns),
            alignments_ns: all(|r| &r.alignments_ns),
            inflight_max: reports
                .iter()
                .map(|r| r.gate.inflight_max)
                .max()
                .unwrap_or(0),
            buffer_size: reports.iter().map(|r| r.buffer_size).max().unwrap_or(0),
            records_per_s: reports
                .iter()
                .map(|r| r.records as f64 * 1e6 / r.window_us.max(1) as f64)
                .sum(),
        }
    }

    /// The delay at `quantile` (nearest rank), in milliseconds; 0 without barriers.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        quantile_ms(&self.delays_ns, quantile)
    }

    /// The alignment time at `quantile` (nearest rank), in milliseconds.
    pub fn alignment_quantile_ms(&self, quantile: f64) -> f64 {
        quantile_ms(&self.alignments_ns, quantile)
    }

    /// The docs/WORKLOADS.md JSON line: the job's figures, then one object per gate.
    pub fn to_json(&self, job: &BarrierJob) -> String {
        Report::new(
            "W6",
            BarrierSummary {
                workers: self.workers.len(),
                debloat: job.debloat,
                target_ms: job.target.as_millis(),
                busy_us: job.busy.as_micros(),
                seconds: job.duration.as_secs_f64(),
                warmup_s: job.warmup.as_secs_f64(),
                measured_s: job.duration.saturating_sub(job.warmup).as_secs_f64(),
                barriers: self.delays_ns.len(),
                barrier_delay_p50_ms: self.quantile_ms(0.5),
                barrier_delay_p99_ms: self.quantile_ms(0.99),
                alignment_p50_ms: self.alignment_quantile_ms(0.5),
                alignment_p99_ms: self.alignment_quantile_ms(0.99),
                inflight_bytes_max: self.inflight_max,
                buffer_size_bytes: self.buffer_size,
                records_per_s: self.records_per_s.round(),
                valid: !self.delays_ns.is_empty(),
                gates: self
                    .workers
                    .iter()
                    .map(BarrierWorkerReport::summary)
                    .collect(),
            },
        )
        .to_json()
    }
}

/// W6's JSON line.
#[derive(Debug, Clone, Serialize)]
struct BarrierSummary {
    workers: usize,
    debloat: bool,
    target_ms: u128,
    busy_us: u128,
    seconds: f64,
    warmup_s: f64,
    measured_s: f64,
    barriers: usize,
    barrier_delay_p50_ms: f64,
    barrier_delay_p99_ms: f64,
    alignment_p50_ms: f64,
    alignment_p99_ms: f64,
    inflight_bytes_max: u64,
    buffer_size_bytes: usize,
    records_per_s: f64,
    valid: bool,
    gates: Vec<GateSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_combine() {
        let report = BarrierWorkerReport {
            process: 1,
            records: 1000,
            window_us: 1_000_000,
            delays_ns: vec![5_000_000, 1_000_000],
            alignments_ns: vec![2_000_000, 0],
            injection_lags_ns: vec![300_000, 100_000],
            buffer_size: 4096,
            gate: GateSamples {
                count: 2,
                buffer_size_sum: 8192,
                buffers_in_use_sum: 40,
                inflight_sum: 163_840,
                inflight_max: 90_000,
                time_to_consume_ms_sum: 200,
                time_to_consume_ms_max: 110,
            },
            map: TaskMsPerSecond {
                busy: 990,
                idle: 10,
                back_pressured: 0,
            },
            source: TaskMsPerSecond {
                busy: 20,
                idle: 0,
                back_pressured: 980,
            },
        };
        let parsed: BarrierWorkerReport =
            crate::report::parse_worker_line(&crate::report::worker_line(&report)).unwrap();
        assert_eq!(parsed, report);
        let combined = BarrierReport::combine(&[report, parsed]);
        assert_eq!(
            combined.delays_ns,
            [1_000_000, 1_000_000, 5_000_000, 5_000_000]
        );
        assert!((combined.quantile_ms(0.5) - 1.0).abs() < 1e-9);
        assert!((combined.quantile_ms(0.99) - 5.0).abs() < 1e-9);
        assert!((combined.alignment_quantile_ms(0.99) - 2.0).abs() < 1e-9);
        assert!((combined.records_per_s - 2000.0).abs() < 1e-6);
        assert_eq!(combined.inflight_max, 90_000);
        let gate = serde_json::to_string(&combined.workers[0].summary()).unwrap();
        assert!(gate.contains("\"buffers_in_use_mean\":20.0"), "{gate}");
        assert!(gate.contains("\"map_ms_per_s\":[990,10,0]"), "{gate}");
        assert!(gate.contains("\"injection_lag_p99_ms\":0.3"), "{gate}");
        assert!(gate.contains("\"source_ms_per_s\":[20,0,980]"), "{gate}");
        let bad = "{\"process\":0,\"map\":[1,2]}";
        assert!(crate::report::parse_worker_line::<BarrierWorkerReport>(bad).is_err());
    }
}
