//! `hyperdb demo`, `hyperdb feeds` and `hyperdb explore` show what the
//! seed describes.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{hyperdb, ok};

/// One entry of the printout: its header line and its fields.
#[derive(Debug)]
struct Entry {
    header: String,
    fields: Vec<String>,
}

impl Entry {
    fn field(&self, name: &str) -> String {
        self.fields
            .iter()
            .find_map(|f| f.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
    }
}

/// Feeds of one database section: (feed header line, entries).
fn parse_section(text: &str) -> Vec<(String, Vec<Entry>)> {
    let mut feeds: Vec<(String, Vec<Entry>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("feed ") {
            feeds.push((line.to_string(), Vec::new()));
        } else if let Some((_, entries)) = feeds.last_mut() {
            if line.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                entries.push(Entry {
                    header: line.to_string(),
                    fields: Vec::new(),
                });
            } else if let (Some(entry), Some(field)) = (entries.last_mut(), line.strip_prefix("  "))
            {
                entry.fields.push(field.to_string());
            }
        }
    }
    feeds
}

fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("===== {name} ====="))
        .unwrap_or_else(|| panic!("no section {name}"));
    let rest = &text[start + 1..];
    let end = rest
        .find("\n=====")
        .map(|i| i + start + 1)
        .unwrap_or(text.len());
    &text[start..end]
}

/// The facts of the seed's example, in one database's printout.
fn check_seed_facts(text: &str) {
    let feeds = parse_section(text);
    assert!(text.contains("feeds: 2"), "{text}");
    assert_eq!(feeds.len(), 2, "two feeds");
    let (_, db1_entries) = &feeds[0];
    assert_eq!(db1_entries.len(), 3, "three entries in db1's source feed");
    assert_eq!(db1_entries[0].field("key"), "example/first");
    assert_eq!(db1_entries[0].field("clock"), "[2]");
    assert_eq!(db1_entries[1].field("key"), "example/second");
    assert_eq!(db1_entries[1].field("clock"), "[3]");
    let third = &db1_entries[2];
    assert!(third.header.contains("inflate entry"), "{third:?}");
    assert_eq!(third.field("clock"), "[4, 0]");
    assert_eq!(third.field("value"), "null");
    assert_eq!(
        third
            .fields
            .iter()
            .filter(|f| f.trim_start().starts_with("- "))
            .count(),
        2,
        "lists both feeds"
    );
    let (_, db2_entries) = &feeds[1];
    assert_eq!(db2_entries.len(), 2);
    assert_eq!(db2_entries[0].field("key"), "example/third");
    assert_eq!(db2_entries[0].field("clock"), "[0, 2]");
    assert_eq!(db2_entries[1].field("key"), "example/second");
    assert_eq!(db2_entries[1].field("clock"), "[0, 3]");
}

#[test]
fn the_demo_prints_the_seeds_example() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let text = ok(&hyperdb(&["demo", "--dir", dir.to_str().unwrap()]));
    assert!(!text.contains("\x1b["), "no colours when piped");
    for name in ["db 1", "db 2"] {
        let part = section(&text, name);
        check_seed_facts(part);
    }
    assert!(section(&text, "db 1")
        .lines()
        .any(|l| l.starts_with("feed 0") && l.contains("(source) (local)")));
    assert!(section(&text, "db 2")
        .lines()
        .any(|l| l.starts_with("feed 1") && l.contains("(local)")));
    let table = text
        .lines()
        .find(|l| l.starts_with("example/second"))
        .expect("table row");
    assert!(
        table.contains("db1 was here")
            && table.contains("db2 was here")
            && table.contains("conflict"),
        "{table}"
    );
    // The folders stay for the other commands.
    let got = ok(&hyperdb(&[
        "get",
        dir.join("db1").to_str().unwrap(),
        "example/second",
    ]));
    assert_eq!(got.lines().count(), 2);
    let again = hyperdb(&["demo", "--dir", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(3), "does not overwrite a demo");
}

#[test]
fn feeds_prints_a_folder_written_by_the_js_reference() {
    let tmp = tempfile::tempdir().unwrap();
    testkit::node("db-seed-example.js", &[tmp.path().to_str().unwrap()]);
    for db in ["db1", "db2"] {
        let dir = tmp.path().join(db);
        let text = ok(&hyperdb(&["feeds", dir.to_str().unwrap()]));
        check_seed_facts(&text);
        let row = text
            .lines()
            .find(|l| l.starts_with("example/second"))
            .expect("table row");
        assert!(row.contains("conflict"), "{row}");
    }
}

/// Runs `hyperdb explore` in a pseudo-terminal and reads its screen.
struct Tui {
    writer: Box<dyn Write + Send>,
    screen: std::sync::Arc<std::sync::Mutex<vt100::Parser>>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Tui {
    fn start(dir: &Path) -> Tui {
        let pty = portable_pty::native_pty_system()
            .openpty(portable_pty::PtySize {
                rows: 24,
                cols: 100,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = portable_pty::CommandBuilder::new(env!("CARGO_BIN_EXE_hyperdb"));
        cmd.args(["explore", dir.to_str().unwrap()]);
        cmd.env("TERM", "xterm-256color");
        let child = pty.slave.spawn_command(cmd).unwrap();
        let mut reader = pty.master.try_clone_reader().unwrap();
        let writer = pty.master.take_writer().unwrap();
        let screen = std::sync::Arc::new(std::sync::Mutex::new(vt100::Parser::new(24, 100, 0)));
        let feed = screen.clone();
        std::thread::spawn(move || {
            let _keep = pty.master;
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().unwrap().process(&buf[..n]);
            }
        });
        Tui {
            writer,
            screen,
            child,
        }
    }

    fn send(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits until the screen contains every needle.
    fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.screen.lock().unwrap().screen().contents();
            if needles.iter().all(|n| text.contains(n)) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {needles:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn the_explorer_lists_filters_and_shows_the_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    ok(&hyperdb(&["demo", "--dir", dir.to_str().unwrap()]));
    let mut tui = Tui::start(&dir.join("db1"));
    let text = tui.wait_for(&["example/first", "example/second", "example/third", "3 keys"]);
    assert!(text.contains("(2 values)"), "{text}");
    tui.send("sec");
    let text = tui.wait_for(&["1 of 3 keys"]);
    assert!(
        !text.contains("example/first"),
        "typing narrows the list:\n{text}"
    );
    tui.send("\r");
    let text = tui.wait_for(&[
        "conflict: 2 concurrent values",
        "db1 was here",
        "db2 was here",
    ]);
    assert!(text.contains("seq: 2"), "{text}");
    tui.send("\r");
    tui.wait_for(&["1 of 3 keys"]);
    tui.send("\x03");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = tui.child.try_wait().unwrap() {
            assert!(status.success(), "Ctrl-C quits cleanly");
            break;
        }
        assert!(Instant::now() < deadline, "Ctrl-C did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
}
