//! Keyed state against a `HashMap` model: an operator loop that keeps, per key, the list
//! of values it was given (so state grows with the input) and removes a key when told,
//! at budgets from roomy to a state many times the memory (partitions spill, records are
//! deferred and replayed), random streams (proptest), both I/O backends, a partition
//! too large for the table (a clear error), and a corrupt run. Every test ends with
//! every segment home and no spill file left.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::{Rng, SpillDir, manager};
use proptest::prelude::*;

use weir_kernel::KernelError;
use weir_kernel::hash::{KeyedState, Lookup, StateConfig};
use weir_kernel::memory::MemoryManager;
use weir_kernel::spill::{IoBackend, SpillConfig, SpillStore, open_store};

fn store(dir: &Path, backend: IoBackend) -> Arc<dyn SpillStore> {
    let mut config = SpillConfig::new(dir.to_path_buf());
    config.allow_memory_filesystem = true;
    config.backend = Some(backend);
    open_store(&config).unwrap()
}

/// One input record: append `value` to `key`'s list, or (value 0) remove the key and
/// emit its list.
type Op = (u32, u32);

/// What the operator emits: each removed key and its list.
type Emitted = Vec<(u32, Vec<u32>)>;

fn encode(op: Op) -> [u8; 8] {
    let mut bytes = [0; 8];
    bytes[..4].copy_from_slice(&op.0.to_le_bytes());
    bytes[4..].copy_from_slice(&op.1.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Op {
    (
        u32::from_le_bytes(bytes[..4].try_into().unwrap()),
        u32::from_le_bytes(bytes[4..8].try_into().unwrap()),
    )
}

/// Applies one record to resident state.
fn apply(state: &mut KeyedState, op: Op, out: &mut Emitted) -> Result<(), KernelError> {
    let key = op.0.to_le_bytes();
    let hash = state.hash(&key);
    let mut list: Vec<u8> = match state.get(hash, &key) {
        Lookup::Value(value) => value.to_vec(),
        Lookup::Absent => Vec::new(),
        Lookup::Spilled => panic!("apply to a spilled key"),
    };
    if op.1 == 0 {
        let values = list
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.push((op.0, values));
        state.remove(hash, &key)
    } else {
        list.extend_from_slice(&op.1.to_le_bytes());
        state.put(hash, &key, &list)
    }
}

/// The operator loop: each record applied, or deferred while its partition is spilled
/// (draining the log when the deferral share is full); at the end every
/// spilled partition is brought back and its records replayed.
fn run(state: &mut KeyedState, input: &[Op]) -> Result<Emitted, KernelError> {
    let mut out = Vec::new();
    for &op in input {
        let key = op.0.to_le_bytes();
        let hash = state.hash(&key);
        loop {
            if state.is_resident(state.partition_of(hash)) {
                apply(state, op, &mut out)?;
                break;
            }
            if state.defer(hash, &encode(op))? {
                break;
            }
            state.drain(|state, bytes| apply(state, decode(bytes), &mut out))?;
        }
    }
    state.drain(|state, bytes| apply(state, decode(bytes), &mut out))?;
    Ok(out)
}

/// The model: the same loop over a `HashMap`, plus what stays at the end.
fn model(input: &[Op]) -> (Emitted, HashMap<u32, Vec<u32>>) {
    let mut lists: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut out = Vec::new();
    for &(key, value) in input {
        if value == 0 {
            out.push((key, lists.remove(&key).unwrap_or_default()));
        } else {
            lists.entry(key).or_default().push(value);
        }
    }
    (out, lists)
}

/// What stays in the state at the end, read key by key (every log is empty by then).
fn remaining(state: &mut KeyedState, keys: impl Iterator<Item = u32>) -> HashMap<u32, Vec<u32>> {
    let mut lists = HashMap::new();
    for key in keys {
        let bytes = key.to_le_bytes();
        let hash = state.hash(&bytes);
        let partition = state.partition_of(hash);
        if !state.is_resident(partition) {
            // Bringing one partition back spills others: read them one at a time.
            state
                .restore(partition, |_, _| {
                    panic!("a record left in a log at the end")
                })
                .unwrap();
        }
        match state.get(hash, &bytes) {
            Lookup::Value(value) => {
                let values = value
                    .chunks(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                lists.insert(key, values);
            }
            Lookup::Absent => {}
            Lookup::Spilled => panic!("key {key} still spilled at the end"),
        }
    }
    lists
}

fn sorted(mut emitted: Emitted) -> Emitted {
    emitted.sort();
    emitted
}

/// Runs `input` at `segments` of memory and checks it against the model; returns the
/// state's stats.
fn check(
    manager: &MemoryManager,
    dir: &SpillDir,
    backend: IoBackend,
    segments: usize,
    input: &[Op],
) -> weir_kernel::hash::StateStats {
    let owner = manager.owner("keyed-state");
    let mut state = KeyedState::new(
        &owner,
        segments,
        store(dir.path(), backend),
        StateConfig::default(),
    )
    .unwrap();
    let out = run(&mut state, input).unwrap();
    let (expected, lists) = model(input);
    // Each key's records are applied in order, but keys of a spilled partition later.
    assert_eq!(sorted(out), sorted(expected));
    let keys = input
        .iter()
        .map(|op| op.0)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(remaining(&mut state, keys.into_iter()), lists);
    let stats = state.stats();
    drop(state.into_memory());
    manager.release_all(&owner).unwrap();
    manager.leak_check().unwrap();
    dir.assert_empty();
    stats
}

fn input(seed: u64, records: usize, keys: usize, remove_percent: u64) -> Vec<Op> {
    let mut rng = Rng(seed);
    (0..records)
        .map(|_| {
            let key = rng.below(keys) as u32;
            let value = if rng.next() % 100 < remove_percent {
                0
            } else {
                1 + (rng.next() % 1000) as u32
            };
            (key, value)
        })
        .collect()
}

#[test]
fn state_that_fits_never_spills() {
    let manager = manager(256);
    let dir = SpillDir::new("state-fits");
    let stats = check(
        &manager,
        &dir,
        IoBackend::Sync,
        256,
        &input(1, 5000, 300, 10),
    );
    assert_eq!(stats.partition_spills, 0);
    assert_eq!(stats.deferred_records, 0);
}

#[test]
fn state_many_times_the_memory_spills_defers_and_replays_to_the_same_answer() {
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        let manager = manager(64);
        let dir = SpillDir::new("state-spills");
        // 4000 keys of ~30 values of 4 bytes: about 600 KiB of state in 64 × 4 KiB.
        let input = input(2, 120_000, 4000, 2);
        let stats = check(&manager, &dir, backend, 64, &input);
        assert!(
            stats.partition_spills > 0 && stats.restores > 0,
            "{stats:?}"
        );
        assert!(stats.deferred_records > 0, "{stats:?}");
        assert!(stats.spilled_bytes > 4 * 64 * 4096, "{stats:?}");
    }
}

#[test]
fn a_partition_larger_than_the_table_is_a_clear_error() {
    let manager = manager(64);
    let dir = SpillDir::new("state-too-large");
    let owner = manager.owner("keyed-state");
    let config = StateConfig {
        partitions: 2,
        ..StateConfig::default()
    };
    let mut state =
        KeyedState::new(&owner, 64, store(dir.path(), IoBackend::Sync), config).unwrap();
    // One key whose list outgrows the table.
    let ops: Vec<Op> = (1..=60_000).map(|v| (7, v)).collect();
    let err = run(&mut state, &ops).unwrap_err();
    assert!(err.is_budget_exceeded(), "{err}");
    assert!(err.to_string().contains("keyed state"), "{err}");
    drop(state.into_memory());
    manager.release_all(&owner).unwrap();
    manager.leak_check().unwrap();
    dir.assert_empty();
}

#[test]
#[should_panic(expected = "while partition")]
fn a_replay_writing_another_spilled_partition_panics_rather_than_lose_the_write() {
    let manager = manager(64);
    let dir = SpillDir::new("state-replay-other");
    let owner = manager.owner("keyed-state");
    let config = StateConfig {
        partitions: 4,
        ..StateConfig::default()
    };
    let mut state =
        KeyedState::new(&owner, 32, store(dir.path(), IoBackend::Sync), config).unwrap();
    let mut key = 0u32;
    while state.spilled().len() < 2 {
        let bytes = key.to_le_bytes();
        let hash = state.hash(&bytes);
        if state.is_resident(state.partition_of(hash)) {
            state.put(hash, &bytes, &[7; 64]).unwrap();
        }
        key += 1;
    }
    let spilled = state.spilled();
    let key_of = |state: &KeyedState, partition: usize| {
        (0u32..)
            .map(u32::to_le_bytes)
            .find(|bytes| state.partition_of(state.hash(bytes)) == partition)
            .unwrap()
    };
    let (first, second) = (key_of(&state, spilled[0]), key_of(&state, spilled[1]));
    assert!(state.defer(state.hash(&first), b"a record").unwrap());
    let _ = state.restore(spilled[0], |state, _| {
        let hash = state.hash(&second);
        state.put(hash, &second, b"lost?")
    });
}

#[test]
fn too_little_memory_is_refused_naming_the_minimum() {
    let manager = manager(64);
    let dir = SpillDir::new("state-min");
    let owner = manager.owner("keyed-state");
    let min = StateConfig::default().memory_segments_min();
    let err = KeyedState::new(
        &owner,
        min - 1,
        store(dir.path(), IoBackend::Sync),
        StateConfig::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("minimum"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_streams_and_budgets_match_the_model(
        seed in any::<u64>(),
        records in 0usize..20_000,
        keys in 1usize..3000,
        remove_percent in 0u64..30,
        segments in 16usize..80,
    ) {
        let manager = manager(80);
        let dir = SpillDir::new(&format!("state-prop-{seed}"));
        check(&manager, &dir, IoBackend::Sync, segments, &input(seed, records, keys, remove_percent));
    }
}

/// Every value `snapshot` hands out, decoded.
fn snapshot_lists(state: &mut KeyedState) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut entries = Vec::new();
    state
        .snapshot(|key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            Ok::<(), KernelError>(())
        })
        .unwrap();
    entries
}

#[test]
fn a_snapshot_of_spilled_state_rebuilds_it_in_a_fresh_state_of_the_same_memory() {
    let manager = manager(64);
    let dir = SpillDir::new("state-snapshot");
    let input = input(5, 120_000, 4000, 2);
    let (_, lists) = model(&input);
    let owner = manager.owner("keyed-state");
    let new_state = || {
        KeyedState::new(
            &owner,
            64,
            store(dir.path(), IoBackend::Sync),
            StateConfig::default(),
        )
        .unwrap()
    };
    let mut state = new_state();
    run(&mut state, &input).unwrap();
    assert!(!state.spilled().is_empty(), "nothing spilled");
    let entries = snapshot_lists(&mut state);
    // Taking it changes nothing: a second one is the same.
    assert_eq!(snapshot_lists(&mut state), entries);
    let decoded: HashMap<u32, Vec<u32>> = entries
        .iter()
        .map(|(key, value)| {
            let values = value
                .chunks(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (u32::from_le_bytes(key[..4].try_into().unwrap()), values)
        })
        .collect();
    assert_eq!(decoded.len(), entries.len(), "a key handed out twice");
    assert_eq!(decoded, lists);
    drop(state.into_memory());

    let mut restored = new_state();
    for (key, value) in &entries {
        let hash = restored.hash(key);
        restored.put(hash, key, value).unwrap();
    }
    assert_eq!(restored.deferred_bytes(), 0, "a put went to a log");
    assert_eq!(remaining(&mut restored, lists.keys().copied()), lists);
    drop(restored.into_memory());
    manager.release_all(&owner).unwrap();
    manager.leak_check().unwrap();
    dir.assert_empty();
}

#[test]
fn a_snapshot_with_records_waiting_is_refused() {
    let manager = manager(64);
    let dir = SpillDir::new("state-snapshot-waiting");
    let owner = manager.owner("keyed-state");
    let mut state = KeyedState::new(
        &owner,
        64,
        store(dir.path(), IoBackend::Sync),
        StateConfig::default(),
    )
    .unwrap();
    // Fill until a partition spills, then defer a record for it.
    let mut key = 0u32;
    while state.spilled().is_empty() {
        let bytes = key.to_le_bytes();
        let hash = state.hash(&bytes);
        state.put(hash, &bytes, &[7; 64]).unwrap();
        key += 1;
    }
    let spilled = state.spilled()[0];
    let key = (0..)
        .map(u32::to_le_bytes)
        .find(|k| state.partition_of(state.hash(k)) == spilled);
    let key = key.unwrap();
    assert!(state.defer(state.hash(&key), b"a record").unwrap());
    let err = state
        .snapshot(|_, _| Ok::<(), KernelError>(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("drain first"), "{err}");
    state.drain(|_, _| Ok(())).unwrap();
    drop(state.into_memory());
    manager.release_all(&owner).unwrap();
    manager.leak_check().unwrap();
    dir.assert_empty();
}
