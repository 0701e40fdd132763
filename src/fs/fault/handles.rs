//! The handles [`FaultFs`](super::FaultFs) hands out: writable and readable files and
//! locks, each sharing the filesystem state.
//!
//! Invariant: a write handle from before a power loss (an older epoch) fails every
//! operation, as a real process's descriptors die with it.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::FaultKind;
use super::state::{InodeRef, State};
use crate::fs::{FileLock, RandomAccessFile, WritableFile};

pub(super) struct FaultWritableFile {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) inode: InodeRef,
    /// The power-loss epoch this handle was created in.
    pub(super) epoch: u64,
    pub(super) len: u64,
}

/// Locks the filesystem state for a write handle from `epoch`, failing if a power loss
/// has killed that handle since.
fn lock_for_handle(state: &Mutex<State>, epoch: u64) -> io::Result<MutexGuard<'_, State>> {
    let state = state.lock();
    if state.epoch != epoch {
        return Err(io::Error::other("file handle lost in a power loss"));
    }
    Ok(state)
}

impl WritableFile for FaultWritableFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut state = lock_for_handle(&self.state, self.epoch)?;
        state.begin(FaultKind::Write)?;
        // Reserved space ahead of the append point is written without new space.
        let reserved = (self.inode.lock().data.len() as u64).saturating_sub(self.len);
        let room = state
            .capacity
            .map(|capacity| capacity.saturating_sub(state.used_bytes()).saturating_add(reserved));
        let full = room.is_some_and(|room| room < data.len() as u64);
        let keep = match room {
            Some(room) if full => Some(room as usize),
            _ => state.tear_next_write.take(),
        };
        let written = keep.map_or(data.len(), |keep| keep.min(data.len()));
        let (start, end) = (self.len as usize, self.len as usize + written);
        let mut inode = self.inode.lock();
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[start..end].copy_from_slice(&data[..written]);
        inode.appended = end;
        drop(inode);
        self.len += written as u64;
        match keep {
            _ if full => Err(io::Error::from(io::ErrorKind::StorageFull)),
            Some(_) => Err(io::Error::other("injected fault: torn write")),
            None => Ok(()),
        }
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let _state = lock_for_handle(&self.state, self.epoch)?;
        let mut inode = self.inode.lock();
        let len = len.min(self.len);
        inode.cut(len)?;
        self.len = len;
        Ok(())
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let state = lock_for_handle(&self.state, self.epoch)?;
        // `used_bytes` locks every inode, this one too: measure before locking it.
        let free = state.capacity.map(|capacity| capacity.saturating_sub(state.used_bytes()));
        let mut inode = self.inode.lock();
        let len = len as usize;
        if free.is_some_and(|free| free < len.saturating_sub(inode.data.len()) as u64) {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        if inode.data.len() < len {
            inode.data.resize(len, 0);
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = lock_for_handle(&self.state, self.epoch)?;
        state.begin(FaultKind::Sync)?;
        let mut inode = self.inode.lock();
        inode.synced_len = inode.appended;
        inode.synced_reserved = inode.data.len();
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

pub(super) struct FaultRandomAccessFile {
    /// For [`FaultKind::Read`] faults only; released before the bytes are locked.
    pub(super) state: Arc<Mutex<State>>,
    pub(super) inode: InodeRef,
    pub(super) len: u64,
}

impl RandomAccessFile for FaultRandomAccessFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.state.lock().begin(FaultKind::Read)?;
        let inode = self.inode.lock();
        let source = usize::try_from(offset)
            .ok()
            .and_then(|start| inode.data.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file")
            })?;
        buf.copy_from_slice(source);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

pub(super) struct FaultFileLock {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) path: PathBuf,
    /// Identifies this lock, so dropping it after a release cannot free a later lock.
    pub(super) token: u64,
}

impl FileLock for FaultFileLock {}

impl Drop for FaultFileLock {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if state.locks.get(&self.path) == Some(&self.token) {
            state.locks.remove(&self.path);
        }
    }
}
