//! Storage that fails on purpose, to test what a crash leaves behind.
//!
//! [`FaultStorage`] wraps any [`Storage`] and counts every *write point*:
//! each write, truncation and sync of any file opened through it (and any
//! other step a caller reports with [`Faults::point`], such as a rename).
//! Several storages (all the feeds of a database) can share one [`Faults`],
//! so the count runs across all of them. At a chosen point, a [`Crash`]
//! happens:
//!
//! - [`Crash::Fail`]: that one operation fails with an error, as a full disk
//!   or an I/O error would; the ones after it work.
//! - [`Crash::Kill`]: the process dies there. That operation and every later
//!   one fail; everything written before it stays, as the operating system
//!   keeps what a killed process wrote.
//! - [`Crash::PowerCut`]: the machine loses power there. Like a kill, and
//!   [`Faults::restart`] then puts every file back to what it held at its
//!   last sync, with the last write before the cut torn (its first half
//!   applied), as a disk that lost its cache would.
//!
//! A test runs an operation once with no crash to count its points
//! ([`Faults::points`]), then once per point with a crash there, restarting
//! and checking the result each time:
//!
//! ```
//! use hypercore_feed::fault::{Crash, FaultStorage, Faults};
//! use hypercore_feed::{Feed, FeedOptions, MemoryStorage};
//!
//! let base = MemoryStorage::new();
//! let faults = Faults::new();
//! let mut feed = Feed::open(FaultStorage::new(base.clone(), faults.clone()), FeedOptions::default()).unwrap();
//! feed.append(b"kept").unwrap();
//!
//! faults.crash_at(faults.points() + 2, Crash::Kill);
//! assert!(feed.append(b"lost").is_err());
//! drop(feed);
//! faults.restart();
//! let feed = Feed::open(FaultStorage::new(base, faults), FeedOptions::default()).unwrap();
//! assert_eq!(feed.len(), 1);
//! ```

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::feed::Feed;
use crate::storage::{RandomAccess, Storage};

/// What happens at the chosen write point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// The operation fails with an error; later ones work.
    Fail,
    /// The process dies: this operation and every later one fail, and what
    /// was written before stays.
    Kill,
    /// The power goes: as `Kill`, and after [`Faults::restart`] files hold
    /// only what was synced, with the last write torn.
    PowerCut,
}

/// One file as the simulated disk holds it.
struct Tracked {
    storage: Arc<dyn Storage>,
    name: String,
    /// The bytes the file held at its last sync (or when first opened).
    durable: Vec<u8>,
    /// Whether the file existed then.
    existed: bool,
}

#[derive(Default)]
struct State {
    points: u64,
    plan: Option<(u64, Crash)>,
    dead: Option<Crash>,
    files: BTreeMap<String, Tracked>,
    /// The latest write not yet made durable: (file, offset, bytes).
    last_write: Option<(String, u64, Vec<u8>)>,
}

/// The shared counter and crash plan of one or more [`FaultStorage`]s.
/// Clones share it.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<State>>);

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Faults")
            .field("points", &state.points)
            .field("plan", &state.plan)
            .field("dead", &state.dead)
            .finish()
    }
}

impl Faults {
    /// No crash planned.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many write points have been passed (or reached) so far.
    pub fn points(&self) -> u64 {
        self.lock().points
    }

    /// Crashes at write point `n` (counted from the start, 1 being the
    /// first point ever passed).
    pub fn crash_at(&self, n: u64, crash: Crash) {
        self.lock().plan = Some((n, crash));
    }

    /// Whether a kill or power cut has happened (and no restart since).
    pub fn is_dead(&self) -> bool {
        self.lock().dead.is_some()
    }

    /// Brings the simulated machine back after a crash: no crash planned,
    /// writes work again, and after a power cut every file holds what it
    /// held at its last sync, with the last write torn.
    pub fn restart(&self) {
        let mut state = self.lock();
        let dead = state.dead.take();
        state.plan = None;
        let last = state.last_write.take();
        if dead != Some(Crash::PowerCut) {
            return;
        }
        for tracked in state.files.values() {
            // The simulation's own storage failing is a broken test.
            let mut file = tracked
                .storage
                .open(&tracked.name)
                .expect("reopen a tracked file");
            if !tracked.existed && !file.exists() {
                continue;
            }
            file.truncate(0).expect("reset a tracked file");
            file.write_all_at(0, &tracked.durable)
                .expect("restore a tracked file");
        }
        if let Some((id, offset, bytes)) = last {
            let tracked = &state.files[&id];
            let mut file = tracked
                .storage
                .open(&tracked.name)
                .expect("reopen a tracked file");
            let torn = &bytes[..bytes.len() / 2];
            file.write_all_at(offset, torn)
                .expect("tear the last write");
        }
    }

    /// Passes one write point: an error if the crash happens here or has
    /// happened. Layers above storage call this for steps of their own
    /// (creating or renaming a folder).
    pub fn point(&self) -> io::Result<()> {
        let mut state = self.lock();
        Self::pass(&mut state)
    }

    fn pass(state: &mut State) -> io::Result<()> {
        if let Some(crash) = state.dead {
            return Err(dead_error(crash));
        }
        state.points += 1;
        match state.plan {
            Some((n, crash)) if n == state.points => {
                if crash != Crash::Fail {
                    state.dead = Some(crash);
                }
                Err(io::Error::other(format!(
                    "simulated {} at write point {n}",
                    match crash {
                        Crash::Fail => "failure",
                        Crash::Kill => "kill",
                        Crash::PowerCut => "power cut",
                    }
                )))
            }
            _ => Ok(()),
        }
    }

    /// Stops tracking the files whose label starts with `prefix`: a folder
    /// that was synced and then renamed, whose files are tracked again under
    /// their new label when next opened.
    pub fn forget(&self, prefix: &str) {
        self.lock().files.retain(|id, _| !id.starts_with(prefix));
    }

    /// Starts tracking a file, remembering its current bytes as durable.
    fn track(&self, storage: &Arc<dyn Storage>, label: &str, name: &str) -> io::Result<String> {
        let id = format!("{label}/{name}");
        let mut state = self.lock();
        if !state.files.contains_key(&id) {
            let file = storage.open(name)?;
            let len = file.len()?;
            let durable = file.read_at(0, len as usize)?;
            state.files.insert(
                id.clone(),
                Tracked {
                    storage: storage.clone(),
                    name: name.to_string(),
                    durable,
                    existed: file.exists(),
                },
            );
        }
        Ok(id)
    }
}

fn dead_error(crash: Crash) -> io::Error {
    io::Error::other(match crash {
        Crash::PowerCut => "the simulated machine lost power",
        _ => "the simulated process was killed",
    })
}

/// A [`Storage`] whose writes pass through a [`Faults`] plan.
#[derive(Clone)]
pub struct FaultStorage {
    inner: Arc<dyn Storage>,
    faults: Faults,
    label: String,
}

impl FaultStorage {
    /// Wraps `inner`, counting its write points in `faults`.
    pub fn new(inner: impl Storage + 'static, faults: Faults) -> Self {
        Self::labelled(inner, faults, "")
    }

    /// As [`FaultStorage::new`], for one of several storages sharing
    /// `faults`: `label` (a folder name, say) tells their files apart, and
    /// must be the same each time the same files are opened.
    pub fn labelled(inner: impl Storage + 'static, faults: Faults, label: &str) -> Self {
        FaultStorage {
            inner: Arc::new(inner),
            faults,
            label: label.to_string(),
        }
    }
}

impl Storage for FaultStorage {
    fn open(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        let id = self.faults.track(&self.inner, &self.label, name)?;
        Ok(Box::new(FaultFile {
            inner: self.inner.open(name)?,
            id,
            faults: self.faults.clone(),
        }))
    }

    fn open_read_only(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        self.inner.open_read_only(name)
    }

    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}

struct FaultFile {
    inner: Box<dyn RandomAccess>,
    id: String,
    faults: Faults,
}

impl RandomAccess for FaultFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }

    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.faults.lock();
        Faults::pass(&mut state)?;
        self.inner.write_all_at(offset, data)?;
        state.last_write = Some((self.id.clone(), offset, data.to_vec()));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn exists(&self) -> bool {
        self.inner.exists()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut state = self.faults.lock();
        Faults::pass(&mut state)?;
        self.inner.truncate(len)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        let mut state = self.faults.lock();
        Faults::pass(&mut state)?;
        self.inner.sync_all()?;
        let len = self.inner.len()?;
        let bytes = self.inner.read_at(0, len as usize)?;
        if let Some(tracked) = state.files.get_mut(&self.id) {
            tracked.durable = bytes;
            tracked.existed = self.inner.exists();
        }
        if state
            .last_write
            .as_ref()
            .is_some_and(|(id, ..)| *id == self.id)
        {
            state.last_write = None;
        }
        Ok(())
    }
}

/// The lengths whose signature in `signatures` (a feed's `signatures` file,
/// as a crash left it) verifies against the tree of `reference` (the same
/// feed as an uninterrupted run leaves it): every length the writer signed
/// before the crash, since its signatures are deterministic. A feed that
/// reopens shorter than one of these would sign that length again over
/// other blocks: a fork.
pub fn signed_lengths(signatures: &[u8], reference: &mut Feed) -> crate::Result<Vec<u64>> {
    let mut lengths = Vec::new();
    let slots = signatures.get(32..).unwrap_or(&[]).chunks(64);
    for (slot, signature) in slots.enumerate() {
        let length = slot as u64 + 1;
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            continue;
        };
        if signature == [0; 64] || length > reference.len() {
            continue;
        }
        let roots = reference.roots_at(length)?;
        let tree = crate::crypto::tree_hash(&roots);
        if crate::crypto::verify(reference.key(), &tree, &signature) {
            lengths.push(length);
        }
    }
    Ok(lengths)
}
