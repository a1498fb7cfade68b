//! The record format: compact, fast, not self-describing.
//!
//! A record is the serde data model flattened in field order with nothing but the bytes
//! the type cannot know: lengths of strings, bytes, sequences and maps (varints), option
//! tags, and enum variant indexes (varints). Fixed-width numbers are little-endian.
//!
//! ```text
//!  struct Order { id: u32, name: &str, gift: Option<bool> }  =  Order { 300, "ab", Some(true) }
//!
//!  +-------------+----+-------+----+----+
//!  | 2c 01 00 00 | 02 | 61 62 | 01 | 01 |
//!  +-------------+----+-------+----+----+
//!    id: u32 LE   len  bytes  Some true
//! ```
//!
//! Decoding borrows `&str` and `&[u8]` from the input. Malformed input is an [`Error`]
//! with its offset; a length prefix longer than the remaining input is rejected before
//! anything is allocated, and nesting is bounded by [`crate::constants::DEPTH_MAX`].
//! The byte-exact specification is `docs/FORMAT.md`.

mod de;
mod fixed;
mod reader;
mod ser;

use std::io;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::output::{IoOutput, Output, SizeOutput, SliceOutput, size_changed};
pub(crate) use de::RecordDeserializer;
pub use fixed::fixed_size;
pub use reader::RecordReader;
use ser::RecordSerializer;

/// Encodes `value` as a record into `writer`.
///
/// Bytes go to the writer as they are produced, in many small writes: give it a buffered
/// writer (or use [`append_to_vec`]) rather than a raw file or socket.
///
/// # Errors
///
/// [`Error::Io`] if the writer fails, [`Error::Custom`] if `value`'s `Serialize` fails.
#[inline]
pub fn to_writer<W: io::Write, T: ?Sized + Serialize>(writer: W, value: &T) -> Result<()> {
    let mut ser = RecordSerializer::new(IoOutput::new(writer));
    value.serialize(&mut ser)
}

/// Encodes `value` as a record into a new vector of exactly the right capacity.
///
/// This runs `value`'s `Serialize` twice (size, then bytes), so it must produce the same
/// bytes both times, as every derived impl does.
///
/// # Errors
///
/// [`Error::Custom`] if `value`'s `Serialize` fails or is not deterministic.
pub fn to_vec<T: ?Sized + Serialize>(value: &T) -> Result<Vec<u8>> {
    // Sizing first costs a walk that touches no memory; it saves the reallocations of a
    // vector growing from empty, and filling a slice needs no growth checks at all.
    let size = serialized_size(value)?;
    let mut vec = vec![0; size];
    let mut ser = RecordSerializer::new(SliceOutput::new(&mut vec));
    value.serialize(&mut ser).map_err(|error| match error {
        Error::BufferFull { .. } => size_changed(size),
        other => other,
    })?;
    if !ser.into_output().is_full() {
        return Err(size_changed(size));
    }
    Ok(vec)
}

/// Encodes `value` into the front of `buffer`, returning the bytes written: how a record
/// goes straight into the free space of a memory segment or network buffer, with no
/// sizing pass and no growth path.
///
/// # Errors
///
/// [`Error::BufferFull`] when the record does not fit (the bytes before the failure are
/// written; the caller moves to a fresh buffer and encodes again), [`Error::Custom`] if
/// `value`'s `Serialize` fails.
pub fn to_slice<T: ?Sized + Serialize>(buffer: &mut [u8], value: &T) -> Result<usize> {
    let mut ser = RecordSerializer::new(SliceOutput::new(buffer));
    value.serialize(&mut ser)?;
    Ok(ser.into_output().position())
}

/// Appends `value` as a record to `vec`, returning the bytes appended: the fastest way
/// to fill a record buffer.
///
/// # Errors
///
/// [`Error::Custom`] if `value`'s `Serialize` fails; `vec` is
/// then truncated back to its length before the call, so it never holds half a record.
pub fn append_to_vec<T: ?Sized + Serialize>(vec: &mut Vec<u8>, value: &T) -> Result<usize> {
    // `Vec<u8>`'s `io::Write` is `extend_from_slice`, and the writer can never fail. Of the
    // variants measured on the lineitem benchmark (a `Vec`-specific output, sizing first
    // then filling a slice, a stack-staged buffer), this one was fastest when LLVM
    // inlines the record's `serialize` into the caller's loop (see benches/format.rs).
    let start = vec.len();
    let mut ser = RecordSerializer::new(IoOutput::new(&mut *vec));
    match value.serialize(&mut ser) {
        Ok(()) => Ok(vec.len() - start),
        Err(error) => {
            vec.truncate(start);
            Err(error)
        }
    }
}

/// The exact number of bytes [`to_vec`] would produce for `value`.
///
/// # Errors
///
/// [`Error::Custom`] if `value`'s `Serialize` fails.
pub fn serialized_size<T: ?Sized + Serialize>(value: &T) -> Result<usize> {
    let mut ser = RecordSerializer::new(SizeOutput::default());
    value.serialize(&mut ser)?;
    Ok(ser.into_output().size())
}

/// Decodes one record that must fill `input` exactly.
///
/// # Errors
///
/// Any decoding error ([`Error::UnexpectedEof`], [`Error::InvalidTag`], ...), with its
/// offset; [`Error::TrailingBytes`] if bytes are left after the value.
pub fn from_slice<'de, T: Deserialize<'de>>(input: &'de [u8]) -> Result<T> {
    let (value, used) = decode_at(input, 0)?;
    if used != input.len() {
        return Err(Error::TrailingBytes {
            offset: used,
            trailing: input.len() - used,
        });
    }
    Ok(value)
}

/// Decodes one record from the front of `input`, returning it and the bytes it took.
///
/// # Errors
///
/// Any decoding error ([`Error::UnexpectedEof`], [`Error::InvalidTag`], ...), with its
/// offset.
pub fn from_slice_prefix<'de, T: Deserialize<'de>>(input: &'de [u8]) -> Result<(T, usize)> {
    decode_at(input, 0)
}

/// Decodes one record starting at `input[start..]`, returning it and the offset after it.
/// Errors report offsets from the start of `input`.
#[inline]
pub(crate) fn decode_at<'de, T: Deserialize<'de>>(
    input: &'de [u8],
    start: usize,
) -> Result<(T, usize)> {
    let mut de = RecordDeserializer::new(input, start);
    match T::deserialize(&mut de) {
        Ok(value) => Ok((value, de.position())),
        Err(error) => Err(error.at(de.position())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Serialize, Serializer};

    use super::*;

    #[test]
    fn to_slice_fills_or_reports_full() {
        let value = (7u32, "hello", vec![1u16, 2, 3]);
        let expected = to_vec(&value).unwrap();
        let mut buffer = [0u8; 64];
        let written = to_slice(&mut buffer, &value).unwrap();
        assert_eq!(&buffer[..written], &expected[..]);
        let mut small = [0u8; 6];
        let error = to_slice(&mut small, &value).unwrap_err();
        assert!(
            matches!(error, Error::BufferFull { capacity: 6, .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("6-byte buffer is full"),
            "{error}"
        );
    }
    use crate::constants::{DEPTH_MAX, ZERO_SIZED_ELEMENTS_MAX};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Dot,
        Circle(u8),
        Line(i8, i8),
        Box { w: u16 },
    }

    #[test]
    fn primitives_are_little_endian_and_fixed_width() {
        assert_eq!(to_vec(&true).unwrap(), [1]);
        assert_eq!(to_vec(&-2i8).unwrap(), [0xfe]);
        assert_eq!(to_vec(&0x0102u16).unwrap(), [0x02, 0x01]);
        assert_eq!(to_vec(&-1i64).unwrap(), [0xff; 8]);
        assert_eq!(to_vec(&1u128).unwrap(), [&[1u8][..], &[0; 15]].concat());
        assert_eq!(to_vec(&1.0f32).unwrap(), [0x00, 0x00, 0x80, 0x3f]);
        assert_eq!(to_vec(&'é').unwrap(), [0xe9, 0x00, 0x00, 0x00]);
        assert_eq!(to_vec(&()).unwrap(), [0u8; 0]);
    }

    #[test]
    fn compounds_carry_only_lengths_tags_and_indexes() {
        assert_eq!(to_vec(&"hé").unwrap(), [3, b'h', 0xc3, 0xa9]);
        assert_eq!(to_vec(&None::<u8>).unwrap(), [0]);
        assert_eq!(to_vec(&Some(7u8)).unwrap(), [1, 7]);
        assert_eq!(to_vec(&vec![1u16, 2]).unwrap(), [2, 1, 0, 2, 0]);
        assert_eq!(to_vec(&(1u8, 2u8)).unwrap(), [1, 2]);
        assert_eq!(to_vec(&BTreeMap::from([(1u8, 2u8)])).unwrap(), [1, 1, 2]);
        assert_eq!(to_vec(&Shape::Dot).unwrap(), [0]);
        assert_eq!(to_vec(&Shape::Circle(9)).unwrap(), [1, 9]);
        assert_eq!(to_vec(&Shape::Line(1, -1)).unwrap(), [2, 1, 0xff]);
        assert_eq!(to_vec(&Shape::Box { w: 5 }).unwrap(), [3, 5, 0]);
        let long = "x".repeat(300);
        assert_eq!(to_vec(&long).unwrap()[..2], [0xac, 0x02]);
    }

    #[test]
    fn every_entry_point_agrees() {
        let value = (Shape::Box { w: 1 }, "text", vec![Some(1u64), None], 'x');
        let bytes = to_vec(&value).unwrap();
        assert_eq!(serialized_size(&value).unwrap(), bytes.len());
        let mut written = Vec::new();
        to_writer(&mut written, &value).unwrap();
        assert_eq!(written, bytes);
        let mut appended = vec![0xaa];
        assert_eq!(append_to_vec(&mut appended, &value).unwrap(), bytes.len());
        assert_eq!(appended[1..], bytes);
        let decoded: (Shape, &str, Vec<Option<u64>>, char) = from_slice(&bytes).unwrap();
        assert_eq!(decoded, value);
        let mut padded = bytes.clone();
        padded.push(0);
        let (prefix, used) =
            from_slice_prefix::<(Shape, String, Vec<Option<u64>>, char)>(&padded).unwrap();
        assert_eq!((prefix.1.as_str(), used), ("text", bytes.len()));
    }

    /// A sequence whose length serde does not know up front.
    struct Evens(Vec<u32>);

    impl Serialize for Evens {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.iter().filter(|n| *n % 2 == 0))
        }
    }

    #[test]
    fn unknown_length_sequences_are_buffered() {
        let value = (Evens(vec![1, 2, 3, 4]), vec![Evens(vec![6]), Evens(vec![])]);
        let expected = to_vec(&(vec![2u32, 4], vec![vec![6u32], vec![]])).unwrap();
        assert_eq!(to_vec(&value).unwrap(), expected);
        assert_eq!(serialized_size(&value).unwrap(), expected.len());
    }

    /// Announces two elements and delivers one.
    struct Liar;

    impl Serialize for Liar {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(2))?;
            seq.serialize_element(&1u8)?;
            seq.end()
        }
    }

    /// Writes one more byte on every call.
    struct Growing(std::cell::Cell<u8>);

    impl Serialize for Growing {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            self.0.set(self.0.get() + 1);
            serializer.serialize_bytes(&vec![0; usize::from(self.0.get())])
        }
    }

    #[test]
    fn a_serialize_that_changes_between_passes_is_an_error() {
        let error = to_vec(&Growing(std::cell::Cell::new(0))).unwrap_err();
        assert!(matches!(error, Error::Custom { .. }), "{error}");
    }

    #[test]
    fn a_wrong_announced_length_is_an_error_and_leaves_no_partial_record() {
        let mut vec = vec![7];
        let error = append_to_vec(&mut vec, &(1u8, Liar)).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Custom {
                    offset: Some(3),
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(vec, [7]);
    }

    fn decode_error<T: for<'de> Deserialize<'de> + std::fmt::Debug>(bytes: &[u8]) -> Error {
        from_slice::<T>(bytes).unwrap_err()
    }

    #[test]
    fn malformed_input_is_an_error_with_its_offset() {
        let error = decode_error::<(u8, u32)>(&[1, 2, 3]);
        assert!(matches!(
            error,
            Error::UnexpectedEof {
                offset: 1,
                needed: 4,
                available: 2
            }
        ));
        let error = decode_error::<(u8, bool)>(&[0, 2]);
        assert!(matches!(
            error,
            Error::InvalidTag {
                offset: 1,
                what: "bool",
                tag: 2
            }
        ));
        let error = decode_error::<Option<u8>>(&[5]);
        assert!(matches!(
            error,
            Error::InvalidTag {
                offset: 0,
                what: "option tag",
                tag: 5
            }
        ));
        let error = decode_error::<(u8, String)>(&[0, 2, 0xc3, 0x28]);
        assert!(matches!(error, Error::InvalidUtf8 { offset: 2 }), "{error}");
        let error = decode_error::<char>(&[0x00, 0xd8, 0, 0]);
        assert!(matches!(
            error,
            Error::InvalidChar {
                offset: 0,
                value: 0xd800
            }
        ));
        let error = decode_error::<u8>(&[1, 2]);
        assert!(matches!(
            error,
            Error::TrailingBytes {
                offset: 1,
                trailing: 1
            }
        ));
        let error = decode_error::<Shape>(&[4]);
        assert!(
            matches!(
                error,
                Error::Custom {
                    offset: Some(1),
                    ..
                }
            ),
            "{error}"
        );
        let error = decode_error::<Shape>(&[0xff, 0xff, 0xff, 0xff, 0x10]);
        assert!(
            matches!(error, Error::LengthOverflow { offset: 0, .. }),
            "{error}"
        );
    }

    #[test]
    fn lengths_beyond_the_input_are_rejected_before_allocating() {
        let error = decode_error::<(u8, String)>(&[0, 100, b'a', b'b', b'c']);
        assert!(
            matches!(
                error,
                Error::LengthOverflow {
                    offset: 1,
                    length: 100,
                    available: 3
                }
            ),
            "{error}"
        );
        // 2^62 u64s: far beyond even the zero-byte element allowance.
        let error =
            decode_error::<Vec<u64>>(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
        assert!(
            matches!(error, Error::LengthOverflow { offset: 0, .. }),
            "{error}"
        );
        // Within the allowance the length passes, the hint stays at the 2 bytes left, and
        // the missing elements are an end of input.
        let error = decode_error::<Vec<u64>>(&[0x80, 0x80, 0x01, 1, 2]);
        assert!(
            matches!(
                error,
                Error::UnexpectedEof {
                    offset: 3,
                    needed: 8,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn zero_byte_elements_round_trip_up_to_their_budget() {
        let units = vec![(); 1000];
        assert_eq!(
            from_slice::<Vec<()>>(&to_vec(&units).unwrap()).unwrap(),
            units
        );
        // Past the budget, a length that the input cannot back is refused up front...
        let half = ZERO_SIZED_ELEMENTS_MAX / 2 + 1;
        let bytes = to_vec(&vec![vec![(); half], vec![(); half]]).unwrap();
        let error = decode_error::<Vec<Vec<()>>>(&bytes);
        assert!(
            matches!(error, Error::LengthOverflow { offset: 4, .. }),
            "{error}"
        );
        // ...and one that trailing bytes seem to back fails when the budget runs out.
        let value = (vec![(); ZERO_SIZED_ELEMENTS_MAX + 10], vec![0u8; 20]);
        let error = decode_error::<(Vec<()>, Vec<u8>)>(&to_vec(&value).unwrap());
        let limit = ZERO_SIZED_ELEMENTS_MAX;
        assert!(matches!(error, Error::ZeroSizedElementsExceeded { limit: l, .. } if l == limit));
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Chain(Option<Box<Chain>>);

    #[test]
    fn nesting_is_bounded() {
        // Each link is a newtype and an option: two levels.
        let links = DEPTH_MAX / 2;
        let mut ok = vec![1u8; links - 1];
        ok.push(0);
        from_slice::<Chain>(&ok).unwrap();
        let mut deep = vec![1u8; links];
        deep.push(0);
        let error = decode_error::<Chain>(&deep);
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
        let error = decode_error::<Chain>(&vec![1u8; 100_000]);
        assert!(matches!(error, Error::DepthLimitExceeded { .. }), "{error}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Number(#[expect(dead_code, reason = "only decoded")] u8),
    }

    #[test]
    fn self_describing_features_are_unsupported() {
        let error = decode_error::<Untagged>(&[1]);
        assert!(
            matches!(error, Error::Unsupported { offset: 0, .. }),
            "{error}"
        );
    }
}
