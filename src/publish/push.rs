//! Getting a release's bytes into blocks and the blocks to the target.
//!
//! [`import_files`] imports each file (by its base name, with the chunking
//! `publish::import_options_for` picks) and hashes it with SHA-512 for `dist.json`.
//! [`push_blocks`] asks the target which new blocks it already holds (`HEAD`, a few at a
//! time), then uploads the rest, leaves first and the root last, as CARs of at most
//! [`MAX_CAR_BYTES`] each, so that the root only appears once everything below it is there.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cid::Cid;
use futures::stream::{self, StreamExt};
use sha2::{Digest, Sha512};

use super::distjson::FileFacts;
use super::{import_options, PublishError};
use crate::block::Block;
use crate::car::{encode_header, encode_section};
use crate::fetch::PushClient;
use crate::import::{add_path, import_file, DirEntry, ImportOptions, Metadata, VecSink};

/// The largest CAR sent in one upload (the server's default limit is 128 MiB).
pub const MAX_CAR_BYTES: usize = 16 * 1024 * 1024;
/// `HEAD` requests in flight at once.
const HEAD_CONCURRENCY: usize = 16;

/// What [`push_blocks`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// New blocks of this release.
    pub blocks: u64,
    /// Of those, blocks the target already held (not sent).
    pub skipped: u64,
    /// Blocks sent.
    pub sent: u64,
    /// Bytes of block data sent.
    pub bytes: u64,
    /// CAR uploads made.
    pub uploads: u64,
}

/// Imports `files` into memory: blocks, `dist.json` facts and version-directory entries.
pub fn import_files(
    files: &[PathBuf],
    chunking: fn(&Path, &[u8]) -> ImportOptions,
) -> Result<(VecSink, Vec<FileFacts>, Vec<DirEntry>), PublishError> {
    let mut sink = VecSink::default();
    let mut facts = Vec::new();
    let mut entries: Vec<DirEntry> = Vec::new();
    let mut names = HashSet::new();
    for path in files {
        let io = |source| PublishError::Io {
            path: path.clone(),
            source,
        };
        let bad = |reason: &str| PublishError::BadFile {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad("has no UTF-8 file name"))?
            .to_string();
        if name == "dist.json" {
            return Err(bad(
                "dist.json is written by distfs publish; leave it out of FILES",
            ));
        }
        if !names.insert(name.clone()) {
            return Err(bad(
                "two FILES have this base name; the version directory needs unique names",
            ));
        }
        let meta = std::fs::metadata(path).map_err(io)?;
        let (head, sha512) = if meta.is_file() {
            let (head, sha) = head_and_sha512(path).map_err(io)?;
            (head, Some(sha))
        } else {
            (Vec::new(), None)
        };
        let opts = chunking(path, &head);
        let mut top = None;
        let cid = add_path(path, &opts, &mut sink, &mut |e| top = Some(e.clone()))?;
        let tsize = top.filter(|e| e.cid == cid).map_or(0, |e| e.tsize);
        facts.push(FileFacts {
            name: name.clone(),
            cid: cid.to_string(),
            sha512,
        });
        entries.push(DirEntry { name, cid, tsize });
    }
    Ok((sink, facts, entries))
}

/// The first bytes (for format sniffing) and the hex SHA-512 of a file.
fn head_and_sha512(path: &Path) -> std::io::Result<(Vec<u8>, String)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 16 {
            head.extend_from_slice(&buf[..n.min(16)]);
        }
        hasher.update(&buf[..n]);
    }
    Ok((head, hex::encode(hasher.finalize())))
}

/// Imports `bytes` as a file named `name` with the publish settings.
pub fn text_entry(name: &str, bytes: &[u8], sink: &mut VecSink) -> Result<DirEntry, PublishError> {
    let node = import_file(
        std::io::Cursor::new(Bytes::copy_from_slice(bytes)),
        &import_options(),
        &Metadata::default(),
        sink,
    )?;
    Ok(DirEntry {
        name: name.to_string(),
        cid: node.cid,
        tsize: node.tsize,
    })
}

/// Uploads the blocks of `sink` that the target lacks, in order, as CARs naming `root`.
#[tracing::instrument(skip_all, fields(root = %root))]
pub async fn push_blocks(
    client: &PushClient,
    sink: VecSink,
    root: &Cid,
    token: &str,
) -> Result<PushReport, PublishError> {
    let blocks = sink.blocks;
    let mut report = PushReport {
        blocks: blocks.len() as u64,
        ..PushReport::default()
    };
    // Which blocks the target holds, asked a few at a time; order kept.
    let held: Vec<bool> = stream::iter(blocks.iter().map(|b| client.has_block(b.cid())))
        .buffered(HEAD_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let missing: Vec<&Block> = blocks
        .iter()
        .zip(held)
        .filter_map(|(b, held)| (!held).then_some(b))
        .collect();
    report.skipped = report.blocks - missing.len() as u64;
    let header = encode_header(&[*root]);
    let mut car = header.clone();
    let mut in_car = 0u64;
    for block in missing {
        let section = encode_section(block);
        if in_car > 0 && car.len() + section.len() > MAX_CAR_BYTES {
            upload(
                client,
                std::mem::replace(&mut car, header.clone()),
                token,
                &mut report,
            )
            .await?;
            in_car = 0;
        }
        car.extend_from_slice(&section);
        in_car += 1;
        report.sent += 1;
        report.bytes += block.data().len() as u64;
    }
    if in_car > 0 {
        upload(client, car, token, &mut report).await?;
    }
    tracing::info!(
        blocks = report.blocks,
        sent = report.sent,
        skipped = report.skipped,
        uploads = report.uploads,
        "blocks pushed"
    );
    Ok(report)
}

async fn upload(
    client: &PushClient,
    car: Vec<u8>,
    token: &str,
    report: &mut PushReport,
) -> Result<(), PublishError> {
    client.upload_car(Bytes::from(car), token).await?;
    report.uploads += 1;
    Ok(())
}
