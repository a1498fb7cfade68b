//! The memory manager under concurrency: random allocate / reserve / release sequences from
//! several threads never exceed the budget, and every segment comes home.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use weir_kernel::memory::{MemoryConfig, MemoryManager, MemorySegment, Reservation};

const SEGMENT_SIZE: usize = 4096;
const BUDGET_SEGMENTS: usize = 32;

#[derive(Debug, Clone)]
enum Step {
    Allocate(usize),
    Reserve(usize),
    ReserveBytes(usize),
    TakeFromReservation,
    ReleaseSome(usize),
    ReleaseReservation,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1..6usize).prop_map(Step::Allocate),
        1 => (1..4usize).prop_map(Step::Reserve),
        1 => (1..10_000usize).prop_map(Step::ReserveBytes),
        2 => Just(Step::TakeFromReservation),
        3 => (1..8usize).prop_map(Step::ReleaseSome),
        1 => Just(Step::ReleaseReservation),
    ]
}

/// Runs one thread's steps; every grant is checked against the budget as it happens.
fn run(manager: &MemoryManager, name: String, steps: &[Step], over_budget: &AtomicBool) {
    let owner = manager.owner(name);
    let mut held: Vec<MemorySegment> = Vec::new();
    let mut reservations: Vec<Reservation> = Vec::new();
    for step in steps {
        match step {
            Step::Allocate(n) => {
                if let Ok(segments) = owner.allocate(*n) {
                    assert_eq!(segments.len(), *n);
                    held.extend(segments);
                }
            }
            Step::Reserve(n) => reservations.extend(owner.reserve(*n).ok()),
            Step::ReserveBytes(n) => reservations.extend(owner.reserve_bytes(*n).ok()),
            Step::TakeFromReservation => {
                if let Some(reservation) = reservations.last_mut() {
                    held.extend(reservation.allocate_one().ok());
                }
            }
            Step::ReleaseSome(n) => {
                let keep = held.len().saturating_sub(*n);
                held.truncate(keep);
            }
            Step::ReleaseReservation => drop(reservations.pop()),
        }
        let stats = manager.stats();
        if stats.used_bytes > stats.budget_bytes || stats.segments_in_use > BUDGET_SEGMENTS {
            over_budget.store(true, Ordering::Relaxed);
        }
        // Every segment a thread holds is distinct memory.
        let mut indexes: Vec<u32> = held.iter().map(|s| s.index().0).collect();
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), held.len(), "a segment was handed out twice");
    }
    drop(held);
    drop(reservations);
    manager.release_all(&owner).unwrap();
}

proptest! {
    #![proptest_config(Config {
        cases: 64,
        rng_seed: RngSeed::Fixed(0x5eed_0002),
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn concurrent_sequences_stay_within_budget(
        threads in prop::collection::vec(prop::collection::vec(step(), 1..80), 2..5)
    ) {
        let manager = Arc::new(MemoryManager::new(MemoryConfig {
            segment_size: SEGMENT_SIZE,
            ..MemoryConfig::with_budget(BUDGET_SEGMENTS * SEGMENT_SIZE)
        }).unwrap());
        let over_budget = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for (i, steps) in threads.iter().enumerate() {
                let manager = &manager;
                let over_budget = &over_budget;
                scope.spawn(move || run(manager, format!("task[{i}]"), steps, over_budget));
            }
        });
        prop_assert!(!over_budget.load(Ordering::Relaxed));
        let stats = manager.stats();
        prop_assert_eq!(stats.used_bytes, 0);
        prop_assert_eq!(stats.segments_in_use, 0);
        prop_assert!(stats.peak_bytes <= stats.budget_bytes);
        manager.leak_check().unwrap();
    }
}

#[test]
fn contended_allocation_hands_out_every_segment_exactly_once() {
    let manager = MemoryManager::new(MemoryConfig {
        segment_size: SEGMENT_SIZE,
        ..MemoryConfig::with_budget(BUDGET_SEGMENTS * SEGMENT_SIZE)
    })
    .unwrap();
    for round in 0..50 {
        let grabbed: Vec<Vec<MemorySegment>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let owner = manager.owner(format!("grab[{round}/{t}]"));
                    scope.spawn(move || {
                        let mut mine = Vec::new();
                        while let Ok(segment) = owner.allocate_one() {
                            mine.push(segment);
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut indexes: Vec<u32> = grabbed.iter().flatten().map(|s| s.index().0).collect();
        assert_eq!(indexes.len(), BUDGET_SEGMENTS, "round {round}");
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(
            indexes.len(),
            BUDGET_SEGMENTS,
            "round {round}: duplicate segment"
        );
    }
    manager.leak_check().unwrap();
}
