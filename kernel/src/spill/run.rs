//! What both backends share about a run: building it block by block on the way out
//! ([`RunBuilder`]), where its blocks lie ([`RunLayout`]), and turning a block read back
//! into a verified [`Block`] ([`decode`]).
//!
//! ```text
//!   write_block(segment) ─▶ RunBuilder::prepare: LZ4 in place, seal header, claim disk
//!                            space, note the block's length ─▶ backend writes it at `offset`
//!   finish ─▶ RunLayout { file, run id, block lengths } ─▶ SpillRun
//!   open_run ─▶ ReadPlan (offset, length of each block) ─▶ backend reads ─▶ decode ─▶ Block
//! ```
//!
//! A run remembers each block's length on disk (two bytes per block, in
//! `SPILL_BLOCK_ALIGN` units), so a reader can issue reads ahead without first reading the
//! headers of the blocks before them.

use std::sync::Arc;

use super::block::{BlockHeader, BlockPlace, FLAG_LZ4};
use super::file::SpillFile;
use super::lz4::{self, Compressor};
use super::{Block, RunHandle, RunOptions, SpillRun};
use crate::constants::{SPILL_BLOCK_ALIGN, SPILL_BLOCK_HEADER_SIZE};
use crate::error::{KernelError, Result};
use crate::memory::{MemorySegment, Owner};

/// A finished run: its file and where its blocks are.
#[derive(Debug)]
pub(super) struct RunLayout {
    pub(super) file: Arc<SpillFile>,
    /// Each block's length on disk, in `SPILL_BLOCK_ALIGN` units; blocks lie back to back.
    units: Box<[u16]>,
    payload_bytes: u64,
    disk_bytes: u64,
    compressed_blocks: usize,
    disk_len_max: usize,
    payload_len_max: usize,
}

/// The [`RunHandle`] of both file backends.
#[derive(Debug)]
pub(super) struct FileRun(pub(super) Arc<RunLayout>);

impl RunHandle for FileRun {
    fn blocks(&self) -> usize {
        self.0.units.len()
    }

    fn payload_bytes(&self) -> u64 {
        self.0.payload_bytes
    }

    fn disk_bytes(&self) -> u64 {
        self.0.disk_bytes
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl RunLayout {
    /// The layout of a run written by a file backend.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] for a run made by another kind of store.
    pub(super) fn of(run: &SpillRun) -> Result<&Arc<RunLayout>> {
        match run.handle().as_any().downcast_ref::<FileRun>() {
            Some(FileRun(layout)) => Ok(layout),
            None => Err(KernelError::InvalidConfig {
                field: "run",
                value: format!("{run:?}"),
                expected: "a run written by a file spill store",
            }),
        }
    }

    /// Checks that `buffers` can read this run: at least one segment, two for a run with
    /// compressed blocks (one holds the block as read, the other takes its payload), each
    /// large enough for the largest block.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] saying what is missing.
    pub(super) fn check_buffers(&self, buffers: &[MemorySegment]) -> Result<()> {
        let needed = if self.compressed_blocks > 0 { 2 } else { 1 };
        if buffers.len() < needed {
            return Err(KernelError::InvalidConfig {
                field: "open_run buffers",
                value: buffers.len().to_string(),
                expected: "at least one segment, two for a run with compressed blocks",
            });
        }
        let size_min = self
            .disk_len_max
            .max(SPILL_BLOCK_HEADER_SIZE + self.payload_len_max);
        if let Some(small) = buffers.iter().find(|s| s.size() < size_min) {
            return Err(KernelError::InvalidConfig {
                field: "open_run buffers",
                value: format!("a segment of {} bytes", small.size()),
                expected: "segments at least as large as the run's largest block, decompressed",
            });
        }
        Ok(())
    }

    /// The file offset of each block.
    pub(super) fn block_offsets(&self) -> Vec<u64> {
        let mut offset = 0;
        self.units
            .iter()
            .map(|&units| {
                let start = offset;
                offset += u64::from(units) * SPILL_BLOCK_ALIGN as u64;
                start
            })
            .collect()
    }

    /// Whether a reader must keep a segment free to decompress into.
    pub(super) fn has_compressed_blocks(&self) -> bool {
        self.compressed_blocks > 0
    }
}

/// One block's place in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub(super) sequence: u32,
    pub(super) offset: u64,
    pub(super) len: usize,
}

/// The blocks of a run, in order, for a reader to issue.
#[derive(Debug)]
pub(super) struct ReadPlan {
    layout: Arc<RunLayout>,
    next: usize,
    offset: u64,
}

impl ReadPlan {
    pub(super) fn new(layout: Arc<RunLayout>) -> ReadPlan {
        ReadPlan {
            layout,
            next: 0,
            offset: 0,
        }
    }

    pub(super) fn layout(&self) -> &Arc<RunLayout> {
        &self.layout
    }

    /// Whether every block has been handed out.
    pub(super) fn is_done(&self) -> bool {
        self.next == self.layout.units.len()
    }

    /// The next block to read, or `None` after the last.
    pub(super) fn next_extent(&mut self) -> Option<Extent> {
        let units = *self.layout.units.get(self.next)?;
        let extent = Extent {
            sequence: self.next as u32,
            offset: self.offset,
            len: usize::from(units) * SPILL_BLOCK_ALIGN,
        };
        self.next += 1;
        self.offset += extent.len as u64;
        Some(extent)
    }
}

/// Turns a block read into `segment` (`bytes_read` of the extent's bytes) into a verified
/// [`Block`]. A compressed payload is decompressed into a segment taken from `free`, and
/// the segment it was read into joins `free`. On error the segment joins `free` too, so
/// the reader still holds every segment it was lent.
///
/// # Errors
///
/// [`KernelError::CorruptSpill`] naming the file and block offset for a torn block (fewer
/// bytes than written), a header that fails verification, or a payload LZ4 rejects.
///
/// # Panics
///
/// When a compressed block arrives and `free` is empty: readers keep a segment free for
/// that whenever the run has compressed blocks.
pub(super) fn decode(
    layout: &RunLayout,
    extent: Extent,
    segment: MemorySegment,
    bytes_read: usize,
    free: &mut Vec<MemorySegment>,
) -> Result<Block> {
    let place = BlockPlace {
        path: layout.file.path(),
        offset: extent.offset,
        run_id: layout.file.run_id(),
        sequence: extent.sequence,
        disk_len: extent.len,
    };
    let checked = if bytes_read < extent.len {
        Err(place.corrupt(format!(
            "torn block: the file ends after {bytes_read} of its {} bytes",
            extent.len
        )))
    } else {
        BlockHeader::verify(segment.bytes(0, extent.len), &place)
    };
    let header = match checked {
        Ok(header) => header,
        Err(error) => {
            free.push(segment);
            return Err(error);
        }
    };
    let payload = SPILL_BLOCK_HEADER_SIZE..SPILL_BLOCK_HEADER_SIZE + header.payload_len as usize;
    if !header.is_compressed() {
        return Ok(Block { segment, payload });
    }
    let mut target = free
        .pop()
        .expect("a reader keeps a segment free to decompress into");
    let decoded = lz4::decompress(
        &segment,
        header.stored_len as usize,
        &mut target,
        header.payload_len as usize,
    );
    match decoded {
        Ok(n) if n == payload.len() => {
            free.push(segment);
            Ok(Block {
                segment: target,
                payload,
            })
        }
        Ok(n) => {
            free.extend([segment, target]);
            Err(place.corrupt(format!(
                "lz4 payload decodes to {n} bytes, the header says {}",
                payload.len()
            )))
        }
        Err(what) => {
            free.extend([segment, target]);
            Err(place.corrupt(what))
        }
    }
}

/// Builds a run block by block: compression, header, disk space, layout.
#[derive(Debug)]
pub(super) struct RunBuilder {
    file: Arc<SpillFile>,
    compressor: Option<Compressor>,
    units: Vec<u16>,
    disk_bytes: u64,
    payload_bytes: u64,
    compressed_blocks: usize,
    disk_len_max: usize,
    payload_len_max: usize,
}

/// A sealed block ready to be written: `segment[..len]` goes to `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PendingWrite {
    pub(super) offset: u64,
    pub(super) len: usize,
    pub(super) payload_len: usize,
}

impl RunBuilder {
    /// A builder writing into `file`.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] when `options` asks for compression and the store
    /// has no scratch owner to charge the LZ4 buffer to.
    pub(super) fn new(
        file: SpillFile,
        options: RunOptions,
        scratch: Option<&Owner>,
    ) -> Result<RunBuilder> {
        let compressor = match (options.compress, scratch) {
            (false, _) => None,
            (true, Some(owner)) => Some(Compressor::new(owner)),
            (true, None) => {
                return Err(KernelError::InvalidConfig {
                    field: "RunOptions::compress",
                    value: "true".into(),
                    expected: "a SpillConfig::scratch owner to charge the LZ4 buffer to",
                });
            }
        };
        Ok(RunBuilder {
            file: Arc::new(file),
            compressor,
            units: Vec::new(),
            disk_bytes: 0,
            payload_bytes: 0,
            compressed_blocks: 0,
            disk_len_max: 0,
            payload_len_max: 0,
        })
    }

    pub(super) fn file(&self) -> &Arc<SpillFile> {
        &self.file
    }

    /// Turns `segment` into the next block: compresses its payload in place when that
    /// helps, seals the header, claims the disk space. The block is then written from
    /// `segment[..len]` at `offset`.
    ///
    /// # Errors
    ///
    /// [`KernelError::DiskQuotaExceeded`] when the store's quota has no room for the
    /// block; [`KernelError::BudgetExceeded`] when the LZ4 buffer cannot be reserved.
    ///
    /// # Panics
    ///
    /// When `payload_len` does not fit in the segment after the header.
    pub(super) fn prepare(
        &mut self,
        segment: &mut MemorySegment,
        payload_len: usize,
    ) -> Result<PendingWrite> {
        assert!(
            payload_len <= segment.size() - SPILL_BLOCK_HEADER_SIZE,
            "payload of {payload_len} bytes in a segment of {}",
            segment.size()
        );
        let sequence = u32::try_from(self.units.len()).expect("fewer than 2^32 blocks in a run");
        let compressed = match &mut self.compressor {
            Some(compressor) => compressor.compress(segment, payload_len)?,
            None => None,
        };
        let header = BlockHeader {
            flags: if compressed.is_some() { FLAG_LZ4 } else { 0 },
            stored_len: compressed.unwrap_or(payload_len) as u32,
            payload_len: payload_len as u32,
            sequence,
            run_id: self.file.run_id(),
        };
        let len = header.seal(segment);
        debug_assert!(self.verify_sealed(segment, sequence, len));
        self.file.claim(len)?;
        let pending = PendingWrite {
            offset: self.disk_bytes,
            len,
            payload_len,
        };
        self.units.push((len / SPILL_BLOCK_ALIGN) as u16);
        self.disk_bytes += len as u64;
        self.payload_bytes += payload_len as u64;
        self.compressed_blocks += usize::from(compressed.is_some());
        self.disk_len_max = self.disk_len_max.max(len);
        self.payload_len_max = self.payload_len_max.max(payload_len);
        Ok(pending)
    }

    /// Checks a sealed block as a reader will (the checksum "when writing" of STYLE rule 5).
    fn verify_sealed(&self, segment: &MemorySegment, sequence: u32, len: usize) -> bool {
        let place = BlockPlace {
            path: self.file.path(),
            offset: self.disk_bytes,
            run_id: self.file.run_id(),
            sequence,
            disk_len: len,
        };
        BlockHeader::verify(segment.bytes(0, len), &place).is_ok()
    }

    /// The finished run.
    pub(super) fn finish(self) -> SpillRun {
        SpillRun::new(Box::new(FileRun(Arc::new(RunLayout {
            file: self.file,
            units: self.units.into_boxed_slice(),
            payload_bytes: self.payload_bytes,
            disk_bytes: self.disk_bytes,
            compressed_blocks: self.compressed_blocks,
            disk_len_max: self.disk_len_max,
            payload_len_max: self.payload_len_max,
        }))))
    }
}
