//! A dataflow job across local worker processes: this process is worker 0, the others
//! are `weir worker --process I --peers FILE <job>` children on loopback, each running the
//! same program and printing its [`WorkerReport`] as its last line.

use std::path::PathBuf;
use std::time::Duration;

use weir::config::Config;
use weir::dataflow::{JobReport, WorkerReport};
use weir::error::{Result, WeirError};
use weir::netstack::transport::NetworkConfig;
use weir::workers::LocalCluster;

use crate::report::parse_worker_line;

/// Runs a job on `config.workers` workers: `local` is worker 0's part (given its network
/// configuration, `None` when there is one worker), run in this process beside worker
/// processes 1 to N − 1 started with `job_args`. Returns every worker's report, by process
/// index, and what `local` returned beside its report (worker 0 holds the collected
/// results).
///
/// # Errors
///
/// `local`'s error (the other workers are then killed); a worker that cannot start, fails,
/// runs past `timeout` or prints no report.
pub fn run_job<T>(
    config: &Config,
    job_args: &[String],
    timeout: Duration,
    local: impl FnOnce(Option<NetworkConfig>) -> Result<(WorkerReport, T)>,
) -> Result<(JobReport, T)> {
    if config.workers == 1 {
        let (report, value) = local(None)?;
        return Ok((
            JobReport {
                workers: vec![report],
            },
            value,
        ));
    }
    let cluster = LocalCluster::new(config.workers)?;
    let exe = current_exe()?;
    let peers = cluster.peers().to_vec();
    let network = NetworkConfig::new(0, peers);
    let ((mine, value), lines) =
        cluster.run_beside(&exe, job_args, timeout, || local(Some(network)))?;
    let mut workers = vec![mine];
    for line in lines {
        workers.push(parse_worker_line(&line)?);
    }
    let report = JobReport { workers };
    Ok((report, value))
}

fn current_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| WeirError::file("find", "weir", e))
}
