//! LEB128 varints for lengths and variant indexes in the record format.
//!
//! ```text
//! value 300 = 0b10_0101100  ->  [1_0101100] [0_0000010]  =  ac 02
//!                                 ^ more      ^ last
//! ```
//!
//! Seven bits per byte, least significant group first, high bit set on every byte but the
//! last. Decoding accepts only the shortest form (no trailing `0x80 .. 0x00` groups), so
//! every value has exactly one encoding and re-encoding a decoded record gives its bytes
//! back.

use crate::constants::VARINT_BYTES_MAX;
use crate::error::{Error, Result};
use crate::output::Output;

/// Writes `value` as a varint.
#[inline(always)]
pub(crate) fn write_u64<O: Output>(out: &mut O, value: u64) -> Result<()> {
    if value < 0x80 {
        // Lengths of short strings and small variant indexes: the common case.
        return out.put_u8(value as u8);
    }
    let mut buf = [0u8; VARINT_BYTES_MAX];
    let len = encode(value, &mut buf);
    out.put(&buf[..len])
}

/// Encodes `value` into `buf`, returning the bytes used.
#[inline]
fn encode(mut value: u64, buf: &mut [u8; VARINT_BYTES_MAX]) -> usize {
    let mut len = 0;
    while value >= 0x80 {
        buf[len] = (value as u8) | 0x80;
        value >>= 7;
        len += 1;
    }
    buf[len] = value as u8;
    len + 1
}

/// Reads a varint from the front of `input`, returning it and the bytes it took.
/// `offset` is where `input` starts in the whole input, for errors.
///
/// # Errors
///
/// [`Error::UnexpectedEof`] if `input` ends inside the varint; [`Error::InvalidVarint`] if
/// it is longer than 10 bytes, overflows `u64`, or is not in its shortest form.
#[inline(always)]
pub(crate) fn read_u64(input: &[u8], offset: usize) -> Result<(u64, usize)> {
    match input.first() {
        Some(&byte) if byte < 0x80 => Ok((u64::from(byte), 1)),
        _ => read_u64_slow(input, offset),
    }
}

#[inline(never)]
fn read_u64_slow(input: &[u8], offset: usize) -> Result<(u64, usize)> {
    let mut value = 0u64;
    for (index, &byte) in input.iter().enumerate().take(VARINT_BYTES_MAX) {
        let group = u64::from(byte & 0x7f);
        let shift = 7 * index;
        // The tenth byte may only hold the single bit 63.
        if index == VARINT_BYTES_MAX - 1 && byte > 0x01 {
            return Err(Error::InvalidVarint { offset });
        }
        value |= group << shift;
        if byte < 0x80 {
            // A zero last group after the first byte means a shorter form existed.
            if byte == 0 && index > 0 {
                return Err(Error::InvalidVarint { offset });
            }
            return Ok((value, index + 1));
        }
    }
    if input.len() >= VARINT_BYTES_MAX {
        return Err(Error::InvalidVarint { offset });
    }
    Err(Error::UnexpectedEof {
        offset,
        needed: input.len() + 1,
        available: input.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut vec = Vec::new();
        write_u64(&mut vec, value).unwrap();
        vec
    }

    #[test]
    fn known_encodings() {
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(127), [0x7f]);
        assert_eq!(encoded(128), [0x80, 0x01]);
        assert_eq!(encoded(300), [0xac, 0x02]);
        assert_eq!(
            encoded(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn roundtrip_and_length_at_every_group_boundary() {
        for shift in 0..64 {
            for value in [(1u64 << shift) - 1, 1u64 << shift, (1u64 << shift) + 1] {
                let bytes = encoded(value);
                let bits = 64 - (value | 1).leading_zeros() as usize;
                assert_eq!(bytes.len(), bits.div_ceil(7), "{value}");
                assert_eq!(read_u64(&bytes, 0).unwrap(), (value, bytes.len()));
            }
        }
    }

    #[test]
    fn rejects_overlong_overflowing_and_truncated() {
        let error = read_u64(&[0x80, 0x00], 5).unwrap_err();
        assert!(
            matches!(error, Error::InvalidVarint { offset: 5 }),
            "{error}"
        );
        let error = read_u64(
            &[0xff; 9].iter().copied().chain([0x02]).collect::<Vec<_>>(),
            0,
        );
        assert!(matches!(error, Err(Error::InvalidVarint { .. })));
        let error = read_u64(&[0x80; 11], 0).unwrap_err();
        assert!(matches!(error, Error::InvalidVarint { .. }), "{error}");
        let error = read_u64(&[0x80, 0x80], 3).unwrap_err();
        assert!(
            matches!(
                error,
                Error::UnexpectedEof {
                    offset: 3,
                    needed: 3,
                    available: 2
                }
            ),
            "{error}"
        );
        let error = read_u64(&[], 0).unwrap_err();
        assert!(matches!(
            error,
            Error::UnexpectedEof {
                needed: 1,
                available: 0,
                ..
            }
        ));
    }
}
