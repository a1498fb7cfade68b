//! `weir gen tpch`, `weir bench w2a|w2b|w3`: TPC-H tables and the workloads over them.

use std::path::PathBuf;

use weir::error::WeirError;
use weir::size::parse_size;

use crate::tpch::generate_tables;
use crate::workloads::w2_aggregate::{W2Job, Workload, run_w2};
use crate::workloads::w3_join::{BuildSide, W3Job, run_w3};

#[derive(Debug, clap::Args)]
pub(crate) struct W2Args {
    /// The directory `weir gen tpch` wrote.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Memory budget, like 256MiB: 4 MiB of it for the job's network buffers, the rest
    /// managed memory (scan buffers, aggregation or join, output sort).
    #[arg(long, value_parser = parse_size)]
    pub(crate) memory: u64,
    /// Task slots (threads) of the job's one worker.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Write the result as CSV with a header (W2: ordered by the group key).
    #[arg(long)]
    pub(crate) output: Option<PathBuf>,
    /// Directory for spill files (default: the system temp directory).
    #[arg(long)]
    pub(crate) spill_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct W3Args {
    #[command(flatten)]
    pub(crate) common: W2Args,
    /// The table the hash join builds on: orders (the smaller) or lineitem.
    #[arg(long, default_value = "orders", value_parser = parse_build_side)]
    pub(crate) build: BuildSide,
}

pub(crate) fn parse_build_side(text: &str) -> Result<BuildSide, String> {
    match text {
        "orders" => Ok(BuildSide::Orders),
        "lineitem" => Ok(BuildSide::Lineitem),
        _ => Err(format!("{text:?}: expected orders or lineitem")),
    }
}

pub(super) fn gen_tpch(scale: f64, out: &std::path::Path) -> Result<(), WeirError> {
    crate::tpch::check_scale(scale)?;
    let rows = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let manifest = {
        let _progress = crate::progress::Progress::start(
            format!("generating TPC-H SF {scale} in {}", out.display()),
            std::sync::Arc::clone(&rows),
            Some(crate::run_tpch::table_rows_estimate(scale)),
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

pub(super) fn w2(workload: Workload, args: W2Args) -> Result<(), WeirError> {
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
        return Err(WeirError::WrongAnswer {
            detail: format!("{}: the answer failed validation", workload.name()),
        });
    }
    Ok(())
}

pub(super) fn w3(args: W3Args) -> Result<(), WeirError> {
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
        return Err(WeirError::WrongAnswer {
            detail: "W3: the answer failed validation".to_owned(),
        });
    }
    Ok(())
}
