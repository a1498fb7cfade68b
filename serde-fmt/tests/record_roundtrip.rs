//! Property tests of the record format: arbitrary nested values round-trip, decode
//! borrows, streams of records decode back, and damaged encodings fail without panicking.
//!
//! Seeded (`RngSeed::Fixed`) and without failure persistence, so every run checks the
//! same cases; change the seed to explore.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde::{Deserialize, Serialize};
use weir_serde_fmt::{Descending, Error, RecordReader};

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5eed_0001),
        ..Config::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Event {
    Empty,
    One(i64),
    Two(String, bool),
    Named { x: u8, nested: Option<Box<Event>> },
    Many(Vec<Event>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meters(u32);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Scalars {
    flag: bool,
    tiny: i8,
    small: u16,
    int: i32,
    big: u64,
    wide: i128,
    huge: u128,
    letter: char,
    unit: Unit,
    meters: Meters,
    nothing: (),
    descending: Descending<i16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nested {
    scalars: Scalars,
    text: String,
    bytes: Vec<u8>,
    maybe: Option<Option<String>>,
    grid: Vec<Vec<i16>>,
    index: BTreeMap<String, Option<u32>>,
    event: Event,
    triple: (u8, String, Vec<Option<bool>>),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[\\x00ab\\u{ff}é]{0,6}", any::<String>()]
}

fn event() -> impl Strategy<Value = Event> {
    let leaf = prop_oneof![
        Just(Event::Empty),
        any::<i64>().prop_map(Event::One),
        (text(), any::<bool>()).prop_map(|(s, b)| Event::Two(s, b)),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (any::<u8>(), proptest::option::of(inner.clone())).prop_map(|(x, nested)| {
                Event::Named {
                    x,
                    nested: nested.map(Box::new),
                }
            }),
            proptest::collection::vec(inner, 0..4).prop_map(Event::Many),
        ]
    })
}

fn scalars() -> impl Strategy<Value = Scalars> {
    (
        (
            any::<bool>(),
            any::<i8>(),
            any::<u16>(),
            any::<i32>(),
            any::<u64>(),
            any::<i128>(),
        ),
        (any::<u128>(), any::<char>(), any::<u32>(), any::<i16>()),
    )
        .prop_map(
            |((flag, tiny, small, int, big, wide), (huge, letter, meters, down))| Scalars {
                flag,
                tiny,
                small,
                int,
                big,
                wide,
                huge,
                letter,
                unit: Unit,
                meters: Meters(meters),
                nothing: (),
                descending: Descending(down),
            },
        )
}

fn nested() -> impl Strategy<Value = Nested> {
    use proptest::collection::{btree_map, vec};
    (
        scalars(),
        text(),
        vec(any::<u8>(), 0..40),
        proptest::option::of(proptest::option::of(text())),
        vec(vec(any::<i16>(), 0..4), 0..4),
        btree_map(text(), proptest::option::of(any::<u32>()), 0..4),
        event(),
        (
            any::<u8>(),
            text(),
            vec(proptest::option::of(any::<bool>()), 0..5),
        ),
    )
        .prop_map(
            |(scalars, text, bytes, maybe, grid, index, event, triple)| Nested {
                scalars,
                text,
                bytes,
                maybe,
                grid,
                index,
                event,
                triple,
            },
        )
}

/// `f32`/`f64` with NaN, infinities and both zeros overrepresented; compared by bits.
fn float64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        any::<u64>().prop_map(f64::from_bits),
    ]
}

#[derive(Debug, Deserialize, PartialEq)]
struct Borrowed<'a> {
    text: &'a str,
    bytes: &'a [u8],
    words: Vec<&'a str>,
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nested_values_round_trip(value in nested()) {
        let bytes = weir_serde_fmt::to_vec(&value).unwrap();
        prop_assert_eq!(weir_serde_fmt::serialized_size(&value).unwrap(), bytes.len());
        let decoded: Nested = weir_serde_fmt::from_slice(&bytes).unwrap();
        prop_assert_eq!(&decoded, &value);
        let mut written = Vec::new();
        weir_serde_fmt::to_writer(&mut written, &value).unwrap();
        prop_assert_eq!(written, bytes);
    }

    #[test]
    fn floats_round_trip_bit_exactly(a in float64(), b in any::<u32>().prop_map(f32::from_bits)) {
        let bytes = weir_serde_fmt::to_vec(&(a, b)).unwrap();
        let (da, db): (f64, f32) = weir_serde_fmt::from_slice(&bytes).unwrap();
        prop_assert_eq!((da.to_bits(), db.to_bits()), (a.to_bits(), b.to_bits()));
    }

    #[test]
    fn strings_and_bytes_decode_borrowed(
        text in text(),
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        words in proptest::collection::vec(text(), 0..5),
    ) {
        let encoded = weir_serde_fmt::to_vec(&(&text, &bytes, &words)).unwrap();
        let decoded: Borrowed<'_> = weir_serde_fmt::from_slice(&encoded).unwrap();
        prop_assert_eq!(decoded.text, text.as_str());
        prop_assert_eq!(decoded.bytes, bytes.as_slice());
        prop_assert_eq!(decoded.words, words.iter().map(String::as_str).collect::<Vec<_>>());
        // Zero copy: the decoded slice points into the encoded buffer.
        prop_assert!(encoded.as_ptr_range().contains(&decoded.text.as_ptr()) || text.is_empty());
    }

    #[test]
    fn streams_of_records_decode_in_order(values in proptest::collection::vec(nested(), 0..6)) {
        let mut buffer = Vec::new();
        let mut ends = Vec::new();
        for value in &values {
            weir_serde_fmt::append_to_vec(&mut buffer, value).unwrap();
            ends.push(buffer.len());
        }
        let mut reader = RecordReader::new(&buffer);
        for (value, end) in values.iter().zip(&ends) {
            prop_assert_eq!(&reader.next_record::<Nested>().unwrap().unwrap(), value);
            prop_assert_eq!(reader.offset(), *end);
        }
        prop_assert!(reader.next_record::<Nested>().is_none());
    }

    #[test]
    fn truncated_encodings_are_errors(value in nested(), cut in any::<prop::sample::Index>()) {
        let bytes = weir_serde_fmt::to_vec(&value).unwrap();
        let cut = cut.index(bytes.len());
        let error = weir_serde_fmt::from_slice::<Nested>(&bytes[..cut]).unwrap_err();
        prop_assert!(error.offset().is_some_and(|offset| offset <= cut), "{}", error);
        let mut longer = bytes.clone();
        longer.push(0);
        let error = weir_serde_fmt::from_slice::<Nested>(&longer).unwrap_err();
        let is_trailing = matches!(error, Error::TrailingBytes { trailing: 1, .. });
        prop_assert!(is_trailing, "{}", error);
    }

    #[test]
    fn damaged_encodings_never_panic(
        value in nested(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = weir_serde_fmt::to_vec(&value).unwrap();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        if let Ok(decoded) = weir_serde_fmt::from_slice::<Nested>(&bytes) {
            let again = weir_serde_fmt::to_vec(&decoded).unwrap();
            prop_assert_eq!(weir_serde_fmt::from_slice::<Nested>(&again).unwrap(), decoded);
        }
    }
}
