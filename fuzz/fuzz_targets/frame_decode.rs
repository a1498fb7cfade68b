//! Arbitrary bytes into the wire protocol's frame decoder; see
//! `weir_netstack::fuzz::frame_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_netstack::fuzz::frame_decode(data));
