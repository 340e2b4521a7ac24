//! AppImages for the tests, made the way the demo and the benchmarks make them: the AppDir
//! by `scripts/mkdemoapp`, packed by `scripts/mkappimage` around the runtime cargo built for
//! this test run (`distfs-appimage-runtime`), laid out as a distribution tree.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::repo_root;

/// The runtime binary cargo built for this test run.
pub fn runtime_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distfs-appimage-runtime"))
}

fn script(name: &str, args: &[&Path], env: &[(&str, &Path)]) {
    let mut cmd = Command::new(repo_root().join("scripts").join(name));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn scripts/{name}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{name} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The file name of `name`'s AppImage in a version directory.
pub fn appimage_name(name: &str) -> String {
    format!("{name}-x86_64.AppImage")
}

/// Writes `name`'s AppDir at `version` into `dir` (`payload_mib` MiB of shared assets).
pub fn app_dir(name: &str, version: &str, dir: &Path, payload_mib: u32) {
    let mib = payload_mib.to_string();
    script(
        "mkdemoapp",
        &[
            Path::new(name),
            Path::new(version),
            dir,
            Path::new(mib.as_str()),
        ],
        &[],
    );
}

/// Packs `appdir` into the AppImage `out`.
pub fn pack(appdir: &Path, out: &Path) {
    let runtime = runtime_bin();
    script(
        "mkappimage",
        &[appdir, out],
        &[("DISTFS_APPIMAGE_RUNTIME", &runtime)],
    );
}

/// Builds `dist/<name>/<version>/<name>-x86_64.AppImage` for every version (the AppDirs go
/// to `appdirs/<version>`) and a `versions` file listing them in order.
pub fn dist_tree(dist: &Path, appdirs: &Path, name: &str, versions: &[&str], payload_mib: u32) {
    for v in versions {
        let appdir = appdirs.join(v);
        app_dir(name, v.trim_start_matches('v'), &appdir, payload_mib);
        let vdir = dist.join(name).join(v);
        std::fs::create_dir_all(&vdir).expect("create version dir");
        pack(&appdir, &vdir.join(appimage_name(name)));
    }
    let list: String = versions.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(dist.join(name).join("versions"), list).expect("write versions");
}
