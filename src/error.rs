//! The root crate's error: the kernel's and the network stack's, plus the failures of
//! files, configuration, input data, tasks and results, each kept apart so that a caller
//! can tell what the user asked for wrongly ([`WeirError::is_usage`]) from what failed
//! while running.
//!
//! ```text
//!   usage (exit 2)                  failure while running (exit 1)
//!   Config  a setting out of range   Data         input bytes that are not what they claim
//!   Usage   a request that cannot    Task         a task failed: stage, task, cause
//!           be done (refused before  Leak         memory or files not returned after a job
//!           anything ran)            WrongAnswer  a result that failed its check
//!   File    a named file missing or  Worker       a worker process failed or said nothing
//!           not permitted            File         any other I/O error (disk full, EIO)
//!   Kernel/Net InvalidConfig         Kernel, Net  everything else
//! ```

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
    /// The network stack failed (buffers, malformed streams, a lost or silent peer).
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
    /// A setting outside its range: the field (of [`Config`](crate::config::Config) or a
    /// job's settings), its value and what is allowed. A command line maps the field to
    /// its flag.
    Config {
        /// The field, as named in the struct (`memory`, `peer_timeout`).
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// What was asked cannot be done, and nothing was run: a bad argument, an output that
    /// is an input, a program that does not fit its budget.
    Usage {
        /// What is wrong, with the numbers.
        message: String,
    },
    /// Input data that is not what it claims to be, found while reading it: a corrupt
    /// block, a malformed row or record.
    Data {
        /// What is wrong and where (file, offset), with the numbers.
        message: String,
    },
    /// A task of a job failed in a way that is not one of the other kinds: a panic (a
    /// bug), or an error the program's own function returned (a
    /// [`Stream::try_map`](crate::dataflow::Stream::try_map) and its kin), whose message
    /// is the cause.
    Task {
        /// The stage's index in the program.
        stage: usize,
        /// The task's index in the stage.
        task: usize,
        /// What happened.
        cause: String,
    },
    /// Memory segments or other resources not returned after a job.
    Leak {
        /// What was left, and after what.
        detail: String,
    },
    /// A result that failed its check against something independent of the bytes it was
    /// computed from (a reference answer, a model, a checksum of the input).
    WrongAnswer {
        /// What differs.
        detail: String,
    },
    /// A worker process failed: its exit status, a timeout, or no report.
    Worker {
        /// Which workers and how.
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

    /// Whether the error comes from what the user asked for (a bad setting or argument, a
    /// file named that does not exist or may not be used) rather than from a failure while
    /// running.
    pub fn is_usage(&self) -> bool {
        match self {
            WeirError::Config { .. }
            | WeirError::Usage { .. }
            | WeirError::Kernel(KernelError::InvalidConfig { .. })
            | WeirError::Net(NetError::InvalidConfig { .. }) => true,
            WeirError::File { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::IsADirectory
                    | io::ErrorKind::NotADirectory
                    | io::ErrorKind::AlreadyExists
            ),
            _ => false,
        }
    }

    /// The exit code a command line gives this error: 2 for a usage error, 1 for a
    /// failure while running.
    pub fn exit_code(&self) -> u8 {
        if self.is_usage() { 2 } else { 1 }
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
            WeirError::Config {
                field,
                value,
                allowed,
            } => write!(
                f,
                "invalid configuration: {field} = {value}, allowed {allowed}"
            ),
            WeirError::Usage { message }
            | WeirError::Data { message }
            | WeirError::Worker { message } => f.write_str(message),
            WeirError::Task { stage, task, cause } => {
                write!(f, "task {task} of stage {stage} failed: {cause}")
            }
            WeirError::Leak { detail } => write!(f, "leak: {detail}"),
            WeirError::WrongAnswer { detail } => write!(f, "wrong answer: {detail}"),
        }
    }
}

impl std::error::Error for WeirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WeirError::Kernel(error) => Some(error),
            WeirError::Net(error) => Some(error),
            WeirError::File { source, .. } => Some(source),
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_failures_while_running_exit_1() {
        let usage = [
            WeirError::Config {
                field: "memory",
                value: "1MiB".into(),
                allowed: "4MiB to 1TiB".into(),
            },
            WeirError::Usage {
                message: "--output x: is the input".into(),
            },
            WeirError::file("open input", "x", io::ErrorKind::NotFound.into()),
        ];
        for error in &usage {
            assert_eq!(error.exit_code(), 2, "{error}");
        }
        let failures = [
            WeirError::Data {
                message: "a corrupt block".into(),
            },
            WeirError::Task {
                stage: 1,
                task: 3,
                cause: "panicked".into(),
            },
            WeirError::Leak {
                detail: "2 segments".into(),
            },
            WeirError::WrongAnswer {
                detail: "Q1 differs".into(),
            },
            WeirError::Worker {
                message: "worker 1 exited with 1".into(),
            },
            WeirError::file("write output", "x", io::Error::from_raw_os_error(28)),
        ];
        for error in &failures {
            assert_eq!(error.exit_code(), 1, "{error}");
        }
    }
}
