//! `TableScan`: the rows of a table file, streamed through segments of the budget.
//!
//! ```text
//!   file ──read_vectored──▶ [seg 0][seg 1] ... [seg 15]   one system call fills up to
//!                              │                          16 segments (512 KiB)
//!        each 4 KiB block: checksum, index, rows ──▶ its rows handed out in place
//!        at each chunk's end: its rows and column totals against the manifest's
//! ```
//!
//! A scan reads the whole file or a range of its chunks (TABLE_CHUNK_BLOCKS blocks, 1 MiB
//! each): P tasks that each scan their [`chunk_share`] read every row exactly once, and
//! each checks what it read against the manifest on its own.
//!
//! Blocks never cross a segment (a segment is a whole number of blocks) and rows never
//! cross a block, so every row is handed out where it was read. A row's end is found by
//! [`record_len`]: the table's fixed-width bytes, then each string's varint length,
//! skipped; the strings are not decoded or validated (the full serde-fmt decoding of
//! validation does that). Reads are large and sequential, and the buffers are segments of
//! the caller's owner, so they count in the memory budget.
//!
//! A file that is not a version 2 table file of this table, whose header, size or totals
//! differ from the directory's manifest, or with a block whose checksum, index or rows
//! are wrong is an error naming the file and the byte offset: never an answer.

use std::fs::File;
use std::io::{self, IoSliceMut, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use weir_kernel::memory::{MemorySegment, Owner};

use super::block::{check_block, file_bytes, file_seed, read_header, split_rows};
use super::manifest::{Manifest, Totals, chunks_of};
use super::{ROW_BYTES_MAX, Table};
use crate::constants::{
    SCAN_READ_SEGMENTS, TABLE_BLOCK_BYTES, TABLE_BLOCK_HEADER_BYTES, TABLE_CHUNK_BLOCKS,
};

/// The chunks task `task` of `tasks` scans when a table of `chunks` chunks is split among
/// them: contiguous ranges, in task order, that cover every chunk once and differ in
/// length by at most one.
pub fn chunk_share(chunks: u64, task: u64, tasks: u64) -> Range<u64> {
    chunks * task / tasks..chunks * (task + 1) / tasks
}
use weir::error::{Result, WeirError};

/// The length of the row at the start of `bytes`: `Ok(Some(len))` when it is wholly
/// there, `Ok(None)` when `bytes` ends inside it.
///
/// # Errors
///
/// A description of what is malformed: a varint longer than 10 bytes, or a row longer
/// than [`ROW_BYTES_MAX`].
#[inline]
pub fn record_len(table: Table, bytes: &[u8]) -> std::result::Result<Option<usize>, &'static str> {
    let mut at = table.fixed_bytes();
    for _ in 0..table.strings() {
        // A string shorter than 128 bytes (TPC-H's are) has a one-byte length.
        match bytes.get(at) {
            Some(&byte) if byte < 0x80 => {
                at += 1 + usize::from(byte);
                continue;
            }
            Some(_) => {}
            None => return Ok(None),
        }
        let Some((len, next)) = string_len(bytes, at)? else {
            return Ok(None);
        };
        at = next;
        if len > ROW_BYTES_MAX as u64 {
            return Err("a string is longer than any row may be");
        }
        at += len as usize;
    }
    if at > ROW_BYTES_MAX {
        return Err("a row is longer than any row may be");
    }
    Ok((at <= bytes.len()).then_some(at))
}

/// The varint length of the string at `at` of `bytes` and where its bytes start; `None`
/// when `bytes` end inside the length.
///
/// # Errors
///
/// A length of more than ten bytes (not a varint).
#[inline]
pub(crate) fn string_len(
    bytes: &[u8],
    mut at: usize,
) -> std::result::Result<Option<(u64, usize)>, &'static str> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&byte) = bytes.get(at) else {
            return Ok(None);
        };
        at += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(Some((len, at)));
        }
        shift += 7;
        if shift > 63 {
            return Err("a string length is not a varint");
        }
    }
}

/// Streams the rows of one table file. See the module documentation.
#[derive(Debug)]
pub struct TableScan {
    file: File,
    path: PathBuf,
    table: Table,
    manifest: Manifest,
    /// Data blocks the header announces (and the manifest lists).
    blocks: u64,
    seed: u32,
    buffers: Vec<MemorySegment>,
}

impl TableScan {
    /// Opens `dir/<table>`, checks its header against `dir`'s manifest, and takes its
    /// buffers from `owner` ([`TableScan::segments`] of them).
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] when the file or the manifest cannot be opened or read;
    /// [`WeirError::Usage`] when the header is not a weir TPC-H header of this table and
    /// version, or differs from the manifest; [`WeirError::Kernel`] when the budget
    /// cannot grant the buffers.
    ///
    /// # Panics
    ///
    /// When the owner's segments are not a whole number of blocks (a configuration the
    /// constants rule out: segment sizes are powers of two of at least one block).
    pub fn open(dir: &Path, table: Table, owner: &Owner) -> Result<TableScan> {
        let path = dir.join(table.name());
        let mut file = File::open(&path).map_err(|e| WeirError::file("open input", &path, e))?;
        let manifest = Manifest::read(dir)?;
        let entry = manifest.entry(table).clone();
        let mut head = vec![0u8; TABLE_BLOCK_BYTES];
        let got = crate::workloads::w1_sort::read_full(&mut file, &mut head)
            .map_err(|e| WeirError::file("read", &path, e))?;
        let bad = |what: String| WeirError::Usage {
            message: format!(
                "{} is not a weir TPC-H {} file: {what}",
                path.display(),
                table.name()
            ),
        };
        let header = read_header(&head[..got])
            .map_err(|c| bad(format!("at byte {}: {}", c.offset, c.what)))?;
        if header.table != table.name() {
            return Err(bad(format!("its header says table {:?}", header.table)));
        }
        let length = file
            .metadata()
            .map_err(|e| WeirError::file("read", &path, e))?
            .len();
        let announced = (
            header.scale_factor,
            header.rows,
            header.blocks,
            file_bytes(&header),
        );
        let listed = (
            manifest.scale_factor,
            entry.totals.rows,
            entry.blocks,
            entry.bytes,
        );
        if announced != listed || length != entry.bytes {
            return Err(WeirError::Data {
                message: format!(
                    "{} differs from its manifest at byte 0 (its header): the file is {length} \
                     bytes and its header \
                     says SF {}, {} rows in {} blocks ({} bytes); the manifest says SF {}, {} \
                     rows in {} blocks ({} bytes) (truncated, grown or replaced: regenerate \
                     with weir gen tpch)",
                    path.display(),
                    announced.0,
                    announced.1,
                    announced.2,
                    announced.3,
                    listed.0,
                    listed.1,
                    listed.2,
                    listed.3
                ),
            });
        }
        let buffers = owner.allocate(SCAN_READ_SEGMENTS)?;
        assert!(
            buffers[0].size().is_multiple_of(TABLE_BLOCK_BYTES),
            "a segment holds whole blocks"
        );
        Ok(TableScan {
            seed: file_seed(header.table, header.scale_factor),
            blocks: header.blocks,
            file,
            path,
            table,
            manifest,
            buffers,
        })
    }

    /// Segments a scan holds: its read buffers.
    pub const fn segments() -> usize {
        SCAN_READ_SEGMENTS
    }

    /// The scale factor the header names.
    pub fn scale_factor(&self) -> f64 {
        self.manifest.scale_factor
    }

    /// The rows the header announces.
    pub fn rows(&self) -> u64 {
        self.manifest.entry(self.table).totals.rows
    }

    /// The file's chunks (the last may be short): what [`TableScan::for_each_row_in`]
    /// ranges over.
    pub fn chunks(&self) -> u64 {
        chunks_of(self.blocks)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's manifest: what was generated, with its totals.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Calls `row` with every row, in file order; returns how many there were.
    ///
    /// # Errors
    ///
    /// As [`TableScan::for_each_row_at`].
    #[inline]
    pub fn for_each_row(&mut self, mut row: impl FnMut(&[u8]) -> Result<()>) -> Result<u64> {
        self.for_each_row_at(|_, bytes| row(bytes))
    }

    /// Calls `row` with the file offset and the bytes of every row, in file order;
    /// returns how many there were.
    ///
    /// # Errors
    ///
    /// As [`TableScan::for_each_row_in`].
    pub fn for_each_row_at(&mut self, row: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<u64> {
        self.for_each_row_in(0..self.chunks(), row)
    }

    /// Calls `row` with the file offset and the bytes of every row of the chunks
    /// `chunks`, in file order; returns how many there were. The scan seeks to the first
    /// chunk's first block and reads to the last one's end, checking every block, and at
    /// the end of each chunk its rows and column totals against the manifest's.
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] on a read or seek error; [`WeirError::Data`] for a block whose
    /// checksum, index or rows are wrong, a malformed row, a file that ends early, or a
    /// chunk whose rows or column totals differ from the manifest (each naming the file
    /// and the byte offset); any error of `row`, which ends the scan.
    ///
    /// # Panics
    ///
    /// When `chunks` reaches past [`TableScan::chunks`] (a bug of the caller).
    pub fn for_each_row_in(
        &mut self,
        chunks: Range<u64>,
        mut row: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<u64> {
        assert!(
            chunks.end <= self.chunks(),
            "chunks {chunks:?} of {}",
            self.chunks()
        );
        let first = chunks.start * TABLE_CHUNK_BLOCKS;
        let end = (chunks.end * TABLE_CHUNK_BLOCKS).min(self.blocks);
        if first >= end {
            return Ok(0);
        }
        let block_bytes = TABLE_BLOCK_BYTES as u64;
        self.file
            .seek(SeekFrom::Start((first + 1) * block_bytes))
            .map_err(|e| WeirError::file("seek in input", &self.path, e))?;
        let (mut totals, mut rows) = (Totals::default(), 0);
        let mut index = first;
        while index < end {
            let wanted = usize::try_from((end - index) * block_bytes).unwrap_or(usize::MAX);
            let filled = read_segments(&mut self.file, &mut self.buffers, wanted)
                .map_err(|e| WeirError::file("read input", &self.path, e))?;
            if filled == 0 {
                let what = format!("the file ends after {index} of {} blocks", self.blocks);
                return Err(self.corrupt((index + 1) * block_bytes, what));
            }
            if !filled.is_multiple_of(TABLE_BLOCK_BYTES) {
                let offset = (index + 1) * block_bytes;
                let what = "the file's length changed while it was read".to_owned();
                return Err(self.corrupt(offset, what));
            }
            let size = self.buffers[0].size();
            for (n, segment) in self.buffers.iter().enumerate() {
                let start = n * size;
                if start >= filled {
                    break;
                }
                let bytes = &segment.as_slice()[..size.min(filled - start)];
                for block in bytes.chunks_exact(TABLE_BLOCK_BYTES) {
                    self.block(block, index, &mut totals, &mut row)?;
                    index += 1;
                    if index.is_multiple_of(TABLE_CHUNK_BLOCKS) || index == self.blocks {
                        self.check_chunk(index, &totals)?;
                        rows += totals.rows;
                        totals = Totals::default();
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Checks data block `index` and hands out its rows.
    #[inline]
    fn block(
        &self,
        block: &[u8],
        index: u64,
        totals: &mut Totals,
        row: &mut impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let offset = (index + 1) * TABLE_BLOCK_BYTES as u64;
        let (payload, rows) =
            check_block(block, index, self.seed).map_err(|what| self.corrupt(offset, what))?;
        let base = offset + TABLE_BLOCK_HEADER_BYTES as u64;
        let columns = self.table.summed_columns();
        split_rows(
            self.table,
            payload,
            rows,
            |at, bytes| {
                totals.rows += 1;
                for (sum, &(_, column)) in totals.sums.iter_mut().zip(columns) {
                    *sum = sum.wrapping_add(i64::from_le_bytes(
                        bytes[column..column + 8].try_into().expect("eight bytes"),
                    ));
                }
                row(base + at as u64, bytes)
            },
            |at, what| {
                self.corrupt(
                    base + at as u64,
                    format!("the row there is malformed: {what}"),
                )
            },
        )
    }

    /// Checks the totals of the chunk that ends before block `end` against the manifest.
    fn check_chunk(&self, end: u64, totals: &Totals) -> Result<()> {
        let chunk = (end - 1) / TABLE_CHUNK_BLOCKS;
        let expected = &self.manifest.entry(self.table).chunks[chunk as usize];
        if totals == expected {
            return Ok(());
        }
        let mut differences = Vec::new();
        if totals.rows != expected.rows {
            differences.push(format!(
                "{} rows, the manifest says {}",
                totals.rows, expected.rows
            ));
        }
        for (i, (name, _)) in self.table.summed_columns().iter().enumerate() {
            if totals.sums[i] != expected.sums[i] {
                differences.push(format!(
                    "{name} sums to {}, the manifest says {}",
                    totals.sums[i], expected.sums[i]
                ));
            }
        }
        let block_bytes = TABLE_BLOCK_BYTES as u64;
        Err(WeirError::Data {
            message: format!(
                "{} (chunk {chunk}, bytes {} to {}) does not hold the rows that were \
                 generated: {} (changed since generation: regenerate with weir gen tpch)",
                self.path.display(),
                (chunk * TABLE_CHUNK_BLOCKS + 1) * block_bytes,
                (end + 1) * block_bytes,
                differences.join("; ")
            ),
        })
    }

    fn corrupt(&self, offset: u64, what: String) -> WeirError {
        WeirError::Data {
            message: format!(
                "{} is corrupt at byte {offset}: {what}",
                self.path.display()
            ),
        }
    }
}

/// Fills `segments` in order with one vectored read after another, until they are full,
/// `wanted` bytes are read, or the file ends; returns the bytes read.
fn read_segments(
    file: &mut File,
    segments: &mut [MemorySegment],
    wanted: usize,
) -> io::Result<usize> {
    let size = segments.first().map_or(0, MemorySegment::size);
    let total = (segments.len() * size).min(wanted);
    let used = total.div_ceil(size.max(1));
    let segments = &mut segments[..used];
    let mut slices: Vec<IoSliceMut<'_>> = segments
        .iter_mut()
        .enumerate()
        .map(|(n, segment)| {
            let take = size.min(total - n * size);
            IoSliceMut::new(&mut segment.as_mut_slice()[..take])
        })
        .collect();
    let mut slices = slices.as_mut_slice();
    let mut filled = 0;
    while filled < total {
        match file.read_vectored(slices) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                IoSliceMut::advance_slices(&mut slices, n);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ends_are_found_by_skipping_string_lengths() {
        let fixed = Table::Lineitem.fixed_bytes();
        let mut row = vec![0u8; fixed];
        row.extend_from_slice(&[2, b'a', b'b', 0, 1, b'c']);
        assert_eq!(record_len(Table::Lineitem, &row), Ok(Some(fixed + 6)));
        assert_eq!(record_len(Table::Lineitem, &row[..fixed + 5]), Ok(None));
        assert_eq!(record_len(Table::Lineitem, &row[..10]), Ok(None));
        row.truncate(fixed);
        row.extend_from_slice(&[0x80, 0x10]); // 2048 bytes
        assert!(record_len(Table::Lineitem, &row).is_err());
        row.truncate(fixed);
        row.extend_from_slice(&[0xff; 11]);
        assert!(record_len(Table::Lineitem, &row).is_err());
    }
}
