#!/usr/bin/env bash
# Metadata speed of `distfs mount` on a large tree: `ls -lR` of DIRS directories of FILES
# small files each (defaults 10 x 10,000 = 100,000 entries; a directory that large is
# HAMT-sharded by `distfs add`, like a big project tree imported by Kubo), warm (every block
# in the cache dir, fresh mount), against `ls -lR` of the same tree on local disk (page cache
# warm) in the same run. Also prints the cold figure (empty cache, blocks from `distfs serve`
# on loopback), the mount daemon's peak RSS (VmHWM), and the time to open and read every
# file of one directory (`cat` of FILES files, warm, right after the `ls -lR` of the same
# fresh mount) against the same `cat` on local disk (page cache warm).
#
# DISTFS_BENCH_BEFORE=PATH runs the distfs cases a second time with the binary at PATH;
# DISTFS_BENCH_LATENCY_MS=N puts N ms before every gateway response (a distant gateway).
# Needs root (FUSE), python3, mountpoint.
# Usage: benches/tree-e2e.sh [DIRS=10] [FILES=10000] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=${1:-10}
files=${2:-10000}
runs=${3:-3}
before=${DISTFS_BENCH_BEFORE:-}
[ -z "$before" ] || [ -x "$before" ] || { echo "tree-e2e: DISTFS_BENCH_BEFORE=$before is not executable" >&2; exit 2; }
for tool in python3 mountpoint; do
    command -v "$tool" >/dev/null || { echo "tree-e2e: needs $tool" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "tree-e2e: needs root (FUSE mount)" >&2; exit 2; }
# DISTFS_BENCH_BIN=PATH measures that binary instead of building this checkout's release.
distfs=${DISTFS_BENCH_BIN:-}
if [ -z "$distfs" ]; then
    cargo build --release --quiet
    distfs=$PWD/target/release/distfs
fi

source benches/lib.sh
bench_setup tree-e2e

tree="$work/tree"
log "making $dirs x $files files"
python3 - "$tree/proj/v1" "$dirs" "$files" <<'PY'
import os, sys
root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(dirs):
    p = os.path.join(root, "src%02d" % d)
    os.makedirs(p)
    for f in range(files):
        with open(os.path.join(p, "file%05d.c" % f), "w") as out:
            out.write("/* %d/%d */\nint f%d(void) { return %d; }\n" % (d, f, f, d * files + f))
PY
store="$work/store"
t0=$(now)
"$distfs" add -r "$tree" --store "$store" >"$work/added"
log "added in $(echo "$(now) - $t0" | bc -l | cut -c1-6) s"
root_cid=$(awk 'END {print $2}' "$work/added")

# DISTFS_BENCH_LATENCY_MS adds that much delay to every gateway response (the cold case).
start_serve "$distfs" "$store" --latency "${DISTFS_BENCH_LATENCY_MS:-0}"

mount_bin=$distfs
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$mount_pid/status"; }
timed() { local t0; t0=$(now); "$@" >/dev/null; echo "$(now) - $t0" | bc -l; }

ls -lR "$tree/proj" >/dev/null # page cache warm
local_s=$(for _ in $(seq "$runs"); do timed ls -lR "$tree/proj"; done | median)
cat_dir() { find "$1/proj/v1/src00" -type f -exec cat {} +; }
cat_dir "$tree" >/dev/null
local_cat_s=$(for _ in $(seq "$runs"); do timed cat_dir "$tree"; done | median)
want=$(ls -lR "$tree/proj" | grep -c '^-')

case_for() { # prefix
    local p=$1 cache="$work/cache-$1" cold warm hwm got
    rm -rf "$cache"; mkdir -p "$cache"
    start_mount "$cache"
    cold=$(timed ls -lR "$mnt/proj")
    got=$(ls -lR "$mnt/proj" | grep -c '^-')
    [ "$got" = "$want" ] || { echo "tree-e2e: ls -lR through the mount listed $got files, want $want" >&2; exit 1; }
    stop_mount
    : >"$work/cat-$p"
    warm=$(for _ in $(seq "$runs"); do
        start_mount "$cache"
        timed ls -lR "$mnt/proj"
        timed cat_dir "$mnt" >>"$work/cat-$p"
        hwm_kib >"$work/hwm-$p"
        stop_mount
    done | median)
    hwm=$(cat "$work/hwm-$p")
    cat_s=$(median <"$work/cat-$p")
    printf '%-28s %9.3f %9.3f %8.2f %10d %9.3f %8.2f\n' "${p}distfs" "$cold" "$warm" \
        "$(echo "$warm / $local_s" | bc -l)" "$((hwm / 1024))" \
        "$cat_s" "$(echo "$cat_s / $local_cat_s" | bc -l)"
}
echo "entries: $((dirs * files)) files in $dirs directories; runs=$runs"
printf '%-28s %9s\n' "ls -lR local (baseline)" "$(printf '%.3f' "$local_s")"
printf '%-28s %9s\n' "cat of $files files local" "$(printf '%.3f' "$local_cat_s")"
printf '%-28s %9s %9s %8s %10s %9s %8s\n' case cold_s warm_s warm/local VmHWM_MiB cat_s cat/local
case_for ""
if [ -n "$before" ]; then
    mount_bin=$before
    case_for "before "
fi
