//! The feed against the running JS reference (hypercore 6 in `interop/`):
//! each side opens what the other wrote, the same appends with the same key
//! pair give the same bytes, and proofs made by one verify in the other.

use std::path::Path;

use hypercore_feed::{Feed, FeedOptions, FileStorage, KeyPair, Node, Proof, SparseBits};
use serde_json::{json, Value};
use testkit::node;

use hypercore_feed::storage::FEED_FILES as FILES;

/// A list of append calls: each inner list is one batch.
fn scenario() -> Vec<Vec<Vec<u8>>> {
    let mut batches = Vec::new();
    for i in 0..40u32 {
        batches.push(vec![format!("single {i}").into_bytes()]);
    }
    batches.push(vec![b"a".to_vec(), b"".to_vec(), b"ccc".to_vec()]);
    // Enough blocks to cross the first bitfield page (8,192 blocks).
    for b in 0..9u32 {
        batches.push(
            (0..1000u32)
                .map(|i| format!("{b}/{i}").into_bytes())
                .collect(),
        );
    }
    for i in 0..5u32 {
        batches.push(vec![vec![i as u8; 100 + i as usize]]);
    }
    batches
}

fn batches_json(batches: &[Vec<Vec<u8>>]) -> String {
    let list: Vec<Vec<String>> = batches
        .iter()
        .map(|b| b.iter().map(hex::encode).collect())
        .collect();
    serde_json::to_string(&list).unwrap()
}

fn js_append(dir: &Path, pair: &KeyPair, batches: &[Vec<Vec<u8>>]) -> Value {
    node(
        "feed-append.js",
        &[
            dir.to_str().unwrap(),
            "--key",
            &hex::encode(pair.public_key),
            "--secret-key",
            &hex::encode(pair.secret_key),
            "--batches",
            &batches_json(batches),
        ],
    )
}

fn rust_feed(dir: &Path, pair: &KeyPair) -> Feed {
    let options = FeedOptions {
        key: Some(pair.public_key),
        secret_key: Some(pair.secret_key),
        ..Default::default()
    };
    Feed::open(FileStorage::new(dir), options).unwrap()
}

fn all_blocks(batches: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    batches.iter().flatten().cloned().collect()
}

#[test]
fn same_appends_give_byte_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (js_dir, rust_dir) = (tmp.path().join("js"), tmp.path().join("rust"));
    let pair = KeyPair::generate();
    let batches = scenario();
    let (first, second) = batches.split_at(30);

    // Two sessions on each side, so reopening is covered too.
    js_append(&js_dir, &pair, first);
    js_append(&js_dir, &pair, second);
    for part in [first, second] {
        let mut feed = rust_feed(&rust_dir, &pair);
        for batch in part {
            feed.append_batch(batch).unwrap();
        }
    }

    for file in FILES {
        let js = std::fs::read(js_dir.join(file)).unwrap();
        let rust = std::fs::read(rust_dir.join(file)).unwrap();
        assert_eq!(js.len(), rust.len(), "{file}: lengths differ");
        if let Some(at) = js.iter().zip(&rust).position(|(a, b)| a != b) {
            panic!("{file}: first difference at byte {at}");
        }
    }
}

#[test]
fn a_new_empty_feed_has_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (js_dir, rust_dir) = (tmp.path().join("js"), tmp.path().join("rust"));
    let pair = KeyPair::generate();
    js_append(&js_dir, &pair, &[]);
    rust_feed(&rust_dir, &pair);
    let names = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&js_dir), names(&rust_dir));
    for name in names(&js_dir) {
        assert_eq!(
            std::fs::read(js_dir.join(&name)).unwrap(),
            std::fs::read(rust_dir.join(&name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_feed_written_by_js_opens_in_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = KeyPair::generate();
    let batches = scenario();
    let out = js_append(tmp.path(), &pair, &batches);
    let blocks = all_blocks(&batches);
    assert_eq!(out["length"], blocks.len());

    // Opened from its folder alone, the key and secret key are found.
    let mut feed = Feed::open(FileStorage::new(tmp.path()), FeedOptions::default()).unwrap();
    assert_eq!(feed.key(), &pair.public_key);
    assert!(feed.is_writable());
    assert_eq!(feed.len(), blocks.len() as u64);
    assert_eq!(hex::encode(feed.discovery_key()), out["discoveryKey"]);
    for (i, block) in blocks.iter().enumerate() {
        assert_eq!(&feed.get(i as u64).unwrap(), block, "block {i}");
    }
    let last = feed.len() - 1;
    let (_, sig) = feed.signature(last).unwrap();
    assert!(feed.verify(last, &sig).unwrap());
    // The batch of three at 40..43 is signed once, at its last block.
    let (at, sig) = feed.signature(40).unwrap();
    assert_eq!(at, 42);
    assert!(feed.verify(at, &sig).unwrap());
    let report = feed.audit().unwrap();
    assert_eq!((report.valid, report.invalid), (blocks.len() as u64, 0));

    // Rust keeps writing; JS reads it all back.
    feed.append(b"written by rust").unwrap();
    drop(feed);
    let read = node("feed-read.js", &[tmp.path().to_str().unwrap()]);
    assert_eq!(read["length"], blocks.len() + 1);
    assert_eq!(read["blocks"][blocks.len()], hex::encode("written by rust"));
    assert_eq!(read["signatureValid"], true);
}

#[test]
fn a_feed_written_by_rust_opens_in_js() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = KeyPair::generate();
    let batches = scenario();
    let mut feed = rust_feed(tmp.path(), &pair);
    for batch in &batches {
        feed.append_batch(batch).unwrap();
    }
    drop(feed);
    let blocks = all_blocks(&batches);
    let read = node("feed-read.js", &[tmp.path().to_str().unwrap()]);
    assert_eq!(read["key"], hex::encode(pair.public_key));
    assert_eq!(read["writable"], true);
    assert_eq!(read["length"], blocks.len());
    let byte_len: usize = blocks.iter().map(Vec::len).sum();
    assert_eq!(read["byteLength"], byte_len);
    for (i, block) in blocks.iter().enumerate() {
        assert_eq!(read["blocks"][i], hex::encode(block), "block {i}");
    }
    assert_eq!(read["audit"], json!({"valid": blocks.len(), "invalid": 0}));
    assert_eq!(read["signatureValid"], true);

    // JS keeps writing; Rust reads it back.
    let more = vec![vec![b"written by js".to_vec()]];
    js_append(tmp.path(), &pair, &more);
    let feed = Feed::open(FileStorage::new(tmp.path()), FeedOptions::default()).unwrap();
    assert_eq!(feed.get(blocks.len() as u64).unwrap(), b"written by js");
}

fn proof_from_json(v: &Value) -> Proof {
    Proof {
        nodes: v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| Node {
                index: n["index"].as_u64().unwrap(),
                hash: hex::decode(n["hash"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
                size: n["size"].as_u64().unwrap(),
            })
            .collect(),
        signature: v["signature"]
            .as_str()
            .map(|s| hex::decode(s).unwrap().try_into().unwrap()),
    }
}

fn proof_to_json(index: u64, block: &[u8], proof: &Proof) -> Value {
    json!({
        "index": index,
        "value": hex::encode(block),
        "nodes": proof.nodes.iter().map(|n| json!({
            "index": n.index, "hash": hex::encode(n.hash), "size": n.size
        })).collect::<Vec<_>>(),
        "signature": proof.signature.map(hex::encode),
    })
}

#[test]
fn proofs_made_by_js_verify_in_rust_and_match_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = KeyPair::generate();
    let batches: Vec<Vec<Vec<u8>>> = (0..13u32)
        .map(|i| vec![format!("block {i}").into_bytes()])
        .collect();
    js_append(tmp.path(), &pair, &batches);
    let dir = tmp.path().to_str().unwrap();

    let ours = Feed::open(FileStorage::new(tmp.path()), FeedOptions::default()).unwrap();
    let clone_dir = tempfile::tempdir().unwrap();
    let options = FeedOptions {
        key: Some(pair.public_key),
        ..Default::default()
    };
    let mut clone = Feed::open(FileStorage::new(clone_dir.path()), options).unwrap();
    // Out of order, so digests say different things as the clone fills.
    for index in [7u64, 0, 12, 3, 8, 1, 2, 4, 5, 6, 9, 10, 11] {
        let digest = clone.digest(index);
        let js = node(
            "feed-proof.js",
            &[dir, &index.to_string(), "--digest", &digest.to_string()],
        );
        let js_proof = proof_from_json(&js);
        let rust_proof = ours
            .proof(index, digest, false, &mut SparseBits::new())
            .unwrap();
        assert_eq!(
            rust_proof, js_proof,
            "proof of block {index} with digest {digest}"
        );
        clone
            .put(index, Some(&batches[index as usize][0]), &js_proof)
            .unwrap();
    }
    assert_eq!(clone.len(), 13);
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(clone.get(i as u64).unwrap(), batch[0]);
    }
    // A proof of the hash alone, as JS makes it with `hash: true`.
    let js = node("feed-proof.js", &[dir, "2", "--hash"]);
    let rust_proof = ours.proof(2, 0, true, &mut SparseBits::new()).unwrap();
    assert_eq!(rust_proof, proof_from_json(&js));
}

#[test]
fn proofs_made_by_rust_verify_in_js() {
    let tmp = tempfile::tempdir().unwrap();
    let mut feed = Feed::open(
        FileStorage::new(tmp.path().join("source")),
        FeedOptions::default(),
    )
    .unwrap();
    let blocks: Vec<Vec<u8>> = (0..21u32)
        .map(|i| format!("rust block {i}").into_bytes())
        .collect();
    for b in &blocks[..10] {
        feed.append(b).unwrap();
    }
    feed.append_batch(&blocks[10..]).unwrap();
    // The clone starts empty, so every proof goes up to a signed root.
    let mut sent = SparseBits::new();
    let puts: Vec<Value> = [20u64, 5, 0, 13, 14]
        .iter()
        .map(|&i| {
            let proof = feed.proof(i, 0, false, &mut sent).unwrap();
            proof_to_json(i, &blocks[i as usize], &proof)
        })
        .collect();
    let clone = tmp.path().join("clone");
    let out = node(
        "feed-put.js",
        &[
            clone.to_str().unwrap(),
            &hex::encode(feed.key()),
            "--blocks",
            &serde_json::to_string(&puts).unwrap(),
        ],
    );
    for (i, result) in out["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(result["ok"], true, "put {i}: {result}");
    }
    assert_eq!(out["length"], 21);
    for i in [20usize, 5, 0, 13, 14] {
        assert_eq!(out["blocks"][i], hex::encode(&blocks[i]));
    }
    assert_eq!(out["blocks"][1], Value::Null);

    // A block whose bytes were changed does not verify in JS either.
    let proof = feed.proof(3, 0, false, &mut SparseBits::new()).unwrap();
    let bad = proof_to_json(3, b"forged", &proof);
    let out = node(
        "feed-put.js",
        &[
            tmp.path().join("clone2").to_str().unwrap(),
            &hex::encode(feed.key()),
            "--blocks",
            &serde_json::to_string(&[bad]).unwrap(),
        ],
    );
    assert_eq!(out["results"][0]["ok"], false);
    assert_eq!(out["blocks"], json!([]));
}
