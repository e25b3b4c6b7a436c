#!/usr/bin/env bash
# Time from `hyperdb sync DIR` (no address) to its first block, finding the
# peer by multicast DNS alone and by the DHT alone, beside a sync given the
# address. Runs in a network namespace of its own (needs root).
# Usage: scripts/bench-discovery.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p hyperdb-cli
(cd interop && [ -d node_modules/hyperdiscovery ] || npm ci --no-audit --no-fund)
exec unshare -n bash -c 'ip link set lo up && exec python3 scripts/bench-discovery.py "$@"' bench "$@"
