//! Sends, credits, flushes, events and recycles on one credit-based channel in an
//! arbitrary order; see `weir_netstack::fuzz::credit_protocol`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_netstack::fuzz::credit_protocol(data));
