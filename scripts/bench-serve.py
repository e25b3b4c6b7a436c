#!/usr/bin/env python3
"""Throughput and memory of `hyperdb serve` with many peers at once.

Usage: scripts/bench-serve.sh [N] [ROUNDS]   (N entries, 10,000 by default; 3 rounds)

1. An owner with N entries is served by `hyperdb serve`; 1, 10 and 50
   `hyperdb sync` processes, each into a fresh replica, run at once. Prints
   the median wall time of a round, entries served per second (all syncs
   together), and the server's peak RSS (VmHWM) over the rounds.
2. The slow-frame assault: 200 connections each announce an 8 MiB frame,
   send 512 KiB of it and then a byte a second, while one real sync runs.
   Prints the server's peak RSS, and whether the real sync succeeded.

The syncing replicas use --durability buffered, so the figures are the
server's, not the clients' disks'.
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.join(os.path.dirname(__file__), "..", "target", "release", "hyperdb")


def run(*args, stdin=None):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, check=True)


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def serve(owner):
    proc = subprocess.Popen(
        [BIN, "serve", owner, "--listen", "127.0.0.1:0", "--no-dht", "--no-mdns"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    return proc, line.split()[-1]


def sync_round(tmp, key, addr, k, tag):
    dirs = [os.path.join(tmp, f"r-{tag}-{i}") for i in range(k)]
    for d in dirs:
        run("init", d, "--key", key, "--durability", "buffered")
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [BIN, "sync", d, addr, "--durability", "buffered"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in dirs
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    return time.monotonic() - start


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        owner = os.path.join(tmp, "owner")
        run("init", owner, "--durability", "buffered")
        ops = "".join(f'{{"type":"put","key":"key/{i}","value":"value {i}"}}\n' for i in range(n))
        run("batch", owner, "--durability", "buffered", stdin=ops)
        key = next(
            line.split()[-1] for line in run("info", owner).stdout.splitlines() if line.startswith("db key")
        )

        print(f"hyperdb serve, {n} entries, median of {rounds} rounds")
        print("| concurrent syncs | round (s) | entries served/s | serve peak RSS (MiB) |")
        print("|---|---|---|---|")
        for k in (1, 10, 50):
            proc, addr = serve(owner)
            times = [sync_round(tmp, key, addr, k, f"{k}-{r}") for r in range(rounds)]
            rss = peak_rss_mib(proc.pid)
            proc.terminate()
            proc.wait()
            t = statistics.median(times)
            print(f"| {k} | {t:.2f} | {k * n / t:,.0f} | {rss:.0f} |")

        proc, addr = serve(owner)
        host, port = addr.rsplit(":", 1)
        attackers = []
        for _ in range(200):
            s = socket.create_connection((host, int(port)))
            s.sendall(varint(8 << 20) + os.urandom(512 << 10))
            attackers.append(s)
        ok = True
        try:
            sync_round(tmp, key, addr, 1, "assault")
        except (AssertionError, subprocess.TimeoutExpired):
            ok = False
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            for s in attackers:
                try:
                    s.send(b"x")
                except OSError:
                    pass
            time.sleep(1)
        rss = peak_rss_mib(proc.pid)
        alive = proc.poll() is None
        for s in attackers:
            s.close()
        proc.terminate()
        proc.wait()
        print()
        print(
            f"slow-frame assault (200 connections, 8 MiB frames, 512 KiB sent each): "
            f"serve peak RSS {rss:.0f} MiB; a real sync meanwhile: {'ok' if ok else 'FAILED'}; "
            f"server {'still up' if alive else 'DIED'}"
        )


if __name__ == "__main__":
    main()
