//! Two workers of one job in one test process (each with its own memory, transport and
//! tasks, over loopback): records cross the TCP transport both ways (also from both
//! branches of a tee), and a task that fails
//! on one worker fails the job on both — the other sees its peer go away — with every
//! segment home and no hang.

use std::time::{Duration, Instant};

use weir::config::Config;
use weir::dataflow::{Dataflow, WorkerReport, runtime};
use weir::error::{Result, WeirError};
use weir::netstack::transport::NetworkConfig;
use weir::workers::free_loopback_addresses;

/// A program and what gives its result after the job ran.
type Program = (Dataflow, Box<dyn FnOnce() -> Vec<(u64, u64)>>);

/// One worker's outcome: its report and the result it received.
type Outcome = Result<(WorkerReport, Vec<(u64, u64)>)>;

/// Runs `program` as workers 0 and 1, each in its own thread.
fn run_two(program: fn() -> Program) -> [Outcome; 2] {
    let peers = free_loopback_addresses(2).unwrap();
    let config = Config {
        workers: 2,
        slots: 2,
        memory: 32 << 20,
        ..Config::default()
    };
    let run = |process: u32| {
        let (peers, config) = (peers.clone(), config.clone());
        std::thread::spawn(move || {
            let (flow, result) = program();
            let network = NetworkConfig::new(process, peers);
            runtime::execute(&flow, &config, Some(network)).map(|report| (report, result()))
        })
    };
    let (zero, one) = (run(0), run(1));
    [zero.join().unwrap(), one.join().unwrap()]
}

fn sums() -> Program {
    let flow = Dataflow::new();
    let sums = flow
        .generate(200_000, |i| (i % 1000, i))
        .key_by(|(k, _)| *k)
        .aggregate(|(_, v)| *v, |a, b| *a += b)
        .collect();
    (flow, Box::new(move || sums.take()))
}

#[test]
fn a_keyed_aggregation_across_two_workers_is_exact() {
    let [zero, one] = run_two(sums);
    let (report, mut got) = zero.unwrap();
    assert!(report.leak_free && report.remote_bytes > 0, "{report:?}");
    let (report, rest) = one.unwrap();
    assert!(
        report.leak_free && rest.is_empty(),
        "results arrive on worker 0 only"
    );
    got.sort_unstable();
    let expected: Vec<(u64, u64)> = (0..1000u64)
        .map(|k| (k, (0..200).map(|j| k + 1000 * j).sum()))
        .collect();
    assert_eq!(got, expected);
}

fn failing_on_task_3() -> Program {
    let flow = Dataflow::new();
    let sums = flow
        .source_fn("failing", |ctx| {
            let task = ctx.task() as u64;
            Ok((0..100_000u64).map(move |i| {
                if task == 3 && i == 50_000 {
                    return Err(WeirError::Usage {
                        message: "task 3 fails at record 50000".into(),
                    });
                }
                Ok((i % 100, i))
            }))
        })
        .key_by(|(k, _): &(u64, u64)| *k)
        .aggregate(|(_, v)| *v, |a, b| *a += b)
        .collect();
    (flow, Box::new(move || sums.take()))
}

#[test]
fn a_task_failing_on_one_worker_fails_the_job_on_both() {
    let started = Instant::now();
    // Task 3 runs on worker 1 (two slots per worker).
    let [zero, one] = run_two(failing_on_task_3);
    let one = one.unwrap_err().to_string();
    assert!(one.contains("task 3 fails at record 50000"), "{one}");
    let zero = zero.unwrap_err().to_string();
    assert!(
        zero.contains("worker 1"),
        "worker 0 names the lost peer: {zero}"
    );
    for error in [&zero, &one] {
        assert!(!error.contains("leak"), "{error}");
    }
    assert!(started.elapsed() < Duration::from_secs(60), "no hang");
}

/// A tee whose branches both cross the transport: per-key sums and per-key counts of
/// one generated stream, as `(key, sum)` then `(key + 1000, count)`.
fn teed_sums_and_counts() -> Program {
    let flow = Dataflow::new();
    let (summed, counted) = flow.generate(200_000, |i| (i % 1000, i)).tee();
    let sums = summed
        .key_by(|(k, _)| *k)
        .aggregate(|(_, v)| *v, |a, b| *a += b)
        .collect();
    let counts = counted
        .key_by(|(k, _)| *k)
        .aggregate(|_| 1u64, |a, b| *a += b)
        .map(|(k, n)| (k + 1000, n))
        .collect();
    (
        flow,
        Box::new(move || {
            let mut all = sums.take();
            all.extend(counts.take());
            all
        }),
    )
}

#[test]
fn a_tee_feeds_two_aggregations_across_two_workers() {
    let [zero, one] = run_two(teed_sums_and_counts);
    let (report, mut got) = zero.unwrap();
    assert!(report.leak_free && report.remote_bytes > 0, "{report:?}");
    let (report, rest) = one.unwrap();
    assert!(report.leak_free && rest.is_empty(), "{report:?}");
    got.sort_unstable();
    let mut expected: Vec<(u64, u64)> = (0..1000u64)
        .map(|k| (k, (0..200).map(|j| k + 1000 * j).sum()))
        .collect();
    expected.extend((0..1000u64).map(|k| (k + 1000, 200)));
    assert_eq!(got, expected);
}
