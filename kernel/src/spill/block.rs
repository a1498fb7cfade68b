//! The spill block header: what a block says about itself, and how a reader checks it.
//!
//! ```text
//!   0      4   5   6      8          12          16         20         24            32
//!   ┌──────┬───┬───┬──────┬──────────┬───────────┬──────────┬──────────┬─────────────┐
//!   │magic │ver│flg│ zero │stored_len│payload_len│ sequence │ checksum │   run_id    │
//!   └──────┴───┴───┴──────┴──────────┴───────────┴──────────┴──────────┴─────────────┘
//!   then `stored_len` payload bytes (LZ4 block when flag bit 0), zero padding to 4096
//! ```
//!
//! Every field is little-endian. The checksum is CRC-32 (IEEE) over the header with the
//! checksum field left out, then the stored payload, and the padding must be zeros, so a
//! flipped bit anywhere in a block is caught; the run id and sequence number catch a block that is intact
//! but in the wrong place (a stale block, another run's block). The byte-exact table is in
//! docs/FORMAT.md, "Spill block".

use std::path::Path;

use crate::constants::{SPILL_BLOCK_ALIGN, SPILL_BLOCK_HEADER_SIZE};
use crate::error::{KernelError, Result};
use crate::memory::MemorySegment;

/// `b"WSPB"`: weir spill block.
pub(super) const MAGIC: [u8; 4] = *b"WSPB";

/// The format version this code writes and reads.
pub(super) const VERSION: u8 = 1;

/// Flag bit 0: the stored payload is an LZ4 block.
pub(super) const FLAG_LZ4: u8 = 1;

/// Flags this version knows; any other bit set is corruption (or a newer writer).
const FLAGS_KNOWN: u8 = FLAG_LZ4;

const OFFSET_MAGIC: usize = 0;
const OFFSET_VERSION: usize = 4;
const OFFSET_FLAGS: usize = 5;
const OFFSET_RESERVED: usize = 6;
const OFFSET_STORED_LEN: usize = 8;
const OFFSET_PAYLOAD_LEN: usize = 12;
const OFFSET_SEQUENCE: usize = 16;
const OFFSET_CHECKSUM: usize = 20;
const OFFSET_RUN_ID: usize = 24;

const _: () = assert!(OFFSET_RUN_ID + 8 == SPILL_BLOCK_HEADER_SIZE);

/// The fields of a block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockHeader {
    /// [`FLAG_LZ4`] or nothing.
    pub(super) flags: u8,
    /// Payload bytes on disk, after the header.
    pub(super) stored_len: u32,
    /// Payload bytes once decompressed (equal to `stored_len` when not compressed).
    pub(super) payload_len: u32,
    /// The block's position in its run, from 0.
    pub(super) sequence: u32,
    /// The run the block belongs to.
    pub(super) run_id: u64,
}

/// Where a block is expected: what a reader knows before it looks at the bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlockPlace<'a> {
    /// The spill file, for error messages.
    pub(super) path: &'a Path,
    /// Byte offset of the block in the file.
    pub(super) offset: u64,
    /// The run the block must belong to.
    pub(super) run_id: u64,
    /// The sequence number the block must carry.
    pub(super) sequence: u32,
    /// Bytes the block occupies on disk, padding included.
    pub(super) disk_len: usize,
}

impl BlockPlace<'_> {
    /// A [`KernelError::CorruptSpill`] for this block.
    pub(super) fn corrupt(&self, what: String) -> KernelError {
        KernelError::CorruptSpill {
            path: self.path.to_path_buf(),
            offset: self.offset,
            what,
        }
    }
}

/// Bytes a block with `stored_len` payload bytes occupies on disk: header, payload and
/// zero padding to [`SPILL_BLOCK_ALIGN`], so every block starts and ends `O_DIRECT`-aligned.
pub(super) fn disk_len(stored_len: usize) -> usize {
    (SPILL_BLOCK_HEADER_SIZE + stored_len).next_multiple_of(SPILL_BLOCK_ALIGN)
}

impl BlockHeader {
    /// Whether the stored payload is LZ4-compressed.
    pub(super) fn is_compressed(&self) -> bool {
        self.flags & FLAG_LZ4 != 0
    }

    /// Writes the header into `segment[..SPILL_BLOCK_HEADER_SIZE]`, its checksum covering
    /// the `stored_len` payload bytes that follow, and zeroes the padding up to
    /// [`disk_len`]. Returns the block's disk length.
    ///
    /// # Panics
    ///
    /// When the block does not fit in the segment (a bug of the caller).
    pub(super) fn seal(&self, segment: &mut MemorySegment) -> usize {
        let stored = self.stored_len as usize;
        let disk = disk_len(stored);
        assert!(
            disk <= segment.size(),
            "block of {stored} stored bytes ({disk} on disk) exceeds its segment of {}",
            segment.size()
        );
        segment.put_bytes(OFFSET_MAGIC, &MAGIC);
        segment.put_u8(OFFSET_VERSION, VERSION);
        segment.put_u8(OFFSET_FLAGS, self.flags);
        segment.put_u16_le(OFFSET_RESERVED, 0);
        segment.put_u32_le(OFFSET_STORED_LEN, self.stored_len);
        segment.put_u32_le(OFFSET_PAYLOAD_LEN, self.payload_len);
        segment.put_u32_le(OFFSET_SEQUENCE, self.sequence);
        segment.put_u64_le(OFFSET_RUN_ID, self.run_id);
        let end = SPILL_BLOCK_HEADER_SIZE + stored;
        segment.fill(end, disk - end, 0);
        let checksum = checksum(segment.bytes(0, end));
        segment.put_u32_le(OFFSET_CHECKSUM, checksum);
        disk
    }

    /// Reads and checks the header of the block in `bytes` (the block as read from disk,
    /// at least its header), expected at `place`.
    ///
    /// # Errors
    ///
    /// [`KernelError::CorruptSpill`] naming the file and block offset when the magic,
    /// version, flags, reserved bytes, lengths, checksum, run id or sequence number is not
    /// what a block written there would carry.
    pub(super) fn verify(bytes: &[u8], place: &BlockPlace<'_>) -> Result<BlockHeader> {
        if bytes.len() < SPILL_BLOCK_HEADER_SIZE {
            return Err(place.corrupt(format!(
                "torn block: {} of {SPILL_BLOCK_HEADER_SIZE} header bytes",
                bytes.len()
            )));
        }
        let magic = &bytes[OFFSET_MAGIC..OFFSET_MAGIC + 4];
        if magic != MAGIC {
            return Err(place.corrupt(format!("bad magic {magic:02x?}, expected {MAGIC:02x?}")));
        }
        let version = bytes[OFFSET_VERSION];
        if version != VERSION {
            return Err(place.corrupt(format!("format version {version}, expected {VERSION}")));
        }
        let header = BlockHeader {
            flags: bytes[OFFSET_FLAGS],
            stored_len: u32_at(bytes, OFFSET_STORED_LEN),
            payload_len: u32_at(bytes, OFFSET_PAYLOAD_LEN),
            sequence: u32_at(bytes, OFFSET_SEQUENCE),
            run_id: u64::from_le_bytes(bytes[OFFSET_RUN_ID..OFFSET_RUN_ID + 8].try_into().unwrap()),
        };
        header.verify_fields(bytes, place)?;
        header.verify_checksum(bytes, place)?;
        header.verify_padding(bytes, place)?;
        header.verify_place(place)?;
        Ok(header)
    }

    /// The padding is zeros: with the checksum, every byte of a block on disk is checked.
    fn verify_padding(&self, bytes: &[u8], place: &BlockPlace<'_>) -> Result<()> {
        let end = SPILL_BLOCK_HEADER_SIZE + self.stored_len as usize;
        let padding = &bytes[end..place.disk_len.min(bytes.len())];
        match padding.iter().position(|&b| b != 0) {
            None => Ok(()),
            Some(i) => Err(place.corrupt(format!(
                "padding byte at block offset {} is {:#04x}, expected 0",
                end + i,
                padding[i]
            ))),
        }
    }

    fn verify_fields(&self, bytes: &[u8], place: &BlockPlace<'_>) -> Result<()> {
        if self.flags & !FLAGS_KNOWN != 0 {
            return Err(place.corrupt(format!("unknown flags {:#04x}", self.flags)));
        }
        let reserved = u16::from_le_bytes([bytes[OFFSET_RESERVED], bytes[OFFSET_RESERVED + 1]]);
        if reserved != 0 {
            return Err(place.corrupt(format!("reserved bytes hold {reserved:#06x}, expected 0")));
        }
        let (stored, payload) = (self.stored_len as usize, self.payload_len as usize);
        if disk_len(stored) != place.disk_len || SPILL_BLOCK_HEADER_SIZE + stored > bytes.len() {
            return Err(place.corrupt(format!(
                "stored length {stored} does not fit the block's {} bytes on disk",
                place.disk_len
            )));
        }
        let lengths_agree = if self.is_compressed() {
            stored < payload
        } else {
            stored == payload
        };
        if !lengths_agree {
            return Err(place.corrupt(format!(
                "stored length {stored} and payload length {payload} disagree (flags {:#04x})",
                self.flags
            )));
        }
        Ok(())
    }

    fn verify_checksum(&self, bytes: &[u8], place: &BlockPlace<'_>) -> Result<()> {
        let end = SPILL_BLOCK_HEADER_SIZE + self.stored_len as usize;
        let stored = u32_at(bytes, OFFSET_CHECKSUM);
        let computed = checksum(&bytes[..end]);
        if stored != computed {
            return Err(place.corrupt(format!(
                "checksum {stored:#010x} does not match the block's {computed:#010x}"
            )));
        }
        Ok(())
    }

    fn verify_place(&self, place: &BlockPlace<'_>) -> Result<()> {
        if self.run_id != place.run_id {
            return Err(place.corrupt(format!(
                "block of run {:#018x} in run {:#018x}",
                self.run_id, place.run_id
            )));
        }
        if self.sequence != place.sequence {
            return Err(place.corrupt(format!(
                "block number {} where block {} belongs",
                self.sequence, place.sequence
            )));
        }
        Ok(())
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

/// CRC-32 of a block (`bytes` = header and stored payload), skipping the checksum field.
fn checksum(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..OFFSET_CHECKSUM]);
    hasher.update(&bytes[OFFSET_CHECKSUM + 4..]);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryConfig, MemoryManager};

    fn manager() -> MemoryManager {
        MemoryManager::new(MemoryConfig {
            segment_size: 8192,
            ..MemoryConfig::with_budget(4 * 8192)
        })
        .unwrap()
    }

    fn place(disk_len: usize) -> BlockPlace<'static> {
        BlockPlace {
            path: Path::new("/spill/run-7"),
            offset: 12288,
            run_id: 0xABCD_0000_0000_0007,
            sequence: 3,
            disk_len,
        }
    }

    fn sealed(segment: &mut MemorySegment, stored: u32) -> usize {
        for i in 0..stored as usize {
            segment.put_u8(SPILL_BLOCK_HEADER_SIZE + i, (i * 7) as u8);
        }
        BlockHeader {
            flags: 0,
            stored_len: stored,
            payload_len: stored,
            sequence: 3,
            run_id: 0xABCD_0000_0000_0007,
        }
        .seal(segment)
    }

    #[test]
    fn seal_then_verify_round_trips_and_pads_with_zeros() {
        let manager = manager();
        let mut segment = manager.owner("t").allocate_one().unwrap();
        segment.fill(0, 8192, 0xEE);
        let disk = sealed(&mut segment, 5000);
        assert_eq!(disk, 8192);
        assert!(
            segment
                .bytes(32 + 5000, 8192 - 5032)
                .iter()
                .all(|&b| b == 0)
        );
        let header = BlockHeader::verify(segment.as_slice(), &place(disk)).unwrap();
        assert_eq!(
            (header.stored_len, header.payload_len, header.sequence),
            (5000, 5000, 3)
        );
        assert_eq!(disk_len(0), 4096);
        assert_eq!(disk_len(4064), 4096);
        assert_eq!(disk_len(4065), 8192);
        drop(segment);
        manager.leak_check().unwrap();
    }

    #[test]
    fn every_flipped_byte_is_corrupt_at_the_block_offset() {
        let manager = manager();
        let mut segment = manager.owner("t").allocate_one().unwrap();
        let disk = sealed(&mut segment, 100);
        let mut bytes = segment.bytes(0, disk).to_vec();
        for i in 0..disk {
            bytes[i] ^= 0x10;
            match BlockHeader::verify(&bytes, &place(disk)) {
                Err(KernelError::CorruptSpill { offset, path, .. }) => {
                    assert_eq!((offset, path.to_str().unwrap()), (12288, "/spill/run-7"));
                }
                other => panic!("byte {i} flipped: {other:?}"),
            }
            bytes[i] ^= 0x10;
        }
        let torn = BlockHeader::verify(&bytes[..20], &place(disk)).unwrap_err();
        assert!(torn.to_string().contains("torn block"), "{torn}");
        drop(segment);
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_block_in_the_wrong_place_names_what_is_wrong() {
        let manager = manager();
        let mut segment = manager.owner("t").allocate_one().unwrap();
        let disk = sealed(&mut segment, 10);
        let other_run = BlockPlace {
            run_id: 8,
            ..place(disk)
        };
        let error = BlockHeader::verify(segment.as_slice(), &other_run).unwrap_err();
        assert!(
            error.to_string().contains("in run 0x0000000000000008"),
            "{error}"
        );
        let other_slot = BlockPlace {
            sequence: 4,
            ..place(disk)
        };
        let error = BlockHeader::verify(segment.as_slice(), &other_slot).unwrap_err();
        assert!(
            error.to_string().contains("block number 3 where block 4"),
            "{error}"
        );
        drop(segment);
        manager.leak_check().unwrap();
    }

    /// The worked example of docs/FORMAT.md, "Spill block".
    #[test]
    fn format_doc_example() {
        let manager = manager();
        let mut segment = manager.owner("t").allocate_one().unwrap();
        segment.put_bytes(SPILL_BLOCK_HEADER_SIZE, b"hello, spill!");
        let header = BlockHeader {
            flags: 0,
            stored_len: 13,
            payload_len: 13,
            sequence: 2,
            run_id: 0x0000_3039_0000_0007,
        };
        assert_eq!(header.seal(&mut segment), 4096);
        let hex: Vec<String> = segment
            .bytes(0, 45)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let expected = "57 53 50 42 01 00 00 00 0d 00 00 00 0d 00 00 00 02 00 00 00 d7 1c 04 e6 \
                        07 00 00 00 39 30 00 00 68 65 6c 6c 6f 2c 20 73 70 69 6c 6c 21";
        assert_eq!(
            hex.join(" "),
            expected.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let doc = include_str!("../../../docs/FORMAT.md");
        assert!(
            doc.contains(&hex[..32].join(" ")),
            "docs/FORMAT.md shows the header bytes"
        );
        drop(segment);
        manager.leak_check().unwrap();
    }
}
