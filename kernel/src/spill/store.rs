//! [`SpillConfig`] and [`open_store`]: where runs go, which backend moves them, and the
//! store that hands out run writers and readers.
//!
//! ```text
//!   SpillConfig ──validate──▶ probe file (create, unlink: writable? O_DIRECT accepted?)
//!               ──choose────▶ WEIR_IO=sync? backend configured? io_uring probe ok?
//!               ──────────▶ Arc<dyn SpillStore>, with a one-line description of the choice
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use super::file::{Disk, SpillFile};
use super::run::{RunBuilder, RunLayout};
use super::sync::{SyncReader, SyncWriter};
use super::uring::{self, UringReader, UringWriter};
use super::{IoBackend, RunOptions, RunReader, RunWriter, SpillRun, SpillStats, SpillStore};
use crate::constants::{SPILL_BLOCK_ALIGN, SPILL_DIRECT_IO_DEFAULT};
use crate::error::{KernelError, Result};
use crate::memory::{MemorySegment, Owner};

/// The environment variable that forces the portable backend: `WEIR_IO=sync`.
pub const WEIR_IO_ENV: &str = "WEIR_IO";

/// Where and how a store spills.
///
/// Put the spill directory on a disk, never on a tmpfs (`/dev/shm`, and `/tmp` on some
/// systems): a tmpfs lives in RAM, so spilling there takes memory outside the budget and
/// defeats spilling.
#[derive(Debug, Clone)]
pub struct SpillConfig {
    /// The directory spill files are created in (and unlinked from at once).
    pub dir: PathBuf,
    /// The most bytes the store's files may hold at once; `None` for no limit but the disk.
    pub quota_bytes: Option<u64>,
    /// LZ4-compress every run, whatever its [`RunOptions::compress`] says. Compression
    /// needs [`SpillConfig::scratch`].
    pub compress: bool,
    /// Open spill files with `O_DIRECT` (bypassing the page cache) where the filesystem
    /// accepts it; buffered otherwise.
    pub direct_io: bool,
    /// The backend to use: `None` picks io_uring when the probe succeeds, else the portable
    /// one; `Some(IoUring)` requires io_uring. `WEIR_IO=sync` overrides both.
    pub backend: Option<IoBackend>,
    /// The memory owner charged for each compressing writer's LZ4 output buffer (about
    /// 1.1 segments, held while the writer lives). Required for compressed runs.
    pub scratch: Option<Owner>,
    /// Accept a directory on a filesystem in memory (tmpfs, ramfs). Off by default: such
    /// a directory is refused, since spilling there takes memory outside the budget. Tests
    /// that need a small real filesystem (a full disk) turn it on.
    pub allow_memory_filesystem: bool,
}

impl SpillConfig {
    /// Spill into `dir`, no quota, no compression, buffered I/O, backend by probe.
    pub fn new(dir: PathBuf) -> SpillConfig {
        SpillConfig {
            dir,
            quota_bytes: None,
            compress: false,
            direct_io: SPILL_DIRECT_IO_DEFAULT,
            backend: None,
            scratch: None,
            allow_memory_filesystem: false,
        }
    }

    /// Checks the fields that can be checked without touching the disk.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        if !self.dir.is_dir() {
            return Err(KernelError::InvalidConfig {
                field: "spill dir",
                value: self.dir.display().to_string(),
                expected: "an existing, writable directory on a disk (not a tmpfs)",
            });
        }
        if !self.allow_memory_filesystem && crate::sys::is_memory_filesystem(&self.dir) {
            return Err(KernelError::InvalidConfig {
                field: "spill dir",
                value: format!("{} (a filesystem in memory)", self.dir.display()),
                expected: "a directory on a disk: spilling to a tmpfs or ramfs takes memory \
                           outside the budget",
            });
        }
        if let Some(quota) = self.quota_bytes
            && quota < SPILL_BLOCK_ALIGN as u64
        {
            return Err(KernelError::InvalidConfig {
                field: "spill quota_bytes",
                value: quota.to_string(),
                expected: "room for at least one block (4096 bytes)",
            });
        }
        if self.compress && self.scratch.is_none() {
            return Err(KernelError::InvalidConfig {
                field: "spill compress",
                value: "true".into(),
                expected: "a scratch owner to charge the LZ4 buffers to",
            });
        }
        Ok(())
    }
}

/// Opens a spill store: validates `config`, creates (and unlinks) a probe file to prove the
/// directory writable and learn whether `O_DIRECT` is accepted, and picks the backend.
///
/// # Errors
///
/// [`KernelError::InvalidConfig`] for an invalid configuration (a missing directory, an
/// unknown `WEIR_IO` value); [`KernelError::SpillIo`] when the directory is not writable,
/// or when `backend: Some(IoUring)` is configured and io_uring is unavailable.
pub fn open_store(config: &SpillConfig) -> Result<Arc<dyn SpillStore>> {
    config.validate()?;
    let disk = Arc::new(Disk::new(
        config.dir.clone(),
        config.direct_io,
        config.quota_bytes,
    ));
    // A probe file proves the directory writable and tells whether O_DIRECT is accepted
    // (the disk remembers a refusal); it is unlinked at once and is not a run.
    let direct = SpillFile::create(&disk)?.is_direct();
    let (backend, why) = choose_backend(config, std::env::var(WEIR_IO_ENV).ok().as_deref())?;
    let io = match (config.direct_io, direct) {
        (false, _) => "buffered I/O",
        (true, true) => "O_DIRECT",
        (true, false) => "buffered I/O (the filesystem refused O_DIRECT)",
    };
    Ok(Arc::new(FileStore {
        disk,
        backend,
        compress: config.compress,
        scratch: config.scratch.clone(),
        description: format!(
            "{backend} ({why}), {io}, spill dir {}",
            config.dir.display()
        ),
    }))
}

/// Picks the backend from the environment, the configuration and the probe; says why.
fn choose_backend(config: &SpillConfig, env: Option<&str>) -> Result<(IoBackend, String)> {
    match env {
        Some("sync") => return Ok((IoBackend::Sync, format!("{WEIR_IO_ENV}=sync"))),
        None | Some("") | Some("auto") => {}
        Some(other) => {
            return Err(KernelError::InvalidConfig {
                field: WEIR_IO_ENV,
                value: other.to_string(),
                expected: "sync, auto or unset",
            });
        }
    }
    if config.backend == Some(IoBackend::Sync) {
        return Ok((IoBackend::Sync, "configured".into()));
    }
    match (config.backend, uring::probe()) {
        (Some(_), Ok(())) => Ok((IoBackend::IoUring, "configured".into())),
        (Some(_), Err(why)) => Err(KernelError::SpillIo {
            operation: "set up io_uring",
            path: config.dir.clone(),
            offset: 0,
            source: std::io::Error::other(why),
        }),
        (None, Ok(())) => Ok((IoBackend::IoUring, "probe succeeded".into())),
        (None, Err(why)) => Ok((IoBackend::Sync, format!("io_uring unavailable: {why}"))),
    }
}

/// The store of both file backends.
#[derive(Debug)]
struct FileStore {
    disk: Arc<Disk>,
    backend: IoBackend,
    compress: bool,
    scratch: Option<Owner>,
    description: String,
}

impl SpillStore for FileStore {
    fn backend(&self) -> IoBackend {
        self.backend
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn create_run(&self, options: RunOptions) -> Result<Box<dyn RunWriter>> {
        let options = RunOptions {
            compress: options.compress || self.compress,
            ..options
        };
        let file = SpillFile::create(&self.disk)?;
        let builder = RunBuilder::new(file, options, self.scratch.as_ref())?;
        self.disk.count_run();
        Ok(match self.backend {
            IoBackend::Sync => Box::new(SyncWriter::new(builder)),
            IoBackend::IoUring => Box::new(UringWriter::new(builder, options.write_behind)?),
        })
    }

    fn open_run(&self, run: &SpillRun, buffers: Vec<MemorySegment>) -> Result<Box<dyn RunReader>> {
        let layout = RunLayout::of(run)?;
        layout.check_buffers(&buffers)?;
        let layout = Arc::clone(layout);
        Ok(match self.backend {
            IoBackend::Sync => Box::new(SyncReader::new(layout, buffers)),
            IoBackend::IoUring => Box::new(UringReader::new(layout, buffers)?),
        })
    }

    fn stats(&self) -> SpillStats {
        self.disk.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_forces_sync_and_rejects_unknown_values() {
        let config = SpillConfig {
            backend: Some(IoBackend::IoUring),
            ..SpillConfig::new(std::env::temp_dir())
        };
        let (backend, why) = choose_backend(&config, Some("sync")).unwrap();
        assert_eq!((backend, why.as_str()), (IoBackend::Sync, "WEIR_IO=sync"));
        let error = choose_backend(&config, Some("uring")).unwrap_err();
        assert!(error.to_string().contains("WEIR_IO = uring"), "{error}");
        let sync = SpillConfig {
            backend: Some(IoBackend::Sync),
            ..config
        };
        assert_eq!(choose_backend(&sync, None).unwrap().0, IoBackend::Sync);
    }

    #[test]
    fn invalid_configurations_name_the_field() {
        let missing = SpillConfig::new(PathBuf::from("/nonexistent/spill"));
        let error = open_store(&missing).unwrap_err();
        assert!(
            error.to_string().contains("spill dir = /nonexistent/spill"),
            "{error}"
        );
        let tiny = SpillConfig {
            quota_bytes: Some(100),
            ..SpillConfig::new(std::env::temp_dir())
        };
        assert!(open_store(&tiny).unwrap_err().to_string().contains("quota"));
        let shm = std::path::Path::new("/dev/shm");
        if crate::sys::is_memory_filesystem(shm) {
            let error = open_store(&SpillConfig::new(shm.to_path_buf())).unwrap_err();
            assert!(
                error.to_string().contains("a filesystem in memory"),
                "{error}"
            );
        }
        let compress = SpillConfig {
            compress: true,
            ..SpillConfig::new(std::env::temp_dir())
        };
        assert!(
            open_store(&compress)
                .unwrap_err()
                .to_string()
                .contains("scratch")
        );
    }
}
