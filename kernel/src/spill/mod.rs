//! Spill I/O: sorted runs and hash partitions written to disk in blocks, and read back.
//!
//! ```text
//!   caller fills segment[HEADER..HEADER+len] ──write_block──▶ RunWriter ──▶ file
//!                                                 (header, checksum, optional LZ4,
//!                                                  write-behind: several blocks in flight)
//!   file ──▶ RunReader (read-ahead into lent segments, verify, decompress) ──next_block──▶ caller
//! ```
//!
//! A run is a sequence of blocks. Each block is one segment on the way out: the caller
//! writes payload after [`SPILL_BLOCK_HEADER_SIZE`] bytes of room, and the writer fills in
//! the header and writes the segment as it is (or its LZ4-compressed form), padded on disk
//! to [`SPILL_BLOCK_ALIGN`]. The layout is drawn in docs/FORMAT.md.
//!
//! Two backends implement [`SpillStore`]: io_uring (write-behind and read-ahead with several
//! blocks in flight) and portable `pread`/`pwrite`. [`open_store`] probes io_uring and falls
//! back; `WEIR_IO=sync` forces the portable one. Files are created in the spill directory
//! and unlinked at once, so none survives the process; a disk quota turns "disk full" into
//! [`KernelError::DiskQuotaExceeded`](crate::KernelError::DiskQuotaExceeded).
//!
//! Memory: writers and readers move only the segments their caller lends them, with two
//! exceptions, both in the budget. A compressing writer owns an LZ4 output buffer of about
//! 1.1 segments, reserved from [`SpillConfig::scratch`] (compression is refused without
//! one); and a run keeps two bytes per block in memory, the blocks' lengths on disk, so a
//! reader can read ahead without reading headers first.
//!
//! Files, by concept: `block` (header, verification), `lz4`, `file` (spill files, disk
//! quota, counters), `run` (what both backends share), `sync` and `uring` (the backends),
//! `store` ([`SpillConfig`], [`open_store`]), `fault` (test tools), `stream` (byte streams
//! over runs).
//!
//! [`SPILL_BLOCK_HEADER_SIZE`]: crate::constants::SPILL_BLOCK_HEADER_SIZE
//! [`SPILL_BLOCK_ALIGN`]: crate::constants::SPILL_BLOCK_ALIGN

use std::fmt;
use std::ops::Range;

mod block;
pub mod fault;
mod file;
mod lz4;
mod run;
mod store;
mod stream;
mod sync;
#[allow(
    unsafe_code,
    reason = "io_uring submission lends segment bytes to the kernel; docs/SAFETY.md"
)]
mod uring;

pub use fault::FaultyStore;
pub use store::{SpillConfig, WEIR_IO_ENV, open_store};
pub use stream::{RunInput, RunOutput};

use crate::constants::SPILL_WRITE_BEHIND_DEFAULT;
use crate::error::Result;
use crate::memory::MemorySegment;

/// Which implementation moves the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// io_uring: several blocks in flight per run, registered files, `O_DIRECT` when the
    /// filesystem allows.
    IoUring,
    /// Portable blocking `pread` / `pwrite`.
    Sync,
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoBackend::IoUring => "io_uring",
            IoBackend::Sync => "sync",
        })
    }
}

/// Options of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Compress each block's payload with LZ4 (kept uncompressed when that is not smaller).
    pub compress: bool,
    /// Writes in flight before `write_block` waits for the oldest.
    pub write_behind: usize,
}

impl Default for RunOptions {
    /// Uncompressed, [`SPILL_WRITE_BEHIND_DEFAULT`] writes in flight.
    fn default() -> RunOptions {
        RunOptions {
            compress: false,
            write_behind: SPILL_WRITE_BEHIND_DEFAULT,
        }
    }
}

/// Counters of a spill store, over its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpillStats {
    /// Runs created.
    pub runs_created: u64,
    /// Blocks written.
    pub blocks_written: u64,
    /// Bytes written to disk (headers, padding and compression included).
    pub bytes_written: u64,
    /// Payload bytes handed to writers (before compression).
    pub payload_bytes_written: u64,
    /// Bytes read from disk.
    pub bytes_read: u64,
    /// Bytes spill files hold now.
    pub bytes_on_disk: u64,
    /// The most bytes spill files held at once.
    pub bytes_on_disk_peak: u64,
}

/// A finished run: where its blocks are. Dropping the last handle frees its disk space.
pub struct SpillRun {
    inner: Box<dyn RunHandle>,
}

/// The backend's description of a finished run.
pub trait RunHandle: Send + Sync + fmt::Debug {
    /// Blocks in the run.
    fn blocks(&self) -> usize;
    /// Payload bytes in the run (before compression).
    fn payload_bytes(&self) -> u64;
    /// Bytes the run occupies on disk.
    fn disk_bytes(&self) -> u64;
    /// For downcasting by the backend that made it.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl SpillRun {
    /// Wraps a backend's run handle.
    pub fn new(inner: Box<dyn RunHandle>) -> SpillRun {
        SpillRun { inner }
    }

    /// The backend's handle.
    pub fn handle(&self) -> &dyn RunHandle {
        &*self.inner
    }

    /// Blocks in the run.
    pub fn blocks(&self) -> usize {
        self.inner.blocks()
    }

    /// Payload bytes in the run.
    pub fn payload_bytes(&self) -> u64 {
        self.inner.payload_bytes()
    }

    /// Bytes the run occupies on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.disk_bytes()
    }
}

impl fmt::Debug for SpillRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Creates runs and opens them for reading. Shared by the tasks of a worker.
pub trait SpillStore: Send + Sync + fmt::Debug {
    /// The backend in use.
    fn backend(&self) -> IoBackend;

    /// One line saying which backend runs and why (the probe's verdict, `WEIR_IO=sync`, a
    /// configured choice), whether `O_DIRECT` is on, and where files go: for logs and the
    /// CLI's metrics summary.
    fn describe(&self) -> String {
        self.backend().to_string()
    }

    /// Starts a new run.
    ///
    /// # Errors
    ///
    /// [`KernelError::SpillIo`](crate::KernelError::SpillIo) when the file cannot be
    /// created; [`KernelError::InvalidConfig`](crate::KernelError::InvalidConfig) for a
    /// compressed run on a store without a scratch owner.
    fn create_run(&self, options: RunOptions) -> Result<Box<dyn RunWriter>>;

    /// Opens `run` for a sequential read, reading ahead into `buffers` (at least one
    /// segment; one more than the read-ahead depth is typical). The reader lends the
    /// segments out block by block and gives them all back from
    /// [`RunReader::into_segments`]. A run with compressed blocks needs two segments in the
    /// reader's hands to produce a block (one read, one decompressed into), so give it at
    /// least two, and recycle each block before asking for the next. `buffers` are dropped
    /// on error.
    ///
    /// # Errors
    ///
    /// [`KernelError::SpillIo`](crate::KernelError::SpillIo) when the read cannot start;
    /// [`KernelError::InvalidConfig`](crate::KernelError::InvalidConfig) for too few or too
    /// small buffers, or a run from another kind of store.
    fn open_run(&self, run: &SpillRun, buffers: Vec<MemorySegment>) -> Result<Box<dyn RunReader>>;

    /// The store's counters.
    fn stats(&self) -> SpillStats;
}

/// Appends blocks to one run.
pub trait RunWriter: Send + fmt::Debug {
    /// Queues `segment` as the next block: its payload is
    /// `segment[SPILL_BLOCK_HEADER_SIZE .. SPILL_BLOCK_HEADER_SIZE + payload_len]`; the
    /// writer fills the header. Returns a segment whose write has completed (this one or an
    /// earlier one) when there is one, for the caller to fill next; waits for the oldest
    /// write when `write_behind` are already in flight.
    ///
    /// # Errors
    ///
    /// [`KernelError::SpillIo`](crate::KernelError::SpillIo) (disk full included) or
    /// [`KernelError::DiskQuotaExceeded`](crate::KernelError::DiskQuotaExceeded). After an
    /// error the run is unusable; dropping the writer frees its file and segments.
    fn write_block(
        &mut self,
        segment: MemorySegment,
        payload_len: usize,
    ) -> Result<Option<MemorySegment>>;

    /// Waits for every write and returns the run and every segment the writer still held.
    ///
    /// # Errors
    ///
    /// As [`RunWriter::write_block`].
    fn finish(self: Box<Self>) -> Result<(SpillRun, Vec<MemorySegment>)>;
}

/// One block read back: the payload is `segment[payload]`.
#[derive(Debug)]
pub struct Block {
    /// The segment holding the block.
    pub segment: MemorySegment,
    /// Where its payload lies in the segment.
    pub payload: Range<usize>,
}

/// Reads a run's blocks in order.
pub trait RunReader: Send + fmt::Debug {
    /// The next block, verified (and decompressed); `None` after the last.
    ///
    /// # Errors
    ///
    /// [`KernelError::CorruptSpill`](crate::KernelError::CorruptSpill) naming the file and
    /// offset for a block that fails verification, [`KernelError::SpillIo`](crate::KernelError::SpillIo)
    /// for a failed read.
    fn next_block(&mut self) -> Result<Option<Block>>;

    /// Gives back the segment of a block the caller is done with, for the next read-ahead.
    fn recycle(&mut self, segment: MemorySegment);

    /// Every segment the reader holds (call after the last block, or to abandon the run).
    fn into_segments(self: Box<Self>) -> Vec<MemorySegment>;
}
