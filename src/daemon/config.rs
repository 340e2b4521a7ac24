//! The daemon's configuration in two stages: a [`RawConfig`] (every field optional) read from
//! a TOML file and from the command line, the flags laid over the file, then
//! [`RawConfig::validate`] into a typed [`Config`] or an error naming the field. Subsystems
//! are built from [`Config`] only.
//!
//! File schema (documented for users in distfs.conf(5)): a key is a `distfs mount` flag's
//! long name without `--` (kebab-case); a repeatable flag takes an array; booleans are
//! `true`/`false`; SIZE values are strings like `"20G"`; seconds are integers. Unknown keys
//! are errors. The file is `--config FILE`, else `$DISTFS_CONFIG`, else
//! `/etc/distfs/config.toml` when it exists; a file named explicitly must exist.
//!
//! One table besides the flags: `[projects]`, a project of its own name per key (`NAME =
//! "ROOT"` or `NAME = { root = "ROOT", publisher = "k51…" }`), the file form of the
//! repeatable `--project NAME=ROOT`; a flag's project replaces the file's of the same name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::dist::hub::{self, ProjectSource};
use crate::name::{IpnsName, RootSpec};
use crate::store::quota::parse_size;

/// The system-wide config file, read when it exists and no other is named.
pub const SYSTEM_CONFIG: &str = "/etc/distfs/config.toml";
/// The environment variable that may name the config file.
pub const CONFIG_ENV: &str = "DISTFS_CONFIG";
/// The root mounted when none is configured.
pub const DEFAULT_ROOT: &str = "/ipns/dist.ipfs.tech";
/// Trustless gateways used when none is configured.
pub const DEFAULT_GATEWAYS: &[&str] = &["https://trustless-gateway.link"];
/// Delegated routing used when no gateway or routing endpoint is configured.
pub const DEFAULT_ROUTING: &[&str] = &["https://delegated-ipfs.dev"];
/// A local Kubo gateway, tried (and put first) when no gateway is configured.
pub const DEFAULT_LOCAL_GATEWAY: &str = "127.0.0.1:8080";
/// Default seconds a read may wait for blocks.
pub const DEFAULT_READ_TIMEOUT: u64 = 30;
/// Default shortest time (seconds) between two resolutions of a name root.
pub const DEFAULT_MIN_TTL: u64 = 30;
/// Default longest time (seconds) between two resolutions of a name root.
pub const DEFAULT_MAX_TTL: u64 = 3600;

/// Why the configuration could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file named explicitly (flag or environment) does not exist or is unreadable.
    #[error("config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a bad value.
    #[error("config file {}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A field's value (after flags and file were merged) is not acceptable.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Stage one: what the file and the flags say, nothing checked across fields yet. Field
/// names are the file's keys.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    /// Where to mount.
    pub mountpoint: Option<PathBuf>,
    /// The distribution root.
    #[serde(default, deserialize_with = "de_from_str")]
    pub root: Option<RootSpec>,
    /// Trustless gateways (`gateway = [...]`).
    pub gateway: Option<Vec<String>>,
    /// Delegated-routing endpoints (`routing = [...]`).
    pub routing: Option<Vec<String>>,
    /// DNS server for DNSLink.
    pub dns_server: Option<SocketAddr>,
    /// The only key whose records may give the root (`publisher = "k51…"`).
    #[serde(default, deserialize_with = "de_from_str")]
    pub publisher: Option<IpnsName>,
    /// The block cache directory.
    pub cache_dir: Option<PathBuf>,
    /// The cache quota in bytes (`"20G"` in the file).
    #[serde(default, deserialize_with = "de_size")]
    pub cache_size: Option<u64>,
    /// Serve from the cache only.
    pub offline: Option<bool>,
    /// Let other users use the mount.
    pub allow_other: Option<bool>,
    /// Seconds a read may wait for blocks.
    pub read_timeout: Option<u64>,
    /// Most block requests in flight at once (the window adapts below it).
    pub max_in_flight: Option<usize>,
    /// Shortest seconds between resolutions.
    pub min_ttl: Option<u64>,
    /// Longest seconds between resolutions.
    pub max_ttl: Option<u64>,
    /// Fetch the rest of an opened AppImage in the background.
    pub background_fetch: Option<bool>,
    /// Read whole cached copies of files by FUSE passthrough.
    pub passthrough: Option<bool>,
    /// Run the daemon under a supervisor that restarts it on the same mount.
    pub supervise: Option<bool>,
    /// Read trace file.
    pub trace: Option<PathBuf>,
    /// Loopback address for the Prometheus `/metrics` endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// The local Kubo gateway to probe (`Some(None)`: turned off with `""`).
    #[serde(default, deserialize_with = "de_local_gateway")]
    pub local_gateway: Option<Option<SocketAddr>>,
    /// Projects under names of their own (`[projects]`), checked as they are read.
    #[serde(default, deserialize_with = "de_projects")]
    pub projects: Option<BTreeMap<String, ProjectSource>>,
}

/// One `[projects]` value: `"ROOT"` or `{ root = "ROOT", publisher = "k51…" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectTable {
    root: String,
    publisher: Option<String>,
}

struct ProjectValue(ProjectSource);

impl<'de> Deserialize<'de> for ProjectValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ProjectValue, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ProjectValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"ROOT\" or { root = \"ROOT\", publisher = \"k51…\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ProjectValue, E> {
                hub::source_of(v, None).map(ProjectValue).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ProjectValue, A::Error> {
                let t =
                    ProjectTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                hub::source_of(&t.root, t.publisher.as_deref())
                    .map(ProjectValue)
                    .map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_any(Visit)
    }
}

fn de_projects<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, ProjectSource>>, D::Error> {
    let raw = BTreeMap::<String, ProjectValue>::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        hub::validate_project_name(&name)
            .map_err(|e| serde::de::Error::custom(format!("[projects] name {name:?}: {e}")))?;
        out.insert(name, value.0);
    }
    Ok(Some(out))
}

/// A `--project NAME=ROOT` argument.
pub fn parse_project_arg(text: &str) -> Result<(String, ProjectSource), String> {
    let (name, root) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=ROOT"))?;
    hub::validate_project_name(name).map_err(|e| format!("project name {name:?}: {e}"))?;
    Ok((name.to_string(), hub::source_of(root, None)?))
}

fn de_from_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    parse_size(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn de_local_gateway<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<SocketAddr>>, D::Error> {
    let text = String::deserialize(d)?;
    parse_local_gateway(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `""` (off) or `host:port` of a local gateway.
pub fn parse_local_gateway(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{text:?} is not an ip:port address (or \"\" to turn it off)"))
}

/// Stage two: everything checked, defaults filled in.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// The distribution root.
    pub root: RootSpec,
    /// Gateways for blocks and records, in preference order.
    pub gateways: Vec<String>,
    /// Delegated-routing endpoints for records.
    pub routings: Vec<String>,
    /// True when no source was configured and the defaults are in use: the local gateway
    /// is probed and put first when it answers.
    pub default_sources: bool,
    /// The local gateway to probe when `default_sources`.
    pub local_gateway: Option<SocketAddr>,
    /// DNS server for DNSLink.
    pub dns_server: Option<SocketAddr>,
    /// The pinned publisher key's name, if any.
    pub publisher: Option<IpnsName>,
    /// The block cache directory.
    pub cache_dir: PathBuf,
    /// The quota, if any.
    pub cache_size: Option<u64>,
    /// Serve from the cache only.
    pub offline: bool,
    /// Let other users use the mount.
    pub allow_other: bool,
    /// How long a read may wait for blocks.
    pub read_timeout: Duration,
    /// Most block requests in flight at once (the window adapts below it).
    pub max_in_flight: usize,
    /// Shortest time between resolutions of a name root.
    pub min_ttl: Duration,
    /// Longest time between resolutions of a name root.
    pub max_ttl: Duration,
    /// Fetch the rest of opened AppImages in the background.
    pub background_fetch: bool,
    /// Copy fully cached files whole and let the kernel read those copies itself
    /// (`fs::iomode`, `store::whole`).
    pub passthrough: bool,
    /// Run under a supervisor (`daemon::supervise`).
    pub supervise: bool,
    /// Read trace file.
    pub trace: Option<PathBuf>,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Projects under names of their own, by name.
    pub projects: BTreeMap<String, ProjectSource>,
}

impl RawConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| s.start.min(text.len()));
            let mut message = e.message().trim().to_owned();
            // A bad value's message names no key: take it from the line (`key = value`).
            if let Some(at) = at {
                let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line = text[start..].lines().next().unwrap_or_default();
                if let Some((key, _)) = line.split_once('=') {
                    let key = key.trim();
                    if !key.is_empty() && !message.contains(key) {
                        message = format!("{key}: {message}");
                    }
                }
            }
            ConfigError::Parse {
                path: path.to_path_buf(),
                line: at.map(|a| text[..a].matches('\n').count() + 1),
                message,
            }
        })
    }

    /// Reads the config file that applies (see [`config_file`]), or an empty config.
    pub fn load_applicable(flag: Option<&Path>) -> Result<RawConfig, ConfigError> {
        match config_file(flag)? {
            Some(path) => RawConfig::load(&path),
            None => Ok(RawConfig::default()),
        }
    }

    /// `self` (the flags) laid over `file`: each field set here wins.
    pub fn over(self, file: RawConfig) -> RawConfig {
        RawConfig {
            mountpoint: self.mountpoint.or(file.mountpoint),
            root: self.root.or(file.root),
            gateway: self.gateway.or(file.gateway),
            routing: self.routing.or(file.routing),
            dns_server: self.dns_server.or(file.dns_server),
            publisher: self.publisher.or(file.publisher),
            cache_dir: self.cache_dir.or(file.cache_dir),
            cache_size: self.cache_size.or(file.cache_size),
            offline: self.offline.or(file.offline),
            allow_other: self.allow_other.or(file.allow_other),
            read_timeout: self.read_timeout.or(file.read_timeout),
            max_in_flight: self.max_in_flight.or(file.max_in_flight),
            min_ttl: self.min_ttl.or(file.min_ttl),
            max_ttl: self.max_ttl.or(file.max_ttl),
            background_fetch: self.background_fetch.or(file.background_fetch),
            passthrough: self.passthrough.or(file.passthrough),
            supervise: self.supervise.or(file.supervise),
            trace: self.trace.or(file.trace),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            local_gateway: self.local_gateway.or(file.local_gateway),
            projects: match (file.projects, self.projects) {
                (Some(mut f), Some(flags)) => {
                    f.extend(flags);
                    Some(f)
                }
                (f, flags) => flags.or(f),
            },
        }
    }

    /// The cache directory this configuration names, or the default one.
    pub fn cache_dir_or_default(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }

    /// Checks every field and fills in defaults.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mountpoint = self.mountpoint.clone().ok_or_else(|| {
            invalid(
                "mountpoint",
                "give MOUNTPOINT on the command line or `mountpoint` in the config file",
            )
        })?;
        // Absolute, so the lock, the status and pin paths name them the same from anywhere.
        let mountpoint = std::path::absolute(&mountpoint)
            .map_err(|e| invalid("mountpoint", format!("{}: {e}", mountpoint.display())))?;
        let root = match self.root.clone() {
            Some(r) => r,
            None => DEFAULT_ROOT
                .parse()
                .map_err(|e| invalid("root", format!("{e}")))?,
        };
        let offline = self.offline.unwrap_or(false);
        let mut gateways = self.gateway.clone().unwrap_or_default();
        let mut routings = self.routing.clone().unwrap_or_default();
        for (field, list) in [("gateway", &gateways), ("routing", &routings)] {
            if let Some(bad) = list.iter().find(|u| !is_http_url(u)) {
                return Err(invalid(field, format!("{bad:?} is not an http(s) URL")));
            }
        }
        let default_sources = gateways.is_empty() && routings.is_empty() && !offline;
        if default_sources {
            gateways = DEFAULT_GATEWAYS.iter().map(|s| s.to_string()).collect();
            routings = DEFAULT_ROUTING.iter().map(|s| s.to_string()).collect();
        }
        if gateways.is_empty() && !offline {
            return Err(invalid(
                "gateway",
                "no block source: give a gateway URL (repeatable), or offline to use only the cache",
            ));
        }
        let local_gateway = match self.local_gateway {
            Some(choice) => choice,
            None => parse_local_gateway(DEFAULT_LOCAL_GATEWAY)
                .map_err(|e| invalid("local-gateway", e))?,
        };
        let min_ttl = self.min_ttl.unwrap_or(DEFAULT_MIN_TTL);
        let max_ttl = self.max_ttl.unwrap_or(DEFAULT_MAX_TTL);
        if min_ttl == 0 {
            return Err(invalid("min-ttl", "must be at least 1 second"));
        }
        if max_ttl < min_ttl {
            return Err(invalid(
                "max-ttl",
                format!("{max_ttl} is below min-ttl {min_ttl}"),
            ));
        }
        let read_timeout = self.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
        if read_timeout == 0 {
            return Err(invalid("read-timeout", "must be at least 1 second"));
        }
        let max_in_flight = self
            .max_in_flight
            .unwrap_or(crate::fetch::FetcherConfig::default().max_in_flight);
        if max_in_flight == 0 {
            return Err(invalid("max-in-flight", "must be at least 1"));
        }
        if self.cache_size == Some(0) {
            return Err(invalid("cache-size", "must be more than 0 bytes"));
        }
        let cache_dir = self.cache_dir_or_default();
        let cache_dir = std::path::absolute(&cache_dir)
            .map_err(|e| invalid("cache-dir", format!("{}: {e}", cache_dir.display())))?;
        Ok(Config {
            mountpoint,
            root,
            gateways,
            routings,
            default_sources,
            local_gateway,
            dns_server: self.dns_server,
            publisher: self.publisher,
            cache_dir,
            cache_size: self.cache_size,
            offline,
            allow_other: self.allow_other.unwrap_or(false),
            read_timeout: Duration::from_secs(read_timeout),
            max_in_flight,
            min_ttl: Duration::from_secs(min_ttl),
            max_ttl: Duration::from_secs(max_ttl),
            background_fetch: self.background_fetch.unwrap_or(true),
            passthrough: self.passthrough.unwrap_or(true),
            supervise: self.supervise.unwrap_or(false),
            trace: self.trace,
            metrics_listen: self.metrics_listen,
            projects: self.projects.unwrap_or_default(),
        })
    }
}

fn is_http_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    matches!(rest, Some(r) if !r.is_empty())
}

/// The config file that applies: `flag`, else `$DISTFS_CONFIG`, else [`SYSTEM_CONFIG`] when
/// it exists. A file named by the flag or the environment must exist.
pub fn config_file(flag: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    let named = flag.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(path) = named {
        if !path.is_file() {
            return Err(ConfigError::Read {
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file (named by --config or DISTFS_CONFIG)",
                ),
                path,
            });
        }
        return Ok(Some(path));
    }
    let system = PathBuf::from(SYSTEM_CONFIG);
    Ok(system.is_file().then_some(system))
}

/// The default cache directory for this user: /var/cache/distfs for root, else
/// `$XDG_CACHE_HOME/distfs` or `~/.cache/distfs`.
pub fn default_cache_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/distfs");
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("distfs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("distfs")
}

/// The cache directory a command other than `mount` should use: `flag`, else the applicable
/// config file's `cache-dir`, else the default.
pub fn cache_dir_for(flag: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    Ok(RawConfig::load_applicable(config)?.cache_dir_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RawConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        RawConfig::load(&path)
    }

    #[test]
    fn file_keys_are_flag_names_and_flags_win() {
        let file = parse(
            "mountpoint = \"/mnt/dist\"\ngateway = [\"http://a\", \"http://b\"]\n\
             cache-size = \"20G\"\nbackground-fetch = false\npassthrough = false\nmin-ttl = 5\nlocal-gateway = \"\"\n",
        )
        .unwrap();
        let flags = RawConfig {
            cache_size: Some(1024),
            ..RawConfig::default()
        };
        let c = flags.over(file).validate().unwrap();
        assert_eq!(c.mountpoint, PathBuf::from("/mnt/dist"));
        assert_eq!(c.gateways, ["http://a", "http://b"]);
        assert_eq!(c.cache_size, Some(1024));
        assert!(!c.background_fetch);
        assert!(!c.passthrough);
        assert_eq!(c.min_ttl, Duration::from_secs(5));
        assert_eq!(c.local_gateway, None);
        assert!(!c.default_sources);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key_file_and_line() {
        let err = parse("offline = true\ncache-sise = \"1G\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cache-sise") && err.contains("line 2"),
            "{err}"
        );
        assert!(err.contains("config.toml"), "{err}");
        let err = parse("cache-size = \"12Q\"\n").unwrap_err().to_string();
        assert!(err.contains("line 1: cache-size:"), "{err}");
        let err = parse("\noffline = \"yes\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2: offline:"), "{err}");
        let err = parse("root = \"/nope/x\"\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    /// The example shipped for /etc/distfs/config.toml, every setting uncommented, is a
    /// valid config (keeps the example, distfs.conf(5) and this schema in step).
    #[test]
    fn the_shipped_example_with_every_key_set_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/config.example.toml");
        let text = std::fs::read_to_string(example).unwrap();
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(setting) if setting.contains(" = ") => setting,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let raw = parse(&all).unwrap();
        assert!(raw.metrics_listen.is_some() && raw.local_gateway.is_some());
        raw.validate().unwrap();
    }

    #[test]
    fn projects_table_and_flags() {
        let k = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";
        let file = parse(&format!(
            "mountpoint = \"/m\"\n[projects]\nhello = \"/ipns/{k}\"\n\
             tool = {{ root = \"/ipns/tool.example.org\", publisher = \"{k}\" }}\n"
        ))
        .unwrap();
        let flags = RawConfig {
            projects: Some(
                [parse_project_arg("hello=/ipns/hello.example.org").unwrap()]
                    .into_iter()
                    .collect(),
            ),
            ..RawConfig::default()
        };
        let c = flags.over(file).validate().unwrap();
        assert_eq!(c.projects.len(), 2);
        assert_eq!(
            c.projects["hello"].root.to_string(),
            "/ipns/hello.example.org"
        );
        assert_eq!(
            c.projects["tool"].publisher.as_ref().unwrap().to_string(),
            k
        );
        for (bad, says) in [
            (
                "[projects]\n\"a/b\" = \"/ipns/x.org\"\n",
                "[projects] name \"a/b\"",
            ),
            ("[projects]\nx = \"ipns/x.org\"\n", "line 2"),
            (
                "\n[projects]\nx = { root = \"/ipns/x.org\", pub = \"k\" }\n",
                "line 3",
            ),
            (
                "[projects]\nx = { root = \"/ipns/x.org\", publisher = \"nope\" }\n",
                "publisher",
            ),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(parse_project_arg("..=/ipns/x.org").is_err());
        assert!(parse_project_arg("nameonly").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let raw = RawConfig {
            mountpoint: Some("/m".into()),
            min_ttl: Some(10),
            max_ttl: Some(5),
            ..RawConfig::default()
        };
        assert!(raw
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("max-ttl:"));
        let err = RawConfig::default().validate().unwrap_err().to_string();
        assert!(err.starts_with("mountpoint:"), "{err}");
        let raw = RawConfig {
            mountpoint: Some("/m".into()),
            gateway: Some(vec!["ftp://x".into()]),
            ..RawConfig::default()
        };
        assert!(raw
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("gateway:"));
    }

    #[test]
    fn no_source_configured_means_defaults_and_a_local_probe() {
        let c = RawConfig {
            mountpoint: Some("/m".into()),
            ..RawConfig::default()
        }
        .validate()
        .unwrap();
        assert!(c.default_sources);
        assert_eq!(c.gateways, DEFAULT_GATEWAYS);
        assert_eq!(c.local_gateway, Some("127.0.0.1:8080".parse().unwrap()));
    }
}
