//! Record files: records written once as checksummed, splittable blocks of serde-fmt
//! records, and read back by a job at full speed — the way a production job reads a log
//! such as Kafka rather than regenerating its input (docs/FORMAT.md, section 10).
//!
//! ```text
//!   write_records(path, records) ── OutputFile (temporary, renamed when complete)
//!     [header block][data block 0][data block 1] ... each 4096 bytes, CRC-32 each
//!   Dataflow::read_records(path) ── the blocks in stripes of one read (64 blocks, 256
//!     KiB); task t of P reads stripes t, t + P, … through its own I/O segments, checks
//!     every block, decodes its records
//! ```
//!
//! A record never crosses a block, so any run of whole blocks can be read and checked on
//! its own; a record longer than a block's payload (4080 bytes with its length) is refused
//! when written. Every block's CRC starts from the file's own seed (in the header), so a
//! block of another record file is caught like a damaged one.

use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::dataflow::{Data, Dataflow, Push, Stream, TaskContext};
use crate::error::{Result, WeirError};
use crate::output::OutputFile;

/// Bytes of every block, the header's included.
pub const RECORD_BLOCK_BYTES: usize = 4096;

/// The format's version in the header.
pub const RECORD_FILE_VERSION: u32 = 1;

/// The first bytes of every record file.
const MAGIC: &[u8; 8] = b"WEIRRECS";

/// Bytes of a data block before its records: index, payload bytes, records.
const BLOCK_HEAD: usize = 12;

/// Bytes at a block's end for its CRC-32.
const BLOCK_CRC: usize = 4;

/// The most payload a data block holds.
const PAYLOAD_MAX: usize = RECORD_BLOCK_BYTES - BLOCK_HEAD - BLOCK_CRC;

/// Segments a task reading a record file holds as its I/O buffer.
const READ_SEGMENTS: usize = 8;

/// Records between two looks at the job's cancel flag.
const CHECK_RECORDS: u64 = 1 << 14;

/// The CRC-32 of `bytes`, started from `seed`.
fn crc(seed: u32, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(bytes);
    hasher.finalize()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// What a record file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFileHeader {
    /// Records in the file.
    pub records: u64,
    /// Data blocks after the header.
    pub blocks: u64,
    /// The seed every data block's CRC starts from.
    pub seed: u32,
}

impl RecordFileHeader {
    fn block(&self) -> Vec<u8> {
        let mut block = vec![0u8; RECORD_BLOCK_BYTES];
        block[..8].copy_from_slice(MAGIC);
        block[8..12].copy_from_slice(&RECORD_FILE_VERSION.to_le_bytes());
        block[12..16].copy_from_slice(&(RECORD_BLOCK_BYTES as u32).to_le_bytes());
        block[16..24].copy_from_slice(&self.records.to_le_bytes());
        block[24..32].copy_from_slice(&self.blocks.to_le_bytes());
        block[32..36].copy_from_slice(&self.seed.to_le_bytes());
        let sum = crc(0, &block[..RECORD_BLOCK_BYTES - BLOCK_CRC]);
        block[RECORD_BLOCK_BYTES - BLOCK_CRC..].copy_from_slice(&sum.to_le_bytes());
        block
    }

    /// Reads and checks the header block of `path` (already open as `file`) and the
    /// file's length.
    fn read(path: &Path, file: &mut std::fs::File) -> Result<RecordFileHeader> {
        let corrupt = |what: &str| WeirError::Data {
            message: format!(
                "{}: not a complete weir record file: {what}",
                path.display()
            ),
        };
        let mut block = vec![0u8; RECORD_BLOCK_BYTES];
        file.read_exact(&mut block)
            .map_err(|_| corrupt("shorter than its header block"))?;
        if &block[..8] != MAGIC {
            return Err(corrupt("no WEIRRECS magic at its start"));
        }
        let sum = u32_at(&block, RECORD_BLOCK_BYTES - BLOCK_CRC);
        if crc(0, &block[..RECORD_BLOCK_BYTES - BLOCK_CRC]) != sum {
            return Err(corrupt("its header block fails its checksum"));
        }
        let version = u32_at(&block, 8);
        if version != RECORD_FILE_VERSION {
            return Err(corrupt(&format!(
                "record file format version {version}, this weir reads {RECORD_FILE_VERSION}"
            )));
        }
        if u32_at(&block, 12) as usize != RECORD_BLOCK_BYTES {
            return Err(corrupt("blocks of another size"));
        }
        let header = RecordFileHeader {
            records: u64_at(&block, 16),
            blocks: u64_at(&block, 24),
            seed: u32_at(&block, 32),
        };
        let length = file
            .metadata()
            .map_err(|e| WeirError::file("read", path, e))?
            .len();
        if Some(length) != (header.blocks + 1).checked_mul(RECORD_BLOCK_BYTES as u64) {
            return Err(corrupt(&format!(
                "{length} bytes where its header announces {} blocks",
                header.blocks
            )));
        }
        Ok(header)
    }
}

/// Reads and checks the header of the record file at `path` (its magic, version,
/// checksum and the file's length).
///
/// # Errors
///
/// [`WeirError::File`] when it cannot be opened; [`WeirError::Data`] when it is not a
/// complete record file of this version.
pub fn read_header(path: &Path) -> Result<RecordFileHeader> {
    let mut file = std::fs::File::open(path).map_err(|e| WeirError::file("open", path, e))?;
    RecordFileHeader::read(path, &mut file)
}

/// Writes a record file, block by block; see the module documentation.
#[derive(Debug)]
pub struct RecordFileWriter {
    output: OutputFile,
    out: BufWriter<std::fs::File>,
    block: Vec<u8>,
    in_block: u32,
    scratch: Vec<u8>,
    header: RecordFileHeader,
}

impl RecordFileWriter {
    /// Starts `path`: a temporary file beside it, renamed over it by
    /// [`RecordFileWriter::finish`].
    ///
    /// # Errors
    ///
    /// [`WeirError::Usage`] for a path that may not be written (a directory, a missing
    /// directory); [`WeirError::File`] when the temporary file cannot be created.
    pub fn create(path: &Path) -> Result<RecordFileWriter> {
        let output = OutputFile::create("record file", path, &[])?;
        let mut out = BufWriter::with_capacity(1 << 20, output.try_clone()?);
        // The header's place, written last.
        out.write_all(&[0u8; RECORD_BLOCK_BYTES])
            .map_err(|e| WeirError::file("write", output.temp_path(), e))?;
        let seed = seed_of(path);
        Ok(RecordFileWriter {
            output,
            out,
            block: Vec::with_capacity(RECORD_BLOCK_BYTES),
            in_block: 0,
            scratch: Vec::new(),
            header: RecordFileHeader {
                records: 0,
                blocks: 0,
                seed,
            },
        })
    }

    /// Appends `record`.
    ///
    /// # Errors
    ///
    /// [`WeirError::Data`] for a record that cannot be encoded or does not fit a block;
    /// [`WeirError::File`] for a failed write.
    pub fn push<T: Serialize>(&mut self, record: &T) -> Result<()> {
        self.scratch.clear();
        crate::serde_fmt::append_to_vec(&mut self.scratch, record).map_err(|e| {
            WeirError::Data {
                message: format!("a record cannot be encoded: {e}"),
            }
        })?;
        let len = self.scratch.len();
        let needed = varint_len(len as u64) + len;
        if needed > PAYLOAD_MAX {
            return Err(WeirError::Data {
                message: format!(
                    "a record of {len} bytes does not fit a record file's block \
                     (at most {PAYLOAD_MAX} bytes with its length)"
                ),
            });
        }
        if BLOCK_HEAD + self.block.len() + needed > BLOCK_HEAD + PAYLOAD_MAX {
            self.seal()?;
        }
        put_varint(&mut self.block, len as u64);
        self.block.extend_from_slice(&self.scratch);
        self.in_block += 1;
        self.header.records += 1;
        Ok(())
    }

    /// Writes the current block, if it holds records.
    fn seal(&mut self) -> Result<()> {
        if self.in_block == 0 {
            return Ok(());
        }
        let index = u32::try_from(self.header.blocks).map_err(|_| WeirError::Data {
            message: "a record file of more than 2^32 blocks".to_owned(),
        })?;
        let mut block = vec![0u8; RECORD_BLOCK_BYTES];
        block[0..4].copy_from_slice(&index.to_le_bytes());
        block[4..8].copy_from_slice(&(self.block.len() as u32).to_le_bytes());
        block[8..12].copy_from_slice(&self.in_block.to_le_bytes());
        block[BLOCK_HEAD..BLOCK_HEAD + self.block.len()].copy_from_slice(&self.block);
        let sum = crc(self.header.seed, &block[..RECORD_BLOCK_BYTES - BLOCK_CRC]);
        block[RECORD_BLOCK_BYTES - BLOCK_CRC..].copy_from_slice(&sum.to_le_bytes());
        self.out
            .write_all(&block)
            .map_err(|e| WeirError::file("write", self.output.temp_path(), e))?;
        self.header.blocks += 1;
        self.block.clear();
        self.in_block = 0;
        Ok(())
    }

    /// Writes the last block and the header, and renames the file into place; returns
    /// what the header says.
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] for a failed write, sync or rename (the temporary file is
    /// removed).
    pub fn finish(mut self) -> Result<RecordFileHeader> {
        self.seal()?;
        let temp = self.output.temp_path().to_path_buf();
        let write = |e| WeirError::file("write", &temp, e);
        self.out.flush().map_err(write)?;
        let mut file = self.out.into_inner().map_err(|e| write(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(write)?;
        file.write_all(&self.header.block()).map_err(write)?;
        self.output.commit()?;
        Ok(self.header)
    }
}

/// A seed for a new file's block checksums: different for every file written, so blocks
/// of two files never pass as each other's.
fn seed_of(path: &Path) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(path.as_os_str().as_encoded_bytes());
    hasher.finalize()
}

/// Writes `records` to a new record file at `path` (see [`RecordFileWriter`]).
///
/// # Errors
///
/// As [`RecordFileWriter::create`], [`RecordFileWriter::push`] and
/// [`RecordFileWriter::finish`].
pub fn write_records<T: Serialize>(
    path: &Path,
    records: impl IntoIterator<Item = T>,
) -> Result<RecordFileHeader> {
    let mut writer = RecordFileWriter::create(path)?;
    for record in records {
        writer.push(&record)?;
    }
    writer.finish()
}

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at `at` of `bytes` and where it ends; `None` when malformed or cut short.
fn get_varint(bytes: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(at)?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

/// The runs of blocks task `task` of `tasks` reads of `blocks`: every `tasks`-th stripe
/// of `stripe` blocks from the `task`-th on. Stripes (rather than one run per task) keep
/// the tasks at about the same place in the file: a file written in time order (a log of
/// events) is read in about that order by all of them together, so a downstream
/// watermark — the minimum over the tasks — follows the records closely.
fn block_stripes(
    blocks: u64,
    stripe: u64,
    task: u64,
    tasks: u64,
) -> impl Iterator<Item = std::ops::Range<u64>> {
    (task..)
        .step_by(usize::try_from(tasks).unwrap_or(usize::MAX))
        .map(move |k| k.saturating_mul(stripe))
        .take_while(move |&start| start < blocks)
        .map(move |start| start..(start + stripe).min(blocks))
}

/// Checks data block `index` of `path` and hands out its records' bytes.
fn block_records(
    path: &Path,
    header: &RecordFileHeader,
    index: u64,
    block: &[u8],
    mut record: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let offset = (index + 1) * RECORD_BLOCK_BYTES as u64;
    let corrupt = |what: &str| WeirError::Data {
        message: format!("{} at byte {offset}: {what}", path.display()),
    };
    let sum = u32_at(block, RECORD_BLOCK_BYTES - BLOCK_CRC);
    if crc(header.seed, &block[..RECORD_BLOCK_BYTES - BLOCK_CRC]) != sum {
        return Err(corrupt(
            "a block fails its checksum (damaged, or of another file)",
        ));
    }
    if u64::from(u32_at(block, 0)) != index {
        return Err(corrupt("a block out of its place"));
    }
    let payload = u32_at(block, 4) as usize;
    let count = u64::from(u32_at(block, 8));
    if payload > PAYLOAD_MAX {
        return Err(corrupt("a block's payload is longer than a block"));
    }
    let bytes = &block[BLOCK_HEAD..BLOCK_HEAD + payload];
    let (mut at, mut seen) = (0, 0u64);
    while at < bytes.len() {
        let (len, start) =
            get_varint(bytes, at).ok_or_else(|| corrupt("a record's length is malformed"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| corrupt("a record runs past its block"))?;
        record(&bytes[start..end])?;
        at = end;
        seen += 1;
    }
    if seen != count {
        return Err(corrupt(
            "a block holds another number of records than it says",
        ));
    }
    Ok(count)
}

impl Dataflow {
    /// The records of a record file ([`write_records`]) as a source: task `t` of P reads
    /// every P-th stripe of 64 blocks from the `t`-th on, through its own I/O segments (in
    /// the worker's budget), so the tasks move through the file together; checking every block's checksum, place and record count, so P tasks read
    /// every record once. A damaged or foreign block fails the job naming the file and
    /// the block's byte offset; a record that does not decode as `T` names it too.
    pub fn read_records<T: Data>(&self, path: impl Into<PathBuf>) -> Stream<T> {
        let path = Arc::new(path.into());
        self.source_push(
            "read_records",
            READ_SEGMENTS,
            move |ctx: &TaskContext, down: &mut dyn Push<T>| read_share(&path, ctx, down),
        )
    }
}

/// Task `ctx`'s share of the record file at `path`, pushed to `down`.
fn read_share<T: Data>(path: &Path, ctx: &TaskContext, down: &mut dyn Push<T>) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| WeirError::file("open", path, e))?;
    let header = RecordFileHeader::read(path, &mut file)?;
    let mut buffers = ctx.io_owner().allocate(READ_SEGMENTS)?;
    let segment_blocks = (buffers[0].size() / RECORD_BLOCK_BYTES) as u64;
    let stripe = segment_blocks * buffers.len() as u64;
    let mut records = 0u64;
    for run in block_stripes(
        header.blocks,
        stripe,
        ctx.task() as u64,
        ctx.parallelism() as u64,
    ) {
        // Until the share is read, or a `limit` downstream is done (looked at per read).
        if down.is_done() {
            break;
        }
        file.seek(SeekFrom::Start((run.start + 1) * RECORD_BLOCK_BYTES as u64))
            .map_err(|e| WeirError::file("read", path, e))?;
        // Fill the segments with the run's blocks, then hand out their records.
        let (mut filled, mut read_to) = (Vec::with_capacity(buffers.len()), run.start);
        for segment in &mut buffers {
            let blocks = segment_blocks.min(run.end - read_to);
            if blocks == 0 {
                break;
            }
            let bytes = blocks as usize * RECORD_BLOCK_BYTES;
            file.read_exact(segment.bytes_mut(0, bytes))
                .map_err(|e| WeirError::file("read", path, e))?;
            filled.push(blocks);
            read_to += blocks;
        }
        let mut index = run.start;
        for (segment, blocks) in buffers.iter().zip(&filled) {
            for b in 0..*blocks as usize {
                let block = segment.bytes(b * RECORD_BLOCK_BYTES, RECORD_BLOCK_BYTES);
                block_records(path, &header, index, block, |bytes| {
                    let record =
                        crate::serde_fmt::from_slice(bytes).map_err(|e| WeirError::Data {
                            message: format!(
                                "{}: a record of block {index} does not decode: {e}",
                                path.display()
                            ),
                        })?;
                    down.push(record)?;
                    records += 1;
                    if records.is_multiple_of(CHECK_RECORDS) {
                        ctx.check_cancelled()?;
                        ctx.inject_barriers(down)?;
                        ctx.count_rows_read(CHECK_RECORDS);
                    }
                    Ok(())
                })?;
                index += 1;
            }
        }
    }
    ctx.count_rows_read(records % CHECK_RECORDS);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::dataflow::runtime;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("weir-record-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn records(n: u64) -> Vec<(u64, String)> {
        (0..n)
            .map(|i| (i, "x".repeat((i % 300) as usize)))
            .collect()
    }

    fn read_all(path: &Path, slots: usize) -> Result<Vec<(u64, String)>> {
        let flow = Dataflow::new();
        let got = flow.read_records::<(u64, String)>(path).collect();
        let config = Config {
            workers: 1,
            slots,
            memory: 16 << 20,
            ..Config::default()
        };
        runtime::execute(&flow, &config, None)?;
        let mut got = got.take();
        got.sort();
        Ok(got)
    }

    #[test]
    fn tasks_read_every_record_once() {
        let dir = dir("round-trip");
        let path = dir.join("records");
        let header = write_records(&path, records(20_000)).unwrap();
        assert_eq!(header.records, 20_000);
        assert!(header.blocks > 100);
        for slots in [1, 3] {
            assert_eq!(
                read_all(&path, slots).unwrap(),
                records(20_000),
                "{slots} slots"
            );
        }
        let empty = dir.join("empty");
        write_records(&empty, Vec::<(u64, String)>::new()).unwrap();
        assert!(read_all(&empty, 2).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_cut_and_foreign_files_are_errors_naming_the_file() {
        let dir = dir("damage");
        let path = dir.join("records");
        write_records(&path, records(3_000)).unwrap();
        let good = std::fs::read(&path).unwrap();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "flipped",
                {
                    let mut bytes = good.clone();
                    bytes[RECORD_BLOCK_BYTES * 3 + 100] ^= 1;
                    bytes
                },
                "checksum",
            ),
            (
                "cut",
                good[..good.len() - RECORD_BLOCK_BYTES].to_vec(),
                "blocks",
            ),
            (
                "swapped",
                {
                    let mut bytes = good.clone();
                    let (a, b) = (RECORD_BLOCK_BYTES, 2 * RECORD_BLOCK_BYTES);
                    let first = bytes[a..b].to_vec();
                    bytes.copy_within(b..b + RECORD_BLOCK_BYTES, a);
                    bytes[b..b + RECORD_BLOCK_BYTES].copy_from_slice(&first);
                    bytes
                },
                "out of its place",
            ),
            ("not a record file", b"hello".repeat(1000), "magic"),
        ];
        for (name, bytes, needle) in cases {
            let bad = dir.join(name);
            std::fs::write(&bad, bytes).unwrap();
            let error = read_all(&bad, 2).unwrap_err().to_string();
            assert!(
                error.contains(needle) && error.contains(name),
                "{name}: {error}"
            );
        }
        // A block of another file with the same records fails its checksum (its seed).
        let other = dir.join("other");
        write_records(&other, records(3_000)).unwrap();
        let mut mixed = good.clone();
        let theirs = std::fs::read(&other).unwrap();
        mixed[RECORD_BLOCK_BYTES..2 * RECORD_BLOCK_BYTES]
            .copy_from_slice(&theirs[RECORD_BLOCK_BYTES..2 * RECORD_BLOCK_BYTES]);
        let foreign = dir.join("foreign");
        std::fs::write(&foreign, mixed).unwrap();
        let error = read_all(&foreign, 1).unwrap_err().to_string();
        assert!(error.contains("checksum"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_limit_stops_the_reading() {
        let dir = dir("limit");
        let path = dir.join("records");
        write_records(&path, records(50_000)).unwrap();
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&read);
        let flow = Dataflow::new();
        let first = flow
            .read_records::<(u64, String)>(&path)
            .map(move |record| {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                record
            })
            .limit(3)
            .collect();
        let config = Config {
            workers: 1,
            slots: 1,
            memory: 16 << 20,
            ..Config::default()
        };
        runtime::execute(&flow, &config, None).unwrap();
        assert_eq!(first.take().len(), 3);
        // One read of the task's segments (8 × 32 KiB = 64 blocks), not the whole file.
        let read = read.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read < 10_000, "{read} records read");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_larger_than_a_block_is_refused_and_nothing_is_left() {
        let dir = dir("large");
        let path = dir.join("records");
        let error = write_records(&path, [(1u64, "y".repeat(5000))])
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not fit"), "{error}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
