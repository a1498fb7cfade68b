//! The `weir` command line.
//!
//! `weir` with no arguments runs the demo job; `weir gen sort-records` writes W1 input;
//! `weir sort` sorts it within a memory budget; `weir gen tpch` writes TPC-H tables;
//! `weir bench shuffle` runs W4 and `weir bench w2a|w2b` W2. Usage errors and bad input
//! exit with 2, failures while running with 1.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir::error::WeirError;
use weir::netstack::FlushMode;
use weir::shuffle_job::{ShuffleJob, parse_flush, run_shuffle};
use weir::size::parse_size;
use weir::sort_job::{SortJob, generate, run_sort};
use weir::tpch::{Table, generate_tables};
use weir::w2_job::{W2Job, Workload, run_w2};

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
    /// TPC-H lineitem, orders and customer as files of weir records (docs/FORMAT.md §6).
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
    /// W2a: lineitem GROUP BY l_orderkey: SUM(l_extendedprice), COUNT(*).
    W2a(W2Args),
    /// W2b: TPC-H Q1 (pricing summary report).
    W2b(W2Args),
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
    /// Write the result as CSV with a header, ordered by the group key.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Directory for spill files (default: the input directory).
    #[arg(long)]
    spill_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ShuffleArgs {
    /// Worker processes (1: local channels in this process).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Records in total.
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// Bytes per record (at least 16: the u64 key and the u64 value).
    #[arg(long, default_value_t = 16)]
    record_size: usize,
    /// When records become readable: every, full, or a buffer timeout like 100ms.
    #[arg(long, default_value = "100ms", value_parser = parse_flush)]
    flush: FlushMode,
    /// Seed of the keys.
    #[arg(long, default_value_t = 42)]
    seed: u64,
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
    let cli = Cli::parse();
    let result = match cli.command {
        None => demo(1_000_000, 16 << 20, None),
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
        Some(Command::Bench {
            what: Bench::W2a(args),
        }) => w2(Workload::W2a, args),
        Some(Command::Bench {
            what: Bench::W2b(args),
        }) => w2(Workload::W2b, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weir: {error}");
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
    let rows = generate_tables(scale, out)?;
    for (table, rows) in Table::ALL.iter().zip(rows) {
        eprintln!(
            "weir gen tpch: {} rows of {} in {}",
            rows,
            table.name(),
            out.join(table.name()).display()
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

fn shuffle(args: ShuffleArgs) -> Result<(), WeirError> {
    if args.workers != 1 {
        return Err(WeirError::Input {
            message: format!(
                "--workers {}: only 1 worker (local channels) so far; the TCP transport \
                 between worker processes is not built yet",
                args.workers
            ),
        });
    }
    let job = ShuffleJob {
        records: args.records,
        record_bytes: args.record_size,
        flush: args.flush,
        seed: args.seed,
        ..ShuffleJob::default()
    };
    let report = run_shuffle(&job)?;
    eprintln!(
        "weir bench shuffle: {} records of {} bytes in {:.3} s: {:.1} M records/s, {:.2} GB/s; \
         sources back-pressured {:.3} s",
        report.records_received,
        job.record_bytes,
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

/// The default job: a verified external sort of generated records under a small budget.
fn demo(count: u64, memory: u64, dir: Option<PathBuf>) -> Result<(), WeirError> {
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let work = base.join(format!("weir-demo.{}", std::process::id()));
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
