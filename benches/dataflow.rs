//! The operator layer through the public API, as users program it: a `Dataflow` built,
//! executed in this process on one task slot, its result collected — runtime start-up,
//! chains, exchanges and kernel operators included.
//!
//! - `aggregate/few_keys`: 1 M records into 4 groups of Q1-shaped sums (the typed group
//!   cache's case); `aggregate/runs`: 1 M records whose keys come in runs of four, 250 000
//!   groups (W2a's shape: the combiner forwards, the final table aggregates).
//!   `std_hashmap` is the peer baseline for both: the same sums in a `std` `HashMap`.
//! - `join/hash` and `join/broadcast`: 1 M probe records against 50 000 build records
//!   (every fourth probe matches), both sides exchanged by key or the build side
//!   broadcast; `std_hashmap` builds and probes a `HashMap`.
//!
//! Run: `cargo bench --bench dataflow`.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weir::config::Config;
use weir::dataflow::{Dataflow, execute};

const RECORDS: u64 = 1_000_000;
const BUILD: u64 = 50_000;

fn config() -> Config {
    Config {
        memory: 128 << 20,
        ..Config::default()
    }
}

/// A Q1-shaped record: two flag bytes and four sums.
fn few_keys(i: u64) -> ((u8, u8), [i64; 4]) {
    let v = i as i64;
    (((i % 2) as u8, (i / 2 % 2) as u8), [v, v * 3, v % 100, 1])
}

fn add(acc: &mut [i64; 4], other: [i64; 4]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a = a.wrapping_add(b);
    }
}

fn aggregate(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.bench_function("few_keys", |b| {
        b.iter(|| {
            let flow = Dataflow::new();
            let groups = flow
                .generate(RECORDS, few_keys)
                .key_by(|(key, _)| *key)
                .aggregate(|(_, sums)| *sums, add)
                .collect();
            execute(&flow, &config(), None).expect("the job runs");
            black_box(groups.take())
        });
    });
    group.bench_function("few_keys/std_hashmap", |b| {
        b.iter(|| {
            let mut groups: HashMap<(u8, u8), [i64; 4]> = HashMap::new();
            for i in 0..RECORDS {
                let (key, sums) = few_keys(i);
                add(groups.entry(key).or_default(), sums);
            }
            black_box(groups)
        });
    });
    group.bench_function("runs", |b| {
        b.iter(|| {
            let flow = Dataflow::new();
            let groups = flow
                .generate(RECORDS, |i| (i / 4, i as i64))
                .key_by(|(key, _)| *key)
                .aggregate(
                    |(_, value)| (*value, 1i64),
                    |acc, (sum, count)| {
                        acc.0 = acc.0.wrapping_add(sum);
                        acc.1 += count;
                    },
                )
                .count();
            execute(&flow, &config(), None).expect("the job runs");
            black_box(groups.take())
        });
    });
    group.bench_function("runs/std_hashmap", |b| {
        b.iter(|| {
            let mut groups: HashMap<u64, (i64, i64)> = HashMap::new();
            for i in 0..RECORDS {
                let group = groups.entry(i / 4).or_default();
                group.0 = group.0.wrapping_add(i as i64);
                group.1 += 1;
            }
            black_box(groups.len())
        });
    });
    group.finish();
}

fn join(c: &mut Criterion) {
    let mut group = c.benchmark_group("join");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    for broadcast in [false, true] {
        let name = if broadcast { "broadcast" } else { "hash" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let flow = Dataflow::new();
                let probe = flow
                    .generate(RECORDS, |i| (i * 7919 % (4 * BUILD), i))
                    .key_by(|(key, _)| *key);
                let build = flow.generate(BUILD, |i| (i, i * 2)).key_by(|(key, _)| *key);
                let joined = if broadcast {
                    probe.broadcast_join(build)
                } else {
                    probe.join(build)
                };
                let count = joined.count();
                execute(&flow, &config(), None).expect("the job runs");
                black_box(count.take())
            });
        });
    }
    group.bench_function("std_hashmap", |b| {
        b.iter(|| {
            let table: HashMap<u64, u64> = (0..BUILD).map(|i| (i, i * 2)).collect();
            let matches = (0..RECORDS)
                .filter(|i| table.contains_key(&(i * 7919 % (4 * BUILD))))
                .count();
            black_box(matches)
        });
    });
    group.finish();
}

criterion_group!(benches, aggregate, join);
criterion_main!(benches);
