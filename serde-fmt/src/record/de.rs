//! The record deserializer: record bytes -> serde data model.
//!
//! It reads from a borrowed `&'de [u8]` and hands strings and byte strings to the visitor
//! as borrowed slices, so a `&'de str` field costs a UTF-8 check and no copy. Every read
//! checks its bounds once against the remaining input; every length prefix is checked
//! against the bytes that remain before anything is allocated for it.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::constants::{DEPTH_MAX, ZERO_SIZED_ELEMENTS_MAX};
use crate::error::{Error, Result};
use crate::varint;

/// Deserializes one value in the record format from a borrowed input.
#[derive(Debug)]
pub(crate) struct RecordDeserializer<'de> {
    /// The whole input, so that errors report offsets from its start.
    input: &'de [u8],
    /// What is left to read.
    rest: &'de [u8],
    /// Nesting levels still allowed; see [`DEPTH_MAX`].
    depth_left: usize,
    /// Zero-byte elements still allowed; see [`ZERO_SIZED_ELEMENTS_MAX`].
    zero_sized_left: usize,
}

impl<'de> RecordDeserializer<'de> {
    /// A deserializer that starts reading at `input[start..]`.
    pub(crate) fn new(input: &'de [u8], start: usize) -> Self {
        assert!(
            start <= input.len(),
            "start {start} beyond input of {} bytes",
            input.len()
        );
        Self {
            input,
            rest: &input[start..],
            depth_left: DEPTH_MAX,
            zero_sized_left: ZERO_SIZED_ELEMENTS_MAX,
        }
    }

    /// Offset of the next byte to read, from the start of the whole input.
    #[inline(always)]
    pub(crate) fn position(&self) -> usize {
        self.input.len() - self.rest.len()
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.rest.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.rest = rest;
                Ok(*head)
            }
            None => Err(self.eof(N)),
        }
    }

    #[cold]
    fn eof(&self, needed: usize) -> Error {
        Error::UnexpectedEof {
            offset: self.position(),
            needed,
            available: self.rest.len(),
        }
    }

    #[inline(always)]
    fn read_u8(&mut self) -> Result<u8> {
        match self.rest.split_first() {
            Some((&byte, rest)) => {
                self.rest = rest;
                Ok(byte)
            }
            None => Err(self.eof(1)),
        }
    }

    #[inline(always)]
    fn read_varint(&mut self) -> Result<u64> {
        let (value, len) = varint::read_u64(self.rest, self.position())?;
        self.rest = &self.rest[len..];
        Ok(value)
    }

    /// Reads a length prefix that the following elements must fit behind: at most the
    /// remaining bytes plus `slack`.
    #[inline(always)]
    fn read_len(&mut self, slack: usize) -> Result<usize> {
        let offset = self.position();
        let length = self.read_varint()?;
        let available = self.rest.len().saturating_add(slack);
        match usize::try_from(length) {
            Ok(len) if len <= available => Ok(len),
            _ => Err(Error::LengthOverflow {
                offset,
                length,
                available: available as u64,
            }),
        }
    }

    /// Reads a length-prefixed byte string, borrowing it from the input.
    #[inline(always)]
    fn read_bytes(&mut self) -> Result<&'de [u8]> {
        let len = self.read_len(0)?;
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }

    #[inline(always)]
    fn read_str(&mut self) -> Result<&'de str> {
        let bytes = self.read_bytes()?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(_) => Err(Error::InvalidUtf8 {
                offset: self.position() - bytes.len(),
            }),
        }
    }

    /// Runs `f` one nesting level deeper, failing past [`DEPTH_MAX`].
    #[inline(always)]
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

    /// Charges one element that took `start_len - rest.len()` bytes against the
    /// zero-byte element budget if it took none.
    #[inline(always)]
    fn charge_element(&mut self, start_len: usize) -> Result<()> {
        if self.rest.len() == start_len {
            if self.zero_sized_left == 0 {
                return Err(Error::ZeroSizedElementsExceeded {
                    offset: self.position(),
                    limit: ZERO_SIZED_ELEMENTS_MAX,
                });
            }
            self.zero_sized_left -= 1;
        }
        Ok(())
    }

    #[cold]
    fn unsupported(&self, what: &'static str) -> Error {
        Error::Unsupported {
            offset: self.position(),
            what,
        }
    }
}

macro_rules! read_le {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        #[inline(always)]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let bytes = self.take::<{ size_of::<$ty>() }>()?;
            visitor.$visit(<$ty>::from_le_bytes(bytes))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut RecordDeserializer<'de> {
    type Error = Error;

    read_le! {
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128, deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(self.unsupported("deserialize_any: the record format is not self-describing"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(self.unsupported("deserialize_ignored_any: the record format is not self-describing"))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(self.unsupported("deserialize_identifier: the record format stores no names"))
    }

    #[inline(always)]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.read_u8()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            tag => Err(Error::InvalidTag {
                offset: self.position() - 1,
                what: "bool",
                tag,
            }),
        }
    }

    #[inline(always)]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.read_u8()?)
    }

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let value = u32::from_le_bytes(self.take::<4>()?);
        match char::from_u32(value) {
            Some(c) => visitor.visit_char(c),
            None => Err(Error::InvalidChar {
                offset: self.position() - 4,
                value,
            }),
        }
    }

    #[inline(always)]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.read_str()?)
    }

    #[inline(always)]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.read_str()?)
    }

    #[inline(always)]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(self.read_bytes()?)
    }

    #[inline(always)]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(self.read_bytes()?)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.read_u8()? {
            0 => visitor.visit_none(),
            1 => self.nested(|de| visitor.visit_some(de)),
            tag => Err(Error::InvalidTag {
                offset: self.position() - 1,
                what: "option tag",
                tag,
            }),
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

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.nested(|de| visitor.visit_newtype_struct(de))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.read_len(self.zero_sized_left)?;
        self.nested(|de| {
            visitor.visit_seq(CountedAccess {
                de,
                remaining: len,
                entry_start: 0,
            })
        })
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        self.nested(|de| visitor.visit_seq(FixedAccess { de, remaining: len }))
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.read_len(self.zero_sized_left)?;
        self.nested(|de| {
            visitor.visit_map(CountedAccess {
                de,
                remaining: len,
                entry_start: 0,
            })
        })
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    #[inline]
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

/// Elements whose count the type knows: tuples, structs, variants.
struct FixedAccess<'a, 'de> {
    de: &'a mut RecordDeserializer<'de>,
    remaining: usize,
}

impl<'de> de::SeqAccess<'de> for FixedAccess<'_, 'de> {
    type Error = Error;

    #[inline(always)]
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

/// Elements or entries whose count came from a length prefix: sequences and maps.
struct CountedAccess<'a, 'de> {
    de: &'a mut RecordDeserializer<'de>,
    remaining: usize,
    /// Remaining input length when the current map entry started.
    entry_start: usize,
}

impl CountedAccess<'_, '_> {
    /// The pre-allocation hint: never more elements than bytes left, because only
    /// zero-byte elements (which allocate nothing) can outnumber the input bytes.
    fn hint(&self) -> Option<usize> {
        Some(self.remaining.min(self.de.rest.len()))
    }
}

impl<'de> de::SeqAccess<'de> for CountedAccess<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let start_len = self.de.rest.len();
        let value = seed.deserialize(&mut *self.de)?;
        self.de.charge_element(start_len)?;
        Ok(Some(value))
    }

    fn size_hint(&self) -> Option<usize> {
        self.hint()
    }
}

impl<'de> de::MapAccess<'de> for CountedAccess<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        self.entry_start = self.de.rest.len();
        seed.deserialize(&mut *self.de).map(Some)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let value = seed.deserialize(&mut *self.de)?;
        self.de.charge_element(self.entry_start)?;
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        self.hint()
    }
}

impl<'de> de::EnumAccess<'de> for &mut RecordDeserializer<'de> {
    type Error = Error;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let offset = self.position();
        let index = self.read_varint()?;
        let Ok(index) = u32::try_from(index) else {
            return Err(Error::LengthOverflow {
                offset,
                length: index,
                available: u64::from(u32::MAX),
            });
        };
        let value = seed.deserialize(IntoDeserializer::<Error>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut RecordDeserializer<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    #[inline]
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
