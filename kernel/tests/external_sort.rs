//! The external sorter against `Vec::sort`: random keys, duplicates, all-equal,
//! presorted, reversed, variable lengths and records larger than the buffer, at budgets
//! from the minimum up; multi-pass merges forced by a small fan-in; both I/O backends;
//! and a failing write or read at every position. Every test ends with every segment home
//! and no spill file left.

mod common;

use common::manager;

use std::path::Path;
use std::sync::Arc;

use common::{Rng, SpillDir};

use weir_kernel::memory::Owner;
use weir_kernel::sort::{ExternalSorter, SortConfig, SortStats};
use weir_kernel::spill::{FaultyStore, IoBackend, SpillConfig, SpillStore, open_store};

type Pair = (Vec<u8>, Vec<u8>);

fn store(dir: &Path, backend: IoBackend) -> Arc<dyn SpillStore> {
    store_with(dir, backend, None)
}

/// A store whose compressing writers take their LZ4 buffers from `scratch`.
fn store_with(dir: &Path, backend: IoBackend, scratch: Option<Owner>) -> Arc<dyn SpillStore> {
    let mut config = SpillConfig::new(dir.to_path_buf());
    config.allow_memory_filesystem = true;
    config.backend = Some(backend);
    config.scratch = scratch;
    open_store(&config).unwrap()
}

/// Sorts `input` with a sorter of `segments` segments and checks it against the model.
fn check_sort(name: &str, input: &[Pair], segments: usize, config: SortConfig) -> SortStats {
    let dir = SpillDir::new(name);
    let mut stats = SortStats::default();
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        let manager = manager(segments + 8);
        let owner = manager.owner("sort");
        // Compressing writers take their output buffers from the same budget.
        let store = store_with(dir.path(), backend, Some(manager.owner("spill/lz4")));
        let mut sorter = ExternalSorter::new(&owner, segments, store, config).unwrap();
        for (key, record) in input {
            sorter.push(key, record).unwrap();
        }
        let mut stream = sorter.finish().unwrap();
        let mut output: Vec<Pair> = Vec::with_capacity(input.len());
        while let Some((key, record)) = stream.next().unwrap() {
            output.push((key.to_vec(), record.to_vec()));
        }
        stats = stream.stats();
        drop(stream);
        assert!(
            output.windows(2).all(|w| w[0].0 <= w[1].0),
            "{name}/{backend}: output out of key order"
        );
        let mut expected = input.to_vec();
        expected.sort();
        output.sort();
        assert!(
            output == expected,
            "{name}/{backend}: output is not a permutation of the input"
        );
        manager.leak_check().unwrap();
        dir.assert_empty();
    }
    stats
}

fn random(rng: &mut Rng, n: usize, key_len: usize, record_len: usize, alphabet: u64) -> Vec<Pair> {
    (0..n)
        .map(|_| (rng.bytes(key_len, alphabet), rng.bytes(record_len, 256)))
        .collect()
}

const MIN: usize = 16;

#[test]
fn random_keys_at_every_budget() {
    let mut rng = Rng(1);
    let input = random(&mut rng, 20_000, 10, 90, 256);
    for segments in [MIN, 40, 200, 2000] {
        let stats = check_sort(
            &format!("random-{segments}"),
            &input,
            segments,
            SortConfig::default(),
        );
        if segments == 2000 {
            assert_eq!(stats.runs, 0, "fits in memory");
        } else {
            assert!(stats.runs > 1, "spills at {segments} segments: {stats:?}");
        }
    }
}

#[test]
fn duplicates_and_all_equal() {
    let mut rng = Rng(2);
    check_sort(
        "dups",
        &random(&mut rng, 10_000, 3, 20, 4),
        24,
        SortConfig::default(),
    );
    let equal: Vec<Pair> = (0..8000u32)
        .map(|i| (b"same".to_vec(), i.to_le_bytes().to_vec()))
        .collect();
    check_sort("equal", &equal, MIN, SortConfig::default());
}

#[test]
fn presorted_and_reversed() {
    let ascending: Vec<Pair> = (0..15_000u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![7; 30]))
        .collect();
    check_sort("ascending", &ascending, 30, SortConfig::default());
    let descending: Vec<Pair> = ascending.iter().rev().cloned().collect();
    check_sort("descending", &descending, 30, SortConfig::default());
}

#[test]
fn variable_lengths_and_long_keys() {
    let mut rng = Rng(3);
    let input: Vec<Pair> = (0..6000)
        .map(|_| {
            let key_len = rng.below(40);
            let record_len = rng.below(700);
            (rng.bytes(key_len, 3), rng.bytes(record_len, 256))
        })
        .collect();
    check_sort("variable", &input, 24, SortConfig::default());
}

#[test]
fn records_larger_than_the_buffer() {
    let mut rng = Rng(4);
    let mut input = random(&mut rng, 2000, 8, 50, 256);
    for i in 0..5 {
        input.insert(
            i * 300,
            (rng.bytes(8, 256), rng.bytes(200_000 + i * 1000, 256)),
        );
    }
    let stats = check_sort("large", &input, MIN, SortConfig::default());
    assert!(
        stats.runs >= 5,
        "each giant record is a run of its own: {stats:?}"
    );
}

#[test]
fn small_fan_in_forces_merge_passes() {
    let mut rng = Rng(5);
    let input = random(&mut rng, 20_000, 10, 90, 256);
    let config = SortConfig {
        fan_in_max: 2,
        ..SortConfig::default()
    };
    let stats = check_sort("fan-in-2", &input, MIN, config);
    assert!(stats.merge_passes > 2, "{stats:?}");
    let config = SortConfig {
        fan_in_max: 3,
        ..SortConfig::default()
    };
    let stats = check_sort("fan-in-3", &input, MIN, config);
    assert!(stats.merge_runs > 0, "{stats:?}");
}

#[test]
fn compressed_runs() {
    let mut rng = Rng(6);
    let input = random(&mut rng, 10_000, 10, 90, 4);
    let config = SortConfig {
        compress: true,
        ..SortConfig::default()
    };
    check_sort("lz4", &input, 24, config);
}

#[test]
fn empty_input() {
    check_sort("empty", &[], MIN, SortConfig::default());
}

#[test]
fn too_little_memory_is_a_config_error() {
    let manager = manager(64);
    let dir = SpillDir::new("tiny");
    let error = ExternalSorter::new(
        &manager.owner("sort"),
        4,
        store(dir.path(), IoBackend::Sync),
        SortConfig::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("sort memory"), "{error}");
    manager.leak_check().unwrap();
}

/// Runs a small spilling sort on a store that fails its `n`th write or read.
fn sort_with_fault(
    dir: &Path,
    input: &[Pair],
    backend: IoBackend,
    fail_write: Option<u64>,
    fail_read: Option<u64>,
) -> bool {
    let manager = manager(MIN);
    let owner = manager.owner("sort");
    let faulty: Arc<dyn SpillStore> =
        Arc::new(FaultyStore::new(store(dir, backend), fail_write, fail_read));
    let result = (|| {
        let mut sorter = ExternalSorter::new(
            &owner,
            MIN,
            faulty,
            SortConfig {
                fan_in_max: 2,
                ..SortConfig::default()
            },
        )?;
        for (key, record) in input {
            sorter.push(key, record)?;
        }
        let mut stream = sorter.finish()?;
        let mut count = 0;
        while stream.next()?.is_some() {
            count += 1;
        }
        assert_eq!(count, input.len());
        Ok::<(), weir_kernel::KernelError>(())
    })();
    manager.leak_check().unwrap();
    let left = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(left, 0, "spill files left after a fault");
    result.is_err()
}

#[test]
fn a_failing_write_or_read_at_every_position_is_an_error() {
    let mut rng = Rng(7);
    let input = random(&mut rng, 3000, 10, 90, 256);
    let dir = SpillDir::new("faults");
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        let mut failures = 0;
        for n in 1.. {
            if !sort_with_fault(dir.path(), &input, backend, Some(n), None) {
                break;
            }
            failures += 1;
        }
        assert!(
            failures > 10,
            "{backend}: the sort wrote only {failures} blocks"
        );
        let mut failures = 0;
        for n in 1.. {
            if !sort_with_fault(dir.path(), &input, backend, None, Some(n)) {
                break;
            }
            failures += 1;
        }
        assert!(
            failures > 10,
            "{backend}: the sort read only {failures} blocks"
        );
    }
}
