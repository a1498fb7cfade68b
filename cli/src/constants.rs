//! The limits of the TPC-H tables and the benchmark workloads, named in one place.

use weir_kernel::constants::SEGMENT_SIZE_MIN;

use crate::tpch::ROW_BYTES_MAX;

/// Bytes of each block of a table file (format version 2), header block included: the
/// smallest segment size, so whatever `--segment-size` a job runs with, a scan's segments
/// hold whole blocks and a row never has to be put together from two segments.
pub const TABLE_BLOCK_BYTES: usize = SEGMENT_SIZE_MIN;

/// Data blocks of a chunk (1 MiB): the unit a scan splits a table file by, with row count
/// and column totals of its own in the manifest, so that each task of a scan checks the
/// rows it read against totals independent of the bytes.
pub const TABLE_CHUNK_BLOCKS: u64 = 256;

/// Bytes of a data block's header: block index, payload bytes and rows, a `u32` each.
pub const TABLE_BLOCK_HEADER_BYTES: usize = 12;

/// Bytes of the CRC-32 that ends every block of a table file.
pub const TABLE_BLOCK_CRC_BYTES: usize = 4;

/// The file in a table directory that `weir gen tpch` writes last: what it generated
/// (format version, scale, each table's size, rows and totals). A directory holding it is
/// weir's; weir deletes or replaces only the files it lists.
pub const TABLES_MANIFEST: &str = "weir-tables.manifest";

/// Bytes of table files per unit of scale factor, rounded up: at SF 1 the eight tables
/// take 1,075 MB (lineitem 732, orders 165, partsupp 126, customer 26, part 25, supplier
/// 1.5), block headers and padding included. `weir gen tpch` refuses to start without
/// this much free space.
pub const TABLE_BYTES_PER_SCALE: u64 = 1_100_000_000;

/// Bytes of table files at any scale beyond the rows: each file's header block and a
/// partly filled last block, with room to spare.
pub const TABLE_BYTES_FIXED: u64 = 1 << 20;

/// Segments a table scan fills with one vectored read: 16 segments of the default 32 KiB
/// are 512 KiB per system call, large enough that the read costs little beside the copy.
pub const SCAN_READ_SEGMENTS: usize = 16;

const _: () = assert!(ROW_BYTES_MAX < SEGMENT_SIZE_MIN);
// A block holds at least two of the longest rows beside its header and checksum.
const _: () = assert!(
    2 * ROW_BYTES_MAX + TABLE_BLOCK_HEADER_BYTES + TABLE_BLOCK_CRC_BYTES <= TABLE_BLOCK_BYTES
);

/// W3's validation sends the order keys from the thread that scans `orders` to the merge
/// in batches of this many keys (32 KiB of `i64`s), so the channel costs little per key.
pub const W3_VERIFY_BATCH_KEYS: usize = 4096;

/// Batches in flight between the two scans of W3's validation: the bound that keeps the
/// `orders` scan from running ahead of the merge.
pub const W3_VERIFY_BATCHES_IN_FLIGHT: usize = 4;
