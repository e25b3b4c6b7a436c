//! Each key's latest entry in every writer's feed, held in memory, so that
//! a lookup in a database with many writers reads the entries holding the
//! key instead of walking every writer's trie.
//!
//! With `W` writers whose entries are concurrent, the trie of any entry
//! that has seen them all points, where the key's path leaves its own,
//! into each of their tries: a walk visits about one entry per writer (a
//! hundred for a hundred writers), even when one entry has seen every
//! other. This index answers with one lookup and a read of each entry it
//! names, whatever the number of writers.
//!
//! Why its answer is the walk's: a lookup's answer is, of the entries
//! holding the key that the heads have seen, those no other of them has
//! seen (less deletes). Every such entry is the latest holding the key in
//! its writer's feed within what the heads have seen (a writer's entry
//! has seen the ones before it), so the answer is found among each
//! writer's latest, which is what the index keeps. The walk finds them
//! through tries as hyperdb's put writes them (each bucket keeps the
//! pointers of every concurrent head); this crate and hyperdb 3.5.0 write
//! them so, and the tests compare the two answers. An entry whose trie
//! was written otherwise (damaged, or forged by an authorized writer: a
//! pointer left out, or pointing past what the entry had seen) can hide
//! from the walk an entry the index finds: there the index gives the
//! causal answer and the walk the trie's, so a process that has built the
//! index may answer such a key otherwise than one that has not. The key
//! index of a one-writer database trusts its owner's tries the same way.
//!
//! - It holds nothing on disk and changes no byte of the feeds or the
//!   wire. It is built from the feeds, once lookups have walked through
//!   as many entries as it would read (so a process that looks up a few
//!   keys never pays for it), and caught up from the feeds when a lookup
//!   needs entries it has not read. It takes 16 to 40 bytes a key (a hash
//!   table) beside the entry cache, and is not built for more entries
//!   than the cache's budget over [`BYTES_PER_ENTRY`]
//!   ([`crate::OpenOptions::cache_bytes`]: a million entries for the
//!   default 64 MiB, so at most about 40 MiB).
//! - It answers only where it knows the answer: no permission policy, every
//!   writer authorized, and for each writer the latest entry holding the
//!   key's tag is one the heads have seen (a lookup from an older version
//!   of a key rewritten since walks). Keys are found by a 64-bit hash (a
//!   tag): an entry named that holds another key makes the lookup walk. A
//!   tag it does not hold is a key no entry holds: no answer.
//! - It never makes a lookup wait: while one thread builds or catches it
//!   up, lookups in other threads walk.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hypercore_feed::cache::IndexHasher;
use parking_lot::RwLock;

use crate::db::DbReader;
use crate::error::{Error, Result};
use crate::key_index::tag_of;
use crate::node::Node;

/// Bytes of the cache's budget each entry (all writers') takes away: the
/// index is built for at most `cache_bytes / BYTES_PER_ENTRY` entries.
pub(crate) const BYTES_PER_ENTRY: u64 = 64;
/// Bits of a packed seq; the writer's number takes the rest.
const SEQ_BITS: u32 = 48;
/// A packed value that says "several writers: see `many`".
const MANY: u64 = u64::MAX;

type Map<V> = HashMap<u64, V, BuildHasherDefault<IndexHasher>>;

/// See the [module](self).
pub(crate) struct LatestIndex {
    /// The most entries it is built for.
    max_entries: u64,
    /// Entries visited by walks since opening: the index is built once
    /// they are as many as it would read.
    walked: AtomicU64,
    /// No index for this database (too large, or writers or seqs out of
    /// range).
    given_up: AtomicBool,
    held: RwLock<Option<Held>>,
    /// The heads of the last view computed, and the view: lookups come
    /// from the same heads until something is written.
    last_view: RwLock<Option<LastView>>,
    /// Tests: build at the first lookup, and which tag bits count.
    #[cfg(test)]
    pub(crate) tuning: parking_lot::Mutex<Option<u64>>,
}

/// What a database's index of each key's latest entries holds (see
/// [`crate::DbReader::latest_index`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestIndexInfo {
    /// For each writer (in the order of [`crate::DbReader::writers`]), the
    /// entries read (header included).
    pub covered: Vec<u64>,
    /// Entries read that hold a key, every writer's.
    pub entries: u64,
    /// Keys (tags) held.
    pub keys: u64,
}

/// Heads, as (writer, seq) of each, and the view computed from them.
type LastView = (Vec<(usize, u64)>, Arc<[u64]>);

/// What a built index holds.
struct Held {
    /// For each writer, the entries read: `1..covered` (entry 0 is the
    /// feed's header).
    covered: Vec<u64>,
    /// Tag -> (writer << SEQ_BITS | seq) of the latest entry holding a key
    /// with that tag, or [`MANY`] when several writers hold it.
    latest: Map<u64>,
    /// Tags held by several writers: each one's latest, packed.
    many: Map<Vec<u64>>,
    /// Entries read that hold a key.
    entries: u64,
}

/// What [`LatestIndex::find`] can say of a tag.
enum Found {
    /// The latest entries of the tag, each seen by the view.
    Entries(Vec<(usize, u64)>),
    /// A writer's latest entry of the tag is past the view: walk.
    Unknown,
}

impl Held {
    fn covers(&self, view: &[u64]) -> bool {
        view.iter()
            .enumerate()
            .all(|(w, &len)| len <= 1 || self.covered.get(w).is_some_and(|&c| c >= len))
    }

    fn find(&self, tag: u64, view: &[u64]) -> Found {
        let one;
        let packed: &[u64] = match self.latest.get(&tag) {
            None => return Found::Entries(Vec::new()),
            Some(&MANY) => self.many.get(&tag).map_or(&[], Vec::as_slice),
            Some(p) => {
                one = [*p];
                &one
            }
        };
        let mut found = Vec::with_capacity(packed.len());
        for &p in packed {
            let (writer, seq) = unpack(p);
            if view.get(writer).is_none_or(|&len| seq >= len) {
                return Found::Unknown;
            }
            found.push((writer, seq));
        }
        Found::Entries(found)
    }

    /// Records entry `seq` of `writer`, holding a key with `tag`, read
    /// after every earlier entry of that writer.
    fn insert(&mut self, tag: u64, writer: usize, seq: u64) {
        let p = pack(writer, seq);
        self.entries += 1;
        match self.latest.get_mut(&tag) {
            None => {
                self.latest.insert(tag, p);
            }
            Some(old) if *old != MANY && unpack(*old).0 == writer => *old = p,
            Some(old) => {
                let list = self.many.entry(tag).or_default();
                if *old != MANY {
                    list.push(*old);
                    *old = MANY;
                }
                match list.iter_mut().find(|q| unpack(**q).0 == writer) {
                    Some(q) => *q = p,
                    None => list.push(p),
                }
            }
        }
    }
}

fn pack(writer: usize, seq: u64) -> u64 {
    (writer as u64) << SEQ_BITS | seq
}

fn unpack(p: u64) -> (usize, u64) {
    ((p >> SEQ_BITS) as usize, p & ((1 << SEQ_BITS) - 1))
}

impl LatestIndex {
    /// An index not built yet, for a cache budget of `cache_bytes`.
    pub(crate) fn new(cache_bytes: usize) -> Self {
        LatestIndex {
            max_entries: cache_bytes as u64 / BYTES_PER_ENTRY,
            walked: AtomicU64::new(0),
            given_up: AtomicBool::new(false),
            held: RwLock::new(None),
            last_view: RwLock::new(None),
            #[cfg(test)]
            tuning: Default::default(),
        }
    }

    /// Counts `visits` entries visited by a walk that the index could
    /// have answered.
    pub(crate) fn walked(&self, visits: u64) {
        self.walked.fetch_add(visits, Ordering::Relaxed);
    }

    /// What it holds, once built (`None` before, or when another thread
    /// is catching it up).
    pub(crate) fn info(&self) -> Option<LatestIndexInfo> {
        self.held.try_read()?.as_ref().map(|h| LatestIndexInfo {
            covered: h.covered.clone(),
            entries: h.entries,
            keys: h.latest.len() as u64,
        })
    }

    fn mask(&self) -> u64 {
        #[cfg(test)]
        if let Some(mask) = *self.tuning.lock() {
            return mask;
        }
        u64::MAX
    }

    /// The current values of `key` seen from `heads` (no policy applies),
    /// where the index knows them; `None`: walk.
    pub(crate) fn get(
        &self,
        db: &DbReader,
        heads: &[Arc<Node>],
        key: &str,
    ) -> Result<Option<Vec<Arc<Node>>>> {
        if key.is_empty() || heads.is_empty() || self.given_up.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let writers = db.registry.len();
        let reading = db.reading();
        if !(0..writers).all(|w| reading.included(w)) {
            return Ok(None);
        }
        let view = self.view(heads, writers);
        let covered =
            |held: Option<&Option<Held>>| matches!(held, Some(Some(h)) if h.covers(&view));
        let mut held = self.held.try_read();
        if !covered(held.as_deref()) {
            let built = matches!(held.as_deref(), Some(Some(_)));
            drop(held);
            if !self.catch_up(db, &view, built)? {
                return Ok(None);
            }
            held = self.held.try_read();
        }
        let found = match held.as_deref() {
            Some(Some(h)) if h.covers(&view) => h.find(tag_of(key) & self.mask(), &view),
            _ => return Ok(None),
        };
        drop(held);
        let Found::Entries(found) = found else {
            return Ok(None);
        };
        let mut nodes = Vec::with_capacity(found.len());
        for (writer, seq) in found {
            match db.named_node(writer, seq) {
                Ok(Some(node)) if node.key == key => nodes.push(node),
                Ok(_) | Err(Error::BadEntry { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Some(crate::get::latest(nodes, false)))
    }

    /// [`view`], remembered for the last heads.
    fn view(&self, heads: &[Arc<Node>], writers: usize) -> Arc<[u64]> {
        let same = |(ids, view): &LastView| {
            view.len() == writers
                && ids.len() == heads.len()
                && ids
                    .iter()
                    .zip(heads)
                    .all(|(&(f, s), h)| f == h.feed && s == h.seq)
        };
        if let Some(last) = self.last_view.read().as_ref().filter(|l| same(l)) {
            return last.1.clone();
        }
        let computed: Arc<[u64]> = view(heads, writers).into();
        if let Some(mut last) = self.last_view.try_write() {
            let ids = heads.iter().map(|h| (h.feed, h.seq)).collect();
            *last = Some((ids, computed.clone()));
        }
        computed
    }

    /// Builds the index, or reads the entries it lacks for `view` (`built`:
    /// it was, when the caller looked). False
    /// when it is not built (not yet worth it, or not possible) or another
    /// thread holds it.
    fn catch_up(&self, db: &DbReader, view: &[u64], built: bool) -> Result<bool> {
        let total: u64 = view.iter().map(|&len| len.saturating_sub(1)).sum();
        #[cfg(test)]
        let eager = self.tuning.lock().is_some();
        #[cfg(not(test))]
        let eager = false;
        // Until lookups have walked enough, a walking lookup pays for this
        // test alone (no lock).
        let worth_it = eager || self.walked.load(Ordering::Relaxed) >= total;
        if !built && !worth_it {
            return Ok(false);
        }
        let Some(mut held) = self.held.try_write() else {
            return Ok(false);
        };
        if held.is_none() && !worth_it {
            return Ok(false);
        }
        if total > self.max_entries
            || view.len() as u64 >= 1 << (64 - SEQ_BITS)
            || view.iter().any(|&len| len >= 1 << SEQ_BITS)
        {
            *held = None;
            self.given_up.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        let mask = self.mask();
        let h = held.get_or_insert_with(|| Held {
            covered: Vec::new(),
            latest: Map::default(),
            many: Map::default(),
            entries: 0,
        });
        if h.covered.len() < view.len() {
            h.covered.resize(view.len(), 1);
        }
        for (writer, &len) in view.iter().enumerate() {
            while h.covered[writer] < len {
                let seq = h.covered[writer];
                // An entry whose key does not decode is one no lookup
                // reaches; one whose rest does not is found here and read
                // by the lookup, which then walks.
                // One that cannot be read stops the catching up here: the
                // walk meets it and says what is wrong.
                match db.entry_key(writer, seq) {
                    Ok(Some(key)) if !key.is_empty() => h.insert(tag_of(&key) & mask, writer, seq),
                    Ok(_) => {}
                    Err(_) => return Ok(false),
                }
                h.covered[writer] = seq + 1;
            }
        }
        if h.entries > self.max_entries {
            *held = None;
            self.given_up.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }
}

/// How much of each writer's feed `heads` have seen (header included):
/// each head and what its clock covers.
fn view(heads: &[Arc<Node>], writers: usize) -> Vec<u64> {
    let mut view = vec![0; writers];
    for head in heads {
        for (w, &c) in head.clock.iter().enumerate().take(writers) {
            view[w] = view[w].max(c);
        }
        if let Some(v) = view.get_mut(head.feed) {
            *v = (*v).max(head.seq + 1);
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{get, local_sync, Db, DbStorage, Op, OpenOptions};
    use proptest::prelude::*;

    const REPLICAS: usize = 3;
    /// Keys written; lookups also ask for a few never written.
    const KEYS: u8 = 12;

    fn key(k: u8) -> String {
        format!("k/{k}")
    }

    #[derive(Clone, Debug)]
    enum Step {
        Put(usize, u8, u8),
        Del(usize, u8),
        Batch(usize, Vec<(u8, Option<u8>)>),
        /// Replicate both ways.
        Sync(usize, usize),
        /// Copy part of one writer's feed (a quarter per unit).
        Partial(usize, usize, usize, u8),
        /// Compare answers at every replica's heads, and keep the heads.
        Check,
    }

    fn step() -> impl Strategy<Value = Step> {
        let r = 0..REPLICAS;
        prop_oneof![
            5 => (r.clone(), 0..KEYS, any::<u8>()).prop_map(|(r, k, v)| Step::Put(r, k, v)),
            2 => (r.clone(), 0..KEYS).prop_map(|(r, k)| Step::Del(r, k)),
            2 => (r.clone(), prop::collection::vec((0..KEYS, prop::option::of(any::<u8>())), 1..5))
                .prop_map(|(r, ops)| Step::Batch(r, ops)),
            2 => (r.clone(), r.clone()).prop_map(|(a, b)| Step::Sync(a, b)),
            2 => (r.clone(), r.clone(), r.clone(), 1u8..4)
                .prop_map(|(a, b, w, f)| Step::Partial(a, b, w, f)),
            2 => Just(Step::Check),
        ]
    }

    /// The owner and two writers it authorized, all synced, each building
    /// its index at its first lookup and finding tags under `mask`.
    fn setup(mask: u64) -> Vec<Db> {
        let open = |key| {
            let options = OpenOptions {
                key,
                ..Default::default()
            };
            let db = Db::open_storage(DbStorage::memory(), options).unwrap();
            *db.latest.tuning.lock() = Some(mask);
            db
        };
        let owner = open(None);
        let others: Vec<Db> = (1..REPLICAS).map(|_| open(Some(*owner.key()))).collect();
        for other in &others {
            owner.authorize(other.local_key()).unwrap();
        }
        for other in &others {
            local_sync::sync(&owner, other).unwrap();
        }
        local_sync::sync(&others[0], &others[1]).unwrap();
        std::iter::once(owner).chain(others).collect()
    }

    fn ids(nodes: &[Arc<Node>]) -> Vec<(usize, u64)> {
        nodes.iter().map(|n| (n.feed, n.seq)).collect()
    }

    /// Every key's answer from `heads`, the index's (where it gives one)
    /// and the lookup's both the walk's; how many the index gave.
    fn same_answers(db: &Db, heads: &[Arc<Node>]) -> usize {
        let mut hits = 0;
        for k in 0..KEYS + 3 {
            let key = key(k);
            let walked = get::walk(db, heads, &key, None).unwrap();
            if let Some(found) = db.latest.get(db, heads, &key).unwrap() {
                hits += 1;
                assert_eq!(ids(&found), ids(&walked), "{key}");
            }
            assert_eq!(ids(&get::get(db, heads, &key, None).unwrap()), ids(&walked));
        }
        hits
    }

    fn pair(dbs: &[Db], a: usize, b: usize) -> Option<(&Db, &Db)> {
        (a != b).then(|| (&dbs[a], &dbs[b]))
    }

    fn run(steps: &[Step], mask: u64) -> usize {
        let dbs = setup(mask);
        let keys: Vec<[u8; 32]> = dbs.iter().map(|d| *d.local_key()).collect();
        let mut kept: Vec<Vec<Vec<Arc<Node>>>> = vec![Vec::new(); REPLICAS];
        let mut hits = 0;
        for step in steps.iter().chain([&Step::Check]) {
            match step {
                Step::Put(r, k, v) => {
                    dbs[*r].put(&key(*k), &[*v]).unwrap();
                }
                Step::Del(r, k) => {
                    dbs[*r].del(&key(*k)).unwrap();
                }
                Step::Batch(r, ops) => {
                    dbs[*r].batch(&Op::drawn(ops, key)).unwrap();
                }
                Step::Sync(a, b) => {
                    if let Some((a, b)) = pair(&dbs, *a, *b) {
                        local_sync::sync(a, b).unwrap();
                    }
                }
                Step::Partial(a, b, w, fraction) => {
                    if let Some((from, to)) = pair(&dbs, *a, *b) {
                        let len = from
                            .writers()
                            .iter()
                            .find(|x| x.key == keys[*w])
                            .map_or(0, |x| x.length);
                        let up_to = len * u64::from(*fraction) / 4;
                        local_sync::copy_feed(from, to, &keys[*w], Some(up_to)).unwrap();
                    }
                }
                Step::Check => {
                    for (r, db) in dbs.iter().enumerate() {
                        let heads = db.heads().unwrap();
                        hits += same_answers(db, &heads);
                        // Earlier views: keys rewritten since walk.
                        for old in &kept[r] {
                            same_answers(db, old);
                        }
                        kept[r].push(heads);
                    }
                }
            }
        }
        hits
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the writers wrote and whichever parts of their feeds
        /// each replica holds, the index answers as the walk does, at the
        /// current heads and at earlier ones; with tags of 2 bits, keys
        /// share them and the index must see that it cannot tell.
        #[test]
        fn the_index_answers_as_the_walk(
            steps in prop::collection::vec(step(), 1..40),
            narrow in any::<bool>(),
        ) {
            run(&steps, if narrow { 3 } else { u64::MAX });
        }
    }

    /// The index does answer: concurrent writes of one key by every
    /// writer, keys of one writer seen by all, absent keys, and a key
    /// rewritten after a view was kept.
    #[test]
    fn the_index_answers_conflicts_and_absent_keys() {
        let steps = [
            Step::Put(0, 1, 1),
            Step::Put(1, 1, 2),
            Step::Put(2, 1, 3),
            Step::Put(1, 2, 4),
            Step::Sync(0, 1),
            Step::Sync(0, 2),
            Step::Sync(1, 2),
            Step::Check,
            Step::Put(2, 2, 5),
            Step::Del(0, 1),
            Step::Sync(0, 2),
        ];
        // Three replicas, each at two checks, each 15 keys; the earlier
        // views of the keys rewritten since (and those only) walk.
        assert!(run(&steps, u64::MAX) >= 2 * REPLICAS * 15 - 8);
    }

    /// Before lookups have walked through as many entries as the index
    /// reads, it is not built: a process that looks up a few keys never
    /// pays for it.
    #[test]
    fn the_index_is_built_once_lookups_have_walked_enough() {
        let dbs = setup(u64::MAX);
        for db in &dbs {
            *db.latest.tuning.lock() = None;
        }
        for k in 0..KEYS {
            dbs[1].put(&key(k), b"v").unwrap();
        }
        local_sync::sync(&dbs[0], &dbs[1]).unwrap();
        let owner = &dbs[0];
        assert_eq!(owner.get(&key(0)).unwrap().len(), 1);
        assert_eq!(owner.latest_index(), None);
        let mut rounds = 0;
        while owner.latest_index().is_none() {
            rounds += 1;
            assert!(rounds < 100, "never built");
            for k in 0..KEYS {
                assert_eq!(owner.get(&key(k)).unwrap().len(), 1);
            }
        }
        let info = owner.latest_index().unwrap();
        // Every put (headers and authorizations hold no key).
        assert_eq!(info.entries, u64::from(KEYS));
        assert_eq!(info.keys, u64::from(KEYS));
        // Writes since are caught up by the next lookup.
        dbs[1].put("k/new", b"w").unwrap();
        local_sync::sync(&dbs[0], &dbs[1]).unwrap();
        assert_eq!(
            owner.get("k/new").unwrap()[0].value.as_deref(),
            Some(&b"w"[..])
        );
        assert_eq!(owner.latest_index().unwrap().entries, info.entries + 1);
    }

    /// Lookups in several threads while two writers write and replicate:
    /// whichever thread builds or catches the index up, and whatever the
    /// others find it doing, every answer from a view is the walk's from
    /// the same view.
    #[test]
    fn lookups_in_threads_beside_writes_answer_as_the_walk() {
        let dbs = setup(u64::MAX);
        let (owner, writer) = (dbs[0].clone(), dbs[1].clone());
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..300u32 {
                    owner.put(&key((i % 20) as u8), &i.to_le_bytes()).unwrap();
                    writer.put(&key((i % 7) as u8), &i.to_le_bytes()).unwrap();
                    if i % 10 == 0 {
                        local_sync::sync(&owner, &writer).unwrap();
                    }
                }
                done.store(true, Ordering::Release);
            });
            for _ in 0..2 {
                s.spawn(|| {
                    let mut rounds = 0;
                    while !done.load(Ordering::Acquire) || rounds < 20 {
                        rounds += 1;
                        let heads = owner.heads().unwrap();
                        for k in 0..KEYS {
                            let key = key(k);
                            let walked = get::walk(&owner, &heads, &key, None).unwrap();
                            let got = get::get(&owner, &heads, &key, None).unwrap();
                            assert_eq!(ids(&got), ids(&walked), "{key}");
                        }
                    }
                });
            }
        });
        assert!(owner.latest_index().is_some());
    }

    /// A database whose entries would take more than the cache's budget
    /// gets no index: lookups walk.
    #[test]
    fn a_database_too_large_for_the_budget_gets_none() {
        let owner = Db::open_storage(
            DbStorage::memory(),
            OpenOptions {
                cache_bytes: 8 * BYTES_PER_ENTRY as usize,
                ..Default::default()
            },
        )
        .unwrap();
        let other = Db::open_storage(
            DbStorage::memory(),
            OpenOptions {
                key: Some(*owner.key()),
                ..Default::default()
            },
        )
        .unwrap();
        owner.authorize(other.local_key()).unwrap();
        local_sync::sync(&owner, &other).unwrap();
        for k in 0..KEYS {
            other.put(&key(k), b"v").unwrap();
        }
        local_sync::sync(&owner, &other).unwrap();
        *owner.latest.tuning.lock() = Some(u64::MAX);
        for k in 0..KEYS {
            assert_eq!(owner.get(&key(k)).unwrap().len(), 1);
        }
        assert_eq!(owner.latest_index(), None);
    }
}
