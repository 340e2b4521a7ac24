//! The mount daemon: built from a validated [`config::Config`] only, it takes the cache lock,
//! opens the cache under its quota, chooses the block sources (probing a local Kubo gateway
//! when none is configured), resolves the root, adds HTTP providers found through the
//! routing endpoints ([`discover`]), mounts the view, follows a name root
//! (`follow`), serves the control socket ([`control`]) and, opt-in, `/metrics`
//! ([`metrics`]), and on SIGINT/SIGTERM or an external unmount tears everything down in
//! order (unmount, abort a stuck connection, flush the cache's pending writes, remove the
//! socket).
//!
//! Runs in the foreground until `fusermount3 -u MOUNTPOINT`, SIGINT or SIGTERM. Started by
//! a hot restart ([`restart`]), it takes the running mount over instead of mounting.

pub mod client;
pub mod config;
pub mod control;
pub mod discover;
mod follow;
pub mod malloc;
pub mod metrics;
mod notify;
pub mod pin;
pub mod probe;
mod projects;
pub mod protocol;
pub mod restart;
mod shutdown;
mod sources;
mod state;
pub mod status;
pub mod supervise;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cid::Cid;

use crate::dist::coldstart::ColdStartConfig;
use crate::dist::trace::Tracer;
use crate::dist::DistView;
use crate::fetch::{Fetcher, FetcherConfig};
use crate::fs::mount::{mount, raise_readahead, Invalidator, MountConfig, Mounted};
use crate::fs::DistFs;
use crate::store::cache::CacheStore;
use crate::store::disk::DiskStore;
use crate::store::lock::CacheLock;
use crate::store::quota::Quota;
use crate::store::whole::WholeFiles;
use config::Config;
use control::ControlSocket;
use follow::{Follow, NameCell, NameState};
use shutdown::{flush_cache, serve_until_end};
use sources::{build_resolver, choose_sources, routing_clients};
use state::Shared;

/// How often the quota is checked as a safety net for eviction triggers lost to races.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Where a supervised daemon journals the inodes read by passthrough (`fs::iomode`).
const IO_JOURNAL_FILE: &str = "passthrough.journal";

/// Why the daemon could not start (or ended badly).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another process holds the cache directory, or it cannot be locked.
    #[error(transparent)]
    Lock(#[from] crate::store::lock::LockError),
    /// The cache could not be opened or scanned.
    #[error("opening the cache in {}", dir.display())]
    Cache {
        dir: PathBuf,
        #[source]
        source: Box<crate::store::StoreError>,
    },
    /// The async runtime could not start.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    /// A gateway URL is not usable.
    #[error("configuring gateways")]
    Gateways(#[source] Box<crate::fetch::FetchError>),
    /// A record source could not be set up.
    #[error("configuring record sources")]
    Records(#[source] crate::fetch::RecordFetchError),
    /// The resolver could not be set up or the root could not be resolved.
    #[error("resolving the root {spec}")]
    Resolve {
        spec: String,
        #[source]
        source: Box<crate::name::resolve::ResolveError>,
    },
    /// The trace file could not be created.
    #[error("creating the trace file {}", path.display())]
    Trace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The root directory could not be read (a mount of nothing helps nobody).
    #[error("reading the distribution root {root}")]
    Root {
        root: Cid,
        #[source]
        source: Box<crate::dist::ViewError>,
    },
    /// Mounting failed.
    #[error(transparent)]
    Mount(#[from] crate::fs::mount::MountError),
    /// The control socket could not be created.
    #[error("creating the control socket {}", path.display())]
    Control {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Taking over a running mount (a hot restart) failed.
    #[error("taking over the running mount")]
    Takeover(#[source] restart::RestartError),
    /// The hand-over came from a daemon of another mount point or cache dir.
    #[error("the running daemon serves {theirs} but this config says {ours}; restart with the same mount point and cache dir")]
    TakeoverMismatch { theirs: String, ours: String },
    /// The supervised daemon kept dying.
    #[error("the daemon died {crashes} times within {window} s (last: {last}); gave up and unmounted (see the log above for why it died)")]
    GaveUp {
        crashes: usize,
        window: u64,
        last: String,
    },
    /// The inode journal could not be opened.
    #[error("opening the inode journal {}", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The metrics address could not be bound.
    #[error("metrics-listen {addr}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the mount until it ends; `Ok` after a clean unmount.
pub fn run(config: Config) -> Result<(), DaemonError> {
    let started = Instant::now();
    let spec = config.root.clone();
    let cache_dir = config.cache_dir.clone();
    let incoming = match restart::inherited() {
        Some(fd) => Some(restart::Incoming::receive(fd).map_err(DaemonError::Takeover)?),
        None => None,
    };
    // Started by a supervisor (and not by a restart): its connection, and whether to recover.
    let supervised = match incoming {
        None => supervise::inherited(),
        Some(_) => None,
    };
    let journaled = std::env::var_os(supervise::FD_ENV).is_some();
    let journal_path = cache_dir.join(supervise::JOURNAL_FILE);
    let lock = lock_cache(&config, incoming.as_ref())?;
    let cache_err = |source| DaemonError::Cache {
        dir: cache_dir.clone(),
        source: Box::new(source),
    };
    let disk = DiskStore::open_unsynced(&cache_dir).map_err(cache_err)?;
    let quota = Arc::new(Quota::open(disk, config.cache_size).map_err(cache_err)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("distfs-io")
        .build()
        .map_err(DaemonError::Runtime)?;
    let _guard = runtime.enter();
    let (gateways, routings, local_gateway) = runtime.block_on(choose_sources(&config));
    let fetcher_config = FetcherConfig {
        deadline: config.read_timeout,
        max_in_flight: config.max_in_flight,
        ..FetcherConfig::default()
    };
    let fetcher = Fetcher::from_gateways(&gateways, fetcher_config)
        .map_err(|e| DaemonError::Gateways(Box::new(e)))?;
    let sweep = Arc::clone(&quota);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            sweep.evict_if_over();
        }
    });
    let store = CacheStore::with_quota(quota, fetcher).with_offline(config.offline);
    let resolver = Arc::new(build_resolver(&config, &gateways, &routings)?);
    let first = match &incoming {
        // The root the kernel has seen; the name is followed on from there.
        Some(inc) => {
            restart::resolved_of(&inc.snapshot, config.min_ttl).map_err(DaemonError::Takeover)?
        }
        None => runtime
            .block_on(resolver.resolve(&spec))
            .map_err(|source| DaemonError::Resolve {
                spec: spec.to_string(),
                source: Box::new(source),
            })?,
    };
    follow::log_refused(&spec, &first);
    let root = first.cid;
    // Providers found through routing join the sources before the root is first read (not
    // while taking a live mount over: the kernel's requests wait on that).
    let routing_clients = routing_clients(&config, &routings);
    if !routing_clients.is_empty() && incoming.is_none() {
        runtime.block_on(discover::discover(&routing_clients, store.fetcher(), root));
    }
    let tracer = match &config.trace {
        Some(path) => Some(Tracer::create(path).map_err(|source| DaemonError::Trace {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    // Offline, there is nothing to fetch ahead of time.
    let cold = ColdStartConfig {
        prefetch_lists: !config.offline,
        background: config.background_fetch && !config.offline,
        ..ColdStartConfig::default()
    };
    let fetcher = store.fetcher().clone();
    let mut view = DistView::new(Arc::new(store.clone()), root, config.read_timeout)
        .with_cold_start(cold, tracer)
        .with_readahead_hint(Arc::new(move || fetcher.nominal_window()));
    if let Some(inc) = &incoming {
        let inodes = crate::dist::inode::Inodes::restore(&inc.snapshot.inodes)
            .map_err(|e| DaemonError::Takeover(restart::RestartError::Protocol(e.to_string())))?;
        if journaled {
            inodes
                .attach_journal(&journal_path)
                .map_err(|source| DaemonError::Journal {
                    path: journal_path.clone(),
                    source,
                })?;
        }
        view = view.with_inodes(inodes);
    }
    if let Some(sup) = &supervised {
        let inodes = crate::dist::inode::Inodes::journaled(&journal_path, root, sup.generation > 0)
            .map_err(|source| DaemonError::Journal {
                path: journal_path.clone(),
                source,
            })?;
        view = view.with_inodes(inodes);
    }
    if config.cache_size.is_some() {
        // Blocks an open file has read stay cached until it is closed.
        let holds = store.clone();
        view = view.with_holds(Arc::new(move || holds.hold()));
    }
    // Projects of their own names: followers start when first needed (configured ones at
    // mount time), through this channel; the task receiving it starts after the mount.
    let union = Arc::new(crate::dist::union::Union::new(config.projects.clone()));
    let (start_tx, start_rx) = tokio::sync::mpsc::unbounded_channel();
    union.set_starter(start_tx);
    let whole = config
        .passthrough
        .then(|| WholeFiles::new(Arc::clone(store.quota())));
    if let Some(whole) = &whole {
        if let Some(inc) = &incoming {
            whole.restore_proved(&inc.snapshot.whole_proved);
        }
        view = view.with_whole_files(Arc::clone(whole));
    }
    let view = Arc::new(view.with_union(Arc::clone(&union)));
    if !routing_clients.is_empty() && spec.is_mutable() {
        runtime.spawn(discover::follow_roots(
            Arc::new(routing_clients),
            store.fetcher().clone(),
            view.clone(),
            root,
        ));
    }
    if let Some(inc) = &incoming {
        view.restore_handles(inc.snapshot.next_fh, &inc.snapshot.open_fhs);
    }
    if let Some(sup) = &supervised {
        // Handles of a dead child are unknown here: number new ones apart from them.
        view.restore_handles(sup.generation << 40, &[]);
    }
    view.set_root_info(follow::root_info(&spec, &first));
    runtime
        .block_on(view.readdir(crate::dist::ROOT_INO))
        .map_err(|source| DaemonError::Root {
            root,
            source: Box::new(source),
        })?;

    // The control socket exists before the mount does: a client that sees the mount can
    // talk to the daemon. Taking over, the old daemon still answers on it until it exits.
    let socket_path = cache_dir.join(protocol::SOCKET_FILE);
    let bind_socket = || {
        ControlSocket::bind(&socket_path).map_err(|source| DaemonError::Control {
            path: socket_path.clone(),
            source,
        })
    };
    let mut socket = match incoming {
        Some(_) => None,
        None => Some(bind_socket()?),
    };
    let name = spec.is_mutable().then(|| {
        Arc::new(NameCell {
            state: Mutex::new(NameState::from_resolved(&first)),
            failures: Default::default(),
        })
    });
    let (refresh_tx, refresh_rx) = tokio::sync::mpsc::channel(4);
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut modes = crate::fs::iomode::IoModes::new(config.passthrough);
    if journaled {
        // After a crash, the dead daemon's backing ids are still in use by open files.
        let recover = supervised.as_ref().is_some_and(|sup| sup.generation > 0);
        modes = modes.with_journal(cache_dir.join(IO_JOURNAL_FILE), recover);
    }
    let fs = DistFs::new(view.clone(), runtime.handle().clone(), uid, gid).with_io_modes(modes);
    let io_modes = fs.io_modes();
    if let Some(inc) = &incoming {
        io_modes.restore(&inc.snapshot.io_modes);
    }
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        mountpoint: config.mountpoint.clone(),
        cache_dir: cache_dir.clone(),
        started,
        offline: config.offline,
        store: store.clone(),
        view: view.clone(),
        name: name.clone(),
        refresh: spec.is_mutable().then_some(refresh_tx),
        local_gateway,
        metrics_listen: OnceLock::new(),
        owner_uid: uid,
        handover: OnceLock::new(),
        whole: whole.clone(),
        io_modes: Arc::clone(&io_modes),
    });
    if incoming.is_none() {
        if let Some(addr) = config.metrics_listen {
            let listener = runtime
                .block_on(metrics::bind(addr))
                .map_err(|source| DaemonError::Metrics { addr, source })?;
            serve_metrics(&runtime, listener, &shared);
        }
    }
    if let Some(socket) = &mut socket {
        socket.serve(Arc::clone(&shared));
    }

    let (gate, init) = (fs.gate(), fs.init_record());
    let mount_cfg = MountConfig {
        mountpoint: config.mountpoint.clone(),
        allow_other: config.allow_other,
    };
    let Mounted { session, fuse } = match incoming {
        None => match supervised {
            None => mount(fs, &mount_cfg)?,
            Some(sup) => sup.adopt(fs, config.allow_other, uid, gid)?,
        },
        Some(inc) => {
            let (mounted, bound) = take_over(
                fs,
                inc,
                &runtime,
                &config,
                &shared,
                &bind_socket,
                (uid, gid),
            )?;
            socket = Some(bound);
            mounted
        }
    };
    let _ = shared.handover.set(Arc::new(restart::Handover {
        gate,
        init,
        io_modes,
        whole,
        fuse: fuse.try_clone().map_err(|source| DaemonError::Control {
            path: socket_path.clone(),
            source,
        })?,
        lock: lock
            .file()
            .try_clone()
            .map_err(|source| DaemonError::Control {
                path: socket_path.clone(),
                source,
            })?
            .into(),
        view: view.clone(),
        mountpoint: config.mountpoint.clone(),
        cache_dir: cache_dir.clone(),
        name: name.clone(),
        publisher: first.publisher.clone(),
        busy: Mutex::new(()),
    }));
    drop(fuse);
    let socket = socket.ok_or_else(|| DaemonError::Control {
        path: socket_path.clone(),
        source: std::io::Error::other("not bound"),
    })?;
    tracing::info!(mountpoint = %config.mountpoint.display(), %root, root_spec = %spec, pid = std::process::id(), "mounted");
    notify::sd_notify("READY=1");
    if let Some(cell) = name {
        let follow = Follow {
            spec: spec.clone(),
            resolver: Arc::clone(&resolver),
            view: view.clone(),
            invalidator: Invalidator::new(&session),
            min_ttl: config.min_ttl,
            cell,
        };
        runtime.spawn(follow.run(first.ttl, refresh_rx));
    }
    let followers = projects::Followers {
        resolver: Arc::clone(&resolver),
        view: view.clone(),
        invalidator: Arc::new(Invalidator::new(&session)),
        min_ttl: config.min_ttl,
    };
    runtime.spawn(followers.run(start_rx));
    for p in union.configured() {
        union.start(p);
    }
    // The FUSE connection's device number, for the fusectl abort of last resort.
    let fuse_dev = std::fs::metadata(&config.mountpoint).map(|m| m.dev()).ok();
    if let Some(dev) = fuse_dev {
        raise_readahead(dev);
    }

    let stuck = serve_until_end(&runtime, session, fuse_dev, &config.mountpoint);
    socket.remove();
    view.shutdown();
    flush_cache(&runtime, &store);
    if stuck {
        // Leave without dropping what the stuck FUSE thread may still hold.
        std::process::exit(0);
    }
    Ok(())
}

/// Takes the mount over from the daemon handing over (`inc`): adopts its FUSE connection
/// for `fs`, lets it go, then serves the connection, the control socket and `/metrics` in
/// its place.
fn take_over(
    fs: DistFs,
    inc: restart::Incoming,
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    shared: &Arc<Shared>,
    bind_socket: &dyn Fn() -> Result<ControlSocket, DaemonError>,
    (uid, gid): (libc::uid_t, libc::gid_t),
) -> Result<(Mounted, ControlSocket), DaemonError> {
    let dup_fuse = || {
        inc.fuse.try_clone().map_err(|source| {
            DaemonError::Takeover(restart::RestartError::Io {
                what: "dup of the FUSE fd",
                source,
            })
        })
    };
    let snap_init = inc.snapshot.init;
    let adopted =
        crate::fs::handover::adopt(fs, dup_fuse()?, snap_init, config.allow_other, uid, gid)
            .map_err(|e| DaemonError::Takeover(e.into()))?;
    let fuse = dup_fuse()?;
    inc.finish().map_err(DaemonError::Takeover)?;
    // Read the connection only now that the resend has queued everything the old
    // process held back (see `Adopted`).
    let session = adopted
        .serve()
        .map_err(|e| DaemonError::Takeover(e.into()))?;
    // The old daemon is gone: its socket and metrics address are free.
    let mut bound = bind_socket()?;
    bound.serve(Arc::clone(shared));
    if let Some(addr) = config.metrics_listen {
        match runtime.block_on(metrics::bind(addr)) {
            Ok(listener) => serve_metrics(runtime, listener, shared),
            Err(e) => tracing::warn!(%addr, "metrics not served after the restart: {e}"),
        }
    }
    Ok((Mounted { session, fuse }, bound))
}

/// The cache lock: taken over from the daemon handing over (`incoming`), which must have
/// the same mountpoint and cache dir, or acquired.
fn lock_cache(
    config: &Config,
    incoming: Option<&restart::Incoming>,
) -> Result<CacheLock, DaemonError> {
    let cache_dir = &config.cache_dir;
    let what = format!("mounted at {}", config.mountpoint.display());
    Ok(match incoming {
        Some(inc) => {
            let snap = &inc.snapshot;
            if snap.mountpoint != config.mountpoint || &snap.cache_dir != cache_dir {
                return Err(DaemonError::TakeoverMismatch {
                    theirs: format!(
                        "{} (cache {})",
                        snap.mountpoint.display(),
                        snap.cache_dir.display()
                    ),
                    ours: format!(
                        "{} (cache {})",
                        config.mountpoint.display(),
                        cache_dir.display()
                    ),
                });
            }
            let file = inc.lock.try_clone().map_err(|source| {
                DaemonError::Takeover(restart::RestartError::Io {
                    what: "dup of the lock fd",
                    source,
                })
            })?;
            CacheLock::adopt(file, cache_dir, &what)?
        }
        None => CacheLock::acquire(cache_dir, &what)?,
    })
}

/// Serves `/metrics` on `listener`.
fn serve_metrics(
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    shared: &Arc<Shared>,
) {
    if let Ok(bound) = listener.local_addr() {
        let _ = shared.metrics_listen.set(bound);
        tracing::info!(addr = %bound, "serving /metrics");
    }
    runtime.spawn(metrics::serve(listener, Arc::clone(shared)));
}
