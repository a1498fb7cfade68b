//! The limits of the root crate's jobs, named in one place.

use weir_kernel::constants::SEGMENT_SIZE_MIN;

use crate::tpch::ROW_BYTES_MAX;

/// Segments a table scan fills with one vectored read: 16 segments of the default 32 KiB
/// are 512 KiB per system call, large enough that the read costs little beside the copy.
pub const SCAN_READ_SEGMENTS: usize = 16;

/// Bytes read to decode a table file's header: the header is 8 + 4 + 1 + 8 + 8 + 8 bytes
/// and a table name.
pub const SCAN_HEADER_BYTES_MAX: usize = 64;

/// With `--output`, W2a sorts its groups by key with an external sorter that takes
/// `1 / W2_OUTPUT_SORT_SHARE_INVERSE` of the budget (at least the sorter's minimum); the
/// aggregation keeps the rest.
pub const W2_OUTPUT_SORT_SHARE_INVERSE: usize = 4;

/// W2a hands rows to the aggregation this many at a time (`HashAggregate::push_batch`,
/// which prefetches their buckets): a few kernel batches, on the stack of the scan.
pub const W2_PUSH_BATCH_ROWS: usize = 64;

const _: () = assert!(ROW_BYTES_MAX < SEGMENT_SIZE_MIN);
