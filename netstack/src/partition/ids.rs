//! Index newtypes of the producer side, so a subpartition index and a channel index can
//! never be swapped by accident.

use std::fmt;

/// The index of a [`ResultSubpartition`](super::ResultSubpartition) within its
/// [`ResultPartition`](super::ResultPartition), in `0..subpartitions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubpartitionIndex(pub u32);

/// The index of an output channel a [`ChannelSelector`](super::ChannelSelector) picks, in
/// `0..channels`. On the producer side channel `i` is subpartition `i`
/// ([`ChannelIndex::to_subpartition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelIndex(pub u32);

impl SubpartitionIndex {
    /// The index as a `usize`, for indexing a slice.
    ///
    /// # Panics
    ///
    /// Never on the 32- and 64-bit targets weir supports.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).expect("a u32 fits a usize on every supported target")
    }

    /// The index of `index` as a `u32`.
    ///
    /// # Panics
    ///
    /// When `index` does not fit a `u32` (no partition has that many subpartitions).
    pub fn from_usize(index: usize) -> SubpartitionIndex {
        SubpartitionIndex(u32::try_from(index).expect("subpartition index fits a u32"))
    }
}

impl ChannelIndex {
    /// The index as a `usize`, for indexing a slice.
    ///
    /// # Panics
    ///
    /// Never on the 32- and 64-bit targets weir supports.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).expect("a u32 fits a usize on every supported target")
    }

    /// The subpartition that feeds this channel: the one with the same index.
    pub fn to_subpartition(self) -> SubpartitionIndex {
        SubpartitionIndex(self.0)
    }
}

impl fmt::Display for SubpartitionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subpartition {}", self.0)
    }
}

impl fmt::Display for ChannelIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel {}", self.0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn indexes_convert_and_display() {
        let index = SubpartitionIndex::from_usize(3);
        assert_eq!(index.as_usize(), 3);
        assert_eq!(index.to_string(), "subpartition 3");
        let channel = ChannelIndex(5);
        assert_eq!(channel.as_usize(), 5);
        assert_eq!(channel.to_subpartition(), SubpartitionIndex(5));
        assert_eq!(channel.to_string(), "channel 5");
    }
}
