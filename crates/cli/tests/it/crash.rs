//! The `hyperdb` binary killed (SIGKILL, by strace's fault injection) at
//! every system call that changes a file: `put` on a feed whose next block
//! is marked in two bitfield pages, `batch` across a page boundary and
//! `init`; and `sync` at a sample of its calls. After each kill the folder
//! opens, what was acknowledged is there, and later commands work.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{hyperdb, hyperdb_stdin, ok, output_with_stdin, p};

/// The system calls that change files.
const CALLS: [&str; 6] = [
    "pwrite64",
    "fdatasync",
    "fsync",
    "ftruncate",
    "rename",
    "mkdir",
];

/// Runs `hyperdb args` under strace, killed at the `n`th call to `call`.
fn killed_at(call: &str, n: usize, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("inject={call}:signal=KILL:when={n}"))
        .arg(env!("CARGO_BIN_EXE_hyperdb"))
        .args(args);
    match stdin {
        Some(input) => output_with_stdin(command, input),
        None => command
            .output()
            .expect("strace runs (the crash tests need it: apt-get install strace)"),
    }
}

fn was_killed(out: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    // strace exits as the child did: by the signal, or 128 + it.
    out.status.signal() == Some(9) || out.status.code() == Some(128 + 9)
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-a", p(from), p(to)])
        .status()
        .unwrap();
    assert!(status.success());
}

fn batch_lines(keys: std::ops::Range<usize>, prefix: &str) -> String {
    keys.map(|i| format!("{{\"type\":\"put\",\"key\":\"{prefix}{i}\",\"value\":\"v{i}\"}}\n"))
        .collect()
}

fn get(dir: &Path, key: &str) -> Option<String> {
    let out = hyperdb(&["get", p(dir), key]);
    match out.status.code() {
        Some(0) => Some(String::from_utf8(out.stdout).unwrap().trim().to_string()),
        Some(1) => None,
        _ => panic!("get {key} failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Kills `args` (run on a copy of `prepared`) at every `stride`th
/// file-changing call of each kind in turn (every one with a stride of 1),
/// and checks each folder with `check`. Returns how many kills there were.
fn at_every_call(
    prepared: &Path,
    args: &[&str],
    stdin: Option<&str>,
    stride: usize,
    check: impl Fn(&Path, &str),
) -> usize {
    let mut kills = 0;
    for call in CALLS {
        for (run, n) in (1..).step_by(stride).enumerate() {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("db");
            if prepared.exists() {
                copy_dir(prepared, &dir);
            }
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "DIR" { p(&dir) } else { a })
                .collect();
            let out = killed_at(call, n, &args, stdin);
            if !was_killed(&out) {
                assert!(
                    out.status.success(),
                    "{call} {n}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                break;
            }
            kills += 1;
            check(&dir, &format!("killed at {call} #{n}"));
            assert!(run < 100, "{call}: no end");
        }
    }
    kills
}

/// A database of `n` keys `k0`.. written by one batch.
fn prepared(n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    ok(&hyperdb(&["init", p(&dir)]));
    ok(&hyperdb_stdin(
        &["--durability", "buffered", "batch", p(&dir)],
        &batch_lines(0..n, "k"),
    ));
    tmp
}

/// After a kill: the acknowledged keys read back, the new ones are all
/// there or none, and a later write works.
fn check_writes(dir: &Path, context: &str, last: usize, new: &[String]) {
    assert_eq!(get(dir, "k0").as_deref(), Some("v0"), "{context}");
    let key = format!("k{last}");
    assert_eq!(get(dir, &key), Some(format!("v{last}")), "{context}");
    let there: Vec<bool> = new.iter().map(|k| get(dir, k).is_some()).collect();
    assert!(
        there.iter().all(|&t| t) || there.iter().all(|&t| !t),
        "{context}: {there:?}"
    );
    let out = hyperdb(&["put", p(dir), "after", "the kill"]);
    ok(&out);
    assert_eq!(get(dir, "after").as_deref(), Some("the kill"), "{context}");
    assert_eq!(get(dir, &key), Some(format!("v{last}")), "{context}");
}

#[test]
fn a_put_killed_at_every_write_loses_nothing_acknowledged() {
    // 16,382 entries: the put's block, 16,383, is marked in two pages.
    let tmp = prepared(16_382);
    let prepared = tmp.path().join("db");
    for durability in ["fsync", "buffered"] {
        let args = ["--durability", durability, "put", "DIR", "new", "value"];
        let kills = at_every_call(&prepared, &args, None, 1, |dir, context| {
            check_writes(dir, context, 16_381, &["new".into()]);
        });
        assert!(kills >= 5, "{kills} kills");
    }
}

#[test]
fn a_batch_across_a_bitfield_page_killed_at_every_write() {
    let tmp = prepared(8_150);
    let prepared = tmp.path().join("db");
    let lines = batch_lines(0..100, "new");
    let new: Vec<String> = (0..100).map(|i| format!("new{i}")).collect();
    let kills = at_every_call(
        &prepared,
        &["batch", "DIR"],
        Some(&lines),
        1,
        |dir, context| {
            // Every command opens the folder.
            ok(&hyperdb(&["info", p(dir)]));
            check_writes(dir, context, 8_149, &new);
        },
    );
    assert!(kills >= 5, "{kills} kills");
}

#[test]
fn init_killed_at_every_write_leaves_no_database_or_a_whole_one() {
    let missing = Path::new("/nonexistent/prepared");
    let kills = at_every_call(missing, &["init", "DIR"], None, 1, |dir, context| {
        let info = hyperdb(&["info", p(dir)]);
        if info.status.success() {
            // A whole database: its writer's header is there.
            let text = String::from_utf8(info.stdout).unwrap();
            assert!(
                text.contains("length 1 (source) (local)"),
                "{context}: {text}"
            );
        } else {
            let err = String::from_utf8_lossy(&info.stderr);
            assert!(err.contains("no hyperdb database here"), "{context}: {err}");
            ok(&hyperdb(&["init", p(dir)]));
        }
        ok(&hyperdb(&["put", p(dir), "a", "1"]));
        assert_eq!(get(dir, "a").as_deref(), Some("1"), "{context}");
        let leftovers = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".new-"))
            .count();
        assert_eq!(leftovers, 0, "{context}: a staging folder left behind");
    });
    assert!(kills >= 10, "{kills} kills");
}

/// A `hyperdb serve` of `dir` on a free port, stopped on drop.
struct Server(std::process::Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> Server {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyperdb"))
        .args([
            "serve",
            p(dir),
            "--listen",
            "127.0.0.1:0",
            "--no-dht",
            "--no-mdns",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    Server(child, addr)
}

#[test]
fn a_sync_killed_at_its_writes_is_completed_by_the_next() {
    // More than a bitfield page of blocks.
    let source = prepared(8_300);
    let source_dir = source.path().join("db");
    let server = serve(&source_dir);
    let info = ok(&hyperdb(&["info", "--json", p(&source_dir)]));
    let key = serde_json::from_str::<serde_json::Value>(&info).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let replica = tempfile::tempdir().unwrap();
    let replica_dir = replica.path().join("db");
    ok(&hyperdb(&["init", p(&replica_dir), "--key", &key]));
    // A sync of 8,300 blocks makes about 1,200 writes and 250 syncs: every
    // 97th of each.
    let kills = at_every_call(
        &replica_dir,
        &["sync", "DIR", &server.1],
        None,
        97,
        |dir, context| {
            ok(&hyperdb(&["info", p(dir)]));
            let out = hyperdb(&["sync", p(dir), &server.1]);
            assert!(
                out.status.success(),
                "{context}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(get(dir, "k8299").as_deref(), Some("v8299"), "{context}");
            assert_eq!(get(dir, "k4000").as_deref(), Some("v4000"), "{context}");
        },
    );
    assert!(kills >= 5, "{kills} kills");
}
