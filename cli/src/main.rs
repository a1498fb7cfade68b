//! The `weir` command line.
//!
//! `weir` with no arguments runs the main job, TPC-H Q1 and Q3 across two worker
//! processes (`weir run tpch` with other queries, scales and configurations); `weir demo`
//! the verified external sort; `weir gen sort-records` writes W1 input;
//! `weir sort` sorts it within a memory budget; `weir gen tpch` writes TPC-H tables;
//! `weir bench shuffle|latency|barrier` run W4, W5 and W6 (`weir worker` is one worker
//! process of those), `weir bench w2a|w2b` W2 (hash aggregation of TPC-H lineitem) and
//! `weir bench w3` W3 (the hybrid hash join orders ⋈ lineitem). Usage errors and bad input
//! exit with 2, failures while running with 1.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use weir::error::WeirError;
use weir::netstack::FlushMode;
use weir::netstack::transport::NetworkConfig;
use weir::size::parse_size;
use weir::workers::{LocalCluster, read_peers};
use weir_cli::run_tpch::{QueryWorkerArgs, TpchArgs, query_worker, run_tpch};
use weir_cli::tpch::generate_tables;
use weir_cli::workloads::soak::{SoakArgs, SoakWorkerArgs, soak, soak_worker};
use weir_cli::workloads::w1_sort::{SortJob, generate, run_sort};
use weir_cli::workloads::w2_aggregate::{W2Job, Workload, run_w2};
use weir_cli::workloads::w3_join::{BuildSide, W3Job, run_w3};
use weir_cli::workloads::w4_shuffle::{
    Exchange, ShuffleJob, WorkerReport, combine_workers, flush_name, parse_flush, run_shuffle,
    run_shuffle_worker,
};
use weir_cli::workloads::w5_latency::{
    LatencyJob, LatencyReport, LatencyWorkerReport, run_latency_worker,
};
use weir_cli::workloads::w6_barrier::{
    BarrierJob, BarrierReport, BarrierWorkerReport, epoch_after, run_barrier_worker,
};

#[derive(Debug, Parser)]
#[command(name = "weir", version, about = "A memory-managed dataflow kernel")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate benchmark input.
    Gen {
        #[command(subcommand)]
        what: Gen,
    },
    /// Sort W1 records by their 10-byte key within a memory budget.
    Sort(SortArgs),
    /// Run as worker process I of a multi-process job (peers: one host:port per line).
    Worker {
        /// This process's index in the peers file.
        #[arg(long)]
        process: u32,
        /// The peers file: every worker's address, one per line, in process order.
        #[arg(long)]
        peers: PathBuf,
        #[command(subcommand)]
        job: WorkerJob,
    },
    /// Run a dataflow job: TPC-H queries across worker processes.
    Run {
        #[command(subcommand)]
        what: Run,
    },
    /// Run a benchmark workload of WORKLOADS.md; the last line printed is its JSON.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
    /// Generate 1M W1 records, sort them under a 16 MiB budget with verification, and report.
    Demo {
        /// Records to generate.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Memory budget, like 16MiB.
        #[arg(long, default_value = "16MiB", value_parser = parse_size)]
        memory: u64,
        /// Directory for the input, output and spill files (default: the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum Gen {
    /// W1 records: 100 bytes each, as specified in WORKLOADS.md.
    SortRecords {
        /// Records to write.
        #[arg(long)]
        count: u64,
        /// Seed of the generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// TPC-H lineitem, orders and customer as files of weir records and their manifest
    /// (docs/FORMAT.md §7); DIR must be absent, empty, or hold weir's tables.
    Tpch {
        /// The scale factor: 1 is 6,001,215 lineitem rows.
        #[arg(long)]
        scale: f64,
        /// The directory to write the tables into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// W4: a keyed shuffle of (u64 key, u64 value) records, or larger ones, from 2 source
    /// tasks to 2 sink tasks.
    Shuffle(ShuffleArgs),
    /// W5: end-to-end latency across worker processes at a fixed rate.
    Latency(LatencyArgs),
    /// W6: aligned barriers behind back-pressured data, with and without debloating.
    Barrier(BarrierArgs),
    /// W2a: lineitem GROUP BY l_orderkey: SUM(l_extendedprice), COUNT(*).
    W2a(W2Args),
    /// W2b: TPC-H Q1 (pricing summary report).
    W2b(W2Args),
    /// W3: orders JOIN lineitem ON orderkey: COUNT(*), SUM(l_extendedprice).
    W3(W3Args),
    /// Soak: shuffles, sorts and joins at once across 2 worker processes, round after
    /// round, with stalling consumers; every result checked, no leak, no deadlock.
    Soak(Box<SoakArgs>),
}

#[derive(Debug, clap::Args)]
struct W2Args {
    /// The directory `weir gen tpch` wrote.
    #[arg(long)]
    input: PathBuf,
    /// Memory budget, input buffers included, like 256MiB.
    #[arg(long, value_parser = parse_size)]
    memory: u64,
    /// Threads (only 1 so far).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the result as CSV with a header (W2: ordered by the group key).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Directory for spill files (default: the input directory).
    #[arg(long)]
    spill_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct W3Args {
    #[command(flatten)]
    common: W2Args,
    /// The table the hash join builds on: orders (the smaller) or lineitem.
    #[arg(long, default_value = "orders", value_parser = parse_build_side)]
    build: BuildSide,
}

fn parse_build_side(text: &str) -> Result<BuildSide, String> {
    match text {
        "orders" => Ok(BuildSide::Orders),
        "lineitem" => Ok(BuildSide::Lineitem),
        _ => Err(format!("{text:?}: expected orders or lineitem")),
    }
}

#[derive(Debug, Subcommand)]
enum Run {
    /// TPC-H queries as dataflow jobs (default: Q1 and Q3 at SF 1 across 2 workers with
    /// 64 MiB of managed memory each), their answers checked against the reference.
    Tpch(Box<TpchArgs>),
}

#[derive(Debug, Subcommand)]
enum WorkerJob {
    /// This worker's part of a TPC-H query of `weir run tpch`.
    Query(Box<QueryWorkerArgs>),
    /// This worker's part of a soak round.
    Soak(Box<SoakWorkerArgs>),
    /// This worker's source and sink of a W4 shuffle.
    Shuffle(ShuffleJobArgs),
    /// This worker's paced source and latency-recording sink of W5.
    Latency(LatencyJobArgs),
    /// This worker's back-pressured source and slow map of W6.
    Barrier(BarrierJobArgs),
}

#[derive(Debug, clap::Args)]
struct BarrierArgs {
    /// Worker processes, started locally on loopback (at least 2).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[command(flatten)]
    job: BarrierJobArgs,
}

#[derive(Debug, Clone, clap::Args)]
struct BarrierJobArgs {
    /// Buffer debloating in the maps' gates: on or off.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    debloat: bool,
    /// The debloating target in milliseconds.
    #[arg(long, default_value_t = 1000)]
    target_ms: u64,
    /// The slow map's busy time per record, in microseconds.
    #[arg(long, default_value_t = 100)]
    busy_us: u64,
    /// Seconds the sources emit (the warm-up included).
    #[arg(long, default_value_t = 40.0)]
    seconds: f64,
    /// Seconds between barriers.
    #[arg(long, default_value_t = 2.0)]
    barrier_interval: f64,
    /// Seconds of warm-up whose barriers are not counted.
    #[arg(long, default_value_t = 10.0)]
    warmup: f64,
    /// Wall-clock epoch in nanoseconds (the launcher sets it; workers share it).
    #[arg(long, default_value_t = 0, hide = true)]
    epoch_ns: u64,
}

#[derive(Debug, clap::Args)]
struct LatencyArgs {
    /// Worker processes, started locally on loopback (at least 2).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[command(flatten)]
    job: LatencyJobArgs,
}

#[derive(Debug, Clone, clap::Args)]
struct LatencyJobArgs {
    /// Records per second, over all sources.
    #[arg(long)]
    rate: u64,
    /// When records become readable: every, full, idle, or a buffer timeout like 100ms.
    #[arg(long, default_value = "100ms", value_parser = parse_flush)]
    flush: FlushMode,
    /// Seconds the sources emit.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

#[derive(Debug, clap::Args)]
struct ShuffleArgs {
    /// Worker processes (1: local channels in this process; more: started locally on
    /// loopback, one source and one sink task each).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[command(flatten)]
    job: ShuffleJobArgs,
}

#[derive(Debug, Clone, clap::Args)]
struct ShuffleJobArgs {
    /// How records go from sources to sinks: hash (by key), forward, rebalance, rescale
    /// or broadcast.
    #[arg(long, default_value = "hash", value_parser = Exchange::parse)]
    exchange: Exchange,
    /// Records in total.
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// Bytes per record (at least 16: the u64 key and the u64 value).
    #[arg(long, default_value_t = 16)]
    record_size: usize,
    /// When records become readable: every, full, idle, or a buffer timeout like 100ms.
    #[arg(long, default_value = "100ms", value_parser = parse_flush)]
    flush: FlushMode,
    /// Seed of the keys.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fail when a peer worker sends nothing for this long (stopped, hung or partitioned):
    /// seconds or a duration like 500ms (default 10s).
    #[arg(long, value_parser = weir_cli::args::parse_peer_timeout)]
    peer_timeout: Option<Duration>,
}

#[derive(Debug, clap::Args)]
struct SortArgs {
    /// The W1 input file.
    #[arg(long)]
    input: PathBuf,
    /// The sorted output file.
    #[arg(long)]
    output: PathBuf,
    /// Memory budget, every buffer included, like 256MiB.
    #[arg(long, value_parser = parse_size)]
    memory: u64,
    /// Threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Directory for spill files (default: the output's directory).
    #[arg(long)]
    spill_dir: Option<PathBuf>,
    /// Check the output's key order and checksum against the input's.
    #[arg(long)]
    verify: bool,
    /// LZ4-compress spilled blocks.
    #[arg(long)]
    compress: bool,
}

fn main() -> ExitCode {
    // Before any thread exists: the signal mask and the heap setting are inherited.
    weir::lifecycle::install("weir");
    weir::kernel::sys::limit_heap_arenas();
    weir::lifecycle::watch_launcher("weir");
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_tpch(&TpchArgs::default()),
        Some(Command::Run {
            what: Run::Tpch(args),
        }) => run_tpch(&args),
        Some(Command::Bench {
            what: Bench::Soak(args),
        }) => soak(&args),
        Some(Command::Worker {
            process,
            peers,
            job: WorkerJob::Soak(args),
        }) => worker_peers(process, &peers).and_then(|peers| soak_worker(process, peers, &args)),
        Some(Command::Worker {
            process,
            peers,
            job: WorkerJob::Query(args),
        }) => worker_peers(process, &peers).and_then(|peers| query_worker(process, peers, &args)),
        Some(Command::Demo { count, memory, dir }) => demo(count, memory, dir),
        Some(Command::Gen {
            what: Gen::SortRecords { count, seed, out },
        }) => generate(count, seed, &out),
        Some(Command::Gen {
            what: Gen::Tpch { scale, out },
        }) => gen_tpch(scale, &out),
        Some(Command::Sort(args)) => sort(args),
        Some(Command::Bench {
            what: Bench::Shuffle(args),
        }) => shuffle(args),
        Some(Command::Worker {
            process,
            peers,
            job: WorkerJob::Shuffle(args),
        }) => shuffle_worker(process, &peers, &args),
        Some(Command::Bench {
            what: Bench::Latency(args),
        }) => latency(args),
        Some(Command::Bench {
            what: Bench::Barrier(args),
        }) => barrier(args),
        Some(Command::Worker {
            process,
            peers,
            job: WorkerJob::Barrier(args),
        }) => barrier_worker(process, &peers, &args),
        Some(Command::Worker {
            process,
            peers,
            job: WorkerJob::Latency(args),
        }) => latency_worker(process, &peers, &args),
        Some(Command::Bench {
            what: Bench::W2a(args),
        }) => w2(Workload::W2a, args),
        Some(Command::Bench {
            what: Bench::W2b(args),
        }) => w2(Workload::W2b, args),
        Some(Command::Bench {
            what: Bench::W3(args),
        }) => w3(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            weir::lifecycle::report_line(&format!("weir: {error}"));
            ExitCode::from(if error.is_usage() { 2 } else { 1 })
        }
    }
}

fn sort(args: SortArgs) -> Result<(), WeirError> {
    let job = SortJob {
        input: args.input,
        output: args.output,
        memory_bytes: args.memory,
        threads: args.threads,
        spill_dir: args.spill_dir,
        verify: args.verify,
        compress: args.compress,
        progress: true,
    };
    let report = run_sort(&job)?;
    eprintln!("weir sort: spill i/o: {}", report.io_description);
    println!("{}", report.to_json(&job));
    if report.valid == Some(false) {
        return Err(WeirError::Input {
            message: "verification failed: the output is not the sorted input".to_owned(),
        });
    }
    Ok(())
}

fn gen_tpch(scale: f64, out: &std::path::Path) -> Result<(), WeirError> {
    weir_cli::tpch::check_scale(scale)?;
    let rows = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let manifest = {
        let _progress = weir_cli::progress::Progress::start(
            format!("generating TPC-H SF {scale} in {}", out.display()),
            std::sync::Arc::clone(&rows),
            Some(weir_cli::run_tpch::table_rows_estimate(scale)),
        );
        generate_tables(scale, out, &rows)?
    };
    for entry in &manifest.tables {
        eprintln!(
            "weir gen tpch: {} rows of {} in {} ({} bytes)",
            entry.totals.rows,
            entry.table.name(),
            out.join(entry.table.name()).display(),
            entry.bytes
        );
    }
    Ok(())
}

fn w2(workload: Workload, args: W2Args) -> Result<(), WeirError> {
    let job = W2Job {
        workload,
        input: args.input,
        memory_bytes: args.memory,
        threads: args.threads,
        output: args.output,
        spill_dir: args.spill_dir,
    };
    let report = run_w2(&job)?;
    for problem in &report.problems {
        eprintln!("weir bench {}: invalid: {problem}", workload.name());
    }
    println!("{}", report.to_json(&job));
    if !report.valid {
        return Err(WeirError::Input {
            message: format!("{}: the answer failed validation", workload.name()),
        });
    }
    Ok(())
}

fn w3(args: W3Args) -> Result<(), WeirError> {
    let W3Args {
        common: args,
        build,
    } = args;
    let job = W3Job {
        input: args.input,
        memory_bytes: args.memory,
        threads: args.threads,
        output: args.output,
        spill_dir: args.spill_dir,
        build,
    };
    let report = run_w3(&job)?;
    for problem in &report.problems {
        eprintln!("weir bench w3: invalid: {problem}");
    }
    println!("{}", report.to_json(&job));
    if !report.valid {
        return Err(WeirError::Input {
            message: "W3: the answer failed validation".to_owned(),
        });
    }
    Ok(())
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

fn shuffle(args: ShuffleArgs) -> Result<(), WeirError> {
    if !(1..=64).contains(&args.workers) {
        return Err(WeirError::Input {
            message: format!("--workers {}: 1 to 64", args.workers),
        });
    }
    let job = args.job.job(args.workers);
    let progress = weir_cli::progress::Progress::elapsed(format!(
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
        return Err(WeirError::Input {
            message: "the shuffle lost, duplicated or misplaced records".to_owned(),
        });
    }
    Ok(())
}

fn shuffle_worker(
    process: u32,
    peers: &std::path::Path,
    args: &ShuffleJobArgs,
) -> Result<(), WeirError> {
    let peers = worker_peers(process, peers)?;
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
            return Err(WeirError::Input {
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

fn latency(args: LatencyArgs) -> Result<(), WeirError> {
    if !(2..=64).contains(&args.workers) {
        return Err(WeirError::Input {
            message: format!(
                "--workers {}: 2 to 64 (latency is measured across processes)",
                args.workers
            ),
        });
    }
    let job = args.job.job(args.workers)?;
    if job.rate == 0 {
        return Err(WeirError::Input {
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
        return Err(WeirError::Input {
            message: format!(
                "{} records sent, {} latencies recorded",
                report.sent,
                report.latencies.len()
            ),
        });
    }
    Ok(())
}

fn latency_worker(
    process: u32,
    peers: &std::path::Path,
    args: &LatencyJobArgs,
) -> Result<(), WeirError> {
    let peers = worker_peers(process, peers)?;
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
                Err(WeirError::Input {
                    message: format!("--{name} {value}: above 0 and at most 3600"),
                })
            }
        };
        if !(1..=60_000).contains(&self.target_ms) {
            return Err(WeirError::Input {
                message: format!("--target-ms {}: 1 to 60000", self.target_ms),
            });
        }
        if self.busy_us > 1_000_000 {
            return Err(WeirError::Input {
                message: format!("--busy-us {}: at most 1000000", self.busy_us),
            });
        }
        if self.warmup >= self.seconds {
            return Err(WeirError::Input {
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

fn barrier(args: BarrierArgs) -> Result<(), WeirError> {
    if !(2..=64).contains(&args.workers) {
        return Err(WeirError::Input {
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
        return Err(WeirError::Input {
            message: "no barrier was aligned: run longer than the barrier interval".to_owned(),
        });
    }
    Ok(())
}

fn barrier_worker(
    process: u32,
    peers: &std::path::Path,
    args: &BarrierJobArgs,
) -> Result<(), WeirError> {
    let peers = worker_peers(process, peers)?;
    let mut job = args.job()?;
    if job.epoch_ns == 0 {
        job.epoch_ns = epoch_after(Duration::from_secs(1));
    }
    let report = run_barrier_worker(&job, NetworkConfig::new(process, peers))?;
    weir::lifecycle::print_line(&report.to_line())
}

/// The peers file of a worker process, checked to list `process`.
fn worker_peers(
    process: u32,
    peers: &std::path::Path,
) -> Result<Vec<std::net::SocketAddr>, WeirError> {
    let peers = read_peers(peers)?;
    if process as usize >= peers.len() {
        return Err(WeirError::Input {
            message: format!(
                "--process {process}: the peers file lists {} workers",
                peers.len()
            ),
        });
    }
    Ok(peers)
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
        .map(|line| parse(line).map_err(|message| WeirError::Input { message }))
        .collect()
}

/// The default job: a verified external sort of generated records under a small budget.
fn demo(count: u64, memory: u64, dir: Option<PathBuf>) -> Result<(), WeirError> {
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let work = base.join(format!("weir-demo.{}", std::process::id()));
    // Removed on every way out: below on success and failure, and on a signal.
    let _registered = weir::lifecycle::remove_on_exit(&work);
    std::fs::create_dir_all(&work).map_err(|e| WeirError::file("create directory", &work, e))?;
    let result = demo_in(&work, count, memory);
    let cleanup =
        std::fs::remove_dir_all(&work).map_err(|e| WeirError::file("remove directory", &work, e));
    result.and(cleanup)
}

fn demo_in(work: &std::path::Path, count: u64, memory: u64) -> Result<(), WeirError> {
    let input = work.join("input.w1");
    println!(
        "weir demo: generating {count} W1 records ({} MB) in {}",
        count * 100 / 1_000_000,
        work.display()
    );
    generate(count, 42, &input)?;
    let job = SortJob {
        input,
        output: work.join("sorted.w1"),
        memory_bytes: memory,
        threads: 1,
        spill_dir: Some(work.to_path_buf()),
        verify: true,
        compress: false,
        progress: true,
    };
    println!(
        "weir demo: sorting them by key under a {} MiB memory budget",
        memory >> 20
    );
    let report = run_sort(&job)?;
    let verdict = match report.valid {
        Some(true) => "valid (sorted; checksum equals the input's)",
        _ => "INVALID",
    };
    println!(
        "weir demo: {} records in {:.2} s ({:.2} s reading and spilling, {:.2} s merging); \
         {} runs spilled ({} MB), {} merge passes, fan-in {}, peak RSS {:.0} MiB; {verdict}\n\
         weir demo: spill i/o: {}",
        report.records,
        report.wall_s,
        report.sort_phase_s,
        report.merge_phase_s,
        report.stats.runs + report.stats.merge_runs,
        report.stats.spilled_bytes / 1_000_000,
        report.stats.merge_passes,
        report.stats.fan_in,
        report.peak_rss_bytes as f64 / f64::from(1 << 20),
        report.io_description,
    );
    println!("{}", report.to_json(&job));
    if report.valid != Some(true) {
        return Err(WeirError::Input {
            message: "demo sort failed verification".to_owned(),
        });
    }
    Ok(())
}
