//! The key format: order-preserving ("memcomparable") bytes.
//!
//! For every supported type, comparing two encodings as unsigned bytes (`memcmp`, `[u8]`'s
//! `Ord`) gives the same answer as comparing the values, so sorters and hash tables work
//! on key bytes and never deserialize a record. Keys also decode back to values.
//!
//! ```text
//!  type            encoding                                        order it gives
//!  bool            00 | 01                                         false < true
//!  u8..u128        big-endian                                      numeric
//!  i8..i128        big-endian, sign bit flipped                    numeric
//!  f32, f64        big-endian bits; negatives: all bits flipped,   total_cmp:
//!                  others: sign bit flipped                        -NaN < -inf < -0 < +0 < +inf < +NaN
//!  char            u32 big-endian                                  code point
//!  str, bytes      content with 00 -> 00 FF, then 00 00            lexicographic, prefix first
//!  Option<T>       00 | 01 T                                       None < Some
//!  (), unit struct nothing                                         one value
//!  newtype         the inner value                                 inner
//!  tuple, struct   fields concatenated                             lexicographic by field
//!  seq             (01 element)* 00                                lexicographic, prefix first
//!  enum            variant index u32 big-endian, then payload      declaration order, then payload
//!  Descending<T>   every byte of T's encoding inverted (!b)        reverse of T
//!  map             error: Error::Unsupported                       -
//! ```
//!
//! # Why it is correct
//!
//! Each row above is order-preserving *and prefix-free*: no encoding is a proper prefix of
//! another encoding of the same type (fixed widths trivially; strings and sequences end
//! in a terminator that cannot occur inside them; tags and concatenations inherit it).
//! Prefix-freedom is what makes the rest work:
//!
//! - Concatenation: if two fields differ, their encodings first differ at a byte inside
//!   both encodings, so what follows them never matters.
//! - Inversion: inverting bytes reverses the order of two byte strings only at a position
//!   where they differ, never when one is a prefix of the other. Prefix-free encodings
//!   always differ at such a position, so `Descending` reverses the order exactly, also
//!   for strings and sequences, and the inverted terminator still ends the value.
//!
//! # Choices
//!
//! - Strings and bytes are escaped (`00` -> `00 FF`, terminator `00 00`) rather than cut
//!   into arrow-row style blocks: text keys rarely contain `00`, so the usual cost is
//!   exactly two bytes, against up to one byte in eight plus padding for blocks; and an
//!   escape-free ascending string decodes as a borrowed `&str`.
//! - Floats follow `f32::total_cmp`/`f64::total_cmp`: `-0.0` orders just below `+0.0`,
//!   NaNs with the sign bit set order below `-inf`, others above `+inf`, and between NaNs
//!   by payload. The mapping is a bijection on bits, so every NaN payload is preserved.
//! - Enum variant indexes take four bytes, as `u32` is serde's variant index type; a
//!   shorter tag would cap the number of variants.
//! - Serde serializes `&[u8]` and `Vec<u8>` as sequences of `u8` (two bytes per byte
//!   here); use `serde_bytes` or a newtype calling `serialize_bytes` for byte-string keys.
//!   A `&[u8]` field does not decode from a key, since its `Deserialize` expects bytes.
//! - The format is for sorting and hashing inside one weir version; it is not promised
//!   stable across versions.

// Keys are big-endian by design: it is what makes byte order equal numeric order.
mod de;
mod ser;

use std::io;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::output::IoOutput;
use de::KeyDeserializer;
use ser::KeySerializer;

/// Encodes `value` as a key into `writer`.
///
/// # Errors
///
/// [`Error::Unsupported`] for maps anywhere in `value`; [`Error::Io`] if the writer fails;
/// [`Error::Custom`] if `value`'s `Serialize` fails.
pub fn to_writer<W: io::Write, T: ?Sized + Serialize>(writer: W, value: &T) -> Result<()> {
    let mut ser = KeySerializer::new(IoOutput::new(writer));
    value.serialize(&mut ser)
}

/// Encodes `value` as a key into a new vector.
///
/// # Errors
///
/// [`Error::Unsupported`] for maps anywhere in `value`; [`Error::Custom`] if `value`'s
/// `Serialize` fails.
pub fn to_vec<T: ?Sized + Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut vec = Vec::new();
    append_to_vec(&mut vec, value)?;
    Ok(vec)
}

/// Appends `value` as a key to `vec`, returning the bytes appended.
///
/// # Errors
///
/// As [`to_vec`]; `vec` is then truncated back to its length before the call.
pub fn append_to_vec<T: ?Sized + Serialize>(vec: &mut Vec<u8>, value: &T) -> Result<usize> {
    // Keys are short and their sizing pass would scan every string for zero bytes, so
    // unlike records they are written straight into the growing vector (measured: the
    // sized path was slower on the lineitem sort key).
    let start = vec.len();
    let mut ser = KeySerializer::new(IoOutput::new(&mut *vec));
    match value.serialize(&mut ser) {
        Ok(()) => Ok(vec.len() - start),
        Err(error) => {
            vec.truncate(start);
            Err(error)
        }
    }
}

/// Decodes a key that must fill `input` exactly.
///
/// Strings borrow from `input` when they are ascending and contain no `0x00`; a
/// `&'de str` field fails with [`Error::Custom`] otherwise, so prefer `String` or
/// `Cow<str>` in key types that may be descending.
///
/// # Errors
///
/// Any decoding error with its offset; [`Error::TrailingBytes`] if bytes are left over.
pub fn from_slice<'de, T: Deserialize<'de>>(input: &'de [u8]) -> Result<T> {
    let mut de = KeyDeserializer::new(input);
    let value = T::deserialize(&mut de).map_err(|error| error.at(de.position()))?;
    let used = de.position();
    if used != input.len() {
        return Err(Error::TrailingBytes {
            offset: used,
            trailing: input.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::Descending;
    use crate::constants::DEPTH_MAX;

    /// Asserts that `values`, given in strictly increasing order, encode to strictly
    /// increasing keys, and strictly decreasing keys under `Descending`, both when alone
    /// and when followed by another field; and that every key decodes back.
    fn assert_strictly_increasing<T>(values: &[T])
    where
        T: Serialize + DeserializeOwned + Debug + Clone,
    {
        let keys: Vec<Vec<u8>> = values.iter().map(|v| to_vec(v).unwrap()).collect();
        let down: Vec<Vec<u8>> = values
            .iter()
            .map(|v| to_vec(&(Descending(v), 0u8)).unwrap())
            .collect();
        let up_then: Vec<Vec<u8>> = values
            .iter()
            .rev()
            .map(|v| to_vec(&(v, 0xffu8)).unwrap())
            .collect();
        for i in 1..values.len() {
            assert!(
                keys[i - 1] < keys[i],
                "{:?} !< {:?}",
                values[i - 1],
                values[i]
            );
            assert!(
                down[i - 1] > down[i],
                "descending {:?} !> {:?}",
                values[i - 1],
                values[i]
            );
            assert!(up_then[i - 1] > up_then[i], "{:?} with a suffix", values[i]);
        }
        for (value, key) in values.iter().zip(&keys) {
            let back: T = from_slice(key).unwrap();
            assert_eq!(to_vec(&back).unwrap(), *key, "{value:?}");
            let (back, _): (Descending<T>, u8) =
                from_slice(&to_vec(&(Descending(value), 0u8)).unwrap()).unwrap();
            assert_eq!(to_vec(&back.0).unwrap(), *key, "descending {value:?}");
        }
    }

    #[test]
    fn integers_are_big_endian_with_the_sign_flipped() {
        assert_eq!(to_vec(&-2i32).unwrap(), [0x7f, 0xff, 0xff, 0xfe]);
        assert_eq!(to_vec(&0x0102u16).unwrap(), [0x01, 0x02]);
        assert_strictly_increasing(&[i8::MIN, -1, 0, 1, i8::MAX]);
        assert_strictly_increasing(&[i64::MIN, i64::MIN + 1, -256, -1, 0, 255, i64::MAX]);
        assert_strictly_increasing(&[i128::MIN, -1, 0, 1 << 64, i128::MAX]);
        assert_strictly_increasing(&[0u128, 1, 1 << 64, u128::MAX]);
        assert_strictly_increasing(&[false, true]);
        assert_strictly_increasing(&['\0', 'a', 'é', '\u{10ffff}']);
    }

    #[test]
    fn floats_follow_total_cmp() {
        let tiny = f64::from_bits(1);
        let values = [
            -f64::NAN,
            f64::NEG_INFINITY,
            -1.0,
            -tiny,
            -0.0,
            0.0,
            tiny,
            1.0,
            f64::INFINITY,
            f64::NAN,
        ];
        for pair in values.windows(2) {
            assert!(pair[0].total_cmp(&pair[1]).is_lt(), "{pair:?}");
        }
        assert_strictly_increasing(&values);
        let values32 = [-f32::NAN, f32::NEG_INFINITY, -0.0, 0.0, f32::MAX, f32::NAN];
        assert_strictly_increasing(&values32);
        // NaN payloads survive.
        let payload = f64::from_bits(0x7ff8_0000_dead_beef);
        assert_eq!(
            from_slice::<f64>(&to_vec(&payload).unwrap())
                .unwrap()
                .to_bits(),
            payload.to_bits()
        );
    }

    #[test]
    fn strings_escape_zero_and_order_prefixes_first() {
        assert_eq!(to_vec(&"a\0").unwrap(), [b'a', 0x00, 0xff, 0x00, 0x00]);
        assert_eq!(to_vec(&Descending("a")).unwrap(), [!b'a', 0xff, 0xff]);
        let values: Vec<String> = [
            "",
            "\0",
            "\0\0",
            "\0\u{1}",
            "\u{1}",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "b",
            "ÿ",
            "\u{10ffff}",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_strictly_increasing(&values);
        assert_strictly_increasing(&[None, Some(String::new()), Some("a".to_owned())]);
        assert_strictly_increasing(&[
            vec![],
            vec![String::new()],
            vec![String::new(), String::new()],
            vec!["a".to_owned()],
        ]);
    }

    #[test]
    fn sequences_options_and_enums_order_like_rust() {
        #[derive(Debug, Clone, Serialize, serde::Deserialize)]
        enum Kind {
            A,
            B(u8),
            C { x: i8 },
        }
        assert_strictly_increasing(&[
            Kind::A,
            Kind::B(0),
            Kind::B(9),
            Kind::C { x: -1 },
            Kind::C { x: 1 },
        ]);
        assert_strictly_increasing(&[None, Some(None), Some(Some(0u8)), Some(Some(1))]);
        assert_strictly_increasing(&[vec![], vec![0u8], vec![0, 0], vec![0, 1], vec![1]]);
        assert_strictly_increasing(&[
            (0u8, "b".to_owned()),
            (1, String::new()),
            (1, "a".to_owned()),
        ]);
    }

    #[test]
    fn double_descending_is_ascending() {
        let value = ("x\0y", -5i16, vec![Some(1u8)]);
        assert_eq!(
            to_vec(&Descending(Descending(&value))).unwrap(),
            to_vec(&value).unwrap()
        );
    }

    #[test]
    fn strings_borrow_only_when_nothing_was_escaped_or_inverted() {
        let key = to_vec(&("plain", 1u8)).unwrap();
        assert_eq!(from_slice::<(&str, u8)>(&key).unwrap(), ("plain", 1));
        let key = to_vec(&"a\0b").unwrap();
        assert_eq!(from_slice::<String>(&key).unwrap(), "a\0b");
        assert!(matches!(
            from_slice::<&str>(&key),
            Err(Error::Custom { .. })
        ));
        let key = to_vec(&Descending("plain")).unwrap();
        assert_eq!(from_slice::<Descending<String>>(&key).unwrap().0, "plain");
    }

    #[test]
    fn maps_are_unsupported() {
        let error = to_vec(&(1u8, BTreeMap::from([(1u8, 1u8)]))).unwrap_err();
        assert!(
            matches!(error, Error::Unsupported { offset: 1, .. }),
            "{error}"
        );
        let error = from_slice::<BTreeMap<u8, u8>>(&[0]).unwrap_err();
        assert!(
            matches!(error, Error::Unsupported { offset: 0, .. }),
            "{error}"
        );
    }

    #[test]
    fn malformed_keys_are_errors_with_offsets() {
        let error = from_slice::<(u8, String)>(&[1, b'a', 0x00, 0x07]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidTag {
                    offset: 3,
                    what: "key string escape",
                    tag: 7
                }
            ),
            "{error}"
        );
        let error = from_slice::<String>(b"ab").unwrap_err();
        assert!(
            matches!(error, Error::UnexpectedEof { offset: 0, .. }),
            "{error}"
        );
        let error = from_slice::<String>(&[b'a', 0x00]).unwrap_err();
        assert!(matches!(error, Error::UnexpectedEof { .. }), "{error}");
        let error = from_slice::<Vec<u8>>(&[1, 5, 2]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidTag {
                    offset: 2,
                    what: "key sequence marker",
                    tag: 2
                }
            ),
            "{error}"
        );
        let error = from_slice::<Option<u8>>(&[2]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidTag {
                    offset: 0,
                    what: "option tag",
                    ..
                }
            ),
            "{error}"
        );
        let error = from_slice::<u8>(&[1, 2]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::TrailingBytes {
                    offset: 1,
                    trailing: 1
                }
            ),
            "{error}"
        );
        let error = from_slice::<String>(&[0xff, 0x00, 0x00]).unwrap_err();
        assert!(matches!(error, Error::InvalidUtf8 { offset: 0 }), "{error}");
        #[derive(Debug, serde::Deserialize)]
        struct Chain(#[expect(dead_code, reason = "only decoded")] Option<Box<Chain>>);
        let error = from_slice::<Chain>(&[1u8; 1000]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::DepthLimitExceeded {
                    limit: DEPTH_MAX,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn io_and_append_agree_with_to_vec() {
        let value = (Descending("k"), Some(3u64));
        let mut written = Vec::new();
        to_writer(&mut written, &value).unwrap();
        let mut appended = vec![1];
        assert_eq!(append_to_vec(&mut appended, &value).unwrap(), written.len());
        assert_eq!(appended[1..], written);
        assert_eq!(to_vec(&value).unwrap(), written);
        let mut appended = vec![1];
        append_to_vec(&mut appended, &BTreeMap::<u8, u8>::new()).unwrap_err();
        assert_eq!(appended, [1]);
    }
}
