//! Your own program on many workers: the same binary is the launcher and every worker
//! (single program, multiple data, as MPI and timely programs run).
//!
//! ```text
//!   $ my-job --input x                 the launcher: config.workers = 3
//!     spmd::run(&config, build)
//!       ├── a cluster directory: peers file with 3 loopback ports
//!       ├── starts  my-job --input x   with WEIR_SPMD_PROCESS=1, WEIR_SPMD_PEERS=FILE
//!       ├── starts  my-job --input x   with WEIR_SPMD_PROCESS=2, …
//!       ├── worker 0 here: build(&flow), its part of the job
//!       └── each worker's report and collected records from DIR/results-I
//!            ──▶ Some(Outcome { report: every worker's, records: every worker's })
//!
//!   my-job --input x (WEIR_SPMD_PROCESS=I): spmd::run builds the same program, runs
//!   part I, writes (report, records) to DIR/results-I (temporary file, renamed) and
//!   returns None: main returns, the process exits 0.
//! ```
//!
//! With checkpoints (`Config::checkpoint`), a launch that fails (a worker process lost
//! or killed, a task failed) starts again on fresh ports, every worker restoring the
//! latest complete checkpoint ([`RESTORE_ENV`]), up to the configured restarts; so
//! `build` runs once per launch.
//!
//! Every process must build the same program: `build` may read the command line and
//! files, but not choose operators at random. The worker processes end with the launcher
//! (see [`crate::lifecycle`]); a worker that fails makes `run` fail in the launcher,
//! naming it. The records a worker collected travel back serialized with serde-fmt, so
//! they should be what a job's result is (aggregates, a top-k), not a table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::dataflow::{Collected, Data, Dataflow, JobReport, WorkerReport, runtime};
use crate::error::{Result, WeirError};
use crate::lifecycle::CLUSTER_DIR_ENV;
use crate::netstack::transport::NetworkConfig;
use crate::workers::{LocalCluster, read_peers};

/// The environment variable that makes a process worker `I` of an SPMD launch.
pub const PROCESS_ENV: &str = "WEIR_SPMD_PROCESS";

/// The environment variable naming the peers file of an SPMD launch.
pub const PEERS_ENV: &str = "WEIR_SPMD_PEERS";

/// The environment variable naming the checkpoint a restarted SPMD launch restores.
pub const RESTORE_ENV: &str = "WEIR_SPMD_RESTORE";

/// How long a launch may run before its worker processes are killed.
const TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What the launcher gets back: every worker's report and collected records.
#[derive(Debug)]
pub struct Outcome<T> {
    /// Every worker's report, by process index.
    pub report: JobReport,
    /// The records every worker's tasks collected: worker 0's, then worker 1's, …
    pub records: Vec<T>,
}

/// Runs the program `build` adds to a [`Dataflow`] on `config.workers` processes of this
/// executable, this process being worker 0 (see the module documentation). Returns
/// `Some` in the process the user started, with every worker's report and collected
/// records, and `None` in a worker process once its part is done: its `main` should then
/// return.
///
/// Call it early in `main`, before output a worker should not repeat: worker processes
/// run `main` from its start with the same arguments.
///
/// # Errors
///
/// The job's error in this process; a worker process that could not start, failed (its
/// error went to stderr) or returned no result file.
pub fn run<T: Data>(
    config: &Config,
    build: impl Fn(&Dataflow) -> Collected<T>,
) -> Result<Option<Outcome<T>>> {
    if let Some(process) = worker_process()? {
        run_worker(process, config, build)?;
        return Ok(None);
    }
    if config.workers == 1 {
        return launch(config, &build).map(Some);
    }
    // With checkpoints, a failed launch (a worker lost, a task failed) starts again, every
    // worker restoring the latest complete checkpoint.
    let mut config = config.clone();
    let mut restarts = 0;
    let mut failed_at = None;
    loop {
        let error = match launch(&config, &build) {
            Ok(mut outcome) => {
                if let Some(first) = outcome.report.workers.first_mut() {
                    first.restarts = restarts;
                    // From the last failure to the restarted job's tasks running.
                    first.recovery_us = failed_at.map_or(0, |at: std::time::Instant| {
                        let since = at.elapsed().as_micros() as u64;
                        since.saturating_sub(first.wall_us)
                    });
                }
                return Ok(Some(outcome));
            }
            Err(error) => error,
        };
        failed_at = Some(std::time::Instant::now());
        let Some(checkpoint) = config.checkpoint.as_mut() else {
            return Err(error);
        };
        let fatal = matches!(error, WeirError::Usage { .. } | WeirError::Config { .. });
        if fatal || restarts >= checkpoint.restarts {
            return Err(error);
        }
        restarts += 1;
        std::thread::sleep(checkpoint.restart_delay);
        let latest = crate::checkpoint::restart_point(&checkpoint.dir)?;
        checkpoint.restore = latest;
        crate::lifecycle::print_line(&format!(
            "weir: the job failed ({error}); restart {restarts} of {} from {}",
            checkpoint.restarts,
            latest.map_or_else(|| "the start".to_owned(), |id| format!("checkpoint {id}"))
        ))?;
    }
}

/// One launch of the job on every worker: this process worker 0.
fn launch<T: Data>(
    config: &Config,
    build: &impl Fn(&Dataflow) -> Collected<T>,
) -> Result<Outcome<T>> {
    let flow = Dataflow::new();
    let collected = build(&flow);
    if config.workers == 1 {
        let report = runtime::execute(&flow, config, None)?;
        return Ok(Outcome {
            report: JobReport {
                workers: vec![report],
            },
            records: collected.take(),
        });
    }
    let cluster = LocalCluster::new(config.workers)?;
    let exe = std::env::current_exe().map_err(|e| WeirError::file("find", "this program", e))?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let network = NetworkConfig::new(0, cluster.peers().to_vec());
    let restore = config.checkpoint.as_ref().and_then(|c| c.restore);
    let (report, _lines) = cluster.run_beside_spmd(&exe, &args, restore, TIMEOUT, || {
        runtime::execute(&flow, config, Some(network))
    })?;
    let mut workers = vec![report];
    let mut records = collected.take();
    for process in 1..config.workers {
        let (report, theirs): (WorkerReport, Vec<T>) =
            read_results(&results_path(cluster.dir(), process))?;
        workers.push(report);
        records.extend(theirs);
    }
    let report = JobReport { workers };
    Ok(Outcome { report, records })
}

/// Whether this process was started as an SPMD worker, and which.
fn worker_process() -> Result<Option<usize>> {
    let Ok(value) = std::env::var(PROCESS_ENV) else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| WeirError::Usage {
        message: format!("{PROCESS_ENV}={value}: expected a worker process index"),
    })
}

/// Worker `process`'s part: the program built and run, its report and records written.
fn run_worker<T: Data>(
    process: usize,
    config: &Config,
    build: impl Fn(&Dataflow) -> Collected<T>,
) -> Result<()> {
    crate::lifecycle::watch_launcher("weir worker");
    let peers_file = std::env::var_os(PEERS_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| WeirError::Usage {
            message: format!("{PROCESS_ENV} is set but {PEERS_ENV} is not"),
        })?;
    let dir = std::env::var_os(CLUSTER_DIR_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| WeirError::Usage {
            message: format!("{PROCESS_ENV} is set but {CLUSTER_DIR_ENV} is not"),
        })?;
    let peers = read_peers(&peers_file)?;
    let index = u32::try_from(process)
        .ok()
        .filter(|&i| (i as usize) < peers.len())
        .ok_or_else(|| WeirError::Usage {
            message: format!(
                "{PROCESS_ENV}={process}: the peers file lists {} processes",
                peers.len()
            ),
        })?;
    let mut config = config.clone();
    if let (Some(checkpoint), Ok(id)) = (config.checkpoint.as_mut(), std::env::var(RESTORE_ENV)) {
        checkpoint.restore = Some(id.parse().map_err(|_| WeirError::Usage {
            message: format!("{RESTORE_ENV}={id}: expected a checkpoint id"),
        })?);
    }
    let flow = Dataflow::new();
    let collected = build(&flow);
    let report = runtime::execute(&flow, &config, Some(NetworkConfig::new(index, peers)))?;
    let bytes =
        crate::serde_fmt::to_vec(&(report, collected.take())).map_err(|e| WeirError::Data {
            message: format!("worker {process}'s results cannot be encoded: {e}"),
        })?;
    let target = results_path(&dir, process);
    let temporary = target.with_extension("partial");
    std::fs::write(&temporary, bytes)
        .map_err(|e| WeirError::file("write results", &temporary, e))?;
    std::fs::rename(&temporary, &target)
        .map_err(|e| WeirError::file("write results", &target, e))?;
    crate::lifecycle::print_line(&format!("weir worker {process}: done"))
}

/// Where worker `process` leaves its results.
fn results_path(dir: &Path, process: usize) -> PathBuf {
    dir.join(format!("results-{process}"))
}

/// A worker's report and records from its results file.
fn read_results<T: Data>(path: &Path) -> Result<(WorkerReport, Vec<T>)> {
    let bytes = std::fs::read(path).map_err(|e| WeirError::file("read results", path, e))?;
    crate::serde_fmt::from_slice(&bytes).map_err(|e| WeirError::Data {
        message: format!("{}: not a worker's results: {e}", path.display()),
    })
}
