//! The one error type of the crate.
//!
//! Every fallible public function returns [`Result<T>`]. Decoders inside the
//! crate report damage as [`Corruption`] (an offset and
//! a message) and the code that knows which file it was reading turns it into
//! [`Error::Corruption`] with the file's path, so a user always learns *which*
//! file is damaged and *where*.

use std::path::PathBuf;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in AeternusDB.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something the engine does not accept; nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Bytes on disk do not decode or fail their checksum.
    #[error("corruption in {}: {message} (at offset {offset})", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset in that file where the damage was found.
        offset: u64,
        /// What was wrong.
        message: String,
    },

    /// The operating system reported an I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The directory is already open, in this process or another one.
    #[error("database directory {} is locked by another open handle", .0.display())]
    Locked(PathBuf),

    /// `close()` was called on this database.
    #[error("database is closed")]
    Closed,

    /// A hard error: a write or fsync of the WAL or the manifest failed, or a flush or
    /// compaction failed for a reason other than space (a corrupted table, an I/O
    /// error). Writes are refused until the database is reopened; reads go on.
    ///
    /// After a failed write or fsync the state of the OS page cache cannot be trusted,
    /// so the engine stops rather than retries (see docs/architecture.md).
    #[error("background work failed, writes are stopped until reopen: {0}")]
    Background(String),

    /// The disk holding the database is full (`ENOSPC`) or over quota (`EDQUOT`).
    ///
    /// A soft error: nothing acknowledged is lost, reads go on, and writes resume by
    /// themselves once space is available again (a failed flush is retried with
    /// backoff); no reopen is needed. The write that got this error was not applied.
    #[error("no space left for the database in {}: {message}", dir.display())]
    NoSpace {
        /// The database directory.
        dir: PathBuf,
        /// What could not be written.
        message: String,
    },
}

/// Damage found by a decoder that does not know which file it is reading.
///
/// Converted into [`Error::Corruption`] with [`Corruption::in_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Offset of the damage, relative to the start of the file.
    pub offset: u64,
    /// What was wrong.
    pub message: String,
}

impl Corruption {
    /// Damage at `offset`.
    pub fn new(offset: u64, message: impl Into<String>) -> Self {
        Corruption { offset, message: message.into() }
    }

    /// Attaches the file name, making a user-facing error.
    pub fn in_file(self, file: impl Into<PathBuf>) -> Error {
        Error::Corruption { file: file.into(), offset: self.offset, message: self.message }
    }
}

impl Error {
    /// An [`Error::InvalidArgument`] with a formatted message.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    /// True for an I/O error saying the disk is full or over quota, and for
    /// [`Error::NoSpace`].
    pub(crate) fn is_no_space(&self) -> bool {
        match self {
            Error::Io(e) => {
                matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            }
            Error::NoSpace { .. } => true,
            _ => false,
        }
    }
}
