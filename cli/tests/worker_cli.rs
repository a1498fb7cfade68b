//! Worker processes end to end: `weir bench shuffle --workers 2` starts two `weir worker`
//! processes on loopback and reports a valid W4 line; a worker whose peer is killed
//! mid-stream reports an error naming the peer within 2 s and exits non-zero.
#![allow(
    clippy::too_many_lines,
    reason = "a test is a scenario read top to bottom"
)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::workers::LocalCluster;

mod support;

use support::weir_command as weir;

#[test]
fn a_two_worker_shuffle_is_valid_for_small_and_large_records() {
    for (records, size) in [("300000", "16"), ("20000", "1024")] {
        let output = weir()
            .args([
                "bench",
                "shuffle",
                "--workers",
                "2",
                "--records",
                records,
                "--record-size",
                size,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let json = stdout.lines().last().unwrap();
        assert!(json.contains("\"workers\":2"), "{json}");
        assert!(json.contains(&format!("\"records\":{records}")), "{json}");
        assert!(json.contains("\"valid\":true"), "{json}");
    }
}

/// Two worker processes over loopback with every exchange: each record arrives exactly once
/// (once per sink for broadcast), in order per source, on the sink its exchange names.
#[test]
fn every_exchange_across_two_worker_processes_is_exact() {
    for exchange in ["hash", "rebalance", "broadcast", "gather"] {
        let output = weir()
            .args([
                "bench",
                "shuffle",
                "--workers",
                "2",
                "--records",
                "100000",
                "--record-size",
                "40",
            ])
            .args(["--exchange", exchange])
            .output()
            .unwrap();
        assert!(output.status.success(), "{exchange}: {output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let json = stdout.lines().last().unwrap();
        assert!(
            json.contains(&format!("\"exchange\":\"{exchange}\"")),
            "{json}"
        );
        assert!(json.contains("\"valid\":true"), "{json}");
    }
}

#[test]
fn a_worker_whose_peer_is_killed_fails_within_two_seconds_naming_it() {
    let cluster = LocalCluster::new(2).unwrap();
    let start = |process: &str| {
        weir()
            .args(["worker", "--process", process, "--peers"])
            .arg(cluster.peers_file())
            .args(["shuffle", "--records", "100000000000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut survivor = start("0");
    let mut victim = start("1");
    // Let the shuffle get going.
    std::thread::sleep(Duration::from_millis(700));
    assert!(survivor.try_wait().unwrap().is_none(), "still shuffling");
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = survivor.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(10) {
            survivor.kill().unwrap();
            panic!("the survivor did not notice its peer was gone");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let noticed = killed.elapsed();
    let mut stderr = String::new();
    survivor
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(noticed < Duration::from_secs(2), "{noticed:?}: {stderr}");
    let peer = format!("worker 1 at {}", cluster.peers()[1]);
    assert!(stderr.contains(&peer), "{stderr}");
}

#[test]
fn bad_worker_arguments_are_usage_errors() {
    let cluster = LocalCluster::new(2).unwrap();
    let output = weir()
        .args(["worker", "--process", "5", "--peers"])
        .arg(cluster.peers_file())
        .args(["shuffle"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("lists 2 workers"));
    let output = weir()
        .args([
            "worker",
            "--process",
            "0",
            "--peers",
            "/nonexistent/peers",
            "shuffle",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

/// Two network namespaces joined by a veth pair act as two hosts: the workers connect over
/// a real (virtual) link, not loopback. Needs root and `ip netns`; skipped with a message
/// otherwise.
#[test]
fn two_workers_in_two_network_namespaces() {
    struct Namespaces(Vec<String>);
    impl Drop for Namespaces {
        fn drop(&mut self) {
            for name in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let id = std::process::id() % 10_000;
    let (a, b) = (format!("weir-a{id}"), format!("weir-b{id}"));
    if !ip(&["netns", "add", &a]) {
        eprintln!("skipped: `ip netns add` is not available here (needs root and iproute2)");
        return;
    }
    let mut namespaces = Namespaces(vec![a.clone()]);
    assert!(ip(&["netns", "add", &b]));
    namespaces.0.push(b.clone());
    let (veth_a, veth_b) = (format!("wa{id}"), format!("wb{id}"));
    for args in [
        vec![
            "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
        ],
        vec!["link", "set", &veth_a, "netns", &a],
        vec!["link", "set", &veth_b, "netns", &b],
        vec!["-n", &a, "addr", "add", "10.231.0.1/24", "dev", &veth_a],
        vec!["-n", &b, "addr", "add", "10.231.0.2/24", "dev", &veth_b],
        vec!["-n", &a, "link", "set", &veth_a, "up"],
        vec!["-n", &b, "link", "set", &veth_b, "up"],
        vec!["-n", &a, "link", "set", "lo", "up"],
        vec!["-n", &b, "link", "set", "lo", "up"],
    ] {
        assert!(ip(&args), "ip {args:?}");
    }
    let dir = std::env::temp_dir().join(format!("weir-netns.{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let peers = dir.join("peers");
    std::fs::write(&peers, "10.231.0.1:47001\n10.231.0.2:47002\n").unwrap();
    let start = |namespace: &str, process: &str| {
        Command::new("ip")
            .args(["netns", "exec", namespace, env!("CARGO_BIN_EXE_weir")])
            .args(["worker", "--process", process, "--peers"])
            .arg(&peers)
            .args(["shuffle", "--records", "200000", "--record-size", "100"])
            .output()
            .unwrap()
    };
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| start(&a, "0"));
        let second = scope.spawn(|| start(&b, "1"));
        (first.join().unwrap(), second.join().unwrap())
    });
    std::fs::remove_dir_all(&dir).unwrap();
    drop(namespaces);
    // Worker 0 checks the sinks' tallies against the model (it fails otherwise); both
    // sent data over TCP and freed every segment.
    for output in [first, second] {
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let report: weir::dataflow::WorkerReport =
            weir_cli::report::parse_worker_line(stdout.lines().last().unwrap()).unwrap();
        assert!(report.leak_free, "{report:?}");
        assert!(report.remote_bytes > 0, "{report:?}");
    }
}

#[test]
fn a_short_latency_run_reports_percentiles() {
    let output = weir()
        .args([
            "bench",
            "latency",
            "--rate",
            "2000",
            "--seconds",
            "0.5",
            "--flush",
            "idle",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = stdout.lines().last().unwrap();
    for field in [
        "\"workload\":\"W5\"",
        "\"records\":1000",
        "\"latency_p50_ms\":",
        "\"latency_p99_ms\":",
        "\"latency_p999_ms\":",
        "\"idle_s\":",
        "\"remote_bytes\":",
        "\"valid\":true",
    ] {
        assert!(json.contains(field), "{field} in {json}");
    }
    let output = weir()
        .args(["bench", "latency", "--rate", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn a_short_barrier_run_reports_barrier_delays() {
    let output = weir()
        .args([
            "bench",
            "barrier",
            "--debloat",
            "on",
            "--target-ms",
            "100",
            "--busy-us",
            "20",
            "--seconds",
            "2.5",
            "--barrier-interval",
            "0.5",
            "--warmup",
            "0.2",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = stdout.lines().last().unwrap();
    for field in [
        "\"workload\":\"W6\"",
        "\"debloat\":true",
        "\"barrier_delay_p50_ms\":",
        "\"barrier_delay_p99_ms\":",
        "\"buffer_size_bytes\":",
        "\"warmup_s\":0.2",
        "\"alignment_p99_ms\":",
        "\"gates\":[{\"process\":0,",
        "\"inflight_bytes_max\":",
        "\"back_pressured_ms_per_s\":",
        "\"records_per_s\":",
        "\"valid\":true",
    ] {
        assert!(json.contains(field), "{field} in {json}");
    }
    let output = weir()
        .args(["bench", "barrier", "--debloat", "maybe"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
