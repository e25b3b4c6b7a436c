//! Test support: drives the pinned JS reference (hyperdb 3.5.0, hypercore 6)
//! installed in the repository's `interop/` folder.
//!
//! Every interop script prints exactly one JSON document on stdout and exits 0
//! on success; on failure it prints the error on stderr and exits 1. Buffers
//! are lowercase hex strings. See the comment header of each script in
//! `interop/` for its arguments and output shape.
//!
//! The interop tests are never skipped: if Node.js or npm is missing, the
//! helpers panic with an explanation.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a single script may run before it is killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for another process's `npm ci` (the install lock).
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// Name of the cross-process install lock file inside `interop/`.
const LOCK_FILE: &str = ".install.lock";

/// Absolute path of the repository's interop/ folder (found from CARGO_MANIFEST_DIR of this crate: ../../interop).
pub fn interop_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .expect("testkit's CARGO_MANIFEST_DIR has no grandparent")
        .join("interop")
}

/// Makes sure the JS reference is installed: checks that `node` and `npm` are on PATH (if not: panic with a message saying Node.js 20 and npm are needed for the interop tests, which are never skipped), and if interop/node_modules/hyperdb/package.json is missing runs `npm ci --no-audit --no-fund` in interop/. Must be safe when many test threads and several test processes call it at once: take an exclusive lock (create interop/.install.lock with create_new, retry with sleeps up to 10 minutes, remove it when done; also use a std::sync::Once/OnceLock within the process) and re-check after taking the lock.
pub fn ensure_reference() {
    static DONE: OnceLock<()> = OnceLock::new();
    static IN_PROCESS: Mutex<()> = Mutex::new(());

    if DONE.get().is_some() {
        return;
    }
    // Serialise the threads of this process; a panic in a previous attempt
    // (poisoning) must not hide the real error from later callers, so each
    // caller retries and panics with its own message.
    let _guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    if DONE.get().is_some() {
        return;
    }

    for tool in ["node", "npm"] {
        if find_on_path(tool).is_none() {
            panic!(
                "`{tool}` was not found on PATH. Node.js 20 and npm are needed for the interop \
                 tests against the JS reference (hyperdb 3.5.0 in {}); these tests are never \
                 skipped. Install Node.js 20 (which includes npm) and re-run.",
                interop_dir().display()
            );
        }
    }

    let dir = interop_dir();
    if !reference_installed(&dir) {
        let _lock = InstallLock::acquire(&dir);
        // Another process may have installed it while we waited for the lock.
        if !reference_installed(&dir) {
            run_npm_ci(&dir);
            if !reference_installed(&dir) {
                panic!(
                    "`npm ci` succeeded in {} but a package of package.json is still missing from node_modules",
                    dir.display()
                );
            }
        }
    }

    let _ = DONE.set(());
}

/// Runs `node <interop/script> args...` with cwd interop/, after ensure_reference(). Panics (with the script name, args, exit status and stderr) on non-zero exit or if it runs longer than 120 s (kill it). Returns stdout parsed as JSON.
pub fn node(script: &str, args: &[&str]) -> serde_json::Value {
    match run(script, args) {
        Ok(v) => v,
        Err((status, stderr)) => panic!(
            "interop script failed ({status}): node {script} {args:?}\n--- stderr ---\n{stderr}"
        ),
    }
}

/// Like `node` but returns Err(stderr) instead of panicking when the script exits non-zero (still panics on timeout or spawn failure).
///
/// The Err string is the script's stderr exactly (the interop scripts print
/// their error there). A script that exits 0 but does not print valid JSON
/// makes this function panic.
pub fn try_node(script: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    run(script, args).map_err(|(_, stderr)| stderr)
}

/// Shared body of [`node`] and [`try_node`]: runs the script and returns its
/// parsed stdout, or its exit status and stderr when it exits non-zero.
fn run(script: &str, args: &[&str]) -> Result<serde_json::Value, (ExitStatus, String)> {
    ensure_reference();
    let dir = interop_dir();
    if !dir.join(script).is_file() {
        panic!(
            "interop script {} does not exist",
            dir.join(script).display()
        );
    }

    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to spawn `node {script}` in {}: {e}", dir.display()));

    let stdout = read_in_thread(child.stdout.take().expect("piped stdout"));
    let stderr = read_in_thread(child.stderr.take().expect("piped stderr"));

    let status = wait_with_timeout(&mut child, SCRIPT_TIMEOUT);
    let stdout = join_reader(stdout);
    let stderr = join_reader(stderr);

    let status = match status {
        Some(status) => status,
        None => panic!(
            "interop script timed out after {} s and was killed: node {script} {args:?}\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            SCRIPT_TIMEOUT.as_secs()
        ),
    };

    if !status.success() {
        return Err((status, stderr));
    }

    match serde_json::from_str::<serde_json::Value>(&stdout) {
        Ok(value) => Ok(value),
        Err(e) => panic!(
            "interop script printed invalid JSON ({e}): node {script} {args:?}\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        ),
    }
}

/// Whether the JS reference is installed in `dir` (the interop folder).
fn reference_installed(dir: &Path) -> bool {
    // Every package `interop/package.json` names: an install made before
    // one was added is made again.
    ["hyperdb", "hyperdiscovery"].iter().all(|name| {
        dir.join("node_modules")
            .join(name)
            .join("package.json")
            .is_file()
    })
}

/// Finds an executable called `name` on PATH (also trying the usual Windows
/// extensions).
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let exts: &[&str] = if cfg!(windows) {
        &["", ".exe", ".cmd", ".bat"][..]
    } else {
        &[""][..]
    };
    std::env::split_paths(&path).find_map(|d| {
        exts.iter()
            .map(|ext| d.join(format!("{name}{ext}")))
            .find(|p| p.is_file())
    })
}

/// Runs `npm ci --no-audit --no-fund` in `dir`, panicking with its output on
/// failure.
fn run_npm_ci(dir: &Path) {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let out = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run `npm ci` in {}: {e}", dir.display()));
    if !out.status.success() {
        panic!(
            "`npm ci --no-audit --no-fund` failed in {} ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The cross-process install lock: the file `interop/.install.lock`, created
/// exclusively and removed on drop.
struct InstallLock {
    path: PathBuf,
}

impl InstallLock {
    /// Takes the lock, retrying for up to [`LOCK_TIMEOUT`].
    fn acquire(dir: &Path) -> InstallLock {
        let path = dir.join(LOCK_FILE);
        let start = Instant::now();
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return InstallLock { path };
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if start.elapsed() > LOCK_TIMEOUT {
                        panic!(
                            "timed out after {} s waiting for {} (another process installing \
                             the JS reference?). If no install is running, delete the file.",
                            LOCK_TIMEOUT.as_secs(),
                            path.display()
                        );
                    }
                    thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("cannot create lock file {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Reads a pipe to the end on a separate thread (so that neither pipe can
/// fill up and block the child).
fn read_in_thread<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Collects a reader thread's output as (lossy) UTF-8.
fn join_reader(handle: JoinHandle<Vec<u8>>) -> String {
    let bytes = handle.join().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Waits for the child for at most `timeout`, polling `try_wait`. On timeout
/// the child is killed (and reaped) and `None` is returned.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("failed to wait for the node process: {e}"),
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A JS reference script running in the background (a server, say): its
/// first stdout line is read as JSON; closing its stdin tells it to finish.
pub struct NodeProcess {
    child: Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    script: String,
}

impl NodeProcess {
    /// Starts `node <interop/script> args...` with piped stdin and stdout.
    pub fn spawn(script: &str, args: &[&str]) -> NodeProcess {
        ensure_reference();
        let dir = interop_dir();
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start node {script}: {e}"));
        let stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        NodeProcess {
            child,
            stdout,
            script: script.to_string(),
        }
    }

    /// Reads the next line of stdout as JSON (panics after 60 s or at EOF).
    pub fn read_json(&mut self) -> serde_json::Value {
        use std::io::BufRead;
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{}: reading stdout failed: {e}", self.script));
        assert!(n > 0, "{} ended without printing a line", self.script);
        serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("{} printed invalid JSON {line:?}: {e}", self.script))
    }

    /// Sends one line to the script's stdin and reads its one-line answer.
    pub fn command(&mut self, command: &serde_json::Value) -> serde_json::Value {
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("write to node");
        stdin.flush().expect("flush to node");
        self.read_json()
    }

    /// Closes stdin, waits for the script to end and returns its last line.
    pub fn finish(mut self) -> serde_json::Value {
        drop(self.child.stdin.take());
        let value = self.read_json();
        let status = self.child.wait().expect("wait for node");
        assert!(status.success(), "{} failed: {status}", self.script);
        value
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
