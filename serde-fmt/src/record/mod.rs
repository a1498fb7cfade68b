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
mod reader;
mod ser;

use std::io;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::output::{IoOutput, SizeOutput, VecOutput};
pub(crate) use de::RecordDeserializer;
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
pub fn to_writer<W: io::Write, T: ?Sized + Serialize>(writer: W, value: &T) -> Result<()> {
    let mut ser = RecordSerializer::new(IoOutput::new(writer));
    value.serialize(&mut ser)
}

/// Encodes `value` as a record into a new vector of exactly the right capacity.
///
/// # Errors
///
/// [`Error::Custom`] if `value`'s `Serialize` fails.
pub fn to_vec<T: ?Sized + Serialize>(value: &T) -> Result<Vec<u8>> {
    // Sizing first costs a walk that touches no memory; it saves the reallocations of a
    // growing vector, which cost more for any record over a few dozen bytes.
    let size = serialized_size(value)?;
    let mut ser = RecordSerializer::new(Vec::with_capacity(size));
    value.serialize(&mut ser)?;
    let vec = ser.into_output();
    debug_assert_eq!(vec.len(), size);
    Ok(vec)
}

/// Appends `value` as a record to `vec`, returning the bytes appended: the fastest way
/// to fill a record buffer.
///
/// # Errors
///
/// [`Error::Custom`] if `value`'s `Serialize` fails; `vec` is then truncated back to
/// its length before the call, so it never holds half a record.
pub fn append_to_vec<T: ?Sized + Serialize>(vec: &mut Vec<u8>, value: &T) -> Result<usize> {
    let start = vec.len();
    let mut ser = RecordSerializer::new(VecOutput::new(vec));
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
