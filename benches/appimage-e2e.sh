#!/usr/bin/env bash
# Cold start of an AppImage run straight from `distfs mount`, through a `distfs serve` that
# adds LATENCY ms to every response (a distant gateway), all in the same run:
#   - lazy:      fresh cache, --no-background-fetch: what one run needs, and nothing else;
#   - default:   fresh cache, background fetch on (the default for *.AppImage);
#   - prefetch:  fresh cache, --no-background-fetch, the publisher's prefetch list beside the
#                file (made by `distfs mount --trace` + `distfs trace` from one run);
#   - download:  the baseline: fetch the whole file as one CAR with curl from the same serve,
#                then run the local copy (what a user without distfs does);
#   - local:     the floor: the local copy alone, nothing fetched.
# The application is scripts/mkdemoapp's hello with PAYLOAD_MIB MiB of assets, packed by
# scripts/mkappimage. For each case: median seconds to the first line of output and to the
# end of the run, raw-block requests the gateway answered, and bytes fetched (block bytes
# written to the cache; for download, the CAR) with their ratio to the AppImage's size.
# RATE_MBIT (optional) sends every response of the serve through one shared link of that many
# Mbit/s (`distfs serve --rate-mbit`): a user's connection instead of loopback's ~4 Gbit/s.
# Needs root (FUSE), curl, python3, squashfuse, mksquashfs.
# Usage: benches/appimage-e2e.sh [PAYLOAD_MIB=48] [RUNS=3] [LATENCY_MS=20] [RATE_MBIT]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh # log, now, median (its mount helpers are not used here)
payload_mib=${1:-48}
runs=${2:-3}
latency=${3:-20}
rate_mbit=${4:-}
for tool in curl python3 mountpoint squashfuse mksquashfs; do
    command -v "$tool" >/dev/null || { echo "appimage-e2e: needs $tool" >&2; exit 2; }
done
cargo build --release --quiet
distfs=$PWD/target/release/distfs
export DISTFS_APPIMAGE_RUNTIME=$PWD/target/release/distfs-appimage-runtime

work=$(mktemp -d)
serve_pid=
mount_pid=
stop_mount() {
    [ -n "$mount_pid" ] || return 0
    kill -TERM "$mount_pid" 2>/dev/null || true
    wait "$mount_pid" 2>/dev/null || true
    mount_pid=
    mountpoint -q "$work/mnt" && fusermount3 -u -z "$work/mnt"
    true
}
stop_serve() {
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    serve_pid=
    true
}
cleanup() {
    stop_mount
    stop_serve
    rm -rf "$work"
}
trap cleanup EXIT


# first_output CMD... -> "SECONDS_TO_FIRST_OUTPUT SECONDS_TOTAL" (stdout of CMD discarded).
first_output() {
    python3 - "$@" <<'EOF'
import subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
first = None
while True:
    chunk = p.stdout.read1(65536)
    if not chunk:
        break
    if first is None:
        first = time.monotonic() - t0
rc = p.wait()
total = time.monotonic() - t0
if rc != 0 or first is None:
    sys.exit(f"run failed with status {rc}")
print(f"{first:.3f} {total:.3f}")
EOF
}

# start_serve STORE: distfs serve with the added latency; sets $addr.
start_serve() {
    stop_serve
    "$distfs" serve --store "$1" --listen 127.0.0.1:0 --latency "$latency" \
        ${rate_mbit:+--rate-mbit "$rate_mbit"} >"$work/addr" &
    serve_pid=$!
    for _ in $(seq 300); do [ -s "$work/addr" ] && break; sleep 0.05; done
    read -r addr <"$work/addr"
}

raw_requests() { curl -fsS "http://$addr/debug/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["by_kind"].get("raw",0))'; }
cache_bytes() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }

# mount_fresh ROOT EXTRA...: a mount on an empty cache at $work/mnt.
mount_fresh() {
    local root=$1
    shift
    stop_mount
    rm -rf "$work/cache"
    mkdir -p "$work/mnt"
    "$distfs" mount "$work/mnt" --root "/ipfs/$root" --gateway "http://$addr" \
        --cache-dir "$work/cache" "$@" 2>>"$work/mount.log" &
    mount_pid=$!
    for _ in $(seq 600); do mountpoint -q "$work/mnt" && return 0; sleep 0.05; done
    echo "appimage-e2e: the mount did not come up" >&2
    exit 1
}

settle() { # waits until the gateway's request count stops changing (background work done)
    local last now same=0
    last=$(raw_requests)
    for _ in $(seq 600); do
        sleep 0.2
        now=$(raw_requests)
        if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; last=$now; fi
        [ "$same" -ge 3 ] && return 0
    done
}

# --- the application ----------------------------------------------------------------------
rel=hello/v1.1.0/hello-x86_64.AppImage
tree="$work/dist"
log "building hello with $payload_mib MiB of assets"
scripts/mkdemoapp hello 1.1.0 "$work/appdir" "$payload_mib"
mkdir -p "$tree/hello/v1.1.0"
scripts/mkappimage "$work/appdir" "$tree/$rel"
size=$(stat -c %s "$tree/$rel")
log "AppImage: $size bytes"
root=$("$distfs" add -Q --cid-version 1 --store "$work/store" "$tree")
start_serve "$work/store"

# run_case NAME ROOT EXTRA...: RUNS cold runs from a fresh mount; one result line.
run_case() {
    local name=$1 root=$2
    shift 2
    local firsts=() totals=() reqs=() bytes=()
    for _ in $(seq "$runs"); do
        mount_fresh "$root" "$@"
        local before
        before=$(raw_requests)
        read -r first total < <(first_output "$work/mnt/$rel" --bench)
        [ -n "${total:-}" ] || { echo "appimage-e2e: the run from the mount failed" >&2; exit 1; }
        # Requests and bytes when the run ended (with background fetch on, what the
        # background had fetched by then is included).
        reqs+=($(($(raw_requests) - before)))
        bytes+=("$(cache_bytes "$work/cache")")
        firsts+=("$first")
        totals+=("$total")
        settle
        stop_mount
    done
    report "$name" "$(printf '%s\n' "${firsts[@]}" | median)" \
        "$(printf '%s\n' "${totals[@]}" | median)" \
        "$(printf '%s\n' "${reqs[@]}" | median)" "$(printf '%s\n' "${bytes[@]}" | median)"
}

report() { # NAME FIRST TOTAL REQUESTS BYTES
    printf '%-10s first output %6.3f s   whole run %6.3f s   requests %5s   fetched %10s B = %.3f of the AppImage\n' \
        "$1" "$2" "$3" "$4" "$5" "$(echo "$5 / $size" | bc -l)"
}

echo "AppImage $size bytes ($payload_mib MiB payload), gateway latency $latency ms, link ${rate_mbit:-unlimited} Mbit/s, median of $runs"
run_case lazy "$root" --no-background-fetch
run_case default "$root"

# The download baseline: one CAR request for the whole file, then the local copy runs.
firsts=() totals=() bytes=() lfirsts=() ltotals=()
for _ in $(seq "$runs"); do
    rm -f "$work/file.car" "$work/local.AppImage"
    t0=$(date +%s.%N)
    curl -fsS -o "$work/file.car" "http://$addr/ipfs/$root/$rel?format=car"
    t1=$(date +%s.%N)
    # The bytes the CAR carries are the file: the local copy stands for unpacking them.
    cp "$tree/$rel" "$work/local.AppImage"
    read -r first total < <(first_output "$work/local.AppImage" --bench)
    lfirsts+=("$first")
    ltotals+=("$total")
    firsts+=("$(echo "$t1 - $t0 + $first" | bc -l)")
    totals+=("$(echo "$t1 - $t0 + $total" | bc -l)")
    bytes+=("$(stat -c %s "$work/file.car")")
done
report download "$(printf '%s\n' "${firsts[@]}" | median)" "$(printf '%s\n' "${totals[@]}" | median)" \
    1 "$(printf '%s\n' "${bytes[@]}" | median)"
report local "$(printf '%s\n' "${lfirsts[@]}" | median)" "$(printf '%s\n' "${ltotals[@]}" | median)" 0 0

# The publisher's prefetch list from one traced run, published beside the file.
mount_fresh "$root" --no-background-fetch --trace "$work/reads.jsonl"
first_output "$work/mnt/$rel" --trace >/dev/null
stop_mount
"$distfs" trace "$work/reads.jsonl" --out-dir "$tree" --only .AppImage >&2
root2=$("$distfs" add -Q --cid-version 1 --store "$work/store2" "$tree")
start_serve "$work/store2"
run_case prefetch "$root2" --no-background-fetch
