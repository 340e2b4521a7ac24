//! Many publishers in one `/dist`: the projects that live under names of their own, beside
//! the main root's projects. Each [`Project`] is either configured (`--project NAME=ROOT`,
//! `[projects]`) or listed by the main root's hub index (`dist::hub`); its tree is that
//! project's own (version directories, `versions`, no project level above).
//!
//! The union of `ls /dist`, and who wins a name clash (documented in the README):
//! **configured > main root > hub**. A clash is recorded ([`Clash`]) for `distfs status`.
//!
//! A project is resolved lazily: listing `/dist` never resolves anything; the first lookup or
//! listing inside the project asks for it ([`Project::wait`]), which sends it once to the
//! daemon's starter channel; the daemon runs one follower per project (its own TTL, its own
//! rollback memory in the resolver, its own pinned publisher) and reports back with
//! [`Project::ready`] or [`Project::failed`]. A project that never resolved answers EIO with
//! its reason; one that resolved keeps its last good root when a refresh fails.
//!
//! Locks: `std::sync::Mutex`es over small maps, held for copies in and out only, never
//! across an `.await`; phases are published through a `tokio::sync::watch` channel.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cid::Cid;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::hub::{HubIndex, ProjectSource};

/// Where a project of the union comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `--project` or the config's `[projects]`.
    Configured,
    /// A project directory of the main root.
    MainRoot,
    /// An entry of the main root's `projects.json`.
    Hub,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Configured => "configured",
            Origin::MainRoot => "main root",
            Origin::Hub => "hub",
        })
    }
}

/// Where a project's resolution stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nobody has looked inside yet.
    Unresolved,
    /// Its follower is resolving it for the first time.
    Resolving,
    /// Its root now.
    Ready(Cid),
    /// It never resolved; why.
    Failed(String),
}

/// One resolution of a project's name, as its follower reports it.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// The project's root CID.
    pub cid: Cid,
    /// The IPNS record's sequence, if any.
    pub sequence: Option<u64>,
    /// The TTL in use.
    pub ttl: Duration,
    /// Where the answer came from.
    pub source: String,
}

/// A project's state as `distfs status` shows it (`projects[]` in `--json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectReport {
    /// The project's name under `/dist`.
    pub name: String,
    /// `configured` or `hub`.
    pub origin: Origin,
    /// Its root spec.
    pub root: String,
    /// The pinned publisher, if any.
    pub publisher: Option<String>,
    /// `unresolved`, `resolving`, `ready` or `failed`.
    pub state: String,
    /// Its root CID now, once resolved.
    pub cid: Option<String>,
    /// The record's sequence, if any.
    pub sequence: Option<u64>,
    /// The TTL in use, once resolved.
    pub ttl_secs: Option<u64>,
    /// Where the last answer came from.
    pub source: Option<String>,
    /// When it last resolved (Unix seconds).
    pub last_refresh_unix: Option<u64>,
    /// Why it failed (never resolved) or why the last refresh failed.
    pub error: Option<String>,
    /// Failed resolutions since start.
    pub failures: u64,
    /// Shown under `/dist`, or hidden by a project of the same name that wins.
    pub shown: bool,
}

/// A name claimed by more than one origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clash {
    /// The project name.
    pub name: String,
    /// The origin shown.
    pub shown: Origin,
    /// The origins hidden.
    pub hidden: Vec<Origin>,
}

#[derive(Default)]
struct Info {
    last: Option<Resolution>,
    at: Option<SystemTime>,
    error: Option<String>,
}

/// A project that lives under a name of its own.
pub struct Project {
    /// Its name under `/dist`.
    pub name: String,
    /// Configured or hub.
    pub origin: Origin,
    /// Its root spec and pinned key.
    pub source: ProjectSource,
    phase: watch::Sender<Phase>,
    info: Mutex<Info>,
    failures: AtomicU64,
    started: AtomicBool,
    retired: AtomicBool,
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Project({} = {})", self.name, self.source.root)
    }
}

impl Project {
    /// A project not resolved yet.
    pub fn new(name: String, origin: Origin, source: ProjectSource) -> Project {
        Project {
            name,
            origin,
            source,
            phase: watch::channel(Phase::Unresolved).0,
            info: Mutex::default(),
            failures: AtomicU64::new(0),
            started: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        }
    }

    fn info(&self) -> MutexGuard<'_, Info> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where it stands.
    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// Its root now, once resolved.
    pub fn cid(&self) -> Option<Cid> {
        match &*self.phase.borrow() {
            Phase::Ready(cid) => Some(*cid),
            _ => None,
        }
    }

    /// Its follower resolved it.
    pub fn ready(&self, r: Resolution) {
        let cid = r.cid;
        {
            let mut info = self.info();
            info.last = Some(r);
            info.at = Some(SystemTime::now());
            info.error = None;
        }
        self.phase.send_replace(Phase::Ready(cid));
    }

    /// A resolution failed: a project that has a root keeps it; one that never had one
    /// fails (lookups inside answer EIO with `reason`).
    pub fn failed(&self, reason: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.info().error = Some(reason.clone());
        self.phase.send_if_modified(|p| match p {
            Phase::Ready(_) => false,
            _ => {
                *p = Phase::Failed(reason);
                true
            }
        });
    }

    /// Removed from the union (its hub entry went away): its follower stops.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Marks it started; true the first time (the caller then starts its follower).
    fn start_once(&self) -> bool {
        if self.started.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.phase.send_if_modified(|p| {
            let was = matches!(p, Phase::Unresolved);
            if was {
                *p = Phase::Resolving;
            }
            was
        });
        true
    }

    /// Waits for its first outcome: the root, or why it failed. The caller bounds the wait.
    pub async fn wait(&self) -> Result<Cid, String> {
        let mut rx = self.phase.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                Phase::Ready(cid) => return Ok(*cid),
                Phase::Failed(reason) => return Err(reason.clone()),
                Phase::Unresolved | Phase::Resolving => {}
            }
            if rx.changed().await.is_err() {
                return Err("the project's follower is gone".into());
            }
        }
    }

    /// Its status line.
    pub fn report(&self, shown: bool) -> ProjectReport {
        let phase = self.phase();
        let info = self.info();
        let last = info.last.as_ref();
        let (state, error) = match &phase {
            Phase::Unresolved => ("unresolved", None),
            Phase::Resolving => ("resolving", None),
            Phase::Ready(_) => ("ready", info.error.clone()),
            Phase::Failed(reason) => ("failed", Some(reason.clone())),
        };
        ProjectReport {
            name: self.name.clone(),
            origin: self.origin,
            root: self.source.root.to_string(),
            publisher: self.source.publisher.as_ref().map(|p| p.to_string()),
            state: state.to_string(),
            cid: last.map(|l| l.cid.to_string()),
            sequence: last.and_then(|l| l.sequence),
            ttl_secs: last.map(|l| l.ttl.as_secs()),
            source: last.map(|l| l.source.clone()),
            last_refresh_unix: info
                .at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            error,
            failures: self.failures.load(Ordering::Relaxed),
            shown,
        }
    }
}

#[derive(Default)]
struct HubState {
    /// The `projects.json` these entries came from.
    file: Option<Cid>,
    projects: BTreeMap<String, Arc<Project>>,
    rejected: Vec<(String, String)>,
    error: Option<String>,
}

/// The projects of the union beside the main root's, and the inodes they hold.
#[derive(Default)]
pub struct Union {
    configured: BTreeMap<String, Arc<Project>>,
    hub: Mutex<HubState>,
    /// Which inode (a root entry) a project is shown at now.
    by_ino: Mutex<HashMap<u64, Arc<Project>>>,
    clashes: Mutex<Vec<Clash>>,
    starter: Mutex<Option<mpsc::UnboundedSender<Arc<Project>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Union {
    /// A union with these configured projects (names already validated).
    pub fn new(configured: impl IntoIterator<Item = (String, ProjectSource)>) -> Union {
        Union {
            configured: configured
                .into_iter()
                .map(|(name, source)| {
                    let p = Arc::new(Project::new(name.clone(), Origin::Configured, source));
                    (name, p)
                })
                .collect(),
            ..Union::default()
        }
    }

    /// Where projects to follow are sent (each once, on first use); the daemon receives.
    pub fn set_starter(&self, tx: mpsc::UnboundedSender<Arc<Project>>) {
        *lock(&self.starter) = Some(tx);
    }

    /// Asks for `p`'s follower to start, once.
    pub fn start(&self, p: &Arc<Project>) {
        if p.start_once() {
            match lock(&self.starter).as_ref() {
                Some(tx) if tx.send(Arc::clone(p)).is_ok() => {}
                _ => p.failed("no follower can resolve projects in this process".into()),
            }
        }
    }

    /// The configured projects.
    pub fn configured(&self) -> impl Iterator<Item = &Arc<Project>> {
        self.configured.values()
    }

    /// The configured project named `name`.
    pub fn configured_named(&self, name: &str) -> Option<Arc<Project>> {
        self.configured.get(name).cloned()
    }

    /// The hub entry named `name`.
    pub fn hub_named(&self, name: &str) -> Option<Arc<Project>> {
        lock(&self.hub).projects.get(name).cloned()
    }

    /// The hub entries now.
    pub fn hub_projects(&self) -> Vec<Arc<Project>> {
        lock(&self.hub).projects.values().cloned().collect()
    }

    /// The CID of the `projects.json` the hub entries come from (`None`: none read).
    pub fn hub_file(&self) -> Option<Cid> {
        lock(&self.hub).file
    }

    /// Takes the entries of the main root's index read from `file` (or clears them when the
    /// root has none, `None`). Entries whose source is unchanged keep their state and
    /// follower; the others start afresh, and removed ones are retired.
    pub fn set_hub(&self, file: Option<Cid>, index: Result<HubIndex, String>) {
        let mut hub = lock(&self.hub);
        hub.file = file;
        let (entries, rejected, error) = match index {
            Ok(i) => (i.entries, i.rejected, None),
            Err(e) => (BTreeMap::new(), Vec::new(), Some(e)),
        };
        for (name, reason) in &rejected {
            tracing::warn!(project = %name, "hub entry rejected: {reason}");
        }
        if let Some(e) = &error {
            tracing::warn!("hub index unusable: {e}");
        }
        let mut old = std::mem::take(&mut hub.projects);
        for (name, source) in entries {
            let project = match old.remove(&name) {
                Some(p) if p.source == source => p,
                _ => Arc::new(Project::new(name.clone(), Origin::Hub, source)),
            };
            hub.projects.insert(name, project);
        }
        for p in old.values() {
            p.retired.store(true, Ordering::Relaxed);
        }
        hub.rejected = rejected;
        hub.error = error;
    }

    /// The hub entries rejected, with why, and why the index as a whole was unusable.
    pub fn hub_problems(&self) -> (Vec<(String, String)>, Option<String>) {
        let hub = lock(&self.hub);
        (hub.rejected.clone(), hub.error.clone())
    }

    /// The project shown at inode `ino`, if a project of the union is.
    pub fn at_inode(&self, ino: u64) -> Option<Arc<Project>> {
        lock(&self.by_ino).get(&ino).cloned()
    }

    /// Records that `p` is shown at inode `ino`.
    pub fn shown_at(&self, ino: u64, p: &Arc<Project>) {
        lock(&self.by_ino).insert(ino, Arc::clone(p));
    }

    /// Records the root listing just made: which project each inode shows (`shown`), and
    /// the clashes found.
    pub fn set_listing(&self, shown: HashMap<u64, Arc<Project>>, clashes: Vec<Clash>) {
        *lock(&self.by_ino) = shown;
        for c in &clashes {
            tracing::warn!(project = %c.name, shown = %c.shown, hidden = ?c.hidden, "project name clash");
        }
        *lock(&self.clashes) = clashes;
    }

    /// The clashes of the last root listing.
    pub fn clashes(&self) -> Vec<Clash> {
        lock(&self.clashes).clone()
    }

    /// Whether `p` is the project shown under its name now.
    pub fn is_shown(&self, p: &Arc<Project>) -> bool {
        lock(&self.by_ino).values().any(|q| Arc::ptr_eq(p, q))
    }

    /// Every project's status line, configured first, then hub entries.
    pub fn reports(&self) -> Vec<ProjectReport> {
        let mut out: Vec<ProjectReport> = self
            .configured
            .values()
            .map(|p| p.report(self.is_shown(p)))
            .collect();
        out.extend(
            self.hub_projects()
                .iter()
                .map(|p| p.report(self.is_shown(p))),
        );
        out
    }
}
