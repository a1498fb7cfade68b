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
    let mut ser = KeySerializer::new(Vec::new());
    value.serialize(&mut ser)?;
    Ok(ser.into_output())
}

/// Appends `value` as a key to `vec`, returning the bytes appended.
///
/// # Errors
///
/// As [`to_vec`]; `vec` is then truncated back to its length before the call.
pub fn append_to_vec<T: ?Sized + Serialize>(vec: &mut Vec<u8>, value: &T) -> Result<usize> {
    let start = vec.len();
    let mut ser = KeySerializer::new(crate::output::VecOutput::new(vec));
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
