//! The blocks of a table file (format version 2): fixed-size, checksummed, whole rows.
//!
//! ```text
//!   file:         [header block][data block 0][data block 1] ... [data block blocks-1]
//!                 every block TABLE_BLOCK_BYTES (4 KiB); data block i at (i + 1) × 4096
//!   header block: [FileHeader, serde-fmt][zeros][crc32: u32]
//!   data block:   [index: u32][payload: u32][rows: u32][the rows][zeros][crc32: u32]
//!   crc32 (LE):   CRC-32 of the block's bytes before it; a data block's is seeded with
//!                 the file's seed (CRC-32 of the table name and the scale factor)
//! ```
//!
//! A row never crosses a block, so a reader checks a block's checksum and then hands out
//! its rows in place, and any block (any byte range of whole blocks) can be read on its
//! own. The header names the rows and blocks, so a file cut short, grown, or with blocks
//! repeated or reordered (each block carries its index) is an error, as is a block from
//! another table or scale (another seed). CRC-32 catches every error of up to three
//! flipped bits in a block and all but one in 2^32 of the rest: it guards against damage,
//! not against someone who rewrites the checksums; the manifest's totals do that.

use std::io::{self, Seek, SeekFrom, Write};

use crc32fast::Hasher;

use super::{FORMAT_VERSION, FileHeader, MAGIC, Table, record_len};
use crate::constants::{TABLE_BLOCK_BYTES, TABLE_BLOCK_CRC_BYTES, TABLE_BLOCK_HEADER_BYTES};

/// The bytes of a block before its checksum.
const SEALED_BYTES: usize = TABLE_BLOCK_BYTES - TABLE_BLOCK_CRC_BYTES;

/// Where a table file is corrupt, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The file offset of the block or row at fault.
    pub offset: u64,
    /// What is wrong, with the numbers.
    pub what: String,
}

/// The seed of a file's data block checksums: CRC-32 of the table's name followed by the
/// scale factor's eight bytes (`f64`, little-endian).
pub fn file_seed(table: &str, scale_factor: f64) -> u32 {
    let mut hasher = Hasher::new();
    hasher.update(table.as_bytes());
    hasher.update(&scale_factor.to_le_bytes());
    hasher.finalize()
}

#[inline]
fn crc(seed: u32, bytes: &[u8]) -> u32 {
    let mut hasher = Hasher::new_with_initial(seed);
    hasher.update(bytes);
    hasher.finalize()
}

#[inline]
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// The header block of `header`: its serde-fmt encoding, zeros, and the checksum.
///
/// # Panics
///
/// When the header does not fit a block (a table name of kilobytes: a bug).
pub fn header_block(header: &FileHeader<'_>) -> Vec<u8> {
    let mut block = weir_serde_fmt::to_vec(header).expect("a file header encodes");
    assert!(block.len() <= SEALED_BYTES, "a file header fits a block");
    block.resize(SEALED_BYTES, 0);
    let sum = crc(0, &block);
    block.extend_from_slice(&sum.to_le_bytes());
    block
}

/// The first two fields of every version's header.
#[derive(serde::Deserialize)]
struct Preamble {
    magic: [u8; 8],
    version: u32,
}

/// Decodes and checks a header block (the file's first [`TABLE_BLOCK_BYTES`], or fewer
/// when the file is shorter): magic, version, checksum, block size. The caller checks
/// the table name and the file's length against it.
///
/// # Errors
///
/// What is wrong, always at offset 0. A version 1 file (weir before block checksums) is
/// refused with the hint to regenerate it.
pub fn read_header(block: &[u8]) -> Result<FileHeader<'_>, Corruption> {
    let bad = |what: String| Corruption { offset: 0, what };
    let preamble = weir_serde_fmt::from_slice_prefix::<Preamble>(block)
        .map_err(|e| bad(format!("its header does not decode ({e})")))?
        .0;
    if preamble.magic != MAGIC {
        return Err(bad(
            "the magic bytes differ (write it with weir gen tpch)".into()
        ));
    }
    if preamble.version != FORMAT_VERSION {
        return Err(bad(format!(
            "it is in table format version {}, this weir reads only version {FORMAT_VERSION} \
             (regenerate the tables with weir gen tpch)",
            preamble.version
        )));
    }
    if block.len() < TABLE_BLOCK_BYTES {
        return Err(bad(format!(
            "its header block is cut short: {} bytes of {TABLE_BLOCK_BYTES}",
            block.len()
        )));
    }
    let (stored, computed) = (u32_at(block, SEALED_BYTES), crc(0, &block[..SEALED_BYTES]));
    if stored != computed {
        return Err(bad(format!(
            "the header block's checksum does not match (stored {stored:#010x}, computed \
             {computed:#010x})"
        )));
    }
    let (header, _) = weir_serde_fmt::from_slice_prefix::<FileHeader<'_>>(block)
        .map_err(|e| bad(format!("its header does not decode ({e})")))?;
    if header.block_bytes as usize != TABLE_BLOCK_BYTES {
        return Err(bad(format!(
            "its blocks are {} bytes, this weir reads {TABLE_BLOCK_BYTES}",
            header.block_bytes
        )));
    }
    Ok(header)
}

/// The file length a header announces: the header block and its data blocks.
pub fn file_bytes(header: &FileHeader<'_>) -> u64 {
    (header.blocks + 1) * TABLE_BLOCK_BYTES as u64
}

/// Checks data block `index` (`block` is its [`TABLE_BLOCK_BYTES`] bytes) and returns its
/// payload (the rows' bytes) and row count.
///
/// # Errors
///
/// A description of what is wrong: the checksum, the index, the payload length, an
/// empty block.
#[inline]
pub fn check_block(block: &[u8], index: u64, seed: u32) -> Result<(&[u8], u32), String> {
    let (stored, computed) = (
        u32_at(block, SEALED_BYTES),
        crc(seed, &block[..SEALED_BYTES]),
    );
    if stored != computed {
        return Err(format!(
            "block {index}'s checksum does not match (stored {stored:#010x}, computed \
             {computed:#010x})"
        ));
    }
    let (found, payload, rows) = (u32_at(block, 0), u32_at(block, 4), u32_at(block, 8));
    if u64::from(found) != index {
        return Err(format!(
            "block {index} says it is block {found} (blocks repeated or out of order)"
        ));
    }
    let payload = payload as usize;
    if payload > SEALED_BYTES - TABLE_BLOCK_HEADER_BYTES || rows == 0 {
        return Err(format!(
            "block {index} says it holds {rows} rows in {payload} bytes"
        ));
    }
    let start = TABLE_BLOCK_HEADER_BYTES;
    Ok((&block[start..start + payload], rows))
}

/// Calls `row` with the offset in `payload` and the bytes of each of a block's rows; the
/// rows must fill the payload exactly and number `rows`. `malformed` makes the error for
/// a row at an offset in `payload`.
///
/// # Errors
///
/// `malformed`'s error for a malformed row or another number of rows; `row`'s errors.
#[inline]
pub fn split_rows<'a, E>(
    table: Table,
    payload: &'a [u8],
    rows: u32,
    mut row: impl FnMut(usize, &'a [u8]) -> Result<(), E>,
    malformed: impl Fn(usize, &'static str) -> E,
) -> Result<(), E> {
    let (mut at, mut count) = (0, 0u32);
    while at < payload.len() {
        match record_len(table, &payload[at..]) {
            Ok(Some(len)) => {
                row(at, &payload[at..at + len])?;
                at += len;
                count += 1;
            }
            Ok(None) => return Err(malformed(at, "a row runs past the block's payload")),
            Err(what) => return Err(malformed(at, what)),
        }
    }
    if count != rows {
        return Err(malformed(
            0,
            "the block holds another number of rows than it says",
        ));
    }
    Ok(())
}

/// What a [`TableWriter`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Rows.
    pub rows: u64,
    /// Data blocks.
    pub blocks: u64,
    /// Bytes of the file.
    pub bytes: u64,
}

/// Writes a table file: rows are packed into blocks as they come, each block sealed and
/// written when the next row does not fit; the header block is written last, in place.
#[derive(Debug)]
pub struct TableWriter<W: Write + Seek> {
    out: W,
    table: Table,
    scale_factor: f64,
    seed: u32,
    block: Vec<u8>,
    used: usize,
    block_rows: u32,
    blocks: u64,
    rows: u64,
}

impl<W: Write + Seek> TableWriter<W> {
    /// Starts a file of `table` in `out` (at its start), reserving the header block.
    ///
    /// # Errors
    ///
    /// `out`'s write errors.
    pub fn new(mut out: W, table: Table, scale_factor: f64) -> io::Result<TableWriter<W>> {
        out.write_all(&[0; TABLE_BLOCK_BYTES])?;
        Ok(TableWriter {
            out,
            table,
            scale_factor,
            seed: file_seed(table.name(), scale_factor),
            block: vec![0; TABLE_BLOCK_BYTES],
            used: TABLE_BLOCK_HEADER_BYTES,
            block_rows: 0,
            blocks: 0,
            rows: 0,
        })
    }

    /// Appends one encoded row; returns the index of the data block it lands in.
    ///
    /// # Errors
    ///
    /// `out`'s write errors; [`io::ErrorKind::InvalidInput`] for a row that is not one
    /// row of the table (as [`record_len`] finds it).
    pub fn row(&mut self, row: &[u8]) -> io::Result<u64> {
        if record_len(self.table, row) != Ok(Some(row.len())) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} bytes are not one {} row", row.len(), self.table.name()),
            ));
        }
        if self.used + row.len() > SEALED_BYTES {
            self.seal()?;
        }
        self.block[self.used..self.used + row.len()].copy_from_slice(row);
        self.used += row.len();
        self.block_rows += 1;
        self.rows += 1;
        Ok(self.blocks)
    }

    /// Writes the block being filled, if it holds a row.
    fn seal(&mut self) -> io::Result<()> {
        if self.block_rows == 0 {
            return Ok(());
        }
        let index = u32::try_from(self.blocks)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "over 2^32 blocks"))?;
        let payload = (self.used - TABLE_BLOCK_HEADER_BYTES) as u32;
        self.block[0..4].copy_from_slice(&index.to_le_bytes());
        self.block[4..8].copy_from_slice(&payload.to_le_bytes());
        self.block[8..12].copy_from_slice(&self.block_rows.to_le_bytes());
        self.block[self.used..SEALED_BYTES].fill(0);
        let sum = crc(self.seed, &self.block[..SEALED_BYTES]);
        self.block[SEALED_BYTES..].copy_from_slice(&sum.to_le_bytes());
        self.out.write_all(&self.block)?;
        self.blocks += 1;
        self.used = TABLE_BLOCK_HEADER_BYTES;
        self.block_rows = 0;
        Ok(())
    }

    /// Rows appended so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the last block and the header block; returns `out` (flushed) and what was
    /// written.
    ///
    /// # Errors
    ///
    /// `out`'s write and seek errors.
    pub fn finish(mut self) -> io::Result<(W, Written)> {
        self.seal()?;
        let header = FileHeader {
            magic: MAGIC,
            version: FORMAT_VERSION,
            table: self.table.name(),
            scale_factor: self.scale_factor,
            rows: self.rows,
            blocks: self.blocks,
            block_bytes: TABLE_BLOCK_BYTES as u32,
        };
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header_block(&header))?;
        self.out.flush()?;
        let written = Written {
            rows: self.rows,
            blocks: self.blocks,
            bytes: file_bytes(&header),
        };
        Ok((self.out, written))
    }
}

/// The header and the rows of a whole table file in memory, every check of a scan made
/// (for tests and tools; queries use [`TableScan`](super::TableScan)).
///
/// # Errors
///
/// The first corruption found, with its file offset.
pub fn table_rows(bytes: &[u8], table: Table) -> Result<(FileHeader<'_>, Vec<&[u8]>), Corruption> {
    let header = read_header(&bytes[..bytes.len().min(TABLE_BLOCK_BYTES)])?;
    if header.table != table.name() {
        return Err(Corruption {
            offset: 0,
            what: format!("it holds table {:?}", header.table),
        });
    }
    if bytes.len() as u64 != file_bytes(&header) {
        return Err(Corruption {
            offset: bytes.len().min(TABLE_BLOCK_BYTES) as u64,
            what: format!(
                "it is {} bytes, its header says {} blocks: {} bytes",
                bytes.len(),
                header.blocks,
                file_bytes(&header)
            ),
        });
    }
    let seed = file_seed(header.table, header.scale_factor);
    let mut rows = Vec::with_capacity(usize::try_from(header.rows).unwrap_or(0));
    for (index, block) in bytes[TABLE_BLOCK_BYTES..]
        .chunks_exact(TABLE_BLOCK_BYTES)
        .enumerate()
    {
        let offset = ((index + 1) * TABLE_BLOCK_BYTES) as u64;
        let (payload, count) =
            check_block(block, index as u64, seed).map_err(|what| Corruption { offset, what })?;
        let base = offset + TABLE_BLOCK_HEADER_BYTES as u64;
        split_rows(
            table,
            payload,
            count,
            |_, row| {
                rows.push(row);
                Ok(())
            },
            |at, what| Corruption {
                offset: base + at as u64,
                what: format!("the row is malformed: {what}"),
            },
        )?;
    }
    if rows.len() as u64 != header.rows {
        return Err(Corruption {
            offset: bytes.len() as u64,
            what: format!(
                "it holds {} rows, its header says {}",
                rows.len(),
                header.rows
            ),
        });
    }
    Ok((header, rows))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn row(i: usize) -> Vec<u8> {
        let mut row = vec![i as u8; Table::Customer.fixed_bytes()];
        for s in 0..Table::Customer.strings() {
            let len = (i * 7 + s * 13) % 40;
            row.push(len as u8);
            row.extend(std::iter::repeat_n(b'a' + s as u8, len));
        }
        row
    }

    fn file(rows: usize) -> Vec<u8> {
        let mut writer = TableWriter::new(Cursor::new(Vec::new()), Table::Customer, 0.5).unwrap();
        for i in 0..rows {
            writer.row(&row(i)).unwrap();
        }
        let (out, written) = writer.finish().unwrap();
        let bytes = out.into_inner();
        assert_eq!(written.bytes, bytes.len() as u64);
        assert_eq!(written.rows, rows as u64);
        bytes
    }

    #[test]
    fn rows_round_trip_across_blocks() {
        for count in [0, 1, 70, 500] {
            let bytes = file(count);
            let (header, rows) = table_rows(&bytes, Table::Customer).unwrap();
            assert_eq!(header.rows, count as u64);
            assert_eq!(bytes.len() % TABLE_BLOCK_BYTES, 0);
            let expected: Vec<Vec<u8>> = (0..count).map(row).collect();
            assert_eq!(rows, expected.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }
        assert!(file(500).len() > 3 * TABLE_BLOCK_BYTES, "several blocks");
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = file(60);
        assert_eq!(
            bytes.len(),
            3 * TABLE_BLOCK_BYTES,
            "a header and two data blocks"
        );
        let mut flipped = bytes.clone();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                flipped[at] ^= 1 << bit;
                let result = table_rows(&flipped, Table::Customer);
                assert!(result.is_err(), "bit {bit} of byte {at} flipped unnoticed");
                let offset = result.unwrap_err().offset;
                let block = (at / TABLE_BLOCK_BYTES * TABLE_BLOCK_BYTES) as u64;
                assert!(
                    (block..block + TABLE_BLOCK_BYTES as u64).contains(&offset),
                    "byte {at}: reported at {offset}"
                );
                flipped[at] ^= 1 << bit;
            }
        }
    }

    #[test]
    fn truncated_repeated_and_foreign_blocks_are_detected() {
        let bytes = file(500);
        let b = TABLE_BLOCK_BYTES;
        let cut = &bytes[..bytes.len() - b];
        assert!(table_rows(cut, Table::Customer).is_err());
        let mut repeated = bytes.clone();
        repeated.copy_within(b..2 * b, 2 * b);
        let error = table_rows(&repeated, Table::Customer).unwrap_err();
        assert_eq!(error.offset, 2 * b as u64, "{error:?}");
        assert!(error.what.contains("says it is block 0"), "{error:?}");
        let other = {
            let mut writer =
                TableWriter::new(Cursor::new(Vec::new()), Table::Customer, 0.25).unwrap();
            for i in 0..500 {
                writer.row(&row(i)).unwrap();
            }
            writer.finish().unwrap().0.into_inner()
        };
        let mut mixed = bytes.clone();
        mixed[3 * b..4 * b].copy_from_slice(&other[3 * b..4 * b]);
        let error = table_rows(&mixed, Table::Customer).unwrap_err();
        assert!(error.what.contains("checksum"), "{error:?}");
        assert!(table_rows(&bytes, Table::Orders).is_err(), "another table");
    }

    /// The worked example of docs/FORMAT.md, section 7: the header block of `lineitem`
    /// at SF 1, its checksum, and the file's seed.
    #[test]
    fn format_doc_example() {
        let doc = include_str!("../../../docs/FORMAT.md");
        let section = &doc[doc.find("### Worked example: the first blocks").unwrap()..];
        let example = &section[section.find("```text\n").unwrap() + 8..];
        let hex: Vec<u8> = example
            .lines()
            .take_while(|line| !line.starts_with("then"))
            .flat_map(|line| line[..27].split_whitespace())
            .map(|byte| u8::from_str_radix(byte, 16).unwrap())
            .collect();
        let header = FileHeader {
            magic: MAGIC,
            version: FORMAT_VERSION,
            table: "lineitem",
            scale_factor: 1.0,
            rows: 6_001_215,
            blocks: 178_808,
            block_bytes: TABLE_BLOCK_BYTES as u32,
        };
        let block = header_block(&header);
        assert_eq!(hex, &block[..hex.len()]);
        assert!(block[hex.len()..SEALED_BYTES].iter().all(|&b| b == 0));
        assert_eq!(u32_at(&block, SEALED_BYTES), 0x3950_92c5);
        assert!(section.contains("crc32 c5 92 50 39 (0x395092c5)"));
        assert_eq!(file_seed("lineitem", 1.0), 0xd136_e6dd);
        assert!(section.contains("seeded with `0xd136e6dd`"));
        assert_eq!(read_header(&block), Ok(header));
    }

    #[test]
    fn version_1_files_are_refused_with_the_hint() {
        let mut v1 = weir_serde_fmt::to_vec(&(MAGIC, 1u32, "customer", 0.5f64, 0u64)).unwrap();
        v1.resize(200, 0);
        let error = table_rows(&v1, Table::Customer).unwrap_err();
        assert!(error.what.contains("version 1"), "{error:?}");
        assert!(error.what.contains("regenerate"), "{error:?}");
    }
}
