//! Checkpoints: consistent snapshots of a running job at its barriers, and the files
//! they live in (docs/FORMAT.md §13).
//!
//! ```text
//!   source task, barrier k due ─▶ its position → piece of s{S}-t{T}.snap ─▶ barrier k
//!        down the chain (each stateful operator writes its piece as it passes) ─▶
//!        the chain returned: the task's file of k finished on a thread of its own
//!        (checksum, fsync, rename) while the task goes on: the asynchronous part
//!   other tasks: barrier k aligned on every input ─▶ the same
//!   coordinator (a thread of worker 0): every task's file of k present ─▶ the
//!        manifest of k written (temp, fsync, rename, fsync dir): k is complete
//!        (the sinks' tasks commit their transactions of k when they next look);
//!        checkpoints older than the last `retain` complete ones deleted
//!   a task ended well ─▶ its piece of the final checkpoint written (sources at their
//!        end, sinks' last transactions): it stands for the task in every later
//!        checkpoint (copied in by the coordinator), so checkpoints go on
//!   every task ended ─▶ the coordinator numbers and completes the final checkpoint;
//!        each worker's sinks commit their last transactions
//!   restore from k ─▶ every file of k read back and its checksum verified first;
//!        sources seek, operators reload, sinks commit k's transactions again
//!        (idempotent) and abort what a failed run began after k
//! ```
//!
//! A checkpoint is complete only once its manifest is in place: a crash at any point
//! before leaves a directory without one, which restores ignore and the coordinator
//! deletes. Everything here writes new files under the checkpoint directory (and a sink's
//! pending directory); it renames only files it wrote.
//!
//! Task file: `"WEIRSNP1"`, the checkpoint id (u64), stage and task (u32 each); then
//! pieces, each the operator's index (u32) and frames (u32 length > 0, the bytes), ended
//! by a zero length; `u32::MAX` ends the pieces, followed by the time the barrier was
//! scheduled (µs since the Unix epoch, u64); a CRC-32 of everything before ends the
//! file. All integers little-endian.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Result, WeirError};

/// The first bytes of a task's snapshot file.
const MAGIC: &[u8; 8] = b"WEIRSNP1";
/// The marker after the last piece.
const END_OF_PIECES: u32 = u32::MAX;
/// The name of a complete checkpoint's manifest.
const MANIFEST: &str = "MANIFEST";
/// The file beside the manifest of a job's final checkpoint (taken once every task
/// ended): a restore from it only commits the sinks' last transactions.
const FINAL_MARK: &str = "FINAL";
/// The id under which tasks write their pieces of the final checkpoint, into
/// `final-NNNNNNNN` (N: the run's first id) until the coordinator numbers it.
pub(crate) const FINAL: u64 = u64::MAX;
/// The name of the file the coordinator writes into a checkpoint it declined (it timed
/// out): it never completes, even if its last acknowledgements come after.
const DECLINED: &str = "DECLINED";
/// The least time a checkpoint may take before it is declined.
const CHECKPOINT_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// How long a checkpoint may take, at `interval` between barriers, before the coordinator
/// declines it and the next barrier goes: ten intervals, at least a second.
pub(crate) fn checkpoint_timeout(interval: Duration) -> Duration {
    (interval * 10).max(CHECKPOINT_TIMEOUT_MIN)
}
/// How often the coordinator looks for checkpoints every task acknowledged.
const COORDINATOR_POLL: Duration = Duration::from_millis(10);

/// Where a job's checkpoints go (`Config::checkpoint`): snapshots are taken at every
/// barrier (`Config::barrier_interval` is the checkpoint interval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The directory of the checkpoints (created if missing): `chk-NNNNNNNN` directories.
    pub dir: PathBuf,
    /// Complete checkpoints kept (at least 1; older ones are deleted).
    pub retain: usize,
    /// The checkpoint to start from (its state restored, its sources' positions sought);
    /// `None` starts afresh.
    pub restore: Option<u64>,
    /// Times a failed job restarts from its latest complete checkpoint (a job of one
    /// worker; a launcher restarts every worker of a job of several).
    pub restarts: u32,
    /// The wait before each restart.
    pub restart_delay: Duration,
}

impl CheckpointConfig {
    /// Checkpoints into `dir`, keeping the last 3, starting afresh.
    pub fn new(dir: impl Into<PathBuf>) -> CheckpointConfig {
        CheckpointConfig {
            dir: dir.into(),
            retain: 3,
            restore: None,
            restarts: 3,
            restart_delay: Duration::from_millis(100),
        }
    }
}

/// The directory of checkpoint `id` under `root`.
fn checkpoint_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("chk-{id:08}"))
}

/// The id of a checkpoint directory's name.
fn checkpoint_id(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// The directory tasks write their pieces of the final checkpoint of the run whose first
/// id is `first` into, until the coordinator numbers it.
fn final_dir(root: &Path, first: u64) -> PathBuf {
    root.join(format!("final-{first:08}"))
}

/// The run ids of `root`'s unnumbered final checkpoints (`final-N`).
fn final_runs(root: &Path) -> Result<Vec<u64>> {
    let mut runs = Vec::new();
    for entry in entries(root)? {
        if let Some(run) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("final-")?.parse().ok())
        {
            runs.push(run);
        }
    }
    Ok(runs)
}

/// Whether complete checkpoint `id` of `root` is a final one.
pub(crate) fn is_final(root: &Path, id: u64) -> bool {
    checkpoint_dir(root, id).join(FINAL_MARK).is_file()
}

fn task_file_name(stage: usize, task: usize) -> String {
    format!("s{stage}-t{task}.snap")
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WeirError {
    let path = path.to_path_buf();
    move |e| WeirError::file(operation, path, e)
}

/// Whether checkpoint `id` of `root` is complete (its manifest in place).
pub(crate) fn is_complete(root: &Path, id: u64) -> bool {
    checkpoint_dir(root, id).join(MANIFEST).is_file()
}

/// The entries of directory `dir` (none when it is missing).
fn entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_error("list", dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(WeirError::file("list", dir, e)),
    }
}

/// The checkpoints of `root`, sorted by id, and whether each is complete (has its
/// manifest).
fn list(root: &Path) -> Result<Vec<(u64, bool)>> {
    let mut found = Vec::new();
    for entry in entries(root)? {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(checkpoint_id)
            .filter(|_| is_dir)
        {
            found.push((id, entry.path().join(MANIFEST).is_file()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The latest complete checkpoint of `root` whose every file reads back with a right
/// checksum, with the files that failed in later ones (each skipped checkpoint named
/// with its first bad file). `None` when there is none.
///
/// # Errors
///
/// The directory cannot be listed.
pub fn latest_valid(root: &Path) -> Result<(Option<u64>, Vec<String>)> {
    let mut skipped = Vec::new();
    for (id, complete) in list(root)?.into_iter().rev() {
        if !complete {
            continue;
        }
        match verify(root, id) {
            Ok(()) => return Ok((Some(id), skipped)),
            Err(error) => skipped.push(format!("checkpoint {id}: {error}")),
        }
    }
    Ok((None, skipped))
}

/// The checkpoint a failed job restarts from: the latest valid one, or none (afresh)
/// when no checkpoint completed.
///
/// # Errors
///
/// Checkpoints completed but none reads back right (each named with its bad file): the
/// job does not start afresh over the output they committed.
pub(crate) fn restart_point(root: &Path) -> Result<Option<u64>> {
    let (latest, skipped) = latest_valid(root)?;
    if latest.is_none() && !skipped.is_empty() {
        return Err(WeirError::Data {
            message: format!("no checkpoint to restart from: {}", skipped.join("; ")),
        });
    }
    Ok(latest)
}

/// Checks every file of complete checkpoint `id`: the manifest's list, each task file's
/// checksum and framing.
pub(crate) fn verify(root: &Path, id: u64) -> Result<()> {
    let dir = checkpoint_dir(root, id);
    let manifest = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest).map_err(io_error("read", &manifest))?;
    let mut lines = text.lines();
    if lines.next() != Some("weir checkpoint 1") {
        return Err(corrupt(&manifest, "not a weir checkpoint manifest"));
    }
    for line in lines.filter(|line| !line.starts_with('#')) {
        let Some((name, len)) = line.split_once(' ') else {
            return Err(corrupt(&manifest, "a line is not `NAME LENGTH`"));
        };
        let path = dir.join(name);
        let actual = std::fs::metadata(&path)
            .map_err(io_error("read", &path))?
            .len();
        if len.parse::<u64>().ok() != Some(actual) {
            return Err(corrupt(&path, "its length is not the manifest's"));
        }
        if name.ends_with(".snap") {
            TaskFile::open(&path)?;
        }
    }
    Ok(())
}

fn corrupt(path: &Path, what: &str) -> WeirError {
    WeirError::Data {
        message: format!("checkpoint file {}: {what}", path.display()),
    }
}

/// The checkpoints of one job: where they go, how many tasks acknowledge each, which
/// one the job started from.
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    retain: usize,
    /// Tasks of the whole job (every worker's).
    tasks: usize,
    restored: Option<u64>,
    /// This run's first checkpoint id: above every checkpoint directory present, so a
    /// run never adds to the files of a failed run's checkpoint (ids only grow).
    first: u64,
    /// What the sinks commit once the final checkpoint completed.
    final_commits: Mutex<Vec<FinalCommit>>,
    /// The checkpoints the coordinator completed.
    completed: Mutex<Vec<CheckpointSample>>,
    /// Why this worker's tasks declined checkpoints.
    declined: Mutex<Vec<String>>,
    /// The highest id a task of this worker declined (0: none).
    last_declined: AtomicU64,
    /// How long a checkpoint may take before the coordinator declines it.
    timeout: Duration,
    /// The threads finishing tasks' files in the background.
    finishers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The longest a task's file took to finish in the background, in microseconds.
    async_us_max: AtomicU64,
}

impl Store {
    pub(crate) fn new(config: &CheckpointConfig, tasks: usize, timeout: Duration) -> Result<Store> {
        if config.retain == 0 {
            return Err(WeirError::Config {
                field: "checkpoint retain",
                value: "0".to_owned(),
                allowed: "at least 1".to_owned(),
            });
        }
        std::fs::create_dir_all(&config.dir)
            .map_err(io_error("create checkpoint directory", &config.dir))?;
        if let Some(id) = config.restore {
            verify(&config.dir, id)?;
        }
        let present = list(&config.dir)?;
        if config.restore.is_none()
            && let Some(&(id, _)) = present.iter().rev().find(|c| c.1)
        {
            return Err(WeirError::Config {
                field: "checkpoint directory",
                value: config.dir.display().to_string(),
                allowed: format!(
                    "a directory without complete checkpoints for a job that starts afresh \
                     (it holds checkpoint {id} of an earlier run: restore it, or give an \
                     empty directory)"
                ),
            });
        }
        let last = present
            .last()
            .map_or(0, |c| c.0)
            .max(final_runs(&config.dir)?.into_iter().max().unwrap_or(0));
        Ok(Store {
            root: config.dir.clone(),
            retain: config.retain,
            tasks,
            restored: config.restore,
            first: last.max(config.restore.unwrap_or(0)) + 1,
            final_commits: Mutex::new(Vec::new()),
            completed: Mutex::new(Vec::new()),
            declined: Mutex::new(Vec::new()),
            last_declined: AtomicU64::new(0),
            timeout,
            finishers: Mutex::new(Vec::new()),
            async_us_max: AtomicU64::new(0),
        })
    }

    /// Checkpoint `id` declined by a task of this worker, for `why`.
    fn decline(&self, id: u64, why: String) {
        self.declined.lock().expect("declined").push(why);
        self.last_declined.fetch_max(id, Ordering::AcqRel);
    }

    /// Waits until every task's file is finished: before the coordinator's last pass and
    /// before the job returns (no thread of the job outlives it).
    pub(crate) fn join_finishers(&self) {
        let finishers = std::mem::take(&mut *self.finishers.lock().expect("finishers"));
        for finisher in finishers {
            finisher
                .join()
                .expect("a checkpoint file's finisher does not panic");
        }
    }

    /// The longest a task's file took to finish in the background, in microseconds.
    pub(crate) fn async_us_max(&self) -> u64 {
        self.async_us_max.load(Ordering::Acquire)
    }

    /// Why this worker's tasks declined checkpoints, and the coordinator's errors.
    pub(crate) fn declined(&self) -> Vec<String> {
        self.declined.lock().expect("declined").clone()
    }

    /// Whether checkpoint `id` is settled: complete, or declined by a task of this worker
    /// (it will never complete).
    pub(crate) fn settled(&self, id: u64) -> bool {
        self.last_declined.load(Ordering::Acquire) >= id
            || is_complete(&self.root, id)
            || checkpoint_dir(&self.root, id).join(DECLINED).is_file()
    }

    /// The checkpoints the coordinator completed so far.
    pub(crate) fn completed(&self) -> Vec<CheckpointSample> {
        self.completed
            .lock()
            .expect("completed checkpoints")
            .clone()
    }

    /// Adds what a sink commits once the job's final checkpoint completed.
    pub(crate) fn on_final(&self, commit: FinalCommit) {
        self.final_commits
            .lock()
            .expect("final commits")
            .push(commit);
    }

    /// Once every task of this worker ended well: waits until the job's final checkpoint
    /// completed (every task of every worker ended well; worker 0's coordinator numbers
    /// and completes it), then runs the sinks' final commits. A task of another worker
    /// that fails stops this wait through the launcher, which stops every worker.
    ///
    /// # Errors
    ///
    /// The coordinator declined the final checkpoint (it could not write it), or a
    /// sink's commit failed.
    pub(crate) fn await_final(&self) -> Result<()> {
        let dir = final_dir(&self.root, self.first);
        loop {
            let finished = list(&self.root)?
                .into_iter()
                .any(|(id, complete)| complete && id >= self.first && is_final(&self.root, id));
            if finished {
                break;
            }
            let declined = dir.join(DECLINED);
            if declined.is_file() {
                let why = std::fs::read_to_string(&declined).unwrap_or_default();
                return Err(WeirError::Data {
                    message: format!("the job's final checkpoint was declined: {why}"),
                });
            }
            std::thread::sleep(COORDINATOR_POLL);
        }
        let commits = std::mem::take(&mut *self.final_commits.lock().expect("final commits"));
        for commit in commits {
            (commit.0)()?;
        }
        Ok(())
    }

    /// This run's first checkpoint id.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Completes every checkpoint all tasks acknowledged (in id order), then the final
    /// one once every task ended, and deletes what is no longer kept. Answers the
    /// completed ids.
    pub(crate) fn complete_ready(&self) -> Result<Vec<u64>> {
        let mut completed = Vec::new();
        for (id, complete) in list(&self.root)? {
            // Those below `first` are a failed run's: they never complete.
            if complete || id < self.first {
                continue;
            }
            let dir = checkpoint_dir(&self.root, id);
            if dir.join(DECLINED).is_file() {
                continue;
            }
            let mut names = task_files(&dir)?;
            // A task that ended well acknowledges every later checkpoint with its piece of
            // the final one: its sources at their end, its sinks' last transactions.
            let ended: Vec<(String, u64)> = task_files(&final_dir(&self.root, self.first))?
                .into_iter()
                .filter(|(name, _)| !names.iter().any(|(n, _)| n == name))
                .collect();
            let acknowledged = names.len() + ended.len();
            if acknowledged < self.tasks {
                self.decline_if_overdue(id, &dir, &names, acknowledged)?;
                continue;
            }
            if names.is_empty() {
                // Every task ended before it: the final checkpoint follows.
                continue;
            }
            let scheduled = scheduled_of(&dir, &names, u64::min)?;
            // Copies (small: positions and transactions), not links: a damaged file
            // must not damage every checkpoint that holds it.
            let from = final_dir(&self.root, self.first);
            for (name, _) in &ended {
                let source = from.join(name);
                let bytes = std::fs::read(&source).map_err(io_error("read", &source))?;
                write_durably(&dir, name, &bytes)?;
            }
            names.extend(ended);
            let sample = write_manifest(&dir, (id, false), &mut names, scheduled)?;
            self.completed
                .lock()
                .expect("completed checkpoints")
                .push(sample);
            completed.push(id);
        }
        if let Some(id) = self.complete_final()? {
            completed.push(id);
        }
        if !completed.is_empty() {
            self.prune()?;
        }
        Ok(completed)
    }

    /// Once every task wrote its piece of the final checkpoint: numbers it above every
    /// checkpoint (its directory renamed to that id's) and completes it. Answers its id.
    fn complete_final(&self) -> Result<Option<u64>> {
        let dir = final_dir(&self.root, self.first);
        if !dir.is_dir() || dir.join(DECLINED).is_file() {
            return Ok(None);
        }
        let mut names = task_files(&dir)?;
        if names.len() < self.tasks {
            return Ok(None);
        }
        let id = list(&self.root)?
            .last()
            .map_or(0, |c| c.0)
            .max(self.first - 1)
            + 1;
        let result = (|| {
            // Its duration runs from the last task's end.
            let scheduled = scheduled_of(&dir, &names, u64::max)?;
            write_durably(&dir, FINAL_MARK, b"every task ended\n")?;
            let numbered = checkpoint_dir(&self.root, id);
            std::fs::rename(&dir, &numbered).map_err(io_error("rename", &dir))?;
            sync_dir(&self.root)?;
            write_manifest(&numbered, (id, true), &mut names, scheduled)
        })();
        let sample = match result {
            Ok(done) => done,
            Err(error) => {
                let why = error.to_string();
                // The tasks waiting for it learn it failed (wherever the directory is).
                for place in [dir, checkpoint_dir(&self.root, id)] {
                    if place.is_dir() {
                        let _ = write_durably(&place, DECLINED, why.as_bytes());
                    }
                }
                return Err(error);
            }
        };
        self.completed
            .lock()
            .expect("completed checkpoints")
            .push(sample);
        Ok(Some(id))
    }

    /// Declines checkpoint `id` (writes its [`DECLINED`] file) when its barrier was
    /// scheduled longer than the timeout ago and not every task acknowledged it.
    fn decline_if_overdue(
        &self,
        id: u64,
        dir: &Path,
        names: &[(String, u64)],
        acknowledged: usize,
    ) -> Result<()> {
        let mut scheduled = u64::MAX;
        for (name, _) in names.iter().filter(|(n, _)| n.ends_with(".snap")) {
            scheduled = scheduled.min(scheduled_us(&dir.join(name))?);
        }
        let age = crate::dataflow::event_time_micros().saturating_sub(scheduled);
        let timeout = u64::try_from(self.timeout.as_micros()).unwrap_or(u64::MAX);
        if scheduled == u64::MAX || age < timeout {
            return Ok(());
        }
        let why = format!(
            "checkpoint {id}: timed out after {} ms with {acknowledged} of {} tasks' \
             acknowledgements",
            age / 1000,
            self.tasks
        );
        write_durably(dir, DECLINED, why.as_bytes())?;
        self.declined.lock().expect("declined").push(why);
        Ok(())
    }

    /// Deletes the checkpoints older than the last `retain` complete ones (complete or
    /// not), and incomplete ones older than the latest complete.
    fn prune(&self) -> Result<()> {
        let all = list(&self.root)?;
        let complete: Vec<u64> = all.iter().filter(|c| c.1).map(|c| c.0).collect();
        let Some(&latest) = complete.last() else {
            return Ok(());
        };
        let oldest_kept = complete[complete.len().saturating_sub(self.retain)];
        for (id, is_complete) in all {
            let keep = if is_complete {
                id >= oldest_kept
            } else {
                id > latest
            };
            if !keep && Some(id) != self.restored {
                remove_checkpoint(&checkpoint_dir(&self.root, id))?;
            }
        }
        // Earlier runs' final checkpoints that never completed.
        for run in final_runs(&self.root)? {
            if run < self.first {
                remove_checkpoint(&final_dir(&self.root, run))?;
            }
        }
        Ok(())
    }
}

/// A sink's commit of its last transactions, run once the job's final checkpoint
/// completed.
pub(crate) struct FinalCommit(pub(crate) Box<dyn FnOnce() -> Result<()> + Send>);

impl std::fmt::Debug for FinalCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinalCommit")
    }
}

/// The task files (name, length) of checkpoint directory `dir` (none when it is
/// missing).
fn task_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut names = Vec::new();
    for entry in entries(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".snap") && !name.starts_with('.') {
            let len = entry.metadata().map_err(io_error("read", dir))?.len();
            names.push((name, len));
        }
    }
    Ok(names)
}

/// The barriers' scheduled times of task files `names` of `dir`, folded by `pick`
/// (`u64::min`: the earliest).
fn scheduled_of(dir: &Path, names: &[(String, u64)], pick: fn(u64, u64) -> u64) -> Result<u64> {
    let mut times = names.iter().map(|(name, _)| scheduled_us(&dir.join(name)));
    let first = times.next().transpose()?.unwrap_or(0);
    times.try_fold(first, |acc, time| Ok(pick(acc, time?)))
}

/// Writes the manifest of checkpoint directory `dir` listing its task files `names`
/// (name, length): checkpoint `id` (final or not) is complete. Answers its sample, its
/// duration from `scheduled` (µs since the Unix epoch).
fn write_manifest(
    dir: &Path,
    (id, is_final): (u64, bool),
    names: &mut [(String, u64)],
    scheduled: u64,
) -> Result<CheckpointSample> {
    names.sort();
    let mut manifest = String::from("weir checkpoint 1\n");
    for (name, len) in names.iter() {
        manifest.push_str(&format!("{name} {len}\n"));
    }
    let bytes = names.iter().map(|(_, len)| len).sum();
    write_durably(dir, MANIFEST, manifest.as_bytes())?;
    Ok(CheckpointSample {
        id,
        duration_us: crate::dataflow::event_time_micros().saturating_sub(scheduled),
        bytes,
        is_final,
    })
}

/// A checkpoint the coordinator completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CheckpointSample {
    /// Its id.
    pub id: u64,
    /// From its barrier's scheduled time (the earliest of its sources') to its manifest
    /// in place, in microseconds.
    pub duration_us: u64,
    /// Bytes of its task files.
    pub bytes: u64,
    /// Whether it is the job's final checkpoint (taken once every task ended).
    #[serde(default)]
    pub is_final: bool,
}

/// The time the barrier of a task snapshot file was scheduled (its last 12 bytes hold
/// it and the checksum; the file is verified only on a restore).
fn scheduled_us(path: &Path) -> Result<u64> {
    let mut file = File::open(path).map_err(io_error("read checkpoint", path))?;
    let mut tail = [0u8; 12];
    file.seek(SeekFrom::End(-12))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(io_error("read checkpoint", path))?;
    Ok(u64::from_le_bytes(tail[..8].try_into().expect("8 bytes")))
}

/// Renames `pending` to `target` (fsyncing the directory); a `pending` already gone
/// whose `target` exists was committed before; a `target` already there beside its
/// `pending` is an error (never replaced).
pub(crate) fn commit_file(pending: &Path, target: &Path) -> Result<()> {
    match (pending.exists(), target.exists()) {
        (false, true) => return Ok(()),
        // A file weir did not put there, or an earlier run's output: never replaced.
        (true, true) => {
            return Err(WeirError::Data {
                message: format!(
                    "committing {} would replace {}, which this job did not write",
                    pending.display(),
                    target.display()
                ),
            });
        }
        _ => {}
    }
    if let Err(error) = std::fs::rename(pending, target) {
        // Another worker committed it meanwhile.
        if error.kind() == std::io::ErrorKind::NotFound && target.exists() {
            return Ok(());
        }
        return Err(WeirError::file("commit", pending, error));
    }
    if let Some(dir) = target.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Deletes a checkpoint directory: only the files a checkpoint holds, then the directory
/// (which fails, leaving it, if anything else is in it).
fn remove_checkpoint(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(WeirError::file("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == MANIFEST
            || name == DECLINED
            || name == FINAL_MARK
            || name.ends_with(".snap")
            || name.starts_with(".tmp-");
        if ours {
            std::fs::remove_file(entry.path()).map_err(io_error("delete", &entry.path()))?;
        }
    }
    std::fs::remove_dir(dir).map_err(io_error("delete", dir))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync", dir))
}

/// Writes `bytes` to `dir/name` through a temporary file: fsync, rename, fsync `dir`.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let temp = dir.join(format!(".tmp-{name}"));
    let mut file = File::create(&temp).map_err(io_error("create", &temp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &temp))?;
    let path = dir.join(name);
    std::fs::rename(&temp, &path).map_err(io_error("rename", &temp))?;
    sync_dir(dir)
}

/// Runs the coordinator until `stop` is set (then one last pass): completes checkpoints
/// as their tasks acknowledge them. Its errors decline checkpoints (counted in the
/// report), they do not fail the job.
pub(crate) fn coordinate(store: &Store, stop: &AtomicBool) {
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if let Err(error) = store.complete_ready() {
            store
                .declined
                .lock()
                .expect("declined")
                .push(format!("the coordinator: {error}"));
        }
        if stopping {
            return;
        }
        std::thread::sleep(COORDINATOR_POLL);
    }
}

/// One task's side of the checkpoints: the file it writes at each barrier, and what it
/// restored from.
#[derive(Debug)]
pub(crate) struct TaskCheckpoint {
    store: Arc<Store>,
    root: PathBuf,
    stage: usize,
    task: usize,
    writing: Mutex<Option<Writing>>,
    restored: Option<TaskFile>,
    restored_id: Option<u64>,
    next_operator: AtomicU32,
    /// The highest checkpoint id whose file the task finished or gave up: a file is never
    /// opened twice for one id (the second would write into the first's temporary file).
    taken: AtomicU64,
}

#[derive(Debug)]
struct Writing {
    id: u64,
    temp: PathBuf,
    /// `None` once a write failed: the checkpoint is declined by this task.
    out: Option<BufWriter<File>>,
    crc: crc32fast::Hasher,
    /// Why the task declines the checkpoint.
    failed: Option<String>,
}

impl Writing {
    /// A file for checkpoint `id` at `temp`, or a declined one when it cannot be made.
    fn create(id: u64, dir: &Path, temp: PathBuf) -> Writing {
        let file = std::fs::create_dir_all(dir).and_then(|()| File::create(&temp));
        let (out, failed) = match file {
            Ok(file) => (Some(BufWriter::new(file)), None),
            Err(e) => (None, Some(format!("create {}: {e}", temp.display()))),
        };
        Writing {
            id,
            temp,
            out,
            crc: crc32fast::Hasher::new(),
            failed,
        }
    }

    /// Appends `bytes`; a failed write declines the checkpoint (the state it snapshots
    /// stays untouched, the job goes on).
    fn put(&mut self, bytes: &[u8]) {
        let Some(out) = &mut self.out else {
            return;
        };
        self.crc.update(bytes);
        if let Err(e) = out.write_all(bytes) {
            self.fail(format!("write {}: {e}", self.temp.display()));
        }
    }

    fn fail(&mut self, why: String) {
        self.failed.get_or_insert(why);
        self.out = None;
        let _ = std::fs::remove_file(&self.temp);
    }

    /// Ends the file (the pieces' end, the barrier's time, the checksum), fsyncs it and
    /// renames it to `path`: the task's acknowledgement.
    fn finish(mut self, scheduled_us: u64, path: &Path) -> std::result::Result<(), String> {
        self.put(&END_OF_PIECES.to_le_bytes());
        self.put(&scheduled_us.to_le_bytes());
        let crc = self.crc.clone().finalize();
        let temp = self.temp.clone();
        let done = match self.out.take() {
            Some(mut out) => out
                .write_all(&crc.to_le_bytes())
                .and_then(|()| {
                    out.into_inner()
                        .map_err(std::io::IntoInnerError::into_error)
                })
                .and_then(|file| file.sync_all())
                .and_then(|()| std::fs::rename(&temp, path))
                .map_err(|e| format!("write {}: {e}", temp.display())),
            None => Err(self.failed.take().unwrap_or_default()),
        };
        if done.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        done
    }
}

impl TaskCheckpoint {
    pub(crate) fn new(store: &Arc<Store>, stage: usize, task: usize) -> Result<TaskCheckpoint> {
        let restored = match store.restored {
            Some(id) => Some(TaskFile::open(
                &checkpoint_dir(&store.root, id).join(task_file_name(stage, task)),
            )?),
            None => None,
        };
        Ok(TaskCheckpoint {
            store: Arc::clone(store),
            root: store.root.clone(),
            stage,
            task,
            writing: Mutex::new(None),
            restored,
            restored_id: store.restored,
            next_operator: AtomicU32::new(0),
            taken: AtomicU64::new(0),
        })
    }

    /// The checkpoint directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The checkpoint the job started from.
    pub(crate) fn restored_id(&self) -> Option<u64> {
        self.restored_id
    }

    /// This run's first checkpoint id.
    pub(crate) fn first_id(&self) -> u64 {
        self.store.first
    }

    /// Adds what a sink commits once the job's final checkpoint completed.
    pub(crate) fn on_final(&self, commit: FinalCommit) {
        self.store.on_final(commit);
    }

    /// The directory of checkpoint `id`'s files ([`FINAL`]: this run's final one).
    fn dir_of(&self, id: u64) -> PathBuf {
        if id == FINAL {
            final_dir(&self.root, self.store.first)
        } else {
            checkpoint_dir(&self.root, id)
        }
    }

    /// The next operator's index (in the order operators are built, the same in every
    /// run of the same program).
    pub(crate) fn operator(self: &Arc<Self>) -> SnapshotSlot {
        SnapshotSlot {
            operator: self.next_operator.fetch_add(1, Ordering::Relaxed),
            task: Arc::clone(self),
        }
    }

    fn with_writing<R>(&self, id: u64, f: impl FnOnce(&mut Writing) -> Result<R>) -> Result<R> {
        let mut writing = self.writing.lock().expect("checkpoint writer");
        if writing.as_ref().is_some_and(|w| w.id != id) {
            return Err(WeirError::Data {
                message: format!(
                    "checkpoint {id} began while {} was being written (stage {} task {})",
                    writing.as_ref().map_or(0, |w| w.id),
                    self.stage,
                    self.task
                ),
            });
        }
        let taken = self.taken.load(Ordering::Acquire);
        if writing.is_none() && id != FINAL && (id <= taken || id < self.store.first) {
            return Err(WeirError::Data {
                message: format!(
                    "stage {} task {}: checkpoint {id} written twice, or below this run's \
                     first ({}): a bug",
                    self.stage, self.task, self.store.first
                ),
            });
        }
        if writing.is_none() {
            let dir = self.dir_of(id);
            let temp = dir.join(format!(".tmp-{}", task_file_name(self.stage, self.task)));
            let mut new = Writing::create(id, &dir, temp);
            new.put(MAGIC);
            new.put(&id.to_le_bytes());
            new.put(&u32::try_from(self.stage).unwrap_or(u32::MAX).to_le_bytes());
            new.put(&u32::try_from(self.task).unwrap_or(u32::MAX).to_le_bytes());
            *writing = Some(new);
        }
        f(writing.as_mut().expect("just opened"))
    }

    /// The task has passed barrier `id` through its whole chain: its file of `id` is
    /// finished (with no pieces when no operator wrote one) and renamed into place, the
    /// task's acknowledgement.
    ///
    /// A task that cannot write its file (a full disk, an I/O error) declines the
    /// checkpoint instead: nothing half-written is left, the checkpoint never completes
    /// (a later one does), and the job goes on; the reason is counted in the report.
    pub(crate) fn complete(&self, id: u64, scheduled_us: u64) -> Result<()> {
        let (writing, file) = self.take_writing(id)?;
        // The task goes on while its file is finished (fsynced, renamed) in the background:
        // the asynchronous part of its checkpoint.
        let spawned = std::thread::Builder::new()
            .name(format!("weir-checkpoint-{id}"))
            .spawn(move || file.finish(writing, scheduled_us));
        match spawned {
            Ok(handle) => self.store.finishers.lock().expect("finishers").push(handle),
            Err(error) => self.store.decline(
                id,
                format!(
                    "checkpoint {id}, stage {} task {}: no thread to finish its file: {error}",
                    self.stage, self.task
                ),
            ),
        }
        Ok(())
    }

    /// The file of checkpoint `id` (opened if no operator wrote a piece) taken from the
    /// task, and where it goes.
    fn take_writing(&self, id: u64) -> Result<(Writing, FinishedFile)> {
        self.with_writing(id, |_| Ok(()))?;
        let writing = self
            .writing
            .lock()
            .expect("checkpoint writer")
            .take()
            .expect("opened above");
        if id != FINAL {
            self.taken.fetch_max(id, Ordering::AcqRel);
        }
        let file = FinishedFile {
            store: Arc::clone(&self.store),
            dir: self.dir_of(id),
            id,
            stage: self.stage,
            task: self.task,
        };
        Ok((writing, file))
    }

    /// Gives up the file of checkpoint `id` being written: the task declines it.
    pub(crate) fn abandon(&self, id: u64, why: String) {
        let mut writing = self.writing.lock().expect("checkpoint writer");
        if let Some(mut abandoned) = writing.take_if(|w| w.id == id) {
            abandoned.fail(why.clone());
        }
        self.taken.fetch_max(id, Ordering::AcqRel);
        drop(writing);
        self.store.decline(
            id,
            format!("stage {} task {}: {why}", self.stage, self.task),
        );
    }

    /// The task ended well (every operator finished): its file of the job's final
    /// checkpoint is written (its sources' positions at their end, its sinks' last
    /// transactions), in this thread.
    ///
    /// # Errors
    ///
    /// The file cannot be written: the job fails (its final checkpoint would never
    /// complete), and restarts from its latest checkpoint.
    pub(crate) fn complete_final(&self) -> Result<()> {
        let (writing, file) = self.take_writing(FINAL)?;
        file.write(writing, crate::dataflow::event_time_micros())
            .map_err(|why| WeirError::Data {
                message: format!(
                    "the final checkpoint's file of stage {} task {}: {why}",
                    self.stage, self.task
                ),
            })
    }
}

/// A task's file of one checkpoint, finished in the background.
struct FinishedFile {
    store: Arc<Store>,
    dir: PathBuf,
    id: u64,
    stage: usize,
    task: usize,
}

impl FinishedFile {
    /// Ends, fsyncs and renames the task's snapshot file into place (the
    /// acknowledgement), or declines the checkpoint: nothing half-written is left, the
    /// checkpoint never completes (a later one does), the job goes on.
    fn finish(self, writing: Writing, scheduled_us: u64) {
        let started = std::time::Instant::now();
        if let Err(why) = self.write(writing, scheduled_us) {
            let why = format!(
                "checkpoint {}, stage {} task {}: {why}",
                self.id, self.stage, self.task
            );
            self.store.decline(self.id, why);
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.store.async_us_max.fetch_max(micros, Ordering::AcqRel);
    }

    fn write(&self, writing: Writing, scheduled_us: u64) -> std::result::Result<(), String> {
        let path = self.dir.join(task_file_name(self.stage, self.task));
        writing.finish(scheduled_us, &path).and_then(|()| {
            match File::open(&self.dir).and_then(|d| d.sync_all()) {
                // The final checkpoint's directory, numbered by the coordinator as soon
                // as the last task's file was in place (it synced it before).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.id == FINAL => Ok(()),
                done => done.map_err(|e| format!("fsync {}: {e}", self.dir.display())),
            }
        })
    }
}

/// An operator's place in its task's checkpoints.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotSlot {
    operator: u32,
    task: Arc<TaskCheckpoint>,
}

impl SnapshotSlot {
    /// Writes the operator's piece of checkpoint `id`: `write` adds its frames.
    pub(crate) fn write(
        &self,
        id: u64,
        write: impl FnOnce(&mut PieceWriter<'_>) -> Result<()>,
    ) -> Result<()> {
        self.task.with_writing(id, |writing| {
            writing.put(&self.operator.to_le_bytes());
            write(&mut PieceWriter { writing })?;
            writing.put(&0u32.to_le_bytes());
            Ok(())
        })
    }

    /// The operator's piece of the checkpoint the job started from, if it wrote one.
    pub(crate) fn restored(&self) -> Result<Option<PieceReader>> {
        match &self.task.restored {
            Some(file) => file.piece(self.operator),
            None => Ok(None),
        }
    }

    /// Opens the operator's piece of checkpoint `id`, for frames that come over time
    /// ([`append`](Self::append)) until [`end`](Self::end); no other piece of the task
    /// may be written in between.
    pub(crate) fn begin(&self, id: u64) -> Result<()> {
        self.task.with_writing(id, |writing| {
            writing.put(&self.operator.to_le_bytes());
            Ok(())
        })
    }

    /// One frame of the piece [`begin`](Self::begin) opened.
    pub(crate) fn append(&self, id: u64, bytes: &[u8]) -> Result<()> {
        self.task
            .with_writing(id, |writing| PieceWriter { writing }.frame(bytes))
    }

    /// Ends the piece [`begin`](Self::begin) opened.
    pub(crate) fn end(&self, id: u64) -> Result<()> {
        self.task.with_writing(id, |writing| {
            writing.put(&0u32.to_le_bytes());
            Ok(())
        })
    }

    /// The piece of `slot`'s operator in the checkpoint the job started from (`None`
    /// without checkpoints, a restore, or a piece).
    pub(crate) fn restored_piece(slot: Option<&SnapshotSlot>) -> Result<Option<PieceReader>> {
        slot.map(SnapshotSlot::restored)
            .transpose()
            .map(Option::flatten)
    }

    /// That piece with its first frame read into `first` (`None` without a piece or a
    /// frame): an operator's header, then its other frames.
    pub(crate) fn restored_header(
        slot: Option<&SnapshotSlot>,
        first: &mut Vec<u8>,
    ) -> Result<Option<PieceReader>> {
        let Some(mut piece) = SnapshotSlot::restored_piece(slot)? else {
            return Ok(None);
        };
        Ok(piece.next_frame(first)?.then_some(piece))
    }

    /// The first frame of that piece as a record: an operator whose state is one value.
    pub(crate) fn restored_value<T: crate::dataflow::Data>(
        slot: Option<&SnapshotSlot>,
    ) -> Result<Option<T>> {
        let mut bytes = Vec::new();
        if SnapshotSlot::restored_header(slot, &mut bytes)?.is_none() {
            return Ok(None);
        }
        crate::dataflow::decode_record(&bytes).map(Some)
    }
}

/// Adds frames to an operator's piece.
pub(crate) struct PieceWriter<'a> {
    writing: &'a mut Writing,
}

impl PieceWriter<'_> {
    /// One frame: `bytes` (not empty).
    pub(crate) fn frame(&mut self, bytes: &[u8]) -> Result<()> {
        assert!(!bytes.is_empty(), "an empty checkpoint frame");
        let len = u32::try_from(bytes.len()).map_err(|_| WeirError::Data {
            message: format!(
                "a checkpoint frame of {} bytes (4 GiB at most)",
                bytes.len()
            ),
        })?;
        self.writing.put(&len.to_le_bytes());
        self.writing.put(bytes);
        Ok(())
    }
}

/// A task file read back: checksum verified, each piece's offset.
#[derive(Debug)]
struct TaskFile {
    path: PathBuf,
    pieces: HashMap<u32, u64>,
}

impl TaskFile {
    /// Reads `path` through once: its checksum and framing checked, its pieces found.
    fn open(path: &Path) -> Result<TaskFile> {
        let file = File::open(path).map_err(io_error("read checkpoint", path))?;
        let len = file
            .metadata()
            .map_err(io_error("read checkpoint", path))?
            .len();
        let body = len
            .checked_sub(4)
            .ok_or_else(|| corrupt(path, "truncated or damaged (shorter than its checksum)"))?;
        let mut input = Checked {
            input: BufReader::new(file),
            crc: crc32fast::Hasher::new(),
            position: 0,
            body,
            path,
        };
        let mut head = [0u8; 24];
        input.read(&mut head)?;
        if &head[..8] != MAGIC {
            return Err(corrupt(path, "not a weir checkpoint file"));
        }
        let mut pieces = HashMap::new();
        let mut scratch = Vec::new();
        loop {
            let operator = input.word()?;
            if operator == END_OF_PIECES {
                input.read(&mut [0u8; 8])?;
                break;
            }
            pieces.insert(operator, input.position);
            loop {
                let frame = input.word()? as usize;
                if frame == 0 {
                    break;
                }
                scratch.resize(frame, 0);
                input.read(&mut scratch)?;
            }
        }
        if input.position != body {
            return Err(corrupt(path, "bytes after the last piece"));
        }
        let crc = input.crc.clone().finalize();
        let mut stored = [0u8; 4];
        input
            .input
            .read_exact(&mut stored)
            .map_err(io_error("read checkpoint", path))?;
        if u32::from_le_bytes(stored) != crc {
            return Err(corrupt(path, "checksum mismatch"));
        }
        Ok(TaskFile {
            path: path.to_path_buf(),
            pieces,
        })
    }

    fn piece(&self, operator: u32) -> Result<Option<PieceReader>> {
        let Some(&offset) = self.pieces.get(&operator) else {
            return Ok(None);
        };
        let mut file = File::open(&self.path).map_err(io_error("read checkpoint", &self.path))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error("read checkpoint", &self.path))?;
        Ok(Some(PieceReader {
            input: BufReader::new(file),
            path: self.path.clone(),
            done: false,
        }))
    }
}

/// A task file read through once, its bytes summed into the checksum.
struct Checked<'a> {
    input: BufReader<File>,
    crc: crc32fast::Hasher,
    position: u64,
    /// The bytes before the checksum.
    body: u64,
    path: &'a Path,
}

impl Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        if self.position + buf.len() as u64 > self.body {
            return Err(corrupt(
                self.path,
                "truncated or damaged (a length runs past the end)",
            ));
        }
        self.input
            .read_exact(buf)
            .map_err(io_error("read checkpoint", self.path))?;
        self.crc.update(buf);
        self.position += buf.len() as u64;
        Ok(())
    }

    fn word(&mut self) -> Result<u32> {
        let mut word = [0u8; 4];
        self.read(&mut word)?;
        Ok(u32::from_le_bytes(word))
    }
}

/// Reads an operator's piece back, frame by frame (the file's checksum was verified
/// when the job started).
pub(crate) struct PieceReader {
    input: BufReader<File>,
    path: PathBuf,
    done: bool,
}

impl PieceReader {
    /// The next frame into `buf`; `false` after the last.
    pub(crate) fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let mut word = [0u8; 4];
        self.input
            .read_exact(&mut word)
            .map_err(io_error("read checkpoint", &self.path))?;
        let len = u32::from_le_bytes(word) as usize;
        if len == 0 {
            self.done = true;
            return Ok(false);
        }
        buf.resize(len, 0);
        self.input
            .read_exact(buf)
            .map_err(io_error("read checkpoint", &self.path))?;
        Ok(true)
    }
}
