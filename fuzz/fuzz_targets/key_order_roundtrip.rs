//! Key order and round trip of generated keys; see
//! `weir_serde_fmt::fuzz::key_order_roundtrip`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_serde_fmt::fuzz::key_order_roundtrip(data));
