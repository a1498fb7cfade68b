//! The root crate's error: the kernel's, plus the failures of files and user input.

use std::fmt;
use std::io;
use std::path::PathBuf;

use weir_kernel::KernelError;
use weir_netstack::NetError;

/// `Result` with [`WeirError`] as the default error.
pub type Result<T, E = WeirError> = std::result::Result<T, E>;

/// Everything a weir job or command can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum WeirError {
    /// The kernel failed (memory budget, spill I/O, corrupt data, configuration).
    Kernel(KernelError),
    /// The network stack failed (buffers, malformed streams, cancellation).
    Net(NetError),
    /// A file could not be opened, read or written.
    File {
        /// What was being done ("open input", "write output").
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The user's input is not what the command expects.
    Input {
        /// What is wrong, with the numbers.
        message: String,
    },
}

impl WeirError {
    /// A file error.
    pub fn file(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> WeirError {
        WeirError::File {
            operation,
            path: path.into(),
            source,
        }
    }

    /// Whether the error comes from what the user asked for (bad input, bad configuration)
    /// rather than from the environment while running.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            WeirError::Input { .. }
                | WeirError::File { .. }
                | WeirError::Kernel(KernelError::InvalidConfig { .. })
        )
    }
}

impl fmt::Display for WeirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeirError::Kernel(error) => error.fmt(f),
            WeirError::Net(error) => error.fmt(f),
            WeirError::File {
                operation,
                path,
                source,
            } => write!(f, "cannot {operation} {}: {source}", path.display()),
            WeirError::Input { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for WeirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WeirError::Kernel(error) => Some(error),
            WeirError::Net(error) => Some(error),
            WeirError::File { source, .. } => Some(source),
            WeirError::Input { .. } => None,
        }
    }
}

impl From<NetError> for WeirError {
    fn from(error: NetError) -> WeirError {
        WeirError::Net(error)
    }
}

impl From<KernelError> for WeirError {
    fn from(error: KernelError) -> WeirError {
        WeirError::Kernel(error)
    }
}
