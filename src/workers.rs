//! Worker processes: the peer list every worker reads (timely's model: one `host:port` per
//! line, the line number is the process index), and a local launcher that starts N
//! workers on loopback and collects what they report.
//!
//! ```text
//!   weir bench shuffle --workers 2
//!     ├── picks 2 free loopback ports, writes peers file
//!     ├── spawns: weir worker --process 0 --peers FILE shuffle …   ─┐ one TCP connection,
//!     ├── spawns: weir worker --process 1 --peers FILE shuffle …   ─┘ every channel on it
//!     └── reads each worker's last stdout line (its report), waits for every exit
//! ```

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::constants::WORKER_EXIT_GRACE;
use crate::error::{Result, WeirError};
use crate::lifecycle::{
    CLUSTER_DIR_ENV, CLUSTER_DIR_PREFIX, ChildGuard, LAUNCHER_PID_ENV, PathGuard, remove_on_exit,
    stop_on_exit,
};

/// Cluster directories this process created (one process may launch several jobs).
static CLUSTERS_CREATED: AtomicU64 = AtomicU64::new(0);

/// A waker that unparks the thread that called this: how a task thread sleeps on its
/// input gate (register the waker, poll once more, park). The netstack's
/// [`current_thread_waker`](weir_netstack::input::current_thread_waker), which its
/// [`GateReader`](weir_netstack::GateReader) uses.
pub fn current_thread_waker() -> std::task::Waker {
    weir_netstack::input::current_thread_waker()
}

/// Reads a peers file: one `host:port` per line (blank lines and `#` comments skipped); the
/// n-th address is process n's.
///
/// # Errors
///
/// The file cannot be read, a line is not an address, or there is none.
pub fn read_peers(path: &Path) -> Result<Vec<SocketAddr>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| WeirError::file("read peers file", path, e))?;
    let mut peers = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let address = line
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| WeirError::Usage {
                message: format!(
                    "{} line {}: {line:?} is not a host:port address",
                    path.display(),
                    number + 1
                ),
            })?;
        peers.push(address);
    }
    if peers.is_empty() {
        return Err(WeirError::Usage {
            message: format!("{}: no peer addresses", path.display()),
        });
    }
    Ok(peers)
}

/// `count` loopback addresses whose ports were free a moment ago (bound, read, released:
/// another process could take one in between, which the workers then report).
///
/// # Errors
///
/// No port can be bound.
pub fn free_loopback_addresses(count: usize) -> Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| WeirError::Worker {
            message: format!("cannot find a free loopback port: {e}"),
        })?;
    listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| WeirError::Worker {
            message: format!("cannot read a loopback address: {e}"),
        })
}

/// A directory with a peers file for a local launch, removed on drop (and on a
/// termination signal, and by the workers when this process is killed: see
/// [`crate::lifecycle`]).
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    peers: Vec<SocketAddr>,
    _registered: PathGuard,
}

impl LocalCluster {
    /// A peers file of `workers` free loopback addresses in a fresh temp directory.
    ///
    /// # Errors
    ///
    /// The directory or file cannot be written, or no port is free.
    pub fn new(workers: usize) -> Result<LocalCluster> {
        let peers = free_loopback_addresses(workers)?;
        let n = CLUSTERS_CREATED.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("{CLUSTER_DIR_PREFIX}{}.{n}", std::process::id()));
        let registered = remove_on_exit(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| WeirError::file("create directory", &dir, e))?;
        let file = dir.join("peers");
        let text: String = peers.iter().map(|p| format!("{p}\n")).collect();
        std::fs::write(&file, text).map_err(|e| WeirError::file("write peers file", &file, e))?;
        Ok(LocalCluster {
            dir,
            peers,
            _registered: registered,
        })
    }

    /// The cluster directory: the peers file, and whatever the launch leaves there
    /// (removed with the cluster).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The peers file.
    pub fn peers_file(&self) -> PathBuf {
        self.dir.join("peers")
    }

    /// The addresses, by process index.
    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    /// Starts `weir worker --process I --peers FILE <job_args>` for every process with the
    /// executable `exe`, waits for all (at most `timeout`; then the stragglers are killed),
    /// and returns each worker's last stdout line by process index.
    ///
    /// # Errors
    ///
    /// A worker that cannot start, exits non-zero, is killed at the timeout, or prints
    /// nothing; the message names the worker and its exit status (its stderr went to ours).
    ///
    /// # Panics
    ///
    /// Never: a spawned child's stdout is always piped.
    pub fn run(&self, exe: &Path, job_args: &[String], timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let children = self.start(exe, &Launch::Worker(job_args), 0)?;
        wait(children, deadline, timeout)
    }

    /// Runs `local` in this process as worker 0 while worker processes 1 to N − 1 run
    /// `weir worker --process I --peers FILE <job_args>` (as [`run`](Self::run)); returns
    /// `local`'s result and the other workers' last stdout lines. When `local` fails, the
    /// other workers are killed and its error is returned.
    ///
    /// # Errors
    ///
    /// `local`'s error; a worker that cannot start, exits non-zero, is killed at the
    /// timeout, or prints nothing.
    pub fn run_beside<T>(
        &self,
        exe: &Path,
        job_args: &[String],
        timeout: Duration,
        local: impl FnOnce() -> Result<T>,
    ) -> Result<(T, Vec<String>)> {
        self.beside(exe, &Launch::Worker(job_args), timeout, local)
    }

    /// [`run_beside`](Self::run_beside) for a program that is its own worker
    /// ([`crate::spmd`]): processes 1 to N − 1 run `exe args` with
    /// [`PROCESS_ENV`](crate::spmd::PROCESS_ENV) and
    /// [`PEERS_ENV`](crate::spmd::PEERS_ENV) naming their index and the peers file, and
    /// [`RESTORE_ENV`](crate::spmd::RESTORE_ENV) the checkpoint `restore` when given.
    ///
    /// # Errors
    ///
    /// As [`run_beside`](Self::run_beside).
    pub fn run_beside_spmd<T>(
        &self,
        exe: &Path,
        args: &[String],
        restore: Option<u64>,
        timeout: Duration,
        local: impl FnOnce() -> Result<T>,
    ) -> Result<(T, Vec<String>)> {
        self.beside(exe, &Launch::Spmd(args, restore), timeout, local)
    }

    fn beside<T>(
        &self,
        exe: &Path,
        launch: &Launch<'_>,
        timeout: Duration,
        local: impl FnOnce() -> Result<T>,
    ) -> Result<(T, Vec<String>)> {
        let deadline = Instant::now() + timeout;
        let mut children = self.start(exe, launch, 1)?;
        match local() {
            Ok(value) => Ok((value, wait(children, deadline, timeout)?)),
            Err(error) => {
                for worker in &mut children {
                    worker.kill();
                }
                Err(error)
            }
        }
    }

    /// Starts worker processes `first` to N − 1. Each one's stdin is a pipe this process
    /// holds (the worker ends when it closes) and its environment names this process and
    /// the cluster directory ([`crate::lifecycle::watch_launcher`]).
    fn start(&self, exe: &Path, launch: &Launch<'_>, first: usize) -> Result<Vec<Worker>> {
        let mut children: Vec<Worker> = Vec::new();
        for process in first..self.peers.len() {
            let mut command = Command::new(exe);
            match launch {
                Launch::Worker(job_args) => command
                    .arg("worker")
                    .arg("--process")
                    .arg(process.to_string())
                    .arg("--peers")
                    .arg(self.peers_file())
                    .args(*job_args),
                Launch::Spmd(args, restore) => {
                    command
                        .args(*args)
                        .env(crate::spmd::PROCESS_ENV, process.to_string())
                        .env(crate::spmd::PEERS_ENV, self.peers_file());
                    match restore {
                        Some(id) => command.env(crate::spmd::RESTORE_ENV, id.to_string()),
                        None => command.env_remove(crate::spmd::RESTORE_ENV),
                    }
                }
            };
            let child = command
                .env(LAUNCHER_PID_ENV, std::process::id().to_string())
                .env(CLUSTER_DIR_ENV, &self.dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| WeirError::file("start worker", exe, e));
            match child {
                Ok(child) => children.push(Worker {
                    process,
                    registered: stop_on_exit(child.id()),
                    child,
                }),
                Err(error) => {
                    for mut worker in children {
                        worker.kill();
                    }
                    return Err(error);
                }
            }
        }
        Ok(children)
    }
}

/// How worker processes are started.
enum Launch<'a> {
    /// `exe worker --process I --peers FILE <job args>`: the `weir` command line.
    Worker(&'a [String]),
    /// `exe <args>` with the SPMD environment: a program that is its own worker (and
    /// the checkpoint a restarted launch restores).
    Spmd(&'a [String], Option<u64>),
}

/// A started worker process.
#[derive(Debug)]
struct Worker {
    process: usize,
    child: Child,
    /// Stops the worker if this process is asked to end.
    #[allow(dead_code, reason = "held for its Drop: unregisters the child")]
    registered: ChildGuard,
}

impl Worker {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `children` until `deadline` (then kills the stragglers) and returns each
/// one's last stdout line, in order.
fn wait(mut children: Vec<Worker>, deadline: Instant, timeout: Duration) -> Result<Vec<String>> {
    {
        let readers: Vec<_> = children
            .iter_mut()
            .map(|Worker { child, .. }| {
                let stdout = child.stdout.take().expect("piped");
                std::thread::spawn(move || {
                    BufReader::new(stdout)
                        .lines()
                        .map_while(std::result::Result::ok)
                        .last()
                })
            })
            .collect();
        let mut failures = Vec::new();
        let exits = wait_all(&mut children, deadline);
        for (Worker { process, .. }, exit) in children.iter().zip(exits) {
            match exit {
                Exit::Status(status) if status.success() => {}
                Exit::Status(status) => {
                    failures.push(format!("worker {process} exited with {status}"))
                }
                Exit::TimedOut => {
                    failures.push(format!("worker {process} killed after {timeout:?}"))
                }
                Exit::KilledAfter(failed) => failures.push(format!(
                    "worker {process} killed {WORKER_EXIT_GRACE:?} after worker {failed} failed"
                )),
            }
        }
        let lines: Vec<Option<String>> = readers
            .into_iter()
            .map(|reader| reader.join().ok().flatten())
            .collect();
        if !failures.is_empty() {
            return Err(WeirError::Worker {
                message: failures.join("; "),
            });
        }
        lines
            .into_iter()
            .zip(&children)
            .map(|(line, Worker { process, .. })| {
                line.ok_or_else(|| WeirError::Worker {
                    message: format!("worker {process} printed no report"),
                })
            })
            .collect()
    }
}

/// How a worker process ended.
enum Exit {
    Status(std::process::ExitStatus),
    // Still running (or not to be waited for) at the deadline: killed.
    TimedOut,
    // Still running when the grace after this worker's failure ended: killed.
    KilledAfter(usize),
}

/// Waits for every child until `deadline`, looking at all of them in turn: once one
/// fails, the others get [`WORKER_EXIT_GRACE`] to exit on their own (they learn of the
/// failure from their closed connections) and are then killed, since a stopped or hung
/// worker never exits.
fn wait_all(children: &mut [Worker], mut deadline: Instant) -> Vec<Exit> {
    let mut exits: Vec<Option<Exit>> = children.iter().map(|_| None).collect();
    let mut failed: Option<usize> = None;
    while exits.iter().any(Option::is_none) {
        let now = Instant::now();
        for (Worker { process, child, .. }, exit) in children.iter_mut().zip(&mut exits) {
            if exit.is_some() {
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() && failed.is_none() {
                        failed = Some(*process);
                        deadline = deadline.min(now + WORKER_EXIT_GRACE);
                    }
                    *exit = Some(Exit::Status(status));
                }
                Ok(None) if now < deadline => {}
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    *exit = Some(failed.map_or(Exit::TimedOut, Exit::KilledAfter));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    exits.into_iter().flatten().collect()
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_file_lists_one_address_per_line() {
        let dir = std::env::temp_dir().join(format!("weir-peers-test.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("peers");
        std::fs::write(&file, "# two workers\n127.0.0.1:4000\n\nlocalhost:4001\n").unwrap();
        let peers = read_peers(&file).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0], "127.0.0.1:4000".parse().unwrap());
        std::fs::write(&file, "127.0.0.1:4000\nnot an address\n").unwrap();
        let error = read_peers(&file).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        std::fs::write(&file, "# nothing\n").unwrap();
        assert!(
            read_peers(&file)
                .unwrap_err()
                .to_string()
                .contains("no peer addresses")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
