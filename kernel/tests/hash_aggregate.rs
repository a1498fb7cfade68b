//! Hash aggregation against a `BTreeMap` model: groups that fit in memory, many groups at
//! a tiny budget (spilling, recursing), one hot key (sort fallback taken), a
//! variable-size accumulator, empty input, keys of every length (empty, longer than a
//! segment), random streams and budgets (proptest), both I/O backends, and a failing
//! write or read at every position. Every test ends with every segment home and no spill
//! file left.

mod common;

use common::manager;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{Rng, SpillDir};
use proptest::prelude::*;

use weir_kernel::KernelError;
use weir_kernel::hash::{
    AggregateConfig, AggregateStats, Aggregator, Composite, ConcatBytes, Count, HashAggregate,
    MaxI64, MinI64, SumI64,
};
use weir_kernel::spill::{FaultyStore, IoBackend, SpillConfig, SpillStore, open_store};

type Pair = (Vec<u8>, Vec<u8>);

/// Groups by key: the model's answer, or the aggregation's collected.
type Groups = BTreeMap<Vec<u8>, Vec<u8>>;

fn store(dir: &Path, backend: IoBackend) -> Arc<dyn SpillStore> {
    let mut config = SpillConfig::new(dir.to_path_buf());
    config.allow_memory_filesystem = true;
    config.backend = Some(backend);
    open_store(&config).unwrap()
}

fn min_segments(config: &AggregateConfig) -> usize {
    config.memory_segments_min()
}

/// SUM, MIN, MAX and COUNT of the little-endian `i64` each value holds.
fn numbers() -> Box<dyn Aggregator> {
    Box::new(Composite::new(vec![
        Box::new(SumI64 { offset: 0 }),
        Box::new(MinI64 { offset: 0 }),
        Box::new(MaxI64 { offset: 0 }),
        Box::new(Count),
    ]))
}

/// The model of [`numbers`]: the four results, encoded as the aggregation encodes them.
fn numbers_model(input: &[Pair]) -> Groups {
    let mut groups: BTreeMap<Vec<u8>, (i64, i64, i64, i64)> = BTreeMap::new();
    for (key, value) in input {
        let n = i64::from_le_bytes(value[..8].try_into().unwrap());
        groups
            .entry(key.clone())
            .and_modify(|(sum, min, max, count)| {
                *sum = sum.wrapping_add(n);
                *min = (*min).min(n);
                *max = (*max).max(n);
                *count += 1;
            })
            .or_insert((n, n, n, 1));
    }
    groups
        .into_iter()
        .map(|(key, (sum, min, max, count))| {
            let acc = [sum, min, max, count]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (key, acc)
        })
        .collect()
}

/// The model of [`ConcatBytes`] over 4-byte values, order-free: each group's values sorted.
fn concat_model(input: &[Pair]) -> Groups {
    let mut groups: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for (key, value) in input {
        groups.entry(key.clone()).or_default().push(value.clone());
    }
    groups
        .into_iter()
        .map(|(key, mut values)| {
            values.sort();
            (key, values.concat())
        })
        .collect()
}

/// Sorts the 4-byte pieces of each accumulator, for comparison with [`concat_model`].
fn sort_pieces(groups: Groups) -> Groups {
    groups
        .into_iter()
        .map(|(key, acc)| {
            assert_eq!(acc.len() % 4, 0, "pieces of four bytes");
            let mut pieces: Vec<&[u8]> = acc.chunks(4).collect();
            pieces.sort();
            (key, pieces.concat())
        })
        .collect()
}

/// Runs one aggregation; returns its groups (each key checked to come once) and stats.
fn run(
    dir: &Path,
    store: Arc<dyn SpillStore>,
    input: &[Pair],
    segments: usize,
    aggregator: Box<dyn Aggregator>,
    config: AggregateConfig,
) -> Result<(Groups, AggregateStats), KernelError> {
    let manager = manager(segments + 4);
    let owner = manager.owner("hash-aggregate");
    let result = (|| {
        let mut aggregate = HashAggregate::new(&owner, segments, store, aggregator, config)?;
        // A third one at a time, the rest in batches of a size that is not the kernel's.
        let (single, batched) = input.split_at(input.len() / 3);
        for (key, value) in single {
            aggregate.push(key, value)?;
        }
        for batch in batched.chunks(37) {
            aggregate.push_batch(batch)?;
        }
        let mut stream = aggregate.finish()?;
        let mut groups = BTreeMap::new();
        while let Some((key, acc)) = stream.next()? {
            let earlier = groups.insert(key.to_vec(), acc.to_vec());
            assert!(earlier.is_none(), "group {key:?} emitted twice");
        }
        assert_eq!(stream.next()?, None, "the stream stays at its end");
        let stats = stream.stats();
        assert_eq!(stats.groups, groups.len() as u64);
        assert_eq!(stats.records, input.len() as u64);
        Ok((groups, stats))
    })();
    manager.leak_check().unwrap();
    let left = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(left, 0, "spill files left behind");
    result
}

/// Aggregates `input` with [`numbers`] and checks the result against the model.
fn check_numbers(
    name: &str,
    input: &[Pair],
    segments: usize,
    config: AggregateConfig,
    backend: IoBackend,
) -> AggregateStats {
    let dir = SpillDir::new(name);
    let (groups, stats) = run(
        dir.path(),
        store(dir.path(), backend),
        input,
        segments,
        numbers(),
        config,
    )
    .unwrap();
    assert!(
        groups == numbers_model(input),
        "{name}/{backend}: groups differ from the model ({stats:?})"
    );
    dir.assert_empty();
    stats
}

/// `n` records over `groups` keys of `key_len` bytes, values small `i64`s.
fn random(rng: &mut Rng, n: usize, groups: usize, key_len: usize) -> Vec<Pair> {
    (0..n)
        .map(|_| {
            let group = rng.below(groups) as u64;
            let mut key = group.to_be_bytes().to_vec();
            key.resize(key_len.max(8), b'k');
            let value = (rng.next() as i64 >> 20).to_le_bytes().to_vec();
            (key, value)
        })
        .collect()
}

#[test]
fn groups_that_fit_stay_in_memory() {
    let mut rng = Rng(1);
    let input = random(&mut rng, 20_000, 2000, 8);
    let config = AggregateConfig::default();
    let stats = check_numbers("fits", &input, 400, config, IoBackend::Sync);
    assert_eq!(stats.groups, numbers_model(&input).len() as u64);
    assert_eq!(
        (
            stats.table_spills,
            stats.spilled_bytes,
            stats.partitions_spilled
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.recursion_depth_max, 0);
}

#[test]
fn many_groups_at_a_tiny_budget_spill_and_recurse() {
    let mut rng = Rng(2);
    let input = random(&mut rng, 30_000, 20_000, 8);
    let config = AggregateConfig {
        partitions: 4,
        ..AggregateConfig::default()
    };
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        let stats = check_numbers("recurse", &input, min_segments(&config), config, backend);
        assert!(stats.table_spills > 10, "{stats:?}");
        assert!(stats.recursion_depth_max >= 2, "{stats:?}");
        assert_eq!(
            stats.sort_fallbacks, 0,
            "every partition shrinks: {stats:?}"
        );
        assert!(stats.partitions_spilled > 4, "{stats:?}");
    }
}

#[test]
fn default_partitioning_spills_one_level() {
    let mut rng = Rng(3);
    let input = random(&mut rng, 20_000, 8000, 12);
    let config = AggregateConfig::default();
    let stats = check_numbers("one-level", &input, 40, config, IoBackend::Sync);
    assert!(stats.table_spills > 0, "{stats:?}");
    assert_eq!(stats.recursion_depth_max, 1, "{stats:?}");
}

#[test]
fn a_hot_key_with_fixed_accumulators_needs_no_fallback() {
    let mut rng = Rng(4);
    let mut input = random(&mut rng, 10_000, 5000, 8);
    for (i, pair) in input.iter_mut().enumerate() {
        if i % 2 == 0 {
            pair.0 = b"hot".to_vec();
        }
    }
    let config = AggregateConfig {
        partitions: 4,
        ..AggregateConfig::default()
    };
    let stats = check_numbers(
        "hot-fixed",
        &input,
        min_segments(&config),
        config,
        IoBackend::Sync,
    );
    assert!(stats.table_spills > 0, "{stats:?}");
    assert_eq!(stats.sort_fallbacks, 0, "{stats:?}");
}

#[test]
fn too_deep_partitions_fall_back_to_sorting() {
    let mut rng = Rng(5);
    let input = random(&mut rng, 12_000, 6000, 8);
    let config = AggregateConfig {
        partitions: 4,
        recursion_depth_max: 0,
        ..AggregateConfig::default()
    };
    let stats = check_numbers(
        "depth-0",
        &input,
        min_segments(&config),
        config,
        IoBackend::Sync,
    );
    assert!(stats.sort_fallbacks >= 4, "{stats:?}");
    assert_eq!(stats.recursion_depth_max, 0, "{stats:?}");
}

/// One key whose list of values outgrows the whole table: re-partitioning cannot split it,
/// so its partition is sorted and its partial lists merged as they stream.
#[test]
fn one_hot_key_outgrowing_memory_falls_back_to_sorting() {
    let mut rng = Rng(6);
    let mut input: Vec<Pair> = (0..40_000)
        .map(|i| {
            let key = if i % 2 == 0 {
                b"hot".to_vec()
            } else {
                (rng.below(500) as u32).to_be_bytes().to_vec()
            };
            (key, (rng.next() as u32).to_le_bytes().to_vec())
        })
        .collect();
    input.push((b"last".to_vec(), 7u32.to_le_bytes().to_vec()));
    let config = AggregateConfig {
        partitions: 4,
        ..AggregateConfig::default()
    };
    let dir = SpillDir::new("hot-variable");
    let (groups, stats) = run(
        dir.path(),
        store(dir.path(), IoBackend::Sync),
        &input,
        min_segments(&config),
        Box::new(ConcatBytes),
        config,
    )
    .unwrap();
    assert_eq!(groups[b"hot".as_slice()].len(), 20_000 * 4);
    assert!(sort_pieces(groups) == concat_model(&input), "{stats:?}");
    assert!(
        stats.sort_fallbacks >= 1,
        "the hot key was sorted: {stats:?}"
    );
    assert!(stats.recursion_depth_max >= 1, "{stats:?}");
}

#[test]
fn variable_accumulators_spill_and_merge() {
    let mut rng = Rng(7);
    let input: Vec<Pair> = (0..20_000)
        .map(|_| {
            let key = (rng.below(3000) as u32).to_be_bytes().to_vec();
            (key, (rng.next() as u32).to_le_bytes().to_vec())
        })
        .collect();
    let config = AggregateConfig {
        partitions: 8,
        ..AggregateConfig::default()
    };
    for segments in [min_segments(&config), 2000] {
        let dir = SpillDir::new(&format!("variable-{segments}"));
        let (groups, stats) = run(
            dir.path(),
            store(dir.path(), IoBackend::Sync),
            &input,
            segments,
            Box::new(ConcatBytes),
            config,
        )
        .unwrap();
        assert!(sort_pieces(groups) == concat_model(&input), "{stats:?}");
        if segments == 2000 {
            assert_eq!(stats.table_spills, 0, "{stats:?}");
        } else {
            assert!(stats.table_spills > 0, "{stats:?}");
        }
    }
}

/// The shape of TPC-H W2a: 8-byte keys in ascending runs (an order's line items), so
/// that the bucket array doubles many times and batches hold a few keys each; pushed one
/// at a time and in batches, in memory and spilling.
#[test]
fn sorted_runs_of_fixed_keys_in_batches() {
    let mut rng = Rng(12);
    let mut input: Vec<Pair> = Vec::new();
    for order in 0u64..30_000 {
        for _ in 0..1 + rng.below(7) {
            let value = (rng.next() as i64 >> 24).to_le_bytes().to_vec();
            input.push((order.to_be_bytes().to_vec(), value));
        }
    }
    let config = AggregateConfig::default();
    for (name, segments) in [("runs-fit", 2000), ("runs-spill", 100)] {
        let stats = check_numbers(name, &input, segments, config, IoBackend::Sync);
        assert_eq!(stats.groups, 30_000, "{stats:?}");
        if segments == 2000 {
            assert_eq!(stats.table_spills, 0, "{stats:?}");
        } else {
            assert!(stats.table_spills > 0, "{stats:?}");
        }
    }
}

#[test]
fn empty_input_has_no_groups() {
    let config = AggregateConfig::default();
    let stats = check_numbers("empty", &[], min_segments(&config), config, IoBackend::Sync);
    assert_eq!(stats, AggregateStats::default());
}

/// Keys from empty to longer than a segment (so records span segments, and a record can
/// be larger than the whole table's record share), spilled and not.
#[test]
fn keys_of_every_length() {
    let mut rng = Rng(8);
    let mut keys: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0, 0], vec![1; 7], vec![1; 9]];
    for len in [15, 16, 17, 100, 1000, 4095, 4096, 4097, 9000] {
        keys.push(rng.bytes(len, 256));
    }
    for _ in 0..600 {
        let len = rng.below(40);
        keys.push(rng.bytes(len, 3));
    }
    let input: Vec<Pair> = (0..8000)
        .map(|_| {
            let key = keys[rng.below(keys.len())].clone();
            (key, (rng.next() as i64).to_le_bytes().to_vec())
        })
        .collect();
    let config = AggregateConfig {
        partitions: 2,
        ..AggregateConfig::default()
    };
    check_numbers(
        "key-lengths",
        &input,
        min_segments(&config),
        config,
        IoBackend::Sync,
    );
    check_numbers("key-lengths-big", &input, 1000, config, IoBackend::Sync);
}

#[test]
fn compressed_spills() {
    let mut rng = Rng(9);
    let input = random(&mut rng, 10_000, 6000, 24);
    let dir = SpillDir::new("lz4");
    let manager = manager(200);
    let mut spill = SpillConfig::new(dir.path().to_path_buf());
    spill.allow_memory_filesystem = true;
    spill.backend = Some(IoBackend::Sync);
    spill.scratch = Some(manager.owner("spill/lz4"));
    let store = open_store(&spill).unwrap();
    let config = AggregateConfig {
        compress: true,
        partitions: 4,
        ..AggregateConfig::default()
    };
    let (groups, stats) = run(
        dir.path(),
        store,
        &input,
        min_segments(&config),
        numbers(),
        config,
    )
    .unwrap();
    assert!(groups == numbers_model(&input), "{stats:?}");
    assert!(stats.spilled_bytes > 0);
    manager.leak_check().unwrap();
}

#[test]
fn too_little_memory_is_a_config_error() {
    let manager = manager(64);
    let dir = SpillDir::new("tiny");
    let config = AggregateConfig::default();
    let error = HashAggregate::new(
        &manager.owner("hash"),
        5,
        store(dir.path(), IoBackend::Sync),
        numbers(),
        config,
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("hash aggregate memory")
            && message.contains(&format!(
                "5 segments, below the minimum of {}",
                min_segments(&config)
            )),
        "{message}"
    );
    let error = HashAggregate::new(
        &manager.owner("hash"),
        100,
        store(dir.path(), IoBackend::Sync),
        numbers(),
        AggregateConfig {
            partitions: 3,
            ..config
        },
    )
    .unwrap_err();
    assert!(error.to_string().contains("partitions = 3"), "{error}");
    manager.leak_check().unwrap();
    dir.assert_empty();
}

/// Runs a small spilling aggregation on a store that fails its `n`th write or read;
/// `true` when the fault was hit (and came back as an error).
fn aggregate_with_fault(
    dir: &Path,
    input: &[Pair],
    backend: IoBackend,
    fail_write: Option<u64>,
    fail_read: Option<u64>,
) -> bool {
    let faulty: Arc<dyn SpillStore> =
        Arc::new(FaultyStore::new(store(dir, backend), fail_write, fail_read));
    let config = AggregateConfig {
        partitions: 4,
        recursion_depth_max: 1,
        ..AggregateConfig::default()
    };
    let segments = min_segments(&config);
    match run(dir, faulty, input, segments, numbers(), config) {
        Ok((_, stats)) => {
            assert!(
                stats.recursion_depth_max == 1 && stats.sort_fallbacks > 0,
                "the faults cover re-aggregation and sorting: {stats:?}"
            );
            false
        }
        Err(error) => {
            assert!(
                error.to_string().contains("injected fault"),
                "unexpected error: {error}"
            );
            true
        }
    }
}

#[test]
fn a_failing_write_or_read_at_every_position_is_an_error() {
    let mut rng = Rng(10);
    // Enough groups that a partition re-aggregated at level 1 spills again, and is
    // sorted (depth limit 1): every kind of write and read is made to fail.
    let input = random(&mut rng, 7000, 7000, 8);
    let dir = SpillDir::new("faults");
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        let mut writes = 0;
        for n in 1.. {
            if !aggregate_with_fault(dir.path(), &input, backend, Some(n), None) {
                break;
            }
            writes += 1;
        }
        let mut reads = 0;
        for n in 1.. {
            if !aggregate_with_fault(dir.path(), &input, backend, None, Some(n)) {
                break;
            }
            reads += 1;
        }
        assert!(
            writes > 10 && reads > 10,
            "{backend}: {writes} writes, {reads} reads"
        );
    }
}

/// A block corrupted on disk is reported when read back, never aggregated.
#[test]
fn a_corrupt_spill_block_is_an_error() {
    let mut rng = Rng(11);
    let input = random(&mut rng, 6000, 5000, 8);
    let dir = SpillDir::new("corrupt");
    for n in [1, 5, 20] {
        let faulty: Arc<dyn SpillStore> = Arc::new(
            FaultyStore::new(store(dir.path(), IoBackend::Sync), None, None).corrupt_write(n),
        );
        let config = AggregateConfig {
            partitions: 4,
            ..AggregateConfig::default()
        };
        let error = run(
            dir.path(),
            faulty,
            &input,
            min_segments(&config),
            numbers(),
            config,
        )
        .unwrap_err();
        assert!(
            matches!(error, KernelError::CorruptSpill { .. }),
            "block {n}: {error}"
        );
    }
}

fn arbitrary_input() -> impl Strategy<Value = Vec<Pair>> {
    let key = prop::collection::vec(0u8..6, 0..12);
    let value = any::<i64>().prop_map(|n| n.to_le_bytes().to_vec());
    prop::collection::vec((key, value), 0..5000)
}

fn arbitrary_config() -> impl Strategy<Value = AggregateConfig> {
    (1u32..4, 0usize..3, any::<u64>()).prop_map(|(bits, depth, seed)| AggregateConfig {
        partitions: 1 << bits,
        recursion_depth_max: depth,
        seed,
        ..AggregateConfig::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_streams_and_budgets_match_the_model(
        input in arbitrary_input(),
        extra in 0usize..12,
        config in arbitrary_config(),
    ) {
        let dir = SpillDir::new("proptest");
        let segments = min_segments(&config) + extra;
        let (groups, stats) = run(
            dir.path(),
            store(dir.path(), IoBackend::Sync),
            &input,
            segments,
            numbers(),
            config,
        )
        .unwrap();
        prop_assert!(groups == numbers_model(&input), "{:?}", stats);
    }

    /// The same with a variable-size accumulator: lists of 4-byte values, some keys hot.
    #[test]
    fn random_lists_match_the_model(
        input in arbitrary_input(),
        extra in 0usize..12,
        config in arbitrary_config(),
    ) {
        let input: Vec<Pair> = input
            .into_iter()
            .map(|(key, value)| (key, value[..4].to_vec()))
            .collect();
        let dir = SpillDir::new("proptest-lists");
        let segments = min_segments(&config) + extra;
        let (groups, stats) = run(
            dir.path(),
            store(dir.path(), IoBackend::Sync),
            &input,
            segments,
            Box::new(ConcatBytes),
            config,
        )
        .unwrap();
        prop_assert!(sort_pieces(groups) == concat_model(&input), "{:?}", stats);
    }
}

/// An error from the stream ends it: asking again is a bug in the caller, which panics,
/// and dropping the stream still returns every segment and deletes every run.
#[test]
fn a_stream_that_failed_must_be_dropped() {
    let mut rng = Rng(12);
    let input = random(&mut rng, 6000, 5000, 8);
    let dir = SpillDir::new("failed-stream");
    let manager = manager(64);
    let faulty: Arc<dyn SpillStore> =
        Arc::new(FaultyStore::new(store(dir.path(), IoBackend::Sync), None, None).corrupt_write(1));
    let config = AggregateConfig::default();
    let owner = manager.owner("hash");
    let mut aggregate =
        HashAggregate::new(&owner, min_segments(&config), faulty, numbers(), config).unwrap();
    for (key, value) in &input {
        aggregate.push(key, value).unwrap();
    }
    let mut stream = aggregate.finish().unwrap();
    let error = loop {
        match stream.next() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without reading the corrupt block"),
            Err(error) => break error,
        }
    };
    assert!(matches!(error, KernelError::CorruptSpill { .. }), "{error}");
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = stream.next();
    }));
    assert!(again.is_err(), "next after an error panics");
    drop(stream);
    manager.leak_check().unwrap();
    dir.assert_empty();
}

/// Two-phase aggregation: two aggregations of halves of the input, their groups merged
/// as partial accumulators by a third, equal one aggregation of the whole.
#[test]
fn partial_accumulators_merge_like_values() {
    let mut rng = Rng(13);
    let input = random(&mut rng, 12_000, 4000, 8);
    let dir = SpillDir::new("two-phase");
    let manager = manager(200);
    let config = AggregateConfig {
        partitions: 4,
        ..AggregateConfig::default()
    };
    let segments = min_segments(&config);
    let owner = manager.owner("hash");
    let new_aggregate = || {
        HashAggregate::new(
            &owner,
            segments,
            store(dir.path(), IoBackend::Sync),
            numbers(),
            config,
        )
    };
    let mut last = new_aggregate().unwrap();
    for half in input.chunks(input.len() / 2) {
        let mut first = new_aggregate().unwrap();
        for (key, value) in half {
            first.push(key, value).unwrap();
        }
        let mut stream = first.finish().unwrap();
        while let Some((key, acc)) = stream.next().unwrap() {
            last.push_partial(key, acc).unwrap();
        }
        assert!(stream.stats().table_spills > 0, "{:?}", stream.stats());
    }
    let mut stream = last.finish().unwrap();
    let mut groups = Groups::new();
    while let Some((key, acc)) = stream.next().unwrap() {
        assert!(groups.insert(key.to_vec(), acc.to_vec()).is_none());
    }
    drop(stream);
    assert!(groups == numbers_model(&input));
    manager.leak_check().unwrap();
    dir.assert_empty();
}

/// Key distributions of the issue: all distinct, all equal, Zipf-like (log-uniform ranks),
/// and one hot key among uniform ones, each in memory and at the smallest budget.
#[test]
fn distinct_equal_zipf_and_hot_keys() {
    let mut rng = Rng(14);
    let n = 12_000;
    let key = |i: u64| i.to_be_bytes().to_vec();
    let value = |rng: &mut Rng| (rng.next() as i64 >> 16).to_le_bytes().to_vec();
    let distinct: Vec<Pair> = (0..n).map(|i| (key(i * 7919), value(&mut rng))).collect();
    let equal: Vec<Pair> = (0..n).map(|_| (key(42), value(&mut rng))).collect();
    let zipf: Vec<Pair> = (0..n)
        .map(|_| {
            let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            let rank = (50_000f64.powf(u) as u64).saturating_sub(1);
            (key(rank), value(&mut rng))
        })
        .collect();
    let hot: Vec<Pair> = (0..n)
        .map(|i| {
            let k = if i % 4 == 0 {
                7
            } else {
                rng.below(6000) as u64
            };
            (key(k), value(&mut rng))
        })
        .collect();
    let config = AggregateConfig {
        partitions: 4,
        ..AggregateConfig::default()
    };
    let min = min_segments(&config);
    for (name, input) in [
        ("distinct", &distinct),
        ("equal", &equal),
        ("zipf", &zipf),
        ("hot", &hot),
    ] {
        let stats = check_numbers(name, input, 2000, config, IoBackend::Sync);
        assert_eq!(stats.table_spills, 0, "{name} fits: {stats:?}");
        let stats = check_numbers(name, input, min, config, IoBackend::Sync);
        match name {
            "equal" => assert_eq!(stats.table_spills, 0, "one group: {stats:?}"),
            "distinct" => assert!(stats.recursion_depth_max >= 2, "{stats:?}"),
            _ => assert!(stats.recursion_depth_max >= 1, "{name}: {stats:?}"),
        }
        assert_eq!(stats.sort_fallbacks, 0, "{name}: {stats:?}");
    }
}

/// `try_push_partial` never spills: a full table refuses the pair and stays as it was, a
/// fresh one takes the rest, and the groups of both tables together merge to the model
/// (each partial counted once); nothing was written to disk.
#[test]
fn a_full_table_refuses_partials_instead_of_spilling() {
    let mut rng = Rng(21);
    let input = random(&mut rng, 40_000, 20_000, 8);
    let dir = SpillDir::new("try-push");
    let manager = manager(64);
    let owner = manager.owner("combiner");
    let config = AggregateConfig::default();
    let segments = min_segments(&config);
    let table = || {
        HashAggregate::new(
            &owner,
            segments,
            store(dir.path(), IoBackend::Sync),
            numbers(),
            config,
        )
        .unwrap()
    };
    // Each value as the partial accumulator of a group of one record.
    let aggregator = numbers();
    let partials: Vec<(Vec<u8>, Vec<u8>)> = input
        .iter()
        .map(|(key, value)| {
            let mut acc = Vec::new();
            aggregator.init(value, &mut acc);
            (key.clone(), acc)
        })
        .collect();
    let mut handed_on: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut current = table();
    let mut refusals = 0;
    for (key, acc) in &partials {
        if current.try_push_partial(key, acc).unwrap() {
            continue;
        }
        refusals += 1;
        let mut stream = std::mem::replace(&mut current, table()).finish().unwrap();
        while let Some((key, acc)) = stream.next().unwrap() {
            handed_on.push((key.to_vec(), acc.to_vec()));
        }
        assert_eq!(
            stream.stats().spilled_bytes,
            0,
            "a refusing table spills nothing"
        );
        drop(stream);
        assert!(
            current.try_push_partial(key, acc).unwrap(),
            "a fresh table takes it"
        );
    }
    assert!(refusals > 0, "the table filled up");
    drain(current, &mut handed_on);
    // Merge the handed-on partials in a table that may spill, and compare.
    let mut merged = HashAggregate::new(
        &owner,
        32,
        store(dir.path(), IoBackend::Sync),
        numbers(),
        config,
    )
    .unwrap();
    for (key, acc) in &handed_on {
        merged.push_partial(key, acc).unwrap();
    }
    let mut groups = Vec::new();
    drain(merged, &mut groups);
    assert_eq!(
        groups.into_iter().collect::<Groups>(),
        numbers_model(&input)
    );
    manager.leak_check().unwrap();
    dir.assert_empty();
}

/// Every group of `aggregate` appended to `groups`; returns the bytes it spilled.
fn drain(aggregate: HashAggregate, groups: &mut Vec<(Vec<u8>, Vec<u8>)>) -> u64 {
    let mut stream = aggregate.finish().unwrap();
    while let Some((key, acc)) = stream.next().unwrap() {
        groups.push((key.to_vec(), acc.to_vec()));
    }
    stream.stats().spilled_bytes
}
