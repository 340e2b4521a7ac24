//! Turning a root spec (`/ipfs/<cid>`, `/ipns/<key>`, `/ipns/<domain>`) into a CID, and
//! keeping it monotonic.
//!
//! [`Resolver::resolve`] asks every configured record source (trustless gateways and
//! delegated-routing endpoints, concurrently), verifies each answer, takes the best valid
//! record (highest sequence, then later validity) and never goes back below the highest
//! sequence it has seen for that name: the last good record of each name is persisted
//! (atomically, in the state directory inside the cache dir) and loaded again after a
//! restart, so a restart can neither roll the root back nor lose it while that record is
//! still valid. DNSLink names are looked up in DNS and followed through `/ipns/` chains up
//! to [`MAX_DEPTH`] hops. TTLs are clamped to configured bounds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;

use super::dnslink::{DnsLinkError, DnsLinkResolver};
use super::record::{verify, Record};
use super::root::RootSpec;
use super::IpnsName;
use crate::fetch::RecordClient;

/// Most hops DNSLink → IPNS → … → `/ipfs/` followed.
pub const MAX_DEPTH: usize = 8;
/// How long the other record sources may still answer once one gave a valid record.
pub const RECORD_GRACE: Duration = Duration::from_millis(1500);
/// Default lower bound of a resolved TTL.
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(30);
/// Default upper bound of a resolved TTL.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No source had a valid record and none is remembered.
    #[error("no valid IPNS record for {name}: {}", fmt_reasons(.reasons))]
    NoRecord {
        /// The name.
        name: String,
        /// (source, why it gave nothing usable).
        reasons: Vec<(String, String)>,
    },
    /// A DNSLink lookup failed.
    #[error(transparent)]
    DnsLink(#[from] DnsLinkError),
    /// A record or DNSLink value that is not a path we can follow.
    #[error("{at} points to {value:?}, which is not /ipfs/<cid> or /ipns/<name>: {reason}")]
    BadValue {
        /// The name or domain.
        at: String,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// Too many hops (a loop, or an absurd chain).
    #[error("{start}: more than {MAX_DEPTH} DNSLink/IPNS hops (a loop?)")]
    TooDeep {
        /// Where resolution started.
        start: String,
    },
    /// The root does not come from the pinned publisher's key.
    #[error("{start}: the configured publisher is {pinned}, but the root {}; refusing it", match .got { Some(g) => format!("is signed by {g}"), None => "is not signed by any key (no IPNS record on the way)".to_string() })]
    WrongPublisher {
        /// Where resolution started.
        start: String,
        /// The pinned publisher's name.
        pinned: String,
        /// The name whose record gave the root, if any.
        got: Option<String>,
    },
    /// IPNS names are asked but no record source is configured.
    #[error("cannot resolve {name}: no gateway or routing endpoint is configured")]
    NoSources {
        /// The name.
        name: String,
    },
}

fn fmt_reasons(reasons: &[(String, String)]) -> String {
    if reasons.is_empty() {
        return "no source answered".into();
    }
    reasons
        .iter()
        .map(|(s, r)| format!("{s}: {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A resolved root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The root directory CID.
    pub cid: Cid,
    /// How long until it should be resolved again (clamped; the minimum over a chain).
    pub ttl: Duration,
    /// The sequence of the last IPNS record on the way, if any.
    pub sequence: Option<u64>,
    /// The IPNS name (key) that signed that record, if any.
    pub publisher: Option<String>,
    /// Where the final answer came from (a source, `state` for the remembered record,
    /// `dns`, or `fixed`).
    pub source: String,
    /// Answers that were refused on the way (source, reason), for the log.
    pub refused: Vec<(String, String)>,
}

/// How a [`Resolver`] is set up.
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    /// Where records are asked.
    pub sources: Vec<RecordClient>,
    /// A DNS server for DNSLink (`None`: the system resolver).
    pub dns_server: Option<SocketAddr>,
    /// Where the last good record of each name is kept (`None`: memory only).
    pub state_dir: Option<PathBuf>,
    /// TTL bounds.
    pub min_ttl: Duration,
    /// TTL bounds.
    pub max_ttl: Duration,
    /// The pinned publisher: when set, a root resolves only if its last IPNS hop is this
    /// name, so a DNSLink (or a record) that points elsewhere, or straight to `/ipfs/`,
    /// is refused rather than followed.
    pub publisher: Option<IpnsName>,
}

/// Resolves root specs; remembers the best record seen per name.
#[derive(Debug)]
pub struct Resolver {
    config: ResolverConfig,
    dns: DnsLinkResolver,
    /// Best record seen per name (binary multihash). Short critical sections, no `.await`.
    seen: std::sync::Mutex<HashMap<Vec<u8>, Record>>,
}

impl Resolver {
    /// A resolver; the state directory is created on first write.
    pub fn new(config: ResolverConfig) -> Result<Resolver, ResolveError> {
        let dns = DnsLinkResolver::new(config.dns_server)?;
        Ok(Resolver {
            config,
            dns,
            seen: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn clamp(&self, ttl: Duration) -> Duration {
        ttl.clamp(
            self.config.min_ttl,
            self.config.max_ttl.max(self.config.min_ttl),
        )
    }

    /// Resolves `spec` to a CID (following DNSLink/IPNS chains), with the configured
    /// publisher pinned.
    pub async fn resolve(&self, spec: &RootSpec) -> Result<Resolved, ResolveError> {
        self.resolve_as(spec, self.config.publisher.as_ref()).await
    }

    /// [`Resolver::resolve`] with `publisher` pinned instead of the configured one (a
    /// project of its own name has its own; `None` pins nothing). The rollback memory is
    /// per IPNS name, so each project keeps its own.
    #[tracing::instrument(skip_all, fields(root = %spec))]
    pub async fn resolve_as(
        &self,
        spec: &RootSpec,
        publisher_pin: Option<&IpnsName>,
    ) -> Result<Resolved, ResolveError> {
        let start = spec.to_string();
        let mut current = spec.clone();
        let mut ttl = self.config.max_ttl;
        let mut sequence = None;
        let mut publisher = None;
        let mut source = String::from("fixed");
        let mut refused = Vec::new();
        for _ in 0..=MAX_DEPTH {
            let (value, at) = match &current {
                RootSpec::Ipfs(cid) => {
                    if let Some(pinned) = publisher_pin {
                        if publisher.as_deref() != Some(pinned.to_string().as_str()) {
                            return Err(ResolveError::WrongPublisher {
                                start,
                                pinned: pinned.to_string(),
                                got: publisher,
                            });
                        }
                    }
                    return Ok(Resolved {
                        cid: *cid,
                        ttl: self.clamp(ttl),
                        sequence,
                        publisher,
                        source,
                        refused,
                    });
                }
                RootSpec::Ipns(name) => {
                    let (rec, from, mut why) = self.resolve_name(name).await?;
                    refused.append(&mut why);
                    ttl = ttl.min(rec.ttl);
                    sequence = Some(rec.sequence);
                    publisher = Some(name.to_string());
                    source = from;
                    (rec.value, name.to_string())
                }
                RootSpec::DnsLink(domain) => {
                    let link = self.dns.lookup(domain).await?;
                    ttl = ttl.min(link.ttl);
                    source = "dns".into();
                    (link.path, domain.clone())
                }
            };
            current = value
                .parse::<RootSpec>()
                .map_err(|e| ResolveError::BadValue {
                    at,
                    value: value.clone(),
                    reason: e.reason,
                })?;
        }
        Err(ResolveError::TooDeep { start })
    }

    /// The best valid record for `name`: from the sources, never below the remembered one.
    /// Returns the record, where it came from, and the refused answers.
    async fn resolve_name(
        &self,
        name: &IpnsName,
    ) -> Result<(Record, String, Vec<(String, String)>), ResolveError> {
        let text = name.to_string();
        let remembered = self.remembered(name).await;
        if self.config.sources.is_empty() && remembered.is_none() {
            return Err(ResolveError::NoSources { name: text });
        }
        let now = SystemTime::now();
        let mut pending: futures::stream::FuturesUnordered<_> = self
            .config
            .sources
            .iter()
            .map(|c| async { (c.describe(), c.get(&text).await) })
            .collect();
        let mut refused = Vec::new();
        let mut best: Option<(Record, String)> = None;
        // Once one source has given a valid record, the others get RECORD_GRACE more to
        // offer a newer one; a slow or trickling source must not hold every resolution
        // for its whole timeout.
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            let next = match grace {
                Some(until) => match tokio::time::timeout_at(until, pending.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::debug!(
                            name = %text,
                            unanswered = pending.len(),
                            "took the best record so far; slower sources not waited for"
                        );
                        break;
                    }
                },
                None => pending.next().await,
            };
            let Some((from, answer)) = next else { break };
            let bytes = match answer {
                Ok(Some(b)) => b,
                Ok(None) => {
                    refused.push((from, "no record (404)".into()));
                    continue;
                }
                Err(e) => {
                    refused.push((from, e.to_string()));
                    continue;
                }
            };
            match verify(name, &bytes, now) {
                Ok(rec) => {
                    if best.as_ref().is_none_or(|(b, _)| rec.supersedes(b)) {
                        best = Some((rec, from));
                    }
                    grace.get_or_insert_with(|| tokio::time::Instant::now() + RECORD_GRACE);
                }
                Err(e) => refused.push((from, format!("refused record ({}): {e}", e.kind()))),
            }
        }
        drop(pending); // cancels the sources not waited for (and ends the borrow of `text`)
        if let Some(old) = &remembered {
            match &best {
                Some((rec, from)) if rec.sequence < old.sequence => {
                    refused.push((
                        from.clone(),
                        format!(
                            "refused record: sequence {} is below the {} already seen",
                            rec.sequence, old.sequence
                        ),
                    ));
                    best = None;
                }
                Some((rec, _)) if !rec.supersedes(old) && rec.raw != old.raw => best = None,
                _ => {}
            }
        }
        if let Some((rec, from)) = best {
            if remembered.as_ref().is_none_or(|old| old.raw != rec.raw) {
                self.remember(name, &rec).await;
            }
            return Ok((rec, from, refused));
        }
        match remembered {
            Some(old) if now <= old.validity => Ok((old, "state".into(), refused)),
            Some(old) => {
                refused.push((
                    "state".into(),
                    format!("remembered record (sequence {}) has expired", old.sequence),
                ));
                Err(ResolveError::NoRecord {
                    name: text,
                    reasons: refused,
                })
            }
            None => Err(ResolveError::NoRecord {
                name: text,
                reasons: refused,
            }),
        }
    }

    /// The remembered record for `name` (memory, else the state file), expired or not.
    async fn remembered(&self, name: &IpnsName) -> Option<Record> {
        let key = name.to_bytes();
        if let Some(r) = self.lock().get(&key) {
            return Some(r.clone());
        }
        let path = self.state_path(name)?;
        let bytes = tokio::task::spawn_blocking(move || read_state(&path))
            .await
            .ok()
            .flatten()?;
        // Verified at the epoch: every rule but expiry, which the caller judges.
        match verify(name, &bytes, SystemTime::UNIX_EPOCH) {
            Ok(rec) => {
                self.lock().entry(key).or_insert(rec.clone());
                Some(rec)
            }
            Err(e) => {
                tracing::warn!(name = %name, error = %e, "ignoring an invalid remembered record");
                None
            }
        }
    }

    async fn remember(&self, name: &IpnsName, rec: &Record) {
        self.lock().insert(name.to_bytes(), rec.clone());
        let Some(path) = self.state_path(name) else {
            return;
        };
        let bytes = rec.raw.clone();
        let written = tokio::task::spawn_blocking(move || write_state(&path, &bytes)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(name = %name, error = %e, "cannot persist the record"),
            Err(e) => tracing::warn!(name = %name, error = %e, "persisting task failed"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Record>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state_path(&self, name: &IpnsName) -> Option<PathBuf> {
        self.config
            .state_dir
            .as_ref()
            .map(|d| d.join(format!("{name}.ipns-record")))
    }
}

fn read_state(path: &Path) -> Option<Bytes> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > super::MAX_RECORD_SIZE as u64 {
        return None;
    }
    std::fs::read(path).ok().map(Bytes::from)
}

/// Write-then-rename, with fsync of the file and the directory: a crash leaves the old
/// record or the new one, never a torn file.
fn write_state(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
