//! Checkpoints against failure-free runs: a windowed job that fails once mid-stream
//! restarts from its latest checkpoint and commits exactly the failure-free output; a
//! corrupt checkpoint is skipped (or named, when asked for); operators that cannot
//! snapshot refuse.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::tests::config;
use super::*;
use crate::checkpoint::{CheckpointConfig, latest_valid};
use crate::config::Config;

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Per key (of 7) and 1 s tumbling window of event time: the count and sum of values
/// `i` at time `i` ms, written exactly once to `out`. Record `fail_at` (once, while
/// `armed`) fails its task; every 2000 records wait 1 ms, so checkpoints come between.
fn windowed(flow: &Dataflow, n: u64, out: &Path, fail_at: u64, armed: Arc<AtomicBool>) {
    windowed_by(flow, (n, 1), 7, out, (fail_at, armed), Slow::No);
}

/// How [`windowed_by`] is slowed down.
enum Slow {
    No,
    /// Until this checkpoint (of this directory) completes, every 100th record waits 1 ms.
    UntilComplete(PathBuf, u64),
}

/// [`windowed`] with `keys` keys and `per_ms` records per millisecond of event time.
fn windowed_by(
    flow: &Dataflow,
    (n, per_ms): (u64, u64),
    keys: u64,
    out: &Path,
    (fail_at, armed): (u64, Arc<AtomicBool>),
    slow: Slow,
) {
    let slow_until = match slow {
        Slow::No => None,
        Slow::UntilComplete(dir, id) => Some((dir, id)),
    };
    flow.generate(n, |i| i)
        .map(move |i| {
            // Until checkpoint `slow_until` completes, every 100th record waits 1 ms.
            let slow = slow_until
                .as_ref()
                .is_some_and(|(dir, id)| i % 100 == 0 && !crate::checkpoint::is_complete(dir, *id));
            if slow || i % 2000 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            i
        })
        .try_map(fails_once(fail_at, armed))
        .event_time(
            move |i| (i / per_ms) as i64,
            Watermarks::bounded(Duration::ZERO).every(Duration::ZERO),
        )
        .key_by(move |i| i * 7919 % keys)
        .window(Windows::tumbling(Duration::from_secs(1)), move |i| {
            (i / per_ms) as i64
        })
        .aggregate(|i| (1u64, *i), add_count_sum)
        .write_committed(out, |(window, key, (count, sum))| {
            format!("{} {key} {count} {sum}", window.start)
        });
}

/// The failure-free rows of [`windowed`] over `n` records (2 slots), written to `out`.
fn windowed_rows(n: u64, out: &Path) -> Vec<String> {
    let flow = Dataflow::new();
    windowed(&flow, n, out, u64::MAX, Arc::default());
    runtime::execute(&flow, &config(2, 16 << 20), None).unwrap();
    sorted(read_committed(out).unwrap())
}

/// Runs [`windowed`] into `out` with checkpoints, failing at record 90 000 with no
/// restart left: the job fails and its checkpoints stay. Answers the latest valid one.
fn fail_without_restarts(n: u64, out: &Path, checkpoints: &Path) -> u64 {
    let flow = Dataflow::new();
    windowed(&flow, n, out, 90_000, Arc::new(AtomicBool::new(true)));
    let mut first = checkpointed(2, checkpoints);
    first.checkpoint.as_mut().unwrap().restarts = 0;
    let err = runtime::execute(&flow, &first, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("induced failure"), "{err}");
    let (latest, _) = latest_valid(checkpoints).unwrap();
    latest.expect("a checkpoint before the failure")
}

fn checkpointed(slots: usize, dir: &Path) -> Config {
    Config {
        barrier_interval: Some(Duration::from_millis(10)),
        checkpoint: Some(CheckpointConfig::new(dir)),
        ..config(slots, 16 << 20)
    }
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort_unstable();
    lines
}

/// Asserts `got` (sorted) equals `want`, naming a few differences.
fn assert_same(got: Vec<String>, want: &[String], what: &str) {
    let got = sorted(got);
    if got == want {
        return;
    }
    let (got_set, want_set): (HashSet<&String>, HashSet<&String>) =
        (got.iter().collect(), want.iter().collect());
    let missing: Vec<&&String> = want_set.difference(&got_set).take(5).collect();
    let extra: Vec<&&String> = got_set.difference(&want_set).take(5).collect();
    assert!(
        got == want,
        "{what}: {} lines, want {}; missing {missing:?}, extra {extra:?}",
        got.len(),
        want.len()
    );
}

/// No file of the sink's is left pending, and no temporary file of the checkpoints.
fn assert_clean(out: &Path, checkpoints: &Path) {
    let pending: Vec<_> = std::fs::read_dir(out.join(".pending")).unwrap().collect();
    assert!(pending.is_empty(), "pending files left: {pending:?}");
    for entry in std::fs::read_dir(checkpoints).unwrap() {
        let dir = entry.unwrap().path();
        for file in std::fs::read_dir(&dir).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "{} holds {name}", dir.display());
        }
    }
}

/// A transform that fails once, at record `fail_at`, while `armed`.
fn fails_once(
    fail_at: u64,
    armed: Arc<AtomicBool>,
) -> impl Fn(u64) -> std::result::Result<u64, String> + Send + Sync + 'static {
    move |i| {
        if i == fail_at && armed.swap(false, Ordering::SeqCst) {
            return Err(format!("induced failure at record {i}"));
        }
        Ok(i)
    }
}

/// Merges `(count, sum)` accumulators.
fn add_count_sum(a: &mut (u64, u64), b: (u64, u64)) {
    a.0 += b.0;
    a.1 += b.1;
}

#[test]
fn a_failure_restarts_from_the_latest_checkpoint_and_commits_exactly_once() {
    let n = 120_000;
    for slots in [1, 2] {
        let root = TempDir::new(&format!("chk-exactly-once-{slots}"));
        let (plain, out, checkpoints) = (
            root.path().join("plain"),
            root.path().join("out"),
            root.path().join("checkpoints"),
        );
        let flow = Dataflow::new();
        windowed(&flow, n, &plain, u64::MAX, Arc::default());
        runtime::execute(&flow, &config(slots, 16 << 20), None).unwrap();
        let want = sorted(read_committed(&plain).unwrap());
        assert_eq!(want.len(), 7 * 120, "slots {slots}");

        let flow = Dataflow::new();
        windowed(&flow, n, &out, 90_000, Arc::new(AtomicBool::new(true)));
        let report = runtime::execute(&flow, &checkpointed(slots, &checkpoints), None).unwrap();
        assert!(report.leak_free);
        assert_eq!(report.restarts, 1, "slots {slots}");
        assert_same(
            read_committed(&out).unwrap(),
            &want,
            &format!("slots {slots}"),
        );
        let (latest, skipped) = latest_valid(&checkpoints).unwrap();
        assert!(latest.is_some_and(|id| id > 3), "slots {slots}: {latest:?}");
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_clean(&out, &checkpoints);
    }
}

#[test]
fn a_restore_from_a_retained_checkpoint_finishes_the_job_exactly_once() {
    // A run that fails with no restarts left keeps its checkpoints; a second run started
    // from the latest commits the rest.
    let n = 120_000;
    let root = TempDir::new("chk-restore-from");
    let (plain, out, checkpoints) = (
        root.path().join("plain"),
        root.path().join("out"),
        root.path().join("checkpoints"),
    );
    let want = windowed_rows(n, &plain);
    let latest = Some(fail_without_restarts(n, &out, &checkpoints));

    let flow = Dataflow::new();
    windowed(&flow, n, &out, u64::MAX, Arc::default());
    let mut second = checkpointed(2, &checkpoints);
    second.checkpoint.as_mut().unwrap().restore = latest;
    runtime::execute(&flow, &second, None).unwrap();
    assert_same(read_committed(&out).unwrap(), &want, "restored");
    assert_clean(&out, &checkpoints);
}

#[test]
fn a_corrupt_checkpoint_is_skipped_or_named_never_restored() {
    let root = TempDir::new("chk-corrupt");
    let (out, checkpoints) = (root.path().join("out"), root.path().join("checkpoints"));
    let flow = Dataflow::new();
    windowed(&flow, 60_000, &out, u64::MAX, Arc::default());
    runtime::execute(&flow, &checkpointed(2, &checkpoints), None).unwrap();
    let mut complete: Vec<u64> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("MANIFEST").is_file())
        .map(|p| {
            p.file_name().unwrap().to_str().unwrap()[4..]
                .parse()
                .unwrap()
        })
        .collect();
    complete.sort_unstable();
    assert!(complete.len() >= 2, "{complete:?}");
    let latest = *complete.last().unwrap();
    let victim = checkpoints
        .join(format!("chk-{latest:08}"))
        .join("s0-t1.snap");
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();

    let (found, skipped) = latest_valid(&checkpoints).unwrap();
    assert_eq!(found, Some(complete[complete.len() - 2]));
    assert!(skipped[0].contains("s0-t1.snap"), "{skipped:?}");

    // Asked for by id, the corrupt one is an error naming the file.
    let flow = Dataflow::new();
    windowed(&flow, 60_000, &out, u64::MAX, Arc::default());
    let mut config = checkpointed(2, &checkpoints);
    config.checkpoint.as_mut().unwrap().restore = Some(latest);
    let err = runtime::execute(&flow, &config, None)
        .unwrap_err()
        .to_string();
    let damaged = err.contains("checksum") || err.contains("damaged");
    assert!(err.contains("s0-t1.snap") && damaged, "{err}");
}

#[test]
fn an_operator_without_snapshots_refuses_a_checkpointed_job() {
    let root = TempDir::new("chk-refuse");
    let flow = Dataflow::new();
    let _ = flow.generate(1000, |i| i).sort_by(|i| *i, None).collect();
    let err = runtime::execute(&flow, &checkpointed(1, root.path()), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sort") && err.contains("checkpoints"), "{err}");
}

#[test]
fn a_checkpoint_a_task_cannot_write_is_declined_and_the_job_goes_on() {
    // Checkpoint 4's directory cannot be made (a file has its name): every task declines
    // it, it never completes, the later ones do (the source runs slowly until checkpoint
    // 6 completed), and the output is whole.
    let root = TempDir::new("chk-declined");
    let (plain, out, checkpoints) = (
        root.path().join("plain"),
        root.path().join("out"),
        root.path().join("checkpoints"),
    );
    let flow = Dataflow::new();
    windowed(&flow, 60_000, &plain, u64::MAX, Arc::default());
    runtime::execute(&flow, &config(2, 16 << 20), None).unwrap();
    let want = sorted(read_committed(&plain).unwrap());

    std::fs::create_dir_all(&checkpoints).unwrap();
    std::fs::write(checkpoints.join("chk-00000004"), b"not weir's").unwrap();
    let flow = Dataflow::new();
    windowed_by(
        &flow,
        (60_000, 1),
        7,
        &out,
        (u64::MAX, Arc::default()),
        Slow::UntilComplete(checkpoints.clone(), 6),
    );
    let report = runtime::execute(&flow, &checkpointed(2, &checkpoints), None).unwrap();
    assert_eq!(report.restarts, 0);
    assert!(
        report
            .checkpoints_declined
            .iter()
            .any(|why| why.starts_with("checkpoint 4,")),
        "{:?}",
        report.checkpoints_declined
    );
    assert!(report.checkpoints.iter().all(|c| c.id != 4));
    assert!(
        report.checkpoints.iter().any(|c| c.id > 4),
        "{:?}",
        report.checkpoints
    );
    assert_same(read_committed(&out).unwrap(), &want, "declined");
    // The file in its way is not weir's: left as it was.
    assert_eq!(
        std::fs::read(checkpoints.join("chk-00000004")).unwrap(),
        b"not weir's"
    );
}

#[test]
fn window_state_larger_than_memory_checkpoints_and_restores_right() {
    // 100 000 records and about 63 000 groups per 1 s window at a 4 MiB budget of 4 KiB
    // segments: the window table spills; a failure mid-stream restores it from the
    // checkpoint.
    let n = 300_000;
    let root = TempDir::new("chk-spilled");
    let (plain, out, checkpoints) = (
        root.path().join("plain"),
        root.path().join("out"),
        root.path().join("checkpoints"),
    );
    let small = |config: Config| Config {
        segment_size: 4096,
        memory: 4 << 20,
        ..config
    };
    let flow = Dataflow::new();
    windowed_by(
        &flow,
        (n, 100),
        100_000,
        &plain,
        (u64::MAX, Arc::default()),
        Slow::No,
    );
    runtime::execute(&flow, &small(config(1, 4 << 20)), None).unwrap();
    let want = sorted(read_committed(&plain).unwrap());

    let flow = Dataflow::new();
    let armed = Arc::new(AtomicBool::new(true));
    windowed_by(&flow, (n, 100), 100_000, &out, (250_000, armed), Slow::No);
    let report = runtime::execute(&flow, &small(checkpointed(1, &checkpoints)), None).unwrap();
    assert_eq!(report.restarts, 1);
    assert!(report.spilled_bytes > 0, "the window state did not spill");
    assert_same(read_committed(&out).unwrap(), &want, "spilled");
    assert_clean(&out, &checkpoints);
}

#[test]
fn a_failed_runs_unfinished_checkpoint_is_never_completed_by_the_restarted_run() {
    // A run fails with the next checkpoint acknowledged by some of its tasks but not all:
    // its directory holds their snapshot files. The restarted run numbers its checkpoints
    // above it, so that checkpoint never completes with the old files beside new ones.
    let n = 120_000;
    let root = TempDir::new("chk-stale-run");
    let (plain, out, checkpoints) = (
        root.path().join("plain"),
        root.path().join("out"),
        root.path().join("checkpoints"),
    );
    let want = windowed_rows(n, &plain);
    let latest = fail_without_restarts(n, &out, &checkpoints);
    // Every file of the latest checkpoint but one source task's, as the failed run's
    // acknowledgements of the next one (its window state older than that checkpoint's).
    let (done, stale) = (
        checkpoints.join(format!("chk-{latest:08}")),
        checkpoints.join(format!("chk-{:08}", latest + 1)),
    );
    std::fs::create_dir_all(&stale).unwrap();
    for entry in std::fs::read_dir(&done).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "MANIFEST" && name != "s0-t0.snap" && !stale.join(&name).exists() {
            std::fs::copy(done.join(&name), stale.join(&name)).unwrap();
        }
    }

    let flow = Dataflow::new();
    windowed(&flow, n, &out, u64::MAX, Arc::default());
    let mut second = checkpointed(2, &checkpoints);
    second.checkpoint.as_mut().unwrap().restore = Some(latest);
    let report = runtime::execute(&flow, &second, None).unwrap();
    assert!(
        report.checkpoints.iter().all(|c| c.id > latest + 1),
        "{:?}",
        report.checkpoints
    );
    assert_same(
        read_committed(&out).unwrap(),
        &want,
        "after a stale checkpoint",
    );
    assert!(
        !stale.exists(),
        "the failed run's checkpoint was not deleted"
    );
    assert_clean(&out, &checkpoints);

    // A job that starts afresh refuses a directory holding an earlier run's checkpoints.
    let flow = Dataflow::new();
    windowed(
        &flow,
        1000,
        &root.path().join("again"),
        u64::MAX,
        Arc::default(),
    );
    let err = runtime::execute(&flow, &checkpointed(2, &checkpoints), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("earlier run"), "{err}");
}

/// A key's tally: records, their sum, padding.
type Tally = (u64, u64, String);
/// A timer's firing: key, time, count, sum.
type Firing = (u64, i64, u64, u64);

/// Per key of `keys` (records `i`, key `i * 7919 % keys`, time `i / 20` ms): a tally with
/// 600 bytes of padding and an event-time timer at each record's time, whose firing
/// writes `key time count sum`, exactly once to `out`. Record `fail_at` fails once.
fn keyed_tallies(flow: &Dataflow, (n, keys): (u64, u64), out: &Path, fail: (u64, Arc<AtomicBool>)) {
    let (fail_at, armed) = fail;
    flow.generate(n, |i| i)
        .map(|i| {
            if i % 2000 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            i
        })
        .try_map(fails_once(fail_at, armed))
        .event_time(
            |i| (i / 20) as i64,
            Watermarks::bounded(Duration::from_millis(20)).every(Duration::ZERO),
        )
        .key_by(move |i| i * 7919 % keys)
        .process(
            |ctx: &mut Keyed<'_, u64, Tally, Firing>, i: u64| {
                let state = ctx.state().get_or_insert_default();
                state.0 += 1;
                state.1 += i % 1000;
                if state.2.is_empty() {
                    state.2 = "x".repeat(600);
                }
                ctx.set_timer((i / 20) as i64);
                Ok(())
            },
            |ctx, time| {
                let key = *ctx.key();
                let (count, sum, _) = ctx.state().clone().ok_or("a timer without state")?;
                ctx.emit((key, time, count, sum));
                Ok(())
            },
        )
        .write_committed(out, |(key, time, count, sum)| {
            format!("{key} {time} {count} {sum}")
        });
}

#[test]
fn keyed_process_state_larger_than_memory_checkpoints_and_restores_right() {
    // 20 000 keys × ~650 bytes: about 13 MB of keyed state at a 4 MiB budget of 4 KiB
    // segments, with timers; a failure three quarters in restores state and timers.
    let (n, keys) = (160_000, 20_000);
    let root = TempDir::new("chk-keyed");
    let (plain, out, checkpoints) = (
        root.path().join("plain"),
        root.path().join("out"),
        root.path().join("checkpoints"),
    );
    let small = |config: Config| Config {
        segment_size: 4096,
        memory: 4 << 20,
        ..config
    };
    let flow = Dataflow::new();
    keyed_tallies(&flow, (n, keys), &plain, (u64::MAX, Arc::default()));
    runtime::execute(&flow, &small(config(1, 4 << 20)), None).unwrap();
    let want = sorted(read_committed(&plain).unwrap());
    assert!(want.len() > n as usize / 2, "{} firings", want.len());

    let flow = Dataflow::new();
    let armed = Arc::new(AtomicBool::new(true));
    keyed_tallies(&flow, (n, keys), &out, (n * 3 / 4, armed));
    let report = runtime::execute(&flow, &small(checkpointed(1, &checkpoints)), None).unwrap();
    assert_eq!(report.restarts, 1);
    assert!(report.spilled_bytes > 0, "the keyed state did not spill");
    let restored = report.checkpoints.first().map_or(0, |c| c.id);
    assert!(
        restored > 1,
        "no checkpoint before the failure: {:?}",
        report.checkpoints
    );
    assert_same(read_committed(&out).unwrap(), &want, "keyed process");
    assert_clean(&out, &checkpoints);
}

#[test]
fn a_checkpoint_not_acknowledged_in_time_is_declined_never_completed() {
    // Checkpoint 1 of a job of two tasks: one acknowledges, the other does not within the
    // timeout; the coordinator declines it (its DECLINED file), the schedule counts it
    // settled, and the late acknowledgement does not complete it.
    let root = TempDir::new("chk-timeout");
    let config = CheckpointConfig::new(root.path());
    let store = crate::checkpoint::Store::new(&config, 2, Duration::from_millis(20)).unwrap();
    let dir = root.path().join("chk-00000001");
    std::fs::create_dir_all(&dir).unwrap();
    // A task file's last 12 bytes: the barrier's scheduled time, then the checksum.
    let snap = |scheduled_us: u64| {
        let mut bytes = b"WEIRSNP1 any pieces".to_vec();
        bytes.extend_from_slice(&scheduled_us.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes
    };
    let now = super::event_time_micros();
    std::fs::write(dir.join("s0-t0.snap"), snap(now)).unwrap();
    assert!(store.complete_ready().unwrap().is_empty());
    assert!(!store.settled(1), "declined before its time");
    std::thread::sleep(Duration::from_millis(30));
    assert!(store.complete_ready().unwrap().is_empty());
    assert!(store.settled(1), "not declined after its time");
    assert!(dir.join("DECLINED").is_file());
    let declined = store.declined();
    assert!(
        declined
            .iter()
            .any(|why| why.starts_with("checkpoint 1: timed out") && why.contains("1 of 2")),
        "{declined:?}"
    );
    std::fs::write(dir.join("s1-t0.snap"), snap(now)).unwrap();
    assert!(store.complete_ready().unwrap().is_empty());
    assert!(!crate::checkpoint::is_complete(root.path(), 1));
}

#[test]
fn a_job_that_starts_afresh_never_replaces_an_earlier_runs_output() {
    let root = TempDir::new("chk-earlier-output");
    let out = root.path().join("out");
    let first = windowed_rows(20_000, &out);
    let flow = Dataflow::new();
    windowed(&flow, 20_000, &out, u64::MAX, Arc::default());
    let err = runtime::execute(&flow, &config(2, 16 << 20), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("earlier run") && err.contains("part-s"),
        "{err}"
    );
    assert_eq!(
        sorted(read_committed(&out).unwrap()),
        first,
        "the output changed"
    );
}

#[test]
fn unaligned_checkpoints_record_channel_state_and_restore_exactly_once() {
    // Every barrier is released at its first arrival at a window task's gate (timeout
    // zero): the records its other channel sends before its own barrier are the
    // checkpoint's channel state, replayed into the window operator on restore.
    let n = 120_000;
    let root = TempDir::new("chk-unaligned");
    let (plain, out, checkpoints) = (
        root.path().join("plain"),
        root.path().join("out"),
        root.path().join("checkpoints"),
    );
    let want = windowed_rows(n, &plain);
    let flow = Dataflow::new();
    windowed(&flow, n, &out, 90_000, Arc::new(AtomicBool::new(true)));
    let config = Config {
        alignment_timeout: Some(Duration::ZERO),
        ..checkpointed(2, &checkpoints)
    };
    let report = runtime::execute(&flow, &config, None).unwrap();
    assert_eq!(report.restarts, 1);
    assert!(
        report.barriers_unaligned > 0,
        "no barrier was released unaligned"
    );
    assert_same(read_committed(&out).unwrap(), &want, "unaligned");
    assert_clean(&out, &checkpoints);
}

/// Per key (of 7) and 1 s tumbling window: the count and sum of `0..n`, the even values
/// from one source and the odd from another, merged (two gates in one task), exactly once
/// into `out`. Value `fail_at` (even) fails once while armed.
fn merged_windows(flow: &Dataflow, n: u64, out: &Path, (fail_at, armed): (u64, Arc<AtomicBool>)) {
    let side = |parity: u64| {
        flow.generate(n / 2, move |i| i)
            .map(move |i| {
                if i % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                2 * i + parity
            })
            .event_time(
                |i| *i as i64,
                Watermarks::bounded(Duration::ZERO).every(Duration::from_millis(1)),
            )
    };
    let left = side(0).try_map(fails_once(fail_at, armed));
    left.merge(side(1))
        .key_by(|i| i * 7919 % 7)
        .window(Windows::tumbling(Duration::from_secs(1)), |i| *i as i64)
        .aggregate(|i| (1u64, *i), add_count_sum)
        .write_committed(out, |(window, key, (count, sum))| {
            format!("{} {key} {count} {sum}", window.start)
        });
}

#[test]
fn a_merge_checkpoints_unaligned_and_restores_exactly_once() {
    // Both inputs of the merge task and the window task's gate release barriers at their
    // first arrival; the merge records what the input behind sends until its barrier.
    let n = 120_000;
    let root = TempDir::new("chk-merge-unaligned");
    let (plain, out, checkpoints) = (
        root.path().join("plain"),
        root.path().join("out"),
        root.path().join("checkpoints"),
    );
    let flow = Dataflow::new();
    merged_windows(&flow, n, &plain, (u64::MAX, Arc::default()));
    runtime::execute(&flow, &config(2, 16 << 20), None).unwrap();
    let want = sorted(read_committed(&plain).unwrap());
    assert_eq!(want.len(), 7 * 120);
    for timeout in [None, Some(Duration::ZERO)] {
        let out = out.join(format!("{timeout:?}"));
        let checkpoints = checkpoints.join(format!("{timeout:?}"));
        let flow = Dataflow::new();
        merged_windows(&flow, n, &out, (90_000, Arc::new(AtomicBool::new(true))));
        let config = Config {
            alignment_timeout: timeout,
            ..checkpointed(2, &checkpoints)
        };
        let report = runtime::execute(&flow, &config, None).unwrap();
        assert_eq!(report.restarts, 1, "{timeout:?}");
        assert_eq!(
            report.barriers_unaligned > 0,
            timeout.is_some(),
            "{timeout:?}"
        );
        assert_same(
            read_committed(&out).unwrap(),
            &want,
            &format!("{timeout:?}"),
        );
        assert_clean(&out, &checkpoints);
    }
}

/// Per key (of 5): sessions of 20 ms gap over records `i` at time `i / 10 + i / 4000 * 40`
/// ms (ten records a millisecond in runs of 4000, each run ending in a 40 ms pause, which
/// cuts the sessions), their count and sum, exactly once to `out`. Record `fail_at` fails
/// once while armed. (The session operator reads its table at each watermark that may
/// close a session, about once a gap: kept to a few hundred here.)
fn sessions(flow: &Dataflow, n: u64, out: &Path, (fail_at, armed): (u64, Arc<AtomicBool>)) {
    let time = |i: u64| (i / 10 + i / 4000 * 40) as i64;
    flow.generate(n, |i| i)
        .map(|i| {
            if i % 500 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            i
        })
        .try_map(fails_once(fail_at, armed))
        .event_time(
            move |i| time(*i),
            Watermarks::bounded(Duration::ZERO).every(Duration::from_millis(1)),
        )
        .key_by(|i| i % 5)
        .session_windows(Duration::from_millis(20), move |i| time(*i))
        .aggregate(|i| (1u64, *i), add_count_sum)
        .write_committed(out, |(window, key, (count, sum))| {
            format!("{} {} {key} {count} {sum}", window.start, window.end)
        });
}

#[test]
fn session_windows_checkpoint_and_restore_exactly_once() {
    let n = 20_000;
    let root = TempDir::new("chk-sessions");
    let (plain, out, checkpoints) = (
        root.path().join("plain"),
        root.path().join("out"),
        root.path().join("checkpoints"),
    );
    let flow = Dataflow::new();
    sessions(&flow, n, &plain, (u64::MAX, Arc::default()));
    runtime::execute(&flow, &config(2, 16 << 20), None).unwrap();
    let want = sorted(read_committed(&plain).unwrap());
    assert_eq!(want.len(), 5 * 5, "one session per key and run");
    let flow = Dataflow::new();
    sessions(&flow, n, &out, (15_000, Arc::new(AtomicBool::new(true))));
    let report = runtime::execute(&flow, &checkpointed(2, &checkpoints), None).unwrap();
    assert_eq!(report.restarts, 1);
    assert_same(read_committed(&out).unwrap(), &want, "sessions");
    assert_clean(&out, &checkpoints);
}
