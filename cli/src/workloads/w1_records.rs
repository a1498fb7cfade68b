//! W1 records: the external-sort workload's input, byte for byte as docs/WORKLOADS.md
//! specifies it, and its order-independent checksum.
//!
//! ```text
//!   record i (100 bytes):
//!   [0..10)  key: LE bytes of x(2i+1), then the 2 low bytes of x(2i+2), LE
//!   [10..26) i as 16 lowercase hex digits
//!   [26..99) filler: byte j = 'A' + (i + j) % 26
//!   [99]     '\n'
//!   x(k) = splitmix64 mix(seed + k * 0x9E3779B97F4A7C15)
//! ```

/// Bytes in a W1 record.
pub const RECORD_SIZE: usize = 100;

/// Bytes of a W1 record that are its sort key.
pub const KEY_SIZE: usize = 10;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
const FILLER: usize = 73;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The k-th value (k ≥ 1) of the splitmix64 sequence for `seed`.
fn x(seed: u64, k: u64) -> u64 {
    mix(seed.wrapping_add(k.wrapping_mul(GAMMA)))
}

/// Writes record `i` of the input for `seed` into `out`.
pub fn record(seed: u64, i: u64, out: &mut [u8; RECORD_SIZE]) {
    let first = x(seed, 2 * i + 1).to_le_bytes();
    let second = x(seed, 2 * i + 2).to_le_bytes();
    out[..8].copy_from_slice(&first);
    out[8..10].copy_from_slice(&second[..2]);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (d, byte) in out[10..26].iter_mut().enumerate() {
        *byte = HEX[((i >> (4 * (15 - d))) & 0xf) as usize];
    }
    for (j, byte) in out[26..26 + FILLER].iter_mut().enumerate() {
        *byte = b'A' + ((i + j as u64) % 26) as u8;
    }
    out[RECORD_SIZE - 1] = b'\n';
}

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The order-independent checksum of a set of records: wrapping sum of their FNV-1a hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checksum {
    /// Records summed.
    pub records: u64,
    /// The wrapping sum of their hashes.
    pub sum: u64,
}

impl Checksum {
    /// Adds one record.
    #[inline]
    pub fn add(&mut self, record: &[u8]) {
        self.records += 1;
        self.sum = self.sum.wrapping_add(fnv1a(record));
    }
}

/// Checks that records arrive in key order, one at a time.
#[derive(Debug, Clone, Default)]
pub struct OrderCheck {
    previous: Option<[u8; KEY_SIZE]>,
    /// Records seen out of order.
    pub violations: u64,
}

impl OrderCheck {
    /// Checks `record` against the one before it.
    ///
    /// # Panics
    ///
    /// When `record` is shorter than a key.
    #[inline]
    pub fn check(&mut self, record: &[u8]) {
        let key: [u8; KEY_SIZE] = record[..KEY_SIZE].try_into().expect("a W1 record");
        if self.previous.is_some_and(|previous| previous > key) {
            self.violations += 1;
        }
        self.previous = Some(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_matches_the_specification() {
        let mut out = [0; RECORD_SIZE];
        record(42, 0, &mut out);
        assert_eq!(&out[10..26], b"0000000000000000");
        assert_eq!(out[26], b'A');
        assert_eq!(out[27], b'B');
        assert_eq!(out[98], b'A' + (72 % 26) as u8);
        assert_eq!(out[99], b'\n');
        assert_eq!(&out[..8], &x(42, 1).to_le_bytes());
        assert_eq!(&out[8..10], &x(42, 2).to_le_bytes()[..2]);
        record(42, 0x1f, &mut out);
        assert_eq!(&out[10..26], b"000000000000001f");
        assert_eq!(out[26], b'A' + (0x1f % 26) as u8);
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // splitmix64 seeded with 0: the published first output.
        assert_eq!(x(0, 1), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn checksum_ignores_order() {
        let (mut a, mut b) = (Checksum::default(), Checksum::default());
        a.add(b"one");
        a.add(b"two");
        b.add(b"two");
        b.add(b"one");
        assert_eq!(a, b);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
