//! W6: barriers under backpressure (WORKLOADS.md). Each worker runs a source that emits as
//! fast as it may (always back-pressured) and a slow map (a fixed busy time per record)
//! with its sink chained to it; records go from every source to every map by key. Every
//! interval the sources inject an aligned barrier; its delay is the time from its
//! scheduled injection until the slow map's gate has it on every input channel — the time
//! it queued behind the data in flight, plus alignment. Buffer debloating shrinks that
//! data to about `target` worth of the map's throughput.
//!
//! ```text
//!   source (as fast as credit allows) ──hash──▶ map gate (debloating on/off) ──▶ busy
//!     every 2 s: Barrier(k, scheduled time)       aligned barrier ──▶ delay = now − scheduled
//! ```
//!
//! The launcher passes a wall-clock epoch so both workers share the barrier schedule.
//! Barriers scheduled during the warm-up are aligned but not counted: buffers start at the
//! full segment size, and the debloater's moving average takes a few seconds to settle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_netstack::debloat::{DebloatConfig, SystemClock};
use weir_netstack::partition::HashSelector;
use weir_netstack::transport::NetworkConfig;
use weir_netstack::{DataType, GatePoll, InputGate, NetError, RecordReader, RecordWriter};

use crate::error::{Result, WeirError};
use crate::shuffle_job::{WorkerExchange, worker_exchange};

/// What to run.
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

/// One worker's measurements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarrierWorkerReport {
    /// This worker's process index.
    pub process: u32,
    /// Records its map processed.
    pub records: u64,
    /// The delay of every barrier its map aligned, in nanoseconds.
    pub delays_ns: Vec<u64>,
    /// The most bytes its gate estimated in flight.
    pub inflight_max: u64,
    /// Its gate's debloated buffer size at the end (the segment size without debloating).
    pub buffer_size: usize,
    /// Wall time of its map, in microseconds.
    pub wall_us: u64,
}

impl BarrierWorkerReport {
    /// One line for the launcher.
    pub fn to_line(&self) -> String {
        let delays: Vec<String> = self.delays_ns.iter().map(u64::to_string).collect();
        format!(
            "barrier-report process={} records={} inflight_max={} buffer_size={} wall_us={} delays={}",
            self.process,
            self.records,
            self.inflight_max,
            self.buffer_size,
            self.wall_us,
            delays.join(",")
        )
    }

    /// Parses [`to_line`](Self::to_line)'s output.
    ///
    /// # Errors
    ///
    /// A message naming what is malformed.
    pub fn parse(line: &str) -> std::result::Result<BarrierWorkerReport, String> {
        let malformed = || format!("not a barrier report: {line:?}");
        let rest = line.strip_prefix("barrier-report ").ok_or_else(malformed)?;
        let mut report = BarrierWorkerReport {
            process: u32::MAX,
            records: 0,
            delays_ns: Vec::new(),
            inflight_max: 0,
            buffer_size: 0,
            wall_us: 0,
        };
        for field in rest.split(' ') {
            let (name, value) = field.split_once('=').ok_or_else(malformed)?;
            let number = || value.parse::<u64>().map_err(|_| malformed());
            match name {
                "process" => report.process = u32::try_from(number()?).map_err(|_| malformed())?,
                "records" => report.records = number()?,
                "inflight_max" => report.inflight_max = number()?,
                "buffer_size" => {
                    report.buffer_size = usize::try_from(number()?).map_err(|_| malformed())?
                }
                "wall_us" => report.wall_us = number()?,
                "delays" => {
                    report.delays_ns = value
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(|d| d.parse().map_err(|_| malformed()))
                        .collect::<std::result::Result<_, _>>()?;
                }
                _ => return Err(malformed()),
            }
        }
        if report.process == u32::MAX {
            return Err(malformed());
        }
        Ok(report)
    }
}

/// The job's result over every worker.
#[derive(Debug)]
pub struct BarrierReport {
    /// Every aligned barrier's delay, in nanoseconds, sorted.
    pub delays_ns: Vec<u64>,
    /// The largest in-flight estimate of any gate.
    pub inflight_max: u64,
    /// The largest debloated buffer size at the end.
    pub buffer_size: usize,
    /// Records per second through the maps.
    pub records_per_s: f64,
}

impl BarrierReport {
    /// Combines the workers' reports.
    pub fn combine(reports: &[BarrierWorkerReport]) -> BarrierReport {
        let mut delays_ns: Vec<u64> = reports
            .iter()
            .flat_map(|r| r.delays_ns.iter().copied())
            .collect();
        delays_ns.sort_unstable();
        let wall = reports.iter().map(|r| r.wall_us).max().unwrap_or(1).max(1) as f64 / 1e6;
        BarrierReport {
            delays_ns,
            inflight_max: reports.iter().map(|r| r.inflight_max).max().unwrap_or(0),
            buffer_size: reports.iter().map(|r| r.buffer_size).max().unwrap_or(0),
            records_per_s: reports.iter().map(|r| r.records).sum::<u64>() as f64 / wall,
        }
    }

    /// The delay at `quantile` (nearest rank), in milliseconds; 0 without barriers.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.delays_ns.is_empty() {
            return 0.0;
        }
        let rank = ((quantile * self.delays_ns.len() as f64).ceil() as usize)
            .clamp(1, self.delays_ns.len());
        self.delays_ns[rank - 1] as f64 / 1e6
    }

    /// The WORKLOADS.md JSON line.
    pub fn to_json(&self, job: &BarrierJob, workers: usize) -> String {
        format!(
            concat!(
                "{{\"workload\":\"W6\",\"system\":\"weir\",\"workers\":{},\"debloat\":{},",
                "\"target_ms\":{},\"busy_us\":{},\"warmup_s\":{},\"barriers\":{},",
                "\"barrier_delay_p50_ms\":{:.1},",
                "\"barrier_delay_p99_ms\":{:.1},\"inflight_bytes_max\":{},\"buffer_size_bytes\":{},",
                "\"records_per_s\":{:.0},\"valid\":{}}}"
            ),
            workers,
            job.debloat,
            job.target.as_millis(),
            job.busy.as_micros(),
            job.warmup.as_secs_f64(),
            self.delays_ns.len(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.inflight_max,
            self.buffer_size,
            self.records_per_s,
            !self.delays_ns.is_empty(),
        )
    }
}

fn now_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

fn key_hash(record: &[u8]) -> u32 {
    u32::from_le_bytes(
        record[..4]
            .try_into()
            .expect("a record starts with its key"),
    )
}

/// Runs this worker's source and slow map.
///
/// # Errors
///
/// As [`crate::shuffle_job::run_shuffle_worker`]; an invalid debloating configuration.
///
/// # Panics
///
/// When a task panicked (a bug).
pub fn run_barrier_worker(job: &BarrierJob, config: NetworkConfig) -> Result<BarrierWorkerReport> {
    let process = config.process;
    let WorkerExchange {
        manager,
        grant,
        service,
        partition,
        floating_pool,
        mut gate,
    } = worker_exchange(config)?;
    let segment_size = manager.segment_size();
    if job.debloat {
        let debloat = DebloatConfig {
            target: job.target,
            ..DebloatConfig::new(segment_size)
        };
        gate.enable_debloating(debloat, Arc::new(SystemClock::default()))?;
    }
    let selector = HashSelector::new(key_hash as fn(&[u8]) -> u32);
    let mut writer = RecordWriter::new(partition, selector, weir_netstack::FlushMode::default());
    let cancel_source = writer.canceller();
    let cancel_map = AtomicBool::new(false);
    let (source, map) = std::thread::scope(|scope| {
        let cancel_map = &cancel_map;
        let map = scope.spawn(move || {
            let result = slow_map(gate, job, segment_size, process, cancel_map);
            if result.is_err() {
                cancel_source.cancel();
            }
            result
        });
        let source = scope.spawn(move || {
            let result = source(&mut writer, process, job);
            if result.is_err() {
                cancel_map.store(true, Ordering::Release);
            }
            result
        });
        (
            source
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            map.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let report = map?;
    source?;
    service.stop()?;
    drop((floating_pool, grant));
    manager.leak_check()?;
    Ok(report)
}

/// Emits records as fast as it may from the epoch for the job's duration, and a barrier
/// (barrier number and scheduled time) at every interval.
fn source<S: weir_netstack::ChannelSelector>(
    writer: &mut RecordWriter<S>,
    process: u32,
    job: &BarrierJob,
) -> Result<()> {
    if let Some(wait) = job.epoch_ns.checked_sub(now_ns()) {
        std::thread::sleep(Duration::from_nanos(wait));
    }
    let end = job.epoch_ns + u64::try_from(job.duration.as_nanos()).unwrap_or(u64::MAX);
    let interval = u64::try_from(job.interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut next_barrier = 1u64;
    let mut record = [0u8; 16];
    let mut key = u64::from(process) << 48;
    let mut result = Ok(());
    while result.is_ok() {
        let now = now_ns();
        if now >= end {
            break;
        }
        let scheduled = job.epoch_ns + next_barrier * interval;
        if now >= scheduled {
            let mut payload = [0u8; 16];
            payload[..8].copy_from_slice(&next_barrier.to_le_bytes());
            payload[8..].copy_from_slice(&scheduled.to_le_bytes());
            result = writer.broadcast_event(DataType::Barrier, &payload);
            next_barrier += 1;
            continue;
        }
        // A batch of records between clock reads.
        for _ in 0..64 {
            key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
            record[..8].copy_from_slice(&key.to_le_bytes());
            if let Err(error) = writer.emit(&record) {
                result = Err(error);
                break;
            }
        }
    }
    match result {
        Ok(()) => Ok(writer.finish()?),
        Err(error) => {
            writer.release();
            Err(error.into())
        }
    }
}

/// Spins `busy` per record; records each aligned barrier's delay; samples the gate's
/// in-flight estimate.
fn slow_map(
    mut gate: InputGate,
    job: &BarrierJob,
    segment_size: usize,
    process: u32,
    cancel: &AtomicBool,
) -> Result<BarrierWorkerReport> {
    let waker = crate::workers::current_thread_waker();
    let mut readers: Vec<RecordReader> = (0..gate.channel_count())
        .map(|i| RecordReader::new(weir_netstack::ChannelIndex(u32::try_from(i).expect("few"))))
        .collect();
    let start = Instant::now();
    let mut records = 0u64;
    let mut delays_ns = Vec::new();
    let mut inflight_max = 0u64;
    let mut listening = false;
    loop {
        match gate.poll_next()? {
            GatePoll::Buffer(channel, buffer) => {
                listening = false;
                match buffer.data_type() {
                    DataType::Data => {
                        let reader = &mut readers[channel.as_usize()];
                        reader.push(buffer);
                        while reader.next_record()?.is_some() {
                            let until = Instant::now() + job.busy;
                            while Instant::now() < until {
                                std::hint::spin_loop();
                            }
                            records += 1;
                        }
                        inflight_max = inflight_max.max(gate.metrics().in_flight_bytes);
                    }
                    DataType::Barrier => {
                        let scheduled =
                            u64::from_le_bytes(buffer.as_bytes()[8..16].try_into().map_err(
                                |_| WeirError::Input {
                                    message: "a barrier without its schedule".to_owned(),
                                },
                            )?);
                        let warmup = u64::try_from(job.warmup.as_nanos()).unwrap_or(u64::MAX);
                        if scheduled >= job.epoch_ns.saturating_add(warmup) {
                            delays_ns.push(now_ns().saturating_sub(scheduled));
                        }
                    }
                    DataType::EndOfPartition => readers[channel.as_usize()].finish()?,
                    _ => {}
                }
            }
            GatePoll::Pending if !listening => {
                gate.register_listener(&waker);
                listening = true;
            }
            GatePoll::Pending => {
                if cancel.load(Ordering::Acquire) {
                    return Err(NetError::Cancelled.into());
                }
                std::thread::park_timeout(Duration::from_millis(20));
                listening = false;
            }
            GatePoll::EndOfPartitions => break,
        }
    }
    let metrics = gate.metrics();
    let buffer_size = if job.debloat {
        metrics.debloated_buffer_size
    } else {
        segment_size
    };
    Ok(BarrierWorkerReport {
        process,
        records,
        delays_ns,
        inflight_max,
        buffer_size,
        wall_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    })
}

/// Wall-clock nanoseconds `delay` from now: the epoch a launcher hands its workers.
pub fn epoch_after(delay: Duration) -> u64 {
    now_ns() + u64::try_from(delay.as_nanos()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_combine() {
        let report = BarrierWorkerReport {
            process: 1,
            records: 1000,
            delays_ns: vec![5_000_000, 1_000_000],
            inflight_max: 65_536,
            buffer_size: 4096,
            wall_us: 1_000_000,
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
        assert!((combined.records_per_s - 2000.0).abs() < 1e-6);
        assert!(BarrierWorkerReport::parse("barrier-report records=1").is_err());
    }
}
