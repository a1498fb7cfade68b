//! An engine's own [`TransactionalSink`]: an in-memory ledger standing for a database
//! with transactions, kept across the restarts of one job as a database would be. Every
//! record becomes visible exactly once across a failure mid-stream, and across a failure
//! after the final checkpoint (the restart only commits).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tests::config;
use super::*;
use crate::checkpoint::{CheckpointConfig, latest_valid};
use crate::config::Config;
use crate::error::WeirError;

/// A transaction: (stage-task, begin id).
type Txn = (u64, u64);

/// The database: staged, prepared and committed transactions, and what is visible.
#[derive(Default)]
struct Ledger {
    staged: BTreeMap<Txn, Vec<u64>>,
    prepared: BTreeSet<Txn>,
    committed: BTreeSet<Txn>,
    visible: Vec<u64>,
    /// Commits that made records visible.
    commits: u64,
    /// The transaction whose commit fails once (while armed): the one holding this record.
    fail_commit_of: Option<(u64, Arc<AtomicBool>)>,
}

/// One task's connection to the ledger.
struct LedgerSink {
    ledger: Arc<Mutex<Ledger>>,
    task: u64,
}

impl TransactionalSink<u64> for LedgerSink {
    type Transaction = Txn;

    fn recover(&mut self, restored: Option<u64>) -> Result<()> {
        // Abort this task's transactions a failed run left after the checkpoint restored.
        let mut ledger = self.ledger.lock().unwrap();
        let after = |t: &Txn| t.0 == self.task && t.1 > restored.unwrap_or(0);
        ledger.staged.retain(|t, _| !after(t));
        ledger.prepared.retain(|t| !after(t));
        Ok(())
    }

    fn begin(&mut self, id: u64) -> Result<Txn> {
        let txn = (self.task, id);
        let mut ledger = self.ledger.lock().unwrap();
        assert!(!ledger.committed.contains(&txn), "{txn:?} begun twice");
        ledger.staged.insert(txn, Vec::new());
        Ok(txn)
    }

    fn write(&mut self, txn: &Txn, record: u64) -> Result<()> {
        let mut ledger = self.ledger.lock().unwrap();
        assert!(
            !ledger.prepared.contains(txn),
            "a write after the pre-commit"
        );
        ledger.staged.get_mut(txn).expect("begun").push(record);
        Ok(())
    }

    fn pre_commit(&mut self, txn: &Txn) -> Result<()> {
        self.ledger.lock().unwrap().prepared.insert(*txn);
        Ok(())
    }

    fn commit(&mut self, txn: Txn) -> Result<()> {
        let mut ledger = self.ledger.lock().unwrap();
        if ledger.committed.contains(&txn) {
            return Ok(());
        }
        assert!(
            ledger.prepared.contains(&txn),
            "{txn:?} committed unprepared"
        );
        if let Some((record, armed)) = &ledger.fail_commit_of
            && ledger.staged[&txn].contains(record)
            && armed.swap(false, Ordering::SeqCst)
        {
            return Err(WeirError::Data {
                message: format!("induced commit failure of {txn:?}"),
            });
        }
        let records = ledger.staged.remove(&txn).expect("staged");
        ledger.visible.extend(records);
        ledger.committed.insert(txn);
        ledger.commits += 1;
        Ok(())
    }
}

/// The records a source produced, even and odd ones apart (with 2 slots: each task's).
type Generated = Arc<[AtomicU64; 2]>;

fn total(generated: &Generated) -> u64 {
    generated.iter().map(|g| g.load(Ordering::Relaxed)).sum()
}

/// Two of every 200 records wait 1 ms (each task's share alike).
fn evenly(i: u64) -> bool {
    i % 200 < 2
}

/// Records `0..n` through a fallible map (record `fail_at` fails once while `armed`)
/// into the ledger; `generated` counts the records the source produced; the records
/// `slow` picks wait 1 ms each, so checkpoints come between.
fn into_ledger(
    flow: &Dataflow,
    n: u64,
    ledger: &Arc<Mutex<Ledger>>,
    (fail_at, armed): (u64, Arc<AtomicBool>),
    (generated, slow): (&Generated, fn(u64) -> bool),
) {
    let ledger = Arc::clone(ledger);
    let generated = Arc::clone(generated);
    flow.generate(n, |i| i)
        .map(move |i| {
            generated[(i % 2) as usize].fetch_add(1, Ordering::Relaxed);
            if slow(i) {
                std::thread::sleep(Duration::from_millis(1));
            }
            i
        })
        .try_map(move |i| {
            if i == fail_at && armed.swap(false, Ordering::SeqCst) {
                return Err(format!("induced failure at record {i}"));
            }
            Ok(i)
        })
        .write_transactional(move |ctx| {
            Ok(LedgerSink {
                ledger: Arc::clone(&ledger),
                task: (ctx.stage() as u64) << 32 | ctx.task() as u64,
            })
        });
}

fn checkpointed(slots: usize, dir: &Path) -> Config {
    Config {
        barrier_interval: Some(Duration::from_millis(10)),
        checkpoint: Some(CheckpointConfig::new(dir)),
        ..config(slots, 16 << 20)
    }
}

/// A fresh checkpoint directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every record visible exactly once; nothing staged or prepared left over.
fn assert_exactly_once(ledger: &Ledger, n: u64, what: &str) {
    let mut visible = ledger.visible.clone();
    visible.sort_unstable();
    let want: Vec<u64> = (0..n).collect();
    assert!(visible == want, "{what}: {} visible of {n}", visible.len());
    assert!(
        ledger.staged.is_empty(),
        "{what}: {:?} staged",
        ledger.staged.keys()
    );
    assert!(
        ledger.prepared.iter().all(|t| ledger.committed.contains(t)),
        "{what}: prepared, never committed"
    );
}

/// No unnumbered final checkpoint and no temporary file left.
fn assert_no_leftovers(root: &Path) {
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("chk-"), "{name} left in the checkpoints");
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!file.starts_with(".tmp-"), "{name} holds {file}");
        }
    }
}

#[test]
fn an_engines_transactional_sink_sees_every_record_exactly_once_across_a_failure() {
    let n = 60_000;
    for slots in [1, 2] {
        let root = TempDir::new(&format!("txn-sink-{slots}"));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let generated = Generated::default();
        let flow = Dataflow::new();
        let fail = (45_000, Arc::new(AtomicBool::new(true)));
        into_ledger(&flow, n, &ledger, fail, (&generated, evenly));
        let report = runtime::execute(&flow, &checkpointed(slots, &root.0), None).unwrap();
        assert_eq!(report.restarts, 1, "slots {slots}");
        let ledger = ledger.lock().unwrap();
        assert_exactly_once(&ledger, n, &format!("slots {slots}"));
        // Commits came with the checkpoints, not all at the end.
        assert!(ledger.commits > slots as u64, "{} commits", ledger.commits);
        // The restart replayed from a checkpoint, not from the start.
        let replayed = total(&generated) - n;
        assert!(replayed < 45_000, "slots {slots}: {replayed} replayed");
        assert_no_leftovers(&root.0);
    }
}

#[test]
fn a_failure_after_the_final_checkpoint_restarts_only_to_commit() {
    // One slot: the transaction holding the last record is pre-committed at the end and
    // commits only with the final checkpoint. Its commit fails once: the job fails after
    // its final checkpoint completed; the restart restores that checkpoint, produces no
    // record and commits what it lists.
    let n = 30_000;
    let root = TempDir::new("txn-final");
    let ledger = Arc::new(Mutex::new(Ledger {
        fail_commit_of: Some((n - 1, Arc::new(AtomicBool::new(true)))),
        ..Ledger::default()
    }));
    let generated = Generated::default();
    let flow = Dataflow::new();
    let unarmed = (u64::MAX, Arc::default());
    into_ledger(&flow, n, &ledger, unarmed, (&generated, evenly));
    let report = runtime::execute(&flow, &checkpointed(1, &root.0), None).unwrap();
    assert_eq!(report.restarts, 1);
    assert_exactly_once(
        &ledger.lock().unwrap(),
        n,
        "restored from the final checkpoint",
    );
    assert_eq!(total(&generated), n, "the restart produced records");
    let (latest, _) = latest_valid(&root.0).unwrap();
    let latest = latest.expect("the final checkpoints");
    assert!(crate::checkpoint::is_final(&root.0, latest));
    assert_no_leftovers(&root.0);
}

#[test]
fn a_job_of_one_task_without_checkpoints_commits_when_it_ends() {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let generated = Generated::default();
    let flow = Dataflow::new();
    let unarmed = (u64::MAX, Arc::default());
    into_ledger(&flow, 5000, &ledger, unarmed, (&generated, evenly));
    runtime::execute(&flow, &config(2, 16 << 20), None).unwrap();
    let ledger = ledger.lock().unwrap();
    assert_exactly_once(&ledger, 5000, "without checkpoints");
    assert_eq!(ledger.commits, 2, "one transaction per task");
}

#[test]
fn checkpoints_go_on_after_a_task_ended_and_restore_it_as_ended() {
    // Two slots: task 1 (odd records) never waits and ends at once; task 0 waits and
    // fails at record 50 000, three quarters in. Checkpoints after task 1 ended still
    // complete (its piece of the final checkpoint stands for it), and the restore from
    // one leaves task 1 ended: it produces nothing more.
    let n = 60_000;
    let root = TempDir::new("txn-ended-task");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let generated = Generated::default();
    let flow = Dataflow::new();
    let fail = (50_000, Arc::new(AtomicBool::new(true)));
    into_ledger(&flow, n, &ledger, fail, (&generated, |i| i % 200 == 0));
    let report = runtime::execute(&flow, &checkpointed(2, &root.0), None).unwrap();
    assert_eq!(report.restarts, 1);
    assert_exactly_once(
        &ledger.lock().unwrap(),
        n,
        "a task ended before the failure",
    );
    let odd = generated[1].load(Ordering::Relaxed);
    assert_eq!(odd, n / 2, "the ended task produced records again");
    let even = generated[0].load(Ordering::Relaxed) - n / 2;
    assert!(even < 25_000, "{even} replayed by task 0");
    assert_no_leftovers(&root.0);
}
