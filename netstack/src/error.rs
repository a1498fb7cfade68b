//! The network stack's one error type.
//!
//! As in the kernel, three kinds of failure are told apart: a broken invariant is a bug and
//! panics; expected pressure (no buffer free, no credit) is a typed answer such as `None`;
//! the environment (bad bytes from a peer, memory the kernel cannot grant) is a
//! [`NetError`] carrying the numbers.

use std::fmt;

use weir_kernel::KernelError;

use crate::partition::ChannelIndex;

/// `Result` with [`NetError`] as the default error.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Everything that can go wrong in the network stack that is not a bug.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetError {
    /// A buffer's data type code, read from the wire, names no [`DataType`](crate::DataType).
    UnknownDataType {
        /// The code as read.
        code: u8,
    },
    /// A local buffer pool's guaranteed minimum does not fit the network segments free now.
    InsufficientBuffers {
        /// Segments the local pool requires (its minimum).
        required: usize,
        /// Segments free in the network buffer pool.
        available: usize,
        /// Segments in the network buffer pool's grant.
        total: usize,
    },
    /// A record's length prefix, read from a channel, exceeds the reader's maximum.
    RecordTooLarge {
        /// The channel the record came from.
        channel: ChannelIndex,
        /// The length the prefix announced, in bytes.
        length: usize,
        /// The largest record the reader accepts, in bytes.
        max: usize,
    },
    /// A channel ended in the middle of a record.
    TruncatedRecord {
        /// The channel that ended.
        channel: ChannelIndex,
        /// Bytes of the record (length prefix included) the stream announced.
        expected: usize,
        /// Bytes of the record (length prefix included) received before the end.
        received: usize,
    },
    /// A configuration value out of its range.
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: String,
        /// The allowed range.
        expected: &'static str,
    },
    /// The task was cancelled while it waited for the network (a buffer, or data).
    Cancelled,
    /// A remote channel failed: the connection to its peer was lost, or the peer reported
    /// an error.
    Remote {
        /// The peer ("worker 1 at 127.0.0.1:40000").
        peer: String,
        /// What happened.
        message: String,
    },
    /// Nothing at all (not even a heartbeat) arrived from a peer for the peer timeout: it
    /// is stopped, hung or partitioned; the connection is closed and its channels fail.
    PeerSilent {
        /// The peer ("worker 1 at 127.0.0.1:40000").
        peer: String,
        /// How long it had been silent, in milliseconds.
        silent_ms: u64,
    },
    /// Bytes from a peer break the wire protocol; the connection is closed.
    MalformedFrame {
        /// What is wrong, with the numbers.
        detail: String,
    },
    /// The memory kernel failed (for example the budget cannot grant network memory).
    Kernel(KernelError),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::UnknownDataType { code } => write!(
                f,
                "unknown buffer data type code {code}: known codes are {} to {}",
                crate::DataType::CODE_MIN,
                crate::DataType::CODE_MAX,
            ),
            NetError::InsufficientBuffers {
                required,
                available,
                total,
            } => write!(
                f,
                "insufficient network buffers: a local pool requires {required} segments, \
                 {available} of {total} available"
            ),
            NetError::RecordTooLarge {
                channel,
                length,
                max,
            } => write!(
                f,
                "record too large: {channel} announced {length} bytes, at most {max} accepted"
            ),
            NetError::TruncatedRecord {
                channel,
                expected,
                received,
            } => write!(
                f,
                "truncated record: {channel} ended after {received} of {expected} framed bytes"
            ),
            NetError::Cancelled => write!(f, "cancelled while waiting for the network"),
            NetError::InvalidConfig {
                field,
                value,
                expected,
            } => write!(f, "invalid {field}: {value}, expected {expected}"),
            NetError::MalformedFrame { detail } => write!(f, "malformed frame: {detail}"),
            NetError::Remote { peer, message } => write!(f, "{peer}: {message}"),
            NetError::PeerSilent { peer, silent_ms } => write!(
                f,
                "{peer} sent nothing for {}.{} s: stopped, hung or partitioned",
                silent_ms / 1000,
                silent_ms % 1000 / 100
            ),
            NetError::Kernel(error) => write!(f, "memory kernel: {error}"),
        }
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Kernel(error) => Some(error),
            NetError::UnknownDataType { .. }
            | NetError::InsufficientBuffers { .. }
            | NetError::RecordTooLarge { .. }
            | NetError::TruncatedRecord { .. }
            | NetError::Cancelled
            | NetError::InvalidConfig { .. }
            | NetError::MalformedFrame { .. }
            | NetError::PeerSilent { .. }
            | NetError::Remote { .. } => None,
        }
    }
}

impl From<KernelError> for NetError {
    fn from(error: KernelError) -> NetError {
        NetError::Kernel(error)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn unknown_data_type_names_the_code_and_the_range() {
        let error = NetError::UnknownDataType { code: 7 };
        assert_eq!(
            error.to_string(),
            "unknown buffer data type code 7: known codes are 1 to 6"
        );
        assert!(error.source().is_none());
    }

    #[test]
    fn a_silent_peer_is_named_with_its_silence() {
        let error = NetError::PeerSilent {
            peer: "worker 1 at 127.0.0.1:4000".to_owned(),
            silent_ms: 10_049,
        };
        assert_eq!(
            error.to_string(),
            "worker 1 at 127.0.0.1:4000 sent nothing for 10.0 s: stopped, hung or partitioned"
        );
    }

    #[test]
    fn kernel_error_is_wrapped_and_kept_as_source() {
        let error: NetError = KernelError::OwnerClosed {
            consumer: "netstack[0]".into(),
        }
        .into();
        assert_eq!(
            error.to_string(),
            "memory kernel: memory owner netstack[0] was used after release_all closed it"
        );
        assert!(error.source().is_some());
    }
}
