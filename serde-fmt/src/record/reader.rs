//! Reading consecutive records from one buffer.
//!
//! Records carry no length of their own: a buffer of records is just their encodings back
//! to back, and the type says where each one ends.
//!
//! ```text
//!  | record 0 | record 1 | record 2 |
//!  ^ offset 0 ^ offset after next_record ...
//! ```

use serde::Deserialize;

use crate::error::Result;
use crate::record::decode_at;

/// Decodes consecutive records from a borrowed buffer, zero-copy.
///
/// ```
/// let mut buffer = Vec::new();
/// weir_serde_fmt::append_to_vec(&mut buffer, &(1u32, "one"))?;
/// weir_serde_fmt::append_to_vec(&mut buffer, &(2u32, "two"))?;
///
/// let mut reader = weir_serde_fmt::RecordReader::new(&buffer);
/// let mut names = Vec::new();
/// while let Some(record) = reader.next_record::<(u32, &str)>() {
///     names.push(record?.1);
/// }
/// assert_eq!(names, ["one", "two"]);
/// # Ok::<(), weir_serde_fmt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RecordReader<'de> {
    input: &'de [u8],
    offset: usize,
    /// Set after an error: where the next record would start is then unknown.
    failed: bool,
}

impl<'de> RecordReader<'de> {
    /// A reader positioned at the start of `input`.
    #[must_use]
    pub fn new(input: &'de [u8]) -> Self {
        Self {
            input,
            offset: 0,
            failed: false,
        }
    }

    /// Decodes the next record, or returns `None` at the end of the input or after an
    /// error.
    ///
    /// # Errors
    ///
    /// `Some(Err(..))` with any decoding error, its offset counted from the start of the
    /// reader's input. The reader then stops: the following call returns `None`.
    pub fn next_record<T: Deserialize<'de>>(&mut self) -> Option<Result<T>> {
        if self.failed || self.offset == self.input.len() {
            return None;
        }
        match decode_at(self.input, self.offset) {
            Ok((value, end)) => {
                self.offset = end;
                Some(Ok(value))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }

    /// Offset of the next record from the start of the input.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The bytes not yet decoded.
    #[must_use]
    pub fn remaining(&self) -> &'de [u8] {
        &self.input[self.offset..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn reads_records_back_to_back_and_stops_after_an_error() {
        let mut buffer = Vec::new();
        for i in 0..3u16 {
            crate::append_to_vec(&mut buffer, &(i, "x")).unwrap();
        }
        buffer.push(0x01); // half a u16
        let mut reader = RecordReader::new(&buffer);
        for i in 0..3u16 {
            assert_eq!(
                reader.next_record::<(u16, &str)>().unwrap().unwrap(),
                (i, "x")
            );
        }
        assert_eq!(reader.offset(), 12);
        assert_eq!(reader.remaining(), [0x01]);
        let error = reader.next_record::<(u16, &str)>().unwrap().unwrap_err();
        assert!(
            matches!(
                error,
                Error::UnexpectedEof {
                    offset: 12,
                    needed: 2,
                    available: 1
                }
            ),
            "{error}"
        );
        assert!(reader.next_record::<(u16, &str)>().is_none());
    }

    #[test]
    fn empty_input_has_no_records() {
        assert!(RecordReader::new(&[]).next_record::<u8>().is_none());
    }
}
