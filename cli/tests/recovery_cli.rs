//! Exactly-once recovery end to end: Nexmark q5 (sliding windows) and q8 (a windowed
//! join) on two worker processes with checkpoints; worker 1 killed with SIGKILL at
//! seeded points; the job restarts from its latest checkpoint and the rows it committed
//! equal a failure-free run's, line for line (none lost, none twice).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Dir, children, eventually, path, signal, weir_command};

/// The events of each run: 200k at 100k events/s, about 2 s (20 s of event time).
const EVENTS: &str = "200000";
const RATE: &str = "100000";

/// Kill points after the launch: seeded, between 0.6 and 1.5 s (several checkpoints
/// in, well before the end).
fn kill_points(seed: u64) -> Vec<Duration> {
    let mut state = seed;
    (0..3)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            Duration::from_millis(600 + (state >> 33) % 900)
        })
        .collect()
}

/// Runs `weir run nexmark --query QUERY` with checkpoints into `dir`, killing worker 1
/// at `kill` after the launch; returns the committed lines (sorted) and the JSON line.
fn run(query: &str, dir: &Dir, name: &str, kill: Option<Duration>) -> (Vec<String>, String) {
    let (out, checkpoints) = (
        dir.file(&format!("{name}-out")),
        dir.file(&format!("{name}-chk")),
    );
    let started = Instant::now();
    let child = weir_command()
        .args([
            "run",
            "nexmark",
            "--query",
            query,
            "--events",
            EVENTS,
            "--rate",
            RATE,
            "--workers",
            "2",
            "--memory",
            "16MiB",
            "--checkpoint-interval-ms",
            "200",
            "--checkpoint-dir",
            path(&checkpoints),
            "--output",
            path(&out),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(after) = kill {
        let launcher = child.id();
        let mut worker = None;
        assert!(
            eventually(Duration::from_secs(10), || {
                worker = children(launcher).first().copied();
                worker.is_some()
            }),
            "worker 1 never started"
        );
        std::thread::sleep(after.saturating_sub(started.elapsed()));
        signal(worker.unwrap(), "KILL");
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "q{query} {name}: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        json.contains("\"valid\":true"),
        "q{query} {name}: {json}\n{stderr}"
    );
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("part-") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            lines.extend(text.lines().map(str::to_owned));
        }
    }
    let pending = std::fs::read_dir(out.join(".pending")).unwrap().count();
    assert_eq!(pending, 0, "q{query} {name}: pending files left");
    lines.sort_unstable();
    (lines, json)
}

#[test]
fn a_killed_worker_restarts_the_job_from_its_checkpoint_exactly_once() {
    for (query, seed) in [("5", 7), ("8", 11)] {
        let dir = Dir::new(&format!("recovery-q{query}"));
        let (want, json) = run(query, &dir, "plain", None);
        assert!(json.contains("\"restarts\":0"), "{json}");
        assert!(!want.is_empty(), "q{query}: no rows");
        for (round, at) in kill_points(seed).into_iter().enumerate() {
            let (got, json) = run(query, &dir, &format!("kill{round}"), Some(at));
            assert!(
                json.contains("\"restarts\":1"),
                "q{query} killed at {at:?}: {json}"
            );
            assert!(
                got == want,
                "q{query} killed at {at:?}: {} lines, want {}",
                got.len(),
                want.len()
            );
        }
    }
}
