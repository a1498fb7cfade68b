//! Spill files and the disk space they hold.
//!
//! A file is created in the spill directory under a unique name (process id and a
//! counter), opened, and unlinked at once: from then on only its descriptor keeps it, so
//! no spill file survives the process, whatever way the process ends. The name is kept for
//! error messages.
//!
//! Disk space is claimed block by block against the store's quota before the block is
//! written, and given back when the last holder of the file (writer, run, readers) drops
//! it. The store's counters live here too, beside the space they count.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::SpillStats;
use crate::constants::SPILL_BLOCK_ALIGN;
use crate::error::{KernelError, Result};

/// Files created by this process, for unique names and run ids.
static FILES_CREATED: AtomicU64 = AtomicU64::new(0);

/// The disk a store spills to: where, how, how much, and what happened so far.
#[derive(Debug)]
pub(super) struct Disk {
    dir: PathBuf,
    /// Whether to ask for `O_DIRECT`; cleared when the filesystem refuses it, so later
    /// files do not ask again.
    direct_io: AtomicBool,
    quota_bytes: Option<u64>,
    /// Disk bytes claimed by live files; checked against the quota under this lock so two
    /// writers cannot both take the last bytes.
    claimed: Mutex<u64>,
    stats: Counters,
}

/// The counters behind [`SpillStats`], updated without a lock.
#[derive(Debug, Default)]
struct Counters {
    runs_created: AtomicU64,
    blocks_written: AtomicU64,
    bytes_written: AtomicU64,
    payload_bytes_written: AtomicU64,
    bytes_read: AtomicU64,
    bytes_on_disk: AtomicU64,
    bytes_on_disk_peak: AtomicU64,
}

impl Disk {
    pub(super) fn new(dir: PathBuf, direct_io: bool, quota_bytes: Option<u64>) -> Disk {
        Disk {
            dir,
            direct_io: AtomicBool::new(direct_io),
            quota_bytes,
            claimed: Mutex::new(0),
            stats: Counters::default(),
        }
    }

    /// Counts a run started.
    pub(super) fn count_run(&self) {
        self.stats.runs_created.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn stats(&self) -> SpillStats {
        let c = &self.stats;
        SpillStats {
            runs_created: c.runs_created.load(Ordering::Relaxed),
            blocks_written: c.blocks_written.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            payload_bytes_written: c.payload_bytes_written.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_on_disk: c.bytes_on_disk.load(Ordering::Relaxed),
            bytes_on_disk_peak: c.bytes_on_disk_peak.load(Ordering::Relaxed),
        }
    }

    /// Counts one block written: `disk_len` bytes on disk for `payload_len` of payload.
    pub(super) fn count_write(&self, disk_len: usize, payload_len: usize) {
        let c = &self.stats;
        c.blocks_written.fetch_add(1, Ordering::Relaxed);
        c.bytes_written
            .fetch_add(disk_len as u64, Ordering::Relaxed);
        c.payload_bytes_written
            .fetch_add(payload_len as u64, Ordering::Relaxed);
    }

    /// Counts `bytes` read from disk.
    pub(super) fn count_read(&self, bytes: usize) {
        self.stats
            .bytes_read
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn claim(&self, bytes: u64) -> Result<()> {
        let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        let after = *claimed + bytes;
        if let Some(quota_bytes) = self.quota_bytes
            && after > quota_bytes
        {
            return Err(KernelError::DiskQuotaExceeded {
                quota_bytes,
                used_bytes: *claimed,
                requested_bytes: bytes,
            });
        }
        *claimed = after;
        self.stats.bytes_on_disk.store(after, Ordering::Relaxed);
        self.stats
            .bytes_on_disk_peak
            .fetch_max(after, Ordering::Relaxed);
        Ok(())
    }

    fn release(&self, bytes: u64) {
        let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            *claimed >= bytes,
            "spill files release {bytes} bytes, {} claimed",
            *claimed
        );
        *claimed -= bytes;
        self.stats.bytes_on_disk.store(*claimed, Ordering::Relaxed);
    }
}

/// One open, already unlinked spill file.
///
/// Invariant: `claimed` bytes of the disk's claimed total belong to this file, and are
/// released when it drops.
#[derive(Debug)]
pub(super) struct SpillFile {
    file: File,
    path: PathBuf,
    direct: bool,
    run_id: u64,
    claimed: AtomicU64,
    disk: Arc<Disk>,
}

impl SpillFile {
    /// Creates, opens and unlinks a new file in the disk's directory. Tries `O_DIRECT` when
    /// the disk asks for it and falls back to buffered I/O when the filesystem refuses it
    /// (`EINVAL`).
    ///
    /// # Errors
    ///
    /// [`KernelError::SpillIo`] naming the file when it cannot be created or unlinked.
    pub(super) fn create(disk: &Arc<Disk>) -> Result<SpillFile> {
        let n = FILES_CREATED.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let path = disk.dir.join(format!("weir-spill-{pid}-{n}"));
        let asked = disk.direct_io.load(Ordering::Relaxed);
        let (file, direct) = open_new(&path, asked).map_err(|source| KernelError::SpillIo {
            operation: "create spill file",
            path: path.clone(),
            offset: 0,
            source,
        })?;
        if asked && !direct {
            disk.direct_io.store(false, Ordering::Relaxed);
        }
        std::fs::remove_file(&path).map_err(|source| KernelError::SpillIo {
            operation: "unlink spill file",
            path: path.clone(),
            offset: 0,
            source,
        })?;
        Ok(SpillFile {
            file,
            path,
            direct,
            run_id: (u64::from(pid) << 32) | (n & u64::from(u32::MAX)),
            claimed: AtomicU64::new(0),
            disk: Arc::clone(disk),
        })
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// The file's name at creation (it is unlinked since).
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file was opened with `O_DIRECT`.
    pub(super) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Whether a transfer cut short at `offset` can go on from there. With `O_DIRECT` an
    /// unaligned offset is refused (`EINVAL`), and a regular file stops short of a block
    /// boundary only at its end: the caller has read (or written) all there is.
    pub(super) fn can_resume_at(&self, offset: u64) -> bool {
        !self.direct || offset.is_multiple_of(SPILL_BLOCK_ALIGN as u64)
    }

    /// The id of the run this file holds, unique in the process and across processes.
    pub(super) fn run_id(&self) -> u64 {
        self.run_id
    }

    pub(super) fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Claims `bytes` more disk space for this file.
    ///
    /// # Errors
    ///
    /// [`KernelError::DiskQuotaExceeded`] when that would take the store past its quota.
    pub(super) fn claim(&self, bytes: usize) -> Result<()> {
        self.disk.claim(bytes as u64)?;
        self.claimed.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(())
    }

    /// A [`KernelError::SpillIo`] about this file.
    pub(super) fn io_error(
        &self,
        operation: &'static str,
        offset: u64,
        source: io::Error,
    ) -> KernelError {
        KernelError::SpillIo {
            operation,
            path: self.path.clone(),
            offset,
            source,
        }
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        self.disk.release(*self.claimed.get_mut());
    }
}

/// Opens a new file for reading and writing, with `O_DIRECT` if asked and accepted.
fn open_new(path: &Path, direct: bool) -> io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true).mode(0o600);
    if direct {
        match options.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => return Ok((file, true)),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {}
            Err(error) => return Err(error),
        }
    }
    Ok((options.open(path)?, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn files_are_unlinked_at_once_and_release_their_space() {
        let dir = temp_dir("unlink");
        let disk = Arc::new(Disk::new(dir.clone(), false, Some(10_000)));
        let first = SpillFile::create(&disk).unwrap();
        let second = SpillFile::create(&disk).unwrap();
        assert_ne!(first.run_id(), second.run_id());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        first.claim(4096).unwrap();
        second.claim(4096).unwrap();
        let error = second.claim(4096).unwrap_err();
        assert!(
            matches!(
                error,
                KernelError::DiskQuotaExceeded {
                    quota_bytes: 10_000,
                    used_bytes: 8192,
                    requested_bytes: 4096
                }
            ),
            "{error}"
        );
        drop(first);
        assert_eq!(disk.stats().bytes_on_disk, 4096);
        second.claim(4096).unwrap();
        drop(second);
        let stats = disk.stats();
        assert_eq!((stats.bytes_on_disk, stats.bytes_on_disk_peak), (0, 8192));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_names_the_path() {
        let disk = Arc::new(Disk::new(PathBuf::from("/nonexistent/weir"), true, None));
        let error = SpillFile::create(&disk).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/weir/weir-spill-"),
            "{error}"
        );
    }
}
