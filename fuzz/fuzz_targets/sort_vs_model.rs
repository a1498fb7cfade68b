//! Arbitrary records through the external sorter under a tiny budget, against
//! `Vec::sort`; see `weir_kernel::fuzz::sort_vs_model`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_kernel::fuzz::sort_vs_model(data);
});
