//! A spill run built from the input and damaged where it says, read back; see
//! `weir_kernel::fuzz::spill_block_read`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_kernel::fuzz::spill_block_read(data));
