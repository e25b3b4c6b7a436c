#!/usr/bin/env bash
# How hyperdb scales, beside what a user would pick instead, in one run:
# the workload of crates/hyperdb/examples/bench.rs (N puts one at a time, N
# puts in batches of 1,000, N random gets on the reopened database, listing
# every key (in the reference's order, and for this implementation also in
# the order written, and in the reference's order once more on the database
# reopened, nothing cached), walking the history) at each size, on
#   - this implementation (release build),
#   - hyperdb 3.5.0, the reference pinned in interop/,
#   - Hyperbee 2 on hypercore 11, installed with npm in scripts/hyperbee/
#     (only by this script).
# Prints one table: operations per second (median of the rounds), the peak
# resident memory of the process, and for each alternative how many times
# faster this implementation is. An alternative goes on to a larger size
# only if its run at the smaller one, scaled up by the ratio of sizes,
# would take less than BUDGET seconds.
#
#   scripts/bench-scale.sh [SIZES...]     # default: 20000 200000 1000000
#
# Environment: ROUNDS (3) rounds at sizes up to 200,000, BIG_ROUNDS (1)
# above; BUDGET (600) seconds, as above.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20000 200000 1000000)
[ -d interop/node_modules/hyperdb ] || (cd interop && npm ci --no-audit --no-fund >/dev/null)
[ -d scripts/hyperbee/node_modules/hyperbee ] || (cd scripts/hyperbee && npm ci --no-audit --no-fund >/dev/null)
cargo build --release -q -p hyperdb --example bench
exec python3 - "${ROUNDS:-3}" "${BIG_ROUNDS:-1}" "${BUDGET:-600}" "${sizes[@]}" <<'PY'
import json, os, statistics, subprocess, sys, time

rounds, big_rounds, budget = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sizes = [int(s) for s in sys.argv[4:]]
systems = [
    ("hyperdb (Rust)", ["./target/release/examples/bench"], "."),
    ("hyperdb 3.5.0 (JS)", ["node", "bench-db.js"], "interop"),
    ("Hyperbee 2 (JS)", ["node", "bench.js"], "scripts/hyperbee"),
]
ops = ["put", "batch", "get", "list", "list_reopened", "list_unordered", "history"]
heading = {"list_unordered": "list (order written)", "list_reopened": "list (reopened)"}
env = {**os.environ, "INTEROP_WATCHDOG_MS": "3600000"}
last = {}  # system -> (n, seconds of one round)
table = {}
for n in sizes:
    k = rounds if n <= 200_000 else big_rounds
    for name, cmd, cwd in systems:
        if name in last:
            ln, secs = last[name]
            if secs * n / ln > budget:
                print(f"# {name}: skipped at N = {n} (about {secs * n / ln:.0f} s a round, from N = {ln})", file=sys.stderr)
                continue
        runs = []
        for r in range(k):
            start = time.monotonic()
            out = subprocess.run(cmd + [str(n)], cwd=cwd, env=env, check=True,
                                 capture_output=True, text=True).stdout
            secs = time.monotonic() - start
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(f"# {name} N = {n} round {r + 1}/{k}: {secs:.1f} s {runs[-1]}", file=sys.stderr)
        last[name] = (n, secs)
        table[(n, name)] = {op: statistics.median(x[op] for x in runs)
                            for op in ops + ["rss_mb"] if all(op in x for x in runs)}
        table[(n, name)]["rounds"] = k

print("| N | system | rounds | " + " | ".join(heading.get(op, op) for op in ops) + " | peak RSS |")
print("| --- | --- | --- | " + " | ".join("---" for _ in ops) + " | --- |")
for n in sizes:
    ours = table.get((n, systems[0][0]))
    for name, _, _ in systems:
        row = table.get((n, name))
        if row is None:
            continue
        cells = []
        for op in ops:
            if op not in row:
                cells.append("—")
                continue
            cell = f"{row[op]:,.0f}"
            if ours and name != systems[0][0] and row[op] > 0:
                cell += f" ({ours[op] / row[op]:.1f}×)"
            cells.append(cell)
        print(f"| {n:,} | {name} | {row['rounds']} | " + " | ".join(cells) + f" | {row['rss_mb']:,.0f} MiB |")
print()
print("operations per second, median of the rounds; (k×): this implementation is k times as fast")
# How the cost of an operation grows with the database, for this
# implementation: its cost at the largest size over its cost at the smallest.
ours = [n for n in sizes if (n, systems[0][0]) in table]
if len(ours) > 1:
    small, big = table[(ours[0], systems[0][0])], table[(ours[-1], systems[0][0])]
    growth = ", ".join(f"{heading.get(op, op)} {small[op] / big[op]:.2f}×"
                       for op in ops if op in small and op in big and big[op] > 0)
    print(f"cost per operation at {ours[-1]:,} keys over its cost at {ours[0]:,}: {growth}")
PY
