//! `RecordArea`: the records of a hash table, appended to a chain of segments.
//!
//! ```text
//!   segments: [ seg 0 ............ ][ seg 1 ............ ][ seg 2 ...     ]
//!   records:  [hdr|key|acc][hdr|key|a|cc][hdr|key|acc] ...    ^ end
//!   header:   [varint key_len << 1 | dead][varint acc_len]
//! ```
//!
//! Records span segments freely, so neither keys nor accumulators have a length limit. An
//! address is a record's byte position in the chain (segment index × segment size +
//! offset), as for the sorter's record area. The area reads bytes in place when they lie
//! in one segment and through a caller's scratch buffer when they cross a boundary. It takes
//! no segments itself: the table lends it what its budget allows, and takes back the
//! surplus after a rebuild. The layout is drawn in docs/FORMAT.md, section 5.

use crate::constants::VARINT_U64_BYTES_MAX;
use crate::error::Result;
use crate::memory::{MemorySegment, varint};
use crate::spill::RunOutput;

/// Bytes of an encoded record header at most: two varints.
pub(crate) const HEADER_LEN_MAX: usize = 2 * VARINT_U64_BYTES_MAX;

/// Encodes the header of a live record (`key_len`, `acc_len`) into `out`; returns its
/// length.
pub(crate) fn encode_header(
    key_len: usize,
    acc_len: usize,
    out: &mut [u8; HEADER_LEN_MAX],
) -> usize {
    let mut word = [0; VARINT_U64_BYTES_MAX];
    let first = varint::encode_u64((key_len as u64) << 1, &mut word);
    out[..first].copy_from_slice(&word[..first]);
    let second = varint::encode_u64(acc_len as u64, &mut word);
    out[first..first + second].copy_from_slice(&word[..second]);
    first + second
}

/// Copies `bytes` into `out` (of the same length); the lengths a hash table's records
/// mostly have (a 2-byte header, an 8-byte key, a flag byte, nothing) without a call to
/// memcpy.
#[inline]
fn copy_small(out: &mut [u8], bytes: &[u8]) {
    debug_assert_eq!(out.len(), bytes.len());
    match bytes.len() {
        0 => {}
        1 => out[0] = bytes[0],
        2 => out[..2].copy_from_slice(&bytes[..2]),
        8 => out[..8].copy_from_slice(&bytes[..8]),
        _ => out.copy_from_slice(bytes),
    }
}

/// Bytes of `value` as a varint: 7 bits a byte, at least one.
#[inline]
fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// A record's lengths, decoded from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) header_len: usize,
    pub(crate) key_len: usize,
    pub(crate) acc_len: usize,
    /// Written out or moved: no bucket points to it.
    pub(crate) dead: bool,
}

impl RecordHeader {
    /// Bytes of the whole record.
    pub(crate) fn total_len(&self) -> usize {
        self.header_len + self.key_len + self.acc_len
    }

    /// Offset of the accumulator from the record's start.
    pub(crate) fn acc_offset(&self) -> usize {
        self.header_len + self.key_len
    }
}

/// Records in a chain of segments. See the module documentation.
///
/// Invariant: `end` ≤ `segments.len() << log2`, and every byte below `end` was written.
#[derive(Debug)]
pub(crate) struct RecordArea {
    segments: Vec<MemorySegment>,
    end: u64,
    log2: u32,
    scratch: Vec<u8>,
}

impl RecordArea {
    /// An empty area of segments of `1 << log2` bytes.
    pub(crate) fn new(log2: u32) -> RecordArea {
        RecordArea {
            segments: Vec::new(),
            end: 0,
            log2,
            scratch: Vec::new(),
        }
    }

    /// Bytes written (the address of the next record).
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Bytes that fit before another segment is needed.
    pub(crate) fn room(&self) -> u64 {
        ((self.segments.len() as u64) << self.log2) - self.end
    }

    /// Adds a segment to write into.
    pub(crate) fn push_segment(&mut self, segment: MemorySegment) {
        assert_eq!(segment.size(), 1 << self.log2, "a segment of another size");
        self.segments.push(segment);
    }

    /// Empties the area and gives up its segments.
    pub(crate) fn take_segments(&mut self) -> Vec<MemorySegment> {
        self.end = 0;
        std::mem::take(&mut self.segments)
    }

    /// Ends the area at `end` (after records were moved down) and gives up the segments
    /// past it.
    pub(crate) fn truncate(&mut self, end: u64) -> Vec<MemorySegment> {
        assert!(end <= self.end, "truncation past the end");
        self.end = end;
        let keep = end.div_ceil(1 << self.log2) as usize;
        self.segments.split_off(keep)
    }

    /// Appends a live record; returns its address and length.
    ///
    /// # Panics
    ///
    /// When the record does not fit in [`RecordArea::room`].
    pub(crate) fn append(&mut self, key: &[u8], acc: &[u8]) -> (u64, u64) {
        self.append_parts(key, &[], acc)
    }

    /// Appends a live record whose accumulator is `head` followed by `tail` (a join keeps
    /// a flag byte before each build record); returns its address and length.
    ///
    /// # Panics
    ///
    /// When the record does not fit in [`RecordArea::room`].
    pub(crate) fn append_parts(&mut self, key: &[u8], head: &[u8], tail: &[u8]) -> (u64, u64) {
        let acc_len = head.len() + tail.len();
        let mut header = [0; HEADER_LEN_MAX];
        let header_len = if key.len() < 64 && acc_len < 128 {
            // Both lengths fit a byte (the common case): no varint loop.
            header[0] = (key.len() << 1) as u8;
            header[1] = acc_len as u8;
            2
        } else {
            encode_header(key.len(), acc_len, &mut header)
        };
        let total = (header_len + key.len() + acc_len) as u64;
        assert!(total <= self.room(), "append without room");
        let address = self.end;
        let (segment, offset) = self.locate(address);
        if offset + total as usize <= 1 << self.log2 {
            // The common case: the whole record in the current segment, copied in place.
            let out = self.segments[segment].bytes_mut(offset, total as usize);
            let (out_header, out) = out.split_at_mut(header_len);
            let (out_key, out) = out.split_at_mut(key.len());
            let (out_head, out_tail) = out.split_at_mut(head.len());
            copy_small(out_header, &header[..header_len]);
            copy_small(out_key, key);
            copy_small(out_head, head);
            copy_small(out_tail, tail);
        } else {
            self.write_at(address, &header[..header_len]);
            self.write_at(address + header_len as u64, key);
            let acc_at = address + (header_len + key.len()) as u64;
            self.write_at(acc_at, head);
            self.write_at(acc_at + head.len() as u64, tail);
        }
        self.end += total;
        (address, total)
    }

    /// Segments held.
    #[cfg(test)]
    pub(crate) fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Bytes a record of `key_len` and `acc_len` takes, header included.
    #[inline]
    pub(crate) fn footprint(key_len: usize, acc_len: usize) -> u64 {
        let header_len = varint_len((key_len as u64) << 1) + varint_len(acc_len as u64);
        (header_len + key_len + acc_len) as u64
    }

    /// The header of the record at `address`.
    #[inline]
    pub(crate) fn header(&self, address: u64) -> RecordHeader {
        // Keys under 64 bytes and accumulators under 128, both length bytes in one
        // segment: the common case, read without a loop.
        let (segment, offset) = self.locate(address);
        if offset + 2 <= 1 << self.log2 {
            let lengths = self.segments[segment].bytes(offset, 2);
            if lengths[0] < 0x80 && lengths[1] < 0x80 {
                return RecordHeader {
                    header_len: 2,
                    key_len: usize::from(lengths[0] >> 1),
                    acc_len: usize::from(lengths[1]),
                    dead: lengths[0] & 1 == 1,
                };
            }
        }
        self.header_slow(address)
    }

    /// [`RecordArea::header`] of a long key or accumulator, or of a header across a
    /// segment boundary: out of line, so that the common case inlines small.
    #[cold]
    #[inline(never)]
    fn header_slow(&self, address: u64) -> RecordHeader {
        let mut position = address;
        let key_word = self.varint(&mut position);
        let acc_len = self.varint(&mut position);
        RecordHeader {
            header_len: (position - address) as usize,
            key_len: (key_word >> 1) as usize,
            acc_len: acc_len as usize,
            dead: key_word & 1 == 1,
        }
    }

    /// Whether the key of the record at `address` (with `header`) is `key`.
    #[inline]
    pub(crate) fn key_equals(&self, address: u64, header: &RecordHeader, key: &[u8]) -> bool {
        if header.key_len != key.len() {
            return false;
        }
        let start = address + header.header_len as u64;
        // An 8-byte key (an integer's key format) in one segment: one word compared, not a
        // call to memcmp.
        if let Ok(word) = <[u8; 8]>::try_from(key) {
            let (segment, offset) = self.locate(start);
            if offset + 8 <= 1 << self.log2 {
                return self.segments[segment].get_u64_le(offset) == u64::from_le_bytes(word);
            }
        }
        self.equals(start, key)
    }

    /// Marks the record at `address` dead: the low bit of its first header byte.
    pub(crate) fn mark_dead(&mut self, address: u64) {
        let (segment, offset) = self.locate(address);
        let first = self.segments[segment].get_u8(offset);
        debug_assert_eq!(first & 1, 0, "a record dies twice");
        self.segments[segment].put_u8(offset, first | 1);
    }

    /// The key and accumulator of the record at `address`, copied into `scratch` only when
    /// they cross a segment boundary.
    #[inline]
    pub(crate) fn record<'a>(
        &'a self,
        address: u64,
        scratch: &'a mut Vec<u8>,
    ) -> (&'a [u8], &'a [u8]) {
        let header = self.header(address);
        self.body(address, &header, scratch)
    }

    /// The key and accumulator of the record at `address`, whose header is `header`,
    /// copied into `scratch` only when they cross a segment boundary.
    #[inline]
    pub(crate) fn body<'a>(
        &'a self,
        address: u64,
        header: &RecordHeader,
        scratch: &'a mut Vec<u8>,
    ) -> (&'a [u8], &'a [u8]) {
        let start = address + header.header_len as u64;
        let len = header.key_len + header.acc_len;
        let (segment, offset) = self.locate(start);
        let body = if offset + len <= 1 << self.log2 {
            self.segments[segment].bytes(offset, len)
        } else {
            scratch.clear();
            scratch.resize(len, 0);
            self.read_at(start, scratch);
            &scratch[..]
        };
        body.split_at(header.key_len)
    }

    /// The first live record at or after `address` (a record's start, or `end`): its
    /// address and header, or `None` when only dead records follow. Walking the area this
    /// way reads it sequentially, where walking buckets reads records in random order.
    #[inline]
    pub(crate) fn live_from(&self, mut address: u64) -> Option<(u64, RecordHeader)> {
        while address < self.end {
            let header = self.header(address);
            if !header.dead {
                return Some((address, header));
            }
            address += header.total_len() as u64;
        }
        None
    }

    /// Applies `update` to the accumulator of the record at `address` where it lies
    /// (through a copy when it crosses a segment boundary).
    #[inline]
    pub(crate) fn update_acc(&mut self, address: u64, update: impl FnOnce(&mut [u8])) {
        let header = self.header(address);
        let start = address + header.acc_offset() as u64;
        let (segment, offset) = self.locate(start);
        if offset + header.acc_len <= 1 << self.log2 {
            update(self.segments[segment].bytes_mut(offset, header.acc_len));
            return;
        }
        let mut copy = std::mem::take(&mut self.scratch);
        copy.clear();
        copy.resize(header.acc_len, 0);
        self.read_at(start, &mut copy);
        update(&mut copy);
        self.write_at(start, &copy);
        self.scratch = copy;
    }

    /// Writes the (live) record at `address`, header included, to `output`; returns its
    /// length.
    ///
    /// # Errors
    ///
    /// The output's error.
    pub(crate) fn write_record(&self, address: u64, output: &mut RunOutput) -> Result<usize> {
        let header = self.header(address);
        assert!(!header.dead, "a dead record is never written out");
        let len = header.total_len();
        let mut position = address;
        let mut left = len;
        while left > 0 {
            let (segment, offset) = self.locate(position);
            let n = left.min((1 << self.log2) - offset);
            output.write_bytes(self.segments[segment].bytes(offset, n))?;
            position += n as u64;
            left -= n;
        }
        Ok(len)
    }

    /// Copies `len` bytes from `source` down to `target` (≤ `source`), through `scratch`.
    pub(crate) fn move_down(&mut self, source: u64, target: u64, len: usize) {
        assert!(target <= source, "records only move down");
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        bytes.resize(len, 0);
        self.read_at(source, &mut bytes);
        self.write_at(target, &bytes);
        self.scratch = bytes;
    }

    #[inline]
    fn locate(&self, position: u64) -> (usize, usize) {
        let segment = (position >> self.log2) as usize;
        let offset = (position & ((1 << self.log2) - 1)) as usize;
        (segment, offset)
    }

    /// The byte at `position`.
    #[inline]
    pub(crate) fn byte_at(&self, position: u64) -> u8 {
        let (segment, offset) = self.locate(position);
        self.segments[segment].get_u8(offset)
    }

    /// Overwrites the bytes at `position` (an accumulator of unchanged length).
    pub(crate) fn write_at(&mut self, mut position: u64, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (segment, offset) = self.locate(position);
            let n = bytes.len().min((1 << self.log2) - offset);
            self.segments[segment].put_bytes(offset, &bytes[..n]);
            position += n as u64;
            bytes = &bytes[n..];
        }
    }

    /// Reads the bytes at `position` into `target`.
    pub(crate) fn read_at(&self, mut position: u64, target: &mut [u8]) {
        let mut filled = 0;
        while filled < target.len() {
            let (segment, offset) = self.locate(position);
            let n = (target.len() - filled).min((1 << self.log2) - offset);
            self.segments[segment].get_bytes(offset, &mut target[filled..filled + n]);
            position += n as u64;
            filled += n;
        }
    }

    /// Whether the bytes at `position` are `key`.
    #[inline]
    fn equals(&self, mut position: u64, mut key: &[u8]) -> bool {
        while !key.is_empty() {
            let (segment, offset) = self.locate(position);
            let n = key.len().min((1 << self.log2) - offset);
            if self.segments[segment].bytes(offset, n) != &key[..n] {
                return false;
            }
            position += n as u64;
            key = &key[n..];
        }
        true
    }

    /// Decodes a varint the area holds at `position`, moving past it.
    #[inline]
    fn varint(&self, position: &mut u64) -> u64 {
        let mut value = 0;
        let mut shift = 0;
        loop {
            let (segment, offset) = self.locate(*position);
            let byte = self.segments[segment].get_u8(offset);
            *position += 1;
            match varint::decode_step(byte, shift, &mut value) {
                Ok(Some(done)) => return done,
                Ok(None) => shift += 7,
                Err(what) => panic!("hash table record header at {position}: {what}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footprints_match_encoded_headers() {
        for key_len in [0, 1, 8, 63, 64, 65, 8191, 8192, 1 << 20] {
            for acc_len in [0, 1, 9, 127, 128, 16_383, 16_384, 1 << 21] {
                let mut header = [0; HEADER_LEN_MAX];
                let header_len = encode_header(key_len, acc_len, &mut header);
                assert_eq!(
                    RecordArea::footprint(key_len, acc_len),
                    (header_len + key_len + acc_len) as u64,
                    "key {key_len}, acc {acc_len}"
                );
            }
        }
        assert_eq!(varint_len(u64::MAX), VARINT_U64_BYTES_MAX);
    }
    use crate::memory::test_manager;

    /// The worked example of docs/FORMAT.md, section 5.
    #[test]
    fn format_doc_example() {
        let manager = test_manager(1);
        let mut area = RecordArea::new(12);
        area.push_segment(manager.owner("hash").allocate_one().unwrap());
        let acc = [1234i64.to_le_bytes(), 3i64.to_le_bytes()].concat();
        assert_eq!(area.append(b"AF", &acc), (0, 20));
        let expected = [
            0x04, 0x10, 0x41, 0x46, 0xd2, 0x04, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut bytes = vec![0; 20];
        area.read_at(0, &mut bytes);
        assert_eq!(bytes, expected);
        assert_eq!(RecordArea::footprint(2, 16), 20);
        let doc = include_str!("../../../docs/FORMAT.md");
        assert!(doc.contains("04                          varint 4 = 2 << 1 | 0: key_len 2, live"));
        assert!(doc.contains("d2 04 00 00 00 00 00 00     sum 1234"));
        area.mark_dead(0);
        assert!(area.header(0).dead);
        drop(area.take_segments());
        manager.leak_check().unwrap();
    }

    /// 8-byte keys, compared as one word, against keys differing in each byte, of other
    /// lengths, and lying across a segment boundary (compared byte by byte).
    #[test]
    fn eight_byte_keys_compare_as_words() {
        let manager = test_manager(2);
        let mut area = RecordArea::new(12);
        for segment in manager.owner("hash").allocate(2).unwrap() {
            area.push_segment(segment);
        }
        let key = 0x0102_0304_0506_0708u64.to_be_bytes();
        let (first, _) = area.append(&key, &[0; 16]);
        // A filler (three header bytes) that leaves the next key's bytes across the
        // boundary at 4096: two header bytes and four key bytes before it.
        let filler_len = 4096 - area.end() as usize - 3 - 2 - 4;
        area.append(&vec![9; filler_len], &[]);
        let (across, _) = area.append(&key, &[1; 16]);
        assert_eq!(
            across + 2 + 4,
            4096,
            "the key's fifth byte starts segment 1"
        );
        for address in [first, across] {
            let header = area.header(address);
            assert!(area.key_equals(address, &header, &key));
            for byte in 0..8 {
                let mut other = key;
                other[byte] ^= 0x40;
                assert!(!area.key_equals(address, &header, &other), "byte {byte}");
            }
            assert!(!area.key_equals(address, &header, &key[..7]));
            assert!(!area.key_equals(address, &header, &[key.as_slice(), &[0]].concat()));
        }
        drop(area.take_segments());
        manager.leak_check().unwrap();
    }

    /// Long keys and accumulators (multi-byte varints), across segment boundaries.
    #[test]
    fn records_span_segments() {
        let manager = test_manager(4);
        let mut area = RecordArea::new(12);
        for segment in manager.owner("hash").allocate(4).unwrap() {
            area.push_segment(segment);
        }
        let key = vec![5u8; 5000];
        let (first, _) = area.append(&key, &[1; 200]);
        let (second, len) = area.append(b"k", &[0, 1, 2, 3]);
        assert_eq!(len, 2 + 1 + 4);
        let header = area.header(first);
        assert_eq!(
            (header.header_len, header.key_len, header.acc_len),
            (4, 5000, 200)
        );
        assert!(area.key_equals(first, &header, &key));
        assert!(!area.key_equals(first, &header, &key[1..]));
        let mut scratch = Vec::new();
        assert_eq!(
            area.record(first, &mut scratch),
            (&key[..], &[1u8; 200][..])
        );
        area.update_acc(second, |acc| acc.reverse());
        assert_eq!(area.record(second, &mut scratch).1, [3, 2, 1, 0]);
        area.move_down(second, 0, len as usize);
        let surplus = area.truncate(len);
        assert_eq!(surplus.len(), 3);
        assert_eq!(
            area.record(0, &mut scratch),
            (&b"k"[..], &[3u8, 2, 1, 0][..])
        );
        drop((surplus, area.take_segments()));
        manager.leak_check().unwrap();
    }
}
