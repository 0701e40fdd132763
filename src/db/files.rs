//! Names of the files in a database directory, as the database's parts and the tool
//! use them. [`crate::file_names`] owns every name and the temporary-name rule; this
//! module only re-exports what `db` needs.

pub use crate::file_names::{FileKind, LOCK_FILE, classify};
