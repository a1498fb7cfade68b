//! The key serializer: serde data model -> order-preserving bytes.
//!
//! Every value is written so that unsigned lexicographic order of the bytes equals the
//! value's order, and so that no encoding is a proper prefix of another encoding of the
//! same type. The second property is what makes concatenation (tuples, structs) and byte
//! inversion ([`crate::Descending`]) order-correct; each method below keeps it.
//!
//! Inversion is a mask XORed into every byte on its way out: `Descending` flips the mask
//! for the duration of its inner value, so nested `Descending`s cancel and no bytes are
//! ever rewritten after the fact.

use serde::ser::{self, Serialize};

use crate::constants::{
    DESCENDING_NEWTYPE_NAME, KEY_ESCAPE, KEY_ESCAPED_ZERO, KEY_SEQ_ELEMENT, KEY_SEQ_END,
    KEY_TERMINATOR,
};
use crate::error::{Error, Result};
use crate::output::Output;

/// Serializes values in the key format into an [`Output`].
#[derive(Debug)]
pub(crate) struct KeySerializer<O> {
    out: O,
    /// `0x00` in ascending context, `0xFF` inside an odd number of `Descending`s.
    mask: u8,
}

impl<O: Output> KeySerializer<O> {
    pub(crate) fn new(out: O) -> Self {
        Self { out, mask: 0 }
    }

    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if self.mask == 0 {
            self.out.put(bytes)
        } else {
            self.put_inverted(bytes)
        }
    }

    fn put_inverted(&mut self, bytes: &[u8]) -> Result<()> {
        let mut buf = [0u8; 64];
        for chunk in bytes.chunks(buf.len()) {
            for (inverted, byte) in buf.iter_mut().zip(chunk) {
                *inverted = byte ^ self.mask;
            }
            self.out.put(&buf[..chunk.len()])?;
        }
        Ok(())
    }

    /// Writes a fixed-width value: XORing the mask into a small array costs less than
    /// the branch and buffer of [`Self::put`], and inlines to a few instructions.
    #[inline(always)]
    fn put_fixed<const N: usize>(&mut self, mut bytes: [u8; N]) -> Result<()> {
        for byte in &mut bytes {
            *byte ^= self.mask;
        }
        self.out.put(&bytes)
    }

    #[inline(always)]
    fn put_u8(&mut self, byte: u8) -> Result<()> {
        self.out.put_u8(byte ^ self.mask)
    }

    /// Writes a byte string with every `0x00` escaped as `00 FF`, then the terminator
    /// `00 00`. Content bytes other than `0x00` compare as themselves; a string compares
    /// below its extensions because the terminator's second byte is the smallest.
    #[inline]
    fn put_escaped(&mut self, bytes: &[u8]) -> Result<()> {
        let mut rest = bytes;
        while let Some(zero) = rest.iter().position(|&byte| byte == 0) {
            self.put(&rest[..zero])?;
            self.put_fixed([KEY_ESCAPE, KEY_ESCAPED_ZERO])?;
            rest = &rest[zero + 1..];
        }
        self.put(rest)?;
        self.put_fixed([KEY_ESCAPE, KEY_TERMINATOR])
    }

    #[inline]
    fn put_variant(&mut self, index: u32) -> Result<()> {
        self.put_fixed(index.to_be_bytes())
    }

    #[cold]
    fn unsupported(&self, what: &'static str) -> Error {
        Error::Unsupported {
            offset: self.out.position(),
            what,
        }
    }
}

/// `f32::total_cmp` order as unsigned bits: negative values have all bits flipped (so
/// larger magnitudes sort lower), non-negative values only the sign bit (so they sort
/// above every negative).
#[inline]
pub(crate) fn f32_order_bits(value: f32) -> u32 {
    let bits = value.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits ^ (1 << 31)
    }
}

/// [`f32_order_bits`] for `f64`.
#[inline]
pub(crate) fn f64_order_bits(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    }
}

macro_rules! put_unsigned_be {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        #[inline]
        fn $method(self, value: $ty) -> Result<()> {
            self.put_fixed(value.to_be_bytes())
        }
    )*};
}

macro_rules! put_signed_be {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        #[inline]
        fn $method(self, value: $ty) -> Result<()> {
            // Flipping the sign bit maps MIN..=MAX onto 0..=unsigned MAX in order.
            let flipped = value.cast_unsigned() ^ (1 << (<$ty>::BITS - 1));
            self.put_fixed(flipped.to_be_bytes())
        }
    )*};
}

impl<'a, O: Output> ser::Serializer for &'a mut KeySerializer<O> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = KeySeq<'a, O>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    put_unsigned_be! {
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128,
    }

    put_signed_be! {
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128,
    }

    #[inline]
    fn serialize_bool(self, value: bool) -> Result<()> {
        self.put_u8(u8::from(value))
    }

    #[inline]
    fn serialize_f32(self, value: f32) -> Result<()> {
        self.put_fixed(f32_order_bits(value).to_be_bytes())
    }

    #[inline]
    fn serialize_f64(self, value: f64) -> Result<()> {
        self.put_fixed(f64_order_bits(value).to_be_bytes())
    }

    #[inline]
    fn serialize_char(self, value: char) -> Result<()> {
        // Code point order is `char`'s order (and UTF-8's byte order).
        self.put_fixed(u32::from(value).to_be_bytes())
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result<()> {
        self.put_escaped(value.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, value: &[u8]) -> Result<()> {
        self.put_escaped(value)
    }

    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.put_u8(0)
    }

    #[inline]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        self.put_u8(1)?;
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<()> {
        self.put_variant(index)
    }

    #[inline]
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        if name != DESCENDING_NEWTYPE_NAME {
            return value.serialize(self);
        }
        self.mask ^= 0xFF;
        let result = value.serialize(&mut *self);
        self.mask ^= 0xFF;
        result
    }

    #[inline]
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        self.put_variant(index)?;
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<KeySeq<'a, O>> {
        // Markers before each element make the length unnecessary, so unknown-length
        // sequences need no buffering here.
        Ok(KeySeq { ser: self })
    }

    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.put_variant(index)?;
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        // A `HashMap` iterates in an arbitrary order, and the serializer cannot tell it
        // from a `BTreeMap`: any bytes written would not be a function of the value.
        Err(self.unsupported("maps have no order in the key format; use a sorted Vec of pairs"))
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.put_variant(index)?;
        Ok(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// A sequence being serialized: `01 element` per element, then `00`.
#[derive(Debug)]
pub(crate) struct KeySeq<'a, O> {
    ser: &'a mut KeySerializer<O>,
}

impl<O: Output> ser::SerializeSeq for KeySeq<'_, O> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.ser.put_u8(KEY_SEQ_ELEMENT)?;
        value.serialize(&mut *self.ser)
    }

    fn end(self) -> Result<()> {
        self.ser.put_u8(KEY_SEQ_END)
    }
}

/// Tuples, structs and their variants: fields back to back, which orders them
/// lexicographically because every field encoding is prefix-free.
macro_rules! fields_in_order {
    ($($trait:ident :: $method:ident $(($key:ident))?),* $(,)?) => {$(
        impl<O: Output> ser::$trait for &mut KeySerializer<O> {
            type Ok = ();
            type Error = Error;

            #[inline]
            fn $method<T: ?Sized + Serialize>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result<()> {
                value.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}

fields_in_order! {
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
    SerializeStruct::serialize_field(_key),
    SerializeStructVariant::serialize_field(_key),
}
