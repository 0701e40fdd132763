//! The state the background threads share with writers and `flush()` callers: which
//! work is running, and why writes are stopped.
//!
//! # Invariants
//! 1. `failed` is set exactly while `state.error` is, so every write learns that it may
//!    go on from one atomic load, without the lock.
//! 2. A hard error ([`Stopped::Hard`]) is never replaced: the first one is reported
//!    until reopen. A no-space stop gives way to a hard error, and is lifted only by
//!    the flush thread, after a flush succeeded (or nothing is left to flush).
//! 3. `state` is the last lock in the order of [`super`]: nothing else is taken while
//!    it is held, and it is never held across I/O.
//! 4. `work` is signalled whenever there may be work (a memtable frozen, a version
//!    changed) and on shutdown; `progress` after every flush and compaction, whether it
//!    succeeded or not. Waiters re-check their condition under `state` after each wake.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;

/// Shared state between writers, `flush()` callers and the flush thread.
#[derive(Default)]
pub(crate) struct Background {
    pub(super) state: Mutex<BackgroundState>,
    /// Set while `state.error` is set.
    pub(super) failed: AtomicBool,
    /// Set by `shut_down`: running compaction jobs stop at their next check.
    pub(super) closing: AtomicBool,
    /// Signalled when there may be work (a memtable frozen, a version changed), or on
    /// shutdown.
    pub(super) work: Condvar,
    /// Signalled after every flush and compaction, successful or not.
    pub(super) progress: Condvar,
}

#[derive(Default)]
pub(super) struct BackgroundState {
    pub(super) shutdown: bool,
    pub(super) error: Option<Stopped>,
    /// Tables being compacted: no second task may take them.
    pub(super) busy: HashSet<u64>,
    /// Background compactions running now.
    pub(super) running_compactions: usize,
    /// Manual compactions in progress (on their callers' threads). Meanwhile
    /// background picking only relieves write pressure, so the manual steps find
    /// their inputs idle; `close()` waits until this is 0.
    pub(super) manual_compactions: usize,
    /// After a compaction ran out of space, none is picked before this instant.
    pub(super) compaction_backoff_until: Option<Instant>,
    /// Why the last compaction failed for lack of space, until one succeeds: writers
    /// stopped on compaction fail with it rather than wait.
    pub(super) compaction_no_space: Option<String>,
}

/// Why writes are refused: the error classes of `docs/architecture.md`.
#[derive(Debug, Clone)]
pub(crate) enum Stopped {
    /// Until reopen: a failed WAL or manifest write or fsync, a flush or compaction
    /// that failed for a reason other than space.
    Hard(String),
    /// Until a flush succeeds again: a flush found the disk full. The flush thread
    /// retries with backoff, so writes resume by themselves once there is space.
    NoSpace { dir: PathBuf, message: String },
}

impl Stopped {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Stopped::Hard(why) => Error::Background(why.clone()),
            Stopped::NoSpace { dir, message } => {
                Error::NoSpace { dir: dir.clone(), message: message.clone() }
            }
        }
    }
}

/// How long compaction waits after running out of space before it picks again.
pub(super) const COMPACTION_NO_SPACE_WAIT: Duration = Duration::from_secs(1);

impl Background {
    /// The error that stopped writes, if any. Every write asks, so the common answer
    /// comes from an atomic flag without taking the lock.
    pub(crate) fn error(&self) -> Option<Stopped> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().error.clone()
    }

    /// Stops writes until reopen.
    pub(crate) fn set_error(&self, why: &str) {
        let mut state = self.state.lock();
        self.set_error_locked(&mut state, why);
        self.progress.notify_all();
    }

    /// Records a hard error (it replaces a no-space one, and an earlier hard error is
    /// kept); the caller holds the state lock.
    pub(super) fn set_error_locked(&self, state: &mut BackgroundState, why: &str) {
        if !matches!(state.error, Some(Stopped::Hard(_))) {
            tracing::error!(
                target: "aeternusdb::background",
                error = why,
                "writes stopped until reopen"
            );
            state.error = Some(Stopped::Hard(why.to_string()));
        } else {
            tracing::warn!(
                target: "aeternusdb::background",
                error = why,
                "a further background error (the first one is kept)"
            );
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Records that a flush found the disk full, unless writes are already stopped.
    pub(super) fn set_no_space_locked(
        &self,
        state: &mut BackgroundState,
        dir: &Path,
        message: String,
    ) {
        // One warning when writes stop, not one per retry.
        match state.error {
            None => {
                tracing::warn!(
                    target: "aeternusdb::background",
                    dir = %dir.display(),
                    error = %message,
                    "disk full: writes fail with NoSpace until a flush fits"
                )
            }
            Some(_) => {
                tracing::debug!(
                    target: "aeternusdb::background",
                    error = %message,
                    "flush retry: the disk is still full"
                )
            }
        }
        state.error.get_or_insert(Stopped::NoSpace { dir: dir.to_path_buf(), message });
        self.failed.store(true, Ordering::Release);
    }

    /// Lifts a no-space stop after a flush succeeded (a hard error stays).
    pub(super) fn clear_no_space_locked(&self, state: &mut BackgroundState) {
        if matches!(state.error, Some(Stopped::NoSpace { .. })) {
            tracing::info!(target: "aeternusdb::background", "disk space found: writes resume");
            state.error = None;
            self.failed.store(false, Ordering::Release);
            // Compaction threads wait for work while writes are stopped.
            self.work.notify_all();
        }
    }

    /// Signals `work` for a reason the compaction threads find only in the version
    /// (reads counted against level-0 tables). Under the lock, so that a thread between
    /// its check and its wait does not miss it.
    pub(crate) fn wake_compactors(&self) {
        let _state = self.state.lock();
        self.work.notify_all();
    }

    pub(crate) fn shut_down(&self) {
        let mut state = self.state.lock();
        state.shutdown = true;
        self.closing.store(true, Ordering::Release);
        self.work.notify_all();
        self.progress.notify_all();
    }

    /// After [`shut_down`](Self::shut_down): waits until every manual compaction has
    /// returned (they see `shutdown` at their next safe point and stop).
    pub(crate) fn wait_for_manual_compactions(&self) {
        let mut state = self.state.lock();
        while state.manual_compactions > 0 {
            self.progress.wait(&mut state);
        }
    }
}
