//! The crate's one error type.
//!
//! Every variant carries the byte offset where the problem was found: in the input for
//! decoding, in the output for encoding. Decoders never panic on malformed bytes; they
//! answer with one of these.

use std::fmt;
use std::io;

/// `Result` with this crate's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while encoding or decoding records and keys.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside a value.
    UnexpectedEof {
        /// Offset of the value that did not fit.
        offset: usize,
        /// Bytes the value needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A tag, marker or flag byte has a value the format does not define.
    InvalidTag {
        /// Offset of the byte.
        offset: usize,
        /// What the byte should have been (`"bool"`, `"option tag"`, ...).
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// A varint is longer than [`crate::constants::VARINT_BYTES_MAX`], overflows `u64`,
    /// or is not in its shortest form.
    InvalidVarint {
        /// Offset of the varint's first byte.
        offset: usize,
    },
    /// A length prefix or variant index is larger than the input (or the platform) allows.
    LengthOverflow {
        /// Offset of the length prefix.
        offset: usize,
        /// The length read.
        length: u64,
        /// The most the remaining input can justify.
        available: u64,
    },
    /// A string is not valid UTF-8.
    InvalidUtf8 {
        /// Offset of the string's first byte.
        offset: usize,
    },
    /// A `char` is not a Unicode scalar value.
    InvalidChar {
        /// Offset of the char.
        offset: usize,
        /// The code point read.
        value: u32,
    },
    /// `from_slice` decoded a value but bytes were left over.
    TrailingBytes {
        /// Offset of the first byte not consumed.
        offset: usize,
        /// How many bytes were left over.
        trailing: usize,
    },
    /// Values are nested deeper than [`crate::constants::DEPTH_MAX`].
    DepthLimitExceeded {
        /// Offset where the limit was crossed.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// More zero-byte elements than [`crate::constants::ZERO_SIZED_ELEMENTS_MAX`].
    ZeroSizedElementsExceeded {
        /// Offset where the limit was crossed.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// The format cannot represent this part of the serde data model (for example
    /// `deserialize_any`, or a map inside a key).
    Unsupported {
        /// Offset in the input or output where it was requested.
        offset: usize,
        /// What was requested.
        what: &'static str,
    },
    /// The buffer given to `to_slice` is too small for the record.
    BufferFull {
        /// Bytes written when the buffer ran out.
        offset: usize,
        /// The buffer's length.
        capacity: usize,
    },
    /// The `io::Write` given to `to_writer` failed.
    Io {
        /// Bytes written before the failure.
        offset: usize,
        /// The writer's error.
        source: io::Error,
    },
    /// A `Serialize` or `Deserialize` implementation reported an error (unknown variant,
    /// wrong length, a custom check).
    Custom {
        /// Where it happened; filled in by the entry points when the implementation did
        /// not know.
        offset: Option<usize>,
        /// The implementation's message.
        message: Box<str>,
    },
}

impl Error {
    /// The byte offset this error refers to, if known.
    #[must_use]
    pub fn offset(&self) -> Option<usize> {
        match *self {
            Self::UnexpectedEof { offset, .. }
            | Self::InvalidTag { offset, .. }
            | Self::InvalidVarint { offset }
            | Self::LengthOverflow { offset, .. }
            | Self::InvalidUtf8 { offset }
            | Self::InvalidChar { offset, .. }
            | Self::TrailingBytes { offset, .. }
            | Self::DepthLimitExceeded { offset, .. }
            | Self::ZeroSizedElementsExceeded { offset, .. }
            | Self::Unsupported { offset, .. }
            | Self::BufferFull { offset, .. }
            | Self::Io { offset, .. } => Some(offset),
            Self::Custom { offset, .. } => offset,
        }
    }

    /// Fills in the offset of a [`Error::Custom`] that has none: serde's error
    /// constructors do not know where in the bytes they are, but the caller does.
    #[cold]
    pub(crate) fn at(mut self, position: usize) -> Self {
        if let Self::Custom { offset, .. } = &mut self {
            offset.get_or_insert(position);
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedEof {
                offset,
                needed,
                available,
            } => write!(
                f,
                "unexpected end of input at byte {offset}: needed {needed} bytes, {available} available"
            ),
            Self::InvalidTag { offset, what, tag } => {
                write!(f, "invalid {what} at byte {offset}: 0x{tag:02x}")
            }
            Self::InvalidVarint { offset } => {
                write!(
                    f,
                    "invalid varint at byte {offset}: overlong or overflows u64"
                )
            }
            Self::LengthOverflow {
                offset,
                length,
                available,
            } => write!(
                f,
                "length {length} at byte {offset} exceeds the {available} the input can hold"
            ),
            Self::InvalidUtf8 { offset } => write!(f, "invalid utf-8 in string at byte {offset}"),
            Self::InvalidChar { offset, value } => {
                write!(
                    f,
                    "invalid char at byte {offset}: 0x{value:x} is not a unicode scalar"
                )
            }
            Self::TrailingBytes { offset, trailing } => {
                write!(
                    f,
                    "{trailing} trailing bytes after the value, starting at byte {offset}"
                )
            }
            Self::DepthLimitExceeded { offset, limit } => {
                write!(f, "nesting deeper than {limit} levels at byte {offset}")
            }
            Self::ZeroSizedElementsExceeded { offset, limit } => {
                write!(f, "more than {limit} zero-byte elements at byte {offset}")
            }
            Self::Unsupported { offset, what } => {
                write!(f, "unsupported at byte {offset}: {what}")
            }
            Self::BufferFull { offset, capacity } => {
                write!(
                    f,
                    "record does not fit: the {capacity}-byte buffer is full at byte {offset}"
                )
            }
            Self::Io { offset, source } => write!(f, "write failed after {offset} bytes: {source}"),
            Self::Custom {
                offset: Some(offset),
                message,
            } => {
                write!(f, "{message} (at byte {offset})")
            }
            Self::Custom {
                offset: None,
                message,
            } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Custom {
            offset: None,
            message: msg.to_string().into_boxed_str(),
        }
    }
}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Custom {
            offset: None,
            message: msg.to_string().into_boxed_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_numbers() {
        let error = Error::UnexpectedEof {
            offset: 7,
            needed: 8,
            available: 3,
        };
        assert_eq!(
            error.to_string(),
            "unexpected end of input at byte 7: needed 8 bytes, 3 available"
        );
        assert_eq!(error.offset(), Some(7));
        let error = Error::InvalidTag {
            offset: 2,
            what: "bool",
            tag: 0x7f,
        };
        assert_eq!(error.to_string(), "invalid bool at byte 2: 0x7f");
    }

    #[test]
    fn custom_errors_take_the_first_offset_given() {
        let error = <Error as serde::de::Error>::custom("unknown variant");
        assert_eq!(error.offset(), None);
        let error = error.at(12).at(40);
        assert_eq!(error.offset(), Some(12));
        assert_eq!(error.to_string(), "unknown variant (at byte 12)");
    }

    #[test]
    fn error_stays_small() {
        // Every `?` on the hot path moves a `Result<_, Error>`; keep it at five words.
        assert!(size_of::<Error>() <= 40, "{}", size_of::<Error>());
    }
}
