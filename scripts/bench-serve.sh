#!/usr/bin/env bash
# Throughput and peak memory of `hyperdb serve` with 1, 10 and 50 syncs at
# once, and under the slow-frame assault. Usage: scripts/bench-serve.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p hyperdb-cli
exec python3 scripts/bench-serve.py "$@"
