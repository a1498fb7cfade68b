//! Exactly-once sinks: output becomes visible only with the checkpoint that covers it
//! (two-phase commit), so a job restored from a checkpoint never shows a record twice
//! nor loses one. [`TransactionalSink`] is the contract an engine's own sink implements;
//! [`Stream::write_committed`] is weir's file implementation of it.
//!
//! ```text
//!   records ─▶ the open transaction (begun at the first record after a barrier)
//!   barrier k ─▶ the transaction pre-committed (phase one: durable, not visible); every
//!                pre-committed transaction not known committed goes in the task's
//!                piece of checkpoint k
//!   checkpoint k complete ─▶ the task commits every transaction up to k (phase two),
//!                when it next looks: at a barrier, every few milliseconds of records,
//!                at the end
//!   end of input ─▶ the last transaction pre-committed into the job's final checkpoint
//!                (taken once every task of every worker ended well); committed once it
//!                completed, before the job returns
//!   restore from k ─▶ k's transactions committed again (idempotent), then
//!                `recover(k)`: the sink aborts what a failed run began after k
//! ```
//!
//! A restore from the final checkpoint only commits: its sources produce nothing.
//! Without checkpoints, a task's one transaction commits when the task ends well.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::operators::append_record;
use super::{Barrier, Data, Push, Stream, TaskContext, decode_record};
use crate::checkpoint::{self, FINAL, FinalCommit, SnapshotSlot, TaskCheckpoint};
use crate::error::{Result, WeirError};

/// The directory of a file sink's pending files.
const PENDING: &str = ".pending";
/// How often a sink with pre-committed transactions looks whether their checkpoint
/// completed, while records flow.
const COMMIT_POLL: Duration = Duration::from_millis(10);
/// Records between two looks at the clock for [`COMMIT_POLL`].
const RECORDS_PER_LOOK: u32 = 256;

/// A sink that takes part in checkpoints with two-phase commit: what it writes becomes
/// visible only once the checkpoint covering it completed, so a job that fails and
/// restarts from its latest checkpoint shows every record exactly once. One instance
/// per task ([`Stream::write_transactional`]); the runtime calls it in this order:
///
/// 1. [`recover`](Self::recover) once, after the transactions the restored checkpoint
///    lists were committed again;
/// 2. per checkpoint interval: [`begin`](Self::begin) at the first record,
///    [`write`](Self::write) for each, [`pre_commit`](Self::pre_commit) at the barrier;
/// 3. [`commit`](Self::commit) once the checkpoint that pre-committed a transaction (or a
///    later one) completed, or the job's final checkpoint; again after a restore.
///
/// Like Flink's two-phase-commit sinks, a transaction pre-committed must stay
/// committable until committed (in this run or a later one), and `commit` must be
/// idempotent.
pub trait TransactionalSink<T>: Send + 'static {
    /// What identifies a transaction for a later run to commit it: stored in the
    /// task's checkpoint piece.
    type Transaction: Data;

    /// The task starts: the transactions of the checkpoint restored (`restored`; `None`
    /// afresh) were committed again. Abort here what a failed run began after it (no
    /// checkpoint lists those); a sink that starts afresh may refuse an earlier run's
    /// output.
    ///
    /// # Errors
    ///
    /// The sink cannot start: the job fails.
    fn recover(&mut self, restored: Option<u64>) -> Result<()>;

    /// Opens a transaction for the records before the barrier of checkpoint `id` (or
    /// the end): ids grow within a task and across runs.
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover).
    fn begin(&mut self, id: u64) -> Result<Self::Transaction>;

    /// Writes `record` into the open transaction `transaction`.
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover).
    fn write(&mut self, transaction: &Self::Transaction, record: T) -> Result<()>;

    /// Phase one, at the barrier: `transaction`'s records durable, not yet visible. After
    /// it the transaction takes no more records and must stay committable.
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover).
    fn pre_commit(&mut self, transaction: &Self::Transaction) -> Result<()>;

    /// Phase two: `transaction`'s records visible. Idempotent: after a restore it is
    /// called again for transactions that may have committed already.
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover).
    fn commit(&mut self, transaction: Self::Transaction) -> Result<()>;
}

impl<T: Data> Stream<T> {
    /// Writes the stream into a [`TransactionalSink`] per task, made by `make(ctx)`: with
    /// checkpoints, exactly once across failures and restores (see the module
    /// documentation); without, each task's records commit when it ends well.
    pub fn write_transactional<S: TransactionalSink<T>>(
        self,
        make: impl Fn(&TaskContext) -> Result<S> + Send + Sync + 'static,
    ) {
        self.sink(move |ctx| Ok(Box::new(Transactional::open(ctx, make(ctx)?)?)));
    }

    /// Writes each record as one line `line(&record)` into files of `dir` that appear
    /// only with the checkpoint covering them (exactly once across failures and
    /// restores; see [`crate::checkpoint`]), or when the job ends well. Each task writes
    /// its own `part-sS-tT-N` files; a reader takes every `part-*` file of `dir`
    /// ([`read_committed`]), never those under `dir/.pending`.
    pub fn write_committed(
        self,
        dir: impl Into<PathBuf>,
        line: impl Fn(&T) -> String + Send + Sync + 'static,
    ) {
        let dir = dir.into();
        let line: Arc<dyn Fn(&T) -> String + Send + Sync> = Arc::new(line);
        self.write_transactional(move |ctx| {
            Ok(FileSink {
                dir: dir.clone(),
                prefix: format!("part-s{}-t{}-", ctx.stage(), ctx.task()),
                line: Arc::clone(&line),
                current: None,
                buffer: String::new(),
            })
        });
    }
}

/// The lines of every committed file of `dir` (`part-*`, in name order): what a job's
/// [`Stream::write_committed`] made visible.
///
/// # Errors
///
/// A file that cannot be read.
pub fn read_committed(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| WeirError::file("list", dir, e))?
        .filter_map(std::result::Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("part-"))
        })
        .collect();
    names.sort();
    let mut lines = Vec::new();
    for path in names {
        let text = std::fs::read_to_string(&path).map_err(|e| WeirError::file("read", &path, e))?;
        lines.extend(text.lines().map(str::to_owned));
    }
    Ok(lines)
}

/// The runtime's side of a [`TransactionalSink`] in one task.
struct Transactional<T, S: TransactionalSink<T>> {
    /// `None` once handed to the final commit.
    sink: Option<S>,
    checkpoint: Option<Arc<TaskCheckpoint>>,
    slot: Option<SnapshotSlot>,
    /// The id of the next barrier.
    next: u64,
    open: Option<S::Transaction>,
    /// Pre-committed transactions not known committed, each with the barrier that
    /// pre-committed it.
    pending: Vec<(u64, S::Transaction)>,
    /// The barriers passed since the oldest pending transaction's: any of them complete
    /// commits every transaction up to it.
    passed: Vec<u64>,
    records: u32,
    looked: Instant,
    record: PhantomData<fn(T)>,
}

impl<T, S: TransactionalSink<T>> Transactional<T, S> {
    fn open(ctx: &TaskContext, mut sink: S) -> Result<Transactional<T, S>> {
        let checkpoint = ctx.task_checkpoint();
        let slot = ctx.snapshot_slot();
        let restored = checkpoint.as_ref().and_then(|c| c.restored_id());
        if let Some(mut piece) = SnapshotSlot::restored_piece(slot.as_ref())? {
            let mut frame = Vec::new();
            while piece.next_frame(&mut frame)? {
                let (_, transaction): (u64, S::Transaction) = decode_record(&frame)?;
                sink.commit(transaction)?;
            }
        }
        sink.recover(restored)?;
        Ok(Transactional {
            sink: Some(sink),
            next: checkpoint.as_ref().map_or(1, |c| c.first_id()),
            checkpoint,
            slot,
            open: None,
            pending: Vec::new(),
            passed: Vec::new(),
            records: 0,
            looked: Instant::now(),
            record: PhantomData,
        })
    }

    fn sink(&mut self) -> &mut S {
        self.sink
            .as_mut()
            .expect("the sink is handed over only at the end")
    }

    /// Pre-commits the open transaction (closed by barrier `id`) into `pending`.
    fn pre_commit(&mut self, id: u64) -> Result<()> {
        if let Some(transaction) = self.open.take() {
            self.sink().pre_commit(&transaction)?;
            self.pending.push((id, transaction));
        }
        Ok(())
    }

    /// Commits every pending transaction up to the latest complete checkpoint passed.
    fn commit_ready(&mut self) -> Result<()> {
        self.looked = Instant::now();
        let Some(root) = self.checkpoint.as_ref().map(|c| c.root().to_path_buf()) else {
            return Ok(());
        };
        let Some(&done) = self
            .passed
            .iter()
            .rev()
            .find(|&&id| checkpoint::is_complete(&root, id))
        else {
            return Ok(());
        };
        let ready = self
            .pending
            .iter()
            .take_while(|(id, _)| *id <= done)
            .count();
        for (_, transaction) in self.pending.drain(..ready).collect::<Vec<_>>() {
            self.sink().commit(transaction)?;
        }
        self.passed.retain(|&id| id > done);
        Ok(())
    }

    /// Writes the pending transactions as the task's piece of checkpoint `id`.
    fn snapshot(&self, id: u64) -> Result<()> {
        let Some(slot) = &self.slot else {
            return Ok(());
        };
        slot.write(id, |piece| {
            let mut bytes = Vec::new();
            for entry in &self.pending {
                bytes.clear();
                append_record(&mut bytes, entry)?;
                piece.frame(&bytes)?;
            }
            Ok(())
        })
    }
}

impl<T: Send, S: TransactionalSink<T>> Push<T> for Transactional<T, S> {
    fn push(&mut self, record: T) -> Result<()> {
        if self.open.is_none() {
            let next = self.next;
            self.open = Some(self.sink().begin(next)?);
        }
        let transaction = self.open.take().expect("begun above");
        let written = self.sink().write(&transaction, record);
        self.open = Some(transaction);
        written?;
        self.records += 1;
        if self.records >= RECORDS_PER_LOOK {
            self.records = 0;
            if !self.pending.is_empty() && self.looked.elapsed() >= COMMIT_POLL {
                self.commit_ready()?;
            }
        }
        Ok(())
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        if self.checkpoint.is_none() {
            return Ok(());
        }
        self.pre_commit(barrier.id)?;
        if !self.pending.is_empty() {
            self.passed.push(barrier.id);
        }
        self.commit_ready()?;
        self.snapshot(barrier.id)?;
        self.next = barrier.id + 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.pre_commit(FINAL)?;
        let Some(checkpoint) = self.checkpoint.clone() else {
            for (_, transaction) in std::mem::take(&mut self.pending) {
                self.sink().commit(transaction)?;
            }
            return Ok(());
        };
        self.commit_ready()?;
        // The rest commits with the job's final checkpoint, once every task ended well.
        self.snapshot(FINAL)?;
        let mut sink = self.sink.take().expect("finished once");
        let pending = std::mem::take(&mut self.pending);
        checkpoint.on_final(FinalCommit(Box::new(move || {
            for (_, transaction) in pending {
                sink.commit(transaction)?;
            }
            Ok(())
        })));
        Ok(())
    }
}

/// [`Stream::write_committed`]'s sink: a transaction is a file, `id` its checkpoint's
/// id: written as `DIR/.pending/part-sS-tT-NNNNNNNN`, fsynced at the barrier, renamed
/// to `DIR/part-sS-tT-NNNNNNNN` at the commit.
struct FileSink<T> {
    dir: PathBuf,
    /// `part-sS-tT-`.
    prefix: String,
    line: Arc<dyn Fn(&T) -> String + Send + Sync>,
    /// The open transaction's file.
    current: Option<(PathBuf, BufWriter<File>)>,
    buffer: String,
}

/// A job that starts afresh never replaces an earlier run's output: `dir` must hold no
/// committed file of this task (`prefix…`).
fn refuse_earlier_output(dir: &Path, prefix: &str) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| WeirError::file("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WeirError::file("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            return Err(WeirError::Config {
                field: "output directory",
                value: dir.display().to_string(),
                allowed: format!(
                    "a directory without an earlier run's output for a job that starts \
                     afresh (it holds {name}: restore that run's checkpoint, or give an \
                     empty directory)"
                ),
            });
        }
    }
    Ok(())
}

impl<T> FileSink<T> {
    fn name(&self, id: u64) -> String {
        format!("{}{id:08}", self.prefix)
    }

    fn pending(&self, id: u64) -> PathBuf {
        self.dir.join(PENDING).join(self.name(id))
    }
}

impl<T: Send + 'static> TransactionalSink<T> for FileSink<T> {
    type Transaction = u64;

    fn recover(&mut self, restored: Option<u64>) -> Result<()> {
        let pending = self.dir.join(PENDING);
        std::fs::create_dir_all(&pending).map_err(|e| WeirError::file("create", &pending, e))?;
        if restored.is_none() {
            refuse_earlier_output(&self.dir, &self.prefix)?;
        }
        // Abort what a failed run began after the checkpoint restored (or any, afresh).
        let restored = restored.unwrap_or(0);
        for entry in
            std::fs::read_dir(&pending).map_err(|e| WeirError::file("list", &pending, e))?
        {
            let entry = entry.map_err(|e| WeirError::file("list", &pending, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let after = name
                .strip_prefix(&self.prefix)
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| id > restored);
            if after {
                std::fs::remove_file(entry.path())
                    .map_err(|e| WeirError::file("delete", entry.path(), e))?;
            }
        }
        Ok(())
    }

    fn begin(&mut self, id: u64) -> Result<u64> {
        let pending = self.pending(id);
        let file = File::create(&pending).map_err(|e| WeirError::file("create", &pending, e))?;
        self.current = Some((pending, BufWriter::new(file)));
        Ok(id)
    }

    fn write(&mut self, _: &u64, record: T) -> Result<()> {
        let (pending, out) = self.current.as_mut().expect("a transaction is open");
        self.buffer.clear();
        self.buffer.push_str(&(self.line)(&record));
        self.buffer.push('\n');
        out.write_all(self.buffer.as_bytes())
            .map_err(|e| WeirError::file("write output", &*pending, e))
    }

    fn pre_commit(&mut self, _: &u64) -> Result<()> {
        let (pending, out) = self.current.take().expect("a transaction is open");
        let file = out
            .into_inner()
            .map_err(|e| WeirError::file("write output", &pending, e.into_error()))?;
        file.sync_all()
            .map_err(|e| WeirError::file("fsync output", &pending, e))
    }

    fn commit(&mut self, id: u64) -> Result<()> {
        let target = self.dir.join(self.name(id));
        checkpoint::commit_file(&self.pending(id), &target)
    }
}
