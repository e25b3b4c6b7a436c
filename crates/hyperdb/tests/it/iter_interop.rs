//! Prefix iteration against the running JS reference: for databases written
//! by one writer and by several, every option gives the same keys in the
//! same order (values follow the causal rule where the reference's do not),
//! and a listing in the order written gives the same keys and values.

use std::collections::BTreeSet;
use std::path::Path;

use hyperdb::{Db, IterOptions, Op, OpenOptions};
use serde_json::{json, Value};
use testkit::node;

fn ours(dir: &Path, prefix: &str, options: IterOptions) -> Vec<(String, BTreeSet<String>)> {
    let db = Db::open_with(
        dir,
        OpenOptions {
            create: false,
            ..Default::default()
        },
    )
    .unwrap();
    listed(&db, prefix, options)
}

/// The keys `db` lists under `prefix`, and their values.
fn listed(db: &Db, prefix: &str, options: IterOptions) -> Vec<(String, BTreeSet<String>)> {
    db.iter(prefix, options)
        .unwrap()
        .map(|e| {
            let (key, nodes) = e.unwrap();
            (key, nodes.iter().map(|n| n.value_str().unwrap()).collect())
        })
        .collect()
}

fn theirs(dir: &Path, prefix: &str, options: IterOptions) -> Vec<(String, BTreeSet<String>)> {
    let mut args = vec![
        dir.to_str().unwrap().to_string(),
        "--prefix".into(),
        prefix.into(),
    ];
    for (on, flag) in [
        (options.reverse, "--reverse"),
        (options.shallow, "--shallow"),
        (options.gt, "--gt"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = node("db-list.js", &args);
    out.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let values = e["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            (e["key"].as_str().unwrap().to_string(), values)
        })
        .collect()
}

fn all_options() -> Vec<IterOptions> {
    let mut list = Vec::new();
    for reverse in [false, true] {
        for gt in [false, true] {
            list.push(IterOptions {
                reverse,
                gt,
                ..Default::default()
            });
        }
    }
    list.push(IterOptions {
        shallow: true,
        ..Default::default()
    });
    list
}

/// `count` writes from `seed`: keys of one to three components, each one
/// of `names` numbers; every `delete_every`th a delete, the others puts of
/// `v<i>`.
fn random_ops(seed: u64, count: usize, names: u64, delete_every: usize) -> Vec<Op> {
    let mut x = seed;
    (0..count)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let depth = 1 + (x >> 60) % 3;
            let key: Vec<String> = (0..depth)
                .map(|d| format!("{}", (x >> (8 * d)) % names))
                .collect();
            let key = key.join("/");
            if i % delete_every == 0 {
                Op::Del { key }
            } else {
                Op::Put {
                    key,
                    value: format!("v{i}").into_bytes(),
                }
            }
        })
        .collect()
}

fn first_component(key: &str, prefix: &str) -> String {
    let rest = key
        .strip_prefix(prefix)
        .unwrap_or(key)
        .trim_start_matches('/');
    rest.split('/').next().unwrap_or("").to_string()
}

fn compare_single_writer(dir: &Path, prefixes: &[&str]) {
    for prefix in prefixes {
        for options in all_options() {
            let (a, b) = (ours(dir, prefix, options), theirs(dir, prefix, options));
            if options.shallow {
                let comps = |l: &[(String, BTreeSet<String>)]| {
                    l.iter()
                        .map(|(k, _)| first_component(k, prefix))
                        .collect::<BTreeSet<_>>()
                };
                assert_eq!(comps(&a), comps(&b), "shallow under {prefix:?}");
            } else {
                assert_eq!(a, b, "prefix {prefix:?} with {options:?}");
                // In the order written (through the key index): the same
                // keys and values.
                let unordered = IterOptions {
                    unordered: true,
                    ..options
                };
                let mut a = ours(dir, prefix, unordered);
                let mut b = b;
                a.sort();
                b.sort();
                assert_eq!(a, b, "prefix {prefix:?} with {unordered:?}");
            }
        }
    }
}

#[test]
fn one_writer_same_keys_same_order_for_every_option() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    let ops = random_ops(17, 400, 7, 9);
    for (i, chunk) in ops.chunks(40).enumerate() {
        if i % 2 == 0 {
            db.batch(chunk).unwrap();
        } else {
            for op in chunk {
                match op {
                    Op::Put { key, value } => db.put(key, value).map(|_| ()).unwrap(),
                    Op::Del { key } => db.del(key).map(|_| ()).unwrap(),
                }
            }
        }
    }
    db.put("idgcmnmna", b"collides").unwrap();
    db.put("mpomeiehc", b"with this").unwrap();
    drop(db);
    compare_single_writer(tmp.path(), &["", "1", "2/3", "/4", "6/6/6", "nothing"]);
}

#[test]
fn several_writers_same_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut steps = vec![
        json!({"op": "create", "name": "a"}),
        json!({"op": "create", "name": "b", "of": "a"}),
        json!({"op": "authorize", "db": "a", "target": "b"}),
        json!({"op": "sync", "a": "a", "b": "b"}),
    ];
    for i in 0..40 {
        let db = if i % 3 == 0 { "b" } else { "a" };
        steps.push(json!({"op": "put", "db": db, "key": format!("k{}/{}", i % 5, i % 7), "value": format!("{db}{i}")}));
        if i % 10 == 9 {
            steps.push(json!({"op": "sync", "a": "a", "b": "b"}));
        }
    }
    steps.push(json!({"op": "del", "db": "a", "key": "k1/1"}));
    steps.push(json!({"op": "sync", "a": "a", "b": "b"}));
    node(
        "db-multi.js",
        &[
            tmp.path().to_str().unwrap(),
            "--steps",
            &Value::Array(steps).to_string(),
        ],
    );
    for name in ["a", "b"] {
        let dir = tmp.path().join(name);
        for prefix in ["", "k1", "k3/3"] {
            for options in all_options().into_iter().filter(|o| !o.shallow) {
                let (a, b) = (ours(&dir, prefix, options), theirs(&dir, prefix, options));
                // Same order; the reference may show a value a later write
                // replaced, never fewer.
                let keys_a: Vec<&String> = a.iter().map(|(k, _)| k).collect();
                let keys_b: Vec<&String> = b
                    .iter()
                    .filter(|(k, _)| a.iter().any(|(x, _)| x == k))
                    .map(|(k, _)| k)
                    .collect();
                assert_eq!(keys_a, keys_b, "{name}: {prefix:?} {options:?}");
                for ((_, va), (_, vb)) in a
                    .iter()
                    .zip(b.iter().filter(|(k, _)| a.iter().any(|(x, _)| x == k)))
                {
                    assert!(
                        vb.is_superset(va),
                        "{name}: {vb:?} misses causal values {va:?}"
                    );
                }
            }
        }
    }
}

/// A database of one writer whose index of paths is on disk: a listing of
/// everything reads it back and lists from it (no walk), and so do the
/// listings under prefixes after it; every one gives the reference's keys,
/// values and order.
#[test]
fn one_writer_listed_from_the_index_of_paths_as_the_reference_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    let ops = random_ops(29, 5000, 40, 11);
    for chunk in ops.chunks(100) {
        db.batch(chunk).unwrap();
    }
    // Puts that walk, until the index is built and answers them.
    let mut i = 0;
    while db.path_index().is_none() {
        db.put(&format!("more/{i}"), b"v").unwrap();
        i += 1;
    }
    drop(db);
    let names = crate::support::index_files(tmp.path());
    assert!(names.iter().any(|n| n.starts_with("paths-")), "{names:?}");

    let db = Db::open_with(
        tmp.path(),
        OpenOptions {
            create: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(db.path_index().is_none());
    let everything = listed(&db, "", IterOptions::default());
    assert!(db.path_index().is_some(), "read back for the listing");
    assert_eq!(everything, theirs(tmp.path(), "", IterOptions::default()));
    for prefix in ["", "1", "2/3", "/4", "more", "nothing"] {
        for options in all_options().into_iter().filter(|o| !o.shallow) {
            let a = listed(&db, prefix, options);
            assert_eq!(
                a,
                theirs(tmp.path(), prefix, options),
                "{prefix:?} {options:?}"
            );
        }
    }
}
