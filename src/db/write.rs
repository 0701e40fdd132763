//! The write path: group commit, WAL append, memtable insert, memtable rotation and
//! write backpressure.
//!
//! # Group commit
//! A writer appends its encoded batch to the pending group under the queue lock. If
//! no leader is active it becomes the leader: it takes the whole pending group,
//! releases the queue lock, writes the group as **one** WAL record with **one** fsync
//! (if any member asked for sync), inserts it into the memtable and publishes the
//! group's last seqno. Writers that arrive meanwhile form the next group and wait;
//! when the leader is done one of them leads the next group. So N concurrent sync
//! writers pay for far fewer than N fsyncs.
//!
//! Left at that, the groups alternate: while one group syncs the others' writers
//! gather, and the synced group's writers, back a few microseconds later with their
//! next write, miss the group that has just been taken. With 4 writers the groups
//! average 2. So the leader of a synced group first gathers: it waits, for at most
//! half as long as the last WAL sync took, until as many writers have joined as
//! were committing at once when the last group finished (that group's members and the
//! writers then waiting). It waits by yielding its core, not on a condition variable:
//! the writers it waits for need a core to come back, and a wake-up through the
//! condition variable cost as much again (measured: 1.51× with yielding, 1.23× with
//! the condition variable, against not gathering; `docs/measurements.md`). One
//! writer never waits (it is all the writers seen), nor does a group that asked for
//! no sync, whose commit costs less than the wait.
//!
//! # Invariants
//! - Only the leader, holding [`WriterState`]'s lock, writes the WAL or the active
//!   memtable, or rotates them; so seqnos are assigned in WAL order.
//! - A group's seqnos become visible to readers only after all of its entries are in
//!   the memtable (`visible_seqno` is stored last), so a batch is never half visible.
//! - A failed WAL write or sync stops all later writes (`Error::Background`): after
//!   a failed fsync the OS page cache can no longer be trusted. The exception is an
//!   append refused for lack of space, which the WAL takes back: that group fails
//!   alone with `Error::NoSpace` and later groups reuse its seqnos.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::batch::{BatchOp, GroupBuilder, WriteBatch, decode_group};
use crate::compaction::WritePressure;
use crate::error::{Error, Result};
use crate::key::MAX_SEQNO;
use crate::manifest::VersionEdit;
use crate::memtable::{FrozenMemtable, Memtable};
use crate::version::ReadView;
use crate::wal::{WalWriter, segment_file_name};

use super::DbCore;
use super::background_state::Stopped;

/// The state only the commit leader touches.
pub(crate) struct WriterState {
    pub(crate) wal: WalWriter,
}

/// Writers waiting to be committed.
#[derive(Default)]
pub(crate) struct CommitQueue {
    state: Mutex<QueueState>,
    committed: Condvar,
    /// How long the last WAL sync took, in nanoseconds; a leader gathers for at most
    /// half. The sync alone, not the commit, which may include a write stall.
    last_sync_nanos: AtomicU64,
}

/// Why a commit group failed.
enum GroupFailure {
    /// The database was closed while the group waited.
    Closed,
    /// A failure of one of the error classes: a hard one stopped writes until reopen;
    /// for a full disk nothing of the group was kept, and later groups may succeed.
    Stopped(Stopped),
}

struct QueueState {
    pending: GroupBuilder,
    pending_sync: bool,
    /// Writers whose batches are in `pending`.
    pending_members: usize,
    /// The id of the group now being filled.
    pending_id: u64,
    leader_active: bool,
    /// Writers seen committing at once when the last group finished: its members and
    /// the writers then waiting for the next one. A gathering leader waits for as many.
    concurrent_writers: usize,
    /// Every group with an id up to this one is finished.
    finished_through: u64,
    /// Failed groups that still have members to tell: why, and how many.
    failures: HashMap<u64, (GroupFailure, usize)>,
}

impl Default for QueueState {
    fn default() -> Self {
        QueueState {
            pending: GroupBuilder::new(),
            pending_sync: false,
            pending_members: 0,
            pending_id: 1,
            leader_active: false,
            concurrent_writers: 1,
            finished_through: 0,
            failures: HashMap::new(),
        }
    }
}

impl QueueState {
    /// The outcome of finished group `id` for one of its members.
    fn take_outcome(&mut self, id: u64) -> Result<()> {
        let Some((failure, members_left)) = self.failures.get_mut(&id) else { return Ok(()) };
        let error = match failure {
            GroupFailure::Closed => Error::Closed,
            GroupFailure::Stopped(stopped) => stopped.to_error(),
        };
        *members_left -= 1;
        if *members_left == 0 {
            self.failures.remove(&id);
        }
        Err(error)
    }
}

/// What a stalled writer waits for.
#[derive(Clone, Copy)]
enum StallOn {
    Flush,
    /// Compaction, which may also have run out of space.
    Compaction,
}

impl StallOn {
    /// The `waiting_for` field of the stall events.
    fn name(self) -> &'static str {
        match self {
            StallOn::Flush => "flush",
            StallOn::Compaction => "compaction",
        }
    }
}

/// Sleep imposed on a write when flushes are falling behind.
const SLOWDOWN: Duration = Duration::from_millis(1);

impl DbCore {
    /// Commits `batch`, returning when it is in the WAL (synced if `sync`) and visible.
    /// A batch passed by value may become the group's WAL payload without a copy.
    pub(crate) fn write<'b>(
        &self,
        batch: impl Into<Cow<'b, WriteBatch>>,
        sync: bool,
    ) -> Result<()> {
        let batch = batch.into();
        self.check_writable()?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut queue = self.commit.state.lock();
        // A huge batch waits for the pending group to be taken rather than overflow
        // the WAL record; with no leader it commits that group itself first.
        while !queue.pending.has_room_for(&batch) {
            if queue.leader_active {
                self.commit.committed.wait(&mut queue);
            } else {
                self.lead_group(&mut queue);
            }
        }
        if !queue.pending.append(batch) {
            return Err(Error::invalid("too many operations in concurrent batches"));
        }
        queue.pending_sync |= sync;
        queue.pending_members += 1;
        let my_group = queue.pending_id;
        loop {
            if queue.finished_through >= my_group {
                return queue.take_outcome(my_group);
            }
            if !queue.leader_active {
                self.gather(&mut queue);
                self.lead_group(&mut queue);
                continue;
            }
            self.commit.committed.wait(&mut queue);
        }
    }

    /// Before leading a synced group, waits briefly for the writers that were
    /// committing at once to join it (see the module doc). Leads nothing itself: the
    /// caller leads the group once this returns, and no one else can meanwhile.
    fn gather(&self, queue: &mut MutexGuard<'_, QueueState>) {
        if !queue.pending_sync || queue.pending_members >= queue.concurrent_writers {
            return;
        }
        queue.leader_active = true;
        let last_sync = Duration::from_nanos(self.commit.last_sync_nanos.load(Ordering::Relaxed));
        let deadline = Instant::now() + last_sync / 2;
        while queue.pending_members < queue.concurrent_writers && Instant::now() < deadline {
            MutexGuard::unlocked(queue, std::thread::yield_now);
        }
    }

    /// Takes the pending group and commits it with the queue lock released.
    fn lead_group(&self, queue: &mut MutexGuard<'_, QueueState>) {
        queue.leader_active = true;
        let group = std::mem::replace(&mut queue.pending, GroupBuilder::new());
        let sync = std::mem::take(&mut queue.pending_sync);
        let members = std::mem::take(&mut queue.pending_members);
        let id = queue.pending_id;
        queue.pending_id += 1;
        let result = MutexGuard::unlocked(queue, || self.commit_group(group, sync));
        queue.concurrent_writers = members + queue.pending_members;
        if let Err(e) = result {
            let failure = match e {
                Error::Closed => GroupFailure::Closed,
                // Nothing of the group reached the WAL or the memtable (see
                // `commit_group`): it failed alone.
                Error::NoSpace { dir, message } => {
                    GroupFailure::Stopped(Stopped::NoSpace { dir, message })
                }
                // Every other failure stops writes, whether or not the group reached the
                // WAL: a group that did holds seqnos the memtable never got, and a later
                // group reusing them would break the seqno continuity the next open
                // checks. (Recording an error that is already recorded keeps the first.)
                failed => {
                    let why = match failed {
                        Error::Background(why) => why,
                        other => other.to_string(),
                    };
                    self.set_background_error(&why);
                    GroupFailure::Stopped(Stopped::Hard(why))
                }
            };
            if members > 0 {
                queue.failures.insert(id, (failure, members));
            }
        }
        queue.finished_through = id;
        queue.leader_active = false;
        self.commit.committed.notify_all();
    }

    fn commit_group(&self, group: GroupBuilder, sync: bool) -> Result<()> {
        let mut writer = self.writer.lock();
        self.check_writable()?;
        self.make_room_for_write(&mut writer)?;
        let view = self.view.load();
        let active = &view.active;
        let base = active.max_lsn() + 1;
        let last = base + u64::from(group.count()) - 1;
        if last > MAX_SEQNO {
            return Err(Error::Background("sequence numbers exhausted".into()));
        }
        let user_bytes = group.user_bytes();
        let payload = group.finish(base);
        if let Err(e) = writer.wal.append(&payload) {
            // On a full disk the WAL takes the partial record back and stays usable:
            // this group fails alone and its seqnos are free again.
            return Err(match writer.wal.is_usable() {
                true => self.no_space_or(e, "appending to the WAL"),
                false => e,
            });
        }
        if sync {
            let started = Instant::now();
            writer.wal.sync()?;
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.commit.last_sync_nanos.store(nanos, Ordering::Relaxed);
        }
        self.stats.wal_bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.stats.user_bytes.fetch_add(user_bytes, Ordering::Relaxed);
        apply_group_payload(active, &active.hold(payload))
            .map_err(|_| Error::Background("an encoded group failed to decode".into()))?;
        self.memory.memtables_of(&view);
        self.visible_seqno.store(last, Ordering::Release);
        Ok(())
    }

    /// Rotates the memtable when it is full, slowing or stalling the writer while too
    /// many frozen memtables wait for flush.
    /// Also holds writers back while compaction is behind (the strategy's write
    /// pressure): a short sleep per group at `Slowdown`, a wait at `Stop`.
    ///
    /// A stall waits with the writer lock released (the caller stays the commit
    /// leader, so no other group commits meanwhile): `flush()`, `sync_wal()` and
    /// `close()` go on while writes are stopped.
    fn make_room_for_write(&self, writer: &mut MutexGuard<'_, WriterState>) -> Result<()> {
        let mut slowed = false;
        loop {
            let view = self.view.load();
            let full = view.active.approximate_size() >= self.options.write_buffer_size;
            let frozen = view.frozen.len();
            let max_frozen = self.options.max_frozen_memtables;
            // A `Stop` is confirmed from the current version, and so is every wake-up
            // of the stall: no cached value can keep a writer waiting.
            let pressure = match self.write_pressure() {
                WritePressure::Stop => self.write_pressure_of(&view.version),
                pressure => pressure,
            };
            if pressure == WritePressure::Stop {
                let stopped =
                    || self.write_pressure_of(&self.view.load().version) == WritePressure::Stop;
                MutexGuard::unlocked(writer, || self.stall(StallOn::Compaction, stopped))?;
                // Checked again under the writer lock: `close()` may have taken it
                // meanwhile, and nothing may be written after it.
                self.check_writable()?;
            } else if full && frozen >= max_frozen {
                let too_many = || self.view.load().frozen.len() >= max_frozen;
                MutexGuard::unlocked(writer, || self.stall(StallOn::Flush, too_many))?;
                self.check_writable()?;
            } else if !slowed
                && (pressure == WritePressure::Slowdown || (full && frozen + 1 >= max_frozen))
            {
                slowed = true;
                MutexGuard::unlocked(writer, || std::thread::sleep(SLOWDOWN));
                if self.stats.record_slowdown(SLOWDOWN) {
                    let waiting_for =
                        if pressure == WritePressure::Slowdown { "compaction" } else { "flush" };
                    tracing::warn!(
                        target: "aeternusdb::write",
                        waiting_for,
                        sleep_us = SLOWDOWN.as_micros() as u64,
                        "write slowdown began: each write sleeps"
                    );
                }
                // The writer lock was released: `close()` (or a failure) may have
                // happened meanwhile, and nothing may be written after it.
                self.check_writable()?;
            } else {
                if !slowed && let Some(slowdowns) = self.stats.end_slowdown_run() {
                    tracing::info!(target: "aeternusdb::write", slowdowns, "write slowdown ended");
                }
                return if full { self.freeze_active_memtable(writer) } else { Ok(()) };
            }
        }
    }

    /// Waits while `pending()` holds (for flushes or compactions to catch up), counting
    /// the stall, and then re-checks that writing is still allowed. `on` names what
    /// is behind, for the event that reports the stall once it is over.
    fn stall(&self, on: StallOn, pending: impl FnMut() -> bool) -> Result<()> {
        let started = Instant::now();
        let waiting_for = on.name();
        tracing::debug!(target: "aeternusdb::write", waiting_for, "write stall began");
        let waited = match on {
            StallOn::Flush => self.wait_for_flushes_while(pending),
            StallOn::Compaction => self.wait_for_compactions_while(pending),
        };
        tracing::warn!(
            target: "aeternusdb::write",
            waiting_for,
            duration_us = started.elapsed().as_micros() as u64,
            ended_by = if waited.is_ok() { "progress" } else { "error or close" },
            "write stall: writes waited"
        );
        waited?;
        self.stats.record_stall(started.elapsed());
        self.check_writable()
    }

    /// Freezes the active memtable and starts a new one with a new WAL segment.
    ///
    /// The old segment is synced first: only the newest segment may end torn.
    ///
    /// A failure stops all writes (`Error::Background`), whichever caller saw it: the
    /// half-made segment may be left behind with a number a later rotation's range
    /// `[log_number, last_wal]` would cover, and only a reopen removes it safely.
    ///
    /// The one exception is a disk too full for the new segment or for the manifest
    /// edit naming it: the segment is removed again and the caller gets
    /// `Error::NoSpace`; the memtable stays active and the next write tries again. If
    /// that removal fails, the segment stays behind and writes stop after all.
    pub(crate) fn freeze_active_memtable(
        &self,
        writer: &mut MutexGuard<'_, WriterState>,
    ) -> Result<()> {
        let result = self.rotate_memtable(writer);
        match &result {
            Ok(()) | Err(Error::NoSpace { .. }) => {}
            Err(e) => self.set_background_error(&format!("memtable rotation failed: {e}")),
        }
        result
    }

    fn rotate_memtable(&self, writer: &mut MutexGuard<'_, WriterState>) -> Result<()> {
        let number = self.new_file_number();
        // Only the last segment may end in a reserved (zero) tail: replay takes one
        // in an older segment for lost records.
        writer.wal.finish()?;
        let wal = WalWriter::create(&*self.fs, &self.dir, number, self.db_id).map_err(|e| {
            self.remove_unnamed_segment(number, self.no_space_or(e, "creating a WAL segment"))
        })?;
        let edit = VersionEdit { last_wal: Some(number), ..VersionEdit::default() };
        if let Err(e) = self.log_and_apply(edit) {
            // On a full disk the manifest took the edit back: nothing names the segment.
            drop(wal);
            return Err(self.remove_unnamed_segment(number, e));
        }
        writer.wal = wal;
        self.install_view(|view| {
            let fresh = Memtable::new(number, self.options.write_buffer_size);
            fresh.inject_max_lsn(view.active.max_lsn());
            let mut frozen = Vec::with_capacity(view.frozen.len() + 1);
            frozen.push(FrozenMemtable::new(view.active.clone()));
            frozen.extend(view.frozen.iter().cloned());
            ReadView { active: Arc::new(fresh), frozen, version: view.version.clone() }
        });
        Ok(())
    }

    /// After a rotation failed with `failure` before anything named segment `number`:
    /// on a full disk, removes the segment, so that no later rotation's range covers
    /// it, and passes the `Error::NoSpace` on; a removal that fails becomes the error
    /// (one that stops writes). Other failures pass unchanged.
    fn remove_unnamed_segment(&self, number: u64, failure: Error) -> Error {
        if !matches!(failure, Error::NoSpace { .. }) {
            return failure;
        }
        match self.fs.remove_file(&self.dir.join(segment_file_name(number))) {
            Err(removal) if removal.kind() != std::io::ErrorKind::NotFound => Error::Io(removal),
            _ => failure,
        }
    }
}

/// Inserts every operation of a group payload into `memtable`. Keys and values are
/// slices of `payload`, so this allocates nothing per entry but the skiplist node.
/// `Err` holds the offset of undecodable bytes.
pub(crate) fn apply_group_payload(memtable: &Memtable, payload: &Bytes) -> Result<(), usize> {
    for op in decode_group(payload)? {
        match op? {
            (seqno, BatchOp::Point { key, kind, value }) => {
                memtable.insert(key, seqno, kind, Memtable::settle(value, payload.len()))
            }
            (seqno, BatchOp::RangeDelete { start, end }) => {
                memtable.insert_range_tombstone(start, end, seqno)
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::options::Options;
    use crate::{Db, WriteBatch};

    fn open(dir: &std::path::Path) -> Db {
        let options = Options { sync_writes: false, ..Options::default() };
        Db::open(dir, options).expect("open")
    }

    /// Regression: a group that failed inside the commit (here: seqnos exhausted)
    /// returned its error without stopping writes, so a later group could take the
    /// seqnos of one that had reached the WAL.
    #[test]
    fn a_group_that_fails_in_commit_stops_later_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.core().view.load().active.inject_max_lsn(MAX_SEQNO - 1);
        let mut two = WriteBatch::new();
        two.put("a", "1").expect("put").put("b", "2").expect("put");
        assert!(matches!(db.write(&two), Err(Error::Background(_))));
        // One seqno is left, but writes stay stopped until reopen.
        assert!(matches!(db.put("c", "3"), Err(Error::Background(_))));
    }

    /// Regression: the cached write pressure could be left at `Stop` by a stale
    /// computation; a writer then waited (holding the writer lock) until `close()`.
    #[test]
    fn a_stale_stop_does_not_stall_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.core().write_pressure.store(WritePressure::Stop as u8, Ordering::Release);
        let (done, finished) = mpsc::channel();
        let writer = db.clone();
        std::thread::spawn(move || {
            let _ = done.send(writer.put("k", "v"));
        });
        let result = finished.recv_timeout(Duration::from_secs(20));
        assert!(matches!(result, Ok(Ok(()))), "the write stalled on a stale Stop: {result:?}");
    }
}
