//! `weir run tpch`: TPC-H queries as dataflow jobs in one process or across worker
//! processes, with their answers, the reference check and a metrics summary.
//!
//! ```text
//!   weir run tpch --query 1 --query 3 --workers 2      (the launcher is worker 0)
//!     tables: DIR/{lineitem,orders,customer}, generated once (streaming, bounded memory)
//!     per query: workers 1..N start as `weir worker … query`, all build the same program,
//!                worker 0 collects the answer; each worker reports one line of metrics
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use weir_netstack::transport::NetworkConfig;

use weir::config::Config;
use weir::dataflow::{Dataflow, JobReport, OperatorReport, WorkerReport, runtime};
use weir::error::{Result, WeirError};
use weir::size::format_size;

use crate::args::ConfigArgs;
use crate::progress::Progress;
use crate::tpch::generate::check_space;
use crate::tpch::manifest::{DirState, Manifest, inspect};
use crate::tpch::queries::check_q1_totals;
use crate::tpch::queries::{Answer, Query};
use crate::tpch::{Table, check_scale, generate_tables};

/// Where the tables of scale `scale` are kept between runs by default.
pub fn default_data_dir(scale: f64) -> PathBuf {
    std::env::temp_dir().join(format!("weir-tpch-sf{scale}"))
}

/// The rows `weir gen tpch` writes at `scale`, about (for progress).
pub fn table_rows_estimate(scale: f64) -> u64 {
    ((6_001_215.0 + 1_500_000.0 + 150_000.0) * scale) as u64
}

/// Makes sure `dir` holds the TPC-H tables of scale `scale`: reuses them when its
/// manifest says so, generates them when `dir` is absent or empty, and refuses anything
/// else without touching it. Returns whether it generated.
///
/// # Errors
///
/// [`WeirError::Usage`] for an invalid scale, too little free space, or a `dir` that holds
/// weir's tables of another scale or version, or what weir did not write (each saying what to do); generation failing.
pub fn ensure_tables(dir: &Path, scale: f64, generator: Generator) -> Result<bool> {
    check_scale(scale)?;
    let refuse = |found: String, todo: &str| WeirError::Usage {
        message: format!(
            "{} holds {found}; nothing was touched: {todo}",
            dir.display()
        ),
    };
    let replace = format!(
        "use another --data, or replace them with weir gen tpch --scale {scale} --out {}",
        dir.display()
    );
    match inspect(dir)? {
        DirState::Absent | DirState::Empty => {}
        // Every scan checks the files against the manifest (sizes, blocks, totals).
        DirState::Tables(manifest) if manifest.scale_factor == scale => return Ok(false),
        DirState::Tables(manifest) => {
            let found = format!("weir's TPC-H tables of SF {}", manifest.scale_factor);
            let todo = format!("run with --scale {} or {replace}", manifest.scale_factor);
            return Err(refuse(found, &todo));
        }
        DirState::OtherVersion { version, .. } => {
            let found = format!("weir's TPC-H tables in table format version {version}");
            return Err(refuse(found, &replace));
        }
        DirState::Foreign { found } => {
            let todo = "use another --data (weir generates tables only into an absent or \
                        empty directory)";
            return Err(refuse(found, todo));
        }
    }
    check_space(dir, scale)?;
    let generated = match generator {
        Generator::InProcess => generate_tables(scale, dir, &AtomicU64::new(0)).map(|_| ()),
        Generator::ChildProcess => generate_in_child(scale, dir),
    };
    match generated {
        Ok(()) => Ok(true),
        // Another run generated the same tables first (its rename won): use them.
        Err(_) if matches!(inspect(dir)?, DirState::Tables(m) if m.scale_factor == scale) => {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// [`ensure_tables`] for weir's own default directory ([`default_data_dir`]): tables an
/// older weir left there (another format version) are replaced rather than refused, as
/// only weir writes there. Returns the directory and whether it generated.
///
/// # Errors
///
/// As [`ensure_tables`].
pub fn ensure_default_tables(scale: f64, generator: Generator) -> Result<(PathBuf, bool)> {
    let dir = default_data_dir(scale);
    check_scale(scale)?;
    let replaced = matches!(inspect(&dir)?, DirState::OtherVersion { .. }) && {
        eprintln!(
            "weir: replacing an older weir's tables in {}",
            dir.display()
        );
        match generator {
            Generator::InProcess => {
                generate_tables(scale, &dir, &AtomicU64::new(0))?;
            }
            Generator::ChildProcess => generate_in_child(scale, &dir)?,
        }
        true
    };
    let generated = ensure_tables(&dir, scale, generator)? || replaced;
    Ok((dir, generated))
}

/// Where [`ensure_tables`] runs the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// In this process.
    InProcess,
    /// In a `weir gen tpch` child process (this process must be the `weir` executable):
    /// the generator's text pool (about 300 MB, as in the TPC-H tools) then never counts
    /// in this process's resident set. Its stderr is this process's: its progress bar, and
    /// its reason when it fails.
    ChildProcess,
}

fn generate_in_child(scale: f64, out: &Path) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| WeirError::file("find", "weir", e))?;
    // The child dies with this process (it watches the stdin pipe held here, and on Linux
    // asks for a parent-death signal) and is stopped on a signal to this one; it removes
    // its own staging directory on the way out.
    let mut child = std::process::Command::new(&exe)
        .args(["gen", "tpch", "--scale", &scale.to_string(), "--out"])
        .arg(out)
        .env(
            weir::lifecycle::LAUNCHER_PID_ENV,
            std::process::id().to_string(),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| WeirError::file("start", &exe, e))?;
    let _registered = weir::lifecycle::stop_on_exit(child.id());
    // Held across the wait: `Child::wait` closes a stdin it still owns, which the child
    // would read as this process being gone.
    let _stdin = child.stdin.take();
    let status = child
        .wait()
        .map_err(|e| WeirError::file("wait for", &exe, e))?;
    if !status.success() {
        return Err(WeirError::Usage {
            message: format!(
                "weir gen tpch --scale {scale} --out {} failed ({status}; its reason is above)",
                out.display()
            ),
        });
    }
    Ok(())
}

/// Runs `query` on this worker (`network` `None`: in this process alone) and returns its
/// report and, on worker 0, the answer.
///
/// # Errors
///
/// As [`runtime::execute`].
pub fn run_query(
    query: Query,
    dir: &Path,
    config: &Config,
    network: Option<NetworkConfig>,
) -> Result<(WorkerReport, Answer)> {
    run_query_observed(query, dir, config, network, &Arc::default())
}

/// As [`run_query`], counting the rows this worker's sources read in `rows_read`.
///
/// # Errors
///
/// As [`runtime::execute`].
pub fn run_query_observed(
    query: Query,
    dir: &Path,
    config: &Config,
    network: Option<NetworkConfig>,
    rows_read: &Arc<AtomicU64>,
) -> Result<(WorkerReport, Answer)> {
    let flow = Dataflow::new();
    let answer = query.build(&flow, dir);
    let report = runtime::execute_observed(&flow, config, network, rows_read)?;
    Ok((report, answer()))
}

/// The metrics summary of one job, a few lines for people.
pub fn summary(report: &JobReport, input_rows: u64) -> String {
    let wall = report.wall_s();
    let mut out = format!(
        "  wall {wall:.2} s, {:.1} M input rows/s; shuffled {} in {} records ({} over TCP); spilled {}\n",
        input_rows as f64 / wall.max(1e-9) / 1e6,
        format_size_approx(report.total(|w| w.bytes_exchanged)),
        report.total(|w| w.records_exchanged),
        format_size_approx(report.total(|w| w.remote_bytes)),
        format_size_approx(report.total(|w| w.spilled_bytes)),
    );
    for w in &report.workers {
        out.push_str(&format!(
            "  worker {}: {} tasks, managed memory reserved at peak {} of {}, network {} granted of {}, \
             peak RSS {}, back-pressured {:.2} s, idle {:.2} s, buffer size {}{}\n",
            w.process,
            w.tasks,
            format_size_approx(w.memory_peak),
            format_size(w.memory_budget),
            format_size_approx(w.network_granted),
            format_size(w.network_budget),
            format_size_approx(w.peak_rss),
            w.back_pressured_us as f64 / 1e6,
            w.idle_us as f64 / 1e6,
            if w.buffer_size == 0 {
                "full segments (debloating off)".to_string()
            } else {
                format_size_approx(w.buffer_size)
            },
            if w.leak_free { "" } else { ", SEGMENTS LEAKED" },
        ));
    }
    out.push_str(&operator_lines(report));
    out
}

/// One line per kernel operator of the job, summed over the workers: records (and their
/// encoded bytes) in and out, spilled bytes and finish time.
pub fn operator_lines(report: &JobReport) -> String {
    let mut totals: Vec<OperatorReport> = Vec::new();
    for op in report.workers.iter().flat_map(|w| &w.operators) {
        match totals
            .iter_mut()
            .find(|t| t.stage == op.stage && t.index == op.index)
        {
            Some(total) => {
                total.tasks += op.tasks;
                total.records_in += op.records_in;
                total.records_out += op.records_out;
                total.bytes_in += op.bytes_in;
                total.bytes_out += op.bytes_out;
                total.spilled_bytes += op.spilled_bytes;
                total.finish_us += op.finish_us;
            }
            None => totals.push(op.clone()),
        }
    }
    totals
        .iter()
        .map(|op| {
            format!(
                "  {:<9} {:>9} in ({:>9}) {:>9} out ({:>9}), spilled {:>9}, finish {:.2} s ({} task{}) in {}\n",
                op.operator,
                op.records_in,
                format_size_approx(op.bytes_in),
                op.records_out,
                format_size_approx(op.bytes_out),
                format_size_approx(op.spilled_bytes),
                op.finish_us as f64 / 1e6,
                op.tasks,
                if op.tasks == 1 { "" } else { "s" },
                op.stage,
            )
        })
        .collect()
}

/// A size in the nearest unit with one decimal: `37.5 MiB`.
pub fn format_size_approx(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            return format!("{:.1} {name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes} B")
}

/// The input rows a query scans at `scale` (for rows/s): the rows of the tables it reads.
pub fn input_rows(query: Query, scale: f64) -> u64 {
    query
        .tables()
        .iter()
        .map(|table| match table {
            // NATION and REGION are the same at every scale.
            Table::Nation => 25,
            Table::Region => 5,
            Table::Lineitem => (6_001_215.0 * scale) as u64,
            Table::Orders => (1_500_000.0 * scale) as u64,
            Table::Customer => (150_000.0 * scale) as u64,
            Table::Part => (200_000.0 * scale) as u64,
            Table::Supplier => (10_000.0 * scale) as u64,
            Table::PartSupp => (800_000.0 * scale) as u64,
        })
        .sum()
}

/// The queries `--query` names: numbers, or `all`.
///
/// # Errors
///
/// [`WeirError::Usage`] naming a value that is neither.
pub fn parse_queries(values: &[String]) -> Result<Vec<Query>> {
    if values.is_empty() {
        return Ok(Query::all());
    }
    let mut queries = Vec::new();
    for value in values {
        if value == "all" {
            queries.extend(Query::all());
            continue;
        }
        let number: u32 = value.parse().map_err(|_| WeirError::Usage {
            message: format!("--query {value}: expected a query number or all"),
        })?;
        queries.push(Query::from_number(number).map_err(|message| WeirError::Usage { message })?);
    }
    queries.sort();
    queries.dedup();
    Ok(queries)
}

/// `weir run tpch`: which queries, at which scale, over which tables.
#[derive(Debug, Clone, clap::Args)]
pub struct TpchArgs {
    /// A TPC-H query to run, by number, or `all` (repeat the flag for several; default
    /// all).
    #[arg(long = "query")]
    pub queries: Vec<String>,
    /// The scale factor: 1 is 6,001,215 lineitem rows.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// The tables' directory: reused when its manifest names this scale, generated when
    /// absent or empty, else refused untouched (default: weir-tpch-sfSCALE in the system
    /// temp directory, kept for the next run).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The job's configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl Default for TpchArgs {
    fn default() -> TpchArgs {
        TpchArgs {
            queries: Vec::new(),
            scale: 1.0,
            data: None,
            config: ConfigArgs::default(),
        }
    }
}

/// `weir worker … query`: one worker's part of one query.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryWorkerArgs {
    /// The query's number.
    #[arg(long)]
    pub query: u32,
    /// The tables' directory.
    #[arg(long)]
    pub data: PathBuf,
    /// The job's configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs one worker's part of a query and prints its report line (worker processes 1 to
/// N − 1 of `weir run tpch`).
///
/// # Errors
///
/// As [`run_query`].
pub fn query_worker(
    process: u32,
    peers: Vec<std::net::SocketAddr>,
    args: &QueryWorkerArgs,
) -> Result<()> {
    let query = Query::from_number(args.query).map_err(|message| WeirError::Usage { message })?;
    let config = args.config.to_config()?;
    let (report, _) = run_query(
        query,
        &args.data,
        &config,
        Some(NetworkConfig::new(process, peers)),
    )?;
    crate::report::print_worker_line(&report)
}

/// How long a query may run before its worker processes are killed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3600);

/// `weir run tpch` (and `weir` with no arguments): generates or reuses the tables, runs
/// each query as a job across the workers, and prints its answer, whether it equals the
/// reference answer, and a metrics summary.
///
/// # Errors
///
/// Invalid flags; generation or a job failing; an answer that differs from the reference
/// at SF 1.
pub fn run_tpch(args: &TpchArgs) -> Result<()> {
    let config = args.config.to_config()?;
    let queries = parse_queries(&args.queries)?;
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| default_data_dir(args.scale));
    // Every query's budgets first: one that does not fit fails before any ran.
    for &query in &queries {
        let flow = Dataflow::new();
        let _answer = query.build(&flow, &dir);
        runtime::check_budgets(&flow, &config).map_err(|error| WeirError::Usage {
            message: format!("Q{}: {}", query.number(), crate::args::describe(&error)),
        })?;
    }
    prepare_tables(args, &dir)?;
    let mut differ = Vec::new();
    for query in queries {
        if !run_and_check(query, args, &config, &dir)? {
            differ.push(query.number());
        }
    }
    if !differ.is_empty() {
        return Err(WeirError::WrongAnswer {
            detail: format!("answers differ from the reference: {differ:?}"),
        });
    }
    Ok(())
}

/// Generates the tables into `dir` or reuses them, and says which.
fn prepare_tables(args: &TpchArgs, dir: &Path) -> Result<()> {
    let started = Instant::now();
    // The default directory is weir's own: tables an older weir left there (another
    // format version) are replaced rather than refused. A --data directory never is. The
    // child generator draws its own progress on the shared stderr.
    let generated = if args.data.is_none() {
        ensure_default_tables(args.scale, Generator::ChildProcess)?.1
    } else {
        ensure_tables(dir, args.scale, Generator::ChildProcess)?
    };
    println!(
        "weir: TPC-H SF {} tables in {} ({})",
        args.scale,
        dir.display(),
        if generated {
            format!("generated in {:.1} s", started.elapsed().as_secs_f64())
        } else {
            "reused".to_string()
        }
    );
    Ok(())
}

/// Runs one query across the workers, prints its answer, its checks and its metrics;
/// answers whether the answer passed every check.
fn run_and_check(query: Query, args: &TpchArgs, config: &Config, dir: &Path) -> Result<bool> {
    println!(
        "\nweir: TPC-H Q{} across {} worker process{} × {} slot{}, {} managed + {} network memory each",
        query.number(),
        config.workers,
        if config.workers == 1 { "" } else { "es" },
        config.slots,
        if config.slots == 1 { "" } else { "s" },
        format_size(config.memory),
        format_size(config.network_memory),
    );
    let (report, answer) = {
        // Each of worker 0's tasks of a scanning stage reads its tables in full.
        let rows = Arc::new(AtomicU64::new(0));
        let total = config.slots as u64 * input_rows(query, args.scale);
        let _progress = Progress::start(
            format!("Q{} (worker 0)", query.number()),
            Arc::clone(&rows),
            Some(total),
        );
        run_distributed(query, dir, config, &args.config, &rows)?
    };
    print!("{}", answer.to_table());
    let verdict = crate::tpch::queries::reference_verdict(query, &answer, args.scale);
    println!("Q{}: {} rows, {verdict}", query.number(), answer.rows.len());
    let mut right = args.scale != 1.0 || answer.check_sf1(query.number()).is_empty();
    if query == Query::Q1 {
        // Independent of the bytes read: what the generator counted as it wrote them.
        let problems = check_q1_totals(&answer, &Manifest::read(dir)?.q1);
        match problems.first() {
            None => println!("Q1: its totals equal the generator's (the manifest's q1 line)"),
            Some(first) => {
                println!("Q1: its totals DIFFER from the generator's: {first}");
                right = false;
            }
        }
    }
    print!("{}", summary(&report, input_rows(query, args.scale)));
    Ok(right)
}

/// Runs `query` in this process (one worker) or with this process as worker 0 beside
/// worker processes 1 to N − 1 on loopback.
fn run_distributed(
    query: Query,
    dir: &Path,
    config: &Config,
    args: &ConfigArgs,
    rows: &Arc<AtomicU64>,
) -> Result<(JobReport, Answer)> {
    let mut job_args = vec![
        "query".to_string(),
        format!("--query={}", query.number()),
        format!("--data={}", dir.display()),
    ];
    job_args.extend(args.to_args());
    crate::cluster::run_job(config, &job_args, QUERY_TIMEOUT, |network| {
        run_query_observed(query, dir, config, network, rows)
    })
}
