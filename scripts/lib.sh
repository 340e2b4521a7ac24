# Shared set-up for scripts/demo and scripts/test: installs what distfs needs on a fresh
# Debian machine (apt packages, a Rust toolchain if none) and builds nothing by itself.
# Sourced, not run.

DISTFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DISTFS_ROOT

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt packages the project uses at build, test or run time.
ensure_apt() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing apt packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust() {
    if command -v cargo >/dev/null 2>&1; then return 0; fi
    [ -x "$HOME/.cargo/bin/cargo" ] && { export PATH="$HOME/.cargo/bin:$PATH"; return 0; }
    say "no Rust toolchain found: installing rustup from Debian"
    ensure_apt rustup
    rustup default stable
    export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null 2>&1 || die "cargo still missing after installing rustup"
}

ensure_base() {
    ensure_apt build-essential pkg-config curl jq bc python3 python3-venv \
        fuse3 squashfs-tools squashfuse attr dnsmasq-base \
        man-db groff-base bsdextrautils systemd util-linux mount
    # Node may come from another packaging (with npm bundled): install Debian's only if absent.
    command -v node >/dev/null 2>&1 || ensure_apt nodejs
    command -v npm >/dev/null 2>&1 || ensure_apt npm
    ensure_rust
}
