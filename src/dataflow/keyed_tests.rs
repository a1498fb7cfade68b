//! Keyed process functions against plain models: per-key state and event-time timers,
//! at one and two slots, with records out of order within the bound, with state many
//! times the operator's memory (partitions spill, records wait and are replayed), and a
//! user error.

use std::collections::BTreeMap;
use std::time::Duration;

use super::tests::{config, run};
use super::*;
use crate::config::Config;

/// Buckets of event time the tests sum in, in milliseconds.
const BUCKET: i64 = 100;

/// How the test's state is shaped: its buckets' length, and ballast bytes per record.
#[derive(Clone, Copy)]
struct Shape {
    bucket: i64,
    ballast: usize,
}

/// A key's open buckets: each one's end, its sum and its ballast.
type OpenBuckets = BTreeMap<i64, (u64, String)>;

const SMALL: Shape = Shape {
    bucket: BUCKET,
    ballast: 0,
};

/// Record `i`: its key among `keys`, a time that grows with `i` but comes up to `jitter`
/// ms early, and a value.
fn record(i: u64, keys: u64, jitter: u64) -> (u64, i64, u64) {
    let early = if jitter == 0 { 0 } else { i * 7919 % jitter };
    (i * 31 % keys, (i / 10) as i64 - early as i64, i % 1000)
}

/// Per key and bucket of time: the sum of the values, emitted by a timer at the bucket's
/// last millisecond. The state is a map of open buckets (its end → sum and ballast),
/// removed when the last bucket closes. The records are `records(i)` for `i` below `n`,
/// up to `jitter` ms out of order.
fn bucket_sums(
    flow: &Dataflow,
    n: u64,
    records: impl Fn(u64) -> (u64, i64, u64) + Send + Sync + 'static,
    jitter: u64,
    shape: Shape,
) -> Collected<(u64, i64, u64)> {
    flow.generate(n, records)
        .event_time(
            |r| r.1,
            Watermarks::bounded(Duration::from_millis(jitter)).every(Duration::ZERO),
        )
        .key_by(|r| r.0)
        .process(
            move |ctx: &mut Keyed<'_, u64, OpenBuckets, (u64, i64, u64)>,
                  (_, time, value): (u64, i64, u64)| {
                let end = time.div_euclid(shape.bucket) * shape.bucket + shape.bucket;
                if end - 1 <= ctx.watermark() {
                    return Err(format!("a record at {time} behind the watermark").into());
                }
                let open = ctx.state().get_or_insert_default().entry(end).or_default();
                open.0 += value;
                open.1.extend(std::iter::repeat_n('x', shape.ballast));
                ctx.set_timer(end - 1);
                Ok(())
            },
            |ctx, time| {
                let key = *ctx.key();
                let state = ctx.state();
                let open = state.as_mut().ok_or("a timer without state")?;
                let (sum, _) = open
                    .remove(&(time + 1))
                    .ok_or("a timer without its bucket")?;
                if open.is_empty() {
                    *state = None;
                }
                ctx.emit((key, time + 1, sum));
                Ok(())
            },
        )
        .collect()
}

fn model(records: impl Iterator<Item = (u64, i64, u64)>, bucket: i64) -> BTreeMap<(u64, i64), u64> {
    let mut sums = BTreeMap::new();
    for (key, time, value) in records {
        let end = time.div_euclid(bucket) * bucket + bucket;
        *sums.entry((key, end)).or_insert(0) += value;
    }
    sums
}

/// Asserts `got` equals `want`, naming the first few differences (not the whole maps).
fn assert_same(got: &BTreeMap<(u64, i64), u64>, want: &BTreeMap<(u64, i64), u64>, what: &str) {
    let mut differences: Vec<String> = want
        .iter()
        .filter(|(key, sum)| got.get(key) != Some(sum))
        .map(|(key, sum)| format!("{key:?}: want {sum}, got {:?}", got.get(key)))
        .chain(
            got.keys()
                .filter(|key| !want.contains_key(key))
                .map(|key| format!("{key:?}: not wanted, got {}", got[key])),
        )
        .collect();
    let count = differences.len();
    differences.truncate(5);
    assert!(
        count == 0,
        "{what}: {count} differences, first {differences:?}"
    );
}

fn summed(out: Vec<(u64, i64, u64)>) -> BTreeMap<(u64, i64), u64> {
    let mut got = BTreeMap::new();
    for (key, end, sum) in out {
        assert!(
            got.insert((key, end), sum).is_none(),
            "key {key} bucket {end} twice"
        );
    }
    got
}

#[test]
fn state_and_timers_equal_the_model_in_and_out_of_order() {
    for (slots, jitter) in [(1, 0), (2, 0), (1, 50), (2, 50)] {
        let flow = Dataflow::new();
        let out = bucket_sums(&flow, 40_000, move |i| record(i, 97, jitter), jitter, SMALL);
        let report = run(&flow, &config(slots, 32 << 20));
        assert_same(
            &summed(out.take()),
            &model((0..40_000).map(|i| record(i, 97, jitter)), BUCKET),
            &format!("slots {slots} jitter {jitter}"),
        );
        assert!(report.state_bytes > 0);
        assert_eq!(report.spilled_bytes, 0);
    }
}

#[test]
fn state_many_times_the_memory_spills_and_stays_right() {
    // 20 000 keys whose buckets stay open 20 s of event time, 40 bytes of ballast per
    // record: about 16 MB of state at the peak, at 4 KiB segments and a 4 MiB budget.
    let (keys, n) = (20_000, 400_000);
    let shape = Shape {
        bucket: 20_000,
        ballast: 40,
    };
    let flow = Dataflow::new();
    let out = bucket_sums(&flow, n, move |i| record(i, keys, 30), 30, shape);
    let report = run(
        &flow,
        &Config {
            segment_size: 4096,
            ..config(1, 4 << 20)
        },
    );
    assert_same(
        &summed(out.take()),
        &model((0..n).map(|i| record(i, keys, 30)), shape.bucket),
        "spilled",
    );
    assert!(report.spilled_bytes > 0, "{report:?}");
    assert!(report.state_bytes < 4 << 20, "{report:?}");
}

/// The first `count` keys (from 0 up) of keyed state partition 0 of the operator's 64.
fn keys_of_one_partition(count: usize) -> Vec<u64> {
    let seed = weir_kernel::hash::StateConfig::default().seed;
    let mut bytes = Vec::new();
    (0u64..)
        .filter(|key| {
            bytes.clear();
            super::operators::append_key(&mut bytes, key);
            weir_kernel::hash::hash_bytes(seed, &bytes) >> 58 == 0
        })
        .take(count)
        .collect()
}

#[test]
fn one_partition_filling_the_table_is_right_or_fails_naming_it() {
    // Every key in one partition: when the table is full, no other partition can make
    // room. The table compacts below its usual garbage threshold first; when that is not
    // enough the partition spills itself (a record's or a timer's put goes to its log)
    // and, coming back, fails naming itself. State from a sixth of the table, to 95% of
    // it, to more than it: each run is right or fails so; never a hang or a panic.
    let keys = Arc::new(keys_of_one_partition(1000));
    let records = {
        let keys = Arc::clone(&keys);
        move |i: u64| {
            let (key, time, value) = record(i, keys.len() as u64, 30);
            (keys[key as usize], time, value)
        }
    };
    let n = 100_000;
    let want = model((0..n).map(&records), 1000);
    let mut outcomes = Vec::new();
    for ballast in [50, 290, 400] {
        let shape = Shape {
            bucket: 1000,
            ballast,
        };
        let flow = Dataflow::new();
        let out = bucket_sums(&flow, n, records.clone(), 30, shape);
        let config = Config {
            segment_size: 4096,
            ..config(1, 4 << 20)
        };
        match runtime::execute(&flow, &config, None) {
            Ok(report) => {
                assert!(report.leak_free, "ballast {ballast}");
                assert_same(&summed(out.take()), &want, &format!("ballast {ballast}"));
                outcomes.push((ballast, Some(report.state_bytes)));
            }
            Err(error) => {
                let message = error.to_string();
                assert!(
                    message.contains("keyed state partition 0") && message.contains("must fit"),
                    "ballast {ballast}: {message}"
                );
                outcomes.push((ballast, None));
            }
        }
    }
    let fits = outcomes.iter().filter(|(_, state)| state.is_some()).count();
    assert_eq!(
        fits, 2,
        "ballast → peak state (None: too large): {outcomes:?}"
    );
    assert!(
        outcomes[1].1.is_some_and(|bytes| bytes > 2_500_000),
        "the 290 bytes ballast filled less than planned: {outcomes:?}"
    );
}

/// Record `i` of the interleaving test: each key gets four records in a row, at about
/// the same time (so at the same watermark).
fn burst_record(i: u64, keys: u64) -> (u64, i64, u64) {
    let early = i * 7919 % 20;
    ((i / 4) % keys, (i / 40) as i64 - early as i64, i % 1000)
}

/// The interleaving test's state (count, sum, ballast) and output (key, timer, count, sum).
type Tally = (u64, u64, String);
type Firing = (u64, i64, u64, u64);

/// Per key: the count and sum of its records (and fixed ballast); each record sets a
/// timer at its own time and, every third, one at the watermark (due at the next one); a
/// timer emits its key and time with the count and sum it finds. Any change in how
/// timers and records interleave changes the output.
fn interleaved(flow: &Dataflow, n: u64, keys: u64) -> Collected<Firing> {
    flow.generate(n, move |i| burst_record(i, keys))
        .event_time(
            |r| r.1,
            Watermarks::bounded(Duration::from_millis(20)).every(Duration::ZERO),
        )
        .key_by(|r| r.0)
        .process(
            |ctx: &mut Keyed<'_, u64, Tally, Firing>, (_, time, value): (u64, i64, u64)| {
                let watermark = ctx.watermark();
                let state = ctx.state().get_or_insert_default();
                state.0 += 1;
                state.1 += value;
                if state.2.is_empty() {
                    state.2 = "x".repeat(600);
                }
                ctx.set_timer(time);
                if value % 3 == 0 {
                    ctx.set_timer(watermark.max(0));
                }
                Ok(())
            },
            |ctx, time| {
                let key = *ctx.key();
                let (count, sum, _) = ctx.state().clone().ok_or("a timer without state")?;
                ctx.emit((key, time, count, sum));
                Ok(())
            },
        )
        .collect()
}

#[test]
fn timers_and_records_interleave_the_same_with_state_spilled() {
    // 20 000 keys × ~650 bytes: about 13 MB of state at a 4 MiB budget against 64 MiB.
    let (n, keys) = (160_000, 20_000);
    let mut outputs = Vec::new();
    for (memory, segment_size) in [(64 << 20, 32 << 10), (4 << 20, 4096)] {
        let flow = Dataflow::new();
        let out = interleaved(&flow, n, keys);
        let report = run(
            &flow,
            &Config {
                segment_size,
                ..config(1, memory)
            },
        );
        let mut got = out.take();
        got.sort_unstable();
        outputs.push((got, report.spilled_bytes));
    }
    assert_eq!(outputs[0].1, 0, "64 MiB spilled");
    assert!(outputs[1].1 > 0, "4 MiB did not spill");
    assert!(outputs[0].0.len() > n as usize / 2);
    let first = outputs[0]
        .0
        .iter()
        .zip(&outputs[1].0)
        .position(|(a, b)| a != b);
    assert!(
        outputs[0].0 == outputs[1].0,
        "the firings differ ({} vs {}), first at {first:?}",
        outputs[0].0.len(),
        outputs[1].0.len()
    );
}

#[test]
fn an_error_of_the_function_fails_the_job_with_its_message() {
    let flow = Dataflow::new();
    let _ = flow
        .generate(1000, |i| i)
        .key_by(|i| i % 7)
        .process(
            |_: &mut Keyed<'_, u64, u64, u64>, i: u64| {
                if i == 500 {
                    return Err(format!("record {i} is bad").into());
                }
                Ok(())
            },
            |_, _| Ok(()),
        )
        .collect();
    let err = runtime::execute(&flow, &config(1, 16 << 20), None).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("keyed process: record 500 is bad"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

/// Left record `i` of the interval join: its key and time (growing, up to 20 ms early).
fn left_record(i: u64) -> (u64, i64) {
    (i * 13 % 41, (i / 4) as i64 - (i * 7919 % 20) as i64)
}

/// Right record `i`: another key pattern, times a little behind the left's.
fn right_record(i: u64) -> (u64, i64) {
    (i * 17 % 41, (i / 5) as i64 - (i * 104_729 % 20) as i64)
}

#[test]
fn an_interval_join_pairs_exactly_the_records_within_the_interval() {
    let (n_left, n_right) = (8_000, 10_000);
    let between = -30..=50;
    for slots in [1, 2] {
        let flow = Dataflow::new();
        let watermarks = Watermarks::bounded(Duration::from_millis(20)).every(Duration::ZERO);
        let left = flow
            .generate(n_left, left_record)
            .event_time(|r| r.1, watermarks)
            .key_by(|r| r.0);
        let right = flow
            .generate(n_right, right_record)
            .event_time(|r| r.1, watermarks)
            .key_by(|r| r.0);
        let out = left
            .interval_join(
                right,
                between.clone(),
                |l| l.1,
                |r| r.1,
                |key, l, r| (*key, l.1, r.1),
            )
            .collect();
        let report = run(&flow, &config(slots, 32 << 20));
        let mut got = out.take();
        got.sort_unstable();
        let mut want = Vec::new();
        for l in (0..n_left).map(left_record) {
            for r in (0..n_right).map(right_record) {
                if l.0 == r.0 && between.contains(&(r.1 - l.1)) {
                    want.push((l.0, l.1, r.1));
                }
            }
        }
        want.sort_unstable();
        assert!(!want.is_empty());
        assert_eq!(got.len(), want.len(), "slots {slots}");
        assert!(got == want, "slots {slots}: the pairs differ");
        assert_eq!(report.late_records, 0, "slots {slots}");
    }
}

#[test]
fn processing_time_timers_fire_by_the_wall_clock_while_records_flow() {
    // 4000 records over about 200 ms (50 µs each at the source); each key's first record
    // sets a processing-time timer 40 ms ahead, which fires at a later record.
    let flow = Dataflow::new();
    let out = flow
        .generate(4000, |i| i % 10)
        .map(|i| {
            std::thread::sleep(Duration::from_micros(50));
            i
        })
        .key_by(|i| *i)
        .process(
            |ctx: &mut Keyed<'_, u64, (u64, bool), (u64, u64, bool)>, _: u64| {
                let now = ctx.now_ms();
                let (count, timed) = ctx.state().get_or_insert_default();
                *count += 1;
                if !*timed {
                    *timed = true;
                    ctx.set_processing_timer(now + 40);
                }
                Ok(())
            },
            |ctx, _| {
                let key = *ctx.key();
                let by_clock = ctx.fired_by_processing_time();
                let count = ctx.state().map_or(0, |(count, _)| count);
                ctx.emit((key, count, by_clock));
                Ok(())
            },
        )
        .collect();
    run(&flow, &config(1, 16 << 20));
    let mut fired = out.take();
    fired.sort_unstable();
    assert_eq!(fired.len(), 10, "one firing per key: {fired:?}");
    for (key, count, by_clock) in fired {
        assert!(by_clock, "key {key}");
        assert!(
            count > 0 && count < 400,
            "key {key} fired mid-stream, after {count}"
        );
    }
}
