//! Worker processes end to end: `weir bench shuffle --workers 2` starts two `weir worker`
//! processes on loopback and reports a valid W4 line; a worker whose peer is killed
//! mid-stream reports an error naming the peer within 2 s and exits non-zero.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::workers::LocalCluster;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

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
