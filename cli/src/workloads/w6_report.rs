//! W6's measurements: one line per worker (its slow map's gate and its two tasks), and
//! the job's JSON line combining them.
//!
//! Everything is measured over the window after the warm-up: from `epoch + warmup` to
//! the end of emission. Per gate: the delay and the alignment time of every barrier, the
//! debloated buffer size, the buffers in use, the estimated in-flight bytes and time to
//! consume them (sampled every 100 ms; without debloating the gate measures no
//! throughput, so the time to consume reads 0), and where the map's and the source's time went
//! (busy / idle / back-pressured milliseconds per second, Flink's task metrics).

use weir_netstack::TaskTimes;

/// Gate samples of one worker over the measured window (every 100 ms).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// One worker's measurements over the window after the warm-up.
#[derive(Debug, Clone, PartialEq, Default)]
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

const LINE_PREFIX: &str = "barrier-report ";

impl BarrierWorkerReport {
    /// One line for the launcher.
    pub fn to_line(&self) -> String {
        let list = |values: &[u64]| {
            let strings: Vec<String> = values.iter().map(u64::to_string).collect();
            strings.join(",")
        };
        let g = &self.gate;
        format!(
            "{LINE_PREFIX}process={} records={} window_us={} buffer_size={} samples={} \
             size_sum={} in_use_sum={} inflight_sum={} inflight_max={} ttc_sum={} ttc_max={} \
             map={},{},{} source={},{},{} delays={} alignments={} injection_lags={}",
            self.process,
            self.records,
            self.window_us,
            self.buffer_size,
            g.count,
            g.buffer_size_sum,
            g.buffers_in_use_sum,
            g.inflight_sum,
            g.inflight_max,
            g.time_to_consume_ms_sum,
            g.time_to_consume_ms_max,
            self.map.busy,
            self.map.idle,
            self.map.back_pressured,
            self.source.busy,
            self.source.idle,
            self.source.back_pressured,
            list(&self.delays_ns),
            list(&self.alignments_ns),
            list(&self.injection_lags_ns),
        )
    }

    /// Parses [`to_line`](Self::to_line)'s output.
    ///
    /// # Errors
    ///
    /// A message naming what is malformed.
    pub fn parse(line: &str) -> std::result::Result<BarrierWorkerReport, String> {
        let malformed = || format!("not a barrier report: {line:?}");
        let rest = line.strip_prefix(LINE_PREFIX).ok_or_else(malformed)?;
        let mut report = BarrierWorkerReport {
            process: u32::MAX,
            ..BarrierWorkerReport::default()
        };
        for field in rest.split(' ') {
            let (name, value) = field.split_once('=').ok_or_else(malformed)?;
            let list = || -> std::result::Result<Vec<u64>, String> {
                value
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(|v| v.parse().map_err(|_| malformed()))
                    .collect()
            };
            let number = || value.parse::<u64>().map_err(|_| malformed());
            let task = || -> std::result::Result<TaskMsPerSecond, String> {
                let parts = list()?;
                let part = |i: usize| {
                    parts
                        .get(i)
                        .and_then(|&v| u32::try_from(v).ok())
                        .ok_or_else(malformed)
                };
                Ok(TaskMsPerSecond {
                    busy: part(0)?,
                    idle: part(1)?,
                    back_pressured: part(2)?,
                })
            };
            match name {
                "process" => report.process = u32::try_from(number()?).map_err(|_| malformed())?,
                "records" => report.records = number()?,
                "window_us" => report.window_us = number()?,
                "buffer_size" => {
                    report.buffer_size = usize::try_from(number()?).map_err(|_| malformed())?
                }
                "samples" => report.gate.count = number()?,
                "size_sum" => report.gate.buffer_size_sum = number()?,
                "in_use_sum" => report.gate.buffers_in_use_sum = number()?,
                "inflight_sum" => report.gate.inflight_sum = number()?,
                "inflight_max" => report.gate.inflight_max = number()?,
                "ttc_sum" => report.gate.time_to_consume_ms_sum = number()?,
                "ttc_max" => report.gate.time_to_consume_ms_max = number()?,
                "map" => report.map = task()?,
                "source" => report.source = task()?,
                "delays" => report.delays_ns = list()?,
                "alignments" => report.alignments_ns = list()?,
                "injection_lags" => report.injection_lags_ns = list()?,
                _ => return Err(malformed()),
            }
        }
        if report.process == u32::MAX {
            return Err(malformed());
        }
        Ok(report)
    }

    /// This gate's JSON object.
    fn to_json(&self) -> String {
        let g = &self.gate;
        format!(
            concat!(
                "{{\"process\":{},\"barriers\":{},\"barrier_delay_p50_ms\":{:.1},",
                "\"barrier_delay_p99_ms\":{:.1},\"alignment_p50_ms\":{:.1},",
                "\"alignment_p99_ms\":{:.1},\"injection_lag_p99_ms\":{:.1},",
                "\"buffer_size_bytes\":{},",
                "\"buffer_size_bytes_mean\":{:.0},\"buffers_in_use_mean\":{:.1},",
                "\"inflight_bytes_mean\":{:.0},\"inflight_bytes_max\":{},",
                "\"time_to_consume_ms_mean\":{:.0},\"time_to_consume_ms_max\":{},",
                "\"records_per_s\":{:.0},",
                "\"map_busy_ms_per_s\":{},\"map_idle_ms_per_s\":{},",
                "\"map_back_pressured_ms_per_s\":{},\"source_busy_ms_per_s\":{},",
                "\"source_idle_ms_per_s\":{},\"source_back_pressured_ms_per_s\":{}}}"
            ),
            self.process,
            self.delays_ns.len(),
            quantile_ms(&sorted(&self.delays_ns), 0.5),
            quantile_ms(&sorted(&self.delays_ns), 0.99),
            quantile_ms(&sorted(&self.alignments_ns), 0.5),
            quantile_ms(&sorted(&self.alignments_ns), 0.99),
            quantile_ms(&sorted(&self.injection_lags_ns), 0.99),
            self.buffer_size,
            g.mean(g.buffer_size_sum),
            g.mean(g.buffers_in_use_sum),
            g.mean(g.inflight_sum),
            g.inflight_max,
            g.mean(g.time_to_consume_ms_sum),
            g.time_to_consume_ms_max,
            self.records as f64 * 1e6 / self.window_us.max(1) as f64,
            self.map.busy,
            self.map.idle,
            self.map.back_pressured,
            self.source.busy,
            self.source.idle,
            self.source.back_pressured,
        )
    }
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
    sorted_ns[rank - 1] as f64 / 1e6
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
    pub fn to_json(&self, job: &crate::workloads::w6_barrier::BarrierJob) -> String {
        let gates: Vec<String> = self.workers.iter().map(|w| w.to_json()).collect();
        format!(
            concat!(
                "{{\"workload\":\"W6\",\"system\":\"weir\",\"workers\":{},\"debloat\":{},",
                "\"target_ms\":{},\"busy_us\":{},\"seconds\":{},\"warmup_s\":{},",
                "\"measured_s\":{},\"barriers\":{},",
                "\"barrier_delay_p50_ms\":{:.1},\"barrier_delay_p99_ms\":{:.1},",
                "\"alignment_p50_ms\":{:.1},\"alignment_p99_ms\":{:.1},",
                "\"inflight_bytes_max\":{},\"buffer_size_bytes\":{},",
                "\"records_per_s\":{:.0},\"valid\":{},\"gates\":[{}]}}"
            ),
            self.workers.len(),
            job.debloat,
            job.target.as_millis(),
            job.busy.as_micros(),
            job.duration.as_secs_f64(),
            job.warmup.as_secs_f64(),
            job.duration.saturating_sub(job.warmup).as_secs_f64(),
            self.delays_ns.len(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.alignment_quantile_ms(0.5),
            self.alignment_quantile_ms(0.99),
            self.inflight_max,
            self.buffer_size,
            self.records_per_s,
            !self.delays_ns.is_empty(),
            gates.join(","),
        )
    }
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
        let parsed = BarrierWorkerReport::parse(&report.to_line()).unwrap();
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
        let gate = combined.workers[0].to_json();
        assert!(gate.contains("\"buffers_in_use_mean\":20.0"), "{gate}");
        assert!(gate.contains("\"map_busy_ms_per_s\":990"), "{gate}");
        assert!(gate.contains("\"injection_lag_p99_ms\":0.3"), "{gate}");
        assert!(
            gate.contains("\"source_back_pressured_ms_per_s\":980"),
            "{gate}"
        );
        assert!(BarrierWorkerReport::parse("barrier-report records=1").is_err());
        assert!(BarrierWorkerReport::parse("barrier-report process=0 map=1,2").is_err());
    }
}
