//! AeternusDB: an embeddable, persistent key-value store built on a log-structured
//! merge tree.
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod batch;
pub mod cache;
pub mod coding;
pub mod error;
pub mod fs;
pub mod key;
pub mod log_record;
pub mod manifest;
pub mod memtable;
pub mod options;
pub mod sstable;
pub mod wal;

pub use bytes::Bytes;
pub use error::{Error, Result};
pub use options::{Compression, Options, WalRecovery, WriteOptions};
