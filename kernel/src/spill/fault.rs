//! Test tools: a [`FaultyStore`] that fails or corrupts the Nth block on demand, and
//! functions that damage a finished run's file.
//!
//! They are compiled in every build, so the tests of crates built on the kernel (the
//! external sorter, the operators) can make every spill write and read fail in turn and
//! check that the failure comes back as an `Err`, every segment goes home, and no spill
//! file is left. Nothing in the kernel uses them.
//!
//! ```text
//!   FaultyStore ──create_run──▶ FaultyWriter ──write_block #n──▶ Err(SpillIo) (injected)
//!        │                           └── corrupt_write #n: one payload byte flipped on
//!        │                               disk when the run finishes ─▶ CorruptSpill on read
//!        └────open_run──▶ FaultyReader ──next_block #n──▶ Err(SpillIo) (injected)
//! ```
//!
//! Blocks are counted across the whole store, from 1, in the order `write_block` and
//! `next_block` are called, so a test can walk `n` from 1 until the job succeeds.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::run::RunLayout;
use super::{Block, IoBackend, RunOptions, RunReader, RunWriter, SpillRun, SpillStats, SpillStore};
use crate::constants::SPILL_BLOCK_HEADER_SIZE;
use crate::error::{KernelError, Result};
use crate::memory::MemorySegment;

/// Which blocks fail, and the counts so far.
#[derive(Debug, Default)]
struct Faults {
    fail_write: Option<u64>,
    fail_read: Option<u64>,
    corrupt_write: Option<u64>,
    writes: AtomicU64,
    reads: AtomicU64,
}

/// A spill store that fails the Nth block write or read of the store it wraps (a test tool).
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn SpillStore>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    /// Wraps `inner`, failing its `fail_write`th block write and its `fail_read`th block
    /// read (counted from 1 across the store) with [`KernelError::SpillIo`].
    pub fn new(
        inner: Arc<dyn SpillStore>,
        fail_write: Option<u64>,
        fail_read: Option<u64>,
    ) -> FaultyStore {
        FaultyStore {
            inner,
            faults: Arc::new(Faults {
                fail_write,
                fail_read,
                ..Faults::default()
            }),
        }
    }

    /// Also corrupts the `n`th block written: when its run finishes, the byte after its
    /// header (payload, or padding when the payload is empty) is flipped on disk, so reading it back fails verification with
    /// [`KernelError::CorruptSpill`]. Only for runs of the file stores of [`open_store`](super::open_store).
    ///
    /// # Panics
    ///
    /// When the store is already in use (blocks have been counted).
    pub fn corrupt_write(mut self, n: u64) -> FaultyStore {
        let faults = Arc::get_mut(&mut self.faults).expect("corrupt_write before first use");
        faults.corrupt_write = Some(n);
        self
    }

    /// Block writes counted so far.
    pub fn writes(&self) -> u64 {
        self.faults.writes.load(Ordering::Relaxed)
    }

    /// Block reads counted so far.
    pub fn reads(&self) -> u64 {
        self.faults.reads.load(Ordering::Relaxed)
    }
}

fn injected(operation: &'static str, n: u64) -> KernelError {
    KernelError::SpillIo {
        operation,
        path: PathBuf::from("(faulty store)"),
        offset: 0,
        source: io::Error::other(format!("injected fault at block {n}")),
    }
}

impl SpillStore for FaultyStore {
    fn backend(&self) -> IoBackend {
        self.inner.backend()
    }

    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }

    fn create_run(&self, options: RunOptions) -> Result<Box<dyn RunWriter>> {
        Ok(Box::new(FaultyWriter {
            inner: self.inner.create_run(options)?,
            faults: Arc::clone(&self.faults),
            blocks: 0,
            corrupt: None,
        }))
    }

    fn open_run(&self, run: &SpillRun, buffers: Vec<MemorySegment>) -> Result<Box<dyn RunReader>> {
        Ok(Box::new(FaultyReader {
            inner: self.inner.open_run(run, buffers)?,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn stats(&self) -> SpillStats {
        self.inner.stats()
    }
}

#[derive(Debug)]
struct FaultyWriter {
    inner: Box<dyn RunWriter>,
    faults: Arc<Faults>,
    /// Blocks written to this run.
    blocks: usize,
    /// This run's block to corrupt when it finishes.
    corrupt: Option<usize>,
}

impl RunWriter for FaultyWriter {
    fn write_block(
        &mut self,
        segment: MemorySegment,
        payload_len: usize,
    ) -> Result<Option<MemorySegment>> {
        let n = self.faults.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if self.faults.fail_write == Some(n) {
            return Err(injected("write block", n));
        }
        if self.faults.corrupt_write == Some(n) {
            self.corrupt = Some(self.blocks);
        }
        self.blocks += 1;
        self.inner.write_block(segment, payload_len)
    }

    fn finish(self: Box<Self>) -> Result<(SpillRun, Vec<MemorySegment>)> {
        let (run, segments) = self.inner.finish()?;
        if let Some(block) = self.corrupt {
            let offset = block_offsets(&run)?[block] + SPILL_BLOCK_HEADER_SIZE as u64;
            corrupt_byte(&run, offset, 0x01)?;
        }
        Ok((run, segments))
    }
}

#[derive(Debug)]
struct FaultyReader {
    inner: Box<dyn RunReader>,
    faults: Arc<Faults>,
}

impl RunReader for FaultyReader {
    fn next_block(&mut self) -> Result<Option<Block>> {
        let Some(block) = self.inner.next_block()? else {
            return Ok(None);
        };
        let n = self.faults.reads.fetch_add(1, Ordering::Relaxed) + 1;
        if self.faults.fail_read == Some(n) {
            self.inner.recycle(block.segment);
            return Err(injected("read block", n));
        }
        Ok(Some(block))
    }

    fn recycle(&mut self, segment: MemorySegment) {
        self.inner.recycle(segment);
    }

    fn into_segments(self: Box<Self>) -> Vec<MemorySegment> {
        self.inner.into_segments()
    }
}

/// The file offset of each block of `run` (a test tool).
///
/// # Errors
///
/// [`KernelError::InvalidConfig`] for a run not made by a file store of [`open_store`](super::open_store).
pub fn block_offsets(run: &SpillRun) -> Result<Vec<u64>> {
    Ok(RunLayout::of(run)?.block_offsets())
}

/// Flips the bits of `mask` in the byte at `offset` of `run`'s file (a test tool). The
/// file is reopened through `/proc/self/fd` without `O_DIRECT`, so a single byte can be
/// written whatever way the store opened it.
///
/// # Errors
///
/// [`KernelError::SpillIo`] when the byte cannot be read or written;
/// [`KernelError::InvalidConfig`] for a run not made by a file store.
pub fn corrupt_byte(run: &SpillRun, offset: u64, mask: u8) -> Result<()> {
    let file = &RunLayout::of(run)?.file;
    let fd_path = format!("/proc/self/fd/{}", file.file().as_raw_fd());
    let fail = |source| file.io_error("corrupt byte (test tool)", offset, source);
    let handle = OpenOptions::new()
        .read(true)
        .write(true)
        .open(fd_path)
        .map_err(fail)?;
    let mut byte = [0];
    handle.read_exact_at(&mut byte, offset).map_err(fail)?;
    byte[0] ^= mask;
    handle.write_all_at(&byte, offset).map_err(fail)
}

/// Cuts `run`'s file to `len` bytes, tearing the blocks past it (a test tool).
///
/// # Errors
///
/// As [`corrupt_byte`].
pub fn truncate(run: &SpillRun, len: u64) -> Result<()> {
    let file = &RunLayout::of(run)?.file;
    file.file()
        .set_len(len)
        .map_err(|source| file.io_error("truncate (test tool)", len, source))
}
