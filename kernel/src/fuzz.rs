//! Fuzz targets as plain functions: cargo-fuzz (nightly) calls them from `fuzz/`, and the
//! stable smoke test (`kernel/tests/fuzz_smoke.rs`) runs them on seeded inputs.
//!
//! Each one turns arbitrary bytes into a small job (records, a budget, damage to a spill
//! file), runs it through the kernel and compares the outcome with a model. A finding is a
//! panic: a wrong answer, a segment that did not come home, a spill file left behind, or a
//! panic inside the kernel on bad input. Budgets are tiny (4 KiB segments, a few dozen of
//! them) so the spilling, recursive and fallback paths run, and inputs are bounded so one
//! run takes milliseconds.
//!
//! Spill files go to one directory per process in the system temp directory, checked empty
//! after every run; the portable backend is used (an io_uring ring per run would dominate).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::constants::SPILL_BLOCK_HEADER_SIZE;
use crate::error::KernelError;
use crate::hash::{
    AggregateConfig, Composite, ConcatBytes, Count, HashAggregate, HashJoin, JoinConfig, JoinType,
    SumI64,
};
use crate::memory::{MemoryConfig, MemoryManager, Owner};
use crate::sort::{ExternalSorter, SortConfig};
use crate::spill::{IoBackend, RunOptions, SpillConfig, SpillRun, SpillStore, fault, open_store};

/// The segment size of every target: the smallest, so small inputs spill.
const SEGMENT_SIZE: usize = 4096;
/// Records per input at most.
const RECORDS_MAX: usize = 3000;

/// Reads numbers from the fuzzer's bytes; zeros once they run out.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&byte, rest)) => {
                self.data = rest;
                byte
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.u16()) % n.max(1)
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// `len` bytes from an alphabet of `alphabet` values (small alphabets collide).
    fn bytes(&mut self, len: usize, alphabet: u8) -> Vec<u8> {
        (0..len).map(|_| self.u8() % alphabet.max(1)).collect()
    }
}

/// This thread's spill directory for fuzz runs (one per thread: the smoke tests run the
/// targets in parallel, and each checks its directory empty).
fn spill_dir() -> PathBuf {
    thread_local! {
        static DIR: SpillDir = {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let thread = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("weir-fuzz-{}-{thread}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("the fuzz spill directory can be created");
            SpillDir(dir)
        };
    }
    DIR.with(|dir| dir.0.clone())
}

/// A thread's fuzz spill directory, removed when the thread ends (if empty: every
/// target checks that it left no file there).
struct SpillDir(PathBuf);

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn store() -> Arc<dyn SpillStore> {
    let mut config = SpillConfig::new(spill_dir());
    config.backend = Some(IoBackend::Sync);
    open_store(&config).expect("the fuzz spill directory is writable")
}

fn manager(segments: usize) -> MemoryManager {
    MemoryManager::new(MemoryConfig {
        segment_size: SEGMENT_SIZE,
        ..MemoryConfig::with_budget(segments * SEGMENT_SIZE)
    })
    .expect("a valid manager")
}

/// The checks every target ends with: every segment home, no spill file left.
fn assert_clean(manager: &MemoryManager) {
    manager.leak_check().expect("every segment came home");
    let left = std::fs::read_dir(spill_dir()).map_or(0, Iterator::count);
    assert_eq!(left, 0, "no spill file is left");
}

/// A run of blocks built from the input, damaged at input-chosen bytes (or torn), read
/// back: the reader returns exactly the blocks written or an error — never other bytes,
/// never a panic. Undamaged, it must return them.
///
/// # Panics
///
/// On a finding.
pub fn spill_block_read(data: &[u8]) {
    let mut input = Input { data };
    let manager = manager(16);
    let owner = manager.owner("fuzz");
    let store = store();
    let payload_max = SEGMENT_SIZE - SPILL_BLOCK_HEADER_SIZE;
    let payloads: Vec<Vec<u8>> = (0..1 + input.below(4))
        .map(|_| {
            let len = input.below(payload_max + 1);
            let alphabet = if input.u8().is_multiple_of(2) { 4 } else { 255 };
            input
                .bytes(len.min(64), alphabet)
                .repeat(len.div_ceil(64).max(1))[..len]
                .to_vec()
        })
        .collect();
    let compress = input.u8() % 2 == 1;
    {
        let mut config = SpillConfig::new(spill_dir());
        config.backend = Some(IoBackend::Sync);
        config.compress = compress;
        config.scratch = Some(manager.owner("fuzz lz4"));
        let store = open_store(&config).expect("the fuzz spill directory is writable");
        let run = write_run(&*store, &owner, &payloads, compress).expect("a run can be written");
        let disk = run.disk_bytes().max(1);
        let mut damaged = false;
        for _ in 0..input.below(3) {
            let offset = u64::from(input.u32()) % disk;
            let mask = input.u8() | 1;
            fault::corrupt_byte(&run, offset, mask).expect("a byte can be flipped");
            damaged = true;
        }
        if input.u8() % 8 == 7 {
            fault::truncate(&run, u64::from(input.u32()) % disk).expect("a run can be cut");
            damaged = true;
        }
        match read_run(&*store, &owner, &run) {
            Ok(read) => assert_eq!(read, payloads, "a run reads back as written"),
            Err(error) => assert!(damaged, "an undamaged run fails to read: {error}"),
        }
    }
    drop(store);
    assert_clean(&manager);
}

fn write_run(
    store: &dyn SpillStore,
    owner: &Owner,
    payloads: &[Vec<u8>],
    compress: bool,
) -> Result<SpillRun, KernelError> {
    let options = RunOptions {
        compress,
        ..RunOptions::default()
    };
    let mut spare = owner.allocate(options.write_behind + 1)?;
    let mut writer = store.create_run(options)?;
    for payload in payloads {
        let mut segment = spare.pop().expect("the writer returns segments in time");
        segment.put_bytes(SPILL_BLOCK_HEADER_SIZE, payload);
        if let Some(done) = writer.write_block(segment, payload.len())? {
            spare.push(done);
        }
    }
    let (run, _segments) = writer.finish()?;
    Ok(run)
}

fn read_run(
    store: &dyn SpillStore,
    owner: &Owner,
    run: &SpillRun,
) -> Result<Vec<Vec<u8>>, KernelError> {
    let mut reader = store.open_run(run, owner.allocate(2)?)?;
    let mut payloads = Vec::new();
    while let Some(block) = reader.next_block()? {
        payloads.push(block.segment.as_slice()[block.payload.clone()].to_vec());
        reader.recycle(block.segment);
    }
    Ok(payloads)
}

/// Records as (key, value): keys of 0–12 input bytes from a small alphabet (many equal
/// keys), repeated 1–8 times; values of 0 to 255 × `scale` bytes spun from one input
/// byte (so a few kilobytes of input make enough data to spill).
fn records(input: &mut Input<'_>, scale: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let alphabet = 2 + input.u8() % 30;
    let mut records = Vec::new();
    while !input.is_empty() && records.len() < RECORDS_MAX {
        let key_len = usize::from(input.u8() % 13);
        let key = input
            .bytes(key_len, alphabet)
            .repeat(1 + usize::from(input.u8() % 8));
        let value_len = usize::from(input.u8()) * scale;
        let seed = input.u8();
        let value = (0..value_len)
            .map(|i| {
                seed.wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(7))
            })
            .collect();
        records.push((key, value));
    }
    records
}

/// Records of arbitrary keys and values, sorted by the external sorter under a budget the
/// input chooses (from the minimum up): the keys come out in order and the (key, value)
/// pairs are those pushed.
///
/// Returns the bytes spilled (for the smoke test to see the spilling paths run).
///
/// # Panics
///
/// On a finding.
pub fn sort_vs_model(data: &[u8]) -> u64 {
    let mut input = Input { data };
    let config = SortConfig::default();
    let segments = config.memory_segments_min() + input.below(24);
    let manager = manager(segments);
    let spilled;
    {
        let input_records = records(&mut input, 3);
        let mut sorter =
            ExternalSorter::new(&manager.owner("fuzz sort"), segments, store(), config)
                .expect("a sorter at its minimum");
        for (key, value) in &input_records {
            sorter
                .push(key, value)
                .expect("the spill directory has room");
        }
        let mut sorted = sorter.finish().expect("the merge succeeds");
        spilled = sorted.stats().spilled_bytes;
        let mut out = Vec::new();
        while let Some((key, value)) = sorted.next().expect("the merge succeeds") {
            out.push((key.to_vec(), value.to_vec()));
        }
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0), "keys in order");
        let mut expected = input_records;
        expected.sort();
        out.sort();
        assert_eq!(out, expected, "the records pushed, each once");
    }
    assert_clean(&manager);
    spilled
}

/// Per key, either SUM and COUNT of an `i64` (fixed-size accumulators, updated in place)
/// or every 4-byte piece of the values concatenated (variable-size accumulators that grow),
/// through the hash aggregation under a budget and a partition count the input chooses
/// (spilling, recursion and the sort fallback run on small budgets and hot keys), against
/// a `BTreeMap`.
///
/// Returns the bytes spilled.
///
/// # Panics
///
/// On a finding.
#[allow(
    clippy::too_many_lines,
    reason = "a fuzz target is one script: decode the operations, run them on the aggregation and the model, compare"
)]
pub fn hash_aggregate_vs_model(data: &[u8]) -> u64 {
    let mut input = Input { data };
    let concat = input.u8() % 2 == 1;
    let config = AggregateConfig {
        partitions: 1 << (1 + input.below(4)),
        seed: u64::from(input.u32()),
        ..AggregateConfig::default()
    };
    let segments = config.memory_segments_min() + input.below(16);
    let manager = manager(segments);
    let spilled;
    {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = records(&mut input, if concat { 2 } else { 0 })
            .into_iter()
            .map(|(key, value)| {
                if concat {
                    let len = value.len() / 4 * 4;
                    (key, value[..len].to_vec())
                } else {
                    let n = i64::from(key.len() as u8) * 1_000_003 - i64::from(value.len() as u16);
                    (key, n.to_le_bytes().to_vec())
                }
            })
            .collect();
        let aggregator: Box<dyn crate::hash::Aggregator> = if concat {
            Box::new(ConcatBytes)
        } else {
            Box::new(Composite::new(vec![
                Box::new(SumI64 { offset: 0 }),
                Box::new(Count),
            ]))
        };
        let mut aggregate = HashAggregate::new(
            &manager.owner("fuzz aggregate"),
            segments,
            store(),
            aggregator,
            config,
        )
        .expect("an aggregation at its minimum");
        let mut model: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for (key, value) in &pairs {
            aggregate
                .push(key, value)
                .expect("the spill directory has room");
            model.entry(key.clone()).or_default().push(value.clone());
        }
        let mut groups = aggregate.finish().expect("the aggregation finishes");
        let mut out = BTreeMap::new();
        while let Some((key, acc)) = groups.next().expect("the aggregation finishes") {
            let previous = out.insert(key.to_vec(), acc.to_vec());
            assert!(previous.is_none(), "one row per group");
        }
        spilled = groups.stats().spilled_bytes;
        let expected: BTreeMap<Vec<u8>, Vec<u8>> = model
            .into_iter()
            .map(|(key, values)| {
                let acc = if concat {
                    let mut pieces: Vec<&[u8]> = values.iter().flat_map(|v| v.chunks(4)).collect();
                    pieces.sort_unstable();
                    pieces.concat()
                } else {
                    let n = |v: &Vec<u8>| i64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
                    let sum = values.iter().map(n).fold(0i64, i64::wrapping_add);
                    [sum, values.len() as i64]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect()
                };
                (key, acc)
            })
            .collect();
        if concat {
            for acc in out.values_mut() {
                let mut pieces: Vec<&[u8]> = acc.chunks(4).collect();
                pieces.sort_unstable();
                *acc = pieces.concat();
            }
        }
        assert_eq!(out, expected, "the groups of a BTreeMap");
    }
    assert_clean(&manager);
    spilled
}

/// A join of arbitrary build and probe records of a type the input chooses, under a
/// budget the input chooses (spilling, recursion and the sort-merge fallback on small
/// budgets and hot keys), against a nested-loop join.
///
/// Returns the bytes spilled.
///
/// # Panics
///
/// On a finding.
#[allow(
    clippy::too_many_lines,
    reason = "a fuzz target is one script: decode the operations, run them on the join and the model, compare"
)]
pub fn hash_join_vs_model(data: &[u8]) -> u64 {
    let mut input = Input { data };
    let join_type = JoinType::ALL[input.below(JoinType::ALL.len())];
    let config = JoinConfig {
        seed: u64::from(input.u32()),
        ..JoinConfig::default()
    };
    let segments = config.memory_segments_min() + input.below(24);
    let manager = manager(segments);
    let spilled;
    {
        let build_share = usize::from(input.u8());
        let all = records(&mut input, 8);
        let split = all.len() * build_share / 255;
        let (build, probe) = all.split_at(split);
        let mut join = HashJoin::new(
            &manager.owner("fuzz join"),
            segments,
            store(),
            join_type,
            config,
        )
        .expect("a join at its minimum");
        for (key, record) in build {
            join.push_build(key, record)
                .expect("the spill directory has room");
        }
        join.finish_build().expect("the spill directory has room");
        type Row = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
        let mut out: Vec<Row> = Vec::new();
        let own = |row: crate::hash::JoinRow<'_>| -> Row {
            (
                row.key.to_vec(),
                row.probe.map(<[u8]>::to_vec),
                row.build.map(<[u8]>::to_vec),
            )
        };
        for (key, record) in probe {
            join.probe(key, record, |row| {
                out.push(own(row));
                Ok(())
            })
            .expect("the spill directory has room");
        }
        let mut rest = join.finish().expect("the join finishes");
        while let Some(row) = rest.next().expect("the join finishes") {
            out.push(own(row));
        }
        spilled = rest.stats().spilled_bytes;
        drop(rest);
        // The model: a nested-loop join, with the build side grouped by key first.
        let mut by_key: BTreeMap<&Vec<u8>, Vec<&Vec<u8>>> = BTreeMap::new();
        for (key, record) in build {
            by_key.entry(key).or_default().push(record);
        }
        let mut expected: Vec<Row> = Vec::new();
        for (key, left) in probe {
            let matches: &[&Vec<u8>] = by_key.get(key).map_or(&[], Vec::as_slice);
            match join_type {
                JoinType::Inner
                | JoinType::LeftOuter
                | JoinType::RightOuter
                | JoinType::FullOuter => {
                    for right in matches {
                        expected.push((key.clone(), Some(left.clone()), Some((*right).clone())));
                    }
                    let outer = matches!(join_type, JoinType::LeftOuter | JoinType::FullOuter);
                    if matches.is_empty() && outer {
                        expected.push((key.clone(), Some(left.clone()), None));
                    }
                }
                JoinType::LeftSemi if !matches.is_empty() => {
                    expected.push((key.clone(), Some(left.clone()), None))
                }
                JoinType::LeftAnti if matches.is_empty() => {
                    expected.push((key.clone(), Some(left.clone()), None))
                }
                _ => {}
            }
        }
        let probed: std::collections::BTreeSet<&Vec<u8>> = probe.iter().map(|(k, _)| k).collect();
        for (key, right) in build {
            let kept = match join_type {
                JoinType::RightOuter | JoinType::FullOuter | JoinType::RightAnti => {
                    !probed.contains(key)
                }
                JoinType::RightSemi => probed.contains(key),
                _ => false,
            };
            if kept {
                expected.push((key.clone(), None, Some(right.clone())));
            }
        }
        out.sort();
        expected.sort();
        assert_eq!(
            out, expected,
            "{join_type:?}: the rows of a nested-loop join"
        );
    }
    assert_clean(&manager);
    spilled
}
