#!/usr/bin/env bash
# Every test, as CI runs it: the workspace's tests (unit, property, crash,
# interop with the pinned JS reference, multi-host), then every fuzz target
# for a bounded time from the committed seeds.
#
#   scripts/test.sh [FUZZ_SECONDS]     # 20 seconds a target by default
#
# Needs what the README lists (Node.js 20 and npm, strace, util-linux, root)
# and the nightly toolchain for the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "the fuzz targets need the nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
scripts/fuzz.sh "${1:-20}"
