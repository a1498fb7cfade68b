//! W5: end-to-end latency across worker processes (docs/WORKLOADS.md). Each worker's source
//! emits (key, timestamp) records at its share of a fixed rate, hash-partitioned to every
//! worker's sink, which records now − timestamp in an HdrHistogram. The launcher merges
//! the workers' histograms and reports p50 / p99 / p99.9.
//!
//! ```text
//!   source (paced: rate / workers) ──hash──▶ local channel ──▶ sink (own worker)
//!                                    └─────▶ TCP, credit ──▶ sink (other worker)
//!   flush: every record | buffer timeout | full | idle (the source is idle while it waits
//!          for its next record's time)
//! ```
//!
//! Timestamps are wall-clock nanoseconds: the workers of a local launch share the clock;
//! across hosts the figures include the clocks' offset.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use weir_netstack::debloat::SystemClock;
use weir_netstack::input::GateMetrics;
use weir_netstack::partition::HashSelector;
use weir_netstack::transport::NetworkConfig;
use weir_netstack::{
    ChannelIndex, FlushMode, GateHandler, GateReader, InputGate, NetError, RecordWriter,
    TaskTimeMeter,
};

use crate::workloads::w4_shuffle::{WorkerExchange, flush_name, worker_exchange};
use crate::workloads::w6_report::TaskMsPerSecond;
use weir::error::{Result, WeirError};

/// Largest latency recorded: 60 s, in nanoseconds.
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// What to measure.
#[derive(Debug, Clone)]
pub struct LatencyJob {
    /// Records per second, over all sources.
    pub rate: u64,
    /// How long the sources emit.
    pub duration: Duration,
    /// When written records become readable.
    pub flush: FlushMode,
    /// Worker processes.
    pub workers: usize,
}

/// One worker's measurements: records sent and the latencies its sink saw.
#[derive(Debug)]
pub struct LatencyWorkerReport {
    /// This worker's process index.
    pub process: u32,
    /// Records its source sent.
    pub sent: u64,
    /// Latencies its sink recorded, in nanoseconds.
    pub latencies: Histogram<u64>,
    /// Where its sink's time went (busy / idle / back-pressured ms per second).
    pub sink: TaskMsPerSecond,
    /// Where its source's time went (idle while it waits for a record's time).
    pub source: TaskMsPerSecond,
    /// Buffers its sink's gate received (data and events).
    pub buffers_in: u64,
    /// Bytes in those buffers.
    pub bytes_in: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid bounds")
}

fn now_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

impl LatencyWorkerReport {
    /// One line for the launcher: `latency-report process=P sent=N sink=B,I,P
    /// source=B,I,P buffers_in=N bytes_in=N hist=v:c,v:c,…`.
    pub fn to_line(&self) -> String {
        let buckets: Vec<String> = self
            .latencies
            .iter_recorded()
            .map(|v| format!("{}:{}", v.value_iterated_to(), v.count_at_value()))
            .collect();
        let task = |t: &TaskMsPerSecond| format!("{},{},{}", t.busy, t.idle, t.back_pressured);
        format!(
            "latency-report process={} sent={} sink={} source={} buffers_in={} bytes_in={} hist={}",
            self.process,
            self.sent,
            task(&self.sink),
            task(&self.source),
            self.buffers_in,
            self.bytes_in,
            buckets.join(",")
        )
    }

    /// Parses [`to_line`](Self::to_line)'s output.
    ///
    /// # Errors
    ///
    /// A message naming what is malformed.
    pub fn parse(line: &str) -> std::result::Result<LatencyWorkerReport, String> {
        let malformed = || format!("not a latency report: {line:?}");
        let rest = line.strip_prefix("latency-report ").ok_or_else(malformed)?;
        let mut process = None;
        let mut sent = None;
        let mut latencies = histogram();
        let mut report_tasks = [TaskMsPerSecond::default(); 2];
        let (mut buffers_in, mut bytes_in) = (0, 0);
        for field in rest.split(' ') {
            let (name, value) = field.split_once('=').ok_or_else(malformed)?;
            let task = || -> std::result::Result<TaskMsPerSecond, String> {
                let parts: Vec<u32> = value
                    .split(',')
                    .map(|v| v.parse().map_err(|_| malformed()))
                    .collect::<std::result::Result<_, _>>()?;
                match parts[..] {
                    [busy, idle, back_pressured] => Ok(TaskMsPerSecond {
                        busy,
                        idle,
                        back_pressured,
                    }),
                    _ => Err(malformed()),
                }
            };
            match name {
                "process" => process = value.parse().ok(),
                "sent" => sent = value.parse().ok(),
                "sink" => report_tasks[0] = task()?,
                "source" => report_tasks[1] = task()?,
                "buffers_in" => buffers_in = value.parse().map_err(|_| malformed())?,
                "bytes_in" => bytes_in = value.parse().map_err(|_| malformed())?,
                "hist" => {
                    for bucket in value.split(',').filter(|b| !b.is_empty()) {
                        let (v, c) = bucket.split_once(':').ok_or_else(malformed)?;
                        let v: u64 = v.parse().map_err(|_| malformed())?;
                        let c: u64 = c.parse().map_err(|_| malformed())?;
                        latencies
                            .record_n(v.clamp(1, LATENCY_NS_MAX), c)
                            .map_err(|e| format!("latency report bucket {v}: {e}"))?;
                    }
                }
                _ => return Err(malformed()),
            }
        }
        Ok(LatencyWorkerReport {
            process: process.ok_or_else(malformed)?,
            sent: sent.ok_or_else(malformed)?,
            latencies,
            sink: report_tasks[0],
            source: report_tasks[1],
            buffers_in,
            bytes_in,
        })
    }

    /// This worker's JSON object: its tasks' times and its gate's buffers.
    fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"process\":{},\"buffers_in\":{},\"bytes_per_buffer\":{:.0},",
                "\"sink_busy_ms_per_s\":{},\"sink_idle_ms_per_s\":{},",
                "\"sink_back_pressured_ms_per_s\":{},\"source_busy_ms_per_s\":{},",
                "\"source_idle_ms_per_s\":{},\"source_back_pressured_ms_per_s\":{}}}"
            ),
            self.process,
            self.buffers_in,
            self.bytes_in as f64 / self.buffers_in.max(1) as f64,
            self.sink.busy,
            self.sink.idle,
            self.sink.back_pressured,
            self.source.busy,
            self.source.idle,
            self.source.back_pressured,
        )
    }
}

/// The job's result: the merged distribution.
#[derive(Debug)]
pub struct LatencyReport {
    /// Records sent by all sources.
    pub sent: u64,
    /// Every sink's latencies, merged.
    pub latencies: Histogram<u64>,
    /// Every worker's tasks and gate, as JSON objects.
    pub workers_json: Vec<String>,
}

impl LatencyReport {
    /// Merges the workers' reports.
    ///
    /// # Errors
    ///
    /// Histograms that cannot be merged (never for reports of this module).
    pub fn merge(reports: &[LatencyWorkerReport]) -> Result<LatencyReport> {
        let mut latencies = histogram();
        for report in reports {
            latencies
                .add(&report.latencies)
                .map_err(|e| WeirError::Data {
                    message: format!("cannot merge latency histograms: {e}"),
                })?;
        }
        Ok(LatencyReport {
            sent: reports.iter().map(|r| r.sent).sum(),
            latencies,
            workers_json: reports.iter().map(LatencyWorkerReport::to_json).collect(),
        })
    }

    /// The latency at `quantile`, in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.latencies.value_at_quantile(quantile) as f64 / 1e6
    }

    /// The docs/WORKLOADS.md JSON line.
    pub fn to_json(&self, job: &LatencyJob) -> String {
        format!(
            concat!(
                "{{\"workload\":\"W5\",\"system\":\"weir\",\"workers\":{},\"rate\":{},",
                "\"flush\":\"{}\",\"records\":{},\"latency_p50_ms\":{:.3},",
                "\"latency_p99_ms\":{:.3},\"latency_p999_ms\":{:.3},\"latency_max_ms\":{:.3},",
                "\"valid\":{},\"tasks\":[{}]}}"
            ),
            job.workers,
            job.rate,
            flush_name(job.flush),
            self.latencies.len(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.latencies.max() as f64 / 1e6,
            self.latencies.len() == self.sent,
            self.workers_json.join(","),
        )
    }
}

fn key_hash(record: &[u8]) -> u32 {
    u32::from_le_bytes(
        record[..4]
            .try_into()
            .expect("a record starts with its key"),
    )
}

/// Runs this worker's source (paced) and sink (recording latencies).
///
/// # Errors
///
/// As [`crate::workloads::w4_shuffle::run_shuffle_worker`]; a rate of 0.
///
/// # Panics
///
/// When a task thread cannot be started, or a task panicked (a bug).
pub fn run_latency_worker(job: &LatencyJob, config: NetworkConfig) -> Result<LatencyWorkerReport> {
    if job.rate == 0 {
        return Err(WeirError::Usage {
            message: "--rate 0: at least 1 record per second".to_owned(),
        });
    }
    let workers = config.peers.len() as u64;
    let process = config.process;
    let WorkerExchange {
        manager,
        grant,
        service,
        partition,
        gate,
    } = worker_exchange(config)?;
    let selector = HashSelector::new(key_hash as fn(&[u8]) -> u32);
    let mut writer = RecordWriter::new(partition, selector, job.flush);
    let cancel_source = writer.canceller();
    let cancel_sink = AtomicBool::new(false);
    let interval = Duration::from_secs_f64(workers as f64 / job.rate as f64);
    let (source, sink) = std::thread::scope(|scope| {
        let cancel_sink = &cancel_sink;
        let sink = scope.spawn(move || {
            let result = record_latencies(gate, cancel_sink);
            if result.is_err() {
                cancel_source.cancel();
            }
            result
        });
        let source = scope.spawn(move || {
            let result = paced_source(&mut writer, process, interval, job.duration);
            if result.is_err() {
                cancel_sink.store(true, Ordering::Release);
            }
            result
        });
        (
            source
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            sink.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let sink = sink?;
    let (sent, source) = source?;
    service.stop()?;
    drop(grant);
    manager.leak_check()?;
    Ok(LatencyWorkerReport {
        process,
        sent,
        latencies: sink.latencies,
        sink: sink.times,
        source,
        buffers_in: sink.gate.buffers_in,
        bytes_in: sink.gate.bytes_in,
    })
}

/// Emits a record every `interval` for `duration`, stamped when emitted; idle (for the
/// idle flush mode) while it waits for the next record's time. Answers the records sent
/// and where its time went.
fn paced_source<S: weir_netstack::ChannelSelector>(
    writer: &mut RecordWriter<S>,
    process: u32,
    interval: Duration,
    duration: Duration,
) -> Result<(u64, TaskMsPerSecond)> {
    let mut meter = TaskTimeMeter::new(Arc::new(SystemClock::default()));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut record = [0u8; 16];
    let mut key = u64::from(process) << 48;
    loop {
        let due = interval.mul_f64(sent as f64);
        if due >= duration {
            break;
        }
        let elapsed = start.elapsed();
        if let Some(wait) = due.checked_sub(elapsed) {
            writer.input_idle();
            meter.idle();
            std::thread::sleep(wait);
            meter.busy();
        }
        key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
        record[..8].copy_from_slice(&key.to_le_bytes());
        record[8..].copy_from_slice(&now_ns().to_le_bytes());
        if let Err(error) = writer.emit(&record) {
            writer.release();
            return Err(error.into());
        }
        sent += 1;
    }
    writer.finish()?;
    meter.add_back_pressured(writer.metrics().back_pressured);
    Ok((sent, meter.take().into()))
}

/// What the sink measured.
struct SinkReport {
    latencies: Histogram<u64>,
    times: TaskMsPerSecond,
    gate: GateMetrics,
}

fn record_latencies(gate: InputGate, cancel: &AtomicBool) -> Result<SinkReport> {
    let mut sink = LatencySink {
        meter: TaskTimeMeter::new(Arc::new(SystemClock::default())),
        latencies: histogram(),
        cancel,
    };
    let mut reader = GateReader::new(gate);
    reader.run(&mut sink)?;
    Ok(SinkReport {
        latencies: sink.latencies,
        times: sink.meter.take().into(),
        gate: reader.gate().metrics(),
    })
}

/// The sink's handler: each record's latency, and where the sink's time went.
struct LatencySink<'a> {
    meter: TaskTimeMeter,
    latencies: Histogram<u64>,
    cancel: &'a AtomicBool,
}

impl GateHandler for LatencySink<'_> {
    type Error = WeirError;

    fn record(&mut self, _channel: ChannelIndex, record: &[u8]) -> Result<()> {
        let stamp = u64::from_le_bytes(record[8..16].try_into().expect("16 bytes"));
        let latency = now_ns().saturating_sub(stamp).clamp(1, LATENCY_NS_MAX);
        self.latencies
            .record(latency)
            .expect("clamped into the bounds");
        Ok(())
    }

    fn buffer(&mut self, _gate: &InputGate) -> Result<()> {
        self.meter.busy();
        Ok(())
    }

    fn check_cancelled(&mut self) -> Result<()> {
        if self.cancel.load(Ordering::Acquire) {
            return Err(NetError::Cancelled.into());
        }
        self.meter.idle();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_through_their_line() {
        let mut latencies = histogram();
        for v in [1_000u64, 2_000, 2_000, 5_000_000] {
            latencies.record(v).unwrap();
        }
        let report = LatencyWorkerReport {
            process: 1,
            sent: 4,
            latencies,
            sink: TaskMsPerSecond {
                busy: 30,
                idle: 970,
                back_pressured: 0,
            },
            source: TaskMsPerSecond {
                busy: 100,
                idle: 890,
                back_pressured: 10,
            },
            buffers_in: 3,
            bytes_in: 64,
        };
        let parsed = LatencyWorkerReport::parse(&report.to_line()).unwrap();
        assert_eq!((parsed.process, parsed.sent), (1, 4));
        assert_eq!((parsed.sink, parsed.source), (report.sink, report.source));
        assert_eq!((parsed.buffers_in, parsed.bytes_in), (3, 64));
        assert_eq!(parsed.latencies.len(), 4);
        let merged = LatencyReport::merge(&[report, parsed]).unwrap();
        assert_eq!(merged.latencies.len(), 8);
        assert!((merged.quantile_ms(0.5) - 0.002).abs() < 0.0001);
        let job = LatencyJob {
            rate: 10,
            duration: Duration::from_secs(1),
            flush: FlushMode::default(),
            workers: 2,
        };
        let json = merged.to_json(&job);
        assert!(json.contains("\"sink_idle_ms_per_s\":970"), "{json}");
        assert!(json.contains("\"bytes_per_buffer\":21"), "{json}");
        assert!(LatencyWorkerReport::parse("latency-report process=x").is_err());
    }
}
