//! Arbitrary bytes into the record decoder; see `weir_serde_fmt::fuzz::record_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_serde_fmt::fuzz::record_decode(data));
