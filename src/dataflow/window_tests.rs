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
