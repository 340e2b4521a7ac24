#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), starting from the committed seed
# corpus; new inputs go to fuzz/corpus-work (ignored by git). Installs cargo-fuzz if missing.
# Uses the default (stable) toolchain with RUSTC_BOOTSTRAP=1 for the sanitizer flags
# cargo-fuzz passes, so no nightly toolchain is needed.
#
# cargo fuzz builds in release mode with one codegen unit per crate unless told otherwise, so
# on a 2-core CI machine the library's codegen ran on one core for minutes while each target
# then fuzzed for seconds. DISTFS_FUZZ_CODEGEN_UNITS (default 16) trades some executions per
# second for a build that uses every core; set it to 1 for long runs.
set -euo pipefail
secs="${1:-60}"
cgu="${DISTFS_FUZZ_CODEGEN_UNITS:-16}"
cd "$(dirname "$0")/.."
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install --locked --quiet cargo-fuzz
fi
started=$(date +%s)
RUSTC_BOOTSTRAP=1 cargo fuzz build --codegen-units "$cgu"
echo "fuzz targets built in $(($(date +%s) - started)) s (codegen units: $cgu)" >&2
for target in fuzz/fuzz_targets/*.rs; do
    name="$(basename "$target" .rs)"
    mkdir -p "fuzz/corpus-work/$name"
    # -rss_limit_mb bounds memory; blocks are ≤ 2 MiB so inputs are capped there too.
    RUSTC_BOOTSTRAP=1 cargo fuzz run --codegen-units "$cgu" "$name" "fuzz/corpus-work/$name" "fuzz/corpus/$name" -- \
        -max_total_time="$secs" -max_len=2097153 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        grep -E '^(stat::|Done|==|SUMMARY|ERROR)' || true
    # A crash makes cargo fuzz exit non-zero; pipefail would hide it behind grep, so check.
    [ -z "$(ls -A "fuzz/artifacts/$name" 2>/dev/null)" ] || {
        echo "fuzz target $name found a crash: fuzz/artifacts/$name" >&2
        exit 1
    }
done
