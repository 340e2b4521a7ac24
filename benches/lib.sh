# Shared pieces of the end-to-end benchmark scripts; sourced (the caller sets -euo pipefail).
#
# bench_setup NAME makes $work (removed at exit, after the mount and the serve are stopped)
# and $mnt; start_serve and start_mount run `distfs serve` / `distfs mount` on them, and
# stop_mount ends the mount (calling the script's on_stop_mount first, if it has one).

log() { echo "# $*" >&2; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# DISTFS_BENCH_FRESH_FS=GIB puts $work on a new ext4 file system (a sparse image file of that
# many GiB, loop-mounted; needs root): every run then creates its cache files on a file
# system that has deleted nothing. On a file system that deleted many files in the last
# minutes (tests, earlier runs), and has no journal, ext4 looks at each recently deleted
# inode again for every file it creates, which makes cold figures swing between runs.
bench_setup() { # name
    bench_name=$1
    work=$(mktemp -d)
    fresh_img=
    if [ -n "${DISTFS_BENCH_FRESH_FS:-}" ]; then
        fresh_img=$(mktemp)
        truncate -s "${DISTFS_BENCH_FRESH_FS}G" "$fresh_img"
        mkfs.ext4 -q -F "$fresh_img"
        # Direct I/O to the image: otherwise its pages stay in the page cache under the loop
        # device, and a file "evicted" from the new file system is read back from memory.
        fresh_dev=$(losetup --find --show --direct-io=on "$fresh_img")
        mount "$fresh_dev" "$work"
        log "work dir on a fresh ext4 of ${DISTFS_BENCH_FRESH_FS} GiB ($fresh_dev, direct I/O)"
    fi
    mnt="$work/mnt"
    mkdir -p "$mnt"
    serve_pid=
    mount_pid=
    trap bench_cleanup EXIT
}
bench_cleanup() {
    stop_mount || true
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    mountpoint -q "$mnt" && umount -l "$mnt"
    if [ -n "$fresh_img" ]; then
        umount "$work" || umount -l "$work"
        losetup -d "$fresh_dev" 2>/dev/null || true
        rm -f "$fresh_img"
    fi
    rm -rf "$work"
}

# start_serve DISTFS STORE [serve args...]: sets $serve_pid and $gw (http://ADDR).
start_serve() {
    local bin=$1 store=$2
    shift 2
    "$bin" serve --store "$store" --listen 127.0.0.1:0 "$@" \
        >"$work/serve.out" 2>"$work/serve.err" &
    serve_pid=$!
    for _ in $(seq 100); do [ -s "$work/serve.out" ] && break; sleep 0.1; done
    local addr
    addr=$(head -n1 "$work/serve.out" | grep -oE '[0-9.]+:[0-9]+' | head -n1)
    [ -n "$addr" ] || { echo "$bench_name: serve printed no address" >&2; cat "$work/serve.err" >&2; exit 1; }
    gw="http://$addr"
}

# start_mount CACHE_DIR: $mount_bin mounts /ipfs/$root_cid from $gw on $mnt, with the extra
# arguments in $mount_extra (split on spaces); sets $mount_pid.
mount_extra=
start_mount() {
    # shellcheck disable=SC2086 # $mount_extra is a list of arguments
    "$mount_bin" mount "$mnt" --root "/ipfs/$root_cid" --gateway "$gw" --cache-dir "$1" \
        $mount_extra 2>>"$work/mount.err" &
    mount_pid=$!
    for _ in $(seq 300); do
        mountpoint -q "$mnt" && break
        kill -0 "$mount_pid" 2>/dev/null || { echo "$bench_name: mount exited" >&2; cat "$work/mount.err" >&2; exit 1; }
        sleep 0.05
    done
    mountpoint -q "$mnt" || { echo "$bench_name: not mounted after 15 s" >&2; exit 1; }
}

# settle CACHE_DIR: waits (at most 10 minutes) until the daemon on CACHE_DIR runs no
# whole-file job (a copy or proof for passthrough, started when a reader closes a file), so
# that one case's background work does not land in the next case's time. A daemon without
# such jobs (an older binary) is settled at once.
settle() {
    [ -n "$mount_pid" ] || return 0
    sleep 0.5 # the close's RELEASE reaches the daemon after `cat` has exited
    local _
    for _ in $(seq 6000); do
        "$mount_bin" status --json --cache-dir "$1" 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["cache"].get("whole", {}).get("busy") else 1)' || return 0
        sleep 0.1
    done
    echo "$bench_name: the daemon still copies or proves a whole file after 10 minutes" >&2
}

stop_mount() {
    [ -n "$mount_pid" ] || return 0
    if declare -F on_stop_mount >/dev/null; then on_stop_mount; fi
    kill -TERM "$mount_pid" 2>/dev/null || true
    wait "$mount_pid" 2>/dev/null || true
    mount_pid=
    if mountpoint -q "$mnt"; then
        echo "$bench_name: still mounted after distfs mount exited on SIGTERM; detaching" >&2
        umount -l "$mnt"
    fi
}
