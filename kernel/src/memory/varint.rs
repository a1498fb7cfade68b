//! LEB128 varints, as used for lengths inside paged views: seven bits per byte, low bits
//! first, the high bit set on every byte but the last.

use crate::constants::VARINT_U64_BYTES_MAX;

/// Encodes `value` into `out`, returning the number of bytes used (1 to 10).
#[inline]
pub fn encode_u64(mut value: u64, out: &mut [u8; VARINT_U64_BYTES_MAX]) -> usize {
    let mut len = 0;
    while value >= 0x80 {
        out[len] = (value as u8) | 0x80;
        value >>= 7;
        len += 1;
    }
    out[len] = value as u8;
    len + 1
}

/// Folds one more byte into a varint being decoded. Returns `Some(value)` when `byte` was the
/// last, `None` when more bytes follow, and an error message for an overlong encoding.
///
/// `shift` is the bit position of this byte (0, 7, 14, ...); `value` accumulates.
#[inline]
pub(crate) fn decode_step(
    byte: u8,
    shift: u32,
    value: &mut u64,
) -> Result<Option<u64>, &'static str> {
    if shift == 63 && byte > 1 {
        return Err("varint overflows u64");
    }
    if shift > 63 {
        return Err("varint longer than ten bytes");
    }
    *value |= u64::from(byte & 0x7f) << shift;
    if byte & 0x80 == 0 {
        Ok(Some(*value))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Option<u64>, &'static str> {
        let mut value = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            if let Some(done) = decode_step(byte, 7 * i as u32, &mut value)? {
                return Ok(Some(done));
            }
        }
        Ok(None)
    }

    #[test]
    fn round_trips_edges() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut out = [0; VARINT_U64_BYTES_MAX];
            let len = encode_u64(value, &mut out);
            assert_eq!(decode(&out[..len]), Ok(Some(value)));
        }
    }

    #[test]
    fn rejects_overlong() {
        assert!(decode(&[0xff; 11]).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err());
    }
}
