//! Process lifecycle: what a weir process stops and removes on every way out.
//!
//! ```text
//!   main ── install() ── blocks SIGINT/SIGTERM/SIGHUP in every thread ──┐
//!                                                                      ▼
//!                                      signal thread: sigwait ─▶ clean_up() ─▶ exit 128+n
//!   launcher ── spawn worker (stdin piped, WEIR_LAUNCHER_PID, WEIR_CLUSTER_DIR)
//!   worker   ── watch_launcher(): parent-death signal (Linux) + stdin EOF thread
//!                                 ─▶ clean_up() (and the launcher's cluster dir) ─▶ exit 1
//!
//!   clean_up(): SIGTERM to every registered child, remove every registered path
//! ```
//!
//! Code that creates something temporary registers it here ([`remove_on_exit`],
//! [`stop_on_exit`]) and keeps the guard while the thing exists; dropping the guard only
//! unregisters (the owner removes or reaps what it made on its normal path). The
//! registry is only consulted when the process is asked to end by a signal, or when a
//! worker finds its launcher gone, so a normal exit never races with it.
//!
//! A worker started by a launcher dies with it: on Linux by a parent-death signal, and
//! everywhere because the launcher holds the write end of the worker's stdin, which the
//! system closes however the launcher ends (SIGKILL included); the worker's watcher thread
//! reads end-of-file and ends the worker. The worker then also removes the launcher's
//! cluster directory, which a launcher killed by SIGKILL cannot remove itself.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Environment variable a launcher sets for its workers: its own process id.
pub const LAUNCHER_PID_ENV: &str = "WEIR_LAUNCHER_PID";

/// Environment variable a launcher sets for its workers: its cluster directory, which a
/// worker removes when it finds the launcher gone.
pub const CLUSTER_DIR_ENV: &str = "WEIR_CLUSTER_DIR";

/// The prefix of every cluster directory's name; a worker removes only a directory whose
/// name starts with it.
pub const CLUSTER_DIR_PREFIX: &str = "weir-cluster.";

/// What a process removes and stops when it is asked to end.
#[derive(Debug)]
struct Registry {
    paths: Vec<(u64, PathBuf)>,
    children: Vec<(u64, u32)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    paths: Vec::new(),
    children: Vec::new(),
});

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Set by the signal thread as it takes a termination signal, before it stops anything.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock cannot leave the two lists inconsistent (each
    // operation is one push or retain), so a poisoned lock is still usable.
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps a path registered for removal on a signal; dropping it unregisters (without
/// removing: the owner does that on its normal path).
#[derive(Debug)]
#[must_use = "the path is unregistered when the guard is dropped"]
pub struct PathGuard {
    id: u64,
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        registry().paths.retain(|(id, _)| *id != self.id);
    }
}

/// Keeps a child process registered to be stopped on a signal; dropping it unregisters.
#[derive(Debug)]
#[must_use = "the child is unregistered when the guard is dropped"]
pub struct ChildGuard {
    id: u64,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        registry().children.retain(|(id, _)| *id != self.id);
    }
}

/// Registers `path` (a file or a directory this process created) for removal if the
/// process is asked to end before the guard is dropped.
pub fn remove_on_exit(path: impl Into<PathBuf>) -> PathGuard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    registry().paths.push((id, path.into()));
    PathGuard { id }
}

/// Registers child process `pid` to receive SIGTERM if this process is asked to end
/// before the guard is dropped.
pub fn stop_on_exit(pid: u32) -> ChildGuard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    registry().children.push((id, pid));
    ChildGuard { id }
}

/// Stops every registered child and removes every registered path. Best effort: this runs
/// on the way out, where nothing can be reported but the fact.
pub fn clean_up() {
    let (paths, children) = {
        let registry = registry();
        (registry.paths.clone(), registry.children.clone())
    };
    #[cfg(unix)]
    for (_, pid) in children {
        // A stopped child (SIGSTOP, a debugger) acts on SIGTERM only once continued.
        let _ = weir_kernel::sys::send_signal(pid, weir_kernel::sys::SIGNAL_TERMINATE);
        let _ = weir_kernel::sys::send_signal(pid, weir_kernel::sys::SIGNAL_CONTINUE);
    }
    #[cfg(not(unix))]
    let _ = children;
    for (_, path) in paths.iter().rev() {
        remove_path(path);
    }
}

fn remove_path(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// The name of a termination signal, for the message a process leaves.
fn signal_name(signal: i32) -> String {
    #[cfg(unix)]
    {
        let [int, term, hup] = weir_kernel::sys::TERMINATION_SIGNALS;
        if signal == int {
            return "SIGINT".to_owned();
        }
        if signal == term {
            return "SIGTERM".to_owned();
        }
        if signal == hup {
            return "SIGHUP".to_owned();
        }
    }
    format!("signal {signal}")
}

/// Writes one line to stderr in a single write, so lines of several processes sharing the
/// stream never interleave within a line.
pub fn report_line(line: &str) {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&bytes);
}

/// Writes one line to stdout (a worker's report to its launcher).
///
/// # Errors
///
/// [`WeirError::File`](crate::error::WeirError::File) when stdout is closed (the launcher
/// is gone) or cannot be written: an error to return, not a panic.
pub fn print_line(line: &str) -> crate::error::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| crate::error::WeirError::file("write report to", "stdout", e))
}

/// Parks the calling thread for good once a termination signal has been taken; returns at
/// once otherwise. The signal thread then owns the way out (its clean-up, its message, exit
/// 128 + n): a main thread whose work failed *because* the signal stopped its children (a
/// worker's connection lost) calls this before reporting, so the process does not exit
/// first with that failure's code (1) and a misleading message.
pub fn defer_to_signal() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

/// Installs the termination-signal thread of a command-line process: SIGINT, SIGTERM and
/// SIGHUP are blocked in every thread (call this first in `main`, before any thread
/// starts) and taken by one thread, which stops registered children, removes registered
/// paths, says so on stderr and exits with 128 + the signal number (130 for Ctrl-C).
/// `program` prefixes the message.
///
/// Returns `false` where signals cannot be handled this way (not Unix, or the system
/// refused), in which case the default actions stay.
pub fn install(program: &'static str) -> bool {
    #[cfg(unix)]
    {
        if weir_kernel::sys::block_termination_signals().is_err() {
            return false;
        }
        let spawned = std::thread::Builder::new()
            .name("weir-signals".to_owned())
            .spawn(move || {
                let Ok(signal) = weir_kernel::sys::wait_termination_signal() else {
                    return;
                };
                INTERRUPTED.store(true, Ordering::SeqCst);
                if let Some(launcher) = launcher_gone_already() {
                    // The parent-death signal of a worker: say why, as the watcher would.
                    launcher_gone(program, launcher);
                }
                clean_up();
                report_line(&format!(
                    "{program}: interrupted by {}: stopped, temporary files removed",
                    signal_name(signal)
                ));
                std::process::exit(128 + signal);
            });
        spawned.is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = program;
        false
    }
}

/// When this process was started by a weir launcher ([`LAUNCHER_PID_ENV`] is set), makes
/// it end with the launcher: a parent-death signal on Linux (taken by the thread of
/// [`install`]) and a thread that waits for end-of-file on stdin, the pipe the launcher
/// holds. Either way the process cleans up, removes the launcher's cluster directory
/// ([`CLUSTER_DIR_ENV`]) and exits with 1. Returns whether a launcher was found.
///
/// Call it after [`install`], from the main thread.
pub fn watch_launcher(program: &'static str) -> bool {
    let Some(launcher) = std::env::var(LAUNCHER_PID_ENV)
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    if let Some(dir) = std::env::var_os(CLUSTER_DIR_ENV).map(PathBuf::from) {
        let ours = dir
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(CLUSTER_DIR_PREFIX));
        if ours {
            // Held for the life of the process: removed only on a signal or when the
            // launcher is gone (the launcher removes it on every path it survives).
            std::mem::forget(remove_on_exit(dir));
        }
    }
    #[cfg(unix)]
    {
        let _ = weir_kernel::sys::set_parent_death_signal(weir_kernel::sys::SIGNAL_TERMINATE);
        // The launcher may have died before the signal was asked for.
        if std::os::unix::process::parent_id() != launcher {
            launcher_gone(program, launcher);
        }
    }
    let _ = std::thread::Builder::new()
        .name("weir-launcher-watch".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buffer = [0u8; 64];
            // Anything the launcher writes is ignored; end-of-file or an error means the
            // write end closed: the launcher is gone.
            while matches!(stdin.read(&mut buffer), Ok(n) if n > 0) {}
            launcher_gone(program, launcher);
        });
    true
}

/// The launcher's process id when this process was started by one that is gone now.
fn launcher_gone_already() -> Option<u32> {
    let launcher = std::env::var(LAUNCHER_PID_ENV).ok()?.parse::<u32>().ok()?;
    #[cfg(unix)]
    if std::os::unix::process::parent_id() != launcher {
        return Some(launcher);
    }
    None
}

fn launcher_gone(program: &str, launcher: u32) -> ! {
    clean_up();
    report_line(&format!(
        "{program}: the launcher (process {launcher}) is gone: stopping"
    ));
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(path: &Path) -> bool {
        registry().paths.iter().any(|(_, p)| p == path)
    }

    // `clean_up` itself is exercised by the command-line tests (a signal to a process):
    // called here it would also act on what other tests of this binary registered.
    #[test]
    fn a_guard_registers_until_dropped_and_removal_takes_files_and_trees() {
        let dir = std::env::temp_dir().join(format!("weir-lifecycle.{}", std::process::id()));
        std::fs::create_dir_all(dir.join("inner")).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        let guard = remove_on_exit(&file);
        assert!(registered(&file));
        drop(guard);
        assert!(!registered(&file));
        remove_path(&file);
        assert!(!file.exists() && dir.join("inner").exists());
        remove_path(&dir);
        assert!(!dir.exists(), "a directory is removed with its content");
        remove_path(&dir); // gone already: nothing to do, no panic
    }

    #[test]
    fn signal_names() {
        #[cfg(unix)]
        assert_eq!(
            signal_name(weir_kernel::sys::TERMINATION_SIGNALS[0]),
            "SIGINT"
        );
        assert_eq!(signal_name(99), "signal 99");
    }
}
