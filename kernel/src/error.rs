//! The kernel's one error type.
//!
//! Three kinds of failure reach a caller of the kernel, and only two of them are errors:
//! a broken invariant is a bug and panics (`assert!`, release builds too); expected pressure
//! (no budget left for a consumer) is [`KernelError::BudgetExceeded`], which the caller
//! answers on the spot (spill, wait, shrink); the environment (an invalid configuration,
//! a failed mapping, reading past the end of data) is an `Err` carrying the numbers.

use std::fmt;
use std::io;

/// `Result` with [`KernelError`] as the default error.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// One owner that still held memory when a leak check ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakedOwner {
    /// The owner's name, as given to [`crate::memory::MemoryManager::owner`].
    pub consumer: String,
    /// Segments the owner still holds.
    pub segments: usize,
    /// Bytes the owner still holds in reservations (segments not included).
    pub reserved_bytes: usize,
}

/// Everything that can go wrong in the kernel that is not a bug.
#[derive(Debug)]
#[non_exhaustive]
pub enum KernelError {
    /// The memory budget cannot grant a request. Expected pressure: the consumer spills,
    /// waits or shrinks its request.
    BudgetExceeded {
        /// The consumer that asked.
        consumer: String,
        /// Bytes requested.
        requested_bytes: usize,
        /// Bytes that were available to this consumer at the time.
        available_bytes: usize,
        /// The segment size of the manager, to report segment counts.
        segment_size: usize,
    },
    /// A configuration value is out of its valid range.
    InvalidConfig {
        /// The configuration field.
        field: &'static str,
        /// The rejected value, as given.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// An owner was used after `release_all` closed it.
    OwnerClosed {
        /// The owner's name.
        consumer: String,
    },
    /// Owners still held memory when they should have returned it.
    MemoryLeak {
        /// Each owner still holding memory.
        owners: Vec<LeakedOwner>,
    },
    /// A read asked for bytes past the end of the data in a view.
    EndOfData {
        /// Byte position of the read.
        position: u64,
        /// Bytes the read needed.
        requested: usize,
        /// Bytes left before the end.
        available: u64,
    },
    /// Data read from memory is malformed (for example a varint longer than ten bytes).
    Malformed {
        /// Byte position of the malformed data.
        position: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// A spill file operation failed in the operating system (including a full disk).
    SpillIo {
        /// What was being done ("write block", "read block", "create spill file").
        operation: &'static str,
        /// The spill file (its name at creation; files are unlinked once open).
        path: std::path::PathBuf,
        /// Byte offset in the file, where one applies.
        offset: u64,
        /// The system error.
        source: io::Error,
    },
    /// A spill block read back is not what was written: torn, truncated or corrupted.
    CorruptSpill {
        /// The spill file (its name at creation).
        path: std::path::PathBuf,
        /// Byte offset of the block in the file.
        offset: u64,
        /// What did not match.
        what: String,
    },
    /// Writing a block would take spill files past the configured disk quota.
    DiskQuotaExceeded {
        /// The quota in bytes.
        quota_bytes: u64,
        /// Bytes spill files hold now.
        used_bytes: u64,
        /// Bytes the write needed.
        requested_bytes: u64,
    },
    /// The operating system refused to map the segment arena.
    ArenaMap {
        /// Bytes the arena needed.
        bytes: usize,
        /// The system error.
        source: io::Error,
    },
}

impl KernelError {
    /// Whether this error is expected memory pressure (the caller may spill and retry),
    /// rather than a failure of the environment.
    pub fn is_budget_exceeded(&self) -> bool {
        matches!(self, KernelError::BudgetExceeded { .. })
    }
}

impl fmt::Display for KernelError {
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per error variant: the messages read best side by side"
    )]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::BudgetExceeded {
                consumer,
                requested_bytes,
                available_bytes,
                segment_size,
            } => write!(
                f,
                "memory budget exceeded: {consumer} requested {requested_bytes} bytes \
                 ({} segments), {available_bytes} bytes ({} segments) available",
                requested_bytes.div_ceil(*segment_size),
                available_bytes / segment_size,
            ),
            KernelError::InvalidConfig {
                field,
                value,
                expected,
            } => write!(
                f,
                "invalid configuration: {field} = {value}, expected {expected}"
            ),
            KernelError::OwnerClosed { consumer } => {
                write!(
                    f,
                    "memory owner {consumer} was used after release_all closed it"
                )
            }
            KernelError::MemoryLeak { owners } => {
                write!(f, "memory leak: {} owners still hold memory:", owners.len())?;
                for owner in owners {
                    write!(
                        f,
                        " {} ({} segments, {} reserved bytes);",
                        owner.consumer, owner.segments, owner.reserved_bytes
                    )?;
                }
                Ok(())
            }
            KernelError::EndOfData {
                position,
                requested,
                available,
            } => write!(
                f,
                "end of data: read of {requested} bytes at position {position}, \
                 {available} bytes available"
            ),
            KernelError::Malformed { position, what } => {
                write!(f, "malformed data at position {position}: {what}")
            }
            KernelError::SpillIo {
                operation,
                path,
                offset,
                source,
            } => write!(
                f,
                "spill i/o failed: {operation} at offset {offset} of {}: {source}",
                path.display()
            ),
            KernelError::CorruptSpill { path, offset, what } => write!(
                f,
                "corrupt spill block at offset {offset} of {}: {what}",
                path.display()
            ),
            KernelError::DiskQuotaExceeded {
                quota_bytes,
                used_bytes,
                requested_bytes,
            } => write!(
                f,
                "spill disk quota exceeded: {requested_bytes} bytes requested, \
                 {used_bytes} of {quota_bytes} bytes in use"
            ),
            KernelError::ArenaMap { bytes, source } => {
                write!(f, "cannot map a segment arena of {bytes} bytes: {source}")
            }
        }
    }
}

impl std::error::Error for KernelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KernelError::ArenaMap { source, .. } | KernelError::SpillIo { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl From<KernelError> for io::Error {
    /// Budget pressure becomes `OutOfMemory`, a read past the end `UnexpectedEof`, malformed
    /// data `InvalidData`; the kernel error stays inside for callers that downcast.
    fn from(error: KernelError) -> io::Error {
        let kind = match &error {
            KernelError::BudgetExceeded { .. } => io::ErrorKind::OutOfMemory,
            KernelError::EndOfData { .. } => io::ErrorKind::UnexpectedEof,
            KernelError::Malformed { .. } => io::ErrorKind::InvalidData,
            KernelError::InvalidConfig { .. } => io::ErrorKind::InvalidInput,
            KernelError::CorruptSpill { .. } => io::ErrorKind::InvalidData,
            KernelError::DiskQuotaExceeded { .. } => io::ErrorKind::StorageFull,
            KernelError::SpillIo { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_message_names_consumer_and_numbers() {
        let error = KernelError::BudgetExceeded {
            consumer: "sort[3]".into(),
            requested_bytes: 8 * 32768,
            available_bytes: 2 * 32768,
            segment_size: 32768,
        };
        assert_eq!(
            error.to_string(),
            "memory budget exceeded: sort[3] requested 262144 bytes (8 segments), \
             65536 bytes (2 segments) available"
        );
        assert!(error.is_budget_exceeded());
    }

    #[test]
    fn io_error_keeps_the_kernel_error() {
        let error: io::Error = KernelError::EndOfData {
            position: 10,
            requested: 4,
            available: 1,
        }
        .into();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let inner = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<KernelError>());
        assert!(matches!(
            inner,
            Some(KernelError::EndOfData { position: 10, .. })
        ));
    }
}
