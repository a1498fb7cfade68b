//! Arbitrary build and probe records through the hybrid hash join, against a nested-loop
//! join; see `weir_kernel::fuzz::hash_join_vs_model`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_kernel::fuzz::hash_join_vs_model(data);
});
