//! LZ4 per block: a payload is compressed in place in its segment, and decompressed from
//! one lent segment into another.
//!
//! ```text
//!   write: segment[hdr | payload........] ──compress──▶ output buffer ──copy back──▶
//!          segment[hdr | lz4....] (only when smaller; the segment goes to disk as it is)
//!   read:  segment A[hdr | lz4....] ──decompress──▶ segment B[hdr | payload........]
//! ```
//!
//! lz4_flex's block encoder needs an output of its worst-case size (110% of the input plus
//! 20 bytes), which is more than a segment when the payload fills one. So each compressing
//! writer owns one output buffer of that size, charged to the memory budget as a byte
//! reservation of the store's scratch owner, and copies the compressed bytes back over the
//! payload they replace. The extra copy moves the compressed bytes only; in exchange the
//! caller's segment is what goes to disk, and no segment is needed beyond the ones in
//! flight. Decoding needs no buffer: it writes straight into a second lent segment.

use lz4_flex::block::{compress_into, decompress_into, get_maximum_output_size};

use crate::constants::SPILL_BLOCK_HEADER_SIZE;
use crate::error::Result;
use crate::memory::{MemorySegment, Owner, Reservation};

/// A writer's LZ4 output buffer, in the memory budget.
///
/// Invariant: `reservation` holds at least `output.len()` bytes.
#[derive(Debug)]
pub(super) struct Compressor {
    output: Vec<u8>,
    reservation: Reservation,
}

impl Compressor {
    /// A compressor whose buffer will be charged to `owner`.
    pub(super) fn new(owner: &Owner) -> Compressor {
        Compressor {
            output: Vec::new(),
            reservation: owner.empty_reservation(),
        }
    }

    /// Compresses the `payload_len` bytes after the header of `segment` in place. Returns
    /// the compressed length, or `None` (the segment untouched) when LZ4 would not make
    /// the payload smaller.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`](crate::KernelError::BudgetExceeded) when the budget
    /// cannot hold the output buffer (once per writer and segment size).
    pub(super) fn compress(
        &mut self,
        segment: &mut MemorySegment,
        payload_len: usize,
    ) -> Result<Option<usize>> {
        self.reserve(get_maximum_output_size(payload_len))?;
        let payload = segment.bytes(SPILL_BLOCK_HEADER_SIZE, payload_len);
        let compressed = compress_into(payload, &mut self.output)
            .expect("the output buffer has lz4's worst-case size");
        if compressed >= payload_len {
            return Ok(None);
        }
        segment.put_bytes(SPILL_BLOCK_HEADER_SIZE, &self.output[..compressed]);
        Ok(Some(compressed))
    }

    /// Grows the buffer to `bytes`, reserving the budget first.
    fn reserve(&mut self, bytes: usize) -> Result<()> {
        if self.output.len() < bytes {
            let more = bytes - self.reservation.size_bytes();
            self.reservation.try_grow_bytes(more)?;
            self.output.resize(bytes, 0);
        }
        Ok(())
    }
}

/// Decompresses the `stored_len` LZ4 bytes after the header of `source` into `target`
/// after its header. Returns the decompressed length, or the decoder's complaint.
pub(super) fn decompress(
    source: &MemorySegment,
    stored_len: usize,
    target: &mut MemorySegment,
    payload_len: usize,
) -> std::result::Result<usize, String> {
    if SPILL_BLOCK_HEADER_SIZE + payload_len > target.size() {
        return Err(format!(
            "payload length {payload_len} exceeds a segment of {}",
            target.size()
        ));
    }
    let input = source.bytes(SPILL_BLOCK_HEADER_SIZE, stored_len);
    let output = target.bytes_mut(SPILL_BLOCK_HEADER_SIZE, payload_len);
    decompress_into(input, output).map_err(|error| format!("lz4: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryConfig, MemoryManager};

    #[test]
    fn compresses_in_place_and_decompresses_into_another_segment() {
        let manager = MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            ..MemoryConfig::with_budget(4 * 4096 + 8192)
        })
        .unwrap();
        let owner = manager.owner("lz4");
        let mut segments = owner.allocate(2).unwrap();
        let (mut target, mut source) = (segments.pop().unwrap(), segments.pop().unwrap());
        let payload: Vec<u8> = (0..4064).map(|i| b"abcdefgh"[i % 8]).collect();
        source.put_bytes(SPILL_BLOCK_HEADER_SIZE, &payload);
        let mut compressor = Compressor::new(&owner);
        let stored = compressor.compress(&mut source, 4064).unwrap().unwrap();
        assert!(stored < 200, "repetitive bytes compress: {stored}");
        assert!(owner.reserved_bytes() >= get_maximum_output_size(4064));
        let n = decompress(&source, stored, &mut target, 4064).unwrap();
        assert_eq!(n, 4064);
        assert_eq!(target.bytes(SPILL_BLOCK_HEADER_SIZE, 4064), &payload[..]);
        let error = decompress(&source, stored - 1, &mut target, 4064).unwrap_err();
        assert!(error.starts_with("lz4"), "{error}");
        drop((compressor, source, target));
        manager.leak_check().unwrap();
    }

    #[test]
    fn incompressible_payload_is_left_alone() {
        let manager = MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            ..MemoryConfig::with_budget(3 * 4096 + 8192)
        })
        .unwrap();
        let owner = manager.owner("lz4");
        let mut segment = owner.allocate_one().unwrap();
        let mut x = 0x1234_5678_9abc_def0_u64;
        for i in 0..4064 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            segment.put_u8(SPILL_BLOCK_HEADER_SIZE + i, x as u8);
        }
        let before = segment.as_slice().to_vec();
        let mut compressor = Compressor::new(&owner);
        assert_eq!(compressor.compress(&mut segment, 4064).unwrap(), None);
        assert_eq!(segment.as_slice(), &before[..]);
        drop((compressor, segment));
        manager.leak_check().unwrap();
    }

    #[test]
    fn no_budget_for_the_buffer_is_budget_exceeded() {
        let manager = MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            ..MemoryConfig::with_budget(4096)
        })
        .unwrap();
        let owner = manager.owner("lz4");
        let mut segment = owner.allocate_one().unwrap();
        let mut compressor = Compressor::new(&owner);
        let error = compressor.compress(&mut segment, 4064).unwrap_err();
        assert!(error.is_budget_exceeded(), "{error}");
        drop((compressor, segment));
        manager.leak_check().unwrap();
    }
}
