//! Barriers from the runtime: injected by the sources on their schedule, carried through
//! chains and exchanges and aligned at every gate, without changing a record.

use std::time::Duration;

use super::tests::{config, run};
use super::*;
use crate::config::Config;

/// A job whose sources take `micros_per_record` per record (a slow map chained to them),
/// then a hash exchange, an aggregation and a collect.
fn slow_job(flow: &Dataflow, records: u64, micros_per_record: u64) -> Collected<(u64, u64)> {
    flow.generate(records, |i| (i % 101, i))
        .map(move |r| {
            let until = std::time::Instant::now() + Duration::from_micros(micros_per_record);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            r
        })
        .key_by(|r| r.0)
        .partition()
        .key_by(|r| r.0)
        .aggregate(|r| r.1, |a, b| *a += b)
        .collect()
}

#[test]
fn barriers_cross_every_exchange_in_order_and_change_nothing() {
    for slots in [1, 2] {
        let flow = Dataflow::new();
        let out = slow_job(&flow, 40_000, 10);
        let report = run(
            &flow,
            &Config {
                barrier_interval: Some(Duration::from_millis(20)),
                ..config(slots, 32 << 20)
            },
        );
        let mut sums = out.take();
        sums.sort_unstable();
        let mut want = vec![0u64; 101];
        for i in 0..40_000 {
            want[(i % 101) as usize] += i;
        }
        assert_eq!(
            sums,
            want.into_iter()
                .enumerate()
                .map(|(k, s)| (k as u64, s))
                .collect::<Vec<_>>()
        );
        // Every gate (the key_by's; the aggregate's, behind the combiner that passes
        // barriers on; the collect's gather) aligns barriers 1, 2, 3, … with none missing.
        let delays = &report.barriers;
        let ids: std::collections::BTreeSet<u64> = delays.iter().map(|b| b.id).collect();
        let last = *ids.last().expect("barriers were aligned");
        assert!(last >= 3, "slots {slots}: {delays:?}");
        assert_eq!(ids, (1..=last).collect(), "slots {slots}");
        let first_count = delays.iter().filter(|b| b.id == 1).count();
        assert_eq!(
            first_count,
            2 * slots + 1,
            "slots {slots}: once per gate and task"
        );
        assert!(
            delays
                .iter()
                // Each source keeps its own schedule: a gate's alignment starts at the
                // first source's barrier, its delay at the last one's schedule, so the
                // alignment may exceed the delay by the sources' start skew.
                .all(|b| b.delay_us < 30_000_000 && b.alignment_us < 30_000_000),
            "slots {slots}: {delays:?}"
        );
    }
}

#[test]
fn without_an_interval_no_barrier_is_sent() {
    let flow = Dataflow::new();
    let _ = slow_job(&flow, 5_000, 0);
    let report = run(&flow, &config(2, 32 << 20));
    assert!(report.barriers.is_empty());
}

#[test]
fn a_barrier_interval_under_a_millisecond_is_refused() {
    let config = Config {
        barrier_interval: Some(Duration::from_micros(10)),
        ..Config::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("barrier_interval"), "{err}");
}
