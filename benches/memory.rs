//! M1: memory micro-benchmarks. Segment get/put per primitive, segment-to-segment copy
//! against `copy_from_slice`, `compare` against slice `cmp`, the allocate + release pair of
//! the manager under both release policies, and paged view write/read throughput.
//!
//! Run: `cargo bench --bench memory`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::kernel::memory::{
    MemoryConfig, MemoryManager, PagedOutputView, ReleasePolicy, compare_bytes,
};

const SEGMENT: usize = 32 * 1024;

fn manager(policy: ReleasePolicy) -> MemoryManager {
    MemoryManager::new(MemoryConfig {
        release_policy: policy,
        ..MemoryConfig::with_budget(64 << 20)
    })
    .expect("64 MiB manager")
}

fn segment_get_put(c: &mut Criterion) {
    let manager = manager(ReleasePolicy::Reuse);
    let owner = manager.owner("bench");
    let mut segment = owner.allocate_one().unwrap();
    let mut plain = vec![0u8; SEGMENT];
    let mut group = c.benchmark_group("segment_get_put");
    group.throughput(Throughput::Bytes(SEGMENT as u64));
    macro_rules! primitive {
        ($ty:ty, $put:ident, $get:ident, $to:ident, $from:ident) => {
            let width = size_of::<$ty>();
            group.bench_function(concat!(stringify!($put), "/segment"), |b| {
                b.iter(|| {
                    for i in 0..SEGMENT / width {
                        segment.$put(i * width, black_box(i as $ty));
                    }
                })
            });
            group.bench_function(concat!(stringify!($put), "/slice"), |b| {
                b.iter(|| {
                    for (i, chunk) in plain.chunks_exact_mut(width).enumerate() {
                        chunk.copy_from_slice(&black_box(i as $ty).$to());
                    }
                })
            });
            group.bench_function(concat!(stringify!($get), "/segment"), |b| {
                b.iter(|| {
                    let mut sum = 0 as $ty;
                    for i in 0..SEGMENT / width {
                        sum = sum.wrapping_add(segment.$get(i * width));
                    }
                    black_box(sum)
                })
            });
            group.bench_function(concat!(stringify!($get), "/slice"), |b| {
                b.iter(|| {
                    let mut sum = 0 as $ty;
                    for chunk in plain.chunks_exact(width) {
                        sum = sum.wrapping_add(<$ty>::$from(chunk.try_into().unwrap()));
                    }
                    black_box(sum)
                })
            });
        };
    }
    primitive!(u8, put_u8, get_u8, to_le_bytes, from_le_bytes);
    primitive!(u16, put_u16_le, get_u16_le, to_le_bytes, from_le_bytes);
    primitive!(u32, put_u32_be, get_u32_be, to_be_bytes, from_be_bytes);
    primitive!(u64, put_u64_le, get_u64_le, to_le_bytes, from_le_bytes);
    primitive!(u64, put_u64_be, get_u64_be, to_be_bytes, from_be_bytes);
    group.finish();
}

fn segment_copy(c: &mut Criterion) {
    let manager = manager(ReleasePolicy::Reuse);
    let owner = manager.owner("bench");
    let mut source = owner.allocate_one().unwrap();
    source.fill(0, SEGMENT, 0x5a);
    let mut target = owner.allocate_one().unwrap();
    let plain_source = vec![0x5au8; SEGMENT];
    let mut plain_target = vec![0u8; SEGMENT];
    let mut group = c.benchmark_group("segment_copy");
    group.throughput(Throughput::Bytes(SEGMENT as u64));
    group.bench_function("copy_to/32KiB", |b| {
        b.iter(|| source.copy_to(0, black_box(&mut target), 0, SEGMENT))
    });
    group.bench_function("copy_from_slice/32KiB", |b| {
        b.iter(|| black_box(&mut plain_target[..]).copy_from_slice(&plain_source))
    });
    group.finish();
}

fn segment_compare(c: &mut Criterion) {
    let manager = manager(ReleasePolicy::Reuse);
    let owner = manager.owner("bench");
    let mut left = owner.allocate_one().unwrap();
    let mut right = owner.allocate_one().unwrap();
    // Equal bytes except the very last, so every comparison reads the whole range.
    left.fill(0, SEGMENT, 7);
    right.fill(0, SEGMENT, 7);
    let mut group = c.benchmark_group("segment_compare");
    for len in [8usize, 16, 32, 100, 1024] {
        right.put_u8(len - 1, 8);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("compare", len), &len, |b, &len| {
            b.iter(|| left.compare(black_box(&right), 0, 0, len))
        });
        group.bench_with_input(BenchmarkId::new("slice_cmp", len), &len, |b, &len| {
            b.iter(|| black_box(left.bytes(0, len)).cmp(black_box(right.bytes(0, len))))
        });
        group.bench_with_input(BenchmarkId::new("compare_bytes", len), &len, |b, &len| {
            b.iter(|| {
                compare_bytes(
                    black_box(left.bytes(0, len)),
                    black_box(right.bytes(0, len)),
                )
            })
        });
        right.put_u8(len - 1, 7);
    }
    group.finish();
}

fn manager_allocate_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("manager_allocate_release");
    for (name, policy) in [
        ("reuse", ReleasePolicy::Reuse),
        ("return_to_os", ReleasePolicy::ReturnToOs),
    ] {
        let manager = manager(policy);
        let owner = manager.owner("bench");
        // Keep some segments out so the free queue is not trivially empty.
        let _held = owner.allocate(16).unwrap();
        group.bench_function(BenchmarkId::new("pair", name), |b| {
            b.iter(|| drop(black_box(owner.allocate_one().unwrap())))
        });
        // Allocate, write one byte per 4 KiB page, release: what a sort buffer pays.
        group.bench_function(BenchmarkId::new("pair_touching_pages", name), |b| {
            b.iter(|| {
                let mut segment = owner.allocate_one().unwrap();
                for page in (0..SEGMENT).step_by(4096) {
                    segment.put_u8(page, 1);
                }
                drop(black_box(segment));
            })
        });
    }
    group.finish();
}

fn paged_view(c: &mut Criterion) {
    let manager = manager(ReleasePolicy::Reuse);
    let owner = manager.owner("bench");
    let record = [0x42u8; 100];
    const RECORDS: usize = 100_000;
    let mut group = c.benchmark_group("paged_view");
    group.throughput(Throughput::Bytes((RECORDS * record.len()) as u64));
    let mut view = PagedOutputView::new(owner.clone());
    group.bench_function("write/100B_records", |b| {
        b.iter(|| {
            view.clear();
            for _ in 0..RECORDS {
                view.write_bytes(black_box(&record)).unwrap();
            }
        })
    });
    view.clear();
    for _ in 0..RECORDS {
        view.write_bytes(&record).unwrap();
    }
    group.bench_function("read/100B_records", |b| {
        let mut scratch = Vec::with_capacity(100);
        b.iter(|| {
            let mut reader = view.reader();
            let mut sum = 0u64;
            for _ in 0..RECORDS {
                sum += u64::from(reader.read_record(100, &mut scratch).unwrap()[0]);
            }
            black_box(sum)
        })
    });
    group.throughput(Throughput::Bytes((RECORDS * 8) as u64));
    group.bench_function("write/u64_le", |b| {
        b.iter(|| {
            view.clear();
            for i in 0..RECORDS as u64 {
                view.write_u64_le(black_box(i)).unwrap();
            }
        })
    });
    group.bench_function("read/u64_le", |b| {
        b.iter(|| {
            let mut reader = view.reader();
            let mut sum = 0u64;
            for _ in 0..RECORDS {
                sum = sum.wrapping_add(reader.read_u64_le().unwrap());
            }
            black_box(sum)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    segment_get_put,
    segment_copy,
    segment_compare,
    manager_allocate_release,
    paged_view
);
criterion_main!(benches);
