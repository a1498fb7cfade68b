//! Resident memory stays within the budget: with a 64 MiB budget, allocating (and touching)
//! every segment until the budget refuses, then releasing them all, grows the process's
//! resident set by at most the budget plus a small constant.
//!
//! This file holds one test so that no other test shares the process while it measures.

use weir_kernel::memory::{MemoryConfig, MemoryManager, ReleasePolicy};
use weir_kernel::sys::resident_memory;

const BUDGET: usize = 64 << 20;
/// Allowance beyond the budget: owner and queue metadata, the test harness, page tables.
const SLACK: u64 = 8 << 20;

fn run(policy: ReleasePolicy) -> (u64, u64) {
    let before = resident_memory().expect("/proc/self/status").current_bytes;
    let manager = MemoryManager::new(MemoryConfig {
        release_policy: policy,
        ..MemoryConfig::with_budget(BUDGET)
    })
    .unwrap();
    let owner = manager.owner("rss-probe");
    let mut held = Vec::new();
    let error = loop {
        match owner.allocate_one() {
            Ok(mut segment) => {
                // Touch every page so it is resident.
                let size = segment.size();
                segment.fill(0, size, 0x5a);
                held.push(segment);
            }
            Err(error) => break error,
        }
    };
    assert!(error.is_budget_exceeded(), "{error}");
    assert_eq!(held.len() * manager.segment_size(), BUDGET);
    let full = resident_memory().unwrap().current_bytes;
    drop(held);
    manager.leak_check().unwrap();
    let released = resident_memory().unwrap().current_bytes;
    drop(manager);
    (full.saturating_sub(before), released.saturating_sub(before))
}

#[test]
fn rss_growth_stays_within_budget() {
    let (full, released) = run(ReleasePolicy::ReturnToOs);
    eprintln!("return-to-os: growth at full budget {full} bytes, after release {released} bytes");
    assert!(
        full <= BUDGET as u64 + SLACK,
        "rss grew {full} bytes for a {BUDGET} byte budget"
    );
    assert!(
        full >= BUDGET as u64 / 2,
        "the probe touched its segments ({full} bytes)"
    );
    assert!(
        released <= SLACK,
        "released pages went back to the OS ({released} bytes left)"
    );

    let (full, released) = run(ReleasePolicy::Reuse);
    eprintln!("reuse: growth at full budget {full} bytes, after release {released} bytes");
    assert!(
        full <= BUDGET as u64 + SLACK,
        "rss grew {full} bytes for a {BUDGET} byte budget"
    );
    // The arena is unmapped when the manager drops, so even Reuse gives its pages back then.
    let after_drop = resident_memory().unwrap().current_bytes;
    eprintln!("reuse: rss after dropping the manager {after_drop} bytes");
}
