//! The command tree of `weir` and its dispatch: each group of commands lives in its own
//! file (`sort`, `tpch`, `nexmark`, `network`), the workloads themselves in
//! [`crate::workloads`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use weir::error::WeirError;
use weir::size::parse_size;
use weir::workers::read_peers;

use crate::run_tpch::{QueryWorkerArgs, TpchArgs, query_worker, run_tpch};
use crate::workloads::soak::{SoakArgs, SoakWorkerArgs, soak, soak_worker};
use crate::workloads::w1_sort::generate;
use crate::workloads::w2_aggregate::Workload;

mod network;
mod nexmark;
mod sort;
mod tpch;

use network::{BarrierArgs, BarrierJobArgs, LatencyArgs, ShuffleArgs};
use nexmark::NexmarkArgs;
use sort::SortArgs;
use tpch::{W2Args, W3Args};

/// The `weir` command line (`weir` alone runs the main job).
#[derive(Debug, Parser)]
#[command(name = "weir", version, about = "A memory-managed dataflow kernel")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Run a dataflow job: TPC-H or Nexmark queries across worker processes.
    Run {
        #[command(subcommand)]
        what: Run,
    },
    /// Run a benchmark workload of docs/WORKLOADS.md; the last line printed is its JSON.
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
pub(crate) enum Gen {
    /// W1 records: 100 bytes each, as specified in docs/WORKLOADS.md.
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
    /// The eight TPC-H tables as files of weir records and their manifest
    /// (docs/FORMAT.md §7); DIR must be absent, empty, or hold weir's tables.
    Tpch {
        /// The scale factor: 1 is 6,001,215 lineitem rows.
        #[arg(long)]
        scale: f64,
        /// The directory to write the tables into.
        #[arg(long)]
        out: PathBuf,
    },
    /// The first N Nexmark events of the standard generator: as one CSV file (a column
    /// for the event type, 0 person, 1 auction, 2 bid, then each type's columns) for
    /// another engine to check weir's answers, or as a weir record file
    /// (docs/FORMAT.md §10) that `weir run nexmark --input` reads at full speed; written
    /// through a temporary file.
    Nexmark {
        /// Events to write.
        #[arg(long)]
        events: u64,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// csv or records.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Events per second of event time (the generator's spacing of timestamps).
        #[arg(long, default_value_t = crate::nexmark::EVENT_RATE_DEFAULT)]
        event_rate: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Bench {
    /// W4: a keyed shuffle of (u64 key, u64 value) records, or larger ones, as a dataflow
    /// job (default: 2 workers × 1 slot).
    Shuffle(Box<ShuffleArgs>),
    /// W5: end-to-end latency across worker processes at a fixed rate, as a dataflow job.
    Latency(Box<LatencyArgs>),
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

#[derive(Debug, Subcommand)]
pub(crate) enum Run {
    /// TPC-H queries as dataflow jobs (default: all 22 at SF 1 across 2 workers with 64
    /// MiB of managed memory each), their answers checked against the reference.
    Tpch(Box<TpchArgs>),
    /// A Nexmark query over the standard generator's events (q0, q1, q2 so far), its
    /// source split across every worker's tasks (default: 2 workers × 1 slot); the rows
    /// checked against a plain loop over the same events; the last line is its JSON.
    Nexmark(Box<NexmarkArgs>),
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkerJob {
    /// This worker's part of a TPC-H query of `weir run tpch`.
    Query(Box<QueryWorkerArgs>),
    /// This worker's part of a soak round.
    Soak(Box<SoakWorkerArgs>),
    /// This worker's part of a W4 shuffle.
    Shuffle(Box<ShuffleArgs>),
    /// This worker's part of W5.
    Latency(Box<LatencyArgs>),
    /// This worker's back-pressured source and slow map of W6.
    Barrier(BarrierJobArgs),
}

/// Runs the command `cli` names (the main job when it names none).
///
/// # Errors
///
/// The command's error.
pub fn run(cli: Cli) -> Result<(), WeirError> {
    match cli.command {
        None => run_tpch(&TpchArgs::default()),
        Some(Command::Run {
            what: Run::Tpch(args),
        }) => run_tpch(&args),
        Some(Command::Run {
            what: Run::Nexmark(args),
        }) => nexmark::run_nexmark(&args),
        Some(Command::Demo { count, memory, dir }) => sort::demo(count, memory, dir),
        Some(Command::Gen {
            what: Gen::SortRecords { count, seed, out },
        }) => generate(count, seed, &out),
        Some(Command::Gen {
            what: Gen::Tpch { scale, out },
        }) => tpch::gen_tpch(scale, &out),
        Some(Command::Gen {
            what:
                Gen::Nexmark {
                    events,
                    out,
                    format,
                    event_rate,
                },
        }) => nexmark::gen_nexmark(events, event_rate, &out, &format),
        Some(Command::Sort(args)) => sort::sort(args),
        Some(Command::Bench { what }) => bench(what),
        Some(Command::Worker {
            process,
            peers,
            job,
        }) => worker(process, &peers, job),
    }
}

fn bench(what: Bench) -> Result<(), WeirError> {
    match what {
        Bench::Soak(args) => soak(&args),
        Bench::Shuffle(args) => network::shuffle(&args),
        Bench::Latency(args) => network::latency(&args),
        Bench::Barrier(args) => network::barrier(args),
        Bench::W2a(args) => tpch::w2(Workload::W2a, args),
        Bench::W2b(args) => tpch::w2(Workload::W2b, args),
        Bench::W3(args) => tpch::w3(args),
    }
}

fn worker(process: u32, peers: &std::path::Path, job: WorkerJob) -> Result<(), WeirError> {
    let peers = worker_peers(process, peers)?;
    match job {
        WorkerJob::Query(args) => query_worker(process, peers, &args),
        WorkerJob::Soak(args) => soak_worker(process, peers, &args),
        WorkerJob::Shuffle(args) => network::shuffle_worker(process, peers, &args),
        WorkerJob::Latency(args) => network::latency_worker(process, peers, &args),
        WorkerJob::Barrier(args) => network::barrier_worker(process, peers, &args),
    }
}

/// The peers file of a worker process, checked to list `process`.
fn worker_peers(
    process: u32,
    peers: &std::path::Path,
) -> Result<Vec<std::net::SocketAddr>, WeirError> {
    let peers = read_peers(peers)?;
    if process as usize >= peers.len() {
        return Err(WeirError::Usage {
            message: format!(
                "--process {process}: the peers file lists {} workers",
                peers.len()
            ),
        });
    }
    Ok(peers)
}
