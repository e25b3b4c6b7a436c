//! `hyperdb serve` and `hyperdb sync` between folders over loopback.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::{hyperdb, ok, p};

/// A `hyperdb serve` process, its address, and the lines it writes to
/// stderr.
struct Server(Child, String, std::sync::mpsc::Receiver<String>);

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hyperdb"));
        command
            .args([
                "serve",
                p(dir),
                "--listen",
                "127.0.0.1:0",
                "--no-dht",
                "--no-mdns",
            ])
            .args(extra);
        Server::spawn(command)
    }

    /// Runs `command`, a `hyperdb serve` on port 0.
    fn spawn(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server(child, addr, rx)
    }

    /// The next line the server writes to stderr, waiting a while for it.
    fn stderr_line(&self) -> Option<String> {
        self.2.recv_timeout(std::time::Duration::from_secs(15)).ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn key_of(dir: &Path) -> (String, String) {
    let info: serde_json::Value =
        serde_json::from_str(&ok(&hyperdb(&["info", p(dir), "--json"]))).unwrap();
    (
        info["key"].as_str().unwrap().into(),
        info["local_key"].as_str().unwrap().into(),
    )
}

#[test]
fn the_seed_story_with_serve_and_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let (db1, db2) = (tmp.path().join("db1"), tmp.path().join("db2"));
    ok(&hyperdb(&["init", p(&db1)]));
    ok(&hyperdb(&["put", p(&db1), "example/first", "db1 was here"]));
    ok(&hyperdb(&[
        "put",
        p(&db1),
        "example/second",
        "db1 was here",
    ]));
    let (key, _) = key_of(&db1);
    ok(&hyperdb(&["init", p(&db2), "--key", &key]));
    ok(&hyperdb(&["put", p(&db2), "example/third", "db2 was here"]));
    ok(&hyperdb(&[
        "put",
        p(&db2),
        "example/second",
        "db2 was here",
    ]));
    let (_, db2_local) = key_of(&db2);
    ok(&hyperdb(&["authorize", p(&db1), &db2_local]));

    {
        let server = Server::start(&db1, &[]);
        let out = ok(&hyperdb(&["sync", p(&db2), &server.1]));
        assert!(out.contains("received"), "{out}");
        assert!(out.contains(&key), "the summary names the writers: {out}");
    }
    // db1 received db2's writes too (sync is both ways).
    let mut both = ok(&hyperdb(&["get", p(&db1), "example/second"]))
        .lines()
        .map(String::from)
        .collect::<Vec<_>>();
    both.sort();
    assert_eq!(both, ["db1 was here", "db2 was here"]);
    assert_eq!(
        ok(&hyperdb(&["get", p(&db2), "example/first"])),
        "db1 was here\n"
    );
    assert_eq!(
        ok(&hyperdb(&["authorized", p(&db2), &db2_local])).trim(),
        "true"
    );

    // A second sync has nothing to do, and says so.
    let server = Server::start(&db1, &[]);
    let out = ok(&hyperdb(&["sync", p(&db2), &server.1]));
    assert!(out.contains("nothing exchanged"), "{out}");
}

#[test]
fn syncing_with_another_database_explains_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&hyperdb(&["init", p(&a)]));
    ok(&hyperdb(&["init", p(&b)]));
    let server = Server::start(&a, &[]);
    let out = hyperdb(&["sync", p(&b), &server.1]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another database"), "{stderr}");
    // The server, not on a terminal, is quiet but for that connection's
    // error.
    let logged = server.stderr_line().expect("the server reports the error");
    assert!(
        logged.starts_with("127.0.0.1:") && logged.contains("another database"),
        "{logged}"
    );
    let refused = hyperdb(&["sync", p(&b), "127.0.0.1:1"]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot connect"));
}

/// A `hyperdb watch` with `args`, killed after 40 seconds if the test has
/// not stopped it, its stdout past the "watching" line.
fn spawn_watch(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut watch = Command::new(env!("CARGO_BIN_EXE_hyperdb"))
        .arg("watch")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = watch.id();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(40));
        let _ = Command::new("kill").arg(pid.to_string()).status();
    });
    let mut out = BufReader::new(watch.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching"), "{line}");
    (watch, out)
}

#[test]
fn watch_live_shows_writes_that_arrive_by_replication() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, watcher_dir, writer) = (
        tmp.path().join("owner"),
        tmp.path().join("watcher"),
        tmp.path().join("writer"),
    );
    ok(&hyperdb(&["init", p(&owner)]));
    let (key, _) = key_of(&owner);
    ok(&hyperdb(&["init", p(&watcher_dir), "--key", &key]));
    ok(&hyperdb(&["init", p(&writer), "--key", &key]));
    let (_, writer_local) = key_of(&writer);
    ok(&hyperdb(&["authorize", p(&owner), &writer_local]));
    let server = Server::start(&owner, &["--live"]);

    let (mut watch, mut out) = spawn_watch(&[p(&watcher_dir), "news", "--live", &server.1]);
    let mut line = String::new();

    // A third replica writes and syncs with the server; the live session
    // carries the write on to the watcher.
    ok(&hyperdb(&["put", p(&writer), "news/today", "replicated"]));
    ok(&hyperdb(&["sync", p(&writer), &server.1]));
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "+ news/today\treplicated");
    watch.kill().unwrap();
    watch.wait().unwrap();
}

#[test]
fn a_served_folder_refuses_a_second_writer_but_not_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    ok(&hyperdb(&["init", p(&dir)]));
    ok(&hyperdb(&["put", p(&dir), "a", "1"]));
    let server = Server::start(&dir, &[]);

    // Two processes appending to one feed would fork it: the second writer
    // is turned away with an explanation and nothing changes.
    let out = hyperdb(&["put", p(&dir), "a", "2"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open for writing in another process"),
        "{stderr}"
    );
    assert!(
        stderr.contains("only read"),
        "the hint names the way out: {stderr}"
    );

    // Reading commands work meanwhile.
    assert_eq!(ok(&hyperdb(&["get", p(&dir), "a"])).trim(), "1");
    assert!(ok(&hyperdb(&["ls", p(&dir)])).contains('a'));
    ok(&hyperdb(&["info", p(&dir)]));

    drop(server);
    ok(&hyperdb(&["put", p(&dir), "a", "2"]));
    assert_eq!(ok(&hyperdb(&["get", p(&dir), "a"])).trim(), "2");
}

/// With its file descriptors exhausted by idle connections, `serve` says so
/// once, keeps serving, and accepts again once they close.
#[test]
fn serve_survives_running_out_of_file_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    let (db1, db2) = (tmp.path().join("db1"), tmp.path().join("db2"));
    ok(&hyperdb(&["init", p(&db1)]));
    ok(&hyperdb(&["put", p(&db1), "a", "1"]));
    let (key, _) = key_of(&db1);
    ok(&hyperdb(&["init", p(&db2), "--key", &key]));
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!(
            "ulimit -n 64 && exec {} serve {} --listen 127.0.0.1:0 --no-dht --no-mdns",
            env!("CARGO_BIN_EXE_hyperdb"),
            p(&db1)
        ),
    ]);
    let mut server = Server::spawn(command);
    let idle: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(&server.1).unwrap())
        .collect();
    let line = server.stderr_line().expect("a word about the limit");
    assert!(line.contains("Too many open files"), "{line}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(server.0.try_wait().unwrap().is_none(), "serve exited");
    drop(idle);
    let out = hyperdb(&["sync", p(&db2), &server.1]);
    ok(&out);
    assert_eq!(ok(&hyperdb(&["get", p(&db2), "a"])).trim(), "1");
}

/// Syncs `dir` with the folder `server` serves, both ways.
fn sync_with(dir: &Path, server: &Path) {
    let served = Server::start(server, &[]);
    ok(&hyperdb(&["sync", p(dir), &served.1]));
}

#[test]
fn revoking_a_writer_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, w, admin) = (
        tmp.path().join("owner"),
        tmp.path().join("w"),
        tmp.path().join("admin"),
    );
    ok(&hyperdb(&["init", p(&owner)]));
    let (key, _) = key_of(&owner);
    ok(&hyperdb(&["init", p(&w), "--key", &key]));
    ok(&hyperdb(&["init", p(&admin), "--key", &key]));
    let (_, w_key) = key_of(&w);
    let (_, admin_key) = key_of(&admin);
    ok(&hyperdb(&["authorize", p(&owner), &w_key]));
    let made = ok(&hyperdb(&["authorize", p(&owner), &admin_key, "--admin"]));
    assert!(made.contains("as an admin"), "{made}");
    ok(&hyperdb(&["put", p(&w), "k", "before"]));
    sync_with(&w, &owner);
    sync_with(&admin, &owner);

    // Refusals exit 3, say why with a hint, and write nothing.
    let version = ok(&hyperdb(&["version", p(&admin)]));
    for (args, why) in [
        (vec!["revoke", p(&admin), &key], "owner cannot be revoked"),
        (
            vec!["revoke", p(&w), &admin_key],
            "only the owner and admins",
        ),
        (
            vec!["authorize", p(&admin), &w_key, "--admin"],
            "only the owner makes admins",
        ),
    ] {
        let out = hyperdb(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains(why) && stderr.contains("hint:"), "{stderr}");
    }
    assert_eq!(ok(&hyperdb(&["version", p(&admin)])), version);

    // The admin revokes the writer, which keeps writing.
    let revoked = ok(&hyperdb(&["revoke", p(&admin), &w_key]));
    assert!(revoked.contains("revoked"), "{revoked}");
    ok(&hyperdb(&["put", p(&w), "k", "after"]));
    sync_with(&w, &owner);
    sync_with(&admin, &owner);
    sync_with(&w, &owner);
    // Now that it knows, a write says it does not count.
    let late = hyperdb(&["put", p(&w), "late", "x"]);
    assert!(late.status.success());
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(stderr.contains("not counted: late"), "{stderr}");
    sync_with(&w, &owner);
    sync_with(&admin, &owner);
    for dir in [&owner, &w, &admin] {
        assert_eq!(ok(&hyperdb(&["get", p(dir), "k"])), "before\n");
        assert_eq!(ok(&hyperdb(&["get", p(dir), "k", "--raw"])), "after\n");
        let mut raw: Vec<String> = ok(&hyperdb(&["ls", p(dir), "--raw"]))
            .lines()
            .map(String::from)
            .collect();
        raw.sort();
        assert_eq!(raw, ["k\tafter", "late\tx"]);
        assert_eq!(ok(&hyperdb(&["ls", p(dir)])), "k\tbefore\n");
        let no = hyperdb(&["authorized", p(dir), &w_key]);
        assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "false");
        assert_eq!(no.status.code(), Some(1));
        assert_eq!(
            ok(&hyperdb(&["authorized", p(dir), &w_key, "--raw"])).trim(),
            "true"
        );
        let writers: Vec<serde_json::Value> = ok(&hyperdb(&["writers", p(dir), "--json"]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let roles: Vec<(&str, &str)> = writers
            .iter()
            .map(|v| (v["key"].as_str().unwrap(), v["role"].as_str().unwrap()))
            .collect();
        assert!(roles.contains(&(key.as_str(), "owner")), "{roles:?}");
        assert!(roles.contains(&(admin_key.as_str(), "admin")), "{roles:?}");
        let revoked = writers.iter().find(|v| v["key"] == w_key.as_str()).unwrap();
        assert_eq!(revoked["revoked_from"], 2, "header and one entry count");
    }
    let table = ok(&hyperdb(&["writers", p(&owner)]));
    assert!(table.contains("revoked from entry 2"), "{table}");
    let info = ok(&hyperdb(&["info", p(&w)]));
    assert!(info.contains("authorized:    no: revoked"), "{info}");
    let history = ok(&hyperdb(&["history", p(&owner), "--key", "k"]));
    assert!(
        history.contains("before") && !history.contains("after"),
        "{history}"
    );
}

#[test]
fn prefixes_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, w) = (tmp.path().join("owner"), tmp.path().join("w"));
    ok(&hyperdb(&["init", p(&owner)]));
    let (key, _) = key_of(&owner);
    ok(&hyperdb(&["init", p(&w), "--key", &key]));
    let (_, w_key) = key_of(&w);
    let out = ok(&hyperdb(&[
        "authorize",
        p(&owner),
        &w_key,
        "--prefix",
        "config",
    ]));
    assert!(out.contains("under config"), "{out}");
    sync_with(&w, &owner);
    ok(&hyperdb(&["put", p(&w), "config/a", "1"]));
    ok(&hyperdb(&["put", p(&w), "other", "1"]));
    sync_with(&w, &owner);
    assert_eq!(ok(&hyperdb(&["get", p(&owner), "config/a"])), "1\n");
    assert_eq!(hyperdb(&["get", p(&owner), "other"]).status.code(), Some(1));
    assert_eq!(ok(&hyperdb(&["get", p(&owner), "other", "--raw"])), "1\n");
    let table = ok(&hyperdb(&["writers", p(&owner)]));
    assert!(
        table.contains(&format!("{w_key}\twriter\tunder config")),
        "{table}"
    );

    // The writer may not restrict; the owner makes `config` read-only.
    let out = hyperdb(&["restrict", p(&w), "config"]);
    assert_eq!(out.status.code(), Some(3));
    ok(&hyperdb(&["restrict", p(&owner), "config"]));
    let table = ok(&hyperdb(&["writers", p(&owner)]));
    assert!(
        table.contains("restricted \"config\": the owner and admins only"),
        "{table}"
    );
    sync_with(&w, &owner);
    ok(&hyperdb(&["put", p(&w), "config/a", "2"]));
    sync_with(&w, &owner);
    assert_eq!(ok(&hyperdb(&["get", p(&owner), "config/a"])), "1\n");
    ok(&hyperdb(&["unrestrict", p(&owner), "config"]));
    let again = hyperdb(&["unrestrict", p(&owner), "config"]);
    assert_eq!(again.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not restricted"));
    sync_with(&w, &owner);
    ok(&hyperdb(&["put", p(&w), "config/a", "3"]));
    sync_with(&w, &owner);
    assert_eq!(ok(&hyperdb(&["get", p(&owner), "config/a"])), "3\n");
}

#[test]
fn watch_reports_a_value_that_stops_counting_when_a_revocation_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, w, watcher) = (
        tmp.path().join("owner"),
        tmp.path().join("w"),
        tmp.path().join("watcher"),
    );
    ok(&hyperdb(&["init", p(&owner)]));
    let (key, _) = key_of(&owner);
    ok(&hyperdb(&["init", p(&w), "--key", &key]));
    ok(&hyperdb(&["init", p(&watcher), "--key", &key]));
    let (_, w_key) = key_of(&w);
    ok(&hyperdb(&["authorize", p(&owner), &w_key]));
    ok(&hyperdb(&["put", p(&owner), "k", "before"]));
    sync_with(&w, &owner);
    ok(&hyperdb(&["revoke", p(&owner), &w_key]));
    // The writer, not knowing, overwrites; the watcher sees that first.
    ok(&hyperdb(&["put", p(&w), "k", "after"]));
    sync_with(&watcher, &w);
    assert_eq!(ok(&hyperdb(&["get", p(&watcher), "k"])), "after\n");

    let (mut watch, mut out) = spawn_watch(&[p(&watcher), "k"]);
    let mut line = String::new();
    // The revocation arrives (the watch reads the folder again as it
    // changes): the writer's value stops counting.
    sync_with(&watcher, &owner);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "~ k\tafter -> before");
    watch.kill().unwrap();
    watch.wait().unwrap();
}
