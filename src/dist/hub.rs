//! The hub index: a distribution root may hold a `projects.json` that lists projects living
//! under names of their own, as a curator publishes a catalogue. Pure parsing and writing.
//!
//! Format (UTF-8 JSON, at most [`MAX_HUB_FILE`] bytes and [`MAX_HUB_ENTRIES`] entries):
//!
//! ```json
//! {"projects": {
//!   "hello": {"root": "/ipns/k51qzi5uqu5d...", "publisher": "k51qzi5uqu5d..."},
//!   "tool":  {"root": "/ipns/tool.example.org"}
//! }}
//! ```
//!
//! `root` is an `/ipns/<key>`, `/ipns/<dnslink-domain>` or `/ipfs/<cid>` naming the project's
//! own tree (version directories, `versions`, no project level above); `publisher`, when
//! given, is the only key whose record may give that root. The top level and each entry allow
//! no other keys. The file as a whole must parse; each entry is then checked on its own: an
//! entry with a hostile name (empty, `.`, `..`, `/`, NUL, control characters, over 255
//! bytes) or an unusable `root`/`publisher` is rejected alone, with its reason, and the others
//! stay.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::{IpnsName, RootSpec};

/// The index file's name at a distribution root.
pub const HUB_FILE: &str = "projects.json";
/// The largest index read.
pub const MAX_HUB_FILE: u64 = 4 * 1024 * 1024;
/// The most entries an index may hold.
pub const MAX_HUB_ENTRIES: usize = 20_000;

/// Why an index could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Larger than [`MAX_HUB_FILE`].
    #[error("{HUB_FILE} is {size} bytes, over the {MAX_HUB_FILE}-byte limit")]
    TooLarge { size: u64 },
    /// More than [`MAX_HUB_ENTRIES`] entries.
    #[error("{HUB_FILE} lists {count} projects, over the limit of {MAX_HUB_ENTRIES}")]
    TooMany { count: usize },
    /// Not the documented JSON shape.
    #[error("{HUB_FILE} is not a valid index: {0}")]
    Json(#[from] serde_json::Error),
}

/// Where a project's own tree is: its root spec and the key pinned to sign it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectSource {
    /// The project's root (`/ipns/...` or `/ipfs/...`).
    pub root: RootSpec,
    /// The only key whose record may give the root, if pinned.
    pub publisher: Option<IpnsName>,
}

/// A parsed index: the usable entries and the rejected ones with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubIndex {
    /// Usable entries by project name.
    pub entries: BTreeMap<String, ProjectSource>,
    /// (name, reason) of each rejected entry.
    pub rejected: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndex {
    projects: BTreeMap<String, serde_json::Value>,
}

/// One entry as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    /// The project's root spec.
    pub root: String,
    /// The pinned publisher's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
}

/// Whether `name` can name a project under `/dist`: a valid entry name (not empty, `.`,
/// `..`, no `/` or NUL, at most 255 bytes) without control characters.
pub fn validate_project_name(name: &str) -> Result<(), String> {
    crate::unixfs::validate_name(name).map_err(|e| e.to_string())?;
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} contains a control character"));
    }
    Ok(())
}

/// A source from the strings of a config entry or an index entry.
pub fn source_of(root: &str, publisher: Option<&str>) -> Result<ProjectSource, String> {
    let root: RootSpec = root
        .parse()
        .map_err(|e: crate::name::RootSpecError| e.to_string())?;
    let publisher = match publisher {
        Some(p) => Some(
            p.trim_start_matches("/ipns/")
                .parse::<IpnsName>()
                .map_err(|e| format!("publisher: {e}"))?,
        ),
        None => None,
    };
    Ok(ProjectSource { root, publisher })
}

/// Parses an index; see the module doc for what is rejected as a whole and what alone.
pub fn parse(bytes: &[u8]) -> Result<HubIndex, HubError> {
    if bytes.len() as u64 > MAX_HUB_FILE {
        return Err(HubError::TooLarge {
            size: bytes.len() as u64,
        });
    }
    let raw: RawIndex = serde_json::from_slice(bytes)?;
    if raw.projects.len() > MAX_HUB_ENTRIES {
        return Err(HubError::TooMany {
            count: raw.projects.len(),
        });
    }
    let mut out = HubIndex::default();
    for (name, value) in raw.projects {
        let checked = validate_project_name(&name).and_then(|()| {
            let entry: RawEntry = serde_json::from_value(value).map_err(|e| e.to_string())?;
            source_of(&entry.root, entry.publisher.as_deref())
        });
        match checked {
            Ok(source) => {
                out.entries.insert(name, source);
            }
            Err(reason) => out
                .rejected
                .push((name.chars().take(300).collect(), reason)),
        }
    }
    Ok(out)
}

/// The text of an index holding `entries` (sorted by name, one entry per line).
pub fn format(entries: &BTreeMap<String, RawEntry>) -> Vec<u8> {
    let mut out = String::from("{\"projects\": {\n");
    let mut first = true;
    for (name, entry) in entries {
        if !first {
            out.push_str(",\n");
        }
        first = false;
        let key = serde_json::to_string(name).unwrap_or_default();
        let value = serde_json::to_string(entry).unwrap_or_default();
        out.push_str(&format!("  {key}: {value}"));
    }
    out.push_str("\n}}\n");
    out.into_bytes()
}

/// The raw entries of an index text, for editing (the whole file must parse).
pub fn raw_entries(bytes: &[u8]) -> Result<BTreeMap<String, RawEntry>, HubError> {
    if bytes.len() as u64 > MAX_HUB_FILE {
        return Err(HubError::TooLarge {
            size: bytes.len() as u64,
        });
    }
    let raw: RawIndex = serde_json::from_slice(bytes)?;
    let mut out = BTreeMap::new();
    for (name, value) in raw.projects {
        out.insert(name, serde_json::from_value(value)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";

    #[test]
    fn good_entries_stay_when_others_are_hostile() {
        let text = format!(
            r#"{{"projects": {{
                "hello": {{"root": "/ipns/{K}", "publisher": "{K}"}},
                "tool": {{"root": "/ipns/tool.example.org"}},
                "..": {{"root": "/ipns/{K}"}},
                "a/b": {{"root": "/ipns/{K}"}},
                "bell\u0007": {{"root": "/ipns/{K}"}},
                "nokey": {{"root": "/ipns/{K}", "extra": 1}},
                "badroot": {{"root": "ipns/x"}},
                "badpub": {{"root": "/ipns/{K}", "publisher": "nope"}}
            }}}}"#
        );
        let idx = parse(text.as_bytes()).unwrap();
        assert_eq!(
            idx.entries.keys().collect::<Vec<_>>(),
            ["hello", "tool"],
            "{idx:?}"
        );
        assert!(idx.entries["hello"].publisher.is_some());
        let rejected: Vec<&str> = idx.rejected.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(rejected.len(), 6, "{rejected:?}");
        for (name, reason) in &idx.rejected {
            assert!(!reason.is_empty(), "{name}");
        }
    }

    #[test]
    fn the_file_as_a_whole_must_parse() {
        assert!(parse(b"{not json").is_err());
        assert!(parse(br#"{"projects": {}, "other": 1}"#).is_err());
        assert!(parse(br#"{"projekts": {}}"#).is_err());
        let big = vec![b' '; MAX_HUB_FILE as usize + 1];
        assert!(matches!(parse(&big), Err(HubError::TooLarge { .. })));
    }

    #[test]
    fn format_round_trips() {
        let mut entries = BTreeMap::new();
        entries.insert(
            "b".to_string(),
            RawEntry {
                root: format!("/ipns/{K}"),
                publisher: Some(K.into()),
            },
        );
        entries.insert(
            "a".to_string(),
            RawEntry {
                root: format!("/ipns/{K}"),
                publisher: None,
            },
        );
        let text = format(&entries);
        assert_eq!(raw_entries(&text).unwrap(), entries);
        assert_eq!(parse(&text).unwrap().entries.len(), 2);
    }
}
