#!/usr/bin/env bash
# End-to-end read path of `distfs mount`: `cat` of a big file through FUSE, cold (empty block
# cache, every block fetched from `distfs serve` on loopback), warm (blocks in the cache dir,
# fresh mount, cache dir evicted from the page cache), warm with a proved whole copy (the
# same daemon after it copied or proved the file for passthrough, cache dir evicted) and hot
# (page cache warm), against
#   - cold:  curl of the same DAG as one CAR from the same serve (network + serve cost only);
#   - warm:  cat of the same bytes from a local file evicted from the page cache;
#   - hot:   cat of the same local file with the page cache warm;
# plus 16 parallel readers of 16 different 64 MiB files (cold) against one reader of one such
# file (cold). The daemon raises its FUSE bdi read_ahead_kb to 1024 itself (as root).
#
# DISTFS_BENCH_BEFORE=PATH runs every distfs case a second time with the distfs binary at PATH
# (e.g. a release build of an earlier commit), in the same run, for before/after figures; that
# binary's mounts get read_ahead_kb=1024 from this script, so both read with 1 MiB READs.
# DISTFS_BENCH_BEFORE_ARGS adds mount arguments to those second runs (e.g. the same binary
# with --no-passthrough, for the figures of one feature).
# Between cases the script waits until the daemon runs no whole-file job (benches/lib.sh
# `settle`): copies and proofs start when a reader closes the file and are not part of any
# case's time.
#
# Page cache eviction is per file: posix_fadvise(POSIX_FADV_DONTNEED) after sync (python3),
# checked with fincore when present; the machine-wide drop_caches is not used.
# Prints one line per case: median seconds of RUNS, MB/s (10^6 bytes), the ratio of the
# baseline's time to the case's time (1.0 = as fast as the baseline) and the CPU seconds the
# mount daemon and the serve process used during the case (median).
# Needs root (FUSE mount, sysfs), curl, python3, mountpoint.
# Usage: benches/mount-e2e.sh [SIZE_MIB=1024] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
par=16         # parallel readers
par_mib=64     # size of each parallel reader's file
ra_high=1024   # FUSE bdi read_ahead_kb for the "before" binary's mounts
before=${DISTFS_BENCH_BEFORE:-}
[ -z "$before" ] || [ -x "$before" ] || { echo "mount-e2e: DISTFS_BENCH_BEFORE=$before is not executable" >&2; exit 2; }
for tool in curl python3 mountpoint bc; do
    command -v "$tool" >/dev/null || { echo "mount-e2e: needs $tool" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "mount-e2e: needs root (FUSE mount, sysfs read_ahead_kb)" >&2; exit 2; }
# DISTFS_BENCH_BIN=PATH measures that binary instead of building this checkout's release.
distfs=${DISTFS_BENCH_BIN:-}
if [ -z "$distfs" ]; then
    cargo build --release --quiet
    distfs=$PWD/target/release/distfs
fi
hz=$(getconf CLK_TCK)

source benches/lib.sh
bench_setup mount-e2e
cpu_of() { # pid -> CPU seconds (user + system) so far
    awk -v hz="$hz" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Drops FILE(s) or every file under DIR(s) from the page cache.
evict() {
    sync
    python3 - "$@" <<'EOF'
import os, sys
def drop(p):
    if not os.path.isfile(p):  # the daemon's control socket, when it runs
        return
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
for arg in sys.argv[1:]:
    if os.path.isdir(arg):
        for d, _, files in os.walk(arg):
            for f in files:
                drop(os.path.join(d, f))
    else:
        drop(arg)
EOF
}

# --- the data: a dist-like tree, added into a store, served on loopback -------------------
tree="$work/tree"
mkdir -p "$tree/proj/v1/par"
log "making $size_mib MiB + $par x $par_mib MiB of random bytes"
head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$tree/proj/v1/big.bin"
for i in $(seq -w 0 $((par - 1))); do
    head -c $((par_mib * 1024 * 1024)) /dev/urandom >"$tree/proj/v1/par/f$i.bin"
done
# The single-reader case reads its own file, so that no block of it is shared with others.
head -c $((par_mib * 1024 * 1024)) /dev/urandom >"$tree/proj/v1/single.bin"
big_sha=$(sha256sum "$tree/proj/v1/big.bin" | cut -d' ' -f1)

store="$work/store"
log "distfs add (defaults)"
t0=$(now)
"$distfs" add -r "$tree" --store "$store" >"$work/added"
log "added in $(echo "$(now) - $t0" | bc -l | cut -c1-6) s"
root_cid=$(awk 'END {print $2}' "$work/added")
file_cid=$(awk '$3 ~ /proj\/v1\/big\.bin$/ {print $2}' "$work/added")
[ -n "$root_cid" ] && [ -n "$file_cid" ] || { echo "mount-e2e: could not read CIDs from distfs add" >&2; exit 1; }
log "root $root_cid, big.bin $file_cid"

# DISTFS_BENCH_LATENCY_MS adds that much delay to every gateway response (a distant gateway).
latency_ms=${DISTFS_BENCH_LATENCY_MS:-0}
log "gateway latency: ${latency_ms} ms per response"
start_serve "$distfs" "$store" --latency "$latency_ms"
log "serving at $gw"

# --- mount helpers ---------------------------------------------------------------------------
mount_bin=$distfs  # which binary start_mount runs (benches/lib.sh)
mount_bin_tag=after
phase=one          # which phase's peak RSS mount_at's mount counts for (one / par)
mount_phase=one
mount_at() { # cache_dir [read_ahead_kb]
    mount_phase=$phase
    start_mount "$1"
    if [ -n "${2:-}" ]; then
        local minor
        minor=$(awk -v m="$mnt" '$5 == m {split($3, d, ":"); print d[2]}' /proc/self/mountinfo | tail -n1)
        echo "$2" >"/sys/class/bdi/0:$minor/read_ahead_kb"
    fi
}
on_stop_mount() {
    # The daemon's peak RSS, for the "at most 100 MiB" target, kept per binary and per phase
    # (one reader at a time, or the 16 parallel readers).
    awk '/VmHWM/ {print $2}' "/proc/$mount_pid/status" >>"$work/hwm-$mount_bin_tag-$mount_phase" 2>/dev/null || true
}
bdi_read_ahead() {
    local minor
    minor=$(awk -v m="$mnt" '$5 == m {split($3, d, ":"); print d[2]}' /proc/self/mountinfo | tail -n1)
    cat "/sys/class/bdi/0:$minor/read_ahead_kb"
}

# --- timing ------------------------------------------------------------------------------
# Each measurement appends "seconds mount_cpu serve_cpu" to $work/<case>.
measure() { # case setup_fn command...
    local name=$1 setup=$2
    shift 2
    "$setup"
    local t0 t1 m0 m1 s0 s1
    m0=$([ -n "$mount_pid" ] && cpu_of "$mount_pid" || echo 0)
    s0=$(cpu_of "$serve_pid")
    t0=$(now)
    "$@"
    t1=$(now)
    m1=$([ -n "$mount_pid" ] && cpu_of "$mount_pid" || echo 0)
    s1=$(cpu_of "$serve_pid")
    echo "$(echo "$t1 - $t0" | bc -l) $(echo "$m1 - $m0" | bc -l) $(echo "$s1 - $s0" | bc -l)" >>"$work/$name"
}
col() { awk -v c="$2" '{print $c}' "$work/$1" | median; }

n=0
fresh_cache() { n=$((n + 1)); cache="$work/cache$n"; mkdir -p "$cache"; }

big="$tree/proj/v1/big.bin"
cat_big() { cat "$mnt/proj/v1/big.bin" >/dev/null; }
curl_car() {
    curl -sf -H 'Accept: application/vnd.ipld.car' "$gw/ipfs/$file_cid?format=car" -o /dev/null
}
cat_local() { cat "$big" >/dev/null; }
par_read() {
    local pids=() i
    for i in $(seq -w 0 $((par - 1))); do
        cat "$mnt/proj/v1/par/f$i.bin" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
}
single_read() { cat "$mnt/proj/v1/single.bin" >/dev/null; }

nothing() { :; }
evict_local() { evict "$big"; }
cat_dir() { find "$1" -type f -exec cat {} + >/dev/null; }

# Baselines.
log "baselines"
for _ in $(seq "$runs"); do measure curl_car nothing curl_car; done
for _ in $(seq "$runs"); do measure cat_cold evict_local cat_local; done
if command -v fincore >/dev/null; then
    evict_local
    log "fincore after evict (expect 0 resident): $(fincore -nb -o RES "$big")"
fi
cat_local
for _ in $(seq "$runs"); do measure cat_hot nothing cat_local; done

# distfs cases for one binary: case names get PREFIX; RA (optional) is set on each mount.
ra=
settled_stop() { [ -z "${cache:-}" ] || settle "$cache"; stop_mount; }
cold_setup() { settled_stop; fresh_cache; mount_at "$cache" $ra; }
warm_setup() { settled_stop; evict "$cache"; mount_at "$cache" $ra; }
warm_hotdir_setup() { settled_stop; cat_dir "$cache"; mount_at "$cache" $ra; }
# The same daemon, its background work done, the cache dir (blocks and whole copies)
# evicted: what a long-running daemon sees for a file it has read before.
warm_proved_setup() { settle "$cache"; evict "$cache"; }
hot_setup() { settle "$cache"; }
distfs_cases() { # prefix
    local p=$1 verified=
    phase=one
    log "${p}distfs cold/warm/hot with $mount_bin"
    for _ in $(seq "$runs"); do
        measure "${p}cold" cold_setup cat_big
        if [ -z "$verified" ]; then
            log "mount bdi read_ahead_kb: $(bdi_read_ahead)"
            got=$(sha256sum "$mnt/proj/v1/big.bin" | cut -d' ' -f1)
            [ "$got" = "$big_sha" ] || { echo "mount-e2e: sha256 mismatch through the mount: $got != $big_sha" >&2; exit 1; }
            log "sha256 through the mount matches"
            verified=1
        fi
    done
    for _ in $(seq "$runs"); do measure "${p}warm" warm_setup cat_big; done
    for _ in $(seq "$runs"); do measure "${p}warm_hotdir" warm_hotdir_setup cat_big; done
    for _ in $(seq "$runs"); do measure "${p}warm_proved" warm_proved_setup cat_big; done
    cat_big
    for _ in $(seq "$runs"); do measure "${p}hot" hot_setup cat_big; done
    log "${p}parallel readers"
    for _ in $(seq "$runs"); do measure "${p}single" cold_setup single_read; done
    phase=par
    for _ in $(seq "$runs"); do measure "${p}par16" cold_setup par_read; done
    settled_stop
}
distfs_cases ""
if [ -n "$before" ]; then
    mount_bin=$before mount_bin_tag=before ra=$ra_high mount_extra=${DISTFS_BENCH_BEFORE_ARGS:-}
    distfs_cases "b_"
fi

# --- the table -----------------------------------------------------------------------------
printf '%-38s %8s %9s %8s %9s %9s\n' case seconds MB/s ratio mount-cpu serve-cpu
report() { # label case mib [baseline_case [factor]]
    local secs base ratio
    secs=$(col "$2" 1)
    ratio=-
    if [ -n "${4:-}" ]; then
        base=$(col "$4" 1)
        ratio=$(printf '%.2f' "$(echo "${5:-1} * $base / $secs" | bc -l)")
    fi
    printf '%-38s %8.3f %9.1f %8s %9.2f %9.2f\n' "$1" "$secs" \
        "$(echo "$3 * 1.048576 / $secs" | bc -l)" "$ratio" "$(col "$2" 2)" "$(col "$2" 3)"
}
report "curl CAR from serve (baseline cold)" curl_car "$size_mib"
report "cat local, evicted (baseline warm)" cat_cold "$size_mib"
report "cat local, page cache (baseline hot)" cat_hot "$size_mib"
distfs_report() { # prefix label
    local p=$1 l=$2
    report "${l}distfs cold" "${p}cold" "$size_mib" curl_car
    report "${l}distfs warm (cache dir evicted)" "${p}warm" "$size_mib" cat_cold
    report "${l}distfs warm (cache dir in page cache)" "${p}warm_hotdir" "$size_mib" cat_cold
    report "${l}distfs warm (same daemon, evicted)" "${p}warm_proved" "$size_mib" cat_cold
    report "${l}distfs hot" "${p}hot" "$size_mib" cat_hot
    report "${l}1 reader, ${par_mib} MiB, cold" "${p}single" "$par_mib"
    report "${l}$par readers, ${par_mib} MiB each, cold" "${p}par16" $((par * par_mib)) "${p}single" "$par"
}
distfs_report "" ""
[ -z "$before" ] || distfs_report "b_" "before: "
hwm_report() { # tag label
    local ph what
    for ph in one par; do
        [ "$ph" = one ] && what="one reader at a time" || what="$par parallel readers"
        [ -s "$work/hwm-$1-$ph" ] && echo "$2daemon peak RSS (VmHWM), $what: $(($(sort -n "$work/hwm-$1-$ph" | head -n1) / 1024))-$(($(sort -n "$work/hwm-$1-$ph" | tail -n1) / 1024)) MiB over its mounts"
    done
}
hwm_report after ""
[ -z "$before" ] || hwm_report before "before: "
echo "(ratio = baseline time / case time; for $par readers: $par x one reader's time / total time,"
echo " so $par.0 would be perfect scaling and 1.0 no gain over reading the files one after another)"
