//! `Descending<T>`: reverses the order of a key field.
//!
//! In the key format the wrapped value's bytes are inverted, so a key like
//! `(region, Descending(amount))` sorts by region ascending, then amount descending, with
//! one `memcmp`. In the record format (and any other serde format) it is just `T`.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Orders `T` in reverse, in Rust and in the key format.
///
/// ```
/// use weir_serde_fmt::{key, Descending};
///
/// let low = key::to_vec(&("eu", Descending(1u32)))?;
/// let high = key::to_vec(&("eu", Descending(9u32)))?;
/// assert!(high < low);
/// assert_eq!(key::from_slice::<(String, Descending<u32>)>(&high)?.1, Descending(9));
/// # Ok::<(), weir_serde_fmt::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
// The name is the marker the key serializer looks for; see `DESCENDING_NEWTYPE_NAME`.
#[serde(rename = "$weir::Descending")]
pub struct Descending<T>(pub T);

impl<T: PartialOrd> PartialOrd for Descending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        other.0.partial_cmp(&self.0)
    }
}

impl<T: Ord> Ord for Descending<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.cmp(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::DESCENDING_NEWTYPE_NAME;

    #[test]
    fn the_serde_name_is_the_marker() {
        // `#[serde(rename)]` needs a literal: the key format only inverts if it matches.
        assert_eq!(crate::key::to_vec(&Descending(1u8)).unwrap(), [0xFE]);
        assert_eq!(crate::to_vec(&Descending(1u8)).unwrap(), [0x01]);
        assert_eq!(DESCENDING_NEWTYPE_NAME, "$weir::Descending");
    }

    #[test]
    fn orders_in_reverse() {
        assert!(Descending(2) < Descending(1));
        assert_eq!(Descending(1).cmp(&Descending(1)), Ordering::Equal);
        assert_eq!(Descending(f64::NAN).partial_cmp(&Descending(1.0)), None);
    }
}
