//! What a network buffer holds: record bytes or one serialized event.
//!
//! The type travels on the wire as one byte ([`DataType::code`]). Codes are weir's own and
//! stable; 0 is deliberately not a code, so zeroed memory never reads as a valid type.

use crate::error::{NetError, Result};

/// What a [`NetworkBuffer`](crate::NetworkBuffer) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Length-prefixed record bytes; a record may continue in the next buffer.
    Data,
    /// One serialized event that keeps its place among the data.
    Event,
    /// One serialized event that overtakes queued data (for example an unaligned
    /// checkpoint barrier or a cancel).
    PriorityEvent,
    /// An aligned checkpoint barrier: in order, and it blocks its channel until resumed.
    Barrier,
    /// The producer has no more records, but the partition is still open.
    EndOfData,
    /// The last buffer of a subpartition.
    EndOfPartition,
}

impl DataType {
    /// Every data type, in code order.
    pub const ALL: [DataType; 6] = [
        DataType::Data,
        DataType::Event,
        DataType::PriorityEvent,
        DataType::Barrier,
        DataType::EndOfData,
        DataType::EndOfPartition,
    ];

    /// The smallest valid wire code.
    pub const CODE_MIN: u8 = 1;

    /// The largest valid wire code.
    pub const CODE_MAX: u8 = 6;

    /// The stable one-byte wire code.
    pub const fn code(self) -> u8 {
        match self {
            DataType::Data => 1,
            DataType::Event => 2,
            DataType::PriorityEvent => 3,
            DataType::Barrier => 4,
            DataType::EndOfData => 5,
            DataType::EndOfPartition => 6,
        }
    }

    /// The data type with wire code `code`.
    ///
    /// # Errors
    ///
    /// [`NetError::UnknownDataType`] when `code` names no data type (bytes from a peer are
    /// never trusted).
    pub const fn from_u8(code: u8) -> Result<DataType> {
        match code {
            1 => Ok(DataType::Data),
            2 => Ok(DataType::Event),
            3 => Ok(DataType::PriorityEvent),
            4 => Ok(DataType::Barrier),
            5 => Ok(DataType::EndOfData),
            6 => Ok(DataType::EndOfPartition),
            _ => Err(NetError::UnknownDataType { code }),
        }
    }

    /// Whether the buffer holds record bytes.
    pub const fn is_buffer(self) -> bool {
        matches!(self, DataType::Data)
    }

    /// Whether the buffer holds one event (every type that is not record bytes).
    pub const fn is_event(self) -> bool {
        !self.is_buffer()
    }

    /// Whether the buffer overtakes queued data.
    pub const fn is_priority(self) -> bool {
        matches!(self, DataType::PriorityEvent)
    }
}

// The code range stated above matches the table.
const _: () = assert!(DataType::ALL[0].code() == DataType::CODE_MIN);
const _: () = assert!(DataType::ALL[DataType::ALL.len() - 1].code() == DataType::CODE_MAX);
const _: () = assert!(DataType::CODE_MAX as usize - DataType::CODE_MIN as usize + 1 == 6);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for (i, data_type) in DataType::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(data_type.code()), i + 1);
            assert_eq!(DataType::from_u8(data_type.code()).unwrap(), data_type);
        }
    }

    #[test]
    fn unknown_codes_are_errors() {
        for code in (0..=u8::MAX).filter(|c| !(DataType::CODE_MIN..=DataType::CODE_MAX).contains(c))
        {
            match DataType::from_u8(code) {
                Err(NetError::UnknownDataType { code: got }) => assert_eq!(got, code),
                other => panic!("code {code} gave {other:?}"),
            }
        }
    }

    #[test]
    fn only_data_is_a_buffer_and_only_priority_events_overtake() {
        for data_type in DataType::ALL {
            assert_eq!(data_type.is_buffer(), data_type == DataType::Data);
            assert_eq!(data_type.is_event(), data_type != DataType::Data);
            assert_eq!(
                data_type.is_priority(),
                data_type == DataType::PriorityEvent
            );
        }
    }
}
