//! Fuzz targets as plain functions.
//!
//! `fuzz/` (cargo-fuzz, nightly) calls these from `fuzz_target!`, and
//! `tests/fuzz_smoke.rs` calls them on stable with seeded inputs, so every CI run
//! exercises them. Each panics (the fuzzer's signal) exactly when a property fails:
//!
//! - [`record_decode`]: arbitrary bytes decode into a representative record type without
//!   panic, overflow or outsized allocation; whatever decodes re-encodes and decodes to
//!   the same value.
//! - [`key_order_roundtrip`]: two keys derived from the bytes by a small byte-driven
//!   generator compare as bytes exactly as they compare as values, and decode back; the
//!   raw bytes, decoded as a key, re-encode to themselves (the key format is canonical).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Descending, RecordReader, key};

/// Decodes `data` as a record; see the module docs.
///
/// # Panics
///
/// When a decoded record does not survive re-encoding: that is a bug.
pub fn record_decode(data: &[u8]) {
    if let Ok(record) = crate::from_slice::<FuzzRecord<'_>>(data) {
        let bytes = crate::to_vec(&record).expect("a decoded record encodes");
        // Map entries can only collapse (duplicate keys), never grow.
        assert!(
            bytes.len() <= data.len(),
            "{} > {}",
            bytes.len(),
            data.len()
        );
        assert_eq!(crate::serialized_size(&record).expect("sizes"), bytes.len());
        let again: FuzzRecord<'_> = crate::from_slice(&bytes).expect("re-encoded record decodes");
        assert_eq!(again, record);
        assert_eq!(
            crate::to_vec(&again).expect("encodes"),
            bytes,
            "encoding is not stable"
        );
    }
    // The same bytes as a stream of records: exercises prefix decoding and its offsets.
    let mut reader = RecordReader::new(data);
    while let Some(result) = reader.next_record::<FuzzRecord<'_>>() {
        if let Err(error) = result {
            assert!(
                error.offset().is_some_and(|offset| offset <= data.len()),
                "{error}"
            );
        }
    }
}

/// Compares two generated keys and decodes `data` as a key; see the module docs.
///
/// # Panics
///
/// When byte order and value order disagree, or a key does not decode to its value.
pub fn key_order_roundtrip(data: &[u8]) {
    let mut source = ByteSource::new(data);
    let a = FuzzKey::generate(&mut source);
    let b = if source.byte() & 1 == 0 {
        a.clone().mutate(&mut source)
    } else {
        FuzzKey::generate(&mut source)
    };
    let key_a = key::to_vec(&a).expect("keys encode");
    let key_b = key::to_vec(&b).expect("keys encode");
    assert_eq!(key_a.cmp(&key_b), a.cmp(&b), "{a:?} vs {b:?}");
    assert_eq!(key::from_slice::<FuzzKey>(&key_a).expect("keys decode"), a);
    assert_eq!(key::from_slice::<FuzzKey>(&key_b).expect("keys decode"), b);

    if let Ok(decoded) = key::from_slice::<FuzzKey>(data) {
        assert_eq!(
            key::to_vec(&decoded).expect("keys encode"),
            data,
            "{decoded:?}"
        );
    }
}

/// The record encoding of the [`record_decode`] type generated from `data`: a valid
/// starting point for mutation-based inputs.
///
/// # Panics
///
/// If the generated record does not encode: that is a bug.
#[must_use]
pub fn record_sample(data: &[u8]) -> Vec<u8> {
    let record = FuzzRecord::generate(&mut ByteSource::new(data));
    crate::to_vec(&record).expect("generated records encode")
}

/// The key encoding of the [`key_order_roundtrip`] type generated from `data`.
///
/// # Panics
///
/// If the generated key does not encode: that is a bug.
#[must_use]
pub fn key_sample(data: &[u8]) -> Vec<u8> {
    let key = FuzzKey::generate(&mut ByteSource::new(data));
    key::to_vec(&key).expect("generated keys encode")
}

/// Hands out the input's bytes one at a time, then zeros forever, so every input
/// generates a value.
struct ByteSource<'a> {
    data: &'a [u8],
}

impl<'a> ByteSource<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&byte, rest)) => {
                self.data = rest;
                byte
            }
            None => 0,
        }
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.byte())
    }

    /// Mostly small lengths, so that collections stay cheap and collide often.
    fn len(&mut self) -> usize {
        usize::from(self.byte() % 4)
    }

    /// Picks from `interesting` half the time, so that boundaries and ties are common.
    fn pick<T: Copy>(&mut self, interesting: &[T], raw: impl FnOnce(&mut Self) -> T) -> T {
        let choice = usize::from(self.byte());
        if choice % 2 == 0 {
            interesting[(choice / 2) % interesting.len()]
        } else {
            raw(self)
        }
    }

    fn text(&mut self) -> String {
        // Zero bytes exercise the escape; U+00FF and U+10FFFF the high bytes of UTF-8.
        const CHARS: [char; 7] = ['\0', '\u{1}', 'a', 'b', 'z', '\u{ff}', '\u{10ffff}'];
        (0..self.len())
            .map(|_| CHARS[usize::from(self.byte()) % CHARS.len()])
            .collect()
    }

    fn blob(&mut self) -> Vec<u8> {
        const BYTES: [u8; 5] = [0x00, 0x01, 0x7f, 0xfe, 0xff];
        (0..self.len())
            .map(|_| self.pick(&BYTES, Self::byte))
            .collect()
    }

    fn i64(&mut self) -> i64 {
        self.pick(&[i64::MIN, -1, 0, 1, i64::MAX], |s| {
            i64::from_le_bytes(s.bytes())
        })
    }

    fn u128(&mut self) -> u128 {
        self.pick(&[0, 1, u128::MAX], |s| u128::from_le_bytes(s.bytes()))
    }

    fn f64(&mut self) -> f64 {
        let specials = [
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            1.5,
        ];
        self.pick(&specials, |s| f64::from_bits(u64::from_le_bytes(s.bytes())))
    }

    fn char(&mut self) -> char {
        let value = u32::from_le_bytes(self.bytes()) % 0x11_0000;
        char::from_u32(value).unwrap_or('\u{fffd}')
    }
}

/// A record type touching every decoder path: borrowed and owned strings and bytes,
/// sequences, options, a recursive enum, nested structs, a map and 128-bit integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FuzzRecord<'a> {
    id: u64,
    delta: i32,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    blob: Cow<'a, [u8]>,
    tags: Vec<u16>,
    maybe: Option<i64>,
    kind: FuzzKind,
    inner: FuzzInner,
    labels: BTreeMap<String, u32>,
    history: Vec<Option<FuzzInner>>,
    wide: (i128, u128, char, bool),
    ratio: TotalF64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum FuzzKind {
    Empty,
    Count(u8),
    Pair(String, u32),
    Nested {
        depth: i16,
        child: Option<Box<FuzzKind>>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FuzzInner {
    flag: bool,
    letter: char,
    note: String,
}

impl FuzzRecord<'static> {
    fn generate(s: &mut ByteSource<'_>) -> Self {
        Self {
            id: u64::from_le_bytes(s.bytes()),
            delta: i32::from_le_bytes(s.bytes()),
            name: Cow::Owned(s.text()),
            blob: Cow::Owned(s.blob()),
            tags: (0..s.len())
                .map(|_| u16::from_le_bytes(s.bytes()))
                .collect(),
            maybe: (s.byte() % 2 == 1).then(|| s.i64()),
            kind: FuzzKind::generate(s, 3),
            inner: FuzzInner::generate(s),
            labels: (0..s.len())
                .map(|_| (s.text(), u32::from(s.byte())))
                .collect(),
            history: (0..s.len())
                .map(|_| (s.byte() % 2 == 1).then(|| FuzzInner::generate(s)))
                .collect(),
            wide: (
                i128::from(s.i64()) << 64,
                s.u128(),
                s.char(),
                s.byte() % 2 == 1,
            ),
            ratio: TotalF64(s.f64()),
        }
    }
}

impl FuzzKind {
    fn generate(s: &mut ByteSource<'_>, depth: u8) -> Self {
        match s.byte() % 4 {
            0 => Self::Empty,
            1 => Self::Count(s.byte()),
            2 => Self::Pair(s.text(), u32::from(s.byte())),
            _ => Self::Nested {
                depth: i16::from_le_bytes(s.bytes()),
                child: (depth > 0 && s.byte() % 2 == 1)
                    .then(|| Box::new(Self::generate(s, depth - 1))),
            },
        }
    }
}

impl FuzzInner {
    fn generate(s: &mut ByteSource<'_>) -> Self {
        Self {
            flag: s.byte() % 2 == 1,
            letter: s.char(),
            note: s.text(),
        }
    }
}

/// A key type mixing every orderable shape, ascending and descending.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct FuzzKey {
    number: i64,
    name: Descending<String>,
    nested: Option<Option<u8>>,
    real: TotalF64,
    words: Vec<String>,
    kind: FuzzKeyKind,
    tail: Descending<(u128, Option<String>, Vec<i8>)>,
    flag: bool,
    letter: char,
    blob: ByteString,
    blobs: Descending<Vec<Option<ByteString>>>,
    wide: i128,
    small: TotalF32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum FuzzKeyKind {
    Unit,
    Small(u16),
    Text(String),
    Pair { x: i32, y: Descending<String> },
}

impl FuzzKey {
    const FIELDS: u8 = 13;

    fn generate(s: &mut ByteSource<'_>) -> Self {
        let mut key = Self {
            number: 0,
            name: Descending(String::new()),
            nested: None,
            real: TotalF64(0.0),
            words: Vec::new(),
            kind: FuzzKeyKind::Unit,
            tail: Descending((0, None, Vec::new())),
            flag: false,
            letter: '\0',
            blob: ByteString(Vec::new()),
            blobs: Descending(Vec::new()),
            wide: 0,
            small: TotalF32(0.0),
        };
        for field in 0..Self::FIELDS {
            key.regenerate(field, s);
        }
        key
    }

    /// Changes one field, so the two keys compared share a prefix and differ deep inside.
    fn mutate(mut self, s: &mut ByteSource<'_>) -> Self {
        let field = s.byte() % Self::FIELDS;
        self.regenerate(field, s);
        self
    }

    fn regenerate(&mut self, field: u8, s: &mut ByteSource<'_>) {
        match field {
            0 => self.number = s.i64(),
            1 => self.name = Descending(s.text()),
            2 => self.nested = s.pick(&[None, Some(None), Some(Some(0))], |s| Some(Some(s.byte()))),
            3 => self.real = TotalF64(s.f64()),
            4 => self.words = (0..s.len()).map(|_| s.text()).collect(),
            5 => self.kind = FuzzKeyKind::generate(s),
            6 => {
                self.tail = Descending((
                    s.u128(),
                    s.pick(&[false, true], |s| s.byte() % 2 == 1)
                        .then(|| s.text()),
                    s.blob().into_iter().map(u8::cast_signed).collect(),
                ))
            }
            7 => self.flag = s.byte() % 2 == 1,
            8 => self.letter = s.char(),
            9 => self.blob = ByteString(s.blob()),
            10 => {
                self.blobs = Descending(
                    (0..s.len())
                        .map(|_| (s.byte() % 2 == 1).then(|| ByteString(s.blob())))
                        .collect(),
                )
            }
            11 => {
                self.wide = s.pick(&[i128::MIN, -1, 0, i128::MAX], |s| {
                    i128::from_le_bytes(s.bytes())
                })
            }
            _ => self.small = TotalF32(s.f64() as f32),
        }
    }
}

impl FuzzKeyKind {
    fn generate(s: &mut ByteSource<'_>) -> Self {
        match s.byte() % 4 {
            0 => Self::Unit,
            1 => Self::Small(u16::from_le_bytes(s.bytes())),
            2 => Self::Text(s.text()),
            _ => Self::Pair {
                x: i32::from_le_bytes(s.bytes()),
                y: Descending(s.text()),
            },
        }
    }
}

/// An `f64` ordered and compared by `total_cmp`: the order the key format promises.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TotalF64(pub f64);

/// An `f32` ordered and compared by `total_cmp`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TotalF32(pub f32);

macro_rules! total_order {
    ($($ty:ident),*) => {$(
        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == Ordering::Equal
            }
        }

        impl Eq for $ty {}

        impl PartialOrd for $ty {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $ty {
            fn cmp(&self, other: &Self) -> Ordering {
                self.0.total_cmp(&other.0)
            }
        }
    )*};
}

total_order!(TotalF64, TotalF32);

/// A byte string that serializes with `serialize_bytes` (as `serde_bytes` would), not as
/// a sequence of `u8`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ByteString(Vec<u8>);

impl Serialize for ByteString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;

        impl serde::de::Visitor<'_> for BytesVisitor {
            type Value = ByteString;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<ByteString, E> {
                Ok(ByteString(bytes.to_vec()))
            }

            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<ByteString, E> {
                Ok(ByteString(bytes))
            }
        }

        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_accept_trivial_inputs() {
        for data in [&[][..], &[0], &[0xff; 64], &[0x80; 3]] {
            record_decode(data);
            key_order_roundtrip(data);
        }
    }

    #[test]
    fn samples_are_valid_encodings() {
        for seed in 0..64u8 {
            let data: Vec<u8> = (0..200)
                .map(|i| seed.wrapping_mul(31).wrapping_add(i))
                .collect();
            let record = record_sample(&data);
            crate::from_slice::<FuzzRecord<'_>>(&record).unwrap();
            record_decode(&record);
            let key = key_sample(&data);
            key::from_slice::<FuzzKey>(&key).unwrap();
            key_order_roundtrip(&key);
        }
    }
}
