//! The relational operators ([`super::relational`]) against plain Rust computations, at
//! one and three slots.

use std::collections::HashSet;

use weir_kernel::hash::JoinType;

use super::tests::{JoinedRow, config, join_flow, join_inputs, nested_loop_join, run};
use super::*;
use crate::config::Config;
use crate::error::WeirError;

/// Runs a program that must fail in a user's function; returns its error after checking
/// that no spill file was left (a leak after a failure turns the error into a
/// [`WeirError::Leak`], which the callers' matches refuse).
fn run_failing(flow: &Dataflow, slots: usize, name: &str) -> WeirError {
    let dir = std::env::temp_dir().join(format!("weir-{name}-{}-{slots}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let config = Config {
        spill_dir: dir.clone(),
        ..config(slots, 16 << 20)
    };
    let error = runtime::execute(flow, &config, None).unwrap_err();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no spill file left"
    );
    std::fs::remove_dir(&dir).unwrap();
    error
}

#[test]
fn fallible_transforms_equal_their_infallible_results_when_every_call_succeeds() {
    for slots in [1, 3] {
        let flow = Dataflow::new();
        let rows = flow
            .generate(3000, |i| format!("{i},{}", i * 7))
            .try_flat_map(|line| {
                line.split(',')
                    .map(str::parse::<u64>)
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .try_filter(|n| Ok::<_, String>(n % 3 != 0))
            .try_map(|n| u32::try_from(n).map(|n| n + 1))
            .collect();
        run(&flow, &config(slots, 16 << 20));
        let mut got = rows.take();
        got.sort_unstable();
        let mut expected: Vec<u32> = (0..3000u32)
            .flat_map(|i| [i, i * 7])
            .filter(|n| n % 3 != 0)
            .map(|n| n + 1)
            .collect();
        expected.sort_unstable();
        assert_eq!(got, expected, "{slots} slots");
    }
}

#[test]
fn a_user_error_fails_the_job_with_its_message_and_not_as_a_panic() {
    for slots in [1, 3] {
        // After an exchange and before an aggregation, so that tasks of both stages are
        // running (and holding memory) when it fails.
        let flow = Dataflow::new();
        let _sums = flow
            .generate(100_000, |i| i)
            .rebalance()
            .try_map(|i| match i {
                4321 => Err(format!("bad record {i}")),
                _ => Ok(i),
            })
            .key_by(|i| i % 100)
            .aggregate(|i| *i, |a, b| *a += b)
            .collect();
        let error = run_failing(&flow, slots, "try-map");
        let message = error.to_string();
        assert!(
            matches!(&error, WeirError::Task { stage: 1, cause, .. }
                if cause == "try_map: bad record 4321"),
            "{error:?}"
        );
        assert!(message.contains("bad record 4321"), "{message}");
        assert!(!message.contains("panicked"), "{message}");
        assert_eq!(
            error.exit_code(),
            1,
            "a failure while running, not a usage error"
        );
    }
    let flow = Dataflow::new();
    let _ = flow
        .generate(10, |i| i)
        .try_filter(|i| if *i == 7 { Err("seven") } else { Ok(true) })
        .count();
    let error = run_failing(&flow, 1, "try-filter");
    assert!(error.to_string().ends_with("try_filter: seven"), "{error}");
    let flow = Dataflow::new();
    let _ = flow
        .generate(10, |i| i.to_string())
        .try_flat_map(|s| {
            let boxed = |e: std::num::ParseIntError| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(e)
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(vec![
                s.parse::<u8>().map_err(boxed)?,
                format!("{s}00").parse::<u8>().map_err(boxed)?,
            ])
        })
        .count();
    let error = run_failing(&flow, 1, "try-flat-map");
    assert!(
        error
            .to_string()
            .ends_with("try_flat_map: number too large to fit in target type"),
        "{error}"
    );
}

#[test]
fn distinct_equals_a_hash_set_and_spills_in_its_share() {
    const KEYS: u64 = 120_000;
    let records = |i: u64| (i * 7919 % KEYS, format!("k{}", i * 7919 % KEYS % 7));
    let expected: HashSet<(u64, String)> = (0..300_000).map(records).collect();
    for (slots, memory) in [(1, 5 << 20), (3, 16 << 20)] {
        let flow = Dataflow::new();
        let distinct = flow.generate(300_000, records).distinct().collect();
        let report = run(&flow, &config(slots, memory));
        let got = distinct.take();
        assert_eq!(got.len(), expected.len(), "each record once, {slots} slots");
        assert_eq!(got.into_iter().collect::<HashSet<_>>(), expected);
        assert!(report.memory_peak <= report.memory_budget, "{report:?}");
        if slots == 1 {
            assert!(report.spilled_bytes > 0, "{report:?}");
        }
    }
}

#[test]
fn limit_forwards_at_most_n_records_of_the_stream() {
    for slots in [1, 3] {
        for (n, records) in [(25, 10_000), (0, 100), (500, 120)] {
            let flow = Dataflow::new();
            let limited = flow.generate(records, |i| i).limit(n).collect();
            let report = run(&flow, &config(slots, 16 << 20));
            let got = limited.take();
            let case = format!("limit {n} of {records}, {slots} slots");
            assert_eq!(got.len() as u64, n.min(records), "{case}");
            let unique: HashSet<u64> = got.iter().copied().collect();
            assert_eq!(unique.len(), got.len(), "{case}");
            assert!(got.iter().all(|i| *i < records), "{case}");
            // Each task sends at most n records to the gathering task, which delivers
            // without another exchange.
            assert!(
                report.records_exchanged <= slots as u64 * n,
                "{case}: {report:?}"
            );
        }
    }
    // On one task already: no second gather.
    let flow = Dataflow::new();
    let limited = flow.generate(100, |i| i).gather().limit(10).collect();
    let report = run(&flow, &config(3, 16 << 20));
    assert_eq!(limited.take().len(), 10);
    assert_eq!(report.records_exchanged, 100);
}

#[test]
fn top_k_equals_a_sorted_prefix() {
    let key = |i: u64| i * 2_654_435_761 % 1_000_003;
    let mut expected: Vec<u64> = (0..50_000).map(key).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    expected.truncate(100);
    for slots in [1, 3] {
        let flow = Dataflow::new();
        let top = flow
            .generate(50_000, move |i| (key(i), i))
            .top_k(100, |(k, _)| crate::serde_fmt::Descending(*k))
            .collect();
        run(&flow, &config(slots, 16 << 20));
        let got: Vec<u64> = top.take().into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, expected, "{slots} slots");
    }
}

/// The left records of a semi or anti join's nested-loop rows.
fn left_records(rows: Vec<JoinedRow>) -> Vec<(u32, i64)> {
    rows.into_iter().map(|(l, _)| l.unwrap()).collect()
}

#[test]
fn semi_and_anti_joins_equal_a_nested_loop() {
    let (orders, items) = join_inputs();
    let semi = left_records(nested_loop_join(&items, &orders, JoinType::LeftSemi));
    let anti = left_records(nested_loop_join(&items, &orders, JoinType::LeftAnti));
    assert!(!semi.is_empty() && !anti.is_empty());
    type Joined =
        fn(KeyedStream<u32, (u32, i64)>, KeyedStream<u32, (u32, String)>) -> Stream<(u32, i64)>;
    type Case<'a> = (&'a str, Joined, &'a [(u32, i64)]);
    let cases: [Case<'_>; 6] = [
        ("semi", |l, r| l.semi_join(r), &semi),
        ("anti", |l, r| l.anti_join(r), &anti),
        (
            "semi building left",
            |l, r| l.semi_join_build_left(r),
            &semi,
        ),
        (
            "anti building left",
            |l, r| l.anti_join_build_left(r),
            &anti,
        ),
        ("broadcast semi", |l, r| l.broadcast_semi_join(r), &semi),
        ("broadcast anti", |l, r| l.broadcast_anti_join(r), &anti),
    ];
    for slots in [1, 3] {
        for (name, join, expected) in cases {
            let (flow, rows) = join_flow(join);
            run(&flow, &config(slots, 16 << 20));
            let mut got = rows.take();
            got.sort_unstable();
            assert_eq!(got, expected, "{name}, {slots} slots");
        }
    }
}

#[test]
fn a_limit_stops_the_source_in_front_of_it() {
    // A source of 2^62 records: without the early stop this job would not end.
    for slots in [1, 2] {
        let flow = Dataflow::new();
        let first = flow
            .generate(1 << 62, |i| i)
            .filter(|i| i % 3 == 0)
            .map(|i| i * 2)
            .limit(5)
            .collect();
        run(&flow, &config(slots, 16 << 20));
        let got = first.take();
        assert_eq!(got.len(), 5, "{slots} slots");
        assert!(got.iter().all(|i| i % 6 == 0), "{got:?}");
    }
}

#[test]
fn try_map_or_skip_drops_and_counts_the_records_that_fail() {
    let flow = Dataflow::new();
    let out = flow
        .generate(1_000, |i| i)
        .try_map_or_skip(|i| {
            if i % 10 == 0 {
                Err(format!("{i} is bad"))
            } else {
                Ok(i * 2)
            }
        })
        .collect();
    let report = run(&flow, &config(2, 16 << 20));
    assert_eq!(report.skipped_records, 100);
    let mut got = out.take();
    got.sort_unstable();
    let expected: Vec<u64> = (0..1_000).filter(|i| i % 10 != 0).map(|i| i * 2).collect();
    assert_eq!(got, expected);
}
