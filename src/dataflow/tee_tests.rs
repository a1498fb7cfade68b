//! Tees ([`Stream::tee`]) against plain Rust computations, at one and three slots, and
//! the programs they refuse.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::tests::{config, run};
use super::*;
use crate::error::WeirError;

const RECORDS: u64 = 100_000;

fn record(i: u64) -> (u64, u64) {
    (i * 7919 % 97, i)
}

#[test]
fn one_source_read_once_feeds_a_count_a_sum_and_a_grouped_sum() {
    for slots in [1, 3] {
        let flow = Dataflow::new();
        let generated = Arc::new(AtomicU64::new(0));
        let calls = Arc::clone(&generated);
        let (counted, rest) = flow
            .generate(RECORDS, move |i| {
                calls.fetch_add(1, Ordering::Relaxed);
                record(i)
            })
            .map(|(k, v)| (k, v * 2))
            .tee();
        let count = counted.filter(|(k, _)| k % 2 == 0).count();
        // A tee of a branch: a sum in the chain and a grouped sum across an exchange.
        let (summed, grouped) = rest.tee();
        let sum = summed
            .fold(|_| 0u64, |sum, (_, v)| *sum += v, |sum| sum)
            .collect();
        let groups = grouped
            .key_by(|(k, _)| *k)
            .aggregate(|(_, v)| *v, |a, b| *a += b)
            .collect();
        run(&flow, &config(slots, 16 << 20));

        assert_eq!(generated.load(Ordering::Relaxed), RECORDS, "read once");
        let records: Vec<(u64, u64)> = (0..RECORDS).map(record).map(|(k, v)| (k, v * 2)).collect();
        let expected_count = records.iter().filter(|(k, _)| k % 2 == 0).count() as u64;
        assert_eq!(
            count.take().iter().sum::<u64>(),
            expected_count,
            "{slots} slots"
        );
        let expected_sum: u64 = records.iter().map(|(_, v)| v).sum();
        assert_eq!(
            sum.take().iter().sum::<u64>(),
            expected_sum,
            "{slots} slots"
        );
        let mut expected_groups: HashMap<u64, u64> = HashMap::new();
        for (k, v) in &records {
            *expected_groups.entry(*k).or_default() += v;
        }
        let got: HashMap<u64, u64> = groups.take().into_iter().collect();
        assert_eq!(got, expected_groups, "{slots} slots");
    }
}

#[test]
fn a_tee_after_an_exchange_with_a_branch_unioned_with_another_stream() {
    for slots in [1, 3] {
        let flow = Dataflow::new();
        let (left, right) = flow.generate(20_000, |i| i).rebalance().tee();
        let other = flow.generate(500, |i| 1_000_000 + i);
        let union = left.union(other).count();
        let large = right.filter(|i| *i >= 10_000).collect();
        run(&flow, &config(slots, 16 << 20));
        assert_eq!(union.take().iter().sum::<u64>(), 20_500, "{slots} slots");
        let mut large = large.take();
        large.sort_unstable();
        assert_eq!(
            large,
            (10_000..20_000).collect::<Vec<u64>>(),
            "{slots} slots"
        );
    }
}

/// The usage error a program is refused with at 1 and 3 slots (nothing runs: no memory
/// is taken, so none can be left).
fn refused(build: impl Fn(&Dataflow)) -> String {
    let mut messages = Vec::new();
    for slots in [1, 3] {
        let flow = Dataflow::new();
        build(&flow);
        match runtime::execute(&flow, &config(slots, 16 << 20), None) {
            Err(error @ WeirError::Usage { .. }) => messages.push(error.to_string()),
            other => panic!("{slots} slots: {other:?}"),
        }
    }
    assert_eq!(messages[0], messages[1]);
    messages.remove(0)
}

#[test]
fn joining_or_uniting_the_branches_of_a_tee_is_refused_before_anything_runs() {
    let self_join = refused(|flow| {
        let (left, right) = flow.generate(RECORDS, record).tee();
        let _ = left
            .key_by(|(k, _)| *k)
            .join(right.key_by(|(k, _)| *k))
            .count();
    });
    assert!(
        self_join.starts_with("a join of two streams from one tee (tee 0) would deadlock"),
        "{self_join}"
    );
    // After an aggregation on one side, and a broadcast on the other: the join still
    // reads its build side to the end first.
    let later = refused(|flow| {
        let (left, right) = flow.generate(RECORDS, record).tee();
        let sums = left
            .key_by(|(k, _)| *k)
            .aggregate(|(_, v)| *v, |a, b| *a += b);
        let _ = right
            .key_by(|(k, _)| *k)
            .broadcast_semi_join(sums.key_by(|(k, _)| *k))
            .count();
    });
    assert!(later.contains("would deadlock"), "{later}");
    let union = refused(|flow| {
        let (left, right) = flow.generate(RECORDS, record).tee();
        let _ = left.union(right.rebalance()).count();
    });
    assert!(
        union.starts_with("a union of two streams from one tee"),
        "{union}"
    );
    let dangling = refused(|flow| {
        let (left, _right) = flow.generate(RECORDS, record).tee();
        let _ = left.count();
    });
    assert!(
        dangling.contains("branch that is not consumed"),
        "{dangling}"
    );
}
