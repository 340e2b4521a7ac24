#!/usr/bin/env bash
# Start-up scan of a block cache: how long `distfs` takes to index a cache dir of N blocks
# (readdir + stat of every block file, then sorting by mtime), against `find` doing the same
# readdir + stat walk in the same run. Block files are sparse (the scan reads metadata
# only, so their bytes do not matter) and page-cache warm (a cold figure needs dropping the
# machine's caches, which this script does not do on a shared machine).
# As root it also times a whole mount start (`distfs mount --offline` until the mount point
# answers) on that cache against the same mount start on an empty cache, in the same run.
#
#   benches/cache-scan.sh [BLOCKS] [RUNS]        (default 40960 blocks = 10 GiB of 256 KiB)
#   PROFILE=dev benches/cache-scan.sh ...        (debug build instead of release)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh # log, now, median (its mount helpers are not used here)
BLOCKS=${1:-40960}
RUNS=${2:-5}
PROFILE=${PROFILE:-release}
# DISTFS_BENCH_BIN=PATH measures that binary instead of building this checkout.
BIN=${DISTFS_BENCH_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --quiet --profile "$PROFILE"
    case $PROFILE in dev) BIN=target/debug/distfs ;; *) BIN=target/$PROFILE/distfs ;; esac
fi

TMP=$(mktemp -d)
trap 'mountpoint -q "$TMP/mnt" 2>/dev/null && umount -l "$TMP/mnt"; rm -rf "$TMP"' EXIT
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

# Mount start: a small real tree added into the cache (its root must be there: --offline),
# mounted on the 10 GiB cache and on an empty one.
[ "$(id -u)" = 0 ] || { echo "mount start: skipped (needs root for FUSE)"; exit 0; }
mkdir -p "$TMP/tree/proj/v1" "$TMP/mnt" "$TMP/empty"
echo hello >"$TMP/tree/proj/v1/hello.txt"
root=$("$BIN" add -r "$TMP/tree" --store "$TMP/cache" | awk 'END {print $2}')
"$BIN" add -r "$TMP/tree" --store "$TMP/empty" >/dev/null
mount_ms() { # cache dir -> ms from exec to the mount point answering
    local t0 t1 pid
    t0=$(ms)
    "$BIN" mount "$TMP/mnt" --offline --root "/ipfs/$root" --cache-dir "$1" 2>>"$TMP/mount.err" &
    pid=$!
    for _ in $(seq 2000); do
        [ -e "$TMP/mnt/proj/v1/hello.txt" ] && break
        kill -0 "$pid" 2>/dev/null || { echo "mount exited: $(cat "$TMP/mount.err")" >&2; exit 1; }
        sleep 0.005
    done
    t1=$(ms)
    [ -e "$TMP/mnt/proj/v1/hello.txt" ] || { echo "not mounted after 10 s" >&2; exit 1; }
    echo $((t1 - t0))
    kill -TERM "$pid"; wait "$pid" || true
}
empty_ms=$(for _ in $(seq "$RUNS"); do mount_ms "$TMP/empty"; done | median)
full_ms=$(for _ in $(seq "$RUNS"); do mount_ms "$TMP/cache"; done | median)
echo "mount start, empty cache (baseline): ${empty_ms} ms"
echo "mount start, ${BLOCKS}-block cache:     ${full_ms} ms"
