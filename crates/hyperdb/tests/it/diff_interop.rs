//! Diffs against earlier versions, compared with the running JS reference
//! on the same folder.

use std::path::Path;

use hyperdb::{Db, OpenOptions};
use serde_json::{json, Value};
use testkit::node;

fn side(nodes: &Option<Vec<std::sync::Arc<hyperdb::Node>>>, key: &str) -> Value {
    match nodes {
        None => Value::Null,
        Some(n) => {
            let mut values: Vec<String> = n
                .iter()
                .filter(|n| !n.deleted)
                .map(|n| n.value_str().unwrap())
                .collect();
            values.sort();
            json!({"key": key, "values": values})
        }
    }
}

fn compare(dir: &Path, versions: &[Vec<u8>], prefixes: &[&str]) {
    for version in versions {
        for prefix in prefixes {
            let js = node(
                "db-diff.js",
                &[
                    dir.to_str().unwrap(),
                    &hex::encode(version),
                    "--prefix",
                    prefix,
                ],
            );
            let db = Db::open_with(
                dir,
                OpenOptions {
                    create: false,
                    ..Default::default()
                },
            )
            .unwrap();
            let ours: Vec<Value> = db
                .diff(version, prefix)
                .unwrap()
                .iter()
                .map(|c| json!({"left": side(&c.left, &c.key), "right": side(&c.right, &c.key)}))
                .collect();
            assert_eq!(
                Value::Array(ours),
                js,
                "diff from {} under {prefix:?}",
                hex::encode(version)
            );
        }
    }
}

#[test]
fn diffs_against_every_earlier_version_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let mut versions = vec![Vec::new()];
    {
        let db = Db::open(tmp.path()).unwrap();
        for round in 0..4 {
            for i in 0..12 {
                let key = format!("d{}/k{}", i % 3, (i * 7 + round) % 10);
                if (i + round) % 5 == 0 {
                    db.del(&key).unwrap();
                } else {
                    db.put(&key, format!("r{round}i{i}").as_bytes()).unwrap();
                }
            }
            versions.push(db.version().unwrap());
        }
    }
    compare(tmp.path(), &versions, &["", "d1", "d2/k3"]);
}
