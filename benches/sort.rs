//! Sort benchmarks: `in_memory_sort` (fill and sort a buffer), `external_sort` (push,
//! spill, merge and stream under a budget that forces runs), and `merge_fan_in` (the same
//! input split into more and more runs). W1-shaped records: a 10-byte random key in a
//! 100-byte record.
//!
//! Run: `cargo bench --bench sort`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::kernel::memory::MemoryManager;
use weir::kernel::sort::{ExternalSorter, InMemorySorter, SortConfig};
use weir::kernel::spill::{IoBackend, SpillConfig, SpillStore, open_store};

const RECORDS: u64 = 200_000;

/// Bytes of a record and of its key, as W1's (`weir gen sort-records`).
const RECORD_SIZE: usize = 100;
const KEY_SIZE: usize = 10;

/// Records with a 10-byte key from a splitmix64 sequence (seed 42) and a filler.
fn records() -> Vec<[u8; RECORD_SIZE]> {
    let mut state = 42u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..RECORDS)
        .map(|i| {
            let mut record = [b'A' + (i % 26) as u8; RECORD_SIZE];
            record[..8].copy_from_slice(&next().to_le_bytes());
            record[8..KEY_SIZE].copy_from_slice(&next().to_le_bytes()[..2]);
            record
        })
        .collect()
}

fn spill_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-bench-sort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench spill directory");
    dir
}

/// A store on `backend`; compressing writers take their LZ4 buffers from `scratch`.
fn store(
    dir: &std::path::Path,
    backend: IoBackend,
    scratch: weir::kernel::memory::Owner,
) -> Arc<dyn SpillStore> {
    let mut config = SpillConfig::new(dir.to_path_buf());
    config.allow_memory_filesystem = true;
    config.backend = Some(backend);
    config.scratch = Some(scratch);
    open_store(&config).expect("spill store")
}

fn in_memory_sort(c: &mut Criterion) {
    let input = records();
    let manager = MemoryManager::with_budget(64 << 20).expect("manager");
    let owner = manager.owner("bench");
    let mut group = c.benchmark_group("in_memory_sort");
    group.throughput(Throughput::Bytes(RECORDS * RECORD_SIZE as u64));
    group.bench_function("w1_200k", |b| {
        b.iter(|| {
            let mut sorter = InMemorySorter::new(owner.reserve(1500).expect("reserve"));
            for record in &input {
                assert!(sorter.push(&record[..KEY_SIZE], record).expect("push"));
            }
            sorter.sort();
            black_box(sorter.len())
        })
    });
    group.finish();
}

fn sort_all(
    input: &[[u8; RECORD_SIZE]],
    segments: usize,
    dir: &std::path::Path,
    backend: IoBackend,
    config: SortConfig,
) -> u64 {
    // Two segments beyond the sorter's for a compressing writer's LZ4 buffer.
    let manager = MemoryManager::with_budget((segments + 2) * 32 * 1024).expect("manager");
    let owner = manager.owner("bench");
    let store = store(dir, backend, manager.owner("bench/lz4"));
    let mut sorter = ExternalSorter::new(&owner, segments, store, config).expect("sorter");
    for record in input {
        sorter.push_keyed(record, KEY_SIZE).expect("push");
    }
    let mut stream = sorter.finish().expect("finish");
    let mut checksum = 0u64;
    while let Some((key, _)) = stream.next().expect("next") {
        checksum = checksum.wrapping_add(u64::from(key[0]));
    }
    checksum
}

fn external_sort(c: &mut Criterion) {
    let input = records();
    let dir = spill_dir();
    let mut group = c.benchmark_group("external_sort");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(RECORDS * RECORD_SIZE as u64));
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        for compress in [false, true] {
            let id = format!("{backend}/{}", if compress { "lz4" } else { "plain" });
            let config = SortConfig {
                compress,
                ..SortConfig::default()
            };
            // 4 MiB for 20 MB of records: about six runs.
            group.bench_function(BenchmarkId::new("w1_200k_4MiB", id), |b| {
                b.iter(|| sort_all(&input, 128, &dir, backend, config))
            });
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn merge_fan_in(c: &mut Criterion) {
    let input = records();
    let dir = spill_dir();
    let mut group = c.benchmark_group("merge_fan_in");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(RECORDS * RECORD_SIZE as u64));
    // Smaller buffers make more runs for the same input: about 3, 6, 12 and 24 runs.
    for segments in [256usize, 128, 64, 32] {
        group.bench_with_input(
            BenchmarkId::new("w1_200k_segments", segments),
            &segments,
            |b, &segments| {
                b.iter(|| {
                    sort_all(
                        &input,
                        segments,
                        &dir,
                        IoBackend::Sync,
                        SortConfig::default(),
                    )
                })
            },
        );
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, in_memory_sort, external_sort, merge_fan_in);
criterion_main!(benches);
