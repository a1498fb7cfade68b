//! `PagedInputView`: reads back a byte stream written across a chain of segments.
//!
//! Reads may span segments; [`PagedInputView::try_slice`] returns a borrowed slice with no
//! copy when the requested bytes lie within one segment, and
//! [`PagedInputView::read_record`] falls back to a caller-owned scratch buffer only when a
//! record crosses a boundary. Reading past the end of the data is an error carrying the
//! position, never a panic: the bytes may come from a spill file or a peer.

use std::io;

use super::address::RecordAddress;
use super::segment::MemorySegment;
use super::varint;
use crate::error::{KernelError, Result};

/// Reads a chain of segments up to an end address. See the module documentation.
///
/// Invariant: `position` ≤ `end` ≤ `segments.len() × segment size`.
#[derive(Debug, Clone)]
pub struct PagedInputView<'a> {
    segments: &'a [MemorySegment],
    position: u64,
    end: u64,
    log2: u32,
}

impl<'a> PagedInputView<'a> {
    /// A view of `segments` holding data up to `end`, positioned at the start.
    ///
    /// # Panics
    ///
    /// When `end` lies beyond the segments, or the segments differ in size.
    pub fn new(segments: &'a [MemorySegment], end: RecordAddress) -> PagedInputView<'a> {
        let size = segments.first().map_or(1 << 12, MemorySegment::size);
        // O(segments): a debug check, since views are created on hot paths.
        debug_assert!(
            segments.iter().all(|s| s.size() == size),
            "segments differ in size"
        );
        let log2 = size.trailing_zeros();
        assert!(
            end.0 <= (segments.len() as u64) << log2,
            "end {end} beyond {} segments of {size} bytes",
            segments.len()
        );
        PagedInputView {
            segments,
            position: 0,
            end: end.0,
            log2,
        }
    }

    /// The position of the next byte read.
    #[inline]
    pub fn position(&self) -> RecordAddress {
        RecordAddress(self.position)
    }

    /// Bytes left before the end.
    #[inline]
    pub fn remaining(&self) -> u64 {
        self.end - self.position
    }

    /// Moves to `address`.
    ///
    /// # Errors
    ///
    /// [`KernelError::EndOfData`] when `address` lies beyond the end of the data.
    pub fn seek(&mut self, address: RecordAddress) -> Result<()> {
        if address.0 > self.end {
            return Err(KernelError::EndOfData {
                position: address.0,
                requested: 0,
                available: 0,
            });
        }
        self.position = address.0;
        Ok(())
    }

    /// Skips `len` bytes.
    ///
    /// # Errors
    ///
    /// [`KernelError::EndOfData`] when fewer than `len` bytes remain; nothing is skipped.
    pub fn skip(&mut self, len: u64) -> Result<()> {
        self.check_available(len)?;
        self.position += len;
        Ok(())
    }

    #[inline]
    fn check_available(&self, len: u64) -> Result<()> {
        if len > self.remaining() {
            return Err(KernelError::EndOfData {
                position: self.position,
                requested: usize::try_from(len).unwrap_or(usize::MAX),
                available: self.remaining(),
            });
        }
        Ok(())
    }

    /// The bytes from the position to the end of its segment (or of the data).
    #[inline]
    fn current_chunk(&self) -> &'a [u8] {
        let index = (self.position >> self.log2) as usize;
        let offset = (self.position as usize) & ((1 << self.log2) - 1);
        let in_segment = (1usize << self.log2) - offset;
        let len = in_segment.min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        if len == 0 {
            return &[];
        }
        self.segments[index].bytes(offset, len)
    }

    /// The next `len` bytes without copying, when they lie within one segment; `None`
    /// (and nothing consumed) when they cross a boundary or run past the end.
    #[inline]
    pub fn try_slice(&mut self, len: usize) -> Option<&'a [u8]> {
        let chunk = self.current_chunk();
        let bytes = chunk.get(..len)?;
        self.position += len as u64;
        Some(bytes)
    }

    /// Fills `target` from the view, spanning segments as needed.
    ///
    /// # Errors
    ///
    /// [`KernelError::EndOfData`] when fewer than `target.len()` bytes remain; nothing is
    /// consumed.
    #[inline]
    pub fn read_bytes(&mut self, target: &mut [u8]) -> Result<()> {
        self.check_available(target.len() as u64)?;
        let mut filled = 0;
        while filled < target.len() {
            let chunk = self.current_chunk();
            let n = chunk.len().min(target.len() - filled);
            target[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            self.position += n as u64;
        }
        Ok(())
    }

    /// The next `len` bytes: borrowed from the segment when they lie within one, copied
    /// into `scratch` when they cross a boundary.
    ///
    /// # Errors
    ///
    /// [`KernelError::EndOfData`] when fewer than `len` bytes remain; nothing is consumed.
    pub fn read_record<'s>(&mut self, len: usize, scratch: &'s mut Vec<u8>) -> Result<&'s [u8]>
    where
        'a: 's,
    {
        if let Some(bytes) = self.try_slice(len) {
            return Ok(bytes);
        }
        self.check_available(len as u64)?;
        scratch.clear();
        scratch.resize(len, 0);
        self.read_bytes(scratch)?;
        Ok(scratch)
    }

    /// Reads one byte.
    ///
    /// # Errors
    ///
    /// [`KernelError::EndOfData`] at the end of the data.
    #[inline]
    pub fn read_u8(&mut self) -> Result<u8> {
        let byte = *self.current_chunk().first().ok_or(KernelError::EndOfData {
            position: self.position,
            requested: 1,
            available: 0,
        })?;
        self.position += 1;
        Ok(byte)
    }

    /// Reads an unsigned LEB128 varint.
    ///
    /// # Errors
    ///
    /// [`KernelError::EndOfData`] when the data ends inside the varint,
    /// [`KernelError::Malformed`] when it is longer than ten bytes or overflows `u64`.
    pub fn read_varint_u64(&mut self) -> Result<u64> {
        // Fast path: the whole varint lies in the current segment.
        let chunk = self.current_chunk();
        let mut value = 0;
        for (i, &byte) in chunk
            .iter()
            .take(crate::constants::VARINT_U64_BYTES_MAX)
            .enumerate()
        {
            match varint::decode_step(byte, 7 * i as u32, &mut value) {
                Ok(Some(done)) => {
                    self.position += i as u64 + 1;
                    return Ok(done);
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        self.read_varint_slow()
    }

    fn read_varint_slow(&mut self) -> Result<u64> {
        let start = self.position;
        let mut value = 0;
        let mut shift = 0;
        loop {
            let byte = self.read_u8().inspect_err(|_| self.position = start)?;
            match varint::decode_step(byte, shift, &mut value) {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => shift += 7,
                Err(what) => {
                    self.position = start;
                    return Err(KernelError::Malformed {
                        position: start,
                        what,
                    });
                }
            }
        }
    }
}

macro_rules! read_primitives {
    ($($ty:ty: $le:ident $be:ident;)*) => {$(
        impl PagedInputView<'_> {
            #[doc = concat!("Reads a little-endian `", stringify!($ty), "`.")]
            ///
            /// # Errors
            ///
            /// [`KernelError::EndOfData`] when too few bytes remain.
            #[inline]
            pub fn $le(&mut self) -> Result<$ty> {
                let mut bytes = [0; size_of::<$ty>()];
                self.read_bytes(&mut bytes)?;
                Ok(<$ty>::from_le_bytes(bytes))
            }

            #[doc = concat!("Reads a big-endian `", stringify!($ty), "`.")]
            ///
            /// # Errors
            ///
            /// [`KernelError::EndOfData`] when too few bytes remain.
            #[inline]
            pub fn $be(&mut self) -> Result<$ty> {
                let mut bytes = [0; size_of::<$ty>()];
                self.read_bytes(&mut bytes)?;
                Ok(<$ty>::from_be_bytes(bytes))
            }
        }
    )*};
}

read_primitives! {
    u16: read_u16_le read_u16_be;
    u32: read_u32_le read_u32_be;
    u64: read_u64_le read_u64_be;
    i16: read_i16_le read_i16_be;
    i32: read_i32_le read_i32_be;
    i64: read_i64_le read_i64_be;
    f32: read_f32_le read_f32_be;
    f64: read_f64_le read_f64_be;
}

impl io::Read for PagedInputView<'_> {
    fn read(&mut self, target: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.remaining())
            .unwrap_or(usize::MAX)
            .min(target.len());
        self.read_bytes(&mut target[..n])?;
        Ok(n)
    }
}
