//! Answers follow causality on every replica: a property test over randomly
//! generated multi-writer histories with deletes and partial replications.
//!
//! The oracle reads every entry a replica holds and computes, for each key,
//! the writes to it that no other write to it has seen (`m` has seen `n` when
//! `m.clock[n.feed] > n.seq`), deletes left out. Every replica must answer
//! exactly that, and a replica that learns the same feeds in another order
//! must answer the same.

use std::collections::BTreeSet;

use hyperdb::{local_sync, Db};
use proptest::prelude::*;

use crate::support::{build_latest_index, memory_db, sorted_values as values};

pub(crate) const KEYS: [&str; 5] = ["a", "b", "a/x", "c/d/e", "b/y"];
const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
pub(crate) enum Step {
    Put {
        replica: usize,
        key: usize,
        value: u8,
    },
    Del {
        replica: usize,
        key: usize,
    },
    Sync {
        a: usize,
        b: usize,
    },
    Partial {
        from: usize,
        to: usize,
        writer: usize,
        fraction: u8,
    },
}

pub(crate) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..REPLICAS, 0..KEYS.len(), any::<u8>()).prop_map(|(replica, key, value)| Step::Put { replica, key, value }),
        2 => (0..REPLICAS, 0..KEYS.len()).prop_map(|(replica, key)| Step::Del { replica, key }),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(a, b)| Step::Sync { a, b }),
        2 => (0..REPLICAS, 0..REPLICAS, 0..REPLICAS, 1u8..4).prop_map(|(from, to, writer, fraction)| Step::Partial { from, to, writer, fraction }),
    ]
}

/// Three replicas, each authorized by the owner and fully synced.
pub(crate) fn setup() -> Vec<Db> {
    let owner = memory_db(None);
    let r1 = memory_db(Some(*owner.key()));
    let r2 = memory_db(Some(*owner.key()));
    owner.authorize(r1.local_key()).unwrap();
    owner.authorize(r2.local_key()).unwrap();
    local_sync::sync(&owner, &r1).unwrap();
    local_sync::sync(&owner, &r2).unwrap();
    local_sync::sync(&r1, &r2).unwrap();
    vec![owner, r1, r2]
}

pub(crate) fn pair(dbs: &mut [Db], a: usize, b: usize) -> (&mut Db, &mut Db) {
    assert_ne!(a, b);
    if a < b {
        let (x, y) = dbs.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = dbs.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

pub(crate) type Answer = BTreeSet<([u8; 32], u64)>;

/// The causal rule computed from every entry the replica holds.
fn oracle(db: &Db, key: &str) -> Answer {
    let writers = db.writers();
    crate::support::causal_writes(db, key)
        .iter()
        .map(|n| (writers[n.feed].key, n.seq))
        .collect()
}

pub(crate) fn answer(db: &Db, key: &str) -> Answer {
    let writers = db.writers();
    db.get(key)
        .unwrap()
        .iter()
        .map(|n| (writers[n.feed].key, n.seq))
        .collect()
}

/// Applies `step` to the replicas (`keys`: their writers' keys).
pub(crate) fn apply(dbs: &mut [Db], keys: &[[u8; 32]], step: &Step) {
    match *step {
        Step::Put {
            replica,
            key,
            value,
        } => {
            dbs[replica].put(KEYS[key], &[value]).unwrap();
        }
        Step::Del { replica, key } => {
            dbs[replica].del(KEYS[key]).unwrap();
        }
        Step::Sync { a, b } if a != b => {
            let (x, y) = pair(dbs, a, b);
            local_sync::sync(x, y).unwrap();
        }
        Step::Partial {
            from,
            to,
            writer,
            fraction,
        } if from != to => {
            let (x, y) = pair(dbs, from, to);
            let len = x
                .writers()
                .iter()
                .find(|w| w.key == keys[writer])
                .map_or(0, |w| w.length);
            let up_to = len * u64::from(fraction) / 4;
            local_sync::copy_feed(x, y, &keys[writer], Some(up_to)).unwrap();
        }
        _ => {}
    }
}

/// A new replica that learns `source`'s feeds (of writers `keys`) block
/// by block, half of each first, in an order shuffled by `seed`.
pub(crate) fn observer(source: &Db, keys: &[[u8; 32]], seed: u64) -> Db {
    let observer = memory_db(Some(*source.key()));
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let mut seed = seed;
    for i in (1..order.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (seed >> 33) as usize % (i + 1));
    }
    for _ in 0..keys.len() {
        for &w in &order {
            let len = source
                .writers()
                .iter()
                .find(|x| x.key == keys[w])
                .map_or(0, |x| x.length);
            local_sync::copy_feed(source, &observer, &keys[w], Some(len / 2)).unwrap();
            observer.heads().unwrap();
        }
        for &w in order.iter().rev() {
            local_sync::copy_feed(source, &observer, &keys[w], None).unwrap();
            observer.heads().unwrap();
        }
    }
    observer
}

fn run(steps: &[Step], order_seed: u64) -> Result<(), TestCaseError> {
    let mut dbs = setup();
    let writer_keys: Vec<[u8; 32]> = dbs.iter().map(|d| *d.local_key()).collect();
    for step in steps {
        apply(&mut dbs, &writer_keys, step);
    }
    for (r, db) in dbs.iter_mut().enumerate() {
        let mut listed = std::collections::BTreeMap::new();
        for key in KEYS {
            let expected = oracle(db, key);
            prop_assert_eq!(
                answer(db, key),
                expected.clone(),
                "replica {} key {}",
                r,
                key
            );
            if !expected.is_empty() {
                listed.insert(key.to_string(), expected);
            }
        }
        // Once lookups have walked enough, the index of each key's latest
        // entry in every writer's feed answers them: the same answers.
        prop_assert!(build_latest_index(db, &KEYS), "replica {} index", r);
        for key in KEYS {
            prop_assert_eq!(
                answer(db, key),
                oracle(db, key),
                "replica {} key {} (index)",
                r,
                key
            );
        }
        // Listing walks the tries once for every key: same answers.
        let writers = db.writers();
        let walked: std::collections::BTreeMap<String, Answer> = db
            .list("")
            .unwrap()
            .into_iter()
            .map(|(k, nodes)| {
                (
                    k,
                    nodes.iter().map(|n| (writers[n.feed].key, n.seq)).collect(),
                )
            })
            .collect();
        prop_assert_eq!(walked, listed, "replica {} listing", r);
    }
    // An observer that learns replica 0's feeds block by block, in a
    // shuffled order of feeds, answers as replica 0 does.
    let observer = observer(&dbs[0], &writer_keys, order_seed);
    for key in KEYS {
        let theirs = answer(&dbs[0], key);
        prop_assert_eq!(answer(&observer, key), theirs, "observer, key {}", key);
    }
    prop_assert!(build_latest_index(&observer, &KEYS), "observer index");
    for key in KEYS {
        let theirs = answer(&dbs[0], key);
        prop_assert_eq!(
            answer(&observer, key),
            theirs,
            "observer, key {} (index)",
            key
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_replica_answers_the_causal_rule(steps in proptest::collection::vec(step(), 1..30), seed in any::<u64>()) {
        run(&steps, seed)?;
    }
}

/// A history where the reference answers a stale value: the writer's own
/// earlier value comes back after a concurrent delete was merged.
#[test]
fn a_writers_own_replaced_value_does_not_come_back() {
    let steps = [
        Step::Put {
            replica: 1,
            key: 0,
            value: 1,
        },
        Step::Sync { a: 1, b: 2 },
        Step::Del { replica: 2, key: 0 },
        Step::Put {
            replica: 1,
            key: 0,
            value: 2,
        },
        Step::Sync { a: 0, b: 2 },
        Step::Sync { a: 0, b: 1 },
        Step::Put {
            replica: 0,
            key: 1,
            value: 3,
        },
        Step::Sync { a: 0, b: 1 },
    ];
    run(&steps, 7).unwrap();
}

/// A replica holding a writer's latest entry but not the owner's entry
/// that writer had seen answers from what has fully arrived: the owner's
/// older value, not nothing (the writer's trie points at the missing
/// entry, and its head would hide the older one). Its own write then
/// claims only what it built on, so once everything arrives every replica
/// answers the newer value and keeps the write.
#[test]
fn a_replica_answers_from_what_has_fully_arrived() {
    let owner = memory_db(None);
    let b = memory_db(Some(*owner.key()));
    let c = memory_db(Some(*owner.key()));
    owner.authorize(b.local_key()).unwrap();
    owner.authorize(c.local_key()).unwrap();
    owner.put("k", b"old").unwrap();
    local_sync::sync(&owner, &b).unwrap();
    local_sync::sync(&owner, &c).unwrap();
    owner.put("k", b"new").unwrap();
    local_sync::sync(&owner, &b).unwrap();
    b.put("b", b"1").unwrap();
    assert_eq!(values(&b, "k"), ["new"]);

    local_sync::copy_feed(&b, &c, b.local_key(), None).unwrap();
    let held = |db: &Db, writer: &Db| {
        let i = db.writer_index(writer.local_key()).unwrap();
        db.writers()[i].length - db.counted().unwrap()[i]
    };
    assert_eq!(held(&c, &b), 1, "b's entry waits at c");
    assert_eq!(held(&c, &owner), 0);
    assert_eq!(values(&c, "k"), ["old"], "the older value, from the owner");
    assert!(
        values(&c, "b").is_empty(),
        "b's write saw an entry not here yet"
    );
    c.put("c", b"1").unwrap();
    assert_eq!(values(&c, "k"), ["old"]);

    local_sync::sync(&owner, &c).unwrap();
    local_sync::sync(&b, &c).unwrap();
    local_sync::sync(&owner, &b).unwrap();
    for (name, db) in [("owner", &owner), ("b", &b), ("c", &c)] {
        for writer in [&owner, &b, &c] {
            assert_eq!(held(db, writer), 0, "{name}: everything counts");
        }
        for (key, want) in [("k", "new"), ("b", "1"), ("c", "1")] {
            assert_eq!(values(db, key), [want], "{name}: {key}");
            let oracle: Vec<String> = crate::support::causal_values(db, key).into_iter().collect();
            assert_eq!(oracle, [want], "{name}: oracle for {key}");
        }
    }
}
