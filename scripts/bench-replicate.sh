#!/usr/bin/env bash
# Replicates N entries Rust->Rust and JS->JS (the reference in interop/) over
# loopback TCP in the same run, and prints entries per second and the ratio.
# Usage: scripts/bench-replicate.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
rounds=${2:-3}
[ -d interop/node_modules/hyperdb ] || (cd interop && npm ci --no-audit --no-fund >/dev/null)
cargo build --release -q -p hyperdb --example replicate_bench
js=(); rs=()
for ((r = 0; r < rounds; r++)); do
  js+=("$(cd interop && node bench-replicate.js "$n")")
  rs+=("$(./target/release/examples/replicate_bench "$n")")
done
python3 - "$n" "${#js[@]}" "${js[@]}" "${rs[@]}" <<'PY'
import json, statistics, sys
n, k = int(sys.argv[1]), int(sys.argv[2])
js = statistics.median(json.loads(x)["entries_per_second"] for x in sys.argv[3:3 + k])
rs = statistics.median(json.loads(x)["entries_per_second"] for x in sys.argv[3 + k:])
print(f"replicate {n} entries over loopback TCP, median of {k} rounds")
print(f"reference {js:10.0f} entries/s")
print(f"rust      {rs:10.0f} entries/s   {rs / js:.1f}x")
PY
