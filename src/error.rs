//! The one error type of the crate.
//!
//! Every variant names what it concerns (a path, an LSN, a limit) so that a
//! message in a log is actionable on its own. I/O failures keep the OS error
//! as `source()`. A failed write or sync is final: the journal is poisoned and
//! every later call returns [`Error::Poisoned`] carrying the first error.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Lsn;

/// Result alias used throughout tidelog.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tidelog.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on `path` (at `lsn` when one applies).
    Io {
        /// What was being done, e.g. "write", "fdatasync", "open segment".
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The LSN the operation concerned, if any.
        lsn: Option<Lsn>,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// `Journal::open` was called outside a tokio runtime.
    RuntimeRequired,
    /// The journal was closed (or its writer task stopped with its runtime).
    Closed,
    /// A write or sync failed earlier (or tidelog stopped on an internal
    /// error); the journal accepts nothing more. Reopen it to recover from
    /// what is on disk. Failed fsyncs are never retried, because the kernel
    /// may have dropped the dirty pages.
    Poisoned(Arc<Error>),
    /// Bytes on disk do not form a valid journal where they must.
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// The LSN at which the problem starts.
        lsn: Lsn,
        /// What is wrong.
        reason: String,
    },
    /// Another live journal holds the directory's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A record (or batch) is larger than the configured maximum.
    RecordTooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// An option or argument makes no sense.
    InvalidOptions(String),
    /// An LSN outside what the journal holds, or not the start of a record.
    InvalidLsn {
        /// The LSN asked for.
        lsn: Lsn,
        /// Why it cannot be served.
        reason: String,
    },
    /// A stream index outside what the stream holds, or an operation its
    /// state does not allow (see [`Streams`](crate::Streams)).
    InvalidIndex {
        /// The stream.
        stream: u64,
        /// The index asked for.
        index: u64,
        /// Why it cannot be served.
        reason: String,
    },
    /// The platform or filesystem cannot do what was asked.
    Unsupported(String),
    /// tidelog found its own state inconsistent (a bug, not a disk error).
    /// The journal stops as it does on an I/O failure: reopen it to recover
    /// from what is on disk, and please report the message.
    Internal(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), lsn: None, source: Arc::new(source) }
    }

    pub(crate) fn io_at(op: &'static str, path: impl Into<PathBuf>, lsn: Lsn, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), lsn: Some(lsn), source: Arc::new(source) }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, lsn: Lsn, reason: impl Into<String>) -> Error {
        Error::Corrupt { path: path.into(), lsn, reason: reason.into() }
    }

    /// True for [`Error::Poisoned`].
    pub fn is_poisoned(&self) -> bool {
        matches!(self, Error::Poisoned(_))
    }

    /// The OS error behind this error, if there is one (looking through
    /// `Poisoned`).
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Poisoned(first) => first.os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, lsn: Some(lsn), source } => {
                write!(f, "{op} failed on {} at LSN {lsn}: {source}", path.display())
            }
            Error::Io { op, path, lsn: None, source } => {
                write!(f, "{op} failed on {}: {source}", path.display())
            }
            Error::RuntimeRequired => f.write_str("a tokio runtime is required (none is running)"),
            Error::Closed => f.write_str("the journal is closed"),
            Error::Poisoned(first) => {
                write!(f, "the journal is poisoned by an earlier failure ({first}); reopen it to recover")
            }
            Error::Corrupt { path, lsn, reason } => {
                write!(f, "corrupt journal at {} (LSN {lsn}): {reason}", path.display())
            }
            Error::Locked { path } => write!(f, "the journal is locked by another live Journal ({})", path.display()),
            Error::RecordTooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds the maximum of {max} bytes")
            }
            Error::InvalidOptions(why) => write!(f, "invalid options: {why}"),
            Error::InvalidLsn { lsn, reason } => write!(f, "invalid LSN {lsn}: {reason}"),
            Error::InvalidIndex { stream, index, reason } => {
                write!(f, "invalid index {index} of stream {stream}: {reason}")
            }
            Error::Unsupported(why) => write!(f, "unsupported: {why}"),
            Error::Internal(what) => write!(f, "internal error in tidelog (a bug; please report it): {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source.as_ref()),
            Error::Poisoned(first) => Some(first.as_ref()),
            _ => None,
        }
    }
}

/// The runtime the caller runs on, checked for what tidelog needs of it:
/// [`Error::RuntimeRequired`] outside one, and [`Error::Unsupported`]
/// naming the builder call when it was built without its time driver
/// (timeouts, stall reports, `SyncPolicy::Interval`, the group-commit
/// window and followers need it). A runtime without its I/O driver is
/// fine: `Auto` then runs the `Blocking` substrate, which needs none, and
/// followers poll. It lives here, at the bottom layer, because every layer
/// that runs on tokio asks it.
pub(crate) fn runtime() -> Result<tokio::runtime::Handle> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::RuntimeRequired)?;
    // tokio offers no query for its drivers; making a timer panics (inside
    // tokio, before anything is registered) when the time driver is off.
    let timer = std::panic::AssertUnwindSafe(|| drop(tokio::time::sleep(std::time::Duration::ZERO)));
    if std::panic::catch_unwind(timer).is_err() {
        return Err(Error::Unsupported(
            "the tokio runtime has no time driver: build it with `enable_time()` (or `enable_all()`)".into(),
        ));
    }
    Ok(handle)
}
