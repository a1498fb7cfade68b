//! Hash join benchmarks: `hash_join_build_probe`, W3-shaped (orders ⋈ lineitem on the
//! order key): 50 000 orders built (8-byte big-endian key, 16-byte record), 200 000 lines
//! probed (8-byte key, 24-byte record, about four lines per order), every row consumed.
//! `in_memory` has room for the whole build side; `spilling` has a table of about 1 MiB
//! for its 2.4 MiB, so six of its ten partitions spill, their probe records go to disk and
//! are joined again a level down.
//! `std_hashmap` is the peer baseline: the same join through a `std` `HashMap`.
//!
//! Run: `cargo bench --bench hash_join`.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::kernel::hash::{HashJoin, JoinConfig, JoinType};
use weir::kernel::memory::MemoryManager;
use weir::kernel::spill::{SpillConfig, SpillStore, open_store};

const ORDERS: u64 = 50_000;
const LINES: u64 = 200_000;
const SEGMENT_SIZE: usize = 32 * 1024;

/// splitmix64, to draw order keys for lines with a fixed seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An order: its key and a 16-byte record.
type Order = ([u8; 8], [u8; 16]);

/// A line: its order's key and a 24-byte record.
type Line = ([u8; 8], [u8; 24]);

/// Orders, then lines pointing at random orders.
fn inputs() -> (Vec<Order>, Vec<Line>) {
    let orders = (0..ORDERS)
        .map(|order| {
            let mut record = [0; 16];
            record[..8].copy_from_slice(&mix(order).to_le_bytes());
            (order.to_be_bytes(), record)
        })
        .collect();
    let lines = (0..LINES)
        .map(|line| {
            let order = mix(line ^ 0xABCD) % ORDERS;
            let mut record = [0; 24];
            record[..8].copy_from_slice(&line.to_le_bytes());
            (order.to_be_bytes(), record)
        })
        .collect();
    (orders, lines)
}

fn spill_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-bench-join-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench spill directory");
    dir
}

fn join_all(orders: &[Order], lines: &[Line], segments: usize, store: &Arc<dyn SpillStore>) -> u64 {
    let manager = MemoryManager::with_budget(segments * SEGMENT_SIZE).expect("manager");
    let owner = manager.owner("bench");
    let mut join = HashJoin::new(
        &owner,
        segments,
        Arc::clone(store),
        JoinType::Inner,
        JoinConfig::default(),
    )
    .expect("join");
    for (key, record) in orders {
        join.push_build(key, record).expect("build");
    }
    join.finish_build().expect("finish build");
    let mut checksum = 0u64;
    for (key, record) in lines {
        join.probe(key, record, |row| {
            checksum = checksum.wrapping_add(u64::from(row.probe.map_or(0, |r| r[0])));
            Ok(())
        })
        .expect("probe");
    }
    let mut stream = join.finish().expect("finish");
    while let Some(row) = stream.next().expect("next") {
        checksum = checksum.wrapping_add(u64::from(row.probe.map_or(0, |r| r[0])));
    }
    checksum
}

/// The peer baseline: the same inner join with a `std` `HashMap` of orders, all on the
/// heap, no budget, no spilling.
fn join_std(orders: &[Order], lines: &[Line]) -> u64 {
    let mut table: HashMap<[u8; 8], Vec<[u8; 16]>> = HashMap::with_capacity(orders.len());
    for (key, record) in orders {
        table.entry(*key).or_default().push(*record);
    }
    let mut checksum = 0u64;
    for (key, record) in lines {
        for _ in table.get(key).into_iter().flatten() {
            checksum = checksum.wrapping_add(u64::from(record[0]));
        }
    }
    checksum
}

fn hash_join_build_probe(c: &mut Criterion) {
    let (orders, lines) = inputs();
    let dir = spill_dir();
    let store = open_store(&SpillConfig {
        allow_memory_filesystem: true,
        ..SpillConfig::new(dir.clone())
    })
    .expect("spill store");
    let bytes = ORDERS * (8 + 16) + LINES * (8 + 24);
    let mut group = c.benchmark_group("hash_join_build_probe");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    // The build side takes about 2.4 MiB (records and buckets): 512 segments (16 MiB)
    // hold it; 72 segments (2.25 MiB, of which the table gets about 1 MiB) do not.
    for (name, segments) in [("in_memory", 512usize), ("spilling", 72)] {
        group.bench_function(BenchmarkId::new("w3_50k_200k", name), |b| {
            b.iter(|| black_box(join_all(&orders, &lines, segments, &store)))
        });
    }
    group.bench_function(BenchmarkId::new("w3_50k_200k", "std_hashmap"), |b| {
        b.iter(|| black_box(join_std(&orders, &lines)))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, hash_join_build_probe);
criterion_main!(benches);
