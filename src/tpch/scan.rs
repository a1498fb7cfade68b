//! `TableScan`: the rows of a table file, streamed through segments of the budget.
//!
//! ```text
//!   file ──read_vectored──▶ [seg 0][seg 1] ... [seg 15]   one system call fills up to
//!                              │                          16 segments (512 KiB)
//!        rows wholly inside a segment ──▶ handed out in place (no copy)
//!        a row across a segment boundary ──▶ its pieces copied into the carry segment
//! ```
//!
//! A row's end is found by [`record_len`]: the table's fixed-width bytes, then each
//! string's varint length, skipped; the strings are not decoded or validated (the full
//! serde-fmt decoding of validation does that). Reads are large and sequential, and the
//! buffers are segments of the caller's owner, so they count in the memory budget.
//!
//! A file that is not a table file, is of another table or version, ends inside a row,
//! holds a row longer than [`ROW_BYTES_MAX`], or holds another number of rows than its
//! header says is an error naming the file and the byte offset.

use std::fs::File;
use std::io::{self, IoSliceMut, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use weir_kernel::memory::{MemorySegment, Owner};

use super::{FORMAT_VERSION, FileHeader, MAGIC, ROW_BYTES_MAX, Table};
use crate::constants::{SCAN_HEADER_BYTES_MAX, SCAN_READ_SEGMENTS};
use crate::error::{Result, WeirError};

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
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&byte) = bytes.get(at) else {
                return Ok(None);
            };
            at += 1;
            len |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err("a string length is not a varint");
            }
        }
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

/// Streams the rows of one table file. See the module documentation.
#[derive(Debug)]
pub struct TableScan {
    file: File,
    path: PathBuf,
    table: Table,
    scale_factor: f64,
    rows: u64,
    /// File offset of the first row.
    data_start: u64,
    buffers: Vec<MemorySegment>,
    carry: MemorySegment,
}

impl TableScan {
    /// Opens `dir/<table>`, checks its header, and takes its buffers from `owner`
    /// ([`TableScan::segments`] of them).
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] when the file cannot be opened or read; [`WeirError::Input`]
    /// when its header is not a weir TPC-H header of this table and version;
    /// [`WeirError::Kernel`] when the budget cannot grant the buffers.
    ///
    /// # Panics
    ///
    /// When the owner's segments are smaller than [`ROW_BYTES_MAX`] (a configuration the
    /// constants rule out).
    pub fn open(dir: &Path, table: Table, owner: &Owner) -> Result<TableScan> {
        let path = dir.join(table.name());
        let mut file = File::open(&path).map_err(|e| WeirError::file("open input", &path, e))?;
        let mut head = [0u8; SCAN_HEADER_BYTES_MAX];
        let got = read_full(&mut file, &mut head).map_err(|e| WeirError::file("read", &path, e))?;
        let bad = |what: String| WeirError::Input {
            message: format!(
                "{} is not a weir TPC-H {} file: {what}",
                path.display(),
                table.name()
            ),
        };
        let (header, used) = weir_serde_fmt::from_slice_prefix::<FileHeader<'_>>(&head[..got])
            .map_err(|e| bad(format!("its header does not decode ({e})")))?;
        if header.magic != MAGIC {
            return Err(bad(
                "the magic bytes differ (write it with weir gen tpch)".to_owned()
            ));
        }
        if header.version != FORMAT_VERSION || header.table != table.name() {
            return Err(bad(format!(
                "its header says table {:?} in format version {}, expected {:?} in version {FORMAT_VERSION}",
                header.table,
                header.version,
                table.name()
            )));
        }
        let (scale_factor, rows) = (header.scale_factor, header.rows);
        file.seek(SeekFrom::Start(used as u64))
            .map_err(|e| WeirError::file("seek in", &path, e))?;
        let mut buffers = owner.allocate(SCAN_READ_SEGMENTS + 1)?;
        let carry = buffers.pop().expect("one segment more than the reads take");
        assert!(
            carry.size() >= ROW_BYTES_MAX,
            "a row must fit the carry segment"
        );
        Ok(TableScan {
            file,
            path,
            table,
            scale_factor,
            rows,
            data_start: used as u64,
            buffers,
            carry,
        })
    }

    /// Segments a scan holds: the read buffers and the carry segment.
    pub const fn segments() -> usize {
        SCAN_READ_SEGMENTS + 1
    }

    /// The scale factor the header names.
    pub fn scale_factor(&self) -> f64 {
        self.scale_factor
    }

    /// The rows the header announces.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Calls `row` with every row, in file order; returns how many there were.
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] on a read error; [`WeirError::Input`] for a malformed row, a
    /// file that ends inside a row, or a row count other than the header's; any error of
    /// `row`, which ends the scan.
    pub fn for_each_row(&mut self, mut row: impl FnMut(&[u8]) -> Result<()>) -> Result<u64> {
        let table = self.table;
        let mut count = 0u64;
        let mut offset = self.data_start; // file offset of buffers[0]
        let mut carried = 0usize;
        loop {
            let filled = read_segments(&mut self.file, &mut self.buffers)
                .map_err(|e| WeirError::file("read input", &self.path, e))?;
            if filled == 0 {
                break;
            }
            let size = self.buffers[0].size();
            for (index, segment) in self.buffers.iter().enumerate() {
                let start = index * size;
                if start >= filled {
                    break;
                }
                let bytes = &segment.as_slice()[..(filled - start).min(size)];
                let base = offset + start as u64;
                let mut at = 0;
                if carried > 0 {
                    // Complete the row that began in the previous segment.
                    let take = (ROW_BYTES_MAX - carried).min(bytes.len());
                    self.carry.put_bytes(carried, &bytes[..take]);
                    let joined = &self.carry.as_slice()[..carried + take];
                    match record_len(table, joined) {
                        Ok(Some(len)) => {
                            count += 1;
                            row(&joined[..len])?;
                            at = len - carried;
                            carried = 0;
                        }
                        Ok(None) if take == bytes.len() => {
                            carried += take;
                            continue;
                        }
                        Ok(None) => {
                            let what = "a row is longer than any row may be";
                            return Err(self.malformed(base - carried as u64, what));
                        }
                        Err(what) => return Err(self.malformed(base - carried as u64, what)),
                    }
                }
                while at < bytes.len() {
                    match record_len(table, &bytes[at..]) {
                        Ok(Some(len)) => {
                            count += 1;
                            row(&bytes[at..at + len])?;
                            at += len;
                        }
                        Ok(None) => {
                            carried = bytes.len() - at;
                            self.carry.put_bytes(0, &bytes[at..]);
                            break;
                        }
                        Err(what) => return Err(self.malformed(base + at as u64, what)),
                    }
                }
            }
            offset += filled as u64;
        }
        self.check_end(offset, carried, count)?;
        Ok(count)
    }

    fn check_end(&self, end: u64, carried: usize, count: u64) -> Result<()> {
        if carried > 0 {
            return Err(WeirError::Input {
                message: format!(
                    "{} is truncated: it ends inside row {} (at byte {}, {carried} bytes into the row)",
                    self.path.display(),
                    count + 1,
                    end
                ),
            });
        }
        if count != self.rows {
            return Err(WeirError::Input {
                message: format!(
                    "{} holds {count} rows but its header says {}: truncated or changed",
                    self.path.display(),
                    self.rows
                ),
            });
        }
        Ok(())
    }

    fn malformed(&self, offset: u64, what: &str) -> WeirError {
        WeirError::Input {
            message: format!(
                "{} is corrupt: the row at byte {offset} is malformed: {what}",
                self.path.display()
            ),
        }
    }
}

/// Fills `segments` in order with one vectored read after another, until they are full
/// or the file ends; returns the bytes read.
fn read_segments(file: &mut File, segments: &mut [MemorySegment]) -> io::Result<usize> {
    let total: usize = segments.iter().map(MemorySegment::size).sum();
    let mut slices: Vec<IoSliceMut<'_>> = segments
        .iter_mut()
        .map(|segment| IoSliceMut::new(segment.as_mut_slice()))
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

/// Reads until `buffer` is full or the file ends.
fn read_full(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
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
