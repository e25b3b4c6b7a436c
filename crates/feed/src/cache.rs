//! A bounded cache with approximate least-recently-used eviction.
//!
//! Entries live in two generations. New and recently read entries go to
//! the young one; when it is full, the old generation is dropped and the
//! young one becomes old. Reads and writes are O(1); memory is bounded by
//! twice the generation size; and, unlike clearing everything when full,
//! entries in use survive a turnover.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A multiply-rotate hash (as rustc's): a few cycles for the integer keys
/// (block and node indices) caches hold, where SipHash costs more than the
/// lookup. Indices are dense, so they spread well. Byte strings are taken
/// eight bytes at a time, which suits 32-byte public and discovery keys
/// ([`KeyMap`]); it does not resist chosen collisions, so maps that use it
/// stay small or hold keys nobody chooses freely.
#[derive(Clone, Copy, Debug, Default)]
pub struct IndexHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IndexHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.write_u64(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<IndexHasher>>;

/// A generation of a [`Cache`].
type Generation<K, V> = Map<K, V>;

/// A map keyed by 32-byte feed or discovery keys, hashed with
/// [`IndexHasher`] rather than SipHash: replication looks a feed up by key
/// for every message.
pub type KeyMap<V> = HashMap<[u8; 32], V, BuildHasherDefault<IndexHasher>>;

/// A cache holding at most about `capacity` entries.
///
/// ```
/// let mut cache = hypercore_feed::cache::Cache::new(2);
/// cache.insert(1, "one");
/// cache.insert(2, "two");
/// assert_eq!(cache.get(&1), Some(&"one"));
/// cache.insert(3, "three"); // 2, the least recently used, may go
/// assert_eq!(cache.get(&1), Some(&"one"));
/// ```
#[derive(Clone, Debug)]
pub struct Cache<K, V> {
    young: Generation<K, V>,
    old: Generation<K, V>,
    /// How many entries a generation holds before it turns over.
    generation: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A cache of about `capacity` entries (at least 2).
    pub fn new(capacity: usize) -> Self {
        Cache {
            young: Map::default(),
            old: Map::default(),
            generation: (capacity / 2).max(1),
        }
    }

    /// The entry for `key`, marking it as recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        if self.young.contains_key(key) {
            return self.young.get(key);
        }
        let value = self.old.remove(key)?;
        self.insert(key.clone(), value);
        self.young.get(key)
    }

    /// A copy of the entry for `key`, marking it as recently used: one
    /// lookup when the entry is recent, where [`Cache::get`] needs two.
    pub fn get_cloned(&mut self, key: &K) -> Option<V> {
        self.get_cloned_evicting(key).0
    }

    /// [`Cache::get_cloned`], handing back the generation it evicted (if
    /// the promotion of an old entry turned the generations over) for the
    /// caller to drop when it likes.
    fn get_cloned_evicting(&mut self, key: &K) -> (Option<V>, Option<Generation<K, V>>) {
        self.get_with_evicting(key, V::clone)
    }

    /// What `f` makes of the entry for `key`, marking it as recently used:
    /// for a value larger than the part of it the caller needs.
    pub fn get_with<R>(&mut self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.get_with_evicting(key, f).0
    }

    /// [`Cache::get_with`], handing back the generation it evicted, as
    /// [`Cache::get_cloned_evicting`] does.
    fn get_with_evicting<R>(
        &mut self,
        key: &K,
        f: impl FnOnce(&V) -> R,
    ) -> (Option<R>, Option<Generation<K, V>>) {
        if let Some(value) = self.young.get(key) {
            return (Some(f(value)), None);
        }
        let Some(value) = self.old.remove(key) else {
            return (None, None);
        };
        let made = f(&value);
        let evicted = self.insert_evicting(key.clone(), value);
        (Some(made), evicted)
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, key: K, value: V) {
        self.insert_evicting(key, value);
    }

    /// [`Cache::insert`], handing back the generation it evicted, if any.
    fn insert_evicting(&mut self, key: K, value: V) -> Option<Generation<K, V>> {
        let mut evicted = None;
        if self.young.len() >= self.generation
            && !self.young.is_empty()
            && !self.young.contains_key(&key)
        {
            // The old generation goes, the young one becomes old, and a
            // new table as large as the last young one takes new entries.
            let young = Map::with_capacity_and_hasher(self.young.len(), Default::default());
            let old = std::mem::replace(&mut self.young, young);
            evicted = Some(std::mem::replace(&mut self.old, old));
        }
        self.young.insert(key, value);
        evicted
    }

    /// Removes an entry.
    pub fn remove(&mut self, key: &K) {
        self.young.remove(key);
        self.old.remove(key);
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Shards of a [`SharedCache`]: enough that two or three threads rarely
/// want the same one at once.
const SHARDS: usize = 8;

/// A [`Cache`] that several threads use through `&self`: the keys are
/// spread over a few shards, each behind its own lock, so readers on
/// different threads seldom wait for each other.
///
/// ```
/// let cache = hypercore_feed::cache::SharedCache::new(64);
/// std::thread::scope(|s| {
///     s.spawn(|| cache.insert(1u64, "one"));
///     s.spawn(|| cache.insert(2u64, "two"));
/// });
/// assert_eq!(cache.get_cloned(&1), Some("one"));
/// ```
#[derive(Debug)]
pub struct SharedCache<K, V> {
    shards: [std::sync::Mutex<Cache<K, V>>; SHARDS],
}

impl<K: Hash + Eq + Clone, V: Clone> SharedCache<K, V> {
    /// A cache of about `capacity` entries in all.
    pub fn new(capacity: usize) -> Self {
        SharedCache {
            shards: std::array::from_fn(|_| std::sync::Mutex::new(Cache::new(capacity / SHARDS))),
        }
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, Cache<K, V>> {
        let mut hasher = IndexHasher::default();
        key.hash(&mut hasher);
        let at = (hasher.finish() >> 32) as usize % SHARDS;
        // A panic while a shard was locked leaves a valid cache behind.
        self.shards[at].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of entries in all.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no shard holds an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the entry for `key`, marking it as recently used.
    pub fn get_cloned(&self, key: &K) -> Option<V> {
        let (value, evicted) = self.shard(key).get_cloned_evicting(key);
        // Entries dropped after the shard's lock is let go: freeing a
        // generation takes long enough to hold up other readers.
        drop(evicted);
        value
    }

    /// What `f` makes of the entry for `key`, marking it as recently used
    /// (see [`Cache::get_with`]). `f` runs with the shard locked.
    pub fn get_with<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        let (made, evicted) = self.shard(key).get_with_evicting(key, f);
        drop(evicted);
        made
    }

    /// Adds or replaces an entry.
    pub fn insert(&self, key: K, value: V) {
        // As in `get_cloned`, an evicted generation is freed unlocked.
        let evicted = self.shard(&key).insert_evicting(key, value);
        drop(evicted);
    }

    /// Removes an entry.
    pub fn remove(&self, key: &K) {
        self.shard(key).remove(key);
    }

    /// Removes every entry.
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cache;

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let mut cache = Cache::new(100);
        for i in 0..10_000u32 {
            cache.insert(i, i);
            assert_eq!(cache.get(&0), Some(&0), "a hot entry survives turnovers");
            assert!(cache.len() <= 101);
        }
        assert_eq!(cache.get(&9_999), Some(&9_999));
        assert_eq!(cache.get_cloned(&9_998), Some(9_998));
        assert_eq!(cache.get_with(&9_997, |v| v + 1), Some(9_998));
        assert_eq!(cache.get(&5_000), None);
        cache.remove(&0);
        assert_eq!(cache.get(&0), None);
    }
}
