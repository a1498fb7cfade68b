//! Property tests of the key format: byte order equals value order over arbitrary keys
//! of mixed types with descending fields, and keys decode back to their values.
//!
//! The model is Rust's own `Ord` on the key type: derived for structs, tuples, options,
//! vectors and enums, reversed by `Descending`, and `total_cmp` for floats (through the
//! `Total*` wrappers). Seeded, without failure persistence.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde::{Deserialize, Serialize};
use weir_serde_fmt::fuzz::{TotalF32, TotalF64};
use weir_serde_fmt::{Descending, key};

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5eed_0002),
        ..Config::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Kind {
    Unit,
    Small(u16),
    Text(String),
    Pair { x: i32, y: Descending<String> },
    Nested(Option<Box<Kind>>),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Key {
    int: i64,
    name: Descending<String>,
    maybe: Option<String>,
    real: TotalF64,
    nested: Option<Option<u8>>,
    words: Vec<String>,
    kind: Kind,
    tail: Descending<(u128, Option<Option<i16>>)>,
    words_down: Descending<Vec<String>>,
    flag: bool,
    letter: char,
    small: TotalF32,
    wide: i128,
}

/// Small alphabets make ties, shared prefixes and escapes common.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[\\x00\\x01ab\\u{ff}]{0,4}", 1 => any::<String>()]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(-1),
        Just(0),
        Just(1),
        Just(i64::MAX),
        any::<i64>()
    ]
}

fn real() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        any::<u64>().prop_map(f64::from_bits),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    let leaf = prop_oneof![
        Just(Kind::Unit),
        (0u16..3).prop_map(Kind::Small),
        text().prop_map(Kind::Text),
        (-1i32..2, text()).prop_map(|(x, y)| Kind::Pair {
            x,
            y: Descending(y)
        }),
    ];
    leaf.prop_recursive(3, 8, 1, |inner| {
        proptest::option::of(inner).prop_map(|k| Kind::Nested(k.map(Box::new)))
    })
}

fn key_strategy() -> impl Strategy<Value = Key> {
    use proptest::collection::vec;
    use proptest::option::of;
    (
        (
            int(),
            text(),
            of(text()),
            real(),
            of(of(0u8..3)),
            vec(text(), 0..3),
        ),
        (
            kind(),
            (
                prop_oneof![Just(0u128), Just(u128::MAX), any::<u128>()],
                of(of(-1i16..2)),
            ),
        ),
        (
            vec(text(), 0..3),
            any::<bool>(),
            any::<char>(),
            real(),
            any::<i128>(),
        ),
    )
        .prop_map(
            |((int, name, maybe, real, nested, words), (kind, tail), rest)| {
                let (words_down, flag, letter, small, wide) = rest;
                Key {
                    int,
                    name: Descending(name),
                    maybe,
                    real: TotalF64(real),
                    nested,
                    words,
                    kind,
                    tail: Descending(tail),
                    words_down: Descending(words_down),
                    flag,
                    letter,
                    small: TotalF32(small as f32),
                    wide,
                }
            },
        )
}

/// Takes each field from `a` or `b` by the bits of `mask`, so the pair shares most
/// fields and differs deep inside the key.
fn mix(a: &Key, b: &Key, mask: u16) -> Key {
    let pick = |bit: u16| mask & (1 << bit) != 0;
    Key {
        int: if pick(0) { b.int } else { a.int },
        name: if pick(1) {
            b.name.clone()
        } else {
            a.name.clone()
        },
        maybe: if pick(2) {
            b.maybe.clone()
        } else {
            a.maybe.clone()
        },
        real: if pick(3) { b.real } else { a.real },
        nested: if pick(4) { b.nested } else { a.nested },
        words: if pick(5) {
            b.words.clone()
        } else {
            a.words.clone()
        },
        kind: if pick(6) {
            b.kind.clone()
        } else {
            a.kind.clone()
        },
        tail: if pick(7) { b.tail } else { a.tail },
        words_down: if pick(8) {
            b.words_down.clone()
        } else {
            a.words_down.clone()
        },
        flag: if pick(9) { b.flag } else { a.flag },
        letter: if pick(10) { b.letter } else { a.letter },
        small: if pick(11) { b.small } else { a.small },
        wide: if pick(12) { b.wide } else { a.wide },
    }
}

/// Masks that copy few fields from `b`, so most pairs tie on a long prefix.
fn sparse_mask() -> impl Strategy<Value = u16> {
    (0u16..13, 0u16..13, any::<bool>())
        .prop_map(|(i, j, two)| (1 << i) | if two { 1 << j } else { 0 })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn byte_order_is_value_order(a in key_strategy(), b in key_strategy(), mask in sparse_mask()) {
        for other in [b.clone(), mix(&a, &b, mask)] {
            let key_a = key::to_vec(&a).unwrap();
            let key_b = key::to_vec(&other).unwrap();
            prop_assert_eq!(key_a.cmp(&key_b), a.cmp(&other), "{:?} vs {:?}", a, other);
            prop_assert_eq!(key_a == key_b, a == other);
        }
    }

    #[test]
    fn keys_decode_back(a in key_strategy()) {
        let bytes = key::to_vec(&a).unwrap();
        prop_assert_eq!(key::from_slice::<Key>(&bytes).unwrap(), a.clone());
        let down = key::to_vec(&Descending(&a)).unwrap();
        prop_assert_eq!(key::from_slice::<Descending<Key>>(&down).unwrap().0, a);
        // Inversion is exactly bytewise.
        prop_assert_eq!(down, bytes.iter().map(|b| !b).collect::<Vec<_>>());
    }

    #[test]
    fn sorting_keys_sorts_values(keys in proptest::collection::vec(key_strategy(), 0..24)) {
        let mut by_value = keys.clone();
        by_value.sort();
        let mut by_bytes: Vec<(Vec<u8>, Key)> =
            keys.into_iter().map(|k| (key::to_vec(&k).unwrap(), k)).collect();
        by_bytes.sort_by(|x, y| x.0.cmp(&y.0));
        let by_bytes: Vec<Key> = by_bytes.into_iter().map(|(_, k)| k).collect();
        prop_assert_eq!(by_bytes, by_value);
    }

    #[test]
    fn descending_variable_length_fields_stay_prefix_free(
        a in (text(), proptest::collection::vec(text(), 0..3), proptest::option::of(text()), any::<u8>()),
        b in (text(), proptest::collection::vec(text(), 0..3), proptest::option::of(text()), any::<u8>()),
    ) {
        type Down = (Descending<String>, Descending<Vec<String>>, Descending<Option<String>>, u8);
        let wrap = |(s, v, o, n): (String, Vec<String>, Option<String>, u8)| -> Down {
            (Descending(s), Descending(v), Descending(o), n)
        };
        let (a, b) = (wrap(a), wrap(b));
        let (key_a, key_b) = (key::to_vec(&a).unwrap(), key::to_vec(&b).unwrap());
        prop_assert_eq!(key_a.cmp(&key_b), a.cmp(&b));
        prop_assert_eq!(key::from_slice::<Down>(&key_a).unwrap(), a);
    }

    #[test]
    fn absent_orders_before_empty_before_text(s in text(), n in int()) {
        let none = key::to_vec(&(None::<String>, n)).unwrap();
        let empty = key::to_vec(&(Some(String::new()), n)).unwrap();
        let some = key::to_vec(&(Some(s.clone()), n)).unwrap();
        prop_assert!(none < empty);
        prop_assert!(empty <= some);
        prop_assert_eq!(empty == some, s.is_empty());
    }
}
