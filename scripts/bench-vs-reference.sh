#!/usr/bin/env bash
# Runs the same database workload on hyperdb 3.5.0 (the JS reference in
# interop/) and on this implementation, in the same run, and prints each
# figure with the ratio. Usage: scripts/bench-vs-reference.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
rounds=${2:-3}
[ -d interop/node_modules/hyperdb ] || (cd interop && npm ci --no-audit --no-fund >/dev/null)
cargo build --release -q -p hyperdb --example bench
js=(); rs=()
for ((r = 0; r < rounds; r++)); do
  js+=("$(cd interop && INTEROP_WATCHDOG_MS=3600000 node bench-db.js "$n")")
  rs+=("$(./target/release/examples/bench "$n")")
done
python3 - "$n" "${#js[@]}" "${js[@]}" "${rs[@]}" <<'PY'
import json, statistics, sys
n, k = int(sys.argv[1]), int(sys.argv[2])
js = [json.loads(x) for x in sys.argv[3:3 + k]]
rs = [json.loads(x) for x in sys.argv[3 + k:]]
print(f"N = {n}, median of {k} rounds, operations per second")
print(f"{'':8}{'reference':>12}{'rust':>12}{'ratio':>9}")
for op in ["put", "batch", "get", "list", "history"]:
    a = statistics.median(r[op] for r in js)
    b = statistics.median(r[op] for r in rs)
    print(f"{op:8}{a:12.0f}{b:12.0f}{b / a:8.1f}x")
PY
