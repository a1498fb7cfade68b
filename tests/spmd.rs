//! A program that is its own worker ([`weir::spmd`]): this test binary launches two more
//! processes of itself, each runs the same program, and the launcher gets every worker's
//! report and the job's records. (One test in this file: a worker process runs the test
//! binary with the launcher's arguments, so it runs this test, as a worker.)

use weir::config::Config;
use weir::spmd;

#[test]
fn a_program_runs_as_launcher_and_as_its_own_workers() {
    let config = Config {
        workers: 3,
        slots: 2,
        memory: 32 << 20,
        ..Config::default()
    };
    let outcome = spmd::run(&config, |flow| {
        flow.generate(300_000, |i| (i % 1000, i))
            .key_by(|(k, _)| *k)
            .aggregate(|(_, v)| *v, |a, b| *a += b)
            .collect()
    })
    .unwrap();
    let Some(outcome) = outcome else {
        // A worker process: its part is done and its results written.
        return;
    };
    let mut sums = outcome.records;
    sums.sort_unstable();
    let expected: Vec<(u64, u64)> = (0..1000)
        .map(|k| (k, (0..300).map(|j| k + 1000 * j).sum()))
        .collect();
    assert_eq!(sums, expected);
    assert_eq!(outcome.report.workers.len(), 3);
    for worker in &outcome.report.workers {
        assert!(worker.leak_free, "{worker:?}");
    }
    assert!(
        outcome.report.workers[1..]
            .iter()
            .all(|w| w.remote_bytes > 0),
        "the workers exchanged records over TCP"
    );
}
