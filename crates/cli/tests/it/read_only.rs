//! Commands that only read never write: not a header, not a folder, not a
//! key; they work for a user who may only read and on a read-only file
//! system; and a damaged key is an error that names the file, never a new
//! database.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{hyperdb, ok, p};

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.insert(path.clone(), Vec::new());
            out.extend(snapshot(&path));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

fn info_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&hyperdb(&["info", "--json", p(dir)]))).unwrap()
}

/// An owner that authorized a second writer and holds its entries, and the
/// second writer's folder.
fn two_writers(tmp: &Path) -> (PathBuf, PathBuf) {
    let owner = tmp.join("owner");
    let other = tmp.join("other");
    ok(&hyperdb(&["init", p(&owner)]));
    ok(&hyperdb(&["put", p(&owner), "a", "1"]));
    let key = info_json(&owner)["key"].as_str().unwrap().to_string();
    ok(&hyperdb(&["init", p(&other), "--key", &key]));
    ok(&hyperdb(&["put", p(&other), "b", "2"]));
    let local = info_json(&other)["local_key"].as_str().unwrap().to_string();
    ok(&hyperdb(&["authorize", p(&owner), &local]));
    (owner, other)
}

const READS: &[&[&str]] = &[
    &["info", "DIR"],
    &["get", "DIR", "a"],
    &["ls", "DIR"],
    &["ls", "DIR", "--unordered"],
    &["version", "DIR"],
    &["history", "DIR"],
    &["feeds", "DIR"],
    &["diff", "DIR", "--from", ""],
];

fn run_reads(dir: &Path) {
    for args in READS {
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "DIR" { p(dir) } else { a })
            .collect();
        let out = hyperdb(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn reading_commands_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, _) = two_writers(tmp.path());
    // The owner knows the second writer but holds none of its feed yet, and
    // its folder for that feed is gone: a reader must not make one.
    std::fs::remove_dir_all(owner.join("peers")).unwrap();
    // A crash left the owner's bitfield behind: a reader repairs it in
    // memory only.
    let bitfield = owner.join("source/bitfield");
    let bytes = std::fs::read(&bitfield).unwrap();
    std::fs::write(&bitfield, &bytes[..32]).unwrap();
    let before = snapshot(&owner);
    run_reads(&owner);
    let out = hyperdb(&["get", p(&owner), "a"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recovered"),
        "a note says what was repaired in memory"
    );
    assert!(
        snapshot(&owner) == before,
        "a reading command changed the folder"
    );
    // A command that writes writes the repair.
    ok(&hyperdb(&["put", p(&owner), "c", "3"]));
    assert!(std::fs::read(&bitfield).unwrap().len() > 32);
    assert!(owner.join("peers").exists());
}

#[test]
fn an_empty_or_short_key_is_an_error_naming_the_file_and_no_key_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, other) = two_writers(tmp.path());
    for (dir, damage) in [(&owner, 0), (&owner, 7), (&other, 0)] {
        let key = dir.join("source/key");
        let original = std::fs::read(&key).unwrap();
        std::fs::write(&key, &original[..damage]).unwrap();
        let before = snapshot(dir);
        for args in [
            vec!["info", p(dir)],
            vec!["get", p(dir), "a"],
            vec!["put", p(dir), "x", "y"],
            vec!["sync", p(dir), "127.0.0.1:9"],
        ] {
            let out = hyperdb(&args);
            assert_eq!(out.status.code(), Some(3), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!("{}", key.display())) && err.contains("bytes"),
                "{args:?}: {err}"
            );
        }
        let out = hyperdb(&["init", p(dir)]);
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"));
        assert!(snapshot(dir) == before, "nothing written, no new key");
        std::fs::write(&key, &original).unwrap();
        ok(&hyperdb(&["info", p(dir)]));
    }
}

/// A folder only root may write, read by the user `nobody`.
#[test]
fn a_user_who_may_only_read_can_read() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (owner, _) = two_writers(tmp.path());
    let before = snapshot(&owner);
    // A copy of the binary the user may run, wherever the build is.
    let bin = tmp.path().join("hyperdb");
    std::fs::copy(env!("CARGO_BIN_EXE_hyperdb"), &bin).unwrap();
    let as_nobody = |args: &[&str]| -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .output()
            .unwrap()
    };
    for args in READS {
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "DIR" { p(&owner) } else { a })
            .collect();
        let out = as_nobody(&args);
        assert!(
            out.status.success(),
            "{args:?} as nobody: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = as_nobody(&["get", p(&owner), "a"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let out = as_nobody(&["put", p(&owner), "x", "y"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ermission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(snapshot(&owner) == before);
}

/// The folder mounted read-only (in a mount namespace of its own).
#[test]
fn a_read_only_file_system_can_be_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, _) = two_writers(tmp.path());
    let bin = env!("CARGO_BIN_EXE_hyperdb");
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && {bin} get {d} a && {bin} ls {d} && {bin} info {d} && ! {bin} put {d} x y",
        d = p(&owner)
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1\n"));
}

#[test]
fn an_emptied_writer_bitfield_never_makes_it_write_over_its_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, other) = two_writers(tmp.path());
    ok(&hyperdb(&["put", p(&other), "c", "3"]));
    std::fs::write(other.join("local/bitfield"), b"").unwrap();
    let out = hyperdb(&["put", p(&other), "d", "4"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("recovered"));
    for (key, value) in [("b", "2"), ("c", "3"), ("d", "4")] {
        let out = hyperdb(&["get", p(&other), key]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), value, "{key}");
    }
    // The header, b, c and d: four blocks, d after c.
    let info = info_json(&other);
    let local = info["writers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["local"] == true)
        .unwrap()
        .clone();
    assert_eq!(local["length"], 4);
}
