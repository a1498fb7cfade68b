//! The portable backend: blocking `pwrite` and `pread`, one block at a time.
//!
//! ```text
//!   write_block(segment) ─▶ prepare ─▶ pwrite (whole block) ─▶ Some(segment) at once
//!   next_block ─▶ pread into a free lent segment ─▶ decode ─▶ Block
//! ```
//!
//! It has nothing in flight, so write-behind and read-ahead do not apply: every call
//! returns when its bytes are on their way to (or back from) the page cache or the disk.
//! `write_all_at` and `read_exact_at` already resume after a short transfer or `EINTR`.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::file::SpillFile;
use super::run::{ReadPlan, RunBuilder, RunLayout, decode};
use super::{Block, RunReader, RunWriter, SpillRun};
use crate::error::Result;
use crate::memory::MemorySegment;

/// A run writer that writes each block before it returns.
#[derive(Debug)]
pub(super) struct SyncWriter {
    builder: RunBuilder,
}

impl SyncWriter {
    pub(super) fn new(builder: RunBuilder) -> SyncWriter {
        SyncWriter { builder }
    }
}

impl RunWriter for SyncWriter {
    fn write_block(
        &mut self,
        mut segment: MemorySegment,
        payload_len: usize,
    ) -> Result<Option<MemorySegment>> {
        let pending = self.builder.prepare(&mut segment, payload_len)?;
        let file = self.builder.file();
        file.file()
            .write_all_at(segment.bytes(0, pending.len), pending.offset)
            .map_err(|source| file.io_error("write block", pending.offset, source))?;
        file.disk().count_write(pending.len, pending.payload_len);
        Ok(Some(segment))
    }

    fn finish(self: Box<Self>) -> Result<(SpillRun, Vec<MemorySegment>)> {
        Ok((self.builder.finish(), Vec::new()))
    }
}

/// A run reader that reads each block when asked for it.
#[derive(Debug)]
pub(super) struct SyncReader {
    plan: ReadPlan,
    free: Vec<MemorySegment>,
}

impl SyncReader {
    pub(super) fn new(layout: Arc<RunLayout>, buffers: Vec<MemorySegment>) -> SyncReader {
        SyncReader {
            plan: ReadPlan::new(layout),
            free: buffers,
        }
    }
}

impl RunReader for SyncReader {
    fn next_block(&mut self) -> Result<Option<Block>> {
        let Some(extent) = self.plan.next_extent() else {
            return Ok(None);
        };
        let needed = 1 + usize::from(self.plan.layout().has_compressed_blocks());
        assert!(
            self.free.len() >= needed,
            "run reader has no segment to read into: recycle blocks before asking for more"
        );
        let mut segment = self.free.pop().expect("a free segment");
        let file = &self.plan.layout().file;
        let read = read_at(file, segment.bytes_mut(0, extent.len), extent.offset);
        let bytes_read = match read {
            Ok(n) => n,
            Err(source) => {
                self.free.push(segment);
                return Err(file.io_error("read block", extent.offset, source));
            }
        };
        file.disk().count_read(bytes_read);
        decode(
            self.plan.layout(),
            extent,
            segment,
            bytes_read,
            &mut self.free,
        )
        .map(Some)
    }

    fn recycle(&mut self, segment: MemorySegment) {
        self.free.push(segment);
    }

    fn into_segments(self: Box<Self>) -> Vec<MemorySegment> {
        self.free
    }
}

/// Reads until `buffer` is full or the file ends; returns the bytes read. A short count
/// is a torn block for the caller to report, not an I/O error.
fn read_at(file: &SpillFile, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buffer.len() {
        match file
            .file()
            .read_at(&mut buffer[done..], offset + done as u64)
        {
            Ok(0) => break,
            Ok(n) if !file.can_resume_at(offset + (done + n) as u64) => return Ok(done + n),
            Ok(n) => done += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(done)
}
