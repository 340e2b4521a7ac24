#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), starting from the seed corpus.
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Without them, the same checks run over the corpus on stable:
#   cargo test --lib unixfs::fuzzing
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")/.."
for target in fuzz/fuzz_targets/*.rs; do
    name="$(basename "$target" .rs)"
    # New inputs go to the (ignored) work corpus; the committed seeds are read-only input.
    mkdir -p "fuzz/corpus-work/$name"
    # -rss_limit_mb bounds memory; blocks are ≤ 2 MiB so inputs are capped there too.
    cargo +nightly fuzz run "$name" "fuzz/corpus-work/$name" "fuzz/corpus/$name" -- \
        -max_total_time="$secs" -max_len=2097153 -rss_limit_mb=2048
done
