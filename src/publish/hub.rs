//! The hub curator's command: adds, updates or removes one entry of the `projects.json` index
//! (`dist::hub`) at the root the curator's key names, and republishes that root, in one run.
//!
//! Like [`super::publish`]: the current root comes from the target's record for the key (or
//! `--root`), only the root directory and the index are read, the rebuilt root is signed with
//! sequence + 1, and the new blocks then the record are pushed. The entry is checked as the
//! mount checks it (name, root spec, publisher); the index as a whole must parse, so a broken
//! index is never silently replaced.

use std::collections::BTreeMap;
use std::time::SystemTime;

use cid::Cid;

use super::{current, import_options, push, remote, Options, PublishError, PushReport};
use crate::dist::hub::{self, RawEntry, HUB_FILE, MAX_HUB_FILE};
use crate::fetch::{Fetcher, FetcherConfig, PushClient};
use crate::import::VecSink;
use crate::name::key::Keypair;
use crate::name::record;
use crate::walk;

/// One change to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEdit {
    /// A new entry (refused if the name is listed already).
    Add { name: String, entry: RawEntry },
    /// A new root or publisher for a listed entry.
    Update { name: String, entry: RawEntry },
    /// Drop a listed entry.
    Remove { name: String },
}

impl HubEdit {
    fn name(&self) -> &str {
        match self {
            HubEdit::Add { name, .. } | HubEdit::Update { name, .. } | HubEdit::Remove { name } => {
                name
            }
        }
    }
}

/// What a hub edit did.
#[derive(Clone, Debug)]
pub struct HubEdited {
    /// The curator key's IPNS name.
    pub name: String,
    /// The root before (if any).
    pub previous: Option<Cid>,
    /// The new root.
    pub root: Cid,
    /// The new record's sequence.
    pub sequence: u64,
    /// Entries in the index now.
    pub entries: usize,
    /// What was uploaded.
    pub pushed: PushReport,
}

fn bad(name: &str, reason: impl Into<String>) -> PublishError {
    PublishError::BadName {
        what: "hub entry",
        name: name.chars().take(100).collect(),
        reason: reason.into(),
    }
}

/// Applies `edit` to `entries`, checking the entry as a mount would.
pub fn apply(entries: &mut BTreeMap<String, RawEntry>, edit: HubEdit) -> Result<(), PublishError> {
    let name = edit.name().to_string();
    hub::validate_project_name(&name).map_err(|e| bad(&name, e))?;
    match edit {
        HubEdit::Add { entry, .. } | HubEdit::Update { entry, .. }
            if hub::source_of(&entry.root, entry.publisher.as_deref()).is_err() =>
        {
            let e = hub::source_of(&entry.root, entry.publisher.as_deref()).err();
            Err(bad(&name, e.unwrap_or_default()))
        }
        HubEdit::Add { entry, .. } => {
            if entries.contains_key(&name) {
                return Err(bad(&name, "is listed already (use `hub update`)"));
            }
            entries.insert(name, entry);
            Ok(())
        }
        HubEdit::Update { entry, .. } => match entries.get_mut(&name) {
            Some(e) => {
                *e = entry;
                Ok(())
            }
            None => Err(bad(&name, "is not listed (use `hub add`)")),
        },
        HubEdit::Remove { .. } => match entries.remove(&name) {
            Some(_) => Ok(()),
            None => Err(bad(&name, "is not listed")),
        },
    }
}

/// Edits the index at the root `key`'s name points at and republishes it to the target.
#[tracing::instrument(skip_all, fields(project = %edit.name()))]
pub async fn edit_hub(
    key: &Keypair,
    edit: HubEdit,
    client: &PushClient,
    opts: &Options,
) -> Result<HubEdited, PublishError> {
    let name = key.name();
    let cur = current(client, &name, opts.root).await?;
    let mut sources = vec![client.base().to_string()];
    sources.extend(opts.gateways.iter().cloned());
    let fetcher = Fetcher::from_gateways(&sources, FetcherConfig::default())
        .map_err(|e| PublishError::Fetch(e.to_string()))?;
    let store = remote::Remote::new(fetcher);
    let mut entries = match &cur.root {
        Some(root) => match walk::lookup(&store, root, HUB_FILE).await? {
            Some(file) => {
                let stat = walk::stat(&store, &file.cid).await?;
                if stat.size > MAX_HUB_FILE {
                    return Err(PublishError::TooLarge {
                        what: HUB_FILE.into(),
                        size: stat.size,
                        max: MAX_HUB_FILE,
                    });
                }
                let bytes = walk::read_range(&store, &file.cid, 0, stat.size).await?;
                hub::raw_entries(&bytes).map_err(|e| PublishError::BadFile {
                    path: HUB_FILE.into(),
                    reason: format!("{e}; fix it by hand before editing it"),
                })?
            }
            None => BTreeMap::new(),
        },
        None => BTreeMap::new(),
    };
    apply(&mut entries, edit)?;
    let text = String::from_utf8(hub::format(&entries)).map_err(|_| PublishError::NotText {
        what: HUB_FILE.into(),
    })?;
    let mut sink = VecSink::default();
    let root = super::layout::set_text_file(
        &store,
        cur.root.as_ref(),
        HUB_FILE,
        &text,
        &import_options(),
        &mut sink,
    )
    .await?;
    let eol = SystemTime::now() + opts.lifetime;
    let rec = record::create(
        key,
        &format!("/ipfs/{root}"),
        cur.next_sequence,
        eol,
        opts.ttl,
    )
    .map_err(|e| PublishError::Sign(e.to_string()))?;
    let pushed = push::push_blocks(client, sink, &root, &opts.token).await?;
    client.put_record(&name.to_string(), rec).await?;
    Ok(HubEdited {
        name: name.to_string(),
        previous: cur.root,
        root,
        sequence: cur.next_sequence,
        entries: entries.len(),
        pushed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";

    fn entry() -> RawEntry {
        RawEntry {
            root: format!("/ipns/{K}"),
            publisher: Some(K.into()),
        }
    }

    #[test]
    fn edits_are_checked() {
        let mut e = BTreeMap::new();
        let add = |name: &str| HubEdit::Add {
            name: name.into(),
            entry: entry(),
        };
        apply(&mut e, add("hello")).unwrap();
        assert!(apply(&mut e, add("hello")).is_err(), "added twice");
        assert!(apply(&mut e, add("..")).is_err());
        assert!(apply(&mut e, add("a/b")).is_err());
        let bad_root = HubEdit::Add {
            name: "x".into(),
            entry: RawEntry {
                root: "ipns/x".into(),
                publisher: None,
            },
        };
        assert!(apply(&mut e, bad_root).is_err());
        let update = HubEdit::Update {
            name: "nope".into(),
            entry: entry(),
        };
        assert!(apply(&mut e, update).is_err());
        apply(
            &mut e,
            HubEdit::Remove {
                name: "hello".into(),
            },
        )
        .unwrap();
        assert!(e.is_empty());
        assert!(apply(
            &mut e,
            HubEdit::Remove {
                name: "hello".into()
            }
        )
        .is_err());
    }
}
