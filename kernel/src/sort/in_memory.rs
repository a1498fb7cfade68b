//! `InMemorySorter`: records in segments, an index of fixed-size entries, sorted in place.
//!
//! ```text
//!   record area (segments, from the sorter's reservation), records as in `record`:
//!     [header][key][value] [header][key][value] ...   (records span segments)
//!   index (one allocation, its bytes reserved from the same budget):
//!     [prefix 16 B | address+key_len 8 B] × n   ── sorted by radix + comparison
//! ```
//!
//! The index must be contiguous for the radix sort, so it is one allocation whose size is
//! reserved from the sorter's budget before it is made, and it never grows while records
//! arrive. Its share of the memory follows the records: the first record sets it, and
//! after each spill it is re-split to the average record size seen, moving budget between
//! the two areas through the sorter's own reservations (so no other consumer can take it).

use std::cmp::Ordering;

use super::index::{IndexEntry, sort_entries};
use super::record::{HEADER_LEN_MAX, RecordHeader};
use crate::constants::SORT_INDEX_ENTRY_SIZE;
use crate::error::Result;
use crate::memory::{PagedInputView, PagedOutputView, Reservation};

/// Where the body (key and value) of an entry lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryBytes {
    /// Within one segment of the record area: `(segment, offset)`.
    Segment(usize, usize),
    /// Copied into the caller's scratch buffer (it crosses a segment boundary).
    Scratch,
}

/// A located entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryRef {
    pub(crate) header: RecordHeader,
    /// Bytes of the encoded header, just before the body.
    pub(crate) header_len: usize,
    pub(crate) bytes: EntryBytes,
}

/// Sorts records in memory. See the module documentation.
#[derive(Debug)]
pub struct InMemorySorter {
    records: PagedOutputView<Reservation>,
    index: Vec<IndexEntry>,
    index_reservation: Reservation,
    total_bytes: usize,
    presorted: bool,
}

impl InMemorySorter {
    /// A sorter over the budget `memory` holds (records and index together).
    pub fn new(memory: Reservation) -> InMemorySorter {
        let index_reservation = memory.owner().empty_reservation();
        let total_bytes = memory.size_bytes();
        InMemorySorter {
            records: PagedOutputView::new(memory),
            index: Vec::new(),
            index_reservation,
            total_bytes,
            presorted: true,
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of the record area in use.
    pub fn record_bytes(&self) -> u64 {
        self.records.bytes_written()
    }

    /// Adds a (key, record) pair; `Ok(false)` when it does not fit (nothing was added).
    ///
    /// # Errors
    ///
    /// Only errors other than the sorter's own memory running out.
    pub fn push(&mut self, key: &[u8], record: &[u8]) -> Result<bool> {
        let header = RecordHeader {
            key_len: key.len(),
            value_len: record.len(),
            embedded: false,
        };
        self.push_parts(header, key, record)
    }

    /// Adds a record whose key is its first `key_len` bytes, storing those bytes once;
    /// `Ok(false)` when it does not fit (nothing was added).
    ///
    /// # Errors
    ///
    /// Only errors other than the sorter's own memory running out.
    ///
    /// # Panics
    ///
    /// When `key_len` exceeds the record's length.
    pub fn push_keyed(&mut self, record: &[u8], key_len: usize) -> Result<bool> {
        let (key, value) = record.split_at(key_len);
        let header = RecordHeader {
            key_len,
            value_len: value.len(),
            embedded: true,
        };
        self.push_parts(header, key, value)
    }

    #[inline]
    fn push_parts(&mut self, header: RecordHeader, key: &[u8], value: &[u8]) -> Result<bool> {
        if self.index.capacity() == 0 {
            self.split_memory(footprint(header.body_len()));
        }
        if self.index.len() == self.index.capacity() {
            return Ok(false);
        }
        let address = self.records.address();
        match self.write_record(&header, key, value) {
            Ok(()) => {}
            Err(error) if error.is_budget_exceeded() => {
                self.records.rewind(address);
                return Ok(false);
            }
            Err(error) => return Err(error),
        }
        let entry = IndexEntry::new(key, address.as_u64());
        if let Some(last) = self.index.last() {
            // A tie the prefixes cannot settle counts as out of order: sort to be sure.
            if last
                .compare_prefix(&entry)
                .is_none_or(|order| order == Ordering::Greater)
            {
                self.presorted = false;
            }
        }
        self.index.push(entry);
        Ok(true)
    }

    /// Writes header, key and value: straight into the current segment when they fit,
    /// across segments otherwise.
    #[inline]
    fn write_record(&mut self, header: &RecordHeader, key: &[u8], value: &[u8]) -> Result<()> {
        let mut encoded = [0u8; HEADER_LEN_MAX];
        let header_len = header.encode(&mut encoded);
        let total = header_len + key.len() + value.len();
        if let Some(target) = self.records.try_reserve_contiguous(total) {
            let (head, body) = target.split_at_mut(header_len);
            head.copy_from_slice(&encoded[..header_len]);
            let (key_bytes, value_bytes) = body.split_at_mut(key.len());
            key_bytes.copy_from_slice(key);
            value_bytes.copy_from_slice(value);
            return Ok(());
        }
        self.records.write_bytes(&encoded[..header_len])?;
        self.records.write_bytes(key)?;
        self.records.write_bytes(value)
    }

    /// Divides the memory between index and records for records of `footprint` bytes.
    fn split_memory(&mut self, footprint: usize) {
        assert!(self.index.is_empty(), "re-split with records held");
        // Entries and records in proportion, the index never below one entry nor above half.
        let share = self.total_bytes / (SORT_INDEX_ENTRY_SIZE + footprint) * SORT_INDEX_ENTRY_SIZE;
        let wanted = share.clamp(SORT_INDEX_ENTRY_SIZE, self.total_bytes / 2);
        let current = self.index_reservation.size_bytes();
        if current != 0 && wanted.abs_diff(current) < current / 8 {
            return;
        }
        self.index = Vec::new();
        // Budget held by the index and as record segments comes back to one reservation.
        let freed = self.index_reservation.split_bytes(current);
        let segments = self.records.take_segments();
        let memory = self.records.source_mut();
        memory.absorb(freed);
        for segment in segments {
            memory.give_back(segment);
        }
        let wanted = wanted.min(memory.size_bytes());
        self.index_reservation.absorb(memory.split_bytes(wanted));
        self.index = Vec::with_capacity(wanted / SORT_INDEX_ENTRY_SIZE);
        assert!(self.index.capacity() * SORT_INDEX_ENTRY_SIZE <= wanted + SORT_INDEX_ENTRY_SIZE);
    }

    /// Sorts the records by key.
    pub fn sort(&mut self) {
        if self.presorted {
            return;
        }
        let records = &self.records;
        let mut scratch = (Vec::new(), Vec::new());
        sort_entries(&mut self.index, &mut |a, b| {
            compare_full_keys(records, a, b, &mut scratch)
        });
        self.presorted = true;
    }

    /// Calls `visit(key, record)` for every record, in sorted order after
    /// [`InMemorySorter::sort`] (in arrival order before).
    ///
    /// # Errors
    ///
    /// The first error `visit` returns.
    pub fn for_each(&self, mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let mut scratch = Vec::new();
        for i in 0..self.index.len() {
            let entry = self.entry(i, &mut scratch)?;
            let body = self.entry_bytes(&entry, &scratch);
            visit(
                &body[..entry.header.key_len],
                &body[entry.header.record_range()],
            )?;
        }
        Ok(())
    }

    /// Locates entry `i` (in sorted order after [`InMemorySorter::sort`]), copying its
    /// body into `scratch` only when it crosses a segment boundary.
    pub(crate) fn entry(&self, i: usize, scratch: &mut Vec<u8>) -> Result<EntryRef> {
        let address = crate::memory::RecordAddress(self.index[i].address());
        let mut reader = self.records.reader();
        reader.seek(address)?;
        let key_word = reader.read_varint_u64()?;
        let value_len = reader.read_varint_u64()?;
        let header = RecordHeader::from_words(key_word, value_len).expect("written from usizes");
        let start = reader.position();
        let header_len = (start.as_u64() - address.as_u64()) as usize;
        let log2 = self.records.log2_segment_size();
        let bytes = if header.body_len() == 0 {
            // An empty body may start exactly where the last written segment ends: there
            // is no segment to point into (found by the sort_vs_model fuzz target).
            scratch.clear();
            EntryBytes::Scratch
        } else if reader.try_slice(header.body_len()).is_some() {
            EntryBytes::Segment(start.segment(log2), start.offset(log2))
        } else {
            scratch.clear();
            scratch.resize(header.body_len(), 0);
            reader.read_bytes(scratch)?;
            EntryBytes::Scratch
        };
        Ok(EntryRef {
            header,
            header_len,
            bytes,
        })
    }

    /// Starts loading entry `i`'s record into the cache (see [`MemorySegment::prefetch`]);
    /// nothing when `i` is past the end.
    ///
    /// [`MemorySegment::prefetch`]: crate::memory::MemorySegment::prefetch
    #[inline]
    pub(crate) fn prefetch(&self, i: usize) {
        let Some(entry) = self.index.get(i) else {
            return;
        };
        let address = crate::memory::RecordAddress(entry.address());
        let log2 = self.records.log2_segment_size();
        let (segment, offset) = (address.segment(log2), address.offset(log2));
        let segment = &self.records.segments()[segment];
        segment.prefetch(offset);
        // W1-sized records (about 112 bytes) reach into the next line or two.
        if offset + 64 < segment.size() {
            segment.prefetch(offset + 64);
        }
    }

    /// The body (key, then value) of a located entry.
    #[inline]
    pub(crate) fn entry_bytes<'a>(&'a self, entry: &EntryRef, scratch: &'a [u8]) -> &'a [u8] {
        let len = entry.header.body_len();
        match entry.bytes {
            EntryBytes::Segment(segment, offset) => {
                self.records.segments()[segment].bytes(offset, len)
            }
            EntryBytes::Scratch => &scratch[..len],
        }
    }

    /// Header and body of a located entry as one slice, when they lie in one segment.
    #[inline]
    pub(crate) fn entry_raw(&self, entry: &EntryRef) -> Option<&[u8]> {
        match entry.bytes {
            EntryBytes::Segment(segment, offset) if offset >= entry.header_len => {
                let len = entry.header_len + entry.header.body_len();
                Some(self.records.segments()[segment].bytes(offset - entry.header_len, len))
            }
            _ => None,
        }
    }

    /// Empties the sorter for the next run and re-divides its memory by the records seen.
    pub fn clear(&mut self) {
        let held = self.index.len();
        // usize is 64 bits (asserted in `constants`).
        let footprint = (self.records.bytes_written() as usize)
            .checked_div(held)
            .unwrap_or(0);
        self.index.clear();
        self.records.clear();
        self.presorted = true;
        if held > 0 {
            self.split_memory(footprint);
        }
    }

    /// Frees everything: segments and index, keeping the budget in one reservation.
    pub fn into_reservation(self) -> Reservation {
        let InMemorySorter {
            records,
            index,
            index_reservation,
            ..
        } = self;
        drop(index);
        let (mut memory, segments, _) = records.into_parts();
        for segment in segments {
            memory.give_back(segment);
        }
        memory.absorb(index_reservation);
        memory
    }
}

/// Bytes a record of `body_len` takes in the record area, header included.
fn footprint(body_len: usize) -> usize {
    body_len + 2
}

/// Compares the full keys of two entries whose prefixes tie.
fn compare_full_keys(
    records: &PagedOutputView<Reservation>,
    a: &IndexEntry,
    b: &IndexEntry,
    scratch: &mut (Vec<u8>, Vec<u8>),
) -> Ordering {
    let reader = records.reader();
    let left = read_key(reader.clone(), a.address(), &mut scratch.0);
    let right = read_key(reader, b.address(), &mut scratch.1);
    left.cmp(right)
}

fn read_key<'a>(
    mut reader: PagedInputView<'a>,
    address: u64,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    // The record area was written by this sorter: a failure here is a bug.
    reader
        .seek(crate::memory::RecordAddress(address))
        .expect("index address within the record area");
    let key_len = usize::try_from(reader.read_varint_u64().expect("record header") >> 1)
        .expect("written from a usize");
    let _value_len = reader.read_varint_u64().expect("record header");
    reader.read_record(key_len, scratch).expect("record key")
}
