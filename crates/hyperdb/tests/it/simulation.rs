//! A deterministic simulation of replication: everything comes from one
//! seed. Three to six peers, each a replica in memory with a writer of its
//! own (all authorized by the owner), write while live sessions between
//! them carry the bytes over a simulated network: chunks cut anywhere and
//! delayed, connections interleaved in any order, now and then a chunk
//! delivered twice (the stream breaks and the session must end cleanly),
//! connections cut and opened again, partitions that heal, and peers that
//! crash at a write point (a kill, or a power cut that loses what was not
//! synced) and restart. The sessions get their time (ticks) and their
//! nonces from the simulation, so a seed replays exactly.
//!
//! After the chaos the network heals and every peer comes back. Then:
//! every replica converges on the same feeds and the same answers, which
//! are the causal rule's (the oracle computed from every entry held); no
//! write a `put` acknowledged is lost (peers sync every write, so not even
//! a power cut loses one); every stored block checks against its hash and
//! equals its writer's; and running a seed twice gives the same trace.
//! Before every write, mid-replication, the writing peer's answers are
//! the causal rule over the entries whose past has fully arrived there.
//!
//! `HYPERDB_SIM_SEEDS=A..B` runs other seeds (CI runs 0..1000);
//! `HYPERDB_SIM_SEED=N` runs one, printing what happens.

use std::collections::{BTreeMap, VecDeque};

use hypercore_feed::fault::{Crash, Faults};
use hyperdb::replicate::Session;
use hyperdb::{Db, DbStorage, Durability, OpenOptions, ReplicateOptions};

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

/// Simulated milliseconds between two ticks of a session (a quarter of
/// its 5-second timeout, as the real driver does).
const TICK: u64 = 1250;
/// How long the chaos lasts, then how long healing may take at most.
const CHAOS: u64 = 20_000;
const HEALING: u64 = 120_000;

struct Peer {
    storage: DbStorage,
    faults: Faults,
    options: OpenOptions,
    /// `None` while crashed.
    db: Option<Db>,
    up_at: u64,
    id: [u8; 32],
    /// Writes `put` acknowledged, to keys only this peer writes, with the
    /// seq of each in the peer's own feed.
    acknowledged: Vec<(String, String, u64)>,
    written: u64,
    /// The crash planned at one of its coming write points.
    planned: Option<Crash>,
}

struct Link {
    ends: [usize; 2],
    sessions: [Session; 2],
    /// Bytes in flight from `ends[i]` to the other end, each with the time
    /// it arrives (in order: one connection is a stream).
    wire: [VecDeque<(u64, Vec<u8>)>; 2],
}

#[derive(Default, Debug)]
struct Stats {
    crashes: u64,
    partitions: u64,
    cuts: u64,
    duplicates: u64,
    chunks: u64,
    writes: u64,
    sessions: u64,
}

struct Sim {
    rng: Rng,
    now: u64,
    peers: Vec<Peer>,
    links: Vec<Link>,
    /// The side of each peer while a partition lasts, and when it heals.
    partition: Option<(Vec<bool>, u64)>,
    chaos: bool,
    next_tick: u64,
    /// A digest of everything that happened, to compare two runs.
    trace: u64,
    stats: Stats,
    verbose: bool,
}

/// Why a step failed: the peer crashed (or its session broke).
type Step<T> = Result<T, hyperdb::Error>;

impl Sim {
    fn new(seed: u64, verbose: bool) -> Sim {
        let mut rng = Rng(seed);
        let count = 3 + rng.below(4) as usize;
        let owner_secret = hypercore_feed::crypto::KeyPair::from_seed(&rng.bytes()).secret_key;
        let mut peers = Vec::new();
        let mut key = None;
        for i in 0..count {
            let faults = Faults::new();
            let storage = DbStorage::memory().with_faults(faults.clone());
            let options = OpenOptions {
                key,
                secret_key: (i == 0).then_some(owner_secret),
                local_secret_key: (i > 0)
                    .then(|| hypercore_feed::crypto::KeyPair::from_seed(&rng.bytes()).secret_key),
                durability: Durability::Fsync,
                ..Default::default()
            };
            let db = Db::open_storage(storage.clone(), options.clone()).expect("opens");
            key = Some(*db.key());
            peers.push(Peer {
                storage,
                faults,
                options,
                db: Some(db),
                up_at: 0,
                id: rng.bytes(),
                acknowledged: Vec::new(),
                written: 0,
                planned: None,
            });
        }
        let locals: Vec<[u8; 32]> = peers[1..]
            .iter()
            .map(|p| *p.db.as_ref().expect("up").local_key())
            .collect();
        for local in locals {
            peers[0]
                .db
                .as_ref()
                .expect("up")
                .authorize(&local)
                .expect("authorizes");
        }
        Sim {
            rng,
            now: 0,
            peers,
            links: Vec::new(),
            partition: None,
            chaos: true,
            next_tick: TICK,
            trace: 0xcbf2_9ce4_8422_2325,
            stats: Stats::default(),
            verbose,
        }
    }

    fn note(&mut self, what: &[u64]) {
        for &x in what {
            self.trace = (self.trace ^ x).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn say(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            eprintln!("{:>7} ms  {}", self.now, what());
        }
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.links
            .iter()
            .any(|l| l.ends == [a, b] || l.ends == [b, a])
    }

    fn same_side(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_none_or(|(side, _)| side[a] == side[b])
    }

    /// Peer `i` crashed (a kill or power cut happened at one of its write
    /// points): its sessions go, and it comes back later.
    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        self.note(&[1, i as u64]);
        let how = self.peers[i].planned.take();
        self.say(|| format!("peer {i} crashed: {how:?}"));
        self.peers[i].db = None;
        self.links.retain(|l| !l.ends.contains(&i));
        self.peers[i].faults.restart();
        self.peers[i].up_at = self.now + 200 + self.rng.below(2000);
    }

    /// Handles the outcome of an operation of peer `i`: a crash if its
    /// storage died, otherwise the error is the caller's to handle.
    fn check<T>(&mut self, i: usize, result: Step<T>) -> Option<Step<T>> {
        if result.is_err() && self.peers[i].faults.is_dead() {
            self.crash(i);
            return None;
        }
        Some(result)
    }

    fn restart(&mut self, i: usize) {
        let peer = &self.peers[i];
        let opened = Db::open_storage(peer.storage.clone(), peer.options.clone());
        match self.check(i, opened) {
            Some(Ok(db)) => {
                // Nothing acknowledged was lost, even by a power cut: every
                // write is in the peer's own feed. (Whether it counts in
                // answers yet depends on the owner's authorization having
                // arrived; the final check sees them all.)
                let own = db.writer_index(db.local_key()).expect("its own writer");
                for (key, value, seq) in &self.peers[i].acknowledged {
                    let node = db.node(own, *seq).expect("reads");
                    let kept = node.is_some_and(|n| {
                        n.key == *key && n.value_str().as_deref() == Some(value.as_str())
                    });
                    assert!(kept, "peer {i} lost {key} (its entry {seq}) in a crash");
                }
                // Every block it says it holds, it can read.
                for (w, writer) in db.writers().iter().enumerate() {
                    let feed = db.feed(w).expect("a feed");
                    for seq in 0..writer.length {
                        if feed.has(seq) {
                            if let Err(e) = feed.get(seq) {
                                panic!(
                                    "peer {i} after a crash: writer {w} {} (length {}) block {seq}: {e}; recovered {:?}",
                                    hex::encode(&writer.key[..4]),
                                    writer.length,
                                    db.recovered()
                                );
                            }
                        }
                    }
                }
                self.say(|| format!("peer {i} restarted"));
                self.note(&[2, i as u64]);
                self.peers[i].db = Some(db);
            }
            Some(Err(e)) => panic!("peer {i} cannot reopen after a crash: {e}"),
            None => {}
        }
    }

    fn write(&mut self, i: usize) {
        let n = self.peers[i].written;
        let shared = self.rng.chance(300);
        let key = if shared {
            format!("shared/{}", self.rng.below(3))
        } else {
            format!("peer{i}/{n}")
        };
        let value = format!("{i}.{n}");
        let db = self.peers[i].db.as_ref().expect("up");
        // Mid-replication, with feeds half arrived: the answers a write
        // builds on are the causal rule over what has fully arrived.
        for k in 0..3 {
            let key = format!("shared/{k}");
            let mut got: Vec<String> = match db.get(&key) {
                Ok(nodes) => nodes
                    .iter()
                    .map(|n| n.value_str().unwrap_or_default())
                    .collect(),
                Err(e) => panic!("{} ms: peer {i} cannot get {key}: {e}", self.now),
            };
            got.sort();
            let oracle: Vec<String> = crate::support::causal_values(db, &key)
                .into_iter()
                .collect();
            if got != oracle {
                let feeds: Vec<(u64, bool)> = (0..db.writers().len())
                    .map(|j| db.feed(j).map_or((0, false), |f| (f.len(), f.has_all())))
                    .collect();
                let heads: Vec<(usize, u64)> = db
                    .heads()
                    .map(|h| h.iter().map(|n| (n.feed, n.seq)).collect())
                    .unwrap_or_default();
                panic!(
                    "{} ms: peer {i}, {key}: {got:?}, not the causal answer {oracle:?}; \
                     feeds (length, all held) {feeds:?}, heads {heads:?}",
                    self.now
                );
            }
        }
        let result = db.put(&key, value.as_bytes());
        if let Some(Ok(node)) = self.check(i, result) {
            self.stats.writes += 1;
            self.peers[i].written += 1;
            if !shared {
                self.peers[i]
                    .acknowledged
                    .push((key.clone(), value, node.seq));
            }
            self.note(&[3, i as u64, n]);
            self.say(|| format!("peer {i} wrote {key}"));
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        let mut sessions = Vec::new();
        for i in [a, b] {
            let options = ReplicateOptions {
                live: true,
                id: Some(self.peers[i].id),
                nonce: Some(self.rng.bytes()),
                ..Default::default()
            };
            let db = self.peers[i].db.as_ref().expect("up");
            let made = Session::new(db, options);
            match self.check(i, made) {
                Some(Ok(session)) => sessions.push(session),
                Some(Err(e)) => panic!("a session cannot start: {e}"),
                None => return,
            }
        }
        let b_session = sessions.pop().expect("two");
        let a_session = sessions.pop().expect("two");
        self.stats.sessions += 1;
        self.note(&[4, a as u64, b as u64]);
        self.say(|| format!("peers {a} and {b} connect"));
        self.links.push(Link {
            ends: [a, b],
            sessions: [a_session, b_session],
            wire: [VecDeque::new(), VecDeque::new()],
        });
    }

    /// Runs `f` on session `side` of link `l` with its peer's database.
    /// `false` when the link went (an error, or the peer crashed).
    fn on_session(
        &mut self,
        l: usize,
        side: usize,
        f: impl FnOnce(&mut Session, &Db) -> Step<()>,
    ) -> bool {
        let peer = self.links[l].ends[side];
        let db = self.peers[peer].db.clone().expect("up");
        let result = f(&mut self.links[l].sessions[side], &db);
        // A crashed peer's database must be gone before its disk comes
        // back: nothing of the dead process may write after the restart.
        drop(db);
        match self.check(peer, result) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                let ends = self.links[l].ends;
                self.say(|| format!("link {ends:?} broke at peer {peer}: {e}"));
                self.note(&[5, ends[0] as u64, ends[1] as u64]);
                self.links.remove(l);
                false
            }
            None => false,
        }
    }

    /// Moves what each session wrote onto the wire, cut into chunks with
    /// arrival times; delivers what has arrived; lets each session act on
    /// its subscription. `false` when the link went.
    fn step_link(&mut self, l: usize) -> bool {
        for side in 0..2 {
            let ok = self.on_session(l, side, |s, db| {
                while let Some(changed) = s.subscription().try_changed() {
                    s.on_changes(db, &changed)?;
                }
                if s.has_deferred() {
                    s.answer_deferred(db)?;
                }
                Ok(())
            });
            if !ok {
                return false;
            }
            let out = self.links[l].sessions[side].outgoing().to_vec();
            self.links[l].sessions[side].consume(out.len());
            let mut rest = &out[..];
            let mut last = self.links[l].wire[side].back().map_or(0, |c| c.0);
            while !rest.is_empty() {
                let size = if self.rng.chance(300) {
                    1 + self.rng.below(rest.len() as u64) as usize
                } else {
                    rest.len()
                };
                let arrives = (self.now + 1 + self.rng.below(30)).max(last);
                last = arrives;
                self.stats.chunks += 1;
                self.note(&[6, size as u64, arrives]);
                let chunk = rest[..size].to_vec();
                if self.chaos && self.rng.chance(2) {
                    self.stats.duplicates += 1;
                    self.links[l].wire[side].push_back((arrives, chunk.clone()));
                }
                self.links[l].wire[side].push_back((arrives, chunk));
                rest = &rest[size..];
            }
        }
        for side in 0..2 {
            while let Some((arrives, _)) = self.links[l].wire[side].front() {
                if *arrives > self.now {
                    break;
                }
                let (_, chunk) = self.links[l].wire[side].pop_front().expect("a chunk");
                if !self.on_session(l, 1 - side, |s, db| s.receive(db, &chunk)) {
                    return false;
                }
            }
        }
        true
    }

    fn tick_all(&mut self) {
        let mut l = 0;
        while l < self.links.len() {
            if self.on_session(l, 0, |s, db| s.tick(db))
                && self.on_session(l, 1, |s, db| s.tick(db))
            {
                l += 1;
            }
        }
    }

    /// One step of simulated time: faults (while the chaos lasts), writes,
    /// connections, and the network.
    fn step(&mut self) {
        self.now += 1 + self.rng.below(20);
        let count = self.peers.len();
        if self.chaos && self.now >= CHAOS {
            self.chaos = false;
            self.partition = None;
            for peer in &self.peers {
                // No crash planned from now on.
                peer.faults.crash_at(u64::MAX, Crash::Fail);
            }
            self.say(|| "the network heals; no more faults".into());
        }
        if self.chaos {
            match &self.partition {
                Some((_, heals)) if *heals <= self.now => {
                    self.partition = None;
                    self.note(&[7]);
                    self.say(|| "the partition heals".into());
                }
                None if self.rng.chance(3) => {
                    let side: Vec<bool> = (0..count).map(|_| self.rng.chance(500)).collect();
                    let heals = self.now + 1000 + self.rng.below(6000);
                    self.stats.partitions += 1;
                    self.note(&[8]);
                    self.say(|| format!("partition {side:?} until {heals} ms"));
                    self.links.retain(|l| side[l.ends[0]] == side[l.ends[1]]);
                    self.partition = Some((side, heals));
                }
                _ => {}
            }
            if !self.links.is_empty() && self.rng.chance(5) {
                let l = self.rng.below(self.links.len() as u64) as usize;
                self.stats.cuts += 1;
                let ends = self.links[l].ends;
                self.note(&[9, ends[0] as u64, ends[1] as u64]);
                self.say(|| format!("link {ends:?} cut"));
                self.links.remove(l);
            }
            let i = self.rng.below(count as u64) as usize;
            if self.peers[i].db.is_some() && self.rng.chance(10) {
                let at = self.peers[i].faults.points() + 1 + self.rng.below(40);
                let crash = if self.rng.chance(500) {
                    Crash::Kill
                } else {
                    Crash::PowerCut
                };
                self.peers[i].faults.crash_at(at, crash);
                self.peers[i].planned = Some(crash);
            }
        }
        for i in 0..count {
            if self.peers[i].db.is_none() && (self.peers[i].up_at <= self.now || !self.chaos) {
                self.restart(i);
            }
        }
        if self.chaos && self.rng.chance(60) {
            let i = self.rng.below(count as u64) as usize;
            if self.peers[i].db.is_some() {
                self.write(i);
            }
        }
        for a in 0..count {
            for b in a + 1..count {
                let up = self.peers[a].db.is_some() && self.peers[b].db.is_some();
                if up
                    && !self.connected(a, b)
                    && self.same_side(a, b)
                    && (!self.chaos || self.rng.chance(20))
                {
                    self.connect(a, b);
                }
            }
        }
        let mut l = 0;
        while l < self.links.len() {
            if self.step_link(l) {
                l += 1;
            }
        }
        if self.now >= self.next_tick {
            self.next_tick += TICK;
            self.tick_all();
        }
    }

    /// Every up peer's view of every writer: its length, and whether
    /// every block of it is held.
    fn lengths(&self) -> Vec<BTreeMap<[u8; 32], (u64, bool)>> {
        self.peers
            .iter()
            .filter_map(|p| p.db.as_ref())
            .map(|db| {
                db.writers()
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let all = db.feed(i).is_some_and(|f| f.has_all());
                        (w.key, (w.length, all))
                    })
                    .collect()
            })
            .collect()
    }

    fn converged(&self) -> bool {
        if self.peers.iter().any(|p| p.db.is_none()) {
            return false;
        }
        let lengths = self.lengths();
        lengths.windows(2).all(|w| w[0] == w[1])
            && lengths[0].len() == self.peers.len()
            && lengths[0].values().all(|&(_, all)| all)
    }
}

/// Runs seed `seed` to the end and checks what a healed network must hold;
/// the trace digest and what happened.
fn run(seed: u64, verbose: bool) -> (u64, Stats) {
    let mut sim = Sim::new(seed, verbose);
    while sim.chaos {
        sim.step();
    }
    let deadline = sim.now + HEALING;
    while !sim.converged() {
        assert!(
            sim.now < deadline,
            "seed {seed}: no convergence {HEALING} ms after healing: lengths {:?}; \
             rerun with HYPERDB_SIM_SEED={seed}",
            sim.lengths()
        );
        sim.step();
    }
    let dbs: Vec<Db> = sim
        .peers
        .iter()
        .map(|p| p.db.clone().expect("up"))
        .collect();
    let db_index = |db: &Db| {
        dbs.iter()
            .position(|d| d.local_key() == db.local_key())
            .unwrap_or(99)
    };
    let listing = |db: &Db| -> Vec<(String, Vec<String>)> {
        db.list("")
            .unwrap_or_else(|e| panic!("seed {seed}: peer {} cannot list: {e}", db_index(db)))
            .into_iter()
            .map(|(k, nodes)| {
                let mut values: Vec<String> = nodes
                    .iter()
                    .map(|n| n.value_str().unwrap_or_default())
                    .collect();
                values.sort();
                (k, values)
            })
            .collect()
    };
    let first = listing(&dbs[0]);
    for (i, db) in dbs.iter().enumerate() {
        assert_eq!(
            listing(db),
            first,
            "seed {seed}: peer {i} answers differently from peer 0"
        );
        for (key, values) in &first {
            let oracle: Vec<String> = crate::support::causal_values(db, key).into_iter().collect();
            assert_eq!(
                values, &oracle,
                "seed {seed}: peer {i}, {key}: not the causal answer"
            );
        }
        for (author, peer) in sim.peers.iter().enumerate() {
            for (key, value, _) in &peer.acknowledged {
                let got: Vec<String> = db
                    .get(key)
                    .expect("reads")
                    .iter()
                    .map(|n| n.value_str().unwrap_or_default())
                    .collect();
                assert_eq!(
                    got,
                    std::slice::from_ref(value),
                    "seed {seed}: peer {i}: get {key}"
                );
                assert!(
                    first
                        .iter()
                        .any(|(k, v)| k == key && v == std::slice::from_ref(value)),
                    "seed {seed}: peer {author}'s acknowledged {key} = {value} is lost: {:?}",
                    first.iter().find(|(k, _)| k == key),
                );
            }
        }
        // Every block verifies and is its writer's.
        for (w, writer) in db.writers().iter().enumerate() {
            let audit = db
                .with_feed_mut(w, |f| f.audit())
                .expect("a feed")
                .expect("audits");
            assert_eq!(
                audit.invalid, 0,
                "seed {seed}: peer {i} holds a damaged block"
            );
            let author = dbs
                .iter()
                .position(|d| *d.local_key() == writer.key)
                .expect("an author");
            let theirs = dbs[author].feed(dbs[author].writer_index(&writer.key).expect("theirs"));
            let ours = db.feed(w).expect("ours");
            for seq in 0..writer.length {
                assert_eq!(
                    ours.get(seq).ok(),
                    theirs.as_ref().expect("a feed").get(seq).ok(),
                    "seed {seed}: peer {i}, writer {w}, block {seq}"
                );
            }
        }
    }
    if verbose {
        eprintln!("seed {seed}: {:?}", sim.stats);
    }
    sim.note(&[sim.now]);
    (sim.trace, sim.stats)
}

fn seeds() -> std::ops::Range<u64> {
    if let Ok(one) = std::env::var("HYPERDB_SIM_SEED") {
        let seed: u64 = one.parse().expect("HYPERDB_SIM_SEED is a number");
        return seed..seed + 1;
    }
    let range = std::env::var("HYPERDB_SIM_SEEDS").unwrap_or_else(|_| "0..1000".into());
    let (a, b) = range.split_once("..").expect("HYPERDB_SIM_SEEDS is A..B");
    a.parse().expect("a number")..b.parse().expect("a number")
}

/// Seeds that fail today, each a finding not yet fixed (none now: the
/// last ones, 752, 771 and 1069, were fixed by causal delivery). Listed so
/// that the other seeds guard what works; the test fails if one of these
/// starts passing (take it off the list) or another seed fails.
const KNOWN_FAILING: &[u64] = &[];

#[test]
fn replicas_converge_under_simulated_faults() {
    let seeds = seeds();
    let verbose = seeds.end - seeds.start == 1;
    let mut totals = Stats::default();
    let mut failed = Vec::new();
    for seed in seeds.clone() {
        let Ok((_, stats)) = std::panic::catch_unwind(|| run(seed, verbose)) else {
            eprintln!("seed {seed} failed; rerun it alone with HYPERDB_SIM_SEED={seed}");
            failed.push(seed);
            continue;
        };
        totals.crashes += stats.crashes;
        totals.partitions += stats.partitions;
        totals.cuts += stats.cuts;
        totals.duplicates += stats.duplicates;
        totals.chunks += stats.chunks;
        totals.writes += stats.writes;
        totals.sessions += stats.sessions;
    }
    eprintln!("seeds {seeds:?}: {totals:?}; failed: {failed:?}");
    let new: Vec<u64> = failed
        .iter()
        .copied()
        .filter(|s| !KNOWN_FAILING.contains(s))
        .collect();
    assert!(new.is_empty(), "seeds that fail: {new:?}");
    let fixed: Vec<u64> = KNOWN_FAILING
        .iter()
        .copied()
        .filter(|s| seeds.contains(s) && !failed.contains(s))
        .collect();
    assert!(
        fixed.is_empty(),
        "seeds {fixed:?} pass now: take them off KNOWN_FAILING"
    );
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 2, 3, 42] {
        assert_eq!(
            run(seed, false).0,
            run(seed, false).0,
            "seed {seed} ran two ways"
        );
    }
}
