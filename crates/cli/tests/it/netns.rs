//! Networks for tests: a namespace of the test's own, or several hosts
//! (a namespace each) on a bridge whose links can be cut, and `hyperdb`
//! processes running in them. Making namespaces needs root
//! (CAP_SYS_ADMIN): CI runs as root; elsewhere the tests that need them
//! fail saying so rather than being skipped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Runs `f` on a thread in a new network namespace with loopback up: the
/// processes it starts live there.
pub fn in_own_network<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: only the network namespace is unshared, which changes
            // no file descriptor, memory or credential this thread shares.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .unwrap_or_else(|e| {
                    panic!(
                        "making a network namespace failed ({e}): these tests need root \
                     (CAP_SYS_ADMIN) to keep multicast and the DHT off the real network"
                    )
                });
            let up = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("run `ip` (iproute2)");
            assert!(up.success(), "ip link set lo up");
            f()
        })
        .join()
        .expect("the test thread")
    })
}

/// A background `hyperdb` (a serve), killed when dropped, with the lines
/// it writes to stderr.
pub struct Background(pub Child, Receiver<String>);

impl Background {
    pub fn start(args: &[&str]) -> Background {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hyperdb"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background(child, rx)
    }

    /// Waits (20 s at most) for a stderr line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.1.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?} on stderr; saw {seen:#?}");
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Hosts on one network: a network namespace each, joined by a bridge in
/// a namespace of its own (veth pairs), host `i` at 10.77.0.`i`/24 with a
/// route for multicast. Deleted when dropped.
pub struct Hosts {
    names: Vec<String>,
    switch: String,
}

impl Hosts {
    pub fn new(count: usize) -> Hosts {
        // Unique among this process's networks and other processes' (two
        // tests may make networks at once); short, as interface names are.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let tag = std::process::id() % 100_000 * 10 + made;
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run `ip`");
            assert!(
                out.status.success(),
                "ip {args:?}: {} (these tests need root to make network namespaces)",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let switch = format!("hdbt{tag}-sw");
        let hosts = Hosts {
            names: (1..=count).map(|i| format!("hdbt{tag}-h{i}")).collect(),
            switch: switch.clone(),
        };
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for (i, name) in hosts.names.iter().enumerate() {
            let i = i + 1;
            let (inside, outside) = (format!("hd{tag}h{i}"), format!("hd{tag}p{i}"));
            ip(&["netns", "add", name]);
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &outside,
            ]);
            ip(&["link", "set", &inside, "netns", name]);
            ip(&["link", "set", &outside, "netns", &switch]);
            ip(&[
                "-n", &switch, "link", "set", &outside, "master", "br0", "up",
            ]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
            let addr = format!("10.77.0.{i}/24");
            ip(&["-n", name, "addr", "add", &addr, "dev", &inside]);
            ip(&["-n", name, "link", "set", &inside, "up"]);
            ip(&["-n", name, "route", "add", "224.0.0.0/4", "dev", &inside]);
        }
        hosts
    }

    /// Host `i`'s (from 1) link to the bridge goes down (`up` false: the
    /// host is cut off, its connections stall) or comes back.
    pub fn set_link(&self, i: usize, up: bool) {
        let tag = self
            .switch
            .trim_end_matches("-sw")
            .trim_start_matches("hdbt");
        let outside = format!("hd{tag}p{i}");
        let state = if up { "up" } else { "down" };
        let out = Command::new("ip")
            .args(["-n", &self.switch, "link", "set", &outside, state])
            .output()
            .expect("run `ip`");
        assert!(out.status.success(), "ip link set {outside} {state}");
    }

    /// Runs `f` on host `i` (from 1): what it starts lives there.
    pub fn on<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        let path = self.namespace(i);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&path);
                f()
            })
            .join()
            .expect("the host's thread")
        })
    }

    /// Starts `f` on a thread of its own on host `i` (from 1), for what
    /// runs there until the test stops it (a proxy, say).
    pub fn spawn_on<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = self.namespace(i);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }

    fn namespace(&self, i: usize) -> String {
        format!("/var/run/netns/{}", self.names[i - 1])
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) {
    let ns = std::fs::File::open(path).expect("the namespace");
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&ns),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .expect("enter the namespace");
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for name in self.names.iter().chain([&self.switch]) {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
