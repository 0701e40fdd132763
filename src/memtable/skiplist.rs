//! `SkipList`: a memtable's sorted map from internal keys to values, its nodes in an
//! arena.
//!
//! A memtable holds hundreds of thousands of entries and is freed all at once after
//! flush. Allocating each node separately cost a `malloc` per insert, a `free` per
//! entry on the flush thread, and left the freed nodes scattered through the heap
//! where the allocator kept them (heaptrack of a 10,000,000-key load: 45 MiB of live
//! nodes and about 65 MiB retained after frees). Here nodes are carved from a few
//! chunks and freed with them.
//!
//! # Invariants
//! 1. **One writer, many readers.** [`SkipList::insert`] holds an internal mutex, so
//!    inserts are serialised whoever calls them; readers take no lock.
//! 2. **Nodes are immutable and stay put.** Once linked, a node's key and value are
//!    never changed, moved or freed until the list is dropped, so a `&Node` lives as
//!    long as the `&SkipList` it came from. Only the links between nodes change.
//! 3. **Publication.** A node's key, value and links are written before it becomes
//!    reachable; it is then linked bottom-up with `Release` stores, and readers load
//!    links with `Acquire`. A reader that reaches a node sees it whole. The list's
//!    height is a `Relaxed` hint: a reader that sees a level not linked yet finds it
//!    empty and descends.
//! 4. **Keys are unique.** Inserting a key already present is refused: a node cannot
//!    be replaced while readers may hold it. The write path never repeats an internal
//!    key (seqnos are unique); recovery that skipped WAL damage might, and then the
//!    one inserted first is kept. For points, replay sorts a group's entries with an
//!    unstable sort, so which copy that is was never defined; range tombstones are
//!    inserted in log order, so the earlier copy wins, and the tombstone index (which
//!    the memtable fills only for accepted inserts) agrees with the list, where with
//!    crossbeam's replacing insert the index kept both copies and the map the later.
//!
//! # Byte layout of a node in its chunk
//! ```text
//! [ link h-1 ] … [ link 1 ] [ link 0 ] [ Node { key, value } ]
//!   8 bytes each, the tower of `h` next-pointers  ^ aligned for the node
//! ```
//! The tower sits before the node (as in RocksDB's `InlineSkipList`) so that level 0's
//! link is adjacent to the key's inline prefix: a search step at the bottom level
//! touches one cache line, not two. Heights are 1 plus a geometric count with
//! branching 1/4, at most [`MAX_HEIGHT`].
//!
//! # Verification
//! The unit tests below also run under Miri (`MIRIFLAGS=-Zmiri-disable-isolation
//! cargo +nightly miri test --lib memtable::skiplist`; proptest reads the working
//! directory; all six passed at 09436bb), which checks the pointer arithmetic and
//! provenance and, for the concurrent test, samples weak-memory behaviours of the
//! atomics: evidence for the orderings above, not a proof over every interleaving.

use std::alloc::{self, Layout};
use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Bound;
use std::ptr::{self, NonNull};
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use parking_lot::Mutex;

use super::{InternalKey, KeyView, compare_keys};

/// The most levels a node can have: 4^12 is 16 million entries, more than a memtable
/// holds.
const MAX_HEIGHT: usize = 12;
/// The first chunk is small, so that an empty or tiny list (the tombstone map, tests'
/// write buffers) costs little; chunks then double up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 4 << 10;
const MAX_CHUNK: usize = 1 << 20;

type Link<V> = AtomicPtr<Node<V>>;
/// A place in the list a link hangs from: a node, or the head (`None`).
type Place<V> = Option<NonNull<Node<V>>>;

/// One entry of the list; its tower of links precedes it in memory.
struct Node<V> {
    key: InternalKey,
    value: V,
}

/// A reader's handle on a node, valid as long as the list it came from.
///
/// A pointer rather than a `&Node`: a reference's provenance covers only the node,
/// and stepping on from it needs the tower below the node.
pub(crate) struct NodeRef<'a, V> {
    node: NonNull<Node<V>>,
    _list: PhantomData<&'a SkipList<V>>,
}

impl<V> Clone for NodeRef<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for NodeRef<'_, V> {}

impl<'a, V> NodeRef<'a, V> {
    pub(crate) fn key(self) -> &'a InternalKey {
        // SAFETY: the node is initialised and lives as long as the list (invariants 2
        // and 3).
        unsafe { &(*self.node.as_ptr()).key }
    }

    pub(crate) fn value(self) -> &'a V {
        // SAFETY: as in `key`.
        unsafe { &(*self.node.as_ptr()).value }
    }
}

impl<V> Node<V> {
    /// The link of `node` at `level`.
    ///
    /// # Safety
    /// `node` must have been allocated by [`Chunks::allocate`] with a tower of more
    /// than `level` links, and those links initialised.
    unsafe fn link<'a>(node: NonNull<Node<V>>, level: usize) -> &'a Link<V> {
        // SAFETY: the tower's links lie directly below the node, level 0 nearest
        // (the layout in the module doc), inside the same chunk.
        unsafe { node.cast::<Link<V>>().sub(level + 1).as_ref() }
    }
}

/// A sorted map from [`InternalKey`] to `V` with lock-free readers.
pub(crate) struct SkipList<V> {
    /// The head's links: level `l` points at the first node of height above `l`.
    head: [Link<V>; MAX_HEIGHT],
    /// Levels in use, at least 1.
    height: AtomicUsize,
    len: AtomicUsize,
    writer: Mutex<Writer>,
    /// The list owns its nodes. Readers on other threads share `&V` (so `V: Sync`
    /// for the list to be `Sync`) and `insert` moves a `V` in from any thread holding
    /// `&SkipList` (so also `V: Send`), which `Mutex<V>` in this marker demands.
    _owns: PhantomData<(Node<V>, Mutex<V>)>,
}

/// The writer's state, behind the list's mutex.
struct Writer {
    chunks: Chunks,
    /// xorshift64 state for node heights.
    rng: u64,
}

impl Writer {
    fn random_height(&mut self) -> usize {
        let mut height = 1;
        while height < MAX_HEIGHT {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if !self.rng.is_multiple_of(4) {
                break;
            }
            height += 1;
        }
        height
    }
}

impl<V> SkipList<V> {
    pub(crate) fn new() -> SkipList<V> {
        SkipList {
            head: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            height: AtomicUsize::new(1),
            len: AtomicUsize::new(0),
            writer: Mutex::new(Writer { chunks: Chunks::default(), rng: 0x2545_f491_4f6c_dd1d }),
            _owns: PhantomData,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head[0].load(Acquire).is_null()
    }

    /// The link at `level` of `at`, or of the head if `at` is `None`.
    fn link(&self, at: Place<V>, level: usize) -> &Link<V> {
        match at {
            None => &self.head[level],
            // SAFETY: every node reached from the head at `level` or above was linked
            // there by `insert`, so its tower is that tall and initialised.
            Some(node) => unsafe { Node::link(node, level) },
        }
    }

    /// Turns a loaded link into a handle that lives as long as the list.
    fn node(&self, link: *mut Node<V>) -> Option<NodeRef<'_, V>> {
        NonNull::new(link).map(|node| NodeRef { node, _list: PhantomData })
    }

    /// Where `key` belongs: the last place before it on each level, and at level 0
    /// the link after that, the first node not less than `key`. Without a key: the
    /// end of the list.
    fn search<K: KeyView + ?Sized>(&self, key: Option<&K>) -> Search<V> {
        let mut preds = [None; MAX_HEIGHT];
        let mut at = None;
        let mut next = ptr::null_mut();
        for level in (0..self.height.load(Relaxed)).rev() {
            loop {
                next = self.link(at, level).load(Acquire);
                let Some(candidate) = self.node(next) else { break };
                match key {
                    Some(key) if compare_keys(candidate.key(), key) != Ordering::Less => break,
                    _ => at = Some(candidate.node),
                }
            }
            preds[level] = at;
        }
        Search { before: at, next, preds }
    }

    /// Inserts `key` with `value`; false, and nothing changes, if `key` is present.
    pub(crate) fn insert(&self, key: InternalKey, value: V) -> bool {
        let mut writer = self.writer.lock();
        let Search { next, preds, .. } = self.search(Some(&key));
        if self.node(next).is_some_and(|n| compare_keys(n.key(), &key) == Ordering::Equal) {
            return false;
        }
        let height = writer.random_height();
        let node = writer.chunks.allocate::<V>(height);
        // SAFETY: `allocate` returned room for the node and a tower of `height` links
        // below it, not yet reachable by anyone.
        unsafe {
            node.as_ptr().write(Node { key, value });
            for (level, pred) in preds.iter().enumerate().take(height) {
                let next = self.link(*pred, level).load(Relaxed);
                node.cast::<Link<V>>().sub(level + 1).write(AtomicPtr::new(next));
            }
        }
        if height > self.height.load(Relaxed) {
            // The new levels' predecessors are the head, as `preds` already says.
            self.height.store(height, Relaxed);
        }
        for (level, pred) in preds.iter().enumerate().take(height) {
            self.link(*pred, level).store(node.as_ptr(), Release);
        }
        self.len.fetch_add(1, Relaxed);
        true
    }

    /// The first node within the lower bound `bound`.
    pub(crate) fn lower_bound<K: KeyView + ?Sized>(
        &self,
        bound: Bound<&K>,
    ) -> Option<NodeRef<'_, V>> {
        match bound {
            Bound::Unbounded => self.node(self.head[0].load(Acquire)),
            Bound::Included(key) => self.node(self.search(Some(key)).next),
            Bound::Excluded(key) => {
                let found = self.node(self.search(Some(key)).next)?;
                match compare_keys(found.key(), key) {
                    Ordering::Equal => self.next(found),
                    _ => Some(found),
                }
            }
        }
    }

    /// The last node within the upper bound `bound`.
    pub(crate) fn upper_bound<K: KeyView + ?Sized>(
        &self,
        bound: Bound<&K>,
    ) -> Option<NodeRef<'_, V>> {
        let Search { before, next, .. } = match bound {
            Bound::Unbounded => self.search::<K>(None),
            Bound::Included(key) | Bound::Excluded(key) => self.search(Some(key)),
        };
        if let (Bound::Included(key), Some(at)) = (bound, self.node(next))
            && compare_keys(at.key(), key) == Ordering::Equal
        {
            return Some(at);
        }
        before.map(|node| NodeRef { node, _list: PhantomData })
    }

    /// The node after `node`. Both share one lifetime: a handle from another, shorter
    /// lived list must not come back as one that outlives it.
    pub(crate) fn next<'a>(&'a self, node: NodeRef<'a, V>) -> Option<NodeRef<'a, V>> {
        // SAFETY: `node` came from this list, so it is linked at level 0.
        self.node(unsafe { Node::link(node.node, 0) }.load(Acquire))
    }

    /// The node before `node`: a search, since nodes have no backward links.
    pub(crate) fn prev<'a>(&'a self, node: NodeRef<'a, V>) -> Option<NodeRef<'a, V>> {
        self.upper_bound(Bound::Excluded(node.key()))
    }

    /// Every node in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = NodeRef<'_, V>> {
        std::iter::successors(self.lower_bound::<InternalKey>(Bound::Unbounded), |n| self.next(*n))
    }
}

/// What [`SkipList::search`] found.
struct Search<V> {
    /// The last place before the key at level 0.
    before: Place<V>,
    /// The link after `before` at level 0: the first node not less than the key.
    next: *mut Node<V>,
    /// The last place before the key on each level, where an insert links in.
    preds: [Place<V>; MAX_HEIGHT],
}

impl<V> Default for SkipList<V> {
    fn default() -> Self {
        SkipList::new()
    }
}

impl<V> Drop for SkipList<V> {
    fn drop(&mut self) {
        let mut next = *self.head[0].get_mut();
        while let Some(node) = NonNull::new(next) {
            // SAFETY: `&mut self`, so no reader is left; each node is reached once
            // along level 0 and dropped in place. `chunks` frees the memory after.
            unsafe {
                next = Node::link(node, 0).load(Relaxed);
                ptr::drop_in_place(node.as_ptr());
            }
        }
    }
}

impl<V> fmt::Debug for SkipList<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkipList").field("len", &self.len()).finish()
    }
}

/// The memory nodes are carved from: chunks that double from [`FIRST_CHUNK`] to
/// [`MAX_CHUNK`] bytes, freed together when the list drops.
#[derive(Default)]
struct Chunks {
    chunks: Vec<Chunk>,
    /// Bytes used of the last chunk.
    used: usize,
}

impl Chunks {
    /// Room for a `Node<V>` with a tower of `height` links below it, uninitialised;
    /// the pointer is to the node.
    fn allocate<V>(&mut self, height: usize) -> NonNull<Node<V>> {
        // Links sit at multiples of the node's alignment minus multiples of 8: aligned
        // only if the node is at least pointer-aligned (it holds a `Bytes`).
        const { assert!(align_of::<Node<V>>() >= align_of::<Link<V>>()) };
        let node = Layout::new::<Node<V>>();
        let tower = height * size_of::<Link<V>>();
        loop {
            if let Some(chunk) = self.chunks.last() {
                let offset = (self.used + tower).next_multiple_of(node.align());
                if offset + node.size() <= chunk.layout.size() {
                    self.used = offset + node.size();
                    // SAFETY: `offset` is inside the chunk, as is the node after it.
                    return unsafe { chunk.start.add(offset) }.cast();
                }
            }
            let size = self.chunks.last().map_or(FIRST_CHUNK, |c| c.layout.size() * 2);
            let align = node.align();
            // A fresh chunk always fits the node, whatever its size.
            let fits = tower.next_multiple_of(node.align()) + node.size();
            self.chunks.push(Chunk::new(size.min(MAX_CHUNK).max(fits), align));
            self.used = 0;
        }
    }
}

/// One allocation of [`Chunks`].
struct Chunk {
    start: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a chunk is plain memory owned by one list; what lives in it is governed by
// the list's own `Send` and `Sync`.
unsafe impl Send for Chunk {}

impl Chunk {
    fn new(size: usize, align: usize) -> Chunk {
        let layout = match Layout::from_size_align(size, align) {
            Ok(layout) => layout,
            // Sizes are at most a few MiB and alignments those of real types.
            Err(_) => unreachable!("chunk layout {size} bytes, align {align}"),
        };
        // SAFETY: the layout has a non-zero size.
        let start = unsafe { alloc::alloc(layout) };
        let Some(start) = NonNull::new(start) else { alloc::handle_alloc_error(layout) };
        Chunk { start, layout }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: allocated in `Chunk::new` with this layout.
        unsafe { alloc::dealloc(self.start.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use bytes::Bytes;

    use super::*;

    fn ik(key: &str, seqno: u64) -> InternalKey {
        InternalKey::new(Bytes::copy_from_slice(key.as_bytes()), seqno)
    }

    #[test]
    fn an_equal_key_is_refused_and_the_first_value_kept() {
        let list = SkipList::new();
        assert!(list.insert(ik("a", 1), 1));
        assert!(!list.insert(ik("a", 1), 2));
        assert!(list.insert(ik("a", 2), 3));
        assert_eq!(list.len(), 2);
        let values: Vec<i32> = list.iter().map(|n| *n.value()).collect();
        assert_eq!(values, vec![3, 1]);
    }

    #[test]
    fn bounds_on_an_empty_list_find_nothing() {
        let list = SkipList::<()>::new();
        assert!(list.is_empty());
        assert!(list.lower_bound::<InternalKey>(Bound::Unbounded).is_none());
        assert!(list.upper_bound::<InternalKey>(Bound::Unbounded).is_none());
        assert!(list.upper_bound(Bound::Included(&ik("a", 1))).is_none());
    }

    #[test]
    fn dropping_the_list_drops_every_value_once() {
        let counted = Arc::new(());
        {
            let list = SkipList::new();
            for i in 0..2_000 {
                assert!(list.insert(ik(&format!("{i:05}"), 1), counted.clone()));
            }
            assert!(!list.insert(ik("00007", 1), counted.clone()));
            assert_eq!(Arc::strong_count(&counted), 2_001);
        }
        assert_eq!(Arc::strong_count(&counted), 1);
    }

    /// Readers walk and search while one writer inserts and then publishes each seqno
    /// (the commit leader's order): every published key must be found, whole.
    #[test]
    fn readers_see_every_published_insert_whole() {
        let inserts: u64 = if cfg!(miri) { 200 } else { 20_000 };
        let list = Arc::new(SkipList::new());
        let published = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (list, published) = (list.clone(), published.clone());
                std::thread::spawn(move || {
                    loop {
                        let seqno = published.load(Acquire);
                        if seqno > 0 {
                            let key = ik(&format!("{:08}", seqno * 7919 % 100_003), seqno);
                            let found = list.lower_bound(Bound::Included(&key));
                            let found = found.expect("a published key is found");
                            assert_eq!(found.key().seqno, seqno);
                            assert_eq!(*found.value(), Bytes::from(seqno.to_string()));
                        }
                        assert!(list.iter().count() as u64 >= seqno);
                        if seqno == inserts {
                            break;
                        }
                    }
                })
            })
            .collect();
        for seqno in 1..=inserts {
            let key = ik(&format!("{:08}", seqno * 7919 % 100_003), seqno);
            assert!(list.insert(key, Bytes::from(seqno.to_string())));
            published.store(seqno, Release);
        }
        for reader in readers {
            reader.join().unwrap();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

        /// Against a `BTreeMap`: contents, order, both bounds of every kind, and
        /// backward steps.
        #[test]
        fn matches_a_btreemap(
            inserts in proptest::collection::vec((0u8..40, 0u64..4, 0u32..1000), 0..200),
            probes in proptest::collection::vec((0u8..42, 0u64..5), 1..20),
        ) {
            let list = SkipList::new();
            let mut model = BTreeMap::new();
            for (key, seqno, value) in inserts {
                let key = ik(&format!("k{key:02}"), seqno);
                let fresh = !model.contains_key(&key);
                if fresh {
                    model.insert(key.clone(), value);
                }
                proptest::prop_assert_eq!(list.insert(key, value), fresh);
            }
            proptest::prop_assert_eq!(list.len(), model.len());
            let all: Vec<(InternalKey, u32)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let got: Vec<(InternalKey, u32)> = list.iter().map(|n| (n.key().clone(), *n.value())).collect();
            proptest::prop_assert_eq!(&got, &all);
            for (key, seqno) in probes {
                let probe = ik(&format!("k{key:02}"), seqno);
                for bound in [Bound::Included(&probe), Bound::Excluded(&probe), Bound::Unbounded] {
                    let low = model.range((bound, Bound::Unbounded)).next().map(|(k, _)| k);
                    proptest::prop_assert_eq!(list.lower_bound(bound).map(|n| n.key()), low);
                    let high = model.range((Bound::Unbounded, bound)).next_back().map(|(k, _)| k);
                    proptest::prop_assert_eq!(list.upper_bound(bound).map(|n| n.key()), high);
                }
            }
            let mut backward = Vec::new();
            let mut at = list.upper_bound::<InternalKey>(Bound::Unbounded);
            while let Some(node) = at {
                backward.push(node.key().clone());
                at = list.prev(node);
            }
            backward.reverse();
            proptest::prop_assert_eq!(backward, all.into_iter().map(|(k, _)| k).collect::<Vec<_>>());
        }
    }

    #[test]
    fn many_chunks_hold_many_nodes_in_order() {
        let list = SkipList::new();
        let n = if cfg!(miri) { 300 } else { 50_000 };
        for i in (0..n).rev() {
            assert!(list.insert(ik(&format!("{i:06}"), 0), i));
        }
        let got: Vec<_> = list.iter().map(|n| n.key().user_key.clone()).collect();
        let want: Vec<_> = (0..n).map(|i| Bytes::from(format!("{i:06}"))).collect();
        assert_eq!(got, want);
        assert!(list.writer.lock().chunks.chunks.len() > 1);
    }
}
