//! Whether every value of a type encodes to the same number of bytes, found from the
//! type alone: a probing deserializer walks the shape `T::deserialize` asks for and adds
//! up the primitives' sizes, giving up at the first part whose size depends on the value
//! (strings, byte strings, sequences, maps, options, enums). Kernel operators update such
//! records in place (docs/FORMAT.md §1: primitives have fixed sizes and compounds add
//! nothing around their fields).

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// The encoded size every value of `T` has, or `None` when values of `T` may differ in
/// size or `T` cannot be probed (a type that deserializes through `deserialize_any`, or
/// whose visitor rejects the probe's zero values). `None` is always safe: callers then
/// treat the size as variable.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Sums { total: i64, count: u64, flag: bool }
/// let sums = Sums { total: -5, count: 2, flag: true };
/// assert_eq!(weir_serde_fmt::to_vec(&sums)?.len(), 17);
/// assert_eq!(weir_serde_fmt::fixed_size::<Sums>(), Some(17));
/// assert_eq!(weir_serde_fmt::fixed_size::<(i64, f64, [u8; 3])>(), Some(19));
/// assert_eq!(weir_serde_fmt::fixed_size::<(i64, String)>(), None);
/// assert_eq!(weir_serde_fmt::fixed_size::<Option<u64>>(), None);
/// # Ok::<(), weir_serde_fmt::Error>(())
/// ```
pub fn fixed_size<T: DeserializeOwned>() -> Option<usize> {
    let mut probe = Probe { size: 0 };
    T::deserialize(&mut probe).ok()?;
    Some(probe.size)
}

/// Sums the sizes of the primitives it is asked for.
struct Probe {
    size: usize,
}

/// The probe gave up: the type has a part of variable size.
#[derive(Debug)]
struct Variable;

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a part of variable size")
    }
}

impl std::error::Error for Variable {}

impl de::Error for Variable {
    fn custom<T: fmt::Display>(_message: T) -> Variable {
        Variable
    }
}

macro_rules! primitive {
    ($($method:ident $visit:ident $value:expr, $bytes:expr;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Variable> {
                self.size += $bytes;
                visitor.$visit($value)
            }
        )*
    };
}

macro_rules! variable {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Variable> {
                Err(Variable)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for &mut Probe {
    type Error = Variable;

    primitive! {
        deserialize_bool visit_bool false, 1;
        deserialize_i8 visit_i8 0, 1;
        deserialize_i16 visit_i16 0, 2;
        deserialize_i32 visit_i32 0, 4;
        deserialize_i64 visit_i64 0, 8;
        deserialize_i128 visit_i128 0, 16;
        deserialize_u8 visit_u8 0, 1;
        deserialize_u16 visit_u16 0, 2;
        deserialize_u32 visit_u32 0, 4;
        deserialize_u64 visit_u64 0, 8;
        deserialize_u128 visit_u128 0, 16;
        deserialize_f32 visit_f32 0.0, 4;
        deserialize_f64 visit_f64 0.0, 8;
        deserialize_char visit_char '\0', 4;
    }

    variable! {
        deserialize_any deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_option deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Variable> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Variable> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Variable> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Variable> {
        visitor.visit_seq(Fields {
            probe: self,
            left: len,
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Variable> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Variable> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Variable> {
        Err(Variable)
    }
}

/// The fields of a tuple or struct, probed in order.
struct Fields<'a> {
    probe: &'a mut Probe,
    left: usize,
}

impl<'de> SeqAccess<'de> for Fields<'_> {
    type Error = Variable;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Variable> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.probe).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Nested {
        a: (i32, u8),
        b: Wrapper,
        c: (),
        d: [u16; 4],
    }

    #[derive(Serialize, Deserialize)]
    struct Wrapper(f64);

    #[test]
    fn fixed_sizes_equal_the_encoded_length_of_any_value() {
        let value = Nested {
            a: (-7, 200),
            b: Wrapper(1.5),
            c: (),
            d: [1, 2, 3, 4],
        };
        let bytes = crate::to_vec(&value).unwrap();
        assert_eq!(fixed_size::<Nested>(), Some(bytes.len()));
        assert_eq!(fixed_size::<(i128, char, bool)>(), Some(21));
        assert_eq!(fixed_size::<()>(), Some(0));
    }

    #[test]
    fn anything_of_variable_size_is_none() {
        #[derive(Deserialize)]
        enum Either {
            A,
            B,
        }
        assert_eq!(fixed_size::<Vec<u8>>(), None);
        assert_eq!(fixed_size::<(u64, String)>(), None);
        assert_eq!(fixed_size::<(u64, Option<u64>)>(), None);
        assert_eq!(fixed_size::<Either>(), None);
        assert_eq!(fixed_size::<std::collections::BTreeMap<u8, u8>>(), None);
        // A visitor that rejects the probe's zero: treated as variable, which is safe.
        assert_eq!(fixed_size::<std::num::NonZeroU64>(), None);
    }
}
