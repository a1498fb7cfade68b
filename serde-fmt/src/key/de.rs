//! The key deserializer: order-preserving bytes -> serde data model.
//!
//! It mirrors [`super::ser`]: every byte read is XORed with the current mask, which
//! `Descending` flips, so inverted regions decode with the same code as ascending ones.
//! Strings borrow from the input when they are ascending and contain no escaped `0x00`;
//! otherwise they are unescaped into an owned buffer no larger than the input.

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::constants::{
    DEPTH_MAX, DESCENDING_NEWTYPE_NAME, KEY_ESCAPE, KEY_ESCAPED_ZERO, KEY_SEQ_ELEMENT, KEY_SEQ_END,
    KEY_TERMINATOR,
};
use crate::error::{Error, Result};

/// Deserializes one key from a borrowed input.
#[derive(Debug)]
pub(crate) struct KeyDeserializer<'de> {
    input: &'de [u8],
    rest: &'de [u8],
    /// `0x00` in ascending context, `0xFF` inside an odd number of `Descending`s.
    mask: u8,
    depth_left: usize,
}

impl<'de> KeyDeserializer<'de> {
    pub(crate) fn new(input: &'de [u8]) -> Self {
        Self {
            input,
            rest: input,
            mask: 0,
            depth_left: DEPTH_MAX,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.input.len() - self.rest.len()
    }

    #[cold]
    fn eof(&self, needed: usize) -> Error {
        Error::UnexpectedEof {
            offset: self.position(),
            needed,
            available: self.rest.len(),
        }
    }

    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let Some((head, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(self.eof(N));
        };
        self.rest = rest;
        let mut bytes = *head;
        for byte in &mut bytes {
            *byte ^= self.mask;
        }
        Ok(bytes)
    }

    #[inline]
    fn read_u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }

    #[cold]
    fn invalid_tag(&self, what: &'static str, tag: u8) -> Error {
        Error::InvalidTag {
            offset: self.position() - 1,
            what,
            tag,
        }
    }

    /// Reads an escaped, terminated byte string (see `KeySerializer::put_escaped`).
    fn read_escaped(&mut self) -> Result<Cow<'de, [u8]>> {
        let rest = self.rest;
        let mut owned: Option<Vec<u8>> = None;
        let mut segment_start = 0;
        loop {
            // An encoded 0x00 is the mask byte itself.
            let Some(found) = rest[segment_start..]
                .iter()
                .position(|&byte| byte == self.mask)
            else {
                return Err(self.eof(rest.len() + 2));
            };
            let escape = segment_start + found;
            let Some(&next) = rest.get(escape + 1) else {
                return Err(self.eof(rest.len() + 1));
            };
            let segment = &rest[segment_start..escape];
            match next ^ self.mask {
                KEY_TERMINATOR => {
                    self.rest = &rest[escape + 2..];
                    return Ok(match owned {
                        None if self.mask == 0 => Cow::Borrowed(segment),
                        None => Cow::Owned(self.unmask(Vec::new(), segment)),
                        Some(vec) => Cow::Owned(self.unmask(vec, segment)),
                    });
                }
                KEY_ESCAPED_ZERO => {
                    let mut vec = self.unmask(owned.take().unwrap_or_default(), segment);
                    vec.push(0);
                    owned = Some(vec);
                    segment_start = escape + 2;
                }
                tag => {
                    return Err(Error::InvalidTag {
                        offset: self.position() + escape + 1,
                        what: "key string escape",
                        tag,
                    });
                }
            }
        }
    }

    fn unmask(&self, mut vec: Vec<u8>, segment: &[u8]) -> Vec<u8> {
        vec.extend(segment.iter().map(|byte| byte ^ self.mask));
        vec
    }

    fn read_str(&mut self) -> Result<Cow<'de, str>> {
        let offset = self.position();
        let invalid = |_| Error::InvalidUtf8 { offset };
        Ok(match self.read_escaped()? {
            Cow::Borrowed(bytes) => Cow::Borrowed(std::str::from_utf8(bytes).map_err(invalid)?),
            Cow::Owned(vec) => {
                Cow::Owned(String::from_utf8(vec).map_err(|error| invalid(error.utf8_error()))?)
            }
        })
    }

    fn nested<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        if self.depth_left == 0 {
            return Err(Error::DepthLimitExceeded {
                offset: self.position(),
                limit: DEPTH_MAX,
            });
        }
        self.depth_left -= 1;
        let result = f(self);
        self.depth_left += 1;
        result
    }

    #[cold]
    fn unsupported(&self, what: &'static str) -> Error {
        Error::Unsupported {
            offset: self.position(),
            what,
        }
    }
}

macro_rules! read_unsigned_be {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.$visit(<$ty>::from_be_bytes(self.take()?))
        }
    )*};
}

macro_rules! read_signed_be {
    ($($method:ident => $visit:ident: $ty:ty as $unsigned:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let flipped = <$unsigned>::from_be_bytes(self.take()?);
            visitor.$visit((flipped ^ (1 << (<$ty>::BITS - 1))).cast_signed())
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut KeyDeserializer<'de> {
    type Error = Error;

    read_unsigned_be! {
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    }

    read_signed_be! {
        deserialize_i8 => visit_i8: i8 as u8, deserialize_i16 => visit_i16: i16 as u16,
        deserialize_i32 => visit_i32: i32 as u32, deserialize_i64 => visit_i64: i64 as u64,
        deserialize_i128 => visit_i128: i128 as u128,
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(self.unsupported("deserialize_any: the key format is not self-describing"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(self.unsupported("deserialize_ignored_any: the key format is not self-describing"))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(self.unsupported("deserialize_identifier: the key format stores no names"))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.read_u8()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            tag => Err(self.invalid_tag("bool", tag)),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let bits = u32::from_be_bytes(self.take()?);
        let bits = if bits >> 31 == 1 {
            bits ^ (1 << 31)
        } else {
            !bits
        };
        visitor.visit_f32(f32::from_bits(bits))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let bits = u64::from_be_bytes(self.take()?);
        let bits = if bits >> 63 == 1 {
            bits ^ (1 << 63)
        } else {
            !bits
        };
        visitor.visit_f64(f64::from_bits(bits))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let value = u32::from_be_bytes(self.take()?);
        match char::from_u32(value) {
            Some(c) => visitor.visit_char(c),
            None => Err(Error::InvalidChar {
                offset: self.position() - 4,
                value,
            }),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.read_str()? {
            Cow::Borrowed(text) => visitor.visit_borrowed_str(text),
            Cow::Owned(text) => visitor.visit_string(text),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.read_escaped()? {
            Cow::Borrowed(bytes) => visitor.visit_borrowed_bytes(bytes),
            Cow::Owned(bytes) => visitor.visit_byte_buf(bytes),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.read_u8()? {
            0 => visitor.visit_none(),
            1 => self.nested(|de| visitor.visit_some(de)),
            tag => Err(self.invalid_tag("option tag", tag)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        let flip = if name == DESCENDING_NEWTYPE_NAME {
            0xFF
        } else {
            0x00
        };
        self.nested(|de| {
            de.mask ^= flip;
            let result = visitor.visit_newtype_struct(&mut *de);
            de.mask ^= flip;
            result
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.nested(|de| visitor.visit_seq(MarkedAccess { de }))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        self.nested(|de| visitor.visit_seq(FixedAccess { de, remaining: len }))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(self.unsupported("maps have no order in the key format; use a sorted Vec of pairs"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.nested(|de| visitor.visit_enum(de))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Fields whose count the type knows: tuples, structs, variants.
struct FixedAccess<'a, 'de> {
    de: &'a mut KeyDeserializer<'de>,
    remaining: usize,
}

impl<'de> de::SeqAccess<'de> for FixedAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

/// Sequence elements, each behind a marker byte; no length is known up front, so the
/// visitor grows its collection one element (at least one input byte) at a time.
struct MarkedAccess<'a, 'de> {
    de: &'a mut KeyDeserializer<'de>,
}

impl<'de> de::SeqAccess<'de> for MarkedAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.de.read_u8()? {
            KEY_SEQ_ELEMENT => seed.deserialize(&mut *self.de).map(Some),
            KEY_SEQ_END => Ok(None),
            tag => Err(self.de.invalid_tag("key sequence marker", tag)),
        }
    }
}

impl<'de> de::EnumAccess<'de> for &mut KeyDeserializer<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = u32::from_be_bytes(self.take()?);
        let value = seed.deserialize(IntoDeserializer::<Error>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut KeyDeserializer<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(FixedAccess {
            de: self,
            remaining: len,
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_seq(FixedAccess {
            de: self,
            remaining: fields.len(),
        })
    }
}

// `read_escaped` finds escapes by comparing bytes with the mask, i.e. with `0x00 ^ mask`.
const _: () = assert!(KEY_ESCAPE == 0);
