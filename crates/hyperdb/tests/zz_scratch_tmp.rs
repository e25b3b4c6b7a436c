mod ported_support;
use hyperdb::IterOptions;
use ported_support::*;
#[test]
fn scratch() {
    let mut db = one();
    let mut keys = vec![];
    for i in 0..12 { keys.push(format!("k{i}")); keys.push(format!("k{i}/x")); keys.push(format!("d{i}/y/z")); }
    for k in &keys { db.put(k, k.as_bytes()).unwrap(); }
    for o in [IterOptions { shallow: true, ..Default::default() }, IterOptions { shallow: true, reverse: true, ..Default::default() }] {
        println!("{}", serde_json::to_string(&iter_keys(db.iter("", o).unwrap())).unwrap());
    }
}
