#!/usr/bin/env python3
"""Time from `hyperdb sync` to the first block, peers found by the key.

Usage: scripts/bench-discovery.sh [ROUNDS]   (5 rounds by default)

Inside a network namespace with only loopback (the .sh makes it): an owner
of 1,000 entries is served by `hyperdb serve` (announcing on multicast DNS
and, through a JS bittorrent-dht node on loopback as the bootstrap, on the
DHT). Each round, `hyperdb sync` into a fresh replica finds it by one
mechanism and prints when its first block arrived; a sync given the
address is the baseline. Prints medians over the rounds, in seconds.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(__file__), "..")
BIN = os.path.join(ROOT, "target", "release", "hyperdb")


def run(*args, stdin=None):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, check=True)


def first_block(args):
    """Runs a sync; returns (seconds to its first block, whole run)."""
    start = time.monotonic()
    out = run("sync", *args)
    whole = time.monotonic() - start
    m = re.search(r"first block ([0-9.]+) s after", out.stderr)
    return (float(m.group(1)) if m else float("nan")), whole


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = tempfile.mkdtemp(prefix="hyperdb-bench-discovery-")
    owner = os.path.join(tmp, "owner")
    run("init", owner)
    lines = "".join(json.dumps({"type": "put", "key": f"k/{i}", "value": "v" * 100}) + "\n" for i in range(1000))
    run("batch", owner, stdin=lines)
    key = re.search(r"db key:\s+([0-9a-f]{64})", run("info", owner).stdout).group(1)

    dht = subprocess.Popen(["node", os.path.join(ROOT, "interop", "dht-node.js")],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    bootstrap = "127.0.0.1:%d" % json.loads(dht.stdout.readline())["port"]
    serve = subprocess.Popen([BIN, "serve", owner, "--bootstrap", bootstrap],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    addr = serve.stdout.readline().split()[-1].replace("0.0.0.0", "127.0.0.1")
    for line in serve.stderr:
        if "announced on the DHT" in line:
            break

    ways = [
        ("by address (baseline)", [addr, "--durability", "buffered"]),
        ("multicast DNS alone", ["--no-dht", "--durability", "buffered"]),
        ("the DHT alone (loopback)", ["--no-mdns", "--bootstrap", bootstrap, "--durability", "buffered"]),
    ]
    print(f"{rounds} rounds, an owner of 1,000 entries; seconds, medians")
    print("| found by | sync start to first block | whole sync |")
    print("| --- | --- | --- |")
    try:
        for name, args in ways:
            firsts, wholes = [], []
            for r in range(rounds):
                replica = os.path.join(tmp, f"replica-{len(firsts)}-{name.split()[0]}")
                run("init", replica, "--key", key)
                first, whole = first_block([replica, *args])
                firsts.append(first)
                wholes.append(whole)
            print(f"| {name} | {statistics.median(firsts):.3f} | {statistics.median(wholes):.2f} |")
    finally:
        serve.kill()
        dht.stdin.close()
        dht.wait()


if __name__ == "__main__":
    main()
