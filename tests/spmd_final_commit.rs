//! A job of several workers commits its sinks' last files only once every worker ended
//! well. Worker 1's share ends first (its chain has no exchange to wait on) while worker 0
//! fails once near its end: had worker 1 committed its last file on its own, the restarted
//! job would write those rows again. (One test in this file: a worker process runs the
//! test binary with the launcher's arguments, so it runs this test, as a worker.)

use std::path::PathBuf;
use std::time::Duration;

use weir::checkpoint::CheckpointConfig;
use weir::config::Config;
use weir::dataflow::{Collected, read_committed};
use weir::spmd;

/// Records in all: worker 0 generates the even ones, worker 1 the odd ones.
const RECORDS: u64 = 20_000;

#[test]
fn the_last_files_are_committed_once_every_worker_ended_well() {
    let launcher = std::env::var(spmd::PROCESS_ENV).is_err();
    // Every process of the launch finds the directory by name.
    let base = std::env::temp_dir().join("weir-test-spmd-final-commit");
    if launcher {
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
    }
    let (out, checkpoints, marker) = (
        base.join("out"),
        base.join("checkpoints"),
        base.join("failed-once"),
    );
    let mut checkpoint = CheckpointConfig::new(&checkpoints);
    checkpoint.restart_delay = Duration::from_millis(50);
    let config = Config {
        workers: 2,
        slots: 1,
        memory: 16 << 20,
        barrier_interval: Some(Duration::from_millis(50)),
        checkpoint: Some(checkpoint),
        ..Config::default()
    };
    let outcome = spmd::run(&config, |flow| {
        let marker: PathBuf = marker.clone();
        flow.generate(RECORDS, |i| i)
            .try_map(move |i| {
                // Both take checkpoints a while; worker 0 is slower: worker 1 has long
                // ended when worker 0 fails, once, at its last record.
                if !launcher {
                    std::thread::sleep(Duration::from_micros(100));
                    return Ok(i);
                }
                std::thread::sleep(Duration::from_micros(250));
                if i == RECORDS - 2 && !marker.exists() {
                    std::fs::write(&marker, b"").map_err(|e| e.to_string())?;
                    return Err(format!("induced failure at record {i}"));
                }
                Ok(i)
            })
            .write_committed(out.clone(), |i| i.to_string());
        Collected::<()>::none()
    })
    .unwrap();
    let Some(outcome) = outcome else {
        return;
    };
    assert!(marker.exists(), "the failure was not induced");
    assert_eq!(outcome.report.workers[0].restarts, 1);
    let mut lines: Vec<u64> = read_committed(&out)
        .unwrap()
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    lines.sort_unstable();
    let want: Vec<u64> = (0..RECORDS).collect();
    assert!(
        lines == want,
        "{} lines committed, want {RECORDS} once each",
        lines.len()
    );
    std::fs::remove_dir_all(&base).unwrap();
}
