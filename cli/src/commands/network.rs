//! `weir bench shuffle|latency|barrier` and their `weir worker` parts: W4, W5 and W6
//! across worker processes on loopback.

use std::path::PathBuf;
use std::time::Duration;

use weir::checkpoint::CheckpointConfig;
use weir::error::WeirError;
use weir::netstack::transport::NetworkConfig;

use crate::args::{ConfigArgs, parse_on_off};
use crate::report::print_worker_line;
use crate::workloads::w4_shuffle::{Exchange, ShuffleJob, run_shuffle, run_shuffle_worker};
use crate::workloads::w5_latency::{LatencyJob, run_latency, run_latency_worker};
use crate::workloads::w6_barrier::{BarrierJob, run_barrier, run_barrier_worker};

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
    /// Run W6's checkpointable form: a replayable source of what the maps take in
    /// --seconds, and a committed file sink (exactly once) into DIR
    #[arg(long, value_name = "DIR")]
    pub(crate) output: Option<PathBuf>,
    /// With --output: take a checkpoint at every barrier into DIR (an empty or new
    /// directory); the JSON line reports their durations
    #[arg(long, value_name = "DIR")]
    pub(crate) checkpoint_dir: Option<PathBuf>,
    /// Release a barrier unaligned once it waited this many milliseconds at a gate (0: at
    /// once); aligned by default
    #[arg(long)]
    pub(crate) alignment_timeout_ms: Option<u64>,
    /// Worker processes (the launcher passes it on).
    #[arg(long, default_value_t = 2, hide = true)]
    pub(crate) job_workers: usize,
}

/// `weir bench latency` and its workers' part: W5's flags and the job configuration.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LatencyArgs {
    /// Records per second, over all sources.
    #[arg(long)]
    pub(crate) rate: u64,
    /// Seconds the sources emit.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) seconds: f64,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

impl LatencyArgs {
    fn job(&self) -> Result<LatencyJob, WeirError> {
        if !(self.seconds > 0.0 && self.seconds <= 3600.0) {
            return Err(WeirError::Usage {
                message: format!("--seconds {}: above 0 and at most 3600", self.seconds),
            });
        }
        Ok(LatencyJob {
            rate: self.rate,
            duration: Duration::from_secs_f64(self.seconds),
            config: self.config.to_config()?,
        })
    }

    /// The arguments as a worker's command line.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "latency".to_owned(),
            format!("--rate={}", self.rate),
            format!("--seconds={}", self.seconds),
        ];
        args.extend(self.config.to_args());
        args
    }
}

/// `weir bench shuffle` and its workers' part: W4's flags and the job configuration.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ShuffleArgs {
    /// How records go from sources to sinks: hash (by key), rebalance, broadcast or gather.
    #[arg(long, default_value = "hash", value_parser = Exchange::parse)]
    pub(crate) exchange: Exchange,
    /// Records in total.
    #[arg(long, default_value_t = 10_000_000)]
    pub(crate) records: u64,
    /// Bytes per record, encoded (at least 16: the u64 key and the u64 value).
    #[arg(long, default_value_t = 16)]
    pub(crate) record_size: usize,
    /// Seed of the keys.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

impl ShuffleArgs {
    fn job(&self) -> Result<ShuffleJob, WeirError> {
        Ok(ShuffleJob {
            records: self.records,
            record_bytes: self.record_size,
            seed: self.seed,
            exchange: self.exchange,
            config: self.config.to_config()?,
        })
    }

    /// The arguments as a worker's command line.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "shuffle".to_owned(),
            format!("--exchange={}", self.exchange.name()),
            format!("--records={}", self.records),
            format!("--record-size={}", self.record_size),
            format!("--seed={}", self.seed),
        ];
        args.extend(self.config.to_args());
        args
    }
}

pub(super) fn shuffle(args: &ShuffleArgs) -> Result<(), WeirError> {
    let job = args.job()?;
    let progress = crate::progress::Progress::elapsed(format!(
        "shuffling {} records across {} worker(s) × {} slot(s)",
        job.records, job.config.workers, job.config.slots
    ));
    let report = run_shuffle(&job, &args.to_args())?;
    drop(progress);
    eprintln!(
        "weir bench shuffle: {} records of {} bytes, {} exchange, {} source and {} sink tasks \
         in {:.3} s: {:.1} M records/s, {:.2} GB/s; sources back-pressured {:.3} s",
        report.records,
        report.record_bytes,
        report.exchange,
        report.sources,
        report.sinks,
        report.wall_s,
        report.records_per_s / 1e6,
        report.bytes_per_s / 1e9,
        report.back_pressured_s,
    );
    println!("{}", report.to_json());
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
    args: &ShuffleArgs,
) -> Result<(), WeirError> {
    let report = run_shuffle_worker(&args.job()?, NetworkConfig::new(process, peers))?;
    print_worker_line(&report)
}

pub(super) fn latency(args: &LatencyArgs) -> Result<(), WeirError> {
    let job = args.job()?;
    let report = run_latency(&job, &args.to_args())?;
    eprintln!(
        "weir bench latency: {} records at {}/s, flush {}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
        report.records,
        report.rate,
        report.flush,
        report.latency_p50_ms,
        report.latency_p99_ms,
        report.latency_p999_ms,
    );
    println!("{}", report.to_json());
    if !report.valid {
        return Err(WeirError::WrongAnswer {
            detail: format!(
                "{} latencies recorded, not one per record the sources must send",
                report.records
            ),
        });
    }
    Ok(())
}

pub(super) fn latency_worker(
    process: u32,
    peers: Vec<std::net::SocketAddr>,
    args: &LatencyArgs,
) -> Result<(), WeirError> {
    let report = run_latency_worker(&args.job()?, NetworkConfig::new(process, peers))?;
    print_worker_line(&report)
}

impl BarrierJobArgs {
    fn job(&self, workers: usize) -> Result<BarrierJob, WeirError> {
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
        if self.checkpoint_dir.is_some() && self.output.is_none() {
            return Err(WeirError::Usage {
                message: "--checkpoint-dir needs --output (W6's checkpointable form)".to_owned(),
            });
        }
        if self.output.is_some() && self.busy_us == 0 {
            return Err(WeirError::Usage {
                message: "--output needs --busy-us of at least 1 (the records are what the \
                          maps take in --seconds)"
                    .to_owned(),
            });
        }
        Ok(BarrierJob {
            committed: self.output.clone(),
            busy: Duration::from_micros(self.busy_us),
            duration: seconds("seconds", self.seconds)?,
            warmup: if self.warmup == 0.0 {
                Duration::ZERO
            } else {
                seconds("warmup", self.warmup)?
            },
            config: weir::config::Config {
                workers,
                debloat: self.debloat,
                debloat_target: Duration::from_millis(self.target_ms),
                barrier_interval: Some(seconds("barrier-interval", self.barrier_interval)?),
                checkpoint: self.checkpoint_dir.as_ref().map(CheckpointConfig::new),
                alignment_timeout: self.alignment_timeout_ms.map(Duration::from_millis),
                ..weir::config::Config::default()
            },
        })
    }

    fn to_args(&self, workers: usize) -> Vec<String> {
        let mut args = vec![
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
            "--job-workers".to_owned(),
            workers.to_string(),
        ];
        if let Some(ms) = self.alignment_timeout_ms {
            args.push(format!("--alignment-timeout-ms={ms}"));
        }
        for (flag, dir) in [
            ("--output", &self.output),
            ("--checkpoint-dir", &self.checkpoint_dir),
        ] {
            if let Some(dir) = dir {
                args.push(flag.to_owned());
                args.push(dir.display().to_string());
            }
        }
        args
    }
}

pub(super) fn barrier(args: BarrierArgs) -> Result<(), WeirError> {
    if !(2..=64).contains(&args.workers) {
        return Err(WeirError::Usage {
            message: format!("--workers {}: 2 to 64", args.workers),
        });
    }
    let job = args.job.job(args.workers)?;
    let report = run_barrier(&job, &args.job.to_args(args.workers))?;
    println!("{}", report.to_json());
    Ok(())
}

pub(super) fn barrier_worker(
    process: u32,
    peers: Vec<std::net::SocketAddr>,
    args: &BarrierJobArgs,
) -> Result<(), WeirError> {
    let job = args.job(args.job_workers)?;
    let report = run_barrier_worker(&job, NetworkConfig::new(process, peers))?;
    print_worker_line(&report)
}
