#!/usr/bin/env bash
# Start-up scan of a block cache: how long `distfs` takes to index a cache dir of N blocks
# (readdir + stat of every block file, then sorting by mtime), against `find` doing the same
# readdir + stat walk in the same run. Block files are sparse (the scan reads metadata
# only, so their bytes do not matter) and page-cache warm (a cold figure needs dropping the
# machine's caches, which this script does not do on a shared machine).
#
#   benches/cache-scan.sh [BLOCKS] [RUNS]        (default 40960 blocks = 10 GiB of 256 KiB)
#   PROFILE=dev benches/cache-scan.sh ...        (debug build instead of release)
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${1:-40960}
RUNS=${2:-5}
PROFILE=${PROFILE:-release}
cargo build --quiet --profile "$PROFILE"
case $PROFILE in dev) BIN=target/debug/distfs ;; *) BIN=target/$PROFILE/distfs ;; esac

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 - "$TMP/cache/blocks" "$BLOCKS" <<'PY'
import hashlib, os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = hashlib.sha256(b"block %d" % i).hexdigest()
    shard = os.path.join(root, d[:2])
    os.makedirs(shard, exist_ok=True)
    with open(os.path.join(shard, "1220" + d), "wb") as f:
        f.truncate(262144)
PY

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { python3 -c 'import time; print(int(time.monotonic_ns() // 1000000))'; }

scan_ms=$(for _ in $(seq "$RUNS"); do
    DISTFS_LOG=distfs=info "$BIN" gc --cache-dir "$TMP/cache" 2>&1 >/dev/null \
        | sed 's/\x1b\[[0-9;]*m//g' | sed -n 's/.*cache scanned.* ms=\([0-9]*\).*/\1/p'
done | median)
find_ms=$(for _ in $(seq "$RUNS"); do
    t0=$(ms); find "$TMP/cache/blocks" -type f -printf '%s %T@\n' >/dev/null; t1=$(ms)
    echo $((t1 - t0))
done | median)
echo "blocks=$BLOCKS runs=$RUNS profile=$PROFILE"
echo "find (readdir+stat, baseline): ${find_ms} ms"
echo "distfs start-up scan:          ${scan_ms} ms"
awk -v a="$scan_ms" -v b="$find_ms" 'BEGIN { if (b > 0) printf "ratio scan/find: %.2f\n", a / b }'
