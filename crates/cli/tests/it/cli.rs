//! The `hyperdb` binary on real folders: its output, JSON and exit codes.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{hyperdb, hyperdb_stdin, json, ok, p};

#[test]
fn init_put_get_del_ls_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let text = ok(&hyperdb(&["init", p(&dir)]));
    assert!(
        text.contains("db key:") && text.contains("local key:"),
        "{text}"
    );
    let again = hyperdb(&["init", p(&dir)]);
    assert_eq!(again.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a database"));

    ok(&hyperdb(&["put", p(&dir), "a/b", "one"]));
    ok(&hyperdb(&["put", p(&dir), "/a/c", "two"]));
    ok(&hyperdb(&["put", p(&dir), "x", "héllo"]));
    assert_eq!(ok(&hyperdb(&["get", p(&dir), "a/b"])), "one\n");
    assert_eq!(ok(&hyperdb(&["get", p(&dir), "a/c"])), "two\n");
    assert_eq!(ok(&hyperdb(&["get", p(&dir), "x"])), "héllo\n");
    let missing = hyperdb(&["get", p(&dir), "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty());

    let nodes = json(&hyperdb(&["get", p(&dir), "a/b", "--json"]));
    let node = &nodes[0];
    assert_eq!(node["key"], "a/b");
    assert_eq!(node["value"], "one");
    assert_eq!(node["deleted"], false);
    assert_eq!(node["seq"], 1);
    assert_eq!(node["clock"], serde_json::json!([2]));
    assert_eq!(node["feed"].as_str().unwrap().len(), 64);

    let listing = ok(&hyperdb(&["ls", p(&dir), "a", "--json"]));
    let mut keys: Vec<Value> = listing
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    keys.sort_by_key(|v| v["key"].as_str().unwrap().to_string());
    assert_eq!(
        keys,
        vec![
            serde_json::json!({"key": "a/b", "values": ["one"]}),
            serde_json::json!({"key": "a/c", "values": ["two"]}),
        ]
    );

    ok(&hyperdb(&["del", p(&dir), "a/b"]));
    assert_eq!(hyperdb(&["get", p(&dir), "a/b"]).status.code(), Some(1));
    assert_eq!(ok(&hyperdb(&["ls", p(&dir)])).lines().count(), 2);
    // In the order written: the same lines.
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(ok(&hyperdb(&["ls", p(&dir), "--unordered"]))),
        sorted(ok(&hyperdb(&["ls", p(&dir)])))
    );
    let both = hyperdb(&["ls", p(&dir), "--unordered", "--reverse"]);
    assert_eq!(both.status.code(), Some(2), "conflicting flags are refused");
}

#[test]
fn batch_reads_ndjson_and_is_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    ok(&hyperdb(&["init", p(&dir)]));
    let input = "{\"type\":\"put\",\"key\":\"k1\",\"value\":\"v1\"}\n\n{\"type\":\"put\",\"key\":\"k2\",\"value\":\"v2\"}\n{\"type\":\"del\",\"key\":\"k1\"}\n";
    ok(&hyperdb_stdin(&["batch", p(&dir)], input));
    assert_eq!(hyperdb(&["get", p(&dir), "k1"]).status.code(), Some(1));
    assert_eq!(ok(&hyperdb(&["get", p(&dir), "k2"])), "v2\n");
    let info = json(&hyperdb(&["info", p(&dir), "--json"]));
    assert_eq!(
        info["writers"][0]["length"], 4,
        "header + three entries in one batch"
    );
    assert_eq!(info["writers"][0]["counted"], 4, "all of it counts");
    assert_eq!(info["key_index"]["covered"], 4, "one writer: indexed");

    let bad = hyperdb_stdin(
        &["batch", p(&dir)],
        "{\"type\":\"put\",\"key\":\"k3\",\"value\":\"v3\"}\n{\"type\":\"frob\"}\n",
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 2"));
    assert_eq!(
        hyperdb(&["get", p(&dir), "k3"]).status.code(),
        Some(1),
        "nothing written"
    );
}

#[test]
fn info_authorize_and_authorized() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let created: Value = serde_json::from_str(&ok(&hyperdb(&["init", p(&a), "--json"]))).unwrap();
    let db_key = created["key"].as_str().unwrap();
    assert_eq!(
        created["local_key"], db_key,
        "the owner writes to the source feed"
    );
    let replica: Value =
        serde_json::from_str(&ok(&hyperdb(&["init", p(&b), "--key", db_key, "--json"]))).unwrap();
    assert_eq!(replica["key"], db_key);
    let b_local = replica["local_key"].as_str().unwrap();
    assert_ne!(b_local, db_key);

    let info = json(&hyperdb(&["info", p(&b), "--json"]));
    assert_eq!(info["key"], db_key);
    assert_eq!(info["local_key"], b_local);
    assert_eq!(info["authorized"], false);
    assert_eq!(info["discovery_key"].as_str().unwrap().len(), 64);
    assert_eq!(info["writers"].as_array().unwrap().len(), 2);

    // The seed's trap: the db key where the local key belongs.
    let wrong = hyperdb(&["authorize", p(&a), db_key]);
    assert_eq!(wrong.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("local") && stderr.contains("database key"),
        "{stderr}"
    );

    let no = hyperdb(&["authorized", p(&a), b_local]);
    assert_eq!(
        (no.status.code(), String::from_utf8_lossy(&no.stdout).trim()),
        (Some(1), "false")
    );
    ok(&hyperdb(&["authorize", p(&a), b_local]));
    assert_eq!(ok(&hyperdb(&["authorized", p(&a), b_local])).trim(), "true");
    assert_eq!(ok(&hyperdb(&["authorized", p(&a), db_key])).trim(), "true");
    let again = hyperdb(&["authorize", p(&a), b_local]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already authorized"));
}

#[test]
fn usage_errors_exit_2_and_help_documents_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(hyperdb(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(hyperdb(&["get"]).status.code(), Some(2));
    let bad_key = hyperdb(&["init", p(tmp.path()), "--key", "xyz"]);
    assert_eq!(bad_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_key.stderr).contains("64 hex"));
    let missing = hyperdb(&["get", p(&tmp.path().join("none")), "k"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("hyperdb init"));

    let help = ok(&hyperdb(&["--help"]));
    for command in [
        "init",
        "info",
        "put",
        "del",
        "batch",
        "get",
        "ls",
        "authorize",
        "authorized",
        "revoke",
        "writers",
        "restrict",
        "unrestrict",
    ] {
        assert!(help.contains(command), "--help lists {command}");
        let sub = ok(&hyperdb(&[command, "--help"]));
        assert!(sub.contains("Usage"), "{command} --help");
    }
}

#[test]
fn reads_a_database_written_by_the_js_reference() {
    let tmp = tempfile::tempdir().unwrap();
    testkit::node(
        "db-ops.js",
        &[
            p(tmp.path()),
            "--ops",
            r#"[{"type":"put","key":"from/js","value":"hello"},{"type":"put","key":"from/js2","value":"x"},{"type":"del","key":"from/js2"}]"#,
        ],
    );
    assert_eq!(ok(&hyperdb(&["get", p(tmp.path()), "from/js"])), "hello\n");
    assert_eq!(
        hyperdb(&["get", p(tmp.path()), "from/js2"]).status.code(),
        Some(1)
    );
    ok(&hyperdb(&["put", p(tmp.path()), "from/rust", "hi"]));
    let got = testkit::node("db-get.js", &[p(tmp.path()), "from/rust"]);
    assert_eq!(got["from/rust"][0]["value"], "hi");
}

#[test]
fn version_history_and_reading_at_a_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    ok(&hyperdb(&["init", p(&dir)]));
    ok(&hyperdb(&["put", p(&dir), "k", "one"]));
    let version = ok(&hyperdb(&["version", p(&dir)])).trim().to_string();
    assert_eq!(
        version.len(),
        66,
        "a 32-byte key and a one-byte varint, in hex"
    );
    ok(&hyperdb(&["put", p(&dir), "k", "two"]));
    ok(&hyperdb(&["put", p(&dir), "other", "x"]));
    assert_eq!(
        ok(&hyperdb(&["get", p(&dir), "k", "--at", &version])),
        "one\n"
    );
    assert_eq!(ok(&hyperdb(&["get", p(&dir), "k"])), "two\n");
    assert_eq!(
        ok(&hyperdb(&["ls", p(&dir), "--at", &version]))
            .lines()
            .count(),
        1
    );
    let bad = hyperdb(&["get", p(&dir), "k", "--at", "zz"]);
    assert_eq!(bad.status.code(), Some(2));

    let history: Vec<Value> = ok(&hyperdb(&["history", p(&dir), "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = history.iter().map(|n| n["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let reverse = ok(&hyperdb(&["history", p(&dir), "--reverse"]));
    assert!(reverse.lines().next().unwrap().contains("other"));
    let key_history: Vec<Value> = ok(&hyperdb(&["history", p(&dir), "--key", "k", "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let values: Vec<&str> = key_history
        .iter()
        .map(|n| n["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["two", "one"], "newest first");
    assert_eq!(
        ok(&hyperdb(&["history", p(&dir), "--at", &version]))
            .lines()
            .count(),
        1
    );
}

#[test]
fn diff_and_watch() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    ok(&hyperdb(&["init", p(&dir)]));
    ok(&hyperdb(&["put", p(&dir), "a/x", "1"]));
    ok(&hyperdb(&["put", p(&dir), "a/y", "2"]));
    let version = ok(&hyperdb(&["version", p(&dir)])).trim().to_string();
    ok(&hyperdb(&["put", p(&dir), "a/x", "changed"]));
    ok(&hyperdb(&["del", p(&dir), "a/y"]));
    ok(&hyperdb(&["put", p(&dir), "a/z", "new"]));
    ok(&hyperdb(&["put", p(&dir), "b", "elsewhere"]));
    let mut lines: Vec<String> = ok(&hyperdb(&["diff", p(&dir), "--from", &version, "a"]))
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(lines, ["+ a/z\tnew", "- a/y\t2", "~ a/x\t1 -> changed"]);
    let json_lines = ok(&hyperdb(&["diff", p(&dir), "--from", &version, "--json"]));
    assert_eq!(json_lines.lines().count(), 4);

    let mut watcher = Command::new(env!("CARGO_BIN_EXE_hyperdb"))
        .args(["watch", p(&dir), "a"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = watcher.id();
    // Never hang the suite: the watcher is killed after 30 s whatever happens.
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let _ = Command::new("kill").arg(pid.to_string()).status();
    });
    let mut out = BufReader::new(watcher.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching"), "{line}");
    ok(&hyperdb(&["put", p(&dir), "b", "outside the prefix"]));
    ok(&hyperdb(&["put", p(&dir), "a/w", "seen"]));
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "+ a/w\tseen",
        "only the change under the prefix"
    );
    watcher.kill().unwrap();
    watcher.wait().unwrap();
}
