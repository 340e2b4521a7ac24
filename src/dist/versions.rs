//! Which version `latest` names: the `versions` file rules of dist.ipfs.tech (as `ipfs-update`
//! reads them) and a version ordering for projects without one. Pure functions.
//!
//! Rules for a `versions` file: each non-empty line names a version directory; strip one
//! leading `v`, parse as semver; skip lines that do not parse (`nightly-2024-01-01`) and
//! pre-releases (`-rc1`, `-dev`); `latest` is the highest of the rest. If no line qualifies,
//! the last non-empty line. Without a `versions` file: the highest directory name by
//! [`compare_versions`], preferring stable releases.
//!
//! Channels (`/dist/<project>/<channel>`, e.g. `beta`) live in a project-level text file named
//! `channels`: one `<channel> <version>` pair per line, separated by spaces or a tab; `#`
//! starts a comment; a later line for the same channel wins. [`parse_channels`] reads it,
//! [`format_channels`] writes it (sorted, one space), and [`valid_channel`] says which
//! channel names may be used.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The name of a project's channels file.
pub const CHANNELS_FILE: &str = "channels";
/// The name of a project's versions file.
pub const VERSIONS_FILE: &str = "versions";

/// Channel → version pairs from the text of a `channels` file. Lines that are not a
/// `<channel> <version>` pair of valid names are skipped.
pub fn parse_channels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let (Some(channel), Some(version), None) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if valid_channel(channel).is_ok() && crate::unixfs::validate_name(version).is_ok() {
            out.insert(channel.to_string(), version.to_string());
        }
    }
    out
}

/// The text of a `channels` file holding `channels`.
pub fn format_channels(channels: &BTreeMap<String, String>) -> String {
    channels.iter().map(|(c, v)| format!("{c} {v}\n")).collect()
}

/// Whether `name` can be a channel: a valid entry name made of letters, digits, `-`, `_`
/// and `.`, and not one of the names a project directory already uses (`latest`,
/// `versions`, `channels`).
pub fn valid_channel(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err("may hold only letters, digits, `-`, `_` and `.` (not first)");
    }
    if matches!(name, "latest" | VERSIONS_FILE | CHANNELS_FILE | "dist.json") {
        return Err("is a name the project directory already uses");
    }
    Ok(())
}

/// A parsed release version, `None` when `name` is not semver after stripping a leading `v`.
pub fn parse(name: &str) -> Option<semver::Version> {
    let s = name.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    semver::Version::parse(s).ok()
}

/// Whether `name` parses as a stable (non-pre-release) version.
pub fn is_stable(name: &str) -> bool {
    parse(name).is_some_and(|v| v.pre.is_empty())
}

/// The version `latest` points to, from the text of a `versions` file. `exists` tells whether a
/// version directory of that name exists; lines naming missing directories are passed over so
/// that `latest` never dangles while another candidate exists.
pub fn latest_from_versions_file(text: &str, exists: impl Fn(&str) -> bool) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && exists(l))
        .collect();
    let best = lines
        .iter()
        .filter_map(|l| parse(l).filter(|v| v.pre.is_empty()).map(|v| (v, *l)))
        .max_by(|a, b| a.0.cmp(&b.0));
    match best {
        Some((_, line)) => Some(line.to_string()),
        None => lines.last().map(|l| l.to_string()),
    }
}

/// The highest of `names` (version directory names) for a project with no `versions` file:
/// the highest stable semver if any, else the highest by [`compare_versions`].
pub fn latest_from_dirs<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let names: Vec<&str> = names.into_iter().collect();
    let stable = names
        .iter()
        .filter_map(|n| parse(n).filter(|v| v.pre.is_empty()).map(|v| (v, *n)))
        .max_by(|a, b| a.0.cmp(&b.0));
    if let Some((_, n)) = stable {
        return Some(n.to_string());
    }
    names
        .into_iter()
        .max_by(|a, b| compare_versions(a, b))
        .map(str::to_string)
}

/// Orders version-like names: semver when both parse, otherwise "natural" order where runs of
/// digits compare as numbers (`1.10` > `1.9`, `r100` > `r99`), then bytes as a tie-break.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    if let (Some(va), Some(vb)) = (parse(a), parse(b)) {
        return va.cmp(&vb).then_with(|| a.cmp(b));
    }
    natural(a, b).then_with(|| a.cmp(b))
}

fn natural(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (nx, rx) = split_digits(x);
                let (ny, ry) = split_digits(y);
                let tx = trim_zeros(nx);
                let ty = trim_zeros(ny);
                let ord = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = rx;
                y = ry;
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|c| **c == b'0').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn versions_file_picks_highest_stable() {
        // Shape of dist.ipfs.tech's kubo/versions: releases, release candidates, out of order.
        let text = "v0.21.0\nv0.22.0-rc1\nv0.22.0\nv0.23.0-rc2\nv0.9.1\n";
        assert_eq!(
            latest_from_versions_file(text, all).as_deref(),
            Some("v0.22.0")
        );
    }

    #[test]
    fn versions_file_skips_nightlies_and_dev() {
        let text = "1.0.0\nnightly-2024-01-02\n1.1.0-dev\n";
        assert_eq!(
            latest_from_versions_file(text, all).as_deref(),
            Some("1.0.0")
        );
    }

    #[test]
    fn versions_file_without_parsable_lines_takes_the_last() {
        let text = "nightly-2024-01-01\nnightly-2024-01-02\n\n";
        assert_eq!(
            latest_from_versions_file(text, all).as_deref(),
            Some("nightly-2024-01-02")
        );
        assert_eq!(latest_from_versions_file("", all), None);
    }

    #[test]
    fn versions_file_passes_over_missing_directories() {
        let text = "v1.0.0\nv2.0.0\n";
        assert_eq!(
            latest_from_versions_file(text, |v| v != "v2.0.0").as_deref(),
            Some("v1.0.0")
        );
    }

    #[test]
    fn directories_order_by_version_not_bytes() {
        assert_eq!(
            latest_from_dirs(["v1.9.0", "v1.10.0", "v1.10.1-rc1"]).as_deref(),
            Some("v1.10.0")
        );
        assert_eq!(
            latest_from_dirs(["r99", "r100", "r7"]).as_deref(),
            Some("r100")
        );
        assert_eq!(
            latest_from_dirs(["2024.1", "2024.10", "2024.9"]).as_deref(),
            Some("2024.10")
        );
        assert_eq!(latest_from_dirs(Vec::<&str>::new()), None);
    }

    #[test]
    fn channels_file_round_trip() {
        let text =
            "# channels\nbeta v1.1.0-rc1\nstable\tv1.0.0\nbad/name v1\nbeta v1.2.0-rc1\nx y z\n";
        let ch = parse_channels(text);
        assert_eq!(ch.len(), 2);
        assert_eq!(ch["beta"], "v1.2.0-rc1");
        assert_eq!(ch["stable"], "v1.0.0");
        assert_eq!(format_channels(&ch), "beta v1.2.0-rc1\nstable v1.0.0\n");
        assert_eq!(parse_channels(&format_channels(&ch)), ch);
        for bad in ["", "latest", "versions", ".hidden", "a b", "a/b"] {
            assert!(valid_channel(bad).is_err(), "{bad:?}");
        }
        assert!(valid_channel("nightly-2").is_ok());
    }

    #[test]
    fn natural_order_handles_leading_zeros() {
        assert_ne!(compare_versions("1.01", "1.1"), Ordering::Equal); // equal numbers: bytes break the tie
        assert_eq!(compare_versions("1.002", "1.10"), Ordering::Less);
    }
}
