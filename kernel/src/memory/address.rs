//! `RecordAddress`: where a record starts in a chain of segments.
//!
//! ```text
//!   63                       log2(segment size)            0
//!  [ segment index in the chain | offset within the segment ]
//! ```
//!
//! Because segment sizes are powers of two and records fill segments without gaps, the
//! address is also the byte position in the chain: `index * size + offset`. Sort index
//! entries and hash buckets store it in eight bytes.

use std::fmt;

/// A byte position in a chain of segments; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RecordAddress(pub u64);

impl RecordAddress {
    /// The address of byte `offset` of the chain's segment `segment`, for segments of
    /// `1 << log2_segment_size` bytes.
    ///
    /// # Panics
    ///
    /// When `offset` does not lie within a segment.
    #[inline]
    pub fn new(segment: usize, offset: usize, log2_segment_size: u32) -> RecordAddress {
        assert!(
            offset < 1 << log2_segment_size,
            "offset {offset} outside its segment"
        );
        RecordAddress(((segment as u64) << log2_segment_size) | offset as u64)
    }

    /// The chain index of the segment the address falls in.
    #[inline]
    pub fn segment(self, log2_segment_size: u32) -> usize {
        // usize is 64 bits (asserted in `constants`).
        (self.0 >> log2_segment_size) as usize
    }

    /// The offset within that segment.
    #[inline]
    pub fn offset(self, log2_segment_size: u32) -> usize {
        // The mask keeps fewer than 32 bits, so the value fits any usize.
        (self.0 & ((1u64 << log2_segment_size) - 1)) as usize
    }

    /// The address as its byte position in the chain.
    #[inline]
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RecordAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_splits_into_segment_and_offset() {
        let address = RecordAddress::new(3, 100, 15);
        assert_eq!(address.as_u64(), 3 * 32768 + 100);
        assert_eq!(address.segment(15), 3);
        assert_eq!(address.offset(15), 100);
    }

    #[test]
    #[should_panic(expected = "outside its segment")]
    fn offset_beyond_segment_is_a_bug() {
        let _ = RecordAddress::new(0, 4096, 12);
    }
}
