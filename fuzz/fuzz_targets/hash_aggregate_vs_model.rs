//! Arbitrary groups through the spilling hash aggregation, against a `BTreeMap`; see
//! `weir_kernel::fuzz::hash_aggregate_vs_model`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_kernel::fuzz::hash_aggregate_vs_model(data);
});
