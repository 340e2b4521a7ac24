//! The `dist.json` of a published version, in the shape dist.ipfs.tech's build writes
//! (ipfs/distributions `build-go.sh`): `id`, `version`, `releaseLink` (`<project>/<version>`),
//! `name`, `owner`, `description`, `date` (`November 22, 2026`) and `platforms` — a map of OS
//! → `{name: "<os> Binary", archs: {<arch>: {link: "/<file>", cid, sha512}}}`. Files whose
//! names say which OS (and architecture) they are for become downloads; other files (READMEs,
//! checksums) are left out, so `dist::meta` does not mark them executable. Pure functions.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// One published file, as `dist.json` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    /// The file's name in the version directory.
    pub name: String,
    /// Its root CID (as text).
    pub cid: String,
    /// Hex SHA-512 of its bytes (`None` for a directory).
    pub sha512: Option<String>,
}

/// Release facts beyond the files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// The project (`id` and `name`).
    pub project: String,
    /// The version directory's name.
    pub version: String,
    /// `owner`, if given.
    pub owner: Option<String>,
    /// `description`, if given.
    pub description: Option<String>,
}

const OSES: [&str; 6] = ["linux", "darwin", "windows", "freebsd", "openbsd", "netbsd"];

/// `(os, arch)` a file name says it is for: tokens split at `-`, `_` and `.`; common
/// architecture spellings are normalised to Go's (`x86_64` → `amd64`, `aarch64` → `arm64`).
/// An AppImage is a Linux binary. `arch` is `None` when the name names none.
pub fn platform_of(file: &str) -> Option<(&'static str, Option<&'static str>)> {
    let lower = file.to_ascii_lowercase();
    let tokens: Vec<&str> = lower.split(['-', '_', '.']).collect();
    let os = OSES
        .iter()
        .copied()
        .find(|os| tokens.contains(os))
        .or_else(|| lower.ends_with(".appimage").then_some("linux"))?;
    // "x86_64" would split into "x86" and "64": look for it whole first.
    let arch = if lower.contains("x86_64") || lower.contains("x86-64") {
        Some("amd64")
    } else {
        tokens.iter().find_map(|t| match *t {
            "amd64" | "x64" => Some("amd64"),
            "arm64" | "aarch64" => Some("arm64"),
            "386" | "i386" | "i686" => Some("386"),
            "arm" | "armv7" | "armhf" => Some("arm"),
            "riscv64" => Some("riscv64"),
            "ppc64le" => Some("ppc64le"),
            _ => None,
        })
    };
    Some((os, arch))
}

/// The `dist.json` bytes (pretty-printed, trailing newline) for `files` published at `now`.
pub fn dist_json(info: &ReleaseInfo, files: &[FileFacts], now: SystemTime) -> Vec<u8> {
    let mut platforms: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for f in files {
        let (Some((os, arch)), Some(sha512)) = (platform_of(&f.name), &f.sha512) else {
            continue;
        };
        let archs = platforms.entry(os).or_default();
        let mut key = arch.unwrap_or("any").to_string();
        if archs.contains_key(&key) {
            key = f.name.clone();
        }
        archs.insert(
            key,
            json!({ "link": format!("/{}", f.name), "cid": f.cid, "sha512": sha512 }),
        );
    }
    let platforms: Map<String, Value> = platforms
        .into_iter()
        .map(|(os, archs)| {
            (
                os.to_string(),
                json!({ "name": format!("{os} Binary"), "archs": archs }),
            )
        })
        .collect();
    let mut doc = Map::new();
    doc.insert("id".into(), json!(info.project));
    doc.insert("version".into(), json!(info.version));
    doc.insert(
        "releaseLink".into(),
        json!(format!("{}/{}", info.project, info.version)),
    );
    doc.insert("name".into(), json!(info.project));
    if let Some(owner) = &info.owner {
        doc.insert("owner".into(), json!(owner));
    }
    if let Some(d) = &info.description {
        doc.insert("description".into(), json!(d));
    }
    doc.insert("date".into(), json!(release_date(now)));
    doc.insert("platforms".into(), Value::Object(platforms));
    let mut out = serde_json::to_vec_pretty(&Value::Object(doc)).unwrap_or_default();
    out.push(b'\n');
    out
}

/// `date -u '+%B %d, %Y'` for `now` (UTC).
pub fn release_date(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let month = MONTHS
        .get(usize::try_from(m - 1).unwrap_or(0))
        .copied()
        .unwrap_or("January");
    format!("{month} {d:02}, {y}")
}

/// Proleptic Gregorian (year, month 1..=12, day 1..=31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn platforms_from_names() {
        assert_eq!(
            platform_of("kubo_v0.22.0_linux-amd64.tar.gz"),
            Some(("linux", Some("amd64")))
        );
        assert_eq!(
            platform_of("hello-x86_64.AppImage"),
            Some(("linux", Some("amd64")))
        );
        assert_eq!(
            platform_of("tool-darwin-arm64.zip"),
            Some(("darwin", Some("arm64")))
        );
        assert_eq!(platform_of("App.AppImage"), Some(("linux", None)));
        assert_eq!(platform_of("README.md"), None);
        assert_eq!(platform_of("SHA512SUMS"), None);
    }

    #[test]
    fn dates() {
        assert_eq!(release_date(UNIX_EPOCH), "January 01, 1970");
        // 2026-11-22T23:56:00Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_391_760);
        assert_eq!(release_date(t), "November 22, 2026");
        // 2024-02-29 (a leap day)
        let t = UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(release_date(t), "February 29, 2024");
    }

    #[test]
    fn dist_json_has_the_site_fields_and_meta_reads_it() {
        let info = ReleaseInfo {
            project: "hello".into(),
            version: "v1.0.0".into(),
            owner: Some("example".into()),
            description: None,
        };
        let files = [
            FileFacts {
                name: "hello-x86_64.AppImage".into(),
                cid: "bafyA".into(),
                sha512: Some("aa".into()),
            },
            FileFacts {
                name: "hello_v1.0.0_linux-arm64.tar.gz".into(),
                cid: "bafyB".into(),
                sha512: Some("bb".into()),
            },
            FileFacts {
                name: "README.md".into(),
                cid: "bafyC".into(),
                sha512: Some("cc".into()),
            },
        ];
        let bytes = dist_json(&info, &files, UNIX_EPOCH);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], "hello");
        assert_eq!(v["version"], "v1.0.0");
        assert_eq!(v["releaseLink"], "hello/v1.0.0");
        assert_eq!(v["owner"], "example");
        assert_eq!(v["date"], "January 01, 1970");
        let amd = &v["platforms"]["linux"]["archs"]["amd64"];
        assert_eq!(amd["link"], "/hello-x86_64.AppImage");
        assert_eq!(amd["cid"], "bafyA");
        assert_eq!(amd["sha512"], "aa");
        assert_eq!(v["platforms"]["linux"]["name"], "linux Binary");
        let binaries = crate::dist::meta::binaries_in_dist_json(&bytes).unwrap();
        assert_eq!(
            binaries.into_iter().collect::<Vec<_>>(),
            vec!["hello-x86_64.AppImage", "hello_v1.0.0_linux-arm64.tar.gz"]
        );
    }
}
