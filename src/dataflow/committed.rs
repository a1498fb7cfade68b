//! An exactly-once file sink: output becomes visible only with the checkpoint that
//! covers it (two-phase commit), so a job restored from a checkpoint never shows a
//! record twice nor loses one.
//!
//! ```text
//!   records ─▶ DIR/.pending/part-sS-tT-NNNNNNNN (N: the next checkpoint's id)
//!   barrier k ─▶ the file flushed and fsynced (phase one); every closed file not yet
//!                known committed goes in checkpoint k's commit list
//!   checkpoint k complete (the coordinator) ─▶ each listed file renamed to
//!                DIR/part-sS-tT-NNNNNNNN (phase two)
//!   end of input ─▶ the last file pending until the job ended well: renamed by the worker
//!                in a job of one, by the launcher once every worker ended well in a job
//!                of several (`JobReport::commit_final_files`)
//!   restore from k ─▶ k's commits done again; this task's pending files after k deleted
//! ```
//!
//! Without checkpoints the sink writes one pending file and renames it into place when
//! the job ends well. A file appears whole or not at all; readers take every `part-*`
//! file of the directory (never those under `.pending`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Barrier, Data, Push, Stream, TaskContext};
use crate::checkpoint::TaskCheckpoint;
use crate::error::{Result, WeirError};

/// The directory of a sink's pending files.
const PENDING: &str = ".pending";

impl<T: Data> Stream<T> {
    /// Writes each record as one line `line(&record)` into files of `dir` that appear
    /// only with the checkpoint covering them (exactly once across failures and
    /// restores; see [`crate::checkpoint`]), or when the job ends well. Each task writes
    /// its own `part-sS-tT-N` files; a reader takes every `part-*` file of `dir`.
    ///
    /// With checkpoints, the files after the last one are renamed once every worker
    /// ended well: by [`crate::spmd::run`]; a launcher of its own that runs
    /// [`execute`](super::execute) on several workers calls
    /// [`JobReport::commit_final_files`](super::JobReport::commit_final_files) then.
    pub fn write_committed(
        self,
        dir: impl Into<PathBuf>,
        line: impl Fn(&T) -> String + Send + Sync + 'static,
    ) {
        let dir = dir.into();
        let line: Arc<dyn Fn(&T) -> String + Send + Sync> = Arc::new(line);
        self.sink(move |ctx| Ok(Box::new(CommittedSink::open(ctx, &dir, Arc::clone(&line))?)));
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

/// A closed file waiting for its checkpoint: the id that closed it, where it is, where
/// it goes.
struct Closed {
    id: u64,
    pending: PathBuf,
    target: PathBuf,
}

/// One task's committed sink.
struct CommittedSink<T> {
    dir: PathBuf,
    /// `part-sS-tT-`.
    prefix: String,
    checkpoint: Option<Arc<TaskCheckpoint>>,
    root: Option<PathBuf>,
    /// The id of the checkpoint that will close the current file.
    next: u64,
    current: Option<(PathBuf, BufWriter<File>)>,
    closed: Vec<Closed>,
    line: Arc<dyn Fn(&T) -> String + Send + Sync>,
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

impl<T> CommittedSink<T> {
    fn open(
        ctx: &TaskContext,
        dir: &Path,
        line: Arc<dyn Fn(&T) -> String + Send + Sync>,
    ) -> Result<CommittedSink<T>> {
        let pending = dir.join(PENDING);
        std::fs::create_dir_all(&pending).map_err(|e| WeirError::file("create", &pending, e))?;
        let checkpoint = ctx.task_checkpoint();
        let restored = checkpoint
            .as_ref()
            .and_then(|c| c.restored_id())
            .unwrap_or(0);
        let prefix = format!("part-s{}-t{}-", ctx.stage(), ctx.task());
        if restored == 0 {
            refuse_earlier_output(dir, &prefix)?;
        }
        // Abort what a failed run left after the checkpoint restored (or any, afresh).
        for entry in
            std::fs::read_dir(&pending).map_err(|e| WeirError::file("list", &pending, e))?
        {
            let entry = entry.map_err(|e| WeirError::file("list", &pending, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let after = name
                .strip_prefix(&prefix)
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| id > restored);
            if after {
                std::fs::remove_file(entry.path())
                    .map_err(|e| WeirError::file("delete", entry.path(), e))?;
            }
        }
        Ok(CommittedSink {
            dir: dir.to_path_buf(),
            prefix,
            root: checkpoint.as_ref().map(|c| c.root().to_path_buf()),
            next: checkpoint.as_ref().map_or(1, |c| c.first_id()),
            checkpoint,
            current: None,
            closed: Vec::new(),
            line,
            buffer: String::new(),
        })
    }

    fn name(&self, id: u64) -> String {
        format!("{}{id:08}", self.prefix)
    }

    /// Flushes and fsyncs the current file (phase one) into `closed`, named for
    /// checkpoint `id`.
    fn close(&mut self, id: u64) -> Result<()> {
        let Some((pending, out)) = self.current.take() else {
            return Ok(());
        };
        let file = out
            .into_inner()
            .map_err(|e| WeirError::file("write output", &pending, e.into_error()))?;
        file.sync_all()
            .map_err(|e| WeirError::file("fsync output", &pending, e))?;
        let target = self.dir.join(self.name(id));
        let named = self.dir.join(PENDING).join(self.name(id));
        if named != pending {
            std::fs::rename(&pending, &named)
                .map_err(|e| WeirError::file("rename", &pending, e))?;
        }
        self.closed.push(Closed {
            id,
            target,
            pending: named,
        });
        Ok(())
    }

    /// Whether checkpoint `id` is complete (its manifest in place).
    fn complete(&self, id: u64) -> bool {
        self.root
            .as_ref()
            .is_some_and(|root| crate::checkpoint::is_complete(root, id))
    }
}

impl<T: Data> Push<T> for CommittedSink<T> {
    fn push(&mut self, record: T) -> Result<()> {
        if self.current.is_none() {
            let pending = self.dir.join(PENDING).join(self.name(self.next));
            let file =
                File::create(&pending).map_err(|e| WeirError::file("create", &pending, e))?;
            self.current = Some((pending, BufWriter::new(file)));
        }
        let (pending, out) = self.current.as_mut().expect("opened above");
        self.buffer.clear();
        self.buffer.push_str(&(self.line)(&record));
        self.buffer.push('\n');
        out.write_all(self.buffer.as_bytes())
            .map_err(|e| WeirError::file("write output", &*pending, e))
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        let Some(checkpoint) = self.checkpoint.clone() else {
            return Ok(());
        };
        self.close(barrier.id)?;
        // Files of complete checkpoints are (or will be, on a restore) committed; the
        // rest go in this checkpoint's list too, in case theirs was declined.
        let closed = std::mem::take(&mut self.closed);
        self.closed = closed
            .into_iter()
            .filter(|c| !self.complete(c.id))
            .collect();
        for file in &self.closed {
            checkpoint.commit_on_complete(&file.pending, &file.target);
        }
        self.next = barrier.id + 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.close(self.next)?;
        match &self.checkpoint {
            Some(checkpoint) => {
                for file in self.closed.drain(..) {
                    checkpoint.commit_at_end(file.pending, file.target);
                }
                Ok(())
            }
            None => {
                for file in self.closed.drain(..) {
                    crate::checkpoint::commit_file(&file.pending, &file.target)?;
                }
                Ok(())
            }
        }
    }
}
