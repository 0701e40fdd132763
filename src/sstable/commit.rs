//! Creating a table durably: the one path by which flushes and compactions make
//! table files.
//!
//! 1. [`NewTable::create`] creates `NNNNNN.sst.tmp` ([`temp_file_name`] of
//!    [`table_file_name`]) and a [`TableBuilder`] over it;
//! 2. the caller adds entries and range tombstones through [`NewTable::builder`];
//! 3. [`NewTable::commit`] finishes the table (which syncs the file), renames it to
//!    `NNNNNN.sst`, syncs the directory and opens it.
//!
//! # Invariants
//! - A file under the final name is complete and synced, and so is its directory
//!   entry, by the time `commit` returns it; until then only the temp name exists,
//!   which no manifest names and open removes.
//! - On any failure every name the table had is removed (best effort: a removal that
//!   fails too is repeated by the next open), so a full disk gets its space back and
//!   the work can be retried. [`NewTable::discard`] does the same for a table the
//!   caller gives up on. The builder, and with it the file, is closed before the
//!   removal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cache::BlockCache;
use crate::error::Result;
use crate::file_names::{table_file_name, temp_file_name};
use crate::fs::FileSystem;

use super::properties::Properties;
use super::{Table, TableBuilder, TableOptions};

/// A table being written under its temporary name; see the module doc.
pub struct NewTable<'a> {
    fs: &'a dyn FileSystem,
    dir: &'a Path,
    number: u64,
    temp: PathBuf,
    builder: TableBuilder,
}

impl std::fmt::Debug for NewTable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTable").field("temp", &self.temp).finish_non_exhaustive()
    }
}

impl<'a> NewTable<'a> {
    /// Creates the temp file of table `number` in `dir`.
    pub fn create(
        fs: &'a dyn FileSystem,
        dir: &'a Path,
        number: u64,
        options: TableOptions,
    ) -> Result<NewTable<'a>> {
        let temp = dir.join(temp_file_name(&table_file_name(number)));
        match fs.create(&temp) {
            Ok(file) => {
                Ok(NewTable { fs, dir, number, temp, builder: TableBuilder::new(file, options) })
            }
            Err(e) => {
                // A create can fail after making the file (e.g. out of space).
                let _ = fs.remove_file(&temp);
                Err(e.into())
            }
        }
    }

    /// The table's number (its id and file name).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Where entries and range tombstones go, in the builder's order. After an error
    /// from it, [`discard`](Self::discard) the table.
    pub fn builder(&mut self) -> &mut TableBuilder {
        &mut self.builder
    }

    /// Finishes, renames, syncs the directory and opens the table with `cache`. On
    /// failure both names are removed.
    pub fn commit(self, cache: Arc<BlockCache>) -> Result<(Table, Properties)> {
        let NewTable { fs, dir, number, temp, builder } = self;
        let path = dir.join(table_file_name(number));
        let commit = || -> Result<(Table, Properties)> {
            let properties = builder.finish()?;
            fs.rename(&temp, &path)?;
            fs.sync_dir(dir)?;
            Ok((Table::open(fs, &path, number, cache)?, properties))
        };
        commit().inspect_err(|_| {
            // Unnamed files: if these removals fail too, the next open removes them.
            let _ = fs.remove_file(&temp);
            let _ = fs.remove_file(&path);
        })
    }

    /// Gives the table up: closes the file and removes it.
    pub fn discard(self) {
        let NewTable { fs, temp, builder, .. } = self;
        drop(builder);
        let _ = fs.remove_file(&temp);
    }
}

/// Creates table `number` in `dir`, lets `fill` add its contents, and commits it
/// ([`NewTable`]). On any failure every name the table had is removed.
pub fn write_table(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    options: TableOptions,
    cache: Arc<BlockCache>,
    fill: impl FnOnce(&mut TableBuilder) -> Result<()>,
) -> Result<(Table, Properties)> {
    let mut table = NewTable::create(fs, dir, number, options)?;
    match fill(table.builder()) {
        Ok(()) => table.commit(cache),
        Err(e) => {
            table.discard();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FaultFs, FaultKind};
    use crate::key::{Entry, ValueKind};
    use bytes::Bytes;

    fn fill(builder: &mut TableBuilder) -> Result<()> {
        for i in 0..200u32 {
            let key = Bytes::from(format!("key{i:04}"));
            let value = Bytes::from(vec![7; 100]);
            builder.add(&Entry { key, seqno: 1, kind: ValueKind::Put, value })?;
        }
        Ok(())
    }

    /// A committed table is under its final name only; every failure on the way
    /// (create, write, sync, rename, directory sync) leaves no file behind.
    #[test]
    fn a_committed_table_has_one_name_and_a_failed_one_none() {
        let fs = FaultFs::new();
        let dir = PathBuf::from("/db");
        fs.create_dir_all(&dir).unwrap();
        let cache = Arc::new(BlockCache::new(1 << 20));
        let options = TableOptions { block_size: 256, ..TableOptions::default() };
        let (table, properties) = write_table(&fs, &dir, 7, options, cache.clone(), fill).unwrap();
        assert_eq!(properties.entry_count, 200);
        assert_eq!(table.path(), dir.join("000007.sst"));
        assert_eq!(fs.file_names(), vec![dir.join("000007.sst")]);
        drop(table);
        fs.remove_file(&dir.join("000007.sst")).unwrap();

        // Writing a table removes nothing unless it fails: removals are not its operations.
        for kind in FaultKind::ALL.into_iter().filter(|&k| k != FaultKind::Remove) {
            fs.fail_after(kind, 0);
            let result = write_table(&fs, &dir, 8, options, cache.clone(), fill);
            fs.clear_faults();
            let e = result.err().unwrap_or_else(|| panic!("{kind:?} did not fail"));
            assert!(e.to_string().contains("injected"), "{e}");
            assert!(fs.file_names().is_empty(), "{kind:?}: {:?}", fs.file_names());
        }

        // A failing `fill` discards the table too.
        let result = write_table(&fs, &dir, 9, options, cache, |b| {
            fill(b)?;
            Err(crate::Error::InvalidArgument("stop".to_string()))
        });
        assert!(result.is_err());
        assert!(fs.file_names().is_empty());
    }
}
