//! Hash aggregation benchmarks: `hash_aggregate`, W2a-shaped (GROUP BY an 8-byte key:
//! SUM of an `i64`, COUNT), 400 000 rows into 100 000 groups, pushed in batches of 64 as
//! the W2a driver does. `in_memory` has room for every group; `spilling` has a table of
//! about 1 MiB, so partitions spill and are re-aggregated a level down. `std_hashmap` is
//! the peer baseline: the same aggregation through a `std` `HashMap` on the heap.
//!
//! Run: `cargo bench --bench hash_aggregate`.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::kernel::hash::{AggregateConfig, Composite, Count, HashAggregate, SumI64};
use weir::kernel::memory::MemoryManager;
use weir::kernel::spill::{SpillConfig, SpillStore, open_store};

const ROWS: u64 = 400_000;
const GROUPS: u64 = 100_000;
const BATCH: usize = 64;
const SEGMENT_SIZE: usize = 32 * 1024;

/// splitmix64, to draw each row's group with a fixed seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rows: an 8-byte key and an 8-byte value (the `i64` to sum).
fn rows() -> Vec<([u8; 8], [u8; 8])> {
    (0..ROWS)
        .map(|row| {
            let group = mix(row) % GROUPS;
            (group.to_be_bytes(), (row as i64).to_le_bytes())
        })
        .collect()
}

fn spill_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-bench-agg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench spill directory");
    dir
}

fn aggregate(rows: &[([u8; 8], [u8; 8])], segments: usize, store: &Arc<dyn SpillStore>) -> u64 {
    let manager = MemoryManager::with_budget(segments * SEGMENT_SIZE).expect("manager");
    let owner = manager.owner("bench");
    let aggregator = Composite::new(vec![Box::new(SumI64 { offset: 0 }), Box::new(Count)]);
    let mut table = HashAggregate::new(
        &owner,
        segments,
        Arc::clone(store),
        Box::new(aggregator),
        AggregateConfig::default(),
    )
    .expect("aggregate");
    for batch in rows.chunks(BATCH) {
        table.push_batch(batch).expect("push");
    }
    let mut stream = table.finish().expect("finish");
    let mut checksum = 0u64;
    while let Some((key, acc)) = stream.next().expect("next") {
        checksum = checksum.wrapping_add(u64::from(key[7]) ^ u64::from(acc[0]));
    }
    checksum
}

/// The peer baseline: a `std` `HashMap` from key to (sum, count), no budget.
fn aggregate_std(rows: &[([u8; 8], [u8; 8])]) -> u64 {
    let mut groups: HashMap<[u8; 8], (i64, u64)> = HashMap::new();
    for (key, value) in rows {
        let entry = groups.entry(*key).or_default();
        entry.0 = entry.0.wrapping_add(i64::from_le_bytes(*value));
        entry.1 += 1;
    }
    groups.iter().fold(0u64, |sum, (key, (total, _))| {
        sum.wrapping_add(u64::from(key[7]) ^ (*total as u64 & 0xff))
    })
}

fn hash_aggregate(c: &mut Criterion) {
    let rows = rows();
    let dir = spill_dir();
    let store = open_store(&SpillConfig {
        allow_memory_filesystem: true,
        ..SpillConfig::new(dir.clone())
    })
    .expect("spill store");
    let mut group = c.benchmark_group("hash_aggregate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    // 100 000 groups take about 4 MiB of records and buckets: 512 segments (16 MiB) hold
    // them; 64 segments (2 MiB) do not.
    for (name, segments) in [("in_memory", 512usize), ("spilling", 64)] {
        group.bench_function(BenchmarkId::new("w2a_400k_100k", name), |b| {
            b.iter(|| black_box(aggregate(&rows, segments, &store)));
        });
    }
    group.bench_function(BenchmarkId::new("w2a_400k_100k", "std_hashmap"), |b| {
        b.iter(|| black_box(aggregate_std(&rows)));
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, hash_aggregate);
criterion_main!(benches);
