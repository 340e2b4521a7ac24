//! The generated distribution tree the mount tests import, and the comparison of a mounted
//! tree against its source with real tools (`find`, `sha256sum`, `readlink`, `cp -r` +
//! `diff -r`, `stat`, `ls -lR`, `getfattr`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::harness::{run, run_ok};
use crate::support::{distfs_add, write_bytes, write_det};

/// Entries in the directory that must HAMT-shard: 2,500 × (81-byte name + 34-byte CID)
/// ≈ 287 KB, over Kubo's 256 KiB estimate threshold.
pub const MANY: usize = 2500;
/// The `latest` each project must get: by `versions` file (skipping a pre-release, and a
/// line naming a missing directory), and by semver order of directory names (0.10.0 > 0.9.0).
pub const LATEST: [(&str, &str); 3] = [("alpha", "v1.1.0"), ("beta", "0.10.0"), ("gamma", "1.2.0")];

fn many_name(i: usize) -> String {
    format!("entry-{i:05}-{}", "x".repeat(69))
}

/// Writes the content of one version directory: the interesting sizes, names, symlinks and
/// an executable script.
fn version_dir(dir: &Path, seed: &str) {
    write_bytes(&dir.join("empty.txt"), b"");
    write_det(&dir.join("one.bin"), &format!("{seed}/one"), 1);
    write_det(&dir.join("exact.bin"), &format!("{seed}/exact"), 262_144);
    write_det(&dir.join("over.bin"), &format!("{seed}/over"), 262_145);
    write_det(
        &dir.join("three.bin"),
        &format!("{seed}/three"),
        3 * 1024 * 1024 + 5,
    );
    write_bytes(
        &dir.join("with space.txt"),
        format!("spaces {seed}\n").as_bytes(),
    );
    write_bytes(
        &dir.join("ünïcødé ✓ 日本.txt"),
        format!("unicode {seed}\n").as_bytes(),
    );
    write_bytes(
        &dir.join("bin/run.sh"),
        format!("#!/bin/sh\necho {seed}\n").as_bytes(),
    );
    write_bytes(
        &dir.join("nested/a/b/deep.txt"),
        format!("deep {seed}\n").as_bytes(),
    );
    std::os::unix::fs::symlink("one.bin", dir.join("link-one")).unwrap();
    std::os::unix::fs::symlink("../../one.bin", dir.join("nested/a/up")).unwrap();
    std::os::unix::fs::symlink("b/deep.txt", dir.join("nested/a/to deep")).unwrap();
}

/// Builds the source tree under `root` (3 projects, 2-3 versions each, a 40 MiB file and a
/// 2,500-entry directory). With `preserve`, sets distinctive modes and mtimes on everything.
pub fn build(root: &Path, preserve: bool) {
    let alpha = root.join("alpha");
    write_bytes(&alpha.join("versions"), b"v1.0.0\nv1.1.0\nv2.0.0-rc1\n");
    version_dir(&alpha.join("v1.0.0"), "alpha-1.0.0");
    version_dir(&alpha.join("v1.1.0"), "alpha-1.1.0");
    write_det(
        &alpha.join("v1.1.0/big.bin"),
        "alpha-1.1.0/big",
        40 * 1024 * 1024 + 3,
    );
    write_bytes(&alpha.join("v2.0.0-rc1/README"), b"release candidate\n");

    let beta = root.join("beta");
    version_dir(&beta.join("0.9.0"), "beta-0.9.0");
    for i in 0..MANY {
        write_bytes(
            &beta.join("0.10.0/many").join(many_name(i)),
            format!("entry {i}\n").as_bytes(),
        );
    }
    write_bytes(&beta.join("0.10.0/many/ünïcødé entry"), b"u\n");

    let gamma = root.join("gamma");
    write_bytes(&gamma.join("versions"), b"1.0.0\n1.2.0\n1.3.0\n");
    write_bytes(&gamma.join("1.0.0/notes.txt"), b"gamma 1.0.0\n");
    write_bytes(&gamma.join("1.2.0/notes.txt"), b"gamma 1.2.0\n");

    if preserve {
        let mut all = walk(root);
        // Deepest first, so that setting a child's mtime does not disturb its parent's.
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for (i, p) in all.iter().enumerate() {
            let meta = fs::symlink_metadata(p).unwrap();
            if meta.file_type().is_symlink() {
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let mode = if meta.is_dir() {
                if name == "nested" {
                    0o750
                } else {
                    0o755
                }
            } else if name == "run.sh" {
                0o755
            } else if name == "exact.bin" {
                0o600
            } else {
                0o640
            };
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
            let nanos = if meta.is_dir() {
                0
            } else {
                (i as u32 * 7919) % 1_000_000_000
            };
            let t = UNIX_EPOCH + Duration::new(1_500_000_000 + i as u64 * 61, nanos);
            fs::File::open(p).unwrap().set_modified(t).unwrap();
        }
    }
}

/// Every path under `root` (not `root` itself), files, dirs and symlinks.
pub fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// How a tree was imported, so the comparison knows which attributes it can expect.
pub struct Variant {
    pub flags: &'static [&'static str],
    /// Modes and mtimes were stored (`--preserve-mode --preserve-mtime`).
    pub preserved: bool,
}

/// `find -printf` lines (`type size mode [mtime] path`), sorted, for comparison. Directory
/// sizes are left out (a mount reports 0, ext4 4096); the synthetic `latest` links are
/// checked separately and dropped here.
fn listing(root: &Path, v: &Variant, expected_modes: bool) -> Vec<String> {
    let fmt = if v.preserved {
        "%y\t%s\t%m\t%T@\t%P\n"
    } else {
        "%y\t%s\t%m\t%P\n"
    };
    let out = run_ok(
        "find",
        &[root.to_str().unwrap(), "-mindepth", "1", "-printf", fmt],
    );
    let mut lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| {
            !LATEST
                .iter()
                .any(|(p, _)| l.ends_with(&format!("\t{p}/latest")))
        })
        .map(|l| {
            let mut f: Vec<String> = l.split('\t').map(str::to_string).collect();
            if f[0] == "d" {
                f[1] = "-".into();
            }
            if expected_modes && !v.preserved {
                // What the mount must show for content without stored modes.
                let path = root.join(f.last().unwrap());
                f[2] = match f[0].as_str() {
                    "d" => "555".into(),
                    "l" => "777".into(),
                    _ => {
                        let head: Vec<u8> = fs::read(&path).unwrap().into_iter().take(4).collect();
                        if head.starts_with(b"#!") || head.starts_with(b"\x7fELF") {
                            "555".into()
                        } else {
                            "444".into()
                        }
                    }
                };
            }
            if v.preserved && f[0] == "l" {
                // Symlink mtimes are not compared: the test cannot set them portably.
                f[3] = "-".into();
            }
            f.join("\t")
        })
        .collect();
    lines.sort();
    lines
}

fn assert_same_lines(what: &str, want: &[String], got: &[String]) {
    if want == got {
        return;
    }
    let missing: Vec<&String> = want.iter().filter(|l| !got.contains(l)).take(10).collect();
    let extra: Vec<&String> = got.iter().filter(|l| !want.contains(l)).take(10).collect();
    panic!(
        "{what}: {} lines in the source, {} in the mount\nexpected but missing (first 10): {missing:#?}\nunexpected (first 10): {extra:#?}",
        want.len(),
        got.len()
    );
}

fn sha_all(root: &Path) -> Vec<String> {
    let script = "cd \"$1\" && find . -type f -print0 | sort -z | xargs -0 sha256sum";
    let out = run_ok("sh", &["-c", script, "sh", root.to_str().unwrap()]);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Compares the mounted tree `mnt` with its source `src` in every way the brief lists.
pub fn compare(src: &Path, mnt: &Path, v: &Variant, scratch: &Path) {
    // 1. Names, types, sizes, modes (and mtimes when preserved).
    let want = listing(src, v, true);
    assert!(want.len() > MANY, "the source listing has every entry");
    if v.preserved {
        assert!(
            want.iter().any(|l| l.contains("\t640\t")),
            "distinctive modes were set"
        );
    } else {
        assert!(
            want.iter()
                .any(|l| l.starts_with("f\t") && l.contains("\t555\t")),
            "executables exist"
        );
    }
    assert_same_lines("find -printf", &want, &listing(mnt, v, false));

    // 2. Contents of every file.
    let want = sha_all(src);
    assert!(want.len() > MANY, "the source has all its files");
    assert_same_lines("sha256sum", &want, &sha_all(mnt));

    // 3. Symlink targets, and `latest`.
    for p in walk(src) {
        if fs::symlink_metadata(&p).unwrap().file_type().is_symlink() {
            let rel = p.strip_prefix(src).unwrap();
            let got = run_ok("readlink", &[mnt.join(rel).to_str().unwrap()]);
            let want = fs::read_link(&p).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got).trim_end(),
                want.to_str().unwrap(),
                "readlink {}",
                rel.display()
            );
        }
    }
    for (project, version) in LATEST {
        let link = mnt.join(project).join("latest");
        let got = run_ok("readlink", &[link.to_str().unwrap()]);
        assert_eq!(
            String::from_utf8_lossy(&got).trim_end(),
            version,
            "{project}/latest"
        );
        // And it resolves: the same listing as the version directory.
        let via = run_ok("ls", &[link.join(".").to_str().unwrap()]);
        let direct = run_ok("ls", &[mnt.join(project).join(version).to_str().unwrap()]);
        assert_eq!(via, direct, "{project}/latest/ lists {version}");
    }

    // 4. `cp -r` of each version directory, then `diff -r` with the source.
    for (i, (project, version)) in [
        ("alpha", "v1.0.0"),
        ("alpha", "v1.1.0"),
        ("beta", "0.10.0"),
        ("gamma", "1.2.0"),
    ]
    .iter()
    .enumerate()
    {
        let copy = scratch.join(format!("copy-{i}"));
        let from = mnt.join(project).join(version);
        run_ok(
            "cp",
            &["-r", from.to_str().unwrap(), copy.to_str().unwrap()],
        );
        let orig = src.join(project).join(version);
        run_ok(
            "diff",
            &["-r", orig.to_str().unwrap(), copy.to_str().unwrap()],
        );
        fs::remove_dir_all(&copy).unwrap();
    }

    // 5. `stat` of everything and `ls -lR` run cleanly.
    let out = run(
        "sh",
        &[
            "-c",
            "find \"$1\" -exec stat {} + >/dev/null",
            "sh",
            mnt.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "stat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("ls", &["-lR", mnt.to_str().unwrap()]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ls -lR: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.len() > MANY * 80,
        "ls -lR listed the big directory"
    );

    // 6. `user.ipfs.cid` is what `distfs add -Q` (same options) says, for every project,
    // version, file and directory outside the big directory, that directory and a sample of it.
    let mut checked = 0;
    for p in walk(src) {
        let rel = p.strip_prefix(src).unwrap();
        let s = rel.to_string_lossy();
        let in_many = s.contains("/many/");
        let sample = s.ends_with(&many_name(0))
            || s.ends_with(&many_name(MANY - 1))
            || s.ends_with("ünïcødé entry");
        if fs::symlink_metadata(&p).unwrap().file_type().is_symlink() || (in_many && !sample) {
            continue;
        }
        let want = distfs_add(&p, v.flags).unwrap();
        let got = run_ok(
            "getfattr",
            &[
                "-n",
                "user.ipfs.cid",
                "--only-values",
                mnt.join(rel).to_str().unwrap(),
            ],
        );
        assert_eq!(String::from_utf8_lossy(&got), want, "user.ipfs.cid of {s}");
        checked += 1;
    }
    assert!(checked > 40, "checked the CIDs of {checked} paths");
}
