//! A stopped worker does not hang the job: `weir bench shuffle --workers 2` (the raw
//! network stack) and `weir bench soak` (dataflow jobs on the runtime, the launcher being
//! worker 0) with worker 1 stopped (SIGSTOP) mid-run exit non-zero within the peer timeout
//! and the launcher's grace, naming worker 1; nothing they started is left behind.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process's start time (field 22 of its stat, after the name in parentheses), which
/// tells it from a later process given the same pid.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

/// The children of `parent` whose command line is `weir worker --process I ...`, as (pid,
/// I, start time).
fn workers_of(parent: u32) -> Vec<(u32, u32, String)> {
    let mut workers = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return workers;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // The parent pid is the 4th field of stat, after the command name in parentheses.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, after_name)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = after_name.split_whitespace().nth(1);
        if ppid != Some(parent.to_string().as_str()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let process = args
            .windows(2)
            .find(|w| w[0] == b"--process")
            .and_then(|w| std::str::from_utf8(w[1]).ok()?.parse().ok());
        if let Some(process) = process
            && args.contains(&&b"worker"[..])
            && let Some(started) = start_time(pid)
        {
            workers.push((pid, process, started));
        }
    }
    workers
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Kills the workers the launcher started (waking a stopped one) and kills and reaps the
/// launcher, whatever the test's outcome.
struct Cleanup {
    launcher: Child,
    workers: Vec<(u32, u32, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (pid, _, started) in &self.workers {
            // The same process (not a later one with a recycled pid), whoever its parent
            // is now; SIGKILL ends it stopped or not, CONT for good measure.
            if start_time(*pid).as_ref() == Some(started) {
                signal(*pid, "KILL");
                signal(*pid, "CONT");
            }
        }
        let _ = self.launcher.kill();
        let _ = self.launcher.wait();
    }
}

#[test]
fn a_stopped_worker_fails_the_shuffle_naming_it_within_the_peer_timeout() {
    stopping_worker_1_fails(&[
        "bench",
        "shuffle",
        "--workers",
        "2",
        "--records",
        "2000000000",
        "--peer-timeout",
        "2s",
        "--seed",
        "7",
    ]);
}

#[test]
fn a_stopped_worker_fails_a_dataflow_job_naming_it_within_the_peer_timeout() {
    stopping_worker_1_fails(&[
        "bench",
        "soak",
        "--minutes",
        "5",
        "--records",
        "1000000",
        "--peer-timeout",
        "2s",
    ]);
}

/// Runs `weir ARGS`, stops its worker process 1 once the job runs, and checks that the
/// launcher fails in time naming it, and that worker 1 is gone afterwards.
fn stopping_worker_1_fails(args: &[&str]) {
    const PEER_TIMEOUT: Duration = Duration::from_secs(2);
    // The launcher's grace for the other workers (3 s) and a loaded machine's slack.
    const LIMIT: Duration = Duration::from_secs(2 + 3 + 15);
    let launcher = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut cleanup = Cleanup {
        launcher,
        workers: Vec::new(),
    };
    let found_by = Instant::now() + Duration::from_secs(30);
    let worker = loop {
        cleanup.workers = workers_of(cleanup.launcher.id());
        if let Some((pid, _, _)) = cleanup.workers.iter().find(|w| w.1 == 1) {
            break *pid;
        }
        assert!(Instant::now() < found_by, "worker 1 never started");
        assert!(
            cleanup.launcher.try_wait().unwrap().is_none(),
            "the launcher exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let the exchange get going, so worker 1 is stopped with channels open both ways
    // (a round of the soak's first connects, then runs for seconds).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        cleanup.launcher.try_wait().unwrap().is_none(),
        "the shuffle must still run when worker 1 is stopped"
    );
    signal(worker, "STOP");
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = cleanup.launcher.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < LIMIT,
            "the launcher hangs {LIMIT:?} after worker 1 was stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let waited = stopped.elapsed();
    let mut stderr = String::new();
    cleanup
        .launcher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        waited >= PEER_TIMEOUT / 2,
        "failed before any timeout: {waited:?}: {stderr}"
    );
    assert!(stderr.contains("worker 1 at 127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("stopped, hung or partitioned"), "{stderr}");
    eprintln!("detected and exited {waited:?} after SIGSTOP");
    // The launcher killed worker 1 (the cleanup makes sure even if it had not).
    drop(cleanup);
    let gone = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{worker}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(Instant::now() < gone, "worker 1 is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}
