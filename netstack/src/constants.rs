//! Every limit of the network stack, named in one place, with the relationships between
//! them checked at compile time.

use weir_kernel::constants::SEGMENT_SIZE_MAX;

/// The bit of a buffer builder's position word that says the writer has finished. The
/// committed byte position lives in the bits below it, so committing bytes and finishing
/// are each one atomic store of one `u32`.
pub const BUFFER_POSITION_FINISHED_BIT: u32 = 1 << 31;

/// The largest committed position a buffer builder's position word can hold.
pub const BUFFER_POSITION_MAX: u32 = BUFFER_POSITION_FINISHED_BIT - 1;

// Every segment a manager can hand out fits the position word, so a committed position is
// never confused with the finished bit.
const _: () = assert!(SEGMENT_SIZE_MAX as u64 <= BUFFER_POSITION_MAX as u64);
const _: () = assert!(BUFFER_POSITION_FINISHED_BIT & BUFFER_POSITION_MAX == 0);
