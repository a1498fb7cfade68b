//! Runs the fuzz targets of `weir_serde_fmt::fuzz` on stable, with seeded inputs, so
//! `cargo test` exercises them everywhere (cargo-fuzz needs nightly).
//!
//! Inputs mix plain random bytes with mutated valid encodings, so decoding gets past the
//! first few bytes and into nested values. A failure prints the seed and input index;
//! rerun with that seed to reproduce.

use std::time::Instant;

use weir_serde_fmt::fuzz;

const INPUTS_PER_TARGET: usize = 100_000;
const SEED: u64 = 0x5eed_f022;

/// splitmix64: tiny, seeded, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Bytes that sit on the format's boundaries: tags, varint continuation, escapes.
const INTERESTING: [u8; 8] = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0x10];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let at = rng.below(input.len().max(1));
        match rng.below(6) {
            0 if !input.is_empty() => input[at] ^= 1 << rng.below(8),
            1 if !input.is_empty() => input[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => input.truncate(at),
            3 => input.insert(
                at.min(input.len()),
                INTERESTING[rng.below(INTERESTING.len())],
            ),
            4 if !input.is_empty() => {
                let end = (at + rng.below(8)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
            _ => {
                let len = rng.below(4);
                input.extend(rng.bytes(len));
            }
        }
    }
}

/// Runs `target` on `INPUTS_PER_TARGET` inputs: a third random, the rest mutated samples.
fn run(name: &str, target: fn(&[u8]), sample: fn(&[u8]) -> Vec<u8>) {
    let mut rng = Rng(SEED);
    let pool: Vec<Vec<u8>> = (0..256).map(|_| sample(&rng.bytes(256))).collect();
    let started = Instant::now();
    for index in 0..INPUTS_PER_TARGET {
        let input = match index % 3 {
            0 => {
                let len = rng.below(96);
                rng.bytes(len)
            }
            _ => {
                let mut input = pool[rng.below(pool.len())].clone();
                if index % 9 != 1 {
                    mutate(&mut rng, &mut input);
                }
                input
            }
        };
        let outcome = std::panic::catch_unwind(|| target(&input));
        assert!(
            outcome.is_ok(),
            "{name}: seed {SEED:#x}, input {index}: {input:02x?}"
        );
    }
    eprintln!(
        "{name}: {INPUTS_PER_TARGET} inputs in {:.2?}",
        started.elapsed()
    );
}

#[test]
fn record_decode_smoke() {
    run("record_decode", fuzz::record_decode, fuzz::record_sample);
}

#[test]
fn key_order_roundtrip_smoke() {
    run(
        "key_order_roundtrip",
        fuzz::key_order_roundtrip,
        fuzz::key_sample,
    );
}
