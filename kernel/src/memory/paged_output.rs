//! `PagedOutputView`: writes a byte stream across a chain of segments.
//!
//! ```text
//!   segments:  [ seg 0 .............. ][ seg 1 .............. ][ seg 2 ....      ]
//!   records:   [ r0 ][ r1 ][ r2 ......|... r2 ][ r3 ][ r4 ....|.. ]   ^ position
//! ```
//!
//! Records span segments freely; nothing is padded. New segments come from a
//! [`SegmentSource`] (an owner, a reservation) one at a time, when the current one is
//! full. When the source refuses, the write fails with its error and the caller decides:
//! a sorter rewinds to the record's start ([`PagedOutputView::rewind`]) and spills.

use std::io;

use super::address::RecordAddress;
use super::owner::Owner;
use super::paged_input::PagedInputView;
use super::reservation::Reservation;
use super::segment::MemorySegment;
use super::varint;
use crate::constants::VARINT_U64_BYTES_MAX;
use crate::error::Result;

/// Where a paged output view gets its next segment.
pub trait SegmentSource {
    /// Bytes per segment this source hands out.
    fn segment_size(&self) -> usize;

    /// The next segment.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`](crate::KernelError::BudgetExceeded) when the source
    /// has no more segments to give.
    fn next_segment(&mut self) -> Result<MemorySegment>;
}

impl SegmentSource for Owner {
    fn segment_size(&self) -> usize {
        Owner::segment_size(self)
    }

    fn next_segment(&mut self) -> Result<MemorySegment> {
        self.allocate_one()
    }
}

impl SegmentSource for Reservation {
    fn segment_size(&self) -> usize {
        self.owner().segment_size()
    }

    fn next_segment(&mut self) -> Result<MemorySegment> {
        self.allocate_one()
    }
}

impl<S: SegmentSource + ?Sized> SegmentSource for &mut S {
    fn segment_size(&self) -> usize {
        (**self).segment_size()
    }

    fn next_segment(&mut self) -> Result<MemorySegment> {
        (**self).next_segment()
    }
}

/// Writes across a growing chain of segments. See the module documentation.
///
/// Invariants:
/// 1. `position` ≤ `segments.len() × segment_size`, and every byte before `position` was
///    written.
/// 2. Every segment is `segment_size` = `1 << log2` bytes.
#[derive(Debug)]
pub struct PagedOutputView<S: SegmentSource> {
    source: S,
    segments: Vec<MemorySegment>,
    position: u64,
    log2: u32,
}

impl<S: SegmentSource> PagedOutputView<S> {
    /// An empty view that takes segments from `source` as it fills.
    ///
    /// # Panics
    ///
    /// When the source's segment size is not a power of two.
    pub fn new(source: S) -> PagedOutputView<S> {
        let size = source.segment_size();
        assert!(
            size.is_power_of_two(),
            "segment size {size} is not a power of two"
        );
        PagedOutputView {
            source,
            segments: Vec::new(),
            position: 0,
            log2: size.trailing_zeros(),
        }
    }

    /// The address the next byte will be written at.
    #[inline]
    pub fn address(&self) -> RecordAddress {
        RecordAddress(self.position)
    }

    /// Bytes written so far (the same number as [`PagedOutputView::address`]).
    #[inline]
    pub fn bytes_written(&self) -> u64 {
        self.position
    }

    /// `log2` of the segment size, for decoding addresses.
    pub fn log2_segment_size(&self) -> u32 {
        self.log2
    }

    /// The segments written so far.
    pub fn segments(&self) -> &[MemorySegment] {
        &self.segments
    }

    /// The source segments come from.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// A reader over everything written so far.
    pub fn reader(&self) -> PagedInputView<'_> {
        PagedInputView::new(&self.segments, RecordAddress(self.position))
    }

    /// Gives up the source, the segments and the end address.
    pub fn into_parts(self) -> (S, Vec<MemorySegment>, RecordAddress) {
        (self.source, self.segments, RecordAddress(self.position))
    }

    /// Gives up the segments and the end address, keeping nothing.
    pub fn into_segments(self) -> (Vec<MemorySegment>, RecordAddress) {
        (self.segments, RecordAddress(self.position))
    }

    /// Moves the write position back to `address`, keeping the segments: the bytes after
    /// it are dropped. Used to undo a record that did not fit.
    ///
    /// # Panics
    ///
    /// When `address` lies after the current position.
    pub fn rewind(&mut self, address: RecordAddress) {
        assert!(
            address.0 <= self.position,
            "rewind to {address} past the write position"
        );
        self.position = address.0;
    }

    /// Clears the view and gives up its segments.
    pub fn take_segments(&mut self) -> Vec<MemorySegment> {
        self.position = 0;
        std::mem::take(&mut self.segments)
    }

    /// Clears the view for reuse, keeping its segments.
    pub fn clear(&mut self) {
        self.position = 0;
    }

    #[inline]
    fn segment_size(&self) -> usize {
        1 << self.log2
    }

    /// Room left in the current segment (0 when a new one is needed). After a rewind the
    /// segments past the position are reused.
    #[inline]
    fn room(&self) -> usize {
        let index = (self.position >> self.log2) as usize;
        if index < self.segments.len() {
            self.segment_size() - ((self.position as usize) & (self.segment_size() - 1))
        } else {
            0
        }
    }

    /// Takes a new segment from the source.
    fn advance(&mut self) -> Result<()> {
        assert_eq!((self.position >> self.log2) as usize, self.segments.len());
        let segment = self.source.next_segment()?;
        assert_eq!(
            segment.size(),
            self.segment_size(),
            "source gave a segment of another size"
        );
        self.segments.push(segment);
        Ok(())
    }

    /// `len` bytes to write into directly, when they fit in the current segment (or a
    /// reused one after a rewind); the position moves past them. `None` when they would
    /// cross a segment boundary or need a new segment: write them with
    /// [`PagedOutputView::write_bytes`] then.
    #[inline]
    pub fn try_reserve_contiguous(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.room() {
            return None;
        }
        let index = (self.position >> self.log2) as usize;
        let offset = (self.position as usize) & (self.segment_size() - 1);
        self.position += len as u64;
        Some(self.segments[index].bytes_mut(offset, len))
    }

    /// Writes all of `bytes`, spanning segments as needed.
    ///
    /// # Errors
    ///
    /// The source's error when it cannot supply a segment; the bytes written before the
    /// failure stay written (use [`PagedOutputView::rewind`] to undo them).
    #[inline]
    pub fn write_bytes(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            if self.room() == 0 {
                self.advance()?;
            }
            let chunk = bytes.len().min(self.room());
            let index = (self.position >> self.log2) as usize;
            let offset = (self.position as usize) & (self.segment_size() - 1);
            self.segments[index].put_bytes(offset, &bytes[..chunk]);
            self.position += chunk as u64;
            bytes = &bytes[chunk..];
        }
        Ok(())
    }

    /// Writes one byte.
    ///
    /// # Errors
    ///
    /// As [`PagedOutputView::write_bytes`].
    #[inline]
    pub fn write_u8(&mut self, value: u8) -> Result<()> {
        self.write_bytes(&[value])
    }

    /// Writes `value` as an unsigned LEB128 varint (1 to 10 bytes).
    ///
    /// # Errors
    ///
    /// As [`PagedOutputView::write_bytes`].
    #[inline]
    pub fn write_varint_u64(&mut self, value: u64) -> Result<()> {
        let mut buffer = [0; VARINT_U64_BYTES_MAX];
        let len = varint::encode_u64(value, &mut buffer);
        self.write_bytes(&buffer[..len])
    }
}

macro_rules! write_primitives {
    ($($ty:ty: $le:ident $be:ident;)*) => {$(
        impl<S: SegmentSource> PagedOutputView<S> {
            #[doc = concat!("Writes a little-endian `", stringify!($ty), "`.")]
            ///
            /// # Errors
            ///
            /// As [`PagedOutputView::write_bytes`].
            #[inline]
            pub fn $le(&mut self, value: $ty) -> Result<()> {
                self.write_bytes(&value.to_le_bytes())
            }

            #[doc = concat!("Writes a big-endian `", stringify!($ty), "`.")]
            ///
            /// # Errors
            ///
            /// As [`PagedOutputView::write_bytes`].
            #[inline]
            pub fn $be(&mut self, value: $ty) -> Result<()> {
                self.write_bytes(&value.to_be_bytes())
            }
        }
    )*};
}

write_primitives! {
    u16: write_u16_le write_u16_be;
    u32: write_u32_le write_u32_be;
    u64: write_u64_le write_u64_be;
    i16: write_i16_le write_i16_be;
    i32: write_i32_le write_i32_be;
    i64: write_i64_le write_i64_be;
    f32: write_f32_le write_f32_be;
    f64: write_f64_le write_f64_be;
}

impl<S: SegmentSource> io::Write for PagedOutputView<S> {
    /// Writes as much of `bytes` as the source's segments allow. A short count means the
    /// source ran dry after some bytes; the next call reports its error.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let start = self.position;
        match self.write_bytes(bytes) {
            Ok(()) => Ok(bytes.len()),
            Err(_) if self.position > start => Ok((self.position - start) as usize),
            Err(error) => Err(error.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
