//! Workers die with their launcher and nothing is left behind: after SIGKILL, SIGTERM or
//! SIGINT to `weir bench shuffle --workers 3` (the launcher is worker 0, beside two worker
//! processes), no worker process and no cluster directory remain within 2 s; SIGINT ends
//! the launcher with exit code 130 and says so.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{alive, children, eventually, signal, weir_command};

fn cluster_dir(launcher: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("weir-cluster.{launcher}.0"))
}

/// Starts a long shuffle across the launcher and two worker processes; returns the
/// launcher and its worker processes once both run.
fn start_shuffle() -> (std::process::Child, Vec<u32>) {
    let mut launcher = weir_command()
        .args([
            "bench",
            "shuffle",
            "--workers",
            "3",
            "--records",
            "100000000000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = launcher.id();
    let mut workers = Vec::new();
    let started = eventually(Duration::from_secs(20), || {
        workers = children(pid);
        workers.len() == 2
    });
    if !started {
        // Leave nothing running behind a failed test.
        for &w in &workers {
            signal(w, "KILL");
        }
        signal(pid, "KILL");
        let _ = launcher.wait();
        panic!("the two workers did not start: {workers:?}");
    }
    assert!(cluster_dir(pid).is_dir());
    (launcher, workers)
}

fn launcher_killed_by(name: &str, code: Option<i32>) {
    let (mut launcher, workers) = start_shuffle();
    let pid = launcher.id();
    signal(pid, name);
    let status = launcher.wait().unwrap();
    let gone = eventually(Duration::from_secs(2), || {
        workers.iter().all(|&w| !alive(w)) && !cluster_dir(pid).exists()
    });
    for &w in &workers {
        if alive(w) {
            signal(w, "KILL");
        }
    }
    assert!(
        gone,
        "after SIGKILL of {pid}: workers or {:?} left",
        cluster_dir(pid)
    );
    assert_eq!(status.code(), code, "{name}");
}

#[test]
fn sigkill_of_the_launcher_leaves_no_worker_and_no_cluster_directory() {
    launcher_killed_by("KILL", None);
}

#[test]
fn sigterm_of_the_launcher_leaves_no_worker_and_no_cluster_directory() {
    launcher_killed_by("TERM", Some(143));
}

#[test]
fn sigint_of_the_launcher_exits_130_and_says_so() {
    let (mut launcher, workers) = start_shuffle();
    signal(launcher.id(), "INT");
    let mut stderr = String::new();
    std::io::Read::read_to_string(launcher.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let status = launcher.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(eventually(Duration::from_secs(2), || workers
        .iter()
        .all(|&w| !alive(w))));
}

#[test]
fn killing_run_tpch_while_it_generates_leaves_no_generator_and_no_staging_directory() {
    for name in ["KILL", "INT"] {
        let dir = support::Dir::new(&format!("gen-killed-{name}"));
        let data = dir.file("tables");
        let mut launcher = weir_command()
            .args([
                "run",
                "tpch",
                "--scale",
                "1",
                "--query",
                "6",
                "--workers",
                "1",
            ])
            .args(["--data", support::path(&data)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = launcher.id();
        let mut generator = Vec::new();
        let started = eventually(Duration::from_secs(20), || {
            generator = children(pid);
            generator.len() == 1 && dir.names().iter().any(|n| n.contains("staging"))
        });
        assert!(
            started,
            "no generator or staging directory: {:?}",
            dir.names()
        );
        signal(pid, name);
        let _ = launcher.wait();
        let gone = eventually(Duration::from_secs(2), || {
            !alive(generator[0]) && dir.names().is_empty()
        });
        if alive(generator[0]) {
            signal(generator[0], "KILL");
        }
        assert!(gone, "after SIG{name}: {:?} left", dir.names());
    }
}
