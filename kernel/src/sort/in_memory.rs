//! `InMemorySorter`: records in segments, an index of fixed-size entries, sorted in place.
//!
//! ```text
//!   record area (segments, from the sorter's reservation):
//!     [varint key_len][varint record_len][key][record] [varint..][..] ...   (spans segments)
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
use crate::constants::{SORT_INDEX_ENTRY_SIZE, VARINT_U64_BYTES_MAX};
use crate::error::Result;
use crate::memory::{PagedInputView, PagedOutputView, Reservation, varint};

/// Where the bytes of an entry's key and record lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryBytes {
    /// Within one segment of the record area: `(segment, offset)`.
    Segment(usize, usize),
    /// Copied into the caller's scratch buffer (they cross a segment boundary).
    Scratch,
}

/// A located entry: its key is the first `key_len` of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryRef {
    pub(crate) key_len: usize,
    pub(crate) len: usize,
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

    /// Adds a record; `Ok(false)` when it does not fit (nothing was added).
    ///
    /// # Errors
    ///
    /// Only errors other than the sorter's own memory running out.
    pub fn push(&mut self, key: &[u8], record: &[u8]) -> Result<bool> {
        if self.index.capacity() == 0 {
            self.split_memory(footprint(key.len(), record.len()));
        }
        if self.index.len() == self.index.capacity() {
            return Ok(false);
        }
        let address = self.records.address();
        match self.write_record(key, record) {
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

    #[inline]
    fn write_record(&mut self, key: &[u8], record: &[u8]) -> Result<()> {
        let (mut key_header, mut record_header) =
            ([0; VARINT_U64_BYTES_MAX], [0; VARINT_U64_BYTES_MAX]);
        let key_header_len = varint::encode_u64(key.len() as u64, &mut key_header);
        let record_header_len = varint::encode_u64(record.len() as u64, &mut record_header);
        let mut header = [0u8; 2 * VARINT_U64_BYTES_MAX];
        header[..key_header_len].copy_from_slice(&key_header[..key_header_len]);
        header[key_header_len..key_header_len + record_header_len]
            .copy_from_slice(&record_header[..record_header_len]);
        self.records
            .write_bytes(&header[..key_header_len + record_header_len])?;
        self.records.write_bytes(key)?;
        self.records.write_bytes(record)
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

    /// Locates entry `i` (in sorted order after [`InMemorySorter::sort`]), copying it into
    /// `scratch` only when it crosses a segment boundary.
    pub(crate) fn entry(&self, i: usize, scratch: &mut Vec<u8>) -> Result<EntryRef> {
        let address = crate::memory::RecordAddress(self.index[i].address());
        let mut reader = self.records.reader();
        reader.seek(address)?;
        let key_len = usize::try_from(reader.read_varint_u64()?).expect("written from a usize");
        let record_len = usize::try_from(reader.read_varint_u64()?).expect("written from a usize");
        let len = key_len + record_len;
        let start = reader.position();
        let log2 = self.records.log2_segment_size();
        let bytes = if reader.try_slice(len).is_some() {
            EntryBytes::Segment(start.segment(log2), start.offset(log2))
        } else {
            scratch.clear();
            scratch.resize(len, 0);
            reader.read_bytes(scratch)?;
            EntryBytes::Scratch
        };
        Ok(EntryRef {
            key_len,
            len,
            bytes,
        })
    }

    /// The bytes of a located entry.
    #[inline]
    pub(crate) fn entry_bytes<'a>(&'a self, entry: &EntryRef, scratch: &'a [u8]) -> &'a [u8] {
        match entry.bytes {
            EntryBytes::Segment(segment, offset) => {
                self.records.segments()[segment].bytes(offset, entry.len)
            }
            EntryBytes::Scratch => &scratch[..entry.len],
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

/// Bytes a record takes in the record area, header included, plus its index entry.
fn footprint(key_len: usize, record_len: usize) -> usize {
    key_len + record_len + 2
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
    let key_len = reader.read_varint_u64().expect("record header");
    let _record_len = reader.read_varint_u64().expect("record header");
    let key_len = usize::try_from(key_len).expect("written from a usize");
    reader.read_record(key_len, scratch).expect("record key")
}
