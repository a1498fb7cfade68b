//! Byte streams over runs: [`RunOutput`] cuts a stream into blocks for a [`RunWriter`], and
//! [`RunInput`] reads it back from a [`RunReader`], bytes spanning blocks freely.
//!
//! ```text
//!   write_bytes ──▶ [hdr|payload......][hdr|payload......][hdr|payl] ──▶ RunWriter
//!   RunReader ──▶ Block ──▶ RunInput: try_take (zero copy within a block) / read_exact
//! ```

use std::ops::Range;

use super::{Block, RunReader, RunWriter, SpillRun};
use crate::constants::{SPILL_BLOCK_HEADER_SIZE, VARINT_U64_BYTES_MAX};
use crate::error::{KernelError, Result};
use crate::memory::{MemorySegment, varint};

/// Writes a byte stream into a run, one block per segment.
///
/// Invariant: it holds at least one segment to fill (current or spare) between calls; the
/// writer's write-behind must be below the number of segments given to [`RunOutput::new`].
#[derive(Debug)]
pub struct RunOutput {
    writer: Box<dyn RunWriter>,
    current: Option<MemorySegment>,
    spare: Vec<MemorySegment>,
    offset: usize,
    payload_bytes: u64,
}

impl RunOutput {
    /// A stream into `writer`, filling `segments` in turn.
    ///
    /// # Panics
    ///
    /// When `segments` is empty.
    pub fn new(writer: Box<dyn RunWriter>, segments: Vec<MemorySegment>) -> RunOutput {
        assert!(!segments.is_empty(), "a run output needs a segment to fill");
        RunOutput {
            writer,
            current: None,
            spare: segments,
            offset: SPILL_BLOCK_HEADER_SIZE,
            payload_bytes: 0,
        }
    }

    /// Payload bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.payload_bytes
    }

    /// Appends `bytes` to the stream.
    ///
    /// # Errors
    ///
    /// The writer's error when a full block cannot be written.
    ///
    /// # Panics
    ///
    /// When the run writer keeps more segments than it was given minus one (its
    /// write-behind is too deep for this output).
    #[inline]
    pub fn write_bytes(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let segment = match &mut self.current {
                Some(segment) => segment,
                None => {
                    let next = self.spare.pop().expect("run output holds a spare segment");
                    self.offset = SPILL_BLOCK_HEADER_SIZE;
                    self.current.insert(next)
                }
            };
            let n = bytes.len().min(segment.size() - self.offset);
            segment.put_bytes(self.offset, &bytes[..n]);
            self.offset += n;
            self.payload_bytes += n as u64;
            bytes = &bytes[n..];
            if self.offset == segment.size() {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    /// Appends `value` as an unsigned LEB128 varint.
    ///
    /// # Errors
    ///
    /// As [`RunOutput::write_bytes`].
    #[inline]
    pub fn write_varint(&mut self, value: u64) -> Result<()> {
        let mut buffer = [0; VARINT_U64_BYTES_MAX];
        let len = varint::encode_u64(value, &mut buffer);
        self.write_bytes(&buffer[..len])
    }

    fn flush_block(&mut self) -> Result<()> {
        let segment = self.current.take().expect("a block to flush");
        let payload_len = self.offset - SPILL_BLOCK_HEADER_SIZE;
        self.offset = SPILL_BLOCK_HEADER_SIZE;
        if let Some(done) = self.writer.write_block(segment, payload_len)? {
            self.spare.push(done);
        }
        assert!(
            !self.spare.is_empty(),
            "run writer kept every segment: write-behind too deep"
        );
        Ok(())
    }

    /// Hands the last partial block to the writer without waiting for any write, so the
    /// caller can go on (fill its next buffer) while the run's last blocks reach the disk;
    /// [`RunOutput::finish`] waits for them later. Nothing may be written after this.
    ///
    /// # Errors
    ///
    /// As [`RunOutput::write_bytes`].
    pub fn seal(&mut self) -> Result<()> {
        if self.offset > SPILL_BLOCK_HEADER_SIZE {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Writes the last partial block and finishes the run; returns it with every segment.
    ///
    /// # Errors
    ///
    /// As [`RunOutput::write_bytes`].
    pub fn finish(mut self) -> Result<(SpillRun, Vec<MemorySegment>)> {
        if self.offset > SPILL_BLOCK_HEADER_SIZE {
            self.flush_block()?;
        } else if let Some(segment) = self.current.take() {
            self.spare.push(segment);
        }
        let (run, mut segments) = self.writer.finish()?;
        segments.append(&mut self.spare);
        Ok((run, segments))
    }
}

/// Reads a byte stream back from a run.
///
/// Invariant: when `block` is `Some`, `position` lies within its payload range.
#[derive(Debug)]
pub struct RunInput {
    reader: Box<dyn RunReader>,
    block: Option<Block>,
    position: usize,
    consumed: u64,
}

impl RunInput {
    /// A stream over `reader`'s blocks.
    pub fn new(reader: Box<dyn RunReader>) -> RunInput {
        RunInput {
            reader,
            block: None,
            position: 0,
            consumed: 0,
        }
    }

    /// Makes sure the current block has unread bytes; `false` at the end of the run.
    #[inline]
    fn fill(&mut self) -> Result<bool> {
        if let Some(block) = &self.block
            && self.position < block.payload.end
        {
            return Ok(true);
        }
        loop {
            if let Some(done) = self.block.take() {
                self.reader.recycle(done.segment);
            }
            match self.reader.next_block()? {
                None => return Ok(false),
                Some(block) if block.payload.is_empty() => self.block = Some(block),
                Some(block) => {
                    self.position = block.payload.start;
                    self.block = Some(block);
                    return Ok(true);
                }
            }
        }
    }

    /// Whether the run has no more bytes.
    ///
    /// # Errors
    ///
    /// The reader's error when the next block cannot be read.
    pub fn is_at_end(&mut self) -> Result<bool> {
        Ok(!self.fill()?)
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.consumed
    }

    /// Takes the next `len` bytes without copying when they lie in the current block,
    /// returning their range in [`RunInput::block_bytes`]; `None` (nothing consumed) when
    /// they cross into the next block. Valid until the next read.
    ///
    /// # Errors
    ///
    /// The reader's error when the next block cannot be read.
    ///
    /// # Panics
    ///
    /// Only on a broken internal invariant (a loaded block after a successful fill).
    #[inline]
    pub fn try_take(&mut self, len: usize) -> Result<Option<Range<usize>>> {
        if len == 0 {
            return Ok(Some(self.position..self.position));
        }
        if !self.fill()? {
            return Ok(None);
        }
        let block = self.block.as_ref().expect("fill loaded a block");
        let start = self.position;
        if block.payload.end - start < len {
            return Ok(None);
        }
        self.position += len;
        self.consumed += len as u64;
        Ok(Some(start..start + len))
    }

    /// The bytes of the current block in `range` (from [`RunInput::try_take`]).
    ///
    /// # Panics
    ///
    /// When no block is loaded or the range lies outside it.
    #[inline]
    pub fn block_bytes(&self, range: Range<usize>) -> &[u8] {
        let block = self.block.as_ref().expect("a block is loaded");
        &block.segment.as_slice()[range]
    }

    /// Fills `target`, spanning blocks.
    ///
    /// # Errors
    ///
    /// [`KernelError::Malformed`] when the run ends first; the reader's error when a block
    /// cannot be read.
    ///
    /// # Panics
    ///
    /// Only on a broken internal invariant (a loaded block after a successful fill).
    pub fn read_exact(&mut self, target: &mut [u8]) -> Result<()> {
        let mut filled = 0;
        while filled < target.len() {
            if !self.fill()? {
                return Err(self.truncated());
            }
            let block = self.block.as_ref().expect("fill loaded a block");
            let n = (block.payload.end - self.position).min(target.len() - filled);
            target[filled..filled + n]
                .copy_from_slice(&block.segment.as_slice()[self.position..self.position + n]);
            self.position += n;
            self.consumed += n as u64;
            filled += n;
        }
        Ok(())
    }

    /// Reads an unsigned LEB128 varint.
    ///
    /// # Errors
    ///
    /// [`KernelError::Malformed`] for a truncated or overlong varint.
    #[inline]
    pub fn read_varint(&mut self) -> Result<u64> {
        let mut value = 0;
        let mut shift = 0;
        loop {
            let mut byte = [0];
            self.read_exact(&mut byte)?;
            match varint::decode_step(byte[0], shift, &mut value) {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => shift += 7,
                Err(what) => {
                    return Err(KernelError::Malformed {
                        position: self.consumed,
                        what,
                    });
                }
            }
        }
    }

    fn truncated(&self) -> KernelError {
        KernelError::Malformed {
            position: self.consumed,
            what: "run ends inside a record",
        }
    }

    /// Gives back every segment the stream and its reader hold.
    pub fn into_segments(mut self) -> Vec<MemorySegment> {
        let current = self.block.take().map(|block| block.segment);
        let mut segments = self.reader.into_segments();
        segments.extend(current);
        segments
    }
}
