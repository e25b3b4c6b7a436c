//! Finding peers by the database key: `hyperdb serve` and `hyperdb sync`
//! without addresses, with JS peers on hyperdiscovery 8 and with each other,
//! by multicast DNS alone and by the DHT alone (a JS bittorrent-dht node on
//! loopback as the bootstrap).
//!
//! Every test runs in a network namespace of its own (made with
//! `unshare(CLONE_NEWNET)` on a thread of its own, loopback up), so
//! multicast and the DHT never leave it and tests do not hear each other.
//! Making one needs root (CAP_SYS_ADMIN): CI runs as root; elsewhere these
//! tests fail saying so rather than being skipped.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::NodeProcess;

use crate::netns::{in_own_network, Background, Hosts};
use crate::support::{hyperdb, ok, p};

/// A JS peer on hyperdiscovery 8 with `args` (see interop/swarm-peer.js),
/// and the first line it printed.
fn js_peer(dir: &Path, args: &[&str]) -> (NodeProcess, Value) {
    let mut all = vec![p(dir)];
    all.extend_from_slice(args);
    let mut js = NodeProcess::spawn("swarm-peer.js", &all);
    let hello = js.read_json();
    (js, hello)
}

/// A JS DHT node on loopback (the bootstrap) and its address.
fn dht_node() -> (NodeProcess, String) {
    let mut node = NodeProcess::spawn("dht-node.js", &[]);
    let port = node.read_json()["port"].as_u64().unwrap();
    (node, format!("127.0.0.1:{port}"))
}

/// Asks the JS peer for `key` until it gives `want` (20 s at most).
fn js_eventually_gets(js: &mut NodeProcess, key: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = js.command(&json!({ "get": key }));
        if got["values"] == json!(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the JS peer has {got} for {key}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn values(dir: &Path, key: &str) -> String {
    ok(&hyperdb(&["get", p(dir), key]))
}

/// The database key of the folder `dir`.
fn db_key(dir: &Path) -> String {
    let info = ok(&hyperdb(&["info", p(dir)]));
    info.lines()
        .find_map(|l| l.strip_prefix("db key:"))
        .expect("a db key line")
        .trim()
        .to_string()
}

fn sync_found(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["sync", p(dir), "--timeout", "20"];
    all.extend_from_slice(args);
    hyperdb(&all)
}

/// Rust finds a JS peer and a JS peer finds Rust, by one mechanism
/// (`rust_flags` for the Rust side, `js_flags` for the JS side), and the
/// data goes both ways: a Rust owner that authorized a JS replica's
/// writer finds it with a one-shot `sync`, then a new JS replica finds a
/// `serve` of the owner.
fn rust_and_js_find_each_other(rust_flags: &[&str], js_flags: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (rust, js_dir, js2_dir) = (
        tmp.path().join("rust"),
        tmp.path().join("js"),
        tmp.path().join("js2"),
    );
    ok(&hyperdb(&["init", p(&rust)]));
    ok(&hyperdb(&["put", p(&rust), "from/rust", "rust"]));
    let rust_key = db_key(&rust);

    // A JS replica of the Rust database whose writer Rust authorizes.
    let mut args = vec!["--key", rust_key.as_str()];
    args.extend_from_slice(js_flags);
    let (mut js, hello) = js_peer(&js_dir, &args);
    let js_local = hello["localKey"].as_str().unwrap().to_string();
    ok(&hyperdb(&["authorize", p(&rust), &js_local]));
    js.command(&json!({"put": {"key": "from/js", "value": "js"}}));

    // Rust finds the JS peer: the sync sends the authorization and the
    // Rust write, and fetches the JS write.
    let out = sync_found(&rust, rust_flags);
    let printed = ok(&out);
    assert!(printed.contains("found via"), "{printed}");
    assert_eq!(
        values(&rust, "from/js").trim(),
        "js",
        "the JS write arrived"
    );
    js_eventually_gets(&mut js, "from/rust", &["rust"]);
    drop(js);

    // A JS peer finds a Rust serve, and gets everything.
    let mut serve_args = vec!["serve", p(&rust)];
    serve_args.extend_from_slice(rust_flags);
    let serve = Background::start(&serve_args);
    if rust_flags.contains(&"--no-mdns") {
        // The JS peer looks up once as it joins: announce first.
        serve.wait_for("announced on the DHT");
    }
    let mut args = vec!["--key", rust_key.as_str()];
    args.extend_from_slice(js_flags);
    let (mut js2, _) = js_peer(&js2_dir, &args);
    js_eventually_gets(&mut js2, "from/rust", &["rust"]);
    js_eventually_gets(&mut js2, "from/js", &["js"]);
    let seen = js2.command(&json!({"connections": true}));
    assert!(
        seen["found"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().ends_with(":3282")),
        "the JS peer found the serve on port 3282: {seen}"
    );
    drop(serve);
}

#[test]
fn rust_and_js_find_each_other_by_multicast_dns_alone() {
    in_own_network(|| rust_and_js_find_each_other(&["--no-dht"], &["--mdns"]));
}

#[test]
fn rust_and_js_find_each_other_by_the_dht_alone() {
    in_own_network(|| {
        let (_node, bootstrap) = dht_node();
        rust_and_js_find_each_other(
            &["--no-mdns", "--bootstrap", &bootstrap],
            &["--dht-bootstrap", &bootstrap],
        )
    });
}

/// Two Rust replicas find each other, by each mechanism alone.
#[test]
fn rust_finds_rust_by_either_mechanism() {
    in_own_network(|| {
        let (_node, bootstrap) = dht_node();
        let tmp = tempfile::tempdir().unwrap();
        let owner = tmp.path().join("owner");
        ok(&hyperdb(&["init", p(&owner)]));
        ok(&hyperdb(&["put", p(&owner), "hello", "world"]));
        let key = db_key(&owner);
        for (name, flags) in [
            ("mdns", vec!["--no-dht"]),
            ("dht", vec!["--no-mdns", "--bootstrap", bootstrap.as_str()]),
        ] {
            let mut args = vec!["serve", p(&owner)];
            args.extend_from_slice(&flags);
            let serve = Background::start(&args);
            if name == "dht" {
                serve.wait_for("announced on the DHT");
            }
            let replica = tmp.path().join(name);
            ok(&hyperdb(&["init", p(&replica), "--key", &key]));
            let printed = ok(&sync_found(&replica, &flags));
            assert!(printed.contains(":3282 (found via"), "{name}: {printed}");
            assert_eq!(values(&replica, "hello").trim(), "world", "{name}");
            drop(serve);
        }
    });
}

/// With nobody to find, sync gives up after its timeout and says what to
/// check.
#[test]
fn a_sync_that_finds_nobody_says_so() {
    in_own_network(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("alone");
        ok(&hyperdb(&["init", p(&dir)]));
        let started = Instant::now();
        let out = hyperdb(&["sync", p(&dir), "--no-dht", "--timeout", "2"]);
        assert_eq!(out.status.code(), Some(3));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no peer found within 2 s"), "{err}");
        assert!(err.contains("hyperdb sync DIR HOST:PORT"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(15));
        let out = hyperdb(&["sync", p(&dir), "--no-dht", "--no-mdns"]);
        assert_eq!(out.status.code(), Some(2), "nothing to find peers with");
    });
}

/// Three hosts on a bridge: a Rust `serve` of the owner on the first, a
/// JS writer on the second, and on the third a `sync` into a new folder
/// that knows only the database key. The sync finds both (by multicast
/// DNS across the bridge, then by the DHT alone) and ends with both
/// writers' data.
#[test]
fn three_hosts_on_a_bridge_converge() {
    let hosts = Hosts::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let owner = tmp.path().join("owner");
    ok(&hyperdb(&["init", p(&owner)]));
    ok(&hyperdb(&["put", p(&owner), "from/owner", "a"]));
    let key = db_key(&owner);
    let (_dht, bootstrap) = hosts.on(2, || {
        let mut node = NodeProcess::spawn("dht-node.js", &["10.77.0.2"]);
        let port = node.read_json()["port"].as_u64().unwrap();
        (node, format!("10.77.0.2:{port}"))
    });
    for (round, rust_flags, js_flags) in [
        ("mdns", vec!["--no-dht"], vec!["--mdns"]),
        (
            "dht",
            vec!["--no-mdns", "--bootstrap", bootstrap.as_str()],
            vec!["--dht-bootstrap", bootstrap.as_str()],
        ),
    ] {
        // A JS replica whose writer the owner authorizes (before serving:
        // serve holds the owner's folder).
        let js_dir = tmp.path().join(format!("js-{round}"));
        let mut js_args = vec!["--key", key.as_str()];
        js_args.extend_from_slice(&js_flags);
        let (mut js, hello) = hosts.on(2, || js_peer(&js_dir, &js_args));
        let js_local = hello["localKey"].as_str().unwrap().to_string();
        ok(&hyperdb(&["authorize", p(&owner), &js_local]));
        let js_key = format!("from/js-{round}");
        js.command(&json!({"put": {"key": js_key, "value": "b"}}));

        let mut args = vec!["serve", p(&owner)];
        args.extend_from_slice(&rust_flags);
        let serve = hosts.on(1, || Background::start(&args));
        // The serve and the JS peer find each other and replicate live.
        js_eventually_gets(&mut js, "from/owner", &["a"]);

        let replica = tmp.path().join(format!("replica-{round}"));
        ok(&hyperdb(&["init", p(&replica), "--key", &key]));
        let out = hosts.on(3, || sync_found(&replica, &rust_flags));
        let printed = ok(&out);
        assert!(
            printed.contains("10.77.0.1:3282 (found via"),
            "{round}: the serve on host 1 was found: {printed}"
        );
        assert!(
            printed.contains("10.77.0.2:"),
            "{round}: the JS peer on host 2 was found: {printed}"
        );
        assert_eq!(values(&replica, "from/owner").trim(), "a", "{round}");
        let got = hyperdb(&["get", p(&replica), &js_key]);
        assert_eq!(
            String::from_utf8_lossy(&got.stdout).trim(),
            "b",
            "{round}: the JS writer's write arrived: {printed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop((serve, js));
    }
}

/// When multicast DNS cannot start (port 5353 held by a program that did
/// not share it), a serve runs on with the DHT and says why; a sync that
/// has nothing else to find peers with says so.
#[test]
fn a_mechanism_that_cannot_start_is_reported_and_the_other_goes_on() {
    in_own_network(|| {
        let _hog = std::net::UdpSocket::bind("0.0.0.0:5353").expect("take port 5353");
        let (_node, bootstrap) = dht_node();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("db");
        ok(&hyperdb(&["init", p(&dir)]));
        let serve = Background::start(&["serve", p(&dir), "--bootstrap", &bootstrap]);
        let line = serve.wait_for("multicast DNS could not start");
        assert!(line.contains("5353"), "{line}");
        serve.wait_for("announced on the DHT");
        drop(serve);
        let out = hyperdb(&["sync", p(&dir), "--no-dht", "--timeout", "2"]);
        assert_eq!(out.status.code(), Some(3));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("multicast DNS could not start"), "{err}");
        assert!(
            err.contains("--no-mdns"),
            "the hint names the way out: {err}"
        );
    });
}
