#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (20 by default), starting
# from its corpus (the committed seeds plus whatever earlier runs found),
# and prints a table: target, executions, result. A target that finds a
# crash leaves the input in fuzz/artifacts/TARGET/ and makes the script
# exit 1 once every target has run.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (rustup toolchain install nightly) and
# cargo-fuzz, which it installs when missing (cargo install cargo-fuzz).
set -euo pipefail
seconds=${1:-20}
shift || true
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz ..." >&2
    cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
echo "building ${#targets[@]} targets ..." >&2
cargo +nightly fuzz build >&2
failed=0
printf '| target | executions in %ss | result |\n|---|---|---|\n' "$seconds"
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    if cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (see fuzz/artifacts/$target)"
        failed=1
        tail -30 "$log" >&2
    fi
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo '?')
    printf '| %s | %s | %s |\n' "$target" "$runs" "$result"
    rm -f "$log"
done
exit $failed
