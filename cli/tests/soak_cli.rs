//! `weir bench soak` end to end, briefly: rounds of shuffles, sorts and joins across two
//! worker processes, every result checked, the JSON line last.

use std::process::Command;

#[test]
fn a_short_soak_checks_every_round() {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "soak", "--minutes", "0.05", "--records", "20000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("round    0 "), "{stdout}");
    assert!(
        stdout.contains("every result right, every barrier aligned"),
        "{stdout}"
    );
    assert!(stdout.contains("no leak"), "{stdout}");
    let json = stdout.lines().last().unwrap();
    assert!(
        json.starts_with("{\"workload\":\"soak\"") && json.contains("\"valid\":true"),
        "{json}"
    );
}

#[test]
fn a_soak_on_other_than_two_workers_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "soak", "--workers", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--workers 3: the soak runs 2"));
}

/// Worker 1 of a soak round (shuffle, sort and join at once) killed at seeded points of
/// the job: worker 0 fails within seconds, names the lost peer, and reports no leak.
#[test]
fn a_worker_killed_at_random_points_fails_its_peer_cleanly() {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let mut state = 7u64;
    for _ in 0..3 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let delay = Duration::from_millis(300 + (state >> 33) % 1200);
        let cluster = weir::workers::LocalCluster::new(2).unwrap();
        let start = |process: &str| {
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["worker", "--process", process, "--peers"])
                .arg(cluster.peers_file())
                .args([
                    "soak",
                    "--round",
                    "0",
                    "--records",
                    "3000000",
                    "--seed",
                    "1",
                    "--workers",
                    "2",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut survivor = start("0");
        let mut victim = start("1");
        std::thread::sleep(delay);
        if victim.try_wait().unwrap().is_some() {
            survivor.kill().unwrap();
            panic!("the round ended before {delay:?}: make it longer");
        }
        victim.kill().unwrap();
        victim.wait().unwrap();
        let killed = Instant::now();
        let status = loop {
            if let Some(status) = survivor.try_wait().unwrap() {
                break status;
            }
            if killed.elapsed() > Duration::from_secs(15) {
                survivor.kill().unwrap();
                panic!("killed at {delay:?}: the survivor did not notice");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        survivor
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "killed at {delay:?}: {stderr}");
        assert!(stderr.contains("worker 1"), "killed at {delay:?}: {stderr}");
        assert!(!stderr.contains("leak"), "killed at {delay:?}: {stderr}");
    }
}
