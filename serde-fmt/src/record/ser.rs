//! The record serializer: serde data model -> record bytes.
//!
//! Fixed-width values are copied as little-endian bytes; only lengths and variant indexes
//! are varints. Nothing is written that the type already knows (field counts, tuple
//! lengths, names), so a struct of primitives encodes as exactly the sum of its fields.

use serde::ser::{self, Serialize};

use crate::error::{Error, Result};
use crate::output::Output;
use crate::varint;

/// Serializes values in the record format into an [`Output`].
#[derive(Debug)]
pub(crate) struct RecordSerializer<O> {
    out: O,
}

impl<O: Output> RecordSerializer<O> {
    pub(crate) fn new(out: O) -> Self {
        Self { out }
    }

    pub(crate) fn into_output(self) -> O {
        self.out
    }

    #[inline(always)]
    fn put_len(&mut self, len: usize) -> Result<()> {
        varint::write_u64(&mut self.out, len as u64)
    }
}

/// The state of a sequence or map being serialized.
///
/// Serde may start a sequence without knowing its length (`serialize_seq(None)`, used by
/// iterator adaptors and `collect_seq` on filters). The format needs the length first, so
/// such a sequence is encoded into a scratch vector and copied after its length. That
/// costs one allocation and one copy per unknown-length sequence; sequences whose length
/// is known (every std collection) go straight to the output.
#[derive(Debug)]
pub(crate) enum Compound<'a, O> {
    /// The length prefix is already written; elements go straight to the output.
    Direct {
        ser: &'a mut RecordSerializer<O>,
        /// Elements still promised by the length prefix.
        remaining: usize,
    },
    /// Elements go to `scratch`; the length prefix is written at the end.
    Buffered {
        ser: &'a mut RecordSerializer<O>,
        scratch: RecordSerializer<Vec<u8>>,
        count: usize,
    },
}

impl<'a, O: Output> Compound<'a, O> {
    fn start(ser: &'a mut RecordSerializer<O>, len: Option<usize>) -> Result<Self> {
        match len {
            Some(len) => {
                ser.put_len(len)?;
                Ok(Self::Direct {
                    ser,
                    remaining: len,
                })
            }
            None => Ok(Self::Buffered {
                ser,
                scratch: RecordSerializer::new(Vec::new()),
                count: 0,
            }),
        }
    }

    /// Serializes one element (or one map key) and counts it.
    #[inline]
    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        match self {
            Self::Direct { ser, remaining } => {
                if *remaining == 0 {
                    return Err(length_mismatch(ser.out.position()));
                }
                *remaining -= 1;
                value.serialize(&mut **ser)
            }
            Self::Buffered { scratch, count, .. } => {
                *count += 1;
                value.serialize(scratch)
            }
        }
    }

    /// Serializes a map value, which is not counted: the prefix counts entries.
    #[inline]
    fn map_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        match self {
            Self::Direct { ser, .. } => value.serialize(&mut **ser),
            Self::Buffered { scratch, .. } => value.serialize(scratch),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Self::Direct { remaining: 0, .. } => Ok(()),
            Self::Direct { ser, .. } => Err(length_mismatch(ser.out.position())),
            Self::Buffered {
                ser,
                scratch,
                count,
            } => {
                ser.put_len(count)?;
                ser.out.put(&scratch.into_output())
            }
        }
    }
}

#[cold]
fn length_mismatch(offset: usize) -> Error {
    Error::Custom {
        offset: Some(offset),
        message: "sequence or map length differs from the length its serialize impl announced"
            .into(),
    }
}

macro_rules! put_le {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        #[inline(always)]
        fn $method(self, value: $ty) -> Result<()> {
            self.out.put(&value.to_le_bytes())
        }
    )*};
}

impl<'a, O: Output> ser::Serializer for &'a mut RecordSerializer<O> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, O>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Compound<'a, O>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    put_le! {
        serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64,
    }

    #[inline(always)]
    fn serialize_bool(self, value: bool) -> Result<()> {
        self.out.put_u8(u8::from(value))
    }

    #[inline(always)]
    fn serialize_i8(self, value: i8) -> Result<()> {
        self.out.put(&value.to_le_bytes())
    }

    #[inline(always)]
    fn serialize_u8(self, value: u8) -> Result<()> {
        self.out.put_u8(value)
    }

    #[inline(always)]
    fn serialize_char(self, value: char) -> Result<()> {
        self.out.put(&u32::from(value).to_le_bytes())
    }

    #[inline(always)]
    fn serialize_str(self, value: &str) -> Result<()> {
        self.serialize_bytes(value.as_bytes())
    }

    #[inline(always)]
    fn serialize_bytes(self, value: &[u8]) -> Result<()> {
        self.put_len(value.len())?;
        self.out.put(value)
    }

    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.out.put_u8(0)
    }

    #[inline]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        self.out.put_u8(1)?;
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
        varint::write_u64(&mut self.out, u64::from(index))
    }

    #[inline]
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        // `Descending` lands here too: it only changes the key format.
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        varint::write_u64(&mut self.out, u64::from(index))?;
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, O>> {
        Compound::start(self, len)
    }

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
        varint::write_u64(&mut self.out, u64::from(index))?;
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, O>> {
        Compound::start(self, len)
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
        varint::write_u64(&mut self.out, u64::from(index))?;
        Ok(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl<O: Output> ser::SerializeSeq for Compound<'_, O> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<O: Output> ser::SerializeMap for Compound<'_, O> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        self.element(key)
    }

    #[inline]
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.map_value(value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

/// Tuples, structs and their variants: fields back to back, nothing around them.
macro_rules! fields_in_order {
    ($($trait:ident :: $method:ident $(($key:ident))?),* $(,)?) => {$(
        impl<O: Output> ser::$trait for &mut RecordSerializer<O> {
            type Ok = ();
            type Error = Error;

            #[inline(always)]
            fn $method<T: ?Sized + Serialize>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result<()> {
                value.serialize(&mut **self)
            }

            #[inline(always)]
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
