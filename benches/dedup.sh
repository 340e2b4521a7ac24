#!/usr/bin/env bash
# Dedup benchmark on real software: consecutive releases of an npm package, each packed the
# same way as a squashfs image and as an AppImage (an ELF prefix + the image), then for each
# pair N -> N+1 the bytes of N+1 not already present in N under fixed 256 KiB chunks,
# buzhash, the squashfs-aware chunker, the ideal, and zsync (see benches/dedup.rs).
#
# Usage: benches/dedup.sh [PACKAGE [VERSION...]]   (default: typescript 5.4.3 5.4.4 5.4.5)
# Env:   MKSQUASHFS_OPTS  extra publisher options (default: "-comp zstd"; e.g. add
#                         "-no-fragments" to see what fragments cost)
#        RUNTIME          the ELF put before the image for the AppImage form (default: the
#                         project's AppImage runtime when built, else /bin/true)
# Packages come from the registry npm is configured with (`npm pack`); nothing else is
# downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_apt squashfs-tools
command -v npm >/dev/null || ensure_apt npm

pkg=${1:-typescript}
shift || true
versions=("$@")
[ ${#versions[@]} -ge 2 ] || versions=(5.4.3 5.4.4 5.4.5)
opts=${MKSQUASHFS_OPTS:--comp zstd}
runtime=${RUNTIME:-}
if [ -z "$runtime" ]; then
    runtime=/bin/true
    for r in target/release/distfs-appimage-runtime target/debug/distfs-appimage-runtime; do
        [ -x "$r" ] && { runtime=$r; break; }
    done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "packing $pkg ${versions[*]} with mksquashfs $opts (runtime for AppImages: $runtime)"
for v in "${versions[@]}"; do
    mkdir -p "$work/$v"
    tarball=$(cd "$work" && npm pack --silent "$pkg@$v" 2>/dev/null | tail -1)
    tar -xzf "$work/$tarball" -C "$work/$v"
    # Reproducible: fixed times, root-owned, no xattrs; mksquashfs sorts entries by name.
    # shellcheck disable=SC2086
    mksquashfs "$work/$v/package" "$work/$v.sqfs" -noappend -quiet -no-progress \
        -all-root -no-xattrs -mkfs-time 0 -all-time 0 $opts >/dev/null
    cat "$runtime" "$work/$v.sqfs" >"$work/$v.AppImage"
    printf '%s %s: %s files, %s bytes unpacked, image %s bytes\n' "$pkg" "$v" \
        "$(find "$work/$v/package" -type f | wc -l)" \
        "$(du -sb "$work/$v/package" | cut -f1)" "$(stat -c %s "$work/$v.sqfs")" >&2
done

args=()
for ((i = 0; i + 1 < ${#versions[@]}; i++)); do
    a=${versions[i]} b=${versions[i + 1]}
    args+=("$pkg $a → $b, squashfs image=$work/$a.sqfs,$work/$b.sqfs")
    args+=("$pkg $a → $b, AppImage=$work/$a.AppImage,$work/$b.AppImage")
done
echo "mksquashfs options: -noappend -all-root -no-xattrs -mkfs-time 0 -all-time 0 $opts"
cargo bench --quiet --profile dev --bench dedup -- "${args[@]}"
