#!/usr/bin/env bash
# End-to-end import throughput: `distfs add -Q` (fixed-size and buzhash chunking, CIDv0 and
# CIDv1) against `sha256sum` of the same file, in the same run, page cache warm for both.
# Prints one line per case: median seconds of N runs, MB/s, and the ratio to sha256sum.
# Usage: benches/import-e2e.sh [SIZE_MIB=256] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh # log, now, median (its mount helpers are not used here)
size_mib=${1:-256}
runs=${2:-5}
cargo build --release --quiet
distfs=target/release/distfs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file="$work/input.bin"
head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$file"
cat "$file" >/dev/null # warm the page cache

time_runs() { # command... -> median seconds
    for _ in $(seq "$runs"); do
        local t0 t1
        t0=$(date +%s.%N)
        "$@" >/dev/null
        t1=$(date +%s.%N)
        echo "$t1 - $t0" | bc -l
    done | median
}

base=$(time_runs sha256sum "$file")
printf '%-34s %8s %10s %8s\n' case seconds MB/s ratio
report() {
    local name=$1 secs=$2
    printf '%-34s %8.3f %10.1f %8.2f\n' "$name" "$secs" \
        "$(echo "$size_mib * 1.048576 / $secs" | bc -l)" "$(echo "$base / $secs" | bc -l)"
}
report "sha256sum (baseline)" "$base"
report "distfs add (size-262144, v0)" "$(time_runs "$distfs" add -Q "$file")"
report "distfs add (size-262144, v1 raw)" "$(time_runs "$distfs" add -Q --cid-version 1 "$file")"
report "distfs add (buzhash, v0)" "$(time_runs "$distfs" add -Q --chunker buzhash "$file")"
report "distfs add --profile unixfs-v1-2025" "$(time_runs "$distfs" add -Q --profile unixfs-v1-2025 "$file")"
echo "(ratio = sha256sum time / case time; 1.0 means as fast as hashing the bytes once)"
