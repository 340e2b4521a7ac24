//! The project-level facts of the view: which version `latest` and the channel links name
//! (from the project's `versions` and channels files, or version ordering), and which files
//! a version's `dist.json` lists as binaries. A child of `view`, so it reads the view's
//! store and caches directly.

use super::*;
use crate::dist::inode::VersionInfo;
use crate::dist::versions;

impl DistView {
    /// The version `latest` names among a project's entries: by its `versions` file if it
    /// has one, else by version ordering of its directories.
    pub(super) async fn latest_target(
        &self,
        entries: &[Entry],
    ) -> Result<Option<String>, ViewError> {
        let is_version_dir = |name: &str| {
            entries
                .iter()
                .any(|e| e.name == name && e.inode.kind == Kind::Dir)
        };
        if let Some(file) = entries
            .iter()
            .find(|e| e.name == "versions" && e.inode.kind == Kind::File)
        {
            let len = file.inode.size.min(MAX_VERSIONS_FILE);
            let text = walk::read_range(self.store.as_ref(), &file.inode.cid, 0, len).await?;
            let text = String::from_utf8_lossy(&text);
            if let Some(v) = versions::latest_from_versions_file(&text, is_version_dir) {
                return Ok(Some(v));
            }
        }
        Ok(versions::latest_from_dirs(
            entries
                .iter()
                .filter(|e| e.inode.kind == Kind::Dir)
                .map(|e| e.name.as_str()),
        ))
    }

    /// The channel links a project's `channels` file names (`versions::parse_channels`),
    /// keeping only those whose version directory exists.
    pub(super) async fn channel_targets(
        &self,
        entries: &[Entry],
    ) -> Result<Vec<(String, String)>, ViewError> {
        let Some(file) = entries
            .iter()
            .find(|e| e.name == versions::CHANNELS_FILE && e.inode.kind == Kind::File)
        else {
            return Ok(Vec::new());
        };
        let len = file.inode.size.min(MAX_VERSIONS_FILE);
        let text = walk::read_range(self.store.as_ref(), &file.inode.cid, 0, len).await?;
        let is_version_dir = |name: &str| {
            entries
                .iter()
                .any(|e| e.name == name && e.inode.kind == Kind::Dir)
        };
        Ok(versions::parse_channels(&String::from_utf8_lossy(&text))
            .into_iter()
            .filter(|(_, version)| is_version_dir(version))
            .collect())
    }

    /// Whether a file without a stored mode is a binary: named `*.AppImage`, listed in its
    /// version's `dist.json`, or starting with ELF magic or `#!`.
    pub(super) async fn is_binary(
        &self,
        dir: &Inode,
        name: &str,
        cid: &Cid,
    ) -> Result<bool, ViewError> {
        if meta::looks_executable(name, b"") {
            return Ok(true);
        }
        if dir.level == Level::Version && self.version_lists(dir, name).await {
            return Ok(true);
        }
        let head = walk::read_range(self.store.as_ref(), cid, 0, 4).await?;
        Ok(meta::looks_executable(name, &head))
    }

    /// Whether the version directory's `dist.json` lists `name`; loaded once per version
    /// directory (a missing or bad `dist.json` lists nothing).
    pub(super) async fn version_lists(&self, dir: &Inode, name: &str) -> bool {
        if let Some(info) = dir.version_info.get() {
            return info.binaries.contains(name);
        }
        let info = self.load_version_info(dir).await;
        let listed = info.binaries.contains(name);
        let _ = dir.version_info.set(info);
        listed
    }

    pub(super) async fn load_version_info(&self, dir: &Inode) -> VersionInfo {
        let result: Result<VersionInfo, ViewError> = async {
            let Some(entry) = walk::lookup(self.store.as_ref(), &dir.cid, "dist.json").await?
            else {
                return Ok(VersionInfo::default());
            };
            let text = walk::read_range(
                self.store.as_ref(),
                &entry.cid,
                0,
                meta::MAX_DIST_JSON as u64 + 1,
            )
            .await?;
            match meta::binaries_in_dist_json(&text) {
                Ok(binaries) => Ok(VersionInfo { binaries }),
                Err(e) => {
                    tracing::warn!(dir = %dir.cid, "ignoring dist.json: {e}");
                    Ok(VersionInfo::default())
                }
            }
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::warn!(dir = %dir.cid, "could not read dist.json: {e}");
            VersionInfo::default()
        })
    }
}
