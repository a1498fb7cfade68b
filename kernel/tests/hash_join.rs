//! Hybrid hash join against a nested-loop join model: every join type, in memory and at
//! budgets that force one and two levels of recursion and the sort-merge fallback (each
//! asserted through the stats), keys that are random, Zipf-like, one hot key, all
//! distinct and all equal, keys and records of every length (empty, longer than a
//! segment, larger than the whole table), empty inputs, random inputs, join types and
//! budgets (proptest), LZ4 runs on io_uring, a failing write or read at every position on
//! both backends, corrupt blocks, an error of the caller's sink and a stream that failed.
//! Every run ends with every segment home and no spill file left.

mod common;

use common::manager;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{Rng, SpillDir};
use proptest::prelude::*;

use weir_kernel::KernelError;
use weir_kernel::hash::{HashJoin, JoinConfig, JoinRow, JoinStats, JoinType};
use weir_kernel::spill::{FaultyStore, IoBackend, SpillConfig, SpillStore, open_store};

/// A (key, record) input.
type Rec = (Vec<u8>, Vec<u8>);

/// Output rows as (key, build, probe), sorted for comparison.
type Rows = Vec<(Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>)>;

/// The small configuration of most tests: one block in flight per reader and writer.
fn small_config() -> JoinConfig {
    JoinConfig {
        read_ahead: 1,
        write_behind: 1,
        ..JoinConfig::default()
    }
}

fn store(dir: &Path, backend: IoBackend) -> Arc<dyn SpillStore> {
    let mut config = SpillConfig::new(dir.to_path_buf());
    config.allow_memory_filesystem = true;
    config.backend = Some(backend);
    open_store(&config).unwrap()
}

fn own(row: JoinRow<'_>) -> (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        row.key.to_vec(),
        row.build.map(<[u8]>::to_vec),
        row.probe.map(<[u8]>::to_vec),
    )
}

/// The obviously correct answer: a nested loop over both inputs.
fn nested_loop(build: &[Rec], probe: &[Rec], join_type: JoinType) -> Rows {
    let mut rows = Rows::new();
    let mut build_matched = vec![false; build.len()];
    for (probe_key, probe_record) in probe {
        let mut matched = false;
        for (i, (build_key, build_record)) in build.iter().enumerate() {
            if build_key == probe_key {
                matched = true;
                build_matched[i] = true;
                if matches!(
                    join_type,
                    JoinType::Inner
                        | JoinType::LeftOuter
                        | JoinType::RightOuter
                        | JoinType::FullOuter
                ) {
                    rows.push((
                        probe_key.clone(),
                        Some(build_record.clone()),
                        Some(probe_record.clone()),
                    ));
                }
            }
        }
        let alone = match join_type {
            JoinType::LeftOuter | JoinType::LeftAnti | JoinType::FullOuter => !matched,
            JoinType::LeftSemi => matched,
            JoinType::Inner | JoinType::RightOuter | JoinType::RightSemi | JoinType::RightAnti => {
                false
            }
        };
        if alone {
            rows.push((probe_key.clone(), None, Some(probe_record.clone())));
        }
    }
    for (i, (key, record)) in build.iter().enumerate() {
        let alone = match join_type {
            JoinType::RightOuter | JoinType::FullOuter | JoinType::RightAnti => !build_matched[i],
            JoinType::RightSemi => build_matched[i],
            _ => false,
        };
        if alone {
            rows.push((key.clone(), Some(record.clone()), None));
        }
    }
    rows.sort();
    rows
}

/// The same nested loop, run per key (the build side grouped in a `BTreeMap`), for inputs
/// too large for the quadratic loop.
fn model(build: &[Rec], probe: &[Rec], join_type: JoinType) -> Rows {
    let mut groups: BTreeMap<&[u8], (Vec<Rec>, Vec<Rec>)> = BTreeMap::new();
    for rec in build {
        groups.entry(&rec.0).or_default().0.push(rec.clone());
    }
    for rec in probe {
        groups.entry(&rec.0).or_default().1.push(rec.clone());
    }
    let mut rows = Rows::new();
    for (build, probe) in groups.values() {
        rows.extend(nested_loop(build, probe, join_type));
    }
    rows.sort();
    rows
}

/// Joins `probe` with `build` in `segments` segments; checks that every segment came home
/// and no spill file is left, whatever the outcome.
fn run(
    dir: &Path,
    store: Arc<dyn SpillStore>,
    build: &[Rec],
    probe: &[Rec],
    segments: usize,
    join_type: JoinType,
    config: JoinConfig,
) -> Result<(Rows, JoinStats), KernelError> {
    let manager = manager(segments);
    let result = (|| {
        let owner = manager.owner("join");
        let mut join = HashJoin::new(&owner, segments, store, join_type, config)?;
        for (key, record) in build {
            join.push_build(key, record)?;
        }
        join.finish_build()?;
        let mut rows = Rows::new();
        // Runs of equal keys go to `probe_hashed_group`, to `probe` a record at a time,
        // and through the key filter (`prefetch_unless_filtered`, then `probe_hashed` for
        // the records it lets through), in turn, so all are checked against the model.
        let mut start = 0;
        for (index, group) in probe.chunk_by(|a, b| a.0 == b.0).enumerate() {
            let key = &group[0].0;
            if index % 3 == 2 {
                for (key, record) in group {
                    if let Some(hash) = join.prefetch_unless_filtered(key) {
                        join.probe_hashed(hash, key, record, |row| {
                            rows.push(own(row));
                            Ok(())
                        })?;
                    }
                }
            } else if index % 3 == 0 {
                let records: Vec<&[u8]> = group.iter().map(|(_, r)| r.as_slice()).collect();
                let hash = join.prefetch(key);
                join.probe_hashed_group(hash, key, &records, |row| {
                    rows.push(own(row));
                    Ok(())
                })?;
            } else {
                for (key, record) in group {
                    join.probe(key, record, |row| {
                        rows.push(own(row));
                        Ok(())
                    })?;
                }
            }
            start += group.len();
        }
        assert_eq!(start, probe.len());
        let mut stream = join.finish()?;
        while let Some(row) = stream.next()? {
            rows.push(own(row));
        }
        let stats = stream.stats();
        assert_eq!(stats.output_rows, rows.len() as u64);
        assert_eq!(stats.build_records, build.len() as u64);
        assert_eq!(stats.probe_records, probe.len() as u64);
        rows.sort();
        Ok((rows, stats))
    })();
    manager.leak_check().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
    result
}

/// Runs every join type and compares with the model; returns the stats of each.
fn check(
    name: &str,
    build: &[Rec],
    probe: &[Rec],
    segments: usize,
    config: JoinConfig,
) -> Vec<JoinStats> {
    let dir = SpillDir::new(&format!("join-{name}"));
    JoinType::ALL
        .iter()
        .map(|&join_type| {
            let (rows, stats) = run(
                dir.path(),
                store(dir.path(), IoBackend::Sync),
                build,
                probe,
                segments,
                join_type,
                config,
            )
            .unwrap();
            let expected = model(build, probe, join_type);
            assert_eq!(
                rows.len(),
                expected.len(),
                "{name} {join_type:?}: {stats:?}"
            );
            assert!(rows == expected, "{name} {join_type:?}: rows differ");
            stats
        })
        .collect()
}

/// `n` records with keys from `key`, each record naming its side and index.
fn side(n: usize, side: u8, mut key: impl FnMut(usize) -> Vec<u8>) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let mut record = vec![side; 8];
            record.extend_from_slice(&(i as u64).to_le_bytes());
            (key(i), record)
        })
        .collect()
}

fn key(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

#[test]
fn every_join_type_in_memory_matches_the_nested_loop() {
    let mut rng = Rng(1);
    let build = side(1500, b'b', |_| key(rng.below(1000) as u64));
    let probe = side(1500, b'p', |_| key(rng.below(1500) as u64));
    for join_type in JoinType::ALL {
        assert_eq!(
            model(&build, &probe, join_type),
            nested_loop(&build, &probe, join_type)
        );
    }
    for stats in check("memory", &build, &probe, 400, small_config()) {
        assert_eq!(stats.partitions_spilled, 0, "{stats:?}");
        assert_eq!(stats.spilled_bytes, 0, "{stats:?}");
        assert_eq!(stats.recursion_depth_max, 0, "{stats:?}");
    }
}

/// A large probe side against a small build side, most probe keys absent (a scan
/// against a filtered dimension): the key filter answers most probes of the joins that
/// drop unmatched probe records, and every join type still matches the model.
#[test]
fn a_probe_side_that_mostly_misses_is_answered_by_the_key_filter() {
    let mut rng = Rng(3);
    let build = side(500, b'b', |_| key(rng.below(2000) as u64));
    let probe = side(20_000, b'p', |i| key(i as u64 * 7));
    let stats = check("filter", &build, &probe, 400, small_config());
    for (join_type, stats) in JoinType::ALL.iter().zip(&stats) {
        let drops = matches!(
            join_type,
            JoinType::Inner
                | JoinType::LeftSemi
                | JoinType::RightOuter
                | JoinType::RightSemi
                | JoinType::RightAnti
        );
        // About a third of the probes go through the filter; at least 90% of those miss.
        if drops {
            assert!(stats.key_filtered > 5_000, "{join_type:?}: {stats:?}");
        } else {
            assert_eq!(stats.key_filtered, 0, "{join_type:?}: {stats:?}");
        }
    }
}

/// A probe side in key order (as `lineitem` is by order key) comes in runs of equal keys,
/// which `run` hands over a run at a time; in memory and spilled.
#[test]
fn a_probe_side_clustered_by_key_matches_the_model() {
    let mut rng = Rng(7);
    let build = side(3000, b'b', |_| key(rng.below(2000) as u64));
    let mut probe = side(6000, b'p', |_| key(rng.below(2500) as u64));
    probe.sort();
    let config = small_config();
    for stats in check("clustered-memory", &build, &probe, 400, config) {
        assert_eq!(stats.partitions_spilled, 0, "{stats:?}");
    }
    let spilled = config.memory_segments_min();
    for stats in check("clustered-spilled", &build, &probe, spilled, config) {
        assert!(stats.partitions_spilled > 0, "{stats:?}");
    }
}

#[test]
fn a_build_side_larger_than_memory_recurses_once() {
    let mut rng = Rng(2);
    let build = side(5000, b'b', |_| key(rng.below(4000) as u64));
    let probe = side(5000, b'p', |_| key(rng.below(8000) as u64));
    let config = small_config();
    for stats in check(
        "one-level",
        &build,
        &probe,
        config.memory_segments_min(),
        config,
    ) {
        assert!(stats.partitions_spilled > 0, "{stats:?}");
        assert_eq!(stats.recursion_depth_max, 1, "{stats:?}");
        assert!(stats.bloom_filtered > 1000, "{stats:?}");
        assert_eq!(stats.sort_merge_fallbacks, 0, "{stats:?}");
    }
}

#[test]
fn a_build_side_far_larger_than_memory_recurses_twice() {
    let mut rng = Rng(3);
    let build = side(30_000, b'b', |_| key(rng.below(40_000) as u64));
    let probe = side(6000, b'p', |_| key(rng.below(40_000) as u64));
    let config = small_config();
    for stats in check(
        "two-levels",
        &build,
        &probe,
        config.memory_segments_min(),
        config,
    ) {
        assert!(stats.recursion_depth_max >= 2, "{stats:?}");
        assert_eq!(stats.sort_merge_fallbacks, 0, "{stats:?}");
    }
}

#[test]
fn a_hot_key_larger_than_memory_falls_back_to_sort_merge() {
    let mut rng = Rng(4);
    // 5 000 records of one key (about 150 KiB) against a table of 72 KiB.
    let build = side(8000, b'b', |i| {
        if i % 8 < 5 {
            key(7)
        } else {
            key(rng.below(3000) as u64)
        }
    });
    let probe = side(2000, b'p', |i| {
        if i % 100 == 0 {
            key(7)
        } else {
            key(rng.below(4000) as u64)
        }
    });
    let config = small_config();
    for stats in check("hot", &build, &probe, config.memory_segments_min(), config) {
        assert!(stats.sort_merge_fallbacks > 0, "{stats:?}");
    }
}

/// A hot key larger than memory that no probe record matches: a right or full outer join
/// emits its build records alone, read back from the group's run.
#[test]
fn an_unmatched_hot_key_is_emitted_whole_by_sort_merge() {
    let build = side(3000, b'b', |i| key(if i % 10 == 0 { 1 } else { 42 }));
    let probe = side(30, b'p', |i| key(if i % 3 == 0 { 1 } else { 43 }));
    let config = small_config();
    let stats = check(
        "unmatched-hot",
        &build,
        &probe,
        config.memory_segments_min(),
        config,
    );
    for (join_type, stats) in JoinType::ALL.iter().zip(stats) {
        assert!(stats.partitions_spilled > 0, "{stats:?}");
        // Only joins that keep unmatched build records (right outer and anti, full
        // outer) have a use for a spilled partition no probe record reaches.
        let fallbacks = u64::from(matches!(
            join_type,
            JoinType::RightOuter | JoinType::RightAnti | JoinType::FullOuter
        ));
        assert_eq!(
            stats.sort_merge_fallbacks, fallbacks,
            "{join_type:?}: {stats:?}"
        );
    }
}

#[test]
fn depth_zero_sort_merges_every_spilled_pair() {
    let mut rng = Rng(5);
    let build = side(5000, b'b', |_| key(rng.below(3000) as u64));
    let probe = side(3000, b'p', |_| key(rng.below(4000) as u64));
    let config = JoinConfig {
        recursion_depth_max: 0,
        ..small_config()
    };
    for stats in check(
        "depth-zero",
        &build,
        &probe,
        config.memory_segments_min(),
        config,
    ) {
        assert_eq!(stats.recursion_depth_max, 0, "{stats:?}");
        assert!(stats.sort_merge_fallbacks > 1, "{stats:?}");
    }
}

/// The key distributions of the issue, each in memory and at the smallest budget.
#[test]
fn distinct_equal_zipf_and_hot_keys() {
    let mut rng = Rng(6);
    let n = 4000;
    let distinct = side(n, b'b', |i| key(i as u64 * 7919));
    let distinct_probe = side(n, b'p', |i| key(i as u64 * 7919 * 2));
    let equal = side(3000, b'b', |_| key(42));
    let equal_probe = side(20, b'p', |i| key(if i % 2 == 0 { 42 } else { 43 }));
    let zipf_key = |rng: &mut Rng| {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        key((20_000f64.powf(u) as u64).saturating_sub(1))
    };
    let zipf = side(n, b'b', |_| zipf_key(&mut rng));
    let zipf_probe = side(1000, b'p', |_| zipf_key(&mut rng));
    let hot = side(n, b'b', |i| {
        if i % 4 == 0 {
            key(7)
        } else {
            key(rng.below(3000) as u64)
        }
    });
    let hot_probe = side(1000, b'p', |i| {
        if i % 50 == 0 {
            key(7)
        } else {
            key(rng.below(3000) as u64)
        }
    });
    let config = small_config();
    let min = config.memory_segments_min();
    for (name, build, probe) in [
        ("distinct", &distinct, &distinct_probe),
        ("equal", &equal, &equal_probe),
        ("zipf", &zipf, &zipf_probe),
        ("hot", &hot, &hot_probe),
    ] {
        for stats in check(name, build, probe, 2000, config) {
            assert_eq!(stats.partitions_spilled, 0, "{name} fits: {stats:?}");
        }
        for stats in check(name, build, probe, min, config) {
            assert!(stats.partitions_spilled > 0, "{name}: {stats:?}");
            if name == "equal" {
                assert!(stats.sort_merge_fallbacks > 0, "{name}: {stats:?}");
            }
        }
    }
}

/// Empty keys and records, keys and records longer than a segment, and a record larger
/// than the whole table (written to a run of its own, then sort-merged).
#[test]
fn keys_and_records_of_every_length() {
    let mut rng = Rng(7);
    let mut build = Vec::new();
    let mut probe = Vec::new();
    for i in 0..600usize {
        let key_len = [0, 1, 3, 8, 40, 5000][i % 6];
        let key = rng.bytes(key_len, 2);
        let record_len = [0, 2, 9000][i % 3];
        build.push((key.clone(), rng.bytes(record_len, 256)));
        if i % 2 == 0 {
            probe.push((key, rng.bytes(record_len / 2, 256)));
        }
    }
    build.push((b"huge".to_vec(), vec![9; 200_000]));
    probe.push((b"huge".to_vec(), b"p".to_vec()));
    probe.push((Vec::new(), b"empty".to_vec()));
    let config = small_config();
    for stats in check(
        "lengths",
        &build,
        &probe,
        config.memory_segments_min(),
        config,
    ) {
        assert!(stats.partitions_spilled > 0, "{stats:?}");
    }
}

#[test]
fn empty_inputs_make_no_rows() {
    let mut rng = Rng(8);
    let some = side(100, b'b', |_| key(rng.below(50) as u64));
    let config = small_config();
    for (build, probe) in [(&vec![], &vec![]), (&some, &vec![]), (&vec![], &some)] {
        check("empty", build, probe, config.memory_segments_min(), config);
    }
}

#[test]
fn too_little_memory_is_a_config_error() {
    let dir = SpillDir::new("join-config");
    let config = small_config();
    let min = config.memory_segments_min();
    let error = run(
        dir.path(),
        store(dir.path(), IoBackend::Sync),
        &[],
        &[],
        min - 1,
        JoinType::Inner,
        config,
    )
    .unwrap_err();
    assert!(
        matches!(error, KernelError::InvalidConfig { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&format!("{} segments", min - 1)),
        "{error}"
    );
    let config = JoinConfig {
        partitions: Some(200),
        ..config
    };
    let error = run(
        dir.path(),
        store(dir.path(), IoBackend::Sync),
        &[],
        &[],
        10_000,
        JoinType::Inner,
        config,
    )
    .unwrap_err();
    assert!(error.to_string().contains("partitions"), "{error}");
}

/// A small spilling join (a level of recursion and a sort-merge) on a store that fails its
/// `n`th write or read; `true` when the fault was hit and came back as an error.
fn join_with_fault(
    dir: &Path,
    build: &[Rec],
    probe: &[Rec],
    backend: IoBackend,
    fail_write: Option<u64>,
    fail_read: Option<u64>,
) -> bool {
    let faulty: Arc<dyn SpillStore> =
        Arc::new(FaultyStore::new(store(dir, backend), fail_write, fail_read));
    let config = JoinConfig {
        recursion_depth_max: 1,
        ..small_config()
    };
    let segments = config.memory_segments_min();
    match run(
        dir,
        faulty,
        build,
        probe,
        segments,
        JoinType::RightOuter,
        config,
    ) {
        Ok((rows, stats)) => {
            assert_eq!(rows, model(build, probe, JoinType::RightOuter));
            assert!(
                stats.recursion_depth_max == 1 && stats.sort_merge_fallbacks > 0,
                "the faults cover recursion and sort-merge: {stats:?}"
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
    let mut rng = Rng(9);
    let build = side(3000, b'b', |i| {
        if i % 2 == 0 {
            key(5)
        } else {
            key(rng.below(2000) as u64)
        }
    });
    let probe = side(600, b'p', |_| key(rng.below(2000) as u64));
    let dir = SpillDir::new("join-faults");
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        let mut writes = 0;
        for n in 1.. {
            if !join_with_fault(dir.path(), &build, &probe, backend, Some(n), None) {
                break;
            }
            writes += 1;
        }
        let mut reads = 0;
        for n in 1.. {
            if !join_with_fault(dir.path(), &build, &probe, backend, None, Some(n)) {
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

#[test]
fn a_corrupt_spill_block_is_an_error() {
    let mut rng = Rng(10);
    let build = side(5000, b'b', |_| key(rng.below(4000) as u64));
    let probe = side(5000, b'p', |_| key(rng.below(4000) as u64));
    let dir = SpillDir::new("join-corrupt");
    let config = small_config();
    for n in [1, 5, 20] {
        let faulty: Arc<dyn SpillStore> = Arc::new(
            FaultyStore::new(store(dir.path(), IoBackend::Sync), None, None).corrupt_write(n),
        );
        let error = run(
            dir.path(),
            faulty,
            &build,
            &probe,
            config.memory_segments_min(),
            JoinType::Inner,
            config,
        )
        .unwrap_err();
        assert!(
            matches!(error, KernelError::CorruptSpill { .. }),
            "block {n}: {error}"
        );
    }
}

fn arbitrary_side() -> impl Strategy<Value = Vec<Rec>> {
    // Mostly short keys from a small alphabet (many duplicates, a few thousand distinct),
    // sometimes the empty key.
    let key = prop_oneof![
        1 => Just(Vec::new()),
        30 => prop::collection::vec(0u8..8, 1..5),
    ];
    let record = prop::collection::vec(any::<u8>(), 0..120);
    prop::collection::vec((key, record), 0..2500)
}

fn arbitrary_join_type() -> impl Strategy<Value = JoinType> {
    prop::sample::select(JoinType::ALL.to_vec())
}

fn arbitrary_config() -> impl Strategy<Value = JoinConfig> {
    (10usize..20, 0usize..3, any::<u64>()).prop_map(|(partitions, depth, seed)| JoinConfig {
        partitions: Some(partitions),
        recursion_depth_max: depth,
        seed,
        ..small_config()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_types_and_budgets_match_the_nested_loop(
        build in arbitrary_side(),
        probe in arbitrary_side(),
        join_type in arbitrary_join_type(),
        extra in 0usize..40,
        config in arbitrary_config(),
    ) {
        let dir = SpillDir::new("join-proptest");
        let segments = config.memory_segments_min() + extra;
        let (rows, _) = run(
            dir.path(),
            store(dir.path(), IoBackend::Sync),
            &build,
            &probe,
            segments,
            join_type,
            config,
        )
        .unwrap();
        prop_assert!(rows == model(&build, &probe, join_type));
    }
}

/// LZ4-compressed runs on the io_uring backend: a level of recursion and a sort-merge.
#[test]
fn compressed_spills_on_io_uring() {
    let mut rng = Rng(11);
    let build = side(6000, b'b', |i| {
        if i % 2 == 0 {
            key(3)
        } else {
            key(rng.below(3000) as u64)
        }
    });
    let probe = side(1500, b'p', |i| {
        if i % 100 == 0 {
            key(3)
        } else {
            key(rng.below(4000) as u64)
        }
    });
    let dir = SpillDir::new("join-lz4");
    let scratch = manager(64);
    let config = JoinConfig {
        compress: true,
        ..small_config()
    };
    for join_type in JoinType::ALL {
        let mut spill = SpillConfig::new(dir.path().to_path_buf());
        spill.allow_memory_filesystem = true;
        spill.backend = Some(IoBackend::IoUring);
        spill.scratch = Some(scratch.owner("spill/lz4"));
        let store = open_store(&spill).unwrap();
        let segments = config.memory_segments_min();
        let (rows, stats) = run(
            dir.path(),
            store,
            &build,
            &probe,
            segments,
            join_type,
            config,
        )
        .unwrap();
        assert!(rows == model(&build, &probe, join_type), "{join_type:?}");
        assert!(
            stats.recursion_depth_max >= 1 && stats.sort_merge_fallbacks > 0,
            "{join_type:?}: {stats:?}"
        );
    }
    scratch.leak_check().unwrap();
}

/// An error of the caller's `emit` comes back from `probe`; the join is dropped cleanly.
#[test]
fn an_error_of_emit_is_returned() {
    let dir = SpillDir::new("join-emit");
    let manager = manager(200);
    let owner = manager.owner("join");
    let store = store(dir.path(), IoBackend::Sync);
    let mut join = HashJoin::new(&owner, 200, store, JoinType::Inner, small_config()).unwrap();
    for i in 0..100u64 {
        join.push_build(&key(i % 10), b"build").unwrap();
    }
    join.finish_build().unwrap();
    let mut rows = 0;
    let error = join
        .probe(&key(4), b"probe", |_| {
            rows += 1;
            if rows == 3 {
                return Err(KernelError::Malformed {
                    position: 3,
                    what: "the caller's sink is full",
                });
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(rows, 3, "no row after the error");
    assert!(error.to_string().contains("sink is full"), "{error}");
    drop(join);
    manager.leak_check().unwrap();
    dir.assert_empty();
}

/// A stream whose spilled run is corrupt fails once, then refuses to go on.
#[test]
fn a_stream_that_failed_must_be_dropped() {
    let mut rng = Rng(12);
    let build = side(5000, b'b', |_| key(rng.below(4000) as u64));
    let dir = SpillDir::new("join-failed-stream");
    let config = small_config();
    let segments = config.memory_segments_min();
    let manager = manager(segments);
    let faulty: Arc<dyn SpillStore> =
        Arc::new(FaultyStore::new(store(dir.path(), IoBackend::Sync), None, None).corrupt_write(1));
    let owner = manager.owner("join");
    let mut join = HashJoin::new(&owner, segments, faulty, JoinType::RightOuter, config).unwrap();
    for (key, record) in &build {
        join.push_build(key, record).unwrap();
    }
    join.finish_build().unwrap();
    let mut stream = join.finish().unwrap();
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
