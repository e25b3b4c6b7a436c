//! Faults across hosts, with the real binary: three hosts on a bridge
//! (network namespaces), a replica with a writer of its own on each, all
//! replicating live through the owner's `serve` on host 1. While they run,
//! every host is killed (SIGKILL, mid-replication) and writes between
//! restarts; host 2's link goes down and up (a partition); host 3 reaches
//! host 1 only through a proxy that delays, chops, stalls and cuts its
//! connections. Once the network heals, every host must hold every write
//! that `hyperdb put` acknowledged, the same answers everywhere, and only
//! blocks that check against their hashes.
//!
//! The faults come from a seeded generator: a failure prints the seed,
//! and `HYPERDB_FAULT_SEED=N` replays the same schedule (the timing of the
//! processes still varies from run to run).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::Hosts;
use crate::support::{hyperdb, json, ok, p};

/// A small generator (xorshift64*) for the fault schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the proxy does to the bytes it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Forwards as it reads.
    Pass,
    /// Waits 20 ms before forwarding each read.
    Delay,
    /// Forwards in pieces of 1 to 7 bytes, so frames arrive cut anywhere.
    Chop,
    /// Holds everything (the connection stays open, nothing moves).
    Stall,
}

/// A TCP proxy with faults: each connection to `listen` is forwarded to
/// `upstream`, with the bytes treated as `mode` says; `cut` closes every
/// connection open now.
struct Proxy {
    mode: Arc<Mutex<Mode>>,
    /// Bumped to cut: a pump that sees a newer generation than its own
    /// closes both sockets.
    generation: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    port: u16,
    /// Connections made, cuts, bytes forwarded.
    stats: Arc<Mutex<(u64, u64, u64)>>,
}

impl Proxy {
    /// Starts the proxy on host `host`, listening on loopback there.
    fn start(hosts: &Hosts, host: usize, upstream: &str) -> Proxy {
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let generation = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new((0, 0, 0)));
        let (tx, rx) = std::sync::mpsc::channel();
        let upstream = upstream.to_string();
        {
            let (mode, generation, stop, stats) = (
                mode.clone(),
                generation.clone(),
                stop.clone(),
                stats.clone(),
            );
            hosts.spawn_on(host, move || {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let Ok(server) = TcpStream::connect_timeout(
                        &upstream.parse().unwrap(),
                        Duration::from_secs(1),
                    ) else {
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    stats.lock().unwrap().0 += 1;
                    let born = generation.load(Ordering::SeqCst);
                    for (from, to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let (mode, generation, stop, stats) = (
                            mode.clone(),
                            generation.clone(),
                            stop.clone(),
                            stats.clone(),
                        );
                        std::thread::spawn(move || {
                            pump(from, to, born, &mode, &generation, &stop, &stats)
                        });
                    }
                }
            });
        }
        let port = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Proxy {
            mode,
            generation,
            stop,
            port,
            stats,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn cut(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.stats.lock().unwrap().1 += 1;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// Forwards `from` to `to` until either closes, the proxy cuts the
/// connection or stops.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    born: u64,
    mode: &Mutex<Mode>,
    generation: &AtomicU64,
    stop: &AtomicBool,
    stats: &Mutex<(u64, u64, u64)>,
) {
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut rng = Rng(born.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut buf = vec![0u8; 16 * 1024];
    let alive = || generation.load(Ordering::SeqCst) == born && !stop.load(Ordering::Relaxed);
    'outer: while alive() {
        if *mode.lock().unwrap() == Mode::Stall {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            while *mode.lock().unwrap() == Mode::Stall {
                if !alive() {
                    break 'outer;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let piece = match *mode.lock().unwrap() {
                Mode::Chop => rest.len().min(1 + rng.below(7) as usize),
                Mode::Delay => {
                    std::thread::sleep(Duration::from_millis(20));
                    rest.len()
                }
                _ => rest.len(),
            };
            if !alive() || to.write_all(&rest[..piece]).is_err() {
                break 'outer;
            }
            stats.lock().unwrap().2 += piece as u64;
            rest = &rest[piece..];
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A `hyperdb` process on a host, started again whenever it has ended.
struct Supervised {
    host: usize,
    args: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl Supervised {
    fn new(host: usize, args: &[&str]) -> Supervised {
        Supervised {
            host,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
            starts: 0,
        }
    }

    /// Starts the process if it is not running.
    fn ensure(&mut self, hosts: &Hosts) {
        if let Some(child) = &mut self.child {
            if child.try_wait().unwrap().is_none() {
                return;
            }
        }
        let args = self.args.clone();
        self.child = Some(hosts.on(self.host, move || {
            Command::new(env!("CARGO_BIN_EXE_hyperdb"))
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        }));
        self.starts += 1;
    }

    /// Kills the process (SIGKILL: whatever it was writing is cut short).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every key on the replica in `dir` with its values, sorted.
fn listing(dir: &Path) -> Vec<(String, Value)> {
    let out = hyperdb(&["ls", p(dir), "--json"]);
    let mut keys: Vec<(String, Value)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["key"].as_str().unwrap_or("").to_string(),
                v["values"].clone(),
            )
        })
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys
}

#[test]
fn hosts_converge_after_partitions_crashes_and_a_faulty_link() {
    let seed: u64 = std::env::var("HYPERDB_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fault schedule seed: {seed} (HYPERDB_FAULT_SEED={seed} replays it)");
    let mut rng = Rng(seed | 1);
    let hosts = Hosts::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| tmp.path().join(format!("host{i}")))
        .collect();
    let created = json(&hyperdb(&["init", p(&dirs[0]), "--json"]));
    let key = created["key"].as_str().unwrap().to_string();
    for dir in &dirs[1..] {
        let replica = json(&hyperdb(&["init", p(dir), "--key", &key, "--json"]));
        let local = replica["local_key"].as_str().unwrap();
        ok(&hyperdb(&["authorize", p(&dirs[0]), local]));
    }

    let proxy = Proxy::start(&hosts, 3, "10.77.0.1:3282");
    let via_proxy = format!("127.0.0.1:{}", proxy.port);
    let mut nodes = [
        Supervised::new(
            1,
            &[
                "serve",
                p(&dirs[0]),
                "--listen",
                "10.77.0.1:3282",
                "--live",
                "--no-dht",
                "--no-mdns",
            ],
        ),
        Supervised::new(2, &["sync", p(&dirs[1]), "10.77.0.1:3282", "--live"]),
        Supervised::new(3, &["sync", p(&dirs[2]), &via_proxy, "--live"]),
    ];
    for node in &mut nodes {
        node.ensure(&hosts);
    }

    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let (mut partitions, mut modes, mut crashes) = (0, 0, 0);
    for round in 0..12 {
        // Each host in turn is killed mid-replication, writes, and comes
        // back; the others' sessions with it break and start again.
        for (i, node) in nodes.iter_mut().enumerate() {
            node.kill();
            crashes += 1;
            let (k, v) = (format!("host{}/round{round}", i + 1), format!("v{round}"));
            ok(&hyperdb(&["put", p(&dirs[i]), &k, &v]));
            acknowledged.push((k, v));
            node.ensure(&hosts);
        }
        // Host 2 is cut off in about a third of the rounds.
        let cut_off = rng.below(3) == 0;
        partitions += u32::from(cut_off);
        hosts.set_link(2, !cut_off);
        let mode = [Mode::Pass, Mode::Delay, Mode::Chop, Mode::Stall][rng.below(4) as usize];
        modes += u32::from(mode != Mode::Pass);
        proxy.set(mode);
        if rng.below(3) == 0 {
            proxy.cut();
        }
        let until = Instant::now() + Duration::from_millis(300 + rng.below(700));
        while Instant::now() < until {
            for node in &mut nodes {
                node.ensure(&hosts);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // Healed: every host must come to hold every acknowledged write.
    hosts.set_link(2, true);
    proxy.set(Mode::Pass);
    let want: Vec<(String, Value)> = {
        let mut all: Vec<(String, Value)> = acknowledged
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!([v])))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for node in &mut nodes {
            node.ensure(&hosts);
        }
        let got: Vec<_> = dirs.iter().map(|d| listing(d)).collect();
        if got.iter().all(|g| *g == want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: after healing, the hosts did not converge on the {} acknowledged \
             writes; they hold {:?} keys",
            want.len(),
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for node in &mut nodes {
        node.kill();
    }
    // Nothing unverified was stored: every block checks against its hash,
    // and each host still answers the same.
    for dir in &dirs {
        let repaired = hyperdb(&["repair", p(dir)]);
        let said = ok(&repaired);
        assert!(
            !said.contains("damaged") && !said.contains("marked"),
            "seed {seed}: {said}"
        );
        assert_eq!(listing(dir), want, "seed {seed}");
    }
    let (connections, cuts, bytes) = *proxy.stats.lock().unwrap();
    eprintln!(
        "seed {seed}: {} writes on 3 hosts converged after {crashes} crashes, {partitions} \
         partitions, {modes} rounds of a faulty link ({connections} proxied connections, \
         {cuts} cut, {bytes} bytes); processes started {:?} times",
        want.len(),
        nodes.iter().map(|n| n.starts).collect::<Vec<_>>()
    );
    assert!(connections > 0 && bytes > 0, "the proxy carried nothing");
}
