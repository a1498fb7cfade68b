//! `weir bench shuffle|latency|barrier` and their `weir worker` parts: W4, W5 and W6
//! across worker processes on loopback.

use std::time::Duration;

use weir::error::WeirError;
use weir::netstack::FlushMode;
use weir::netstack::transport::NetworkConfig;
use weir::workers::LocalCluster;

use crate::workloads::w4_shuffle::{
    Exchange, ShuffleJob, WorkerReport, combine_workers, flush_name, parse_flush, run_shuffle,
    run_shuffle_worker,
};
use crate::workloads::w5_latency::{
    LatencyJob, LatencyReport, LatencyWorkerReport, run_latency_worker,
};
use crate::workloads::w6_barrier::{
    BarrierJob, BarrierReport, BarrierWorkerReport, epoch_after, run_barrier_worker,
};

#[derive(Debug, clap::Args)]
pub(crate) struct BarrierArgs {
    /// Worker processes, started locally on loopback (at least 2).
    #[arg(long, default_value_t = 2)]
    pub(crate) workers: usize,
    #[command(flatten)]
    pub(crate) job: BarrierJobArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BarrierJobArgs {
    /// Buffer debloating in the maps' gates: on or off.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub(crate) debloat: bool,
    /// The debloating target in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub(crate) target_ms: u64,
    /// The slow map's busy time per record, in microseconds.
    #[arg(long, default_value_t = 100)]
    pub(crate) busy_us: u64,
    /// Seconds the sources emit (the warm-up included).
    #[arg(long, default_value_t = 40.0)]
    pub(crate) seconds: f64,
    /// Seconds between barriers.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) barrier_interval: f64,
    /// Seconds of warm-up whose barriers are not counted.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) warmup: f64,
    /// Wall-clock epoch in nanoseconds (the launcher sets it; workers share it).
    #[arg(long, default_value_t = 0, hide = true)]
    pub(crate) epoch_ns: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LatencyArgs {
    /// Worker processes, started locally on loopback (at least 2).
    #[arg(long, default_value_t = 2)]
    pub(crate) workers: usize,
    #[command(flatten)]
    pub(crate) job: LatencyJobArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LatencyJobArgs {
    /// Records per second, over all sources.
    #[arg(long)]
    pub(crate) rate: u64,
    /// When records become readable: every, full, idle, or a buffer timeout like 100ms.
    #[arg(long, default_value = "100ms", value_parser = parse_flush)]
    pub(crate) flush: FlushMode,
    /// Seconds the sources emit.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) seconds: f64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShuffleArgs {
    /// Worker processes (1: local channels in this process; more: started locally on
    /// loopback, one source and one sink task each).
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
    #[command(flatten)]
    pub(crate) job: ShuffleJobArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ShuffleJobArgs {
    /// How records go from sources to sinks: hash (by key), forward, rebalance, rescale
    /// or broadcast.
    #[arg(long, default_value = "hash", value_parser = Exchange::parse)]
    pub(crate) exchange: Exchange,
    /// Records in total.
    #[arg(long, default_value_t = 10_000_000)]
    pub(crate) records: u64,
    /// Bytes per record (at least 16: the u64 key and the u64 value).
    #[arg(long, default_value_t = 16)]
    pub(crate) record_size: usize,
    /// When records become readable: every, full, idle, or a buffer timeout like 100ms.
    #[arg(long, default_value = "100ms", value_parser = parse_flush)]
    pub(crate) flush: FlushMode,
    /// Seed of the keys.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Fail when a peer worker sends nothing for this long (stopped, hung or partitioned):
    /// seconds or a duration like 500ms (default 10s).
    #[arg(long, value_parser = crate::args::parse_peer_timeout)]
    pub(crate) peer_timeout: Option<Duration>,
}

impl ShuffleJobArgs {
    fn job(&self, workers: usize) -> ShuffleJob {
        ShuffleJob {
            records: self.records,
            record_bytes: self.record_size,
            flush: self.flush,
            seed: self.seed,
            workers,
            exchange: self.exchange,
            ..ShuffleJob::default()
        }
    }

    /// The arguments as a worker's command line.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "shuffle".to_owned(),
            "--records".to_owned(),
            self.records.to_string(),
            "--record-size".to_owned(),
            self.record_size.to_string(),
            "--flush".to_owned(),
            flush_name(self.flush),
            "--seed".to_owned(),
            self.seed.to_string(),
            "--exchange".to_owned(),
            self.exchange.name().to_owned(),
        ];
        if let Some(timeout) = self.peer_timeout {
            args.extend([
                "--peer-timeout".to_owned(),
                format!("{}ms", timeout.as_millis()),
            ]);
        }
        args
    }
}

pub(super) fn shuffle(args: ShuffleArgs) -> Result<(), WeirError> {
    if !(1..=64).contains(&args.workers) {
        return Err(WeirError::Usage {
            message: format!("--workers {}: 1 to 64", args.workers),
        });
    }
    let job = args.job.job(args.workers);
    let progress = crate::progress::Progress::elapsed(format!(
        "shuffling {} records across {} worker(s)",
        job.records, job.workers
    ));
    let report = if args.workers == 1 {
        run_shuffle(&job)?
    } else {
        let reports = run_local_workers(
            args.workers,
            &args.job.to_args(),
            Duration::from_secs(3600),
            WorkerReport::parse,
        )?;
        combine_workers(&job, &reports)
    };
    drop(progress);
    eprintln!(
        "weir bench shuffle: {} records of {} bytes across {} worker(s) in {:.3} s: \
         {:.1} M records/s, {:.2} GB/s; sources back-pressured {:.3} s",
        report.records_received,
        job.record_bytes,
        job.workers,
        report.wall_s,
        report.records_per_s() / 1e6,
        report.records_per_s() * job.record_bytes as f64 / 1e9,
        report.back_pressured_s,
    );
    println!("{}", report.to_json(&job));
    if !report.valid {
        return Err(WeirError::WrongAnswer {
            detail: "the shuffle lost, duplicated or misplaced records".to_owned(),
        });
    }
    Ok(())
}

pub(super) fn shuffle_worker(
    process: u32,
    peers: Vec<std::net::SocketAddr>,
    args: &ShuffleJobArgs,
) -> Result<(), WeirError> {
    let job = args.job(peers.len());
    let mut network = NetworkConfig::new(process, peers);
    if let Some(timeout) = args.peer_timeout {
        network = network.with_peer_timeout(timeout);
    }
    let report = run_shuffle_worker(&job, network)?;
    weir::lifecycle::print_line(&report.to_line())
}

impl LatencyJobArgs {
    fn job(&self, workers: usize) -> Result<LatencyJob, WeirError> {
        if !(self.seconds > 0.0 && self.seconds <= 3600.0) {
            return Err(WeirError::Usage {
                message: format!("--seconds {}: above 0 and at most 3600", self.seconds),
            });
        }
        Ok(LatencyJob {
            rate: self.rate,
            duration: Duration::from_secs_f64(self.seconds),
            flush: self.flush,
            workers,
        })
    }

    fn to_args(&self) -> Vec<String> {
        vec![
            "latency".to_owned(),
            "--rate".to_owned(),
            self.rate.to_string(),
            "--flush".to_owned(),
            flush_name(self.flush),
            "--seconds".to_owned(),
            self.seconds.to_string(),
        ]
    }
}

pub(super) fn latency(args: LatencyArgs) -> Result<(), WeirError> {
    if !(2..=64).contains(&args.workers) {
        return Err(WeirError::Usage {
            message: format!(
                "--workers {}: 2 to 64 (latency is measured across processes)",
                args.workers
            ),
        });
    }
    let job = args.job.job(args.workers)?;
    if job.rate == 0 {
        return Err(WeirError::Usage {
            message: "--rate 0: at least 1 record per second".to_owned(),
        });
    }
    let timeout = job.duration + Duration::from_secs(120);
    let reports = run_local_workers(
        args.workers,
        &args.job.to_args(),
        timeout,
        LatencyWorkerReport::parse,
    )?;
    let report = LatencyReport::merge(&reports)?;
    eprintln!(
        "weir bench latency: {} records at {}/s, flush {}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
        report.latencies.len(),
        job.rate,
        flush_name(job.flush),
        report.quantile_ms(0.5),
        report.quantile_ms(0.99),
        report.quantile_ms(0.999),
    );
    println!("{}", report.to_json(&job));
    if report.latencies.len() != report.sent {
        return Err(WeirError::WrongAnswer {
            detail: format!(
                "{} records sent, {} latencies recorded",
                report.sent,
                report.latencies.len()
            ),
        });
    }
    Ok(())
}

pub(super) fn latency_worker(
    process: u32,
    peers: Vec<std::net::SocketAddr>,
    args: &LatencyJobArgs,
) -> Result<(), WeirError> {
    let job = args.job(peers.len())?;
    let report = run_latency_worker(&job, NetworkConfig::new(process, peers))?;
    weir::lifecycle::print_line(&report.to_line())
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{text:?}: expected on or off")),
    }
}

impl BarrierJobArgs {
    fn job(&self) -> Result<BarrierJob, WeirError> {
        let seconds = |name: &str, value: f64| {
            if value > 0.0 && value <= 3600.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(WeirError::Usage {
                    message: format!("--{name} {value}: above 0 and at most 3600"),
                })
            }
        };
        if !(1..=60_000).contains(&self.target_ms) {
            return Err(WeirError::Usage {
                message: format!("--target-ms {}: 1 to 60000", self.target_ms),
            });
        }
        if self.busy_us > 1_000_000 {
            return Err(WeirError::Usage {
                message: format!("--busy-us {}: at most 1000000", self.busy_us),
            });
        }
        if self.warmup >= self.seconds {
            return Err(WeirError::Usage {
                message: format!(
                    "--warmup {}: must be shorter than --seconds {} (nothing would be measured)",
                    self.warmup, self.seconds
                ),
            });
        }
        Ok(BarrierJob {
            debloat: self.debloat,
            target: Duration::from_millis(self.target_ms),
            busy: Duration::from_micros(self.busy_us),
            duration: seconds("seconds", self.seconds)?,
            interval: seconds("barrier-interval", self.barrier_interval)?,
            warmup: if self.warmup == 0.0 {
                Duration::ZERO
            } else {
                seconds("warmup", self.warmup)?
            },
            epoch_ns: self.epoch_ns,
        })
    }

    fn to_args(&self, epoch_ns: u64) -> Vec<String> {
        vec![
            "barrier".to_owned(),
            "--debloat".to_owned(),
            if self.debloat { "on" } else { "off" }.to_owned(),
            "--target-ms".to_owned(),
            self.target_ms.to_string(),
            "--busy-us".to_owned(),
            self.busy_us.to_string(),
            "--seconds".to_owned(),
            self.seconds.to_string(),
            "--barrier-interval".to_owned(),
            self.barrier_interval.to_string(),
            "--warmup".to_owned(),
            self.warmup.to_string(),
            "--epoch-ns".to_owned(),
            epoch_ns.to_string(),
        ]
    }
}

pub(super) fn barrier(args: BarrierArgs) -> Result<(), WeirError> {
    if !(2..=64).contains(&args.workers) {
        return Err(WeirError::Usage {
            message: format!("--workers {}: 2 to 64", args.workers),
        });
    }
    let job = args.job.job()?;
    // Workers connect within a second or two; the sources start together at the epoch.
    let epoch = epoch_after(Duration::from_secs(2));
    let timeout = job.duration + Duration::from_secs(300);
    let reports = run_local_workers(
        args.workers,
        &args.job.to_args(epoch),
        timeout,
        BarrierWorkerReport::parse,
    )?;
    let report = BarrierReport::combine(&reports);
    eprintln!(
        "weir bench barrier: debloat {}, warm-up {:.0} s of {:.0} s, {} barriers measured: \
         delay p50 {:.1} ms, p99 {:.1} ms; alignment p99 {:.1} ms; in flight at most {} \
         bytes; buffers {} bytes; {:.0} records/s",
        if job.debloat { "on" } else { "off" },
        job.warmup.as_secs_f64(),
        job.duration.as_secs_f64(),
        report.delays_ns.len(),
        report.quantile_ms(0.5),
        report.quantile_ms(0.99),
        report.alignment_quantile_ms(0.99),
        report.inflight_max,
        report.buffer_size,
        report.records_per_s,
    );
    for worker in &reports {
        let delays: Vec<String> = worker
            .delays_ns
            .iter()
            .map(|d| format!("{:.0}", *d as f64 / 1e6))
            .collect();
        eprintln!(
            "weir bench barrier: worker {} barrier delays (ms, in order): {}; map busy/idle/\
             back-pressured {}/{}/{} ms/s, source {}/{}/{} ms/s",
            worker.process,
            delays.join(" "),
            worker.map.busy,
            worker.map.idle,
            worker.map.back_pressured,
            worker.source.busy,
            worker.source.idle,
            worker.source.back_pressured,
        );
    }
    println!("{}", report.to_json(&job));
    if report.delays_ns.is_empty() {
        return Err(WeirError::WrongAnswer {
            detail: "no barrier was aligned: run longer than the barrier interval".to_owned(),
        });
    }
    Ok(())
}

pub(super) fn barrier_worker(
    process: u32,
    peers: Vec<std::net::SocketAddr>,
    args: &BarrierJobArgs,
) -> Result<(), WeirError> {
    let mut job = args.job()?;
    if job.epoch_ns == 0 {
        job.epoch_ns = epoch_after(Duration::from_secs(1));
    }
    let report = run_barrier_worker(&job, NetworkConfig::new(process, peers))?;
    weir::lifecycle::print_line(&report.to_line())
}

/// Starts `workers` worker processes of this executable on loopback with `job_args` and
/// parses each one's report (its last stdout line) with `parse`.
fn run_local_workers<R>(
    workers: usize,
    job_args: &[String],
    timeout: Duration,
    parse: fn(&str) -> Result<R, String>,
) -> Result<Vec<R>, WeirError> {
    let cluster = LocalCluster::new(workers)?;
    let exe = std::env::current_exe().map_err(|e| WeirError::file("find", "weir", e))?;
    cluster
        .run(&exe, job_args, timeout)?
        .iter()
        .map(|line| parse(line).map_err(|message| WeirError::Worker { message }))
        .collect()
}
