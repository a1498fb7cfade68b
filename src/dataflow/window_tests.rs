//! Event time and windows against plain models, in one process with one and two slots.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tests::{config, run};
use super::*;

/// Counts per (window start, key) of `(key, time)` records, as a window operator should
/// give them.
fn model(records: impl Iterator<Item = (u64, i64)>, windows: Windows) -> BTreeMap<(i64, u64), u64> {
    let mut counts = BTreeMap::new();
    for (key, time) in records {
        windows
            .assign(time, |window| {
                *counts.entry((window.start, key)).or_insert(0) += 1;
                Ok(())
            })
            .unwrap();
    }
    counts
}

fn counted(out: Vec<(Window, u64, u64)>) -> BTreeMap<(i64, u64), u64> {
    let mut got = BTreeMap::new();
    for (window, key, count) in out {
        assert!(
            got.insert((window.start, key), count).is_none(),
            "window {window:?} key {key} twice"
        );
    }
    got
}

/// Record `i`: its key, and a time that grows with `i` but comes up to `jitter` ms early.
fn record(i: u64, jitter: u64) -> (u64, i64) {
    let early = if jitter == 0 { 0 } else { i * 7919 % jitter };
    (i * 31 % 97, (i / 10) as i64 - early as i64)
}

fn windowed_counts(
    flow: &Dataflow,
    n: u64,
    jitter: u64,
    watermarks: Watermarks,
    windows: Windows,
) -> Collected<(Window, u64, u64)> {
    flow.generate(n, move |i| record(i, jitter))
        .event_time(|r| r.1, watermarks)
        .key_by(|r| r.0)
        .window(windows, |r| r.1)
        .aggregate(|_| 1u64, |a, b| *a += b)
        .collect()
}

#[test]
fn tumbling_windows_equal_the_model_and_fire_before_the_input_ends() {
    let windows = Windows::tumbling(Duration::from_millis(100));
    for slots in [1, 2] {
        let flow = Dataflow::new();
        let watermarks = Watermarks::ascending().every(Duration::ZERO);
        let out = windowed_counts(&flow, 60_000, 0, watermarks, windows);
        let report = run(&flow, &config(slots, 32 << 20));
        assert_eq!(
            counted(out.take()),
            model((0..60_000).map(|i| record(i, 0)), windows),
            "slots {slots}"
        );
        assert_eq!(report.late_records, 0);
        assert!(report.windows_fired > 0, "the watermark fired windows");
    }
}

#[test]
fn records_out_of_order_within_the_bound_change_nothing() {
    let windows = Windows::sliding(Duration::from_millis(100), Duration::from_millis(20));
    for slots in [1, 2] {
        let flow = Dataflow::new();
        let watermarks = Watermarks::bounded(Duration::from_millis(60)).every(Duration::ZERO);
        let out = windowed_counts(&flow, 40_000, 50, watermarks, windows);
        let report = run(&flow, &config(slots, 32 << 20));
        assert_eq!(
            counted(out.take()),
            model((0..40_000).map(|i| record(i, 50)), windows),
            "slots {slots}"
        );
        assert_eq!(report.late_records, 0, "slots {slots}");
    }
}

#[test]
fn late_records_are_counted_and_dropped() {
    // Every 1000th record comes 500 ms behind its neighbours: past a 100 ms window's
    // end once the watermark (bound 0, emitted every 64 records) follows the others.
    let late = |i: u64| i >= 1000 && i.is_multiple_of(1000);
    let at = move |i: u64| {
        let (key, time) = record(i, 0);
        (key, if late(i) { time - 500 } else { time })
    };
    let windows = Windows::tumbling(Duration::from_millis(100));
    let flow = Dataflow::new();
    let out = flow
        .generate(30_000, at)
        .event_time(|r| r.1, Watermarks::ascending().every(Duration::ZERO))
        .key_by(|r| r.0)
        .window(windows, |r| r.1)
        .aggregate(|_| 1u64, |a, b| *a += b)
        .collect();
    let report = run(&flow, &config(1, 32 << 20));
    assert_eq!(report.late_records, 29);
    assert_eq!(
        counted(out.take()),
        model((0..30_000).filter(|&i| !late(i)).map(at), windows)
    );
}

/// A sink that notes when each record came.
struct Arrivals(Arc<Mutex<Vec<Instant>>>);

impl Push<(Window, u64, u64)> for Arrivals {
    fn push(&mut self, _record: (Window, u64, u64)) -> Result<()> {
        self.0.lock().unwrap().push(Instant::now());
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

#[test]
fn an_idle_source_task_does_not_stall_the_watermark() {
    let flow = Dataflow::new();
    let quiet_until = Arc::new(Mutex::new(None));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let ended = Arc::clone(&quiet_until);
    let sink = Arc::clone(&arrivals);
    flow.source_push("two tasks", 0, move |ctx, down| {
        if ctx.task() == 0 {
            for i in 0..20_000u64 {
                down.push((i % 10, (i / 10) as i64))?;
            }
        } else {
            // One record, then nothing for a long while.
            down.push((1, 0))?;
            std::thread::sleep(Duration::from_millis(1500));
            *ended.lock().unwrap() = Some(Instant::now());
        }
        Ok(())
    })
    .event_time(
        |r: &(u64, i64)| r.1,
        Watermarks::ascending()
            .every(Duration::ZERO)
            .idle_after(Duration::from_millis(50)),
    )
    .key_by(|r| r.0)
    .window(Windows::tumbling(Duration::from_millis(100)), |r| r.1)
    .aggregate(|_| 1u64, |a, b| *a += b)
    .sink(move |_| Ok(Box::new(Arrivals(Arc::clone(&sink)))));
    run(&flow, &config(2, 32 << 20));
    let first = *arrivals.lock().unwrap().iter().min().expect("results");
    let quiet_end = quiet_until.lock().unwrap().expect("task 1 ran");
    assert!(
        first + Duration::from_millis(500) < quiet_end,
        "the first window came {:?} before the quiet task ended",
        quiet_end.saturating_duration_since(first)
    );
}

#[test]
fn window_state_larger_than_its_memory_spills_and_stays_right() {
    // 200k distinct keys in one window: far more groups than the smallest share holds.
    let windows = Windows::tumbling(Duration::from_secs(3600));
    let flow = Dataflow::new();
    let out = flow
        .generate(200_000, |i| (i, (i / 100) as i64))
        .event_time(|r| r.1, Watermarks::ascending())
        .key_by(|r| r.0)
        .window(windows, |r| r.1)
        .aggregate(|r| r.0, |a, b| *a += b)
        .collect();
    let report = run(&flow, &config(1, 4 << 20));
    let spilled: u64 = report
        .operators
        .iter()
        .filter(|op| op.operator == "window")
        .map(|op| op.spilled_bytes)
        .sum();
    assert!(spilled > 0, "the window's table spilled");
    let got = out.take();
    assert_eq!(got.len(), 200_000);
    assert!(got.iter().all(|(w, key, sum)| key == sum && w.start == 0));
}

#[test]
fn merge_reads_both_sides_at_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // The left side does not end until the merged stream has taken a right record: a
    // union (which reads the left side to its end first) would wait forever.
    let seen_right = Arc::new(AtomicBool::new(false));
    let flow = Dataflow::new();
    let waiting = Arc::clone(&seen_right);
    let left = flow.source_push("left", 0, move |ctx, down| {
        let (task, tasks) = (ctx.task() as u64, ctx.parallelism() as u64);
        for i in (task..1_000u64).step_by(tasks as usize) {
            down.push(i)?;
        }
        let started = Instant::now();
        while !waiting.load(Ordering::Acquire) {
            ctx.check_cancelled()?;
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the right side never came"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    });
    let right = flow.generate(1_000, |i| 1_000_000 + i);
    let seen = Arc::clone(&seen_right);
    let out = left
        .merge(right)
        .map(move |x| {
            if x >= 1_000_000 {
                seen.store(true, Ordering::Release);
            }
            x
        })
        .collect();
    run(&flow, &config(2, 16 << 20));
    let mut got = out.take();
    got.sort_unstable();
    let expected: Vec<u64> = (0..1_000).chain(1_000_000..1_001_000).collect();
    assert!(
        got == expected,
        "{} records, not the 2,000 of both sides",
        got.len()
    );
}

#[test]
fn window_join_equals_the_pairs_of_each_key_and_window() {
    let windows = Windows::tumbling(Duration::from_millis(50));
    let left_at = |i: u64| (i % 13, (i / 4) as i64);
    let right_at = |i: u64| (i % 7, (i / 3) as i64);
    for slots in [1, 2] {
        let flow = Dataflow::new();
        let left = flow
            .generate(2_000, left_at)
            .event_time(|r| r.1, Watermarks::ascending().every(Duration::ZERO));
        let right = flow
            .generate(1_500, right_at)
            .event_time(|r| r.1, Watermarks::ascending().every(Duration::ZERO));
        let out = left
            .key_by(|r| r.0)
            .window_join(
                right.key_by(|r| r.0),
                windows,
                |l| l.1,
                |r| r.1,
                |key, l, r| (*key, l.1, r.1),
            )
            .collect();
        let report = run(&flow, &config(slots, 32 << 20));
        let mut got: Vec<(i64, (u64, i64, i64))> = out
            .take()
            .into_iter()
            .map(|(w, row)| (w.start, row))
            .collect();
        got.sort_unstable();
        let mut expected = Vec::new();
        for l in (0..2_000).map(left_at) {
            for r in (0..1_500).map(right_at) {
                let (wl, wr) = (l.1.div_euclid(50), r.1.div_euclid(50));
                if l.0 == r.0 && wl == wr {
                    expected.push((wl * 50, (l.0, l.1, r.1)));
                }
            }
        }
        expected.sort_unstable();
        assert_eq!(got, expected, "slots {slots}");
        assert!(report.windows_fired > 0, "slots {slots}");
        assert_eq!(report.late_records, 0);
    }
}

#[test]
fn a_window_process_function_sees_every_record_of_its_key_and_window() {
    let windows = Windows::tumbling(Duration::from_millis(100));
    let flow = Dataflow::new();
    let out = flow
        .generate(20_000, |i| record(i, 0))
        .event_time(|r| r.1, Watermarks::ascending().every(Duration::ZERO))
        .key_by(|r| r.0)
        .window(windows, |r| r.1)
        .process(|window, key, records| {
            // The records' times, summed, and their count: checked against the model.
            let sum: i64 = records.iter().map(|r| r.1).sum();
            assert!(records.iter().all(|r| r.0 == *key && r.1 >= window.start));
            [(window.start, *key, records.len() as u64, sum)]
        })
        .collect();
    let report = run(&flow, &config(2, 32 << 20));
    let mut expected: BTreeMap<(i64, u64), (u64, i64)> = BTreeMap::new();
    for (key, time) in (0..20_000).map(|i| record(i, 0)) {
        let e = expected
            .entry((time.div_euclid(100) * 100, key))
            .or_default();
        e.0 += 1;
        e.1 += time;
    }
    let got: BTreeMap<(i64, u64), (u64, i64)> = out
        .take()
        .into_iter()
        .map(|(start, key, n, sum)| ((start, key), (n, sum)))
        .collect();
    assert_eq!(got, expected);
    assert!(report.windows_fired > 0);
}

#[test]
fn session_windows_equal_the_model() {
    // Five keys; each key's records 15 ms apart, with a 515 ms pause every 40 records:
    // sessions of 40 records at a gap of 100 ms, fired as the stream goes.
    let at = |i: u64| (i % 5, (i * 3 + 500 * (i / 200)) as i64);
    let gap = 100i64;
    for slots in [1, 2] {
        let flow = Dataflow::new();
        let out = flow
            .generate(10_000, at)
            .event_time(|r| r.1, Watermarks::ascending().every(Duration::ZERO))
            .key_by(|r| r.0)
            .session_windows(Duration::from_millis(100), |r| r.1)
            .aggregate(|_| 1u64, |a, b| *a += b)
            .collect();
        let report = run(&flow, &config(slots, 32 << 20));
        let mut times: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
        for (key, time) in (0..10_000).map(at) {
            times.entry(key).or_default().push(time);
        }
        let mut expected = Vec::new();
        for (key, mut times) in times {
            times.sort_unstable();
            let (mut start, mut last, mut count) = (times[0], times[0], 0u64);
            for t in times {
                if t > last + gap {
                    expected.push((start, last + gap, key, count));
                    (start, count) = (t, 0);
                }
                last = t;
                count += 1;
            }
            expected.push((start, last + gap, key, count));
        }
        expected.sort_unstable();
        let mut got: Vec<(i64, i64, u64, u64)> = out
            .take()
            .into_iter()
            .map(|(w, key, n)| (w.start, w.end, key, n))
            .collect();
        got.sort_unstable();
        assert_eq!(got, expected, "slots {slots}");
        assert!(report.windows_fired > 0, "slots {slots}");
        assert_eq!(report.late_records, 0);
    }
}
