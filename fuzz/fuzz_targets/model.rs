//! Random sequences of database operations checked against a model, as
//! redb fuzzes its tables: the model is a sorted map of the live keys.
//! Puts, deletes and batches change both; gets, listings under a prefix
//! (whole components: `a` covers `a/b`, not `ab`), history walks,
//! reopening the database from its storage, and checkouts of versions
//! taken earlier must answer as the model did.
//!
//! Each input byte picks an operation; the bytes after it pick its keys
//! (one to three components of a small alphabet, sometimes with the
//! leading `/` hyperdb drops) and values.
#![no_main]

use std::collections::BTreeMap;

use hyperdb::{Db, DbStorage, IterOptions, Op, OpenOptions};
use libfuzzer_sys::fuzz_target;

type Model = BTreeMap<String, Vec<u8>>;

const PARTS: [&str; 4] = ["a", "b", "ab", "c"];

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A key as a user might write it, and as hyperdb stores it.
    fn key(&mut self) -> Option<(String, String)> {
        let b = self.byte()?;
        let parts: Vec<&str> = (0..1 + usize::from(b % 3))
            .map(|i| PARTS[usize::from((b >> (2 + 2 * i)) & 3)])
            .collect();
        let stored = parts.join("/");
        let written = if self.byte()? & 1 == 1 {
            format!("/{stored}")
        } else {
            stored.clone()
        };
        Some((written, stored))
    }

    fn value(&mut self) -> Option<Vec<u8>> {
        let b = self.byte()?;
        Some(vec![b; 1 + usize::from(b % 5)])
    }
}

fn under(key: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || key == prefix
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What the model says a lookup of `key` gives.
fn expected(model: &Model, key: &str) -> Vec<Vec<u8>> {
    model.get(key).cloned().into_iter().collect()
}

fn values(nodes: &[std::sync::Arc<hyperdb::Node>]) -> Vec<Vec<u8>> {
    nodes
        .iter()
        .map(|n| n.value.clone().expect("a live value"))
        .collect()
}

fn check_list(db: &Db, model: &Model, prefix: &str, stored_prefix: &str) {
    let mut listed: Vec<(String, Vec<Vec<u8>>)> = db
        .iter(prefix, IterOptions::default())
        .expect("iterates")
        .map(|entry| {
            let (key, nodes) = entry.expect("an entry");
            (key, values(&nodes))
        })
        .collect();
    listed.sort();
    let want: Vec<(String, Vec<Vec<u8>>)> = model
        .iter()
        .filter(|(k, _)| under(k, stored_prefix))
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect();
    assert_eq!(listed, want, "listing {prefix:?}");
}

fn run(data: &[u8]) -> Option<()> {
    let mut input = Input(data);
    let storage = DbStorage::memory();
    let mut db = Db::open_storage(storage.clone(), OpenOptions::default()).expect("opens");
    let mut model = Model::new();
    let mut versions: Vec<(Vec<u8>, Model)> = Vec::new();
    let mut writes = 0usize;
    for _ in 0..64 {
        match input.byte()? % 8 {
            0 => {
                let (key, stored) = input.key()?;
                let value = input.value()?;
                db.put(&key, &value).expect("put");
                model.insert(stored, value);
                writes += 1;
            }
            1 => {
                let (key, stored) = input.key()?;
                db.del(&key).expect("del");
                model.remove(&stored);
                writes += 1;
            }
            2 => {
                let mut ops = Vec::new();
                for _ in 0..1 + input.byte()? % 4 {
                    let (key, stored) = input.key()?;
                    if input.byte()? & 1 == 0 {
                        let value = input.value()?;
                        model.insert(stored, value.clone());
                        ops.push(Op::Put { key, value });
                    } else {
                        model.remove(&stored);
                        ops.push(Op::Del { key });
                    }
                }
                writes += ops.len();
                db.batch(&ops).expect("batch");
            }
            3 => {
                let (key, stored) = input.key()?;
                let got = values(&db.get(&key).expect("get"));
                assert_eq!(got, expected(&model, &stored), "get {key:?}");
            }
            4 => {
                if input.byte()? & 1 == 0 {
                    check_list(&db, &model, "", "");
                } else {
                    let (prefix, stored) = input.key()?;
                    check_list(&db, &model, &prefix, &stored);
                }
            }
            5 => {
                drop(db);
                db = Db::open_storage(storage.clone(), OpenOptions::default()).expect("reopens");
                check_list(&db, &model, "", "");
            }
            6 => {
                if versions.len() < 8 {
                    versions.push((db.version().expect("a version"), model.clone()));
                }
            }
            _ => {
                if let Some((version, then)) =
                    versions.get(usize::from(input.byte()?) % versions.len().max(1))
                {
                    let checkout = db.checkout(version).expect("checks out");
                    let (key, stored) = input.key()?;
                    let got = values(&checkout.get(&key).expect("get"));
                    assert_eq!(got, expected(then, &stored), "get {key:?} at a checkout");
                }
                let walked = db.history(false).expect("history").count();
                assert_eq!(walked, writes, "history");
            }
        }
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    run(data);
});
