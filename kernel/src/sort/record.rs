//! How the sorter stores a record, in its buffer and in its runs alike.
//!
//! ```text
//!   [varint: key_len << 1 | embedded][varint: value_len][key bytes][value bytes]
//! ```
//!
//! `push(key, record)` stores the key and the record side by side (`embedded` = 0: the
//! record is the value). `push_keyed(record, key_len)` stores a record whose key is its
//! own first `key_len` bytes only once (`embedded` = 1: the record is key and value
//! together). Either way the key is contiguous and first, so keys compare without parsing.

use std::ops::Range;

use crate::constants::VARINT_U64_BYTES_MAX;
use crate::memory::varint;

/// Bytes of the longest header: two ten-byte varints.
pub(crate) const HEADER_LEN_MAX: usize = 2 * VARINT_U64_BYTES_MAX;

/// A record's header: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RecordHeader {
    pub(crate) key_len: usize,
    pub(crate) value_len: usize,
    pub(crate) embedded: bool,
}

impl RecordHeader {
    /// Bytes after the header: key and value.
    #[inline]
    pub(crate) fn body_len(&self) -> usize {
        self.key_len + self.value_len
    }

    /// Where the record the caller pushed lies in the body.
    #[inline]
    pub(crate) fn record_range(&self) -> Range<usize> {
        if self.embedded {
            0..self.body_len()
        } else {
            self.key_len..self.body_len()
        }
    }

    /// The first varint's value.
    #[inline]
    pub(crate) fn key_word(&self) -> u64 {
        (self.key_len as u64) << 1 | u64::from(self.embedded)
    }

    /// A header from its two varints' values.
    #[inline]
    pub(crate) fn from_words(key_word: u64, value_len: u64) -> Option<RecordHeader> {
        Some(RecordHeader {
            key_len: usize::try_from(key_word >> 1).ok()?,
            value_len: usize::try_from(value_len).ok()?,
            embedded: key_word & 1 == 1,
        })
    }

    /// Encodes the header into `out`, returning its length.
    #[inline]
    pub(crate) fn encode(&self, out: &mut [u8; HEADER_LEN_MAX]) -> usize {
        let mut word = [0; VARINT_U64_BYTES_MAX];
        let first = varint::encode_u64(self.key_word(), &mut word);
        out[..first].copy_from_slice(&word[..first]);
        let second = varint::encode_u64(self.value_len as u64, &mut word);
        out[first..first + second].copy_from_slice(&word[..second]);
        first + second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_doc_example() {
        let header = RecordHeader {
            key_len: 10,
            value_len: 90,
            embedded: true,
        };
        let mut out = [0; HEADER_LEN_MAX];
        let len = header.encode(&mut out);
        assert_eq!(&out[..len], &[0x15, 0x5a], "docs/FORMAT.md section 4");
    }

    #[test]
    fn header_round_trips() {
        for (key_len, value_len, embedded) in [(0, 0, false), (10, 90, true), (300, 1 << 40, false)]
        {
            let header = RecordHeader {
                key_len,
                value_len,
                embedded,
            };
            let mut out = [0; HEADER_LEN_MAX];
            let len = header.encode(&mut out);
            assert!(len >= 2);
            let back = RecordHeader::from_words(header.key_word(), value_len as u64).unwrap();
            assert_eq!(back, header);
            assert_eq!(
                header.record_range().len(),
                if embedded {
                    key_len + value_len
                } else {
                    value_len
                }
            );
        }
    }
}
