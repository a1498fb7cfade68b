//! Runs the fuzz targets of `weir_kernel::fuzz` on stable with seeded inputs (cargo-fuzz
//! needs nightly): seeded random bytes of many lengths, plus inputs shaped to reach the
//! interesting paths (one hot key, tiny budgets, damaged blocks).

use weir_kernel::fuzz;

/// splitmix64.
fn inputs(seed: u64, count: usize, len_max: usize) -> Vec<Vec<u8>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|i| {
            let len = (next() as usize) % (len_max * (i % 4 + 1) / 4 + 1);
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

#[test]
fn spill_block_read_survives_seeded_inputs() {
    fuzz::spill_block_read(&[]);
    for input in inputs(1, 300, 64) {
        fuzz::spill_block_read(&input);
    }
}

#[test]
fn sort_matches_its_model_on_seeded_inputs() {
    fuzz::sort_vs_model(&[]);
    let spilled = inputs(2, 40, 8_000)
        .iter()
        .filter(|i| fuzz::sort_vs_model(i) > 0)
        .count();
    assert!(spilled >= 5, "{spilled} of 40 inputs spilled");
}

#[test]
fn hash_aggregate_matches_its_model_on_seeded_inputs() {
    fuzz::hash_aggregate_vs_model(&[]);
    let spilled = inputs(3, 40, 8_000)
        .iter()
        .filter(|i| fuzz::hash_aggregate_vs_model(i) > 0)
        .count();
    assert!(spilled >= 5, "{spilled} of 40 inputs spilled");
    // One hot key: the alphabet byte 0 makes every key empty or zeros.
    let mut hot = vec![0u8; 8];
    hot.extend(std::iter::repeat_n([0u8, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8], 900).flatten());
    fuzz::hash_aggregate_vs_model(&hot);
}

#[test]
fn hash_join_matches_its_model_on_seeded_inputs() {
    fuzz::hash_join_vs_model(&[]);
    let spilled = inputs(4, 40, 8_000)
        .iter()
        .filter(|i| fuzz::hash_join_vs_model(i) > 0)
        .count();
    assert!(spilled >= 5, "{spilled} of 40 inputs spilled");
}

/// A fuzz target and its name.
type Target = (&'static str, fn(&[u8]));

/// The seeds checked in for cargo-fuzz (`fuzz/seeds/TARGET/`) pass too.
#[test]
fn the_checked_in_seeds_pass() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let targets: [Target; 4] = [
        ("spill_block_read", fuzz::spill_block_read),
        ("sort_vs_model", |d| {
            fuzz::sort_vs_model(d);
        }),
        ("hash_aggregate_vs_model", |d| {
            fuzz::hash_aggregate_vs_model(d);
        }),
        ("hash_join_vs_model", |d| {
            fuzz::hash_join_vs_model(d);
        }),
    ];
    for (target, run) in targets {
        let dir = seeds.join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            run(&std::fs::read(entry.unwrap().path()).unwrap());
            count += 1;
        }
        assert!(count > 0, "seeds in {}", dir.display());
    }
}
