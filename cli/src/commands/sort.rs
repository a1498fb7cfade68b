//! `weir sort`, `weir demo`: the W1 external sort from the command line.

use std::path::PathBuf;

use weir::error::WeirError;
use weir::size::parse_size;

use crate::workloads::w1_sort::{SortJob, generate, run_sort};

#[derive(Debug, clap::Args)]
pub(crate) struct SortArgs {
    /// The W1 input file.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// The sorted output file.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// Memory budget, every buffer included, like 256MiB.
    #[arg(long, value_parser = parse_size)]
    pub(crate) memory: u64,
    /// Threads.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Directory for spill files (default: the output's directory).
    #[arg(long)]
    pub(crate) spill_dir: Option<PathBuf>,
    /// Check the output's key order and checksum against the input's.
    #[arg(long)]
    pub(crate) verify: bool,
    /// LZ4-compress spilled blocks.
    #[arg(long)]
    pub(crate) compress: bool,
}

pub(super) fn sort(args: SortArgs) -> Result<(), WeirError> {
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
        return Err(WeirError::WrongAnswer {
            detail: "verification failed: the output is not the sorted input".to_owned(),
        });
    }
    Ok(())
}

/// The default job: a verified external sort of generated records under a small budget.
pub(super) fn demo(count: u64, memory: u64, dir: Option<PathBuf>) -> Result<(), WeirError> {
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let work = base.join(format!("weir-demo.{}", std::process::id()));
    // A new directory only (an existing one of that name is not weir's to remove), then
    // removed on every way out: below on success and failure, and on a signal.
    std::fs::create_dir(&work).map_err(|e| WeirError::file("create directory", &work, e))?;
    let _registered = weir::lifecycle::remove_on_exit(&work);
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
        return Err(WeirError::WrongAnswer {
            detail: "demo sort failed verification".to_owned(),
        });
    }
    Ok(())
}
