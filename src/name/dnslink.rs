//! DNSLink lookups (SPECS.md §9): the TXT records at `_dnslink.<domain>`, through the
//! system resolver (`/etc/resolv.conf`) or one given server (`ip:port`, for tests and
//! private zones). Answers are not cached here (the resolver applies its own TTL rules);
//! each lookup is bounded by a timeout.

use std::time::Duration;

#[cfg(feature = "daemon")]
pub use lookup::DnsLinkResolver;

/// Longest domain accepted (DNS limit).
const MAX_DOMAIN_LEN: usize = 253;

/// Why a DNSLink could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsLinkError {
    /// Not a domain name we would look up.
    #[error("{domain:?} is not a valid domain name: {reason}")]
    BadDomain {
        /// The input (shortened).
        domain: String,
        /// Why.
        reason: String,
    },
    /// The resolver could not be set up (unreadable `/etc/resolv.conf`).
    #[error("cannot set up DNS resolution: {reason}")]
    Setup {
        /// Why.
        reason: String,
    },
    /// The lookup failed (no answer, SERVFAIL, timeout).
    #[error("DNS lookup of _dnslink.{domain} TXT failed: {reason}")]
    Lookup {
        /// The domain.
        domain: String,
        /// The resolver's words.
        reason: String,
    },
    /// TXT records exist but none is a usable `dnslink=/ipfs/…` or `dnslink=/ipns/…`.
    #[error("no dnslink=/ipfs/… or dnslink=/ipns/… TXT record at _dnslink.{domain}")]
    Missing {
        /// The domain.
        domain: String,
    },
    /// More than one different usable value (boxo refuses to choose too).
    #[error("_dnslink.{domain} has several different DNSLink values: {values:?}")]
    Ambiguous {
        /// The domain.
        domain: String,
        /// The values found.
        values: Vec<String>,
    },
}

/// A DNSLink value and how long it may be cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsLink {
    /// The content path, e.g. `/ipfs/<cid>` or `/ipns/<name>`.
    pub path: String,
    /// The TXT record's remaining TTL.
    pub ttl: Duration,
}

/// Rejects what is not a plausible DNS name (no lookups for paths, spaces or empty labels).
pub fn check_domain(domain: &str) -> Result<(), DnsLinkError> {
    let bad = |reason: &str| DnsLinkError::BadDomain {
        domain: domain.chars().take(80).collect(),
        reason: reason.to_string(),
    };
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.is_empty() || d.len() > MAX_DOMAIN_LEN {
        return Err(bad("length must be 1..=253"));
    }
    if !d.contains('.') {
        return Err(bad("a DNSLink domain has at least two labels"));
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every label must be 1..=63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("labels hold only letters, digits, '-' and '_'"));
        }
    }
    Ok(())
}

/// The one usable `dnslink=` value among TXT strings (SPECS.md §9).
pub fn pick(domain: &str, txt: &[String]) -> Result<String, DnsLinkError> {
    let mut values: Vec<String> = txt
        .iter()
        .filter_map(|s| s.trim().strip_prefix("dnslink="))
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .filter(|v| v.starts_with("/ipfs/") || v.starts_with("/ipns/"))
        .collect();
    values.sort();
    values.dedup();
    match values.len() {
        0 => Err(DnsLinkError::Missing {
            domain: domain.to_string(),
        }),
        1 => Ok(values.remove(0)),
        _ => Err(DnsLinkError::Ambiguous {
            domain: domain.to_string(),
            values,
        }),
    }
}

/// The lookups themselves (the `daemon` feature: they need tokio and hickory).
#[cfg(feature = "daemon")]
mod lookup {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::TokioResolver;

    use super::{check_domain, pick, DnsLink, DnsLinkError};

    /// Time for one whole lookup, retries included.
    const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

    /// Reads DNSLink TXT records.
    #[derive(Clone)]
    pub struct DnsLinkResolver {
        inner: TokioResolver,
    }

    impl std::fmt::Debug for DnsLinkResolver {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("DnsLinkResolver")
        }
    }

    impl DnsLinkResolver {
        /// A resolver using the system configuration, or only `server` when given.
        pub fn new(server: Option<SocketAddr>) -> Result<DnsLinkResolver, DnsLinkError> {
            let mut opts = ResolverOpts::default();
            // Every lookup goes to the server: the name resolver keeps its own TTLs, and a test
            // that changes a record must see the change.
            opts.cache_size = 0;
            opts.timeout = Duration::from_secs(3);
            opts.attempts = 2;
            let builder = match server {
                Some(addr) => {
                    let group =
                        NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_parts(None, vec![], group),
                        TokioConnectionProvider::default(),
                    )
                }
                None => TokioResolver::builder_tokio().map_err(|e| DnsLinkError::Setup {
                    reason: e.to_string(),
                })?,
            };
            Ok(DnsLinkResolver {
                inner: builder.with_options(opts).build(),
            })
        }

        /// The DNSLink value of `domain`.
        #[tracing::instrument(skip_all, fields(domain = %domain))]
        pub async fn lookup(&self, domain: &str) -> Result<DnsLink, DnsLinkError> {
            check_domain(domain)?;
            let fqdn = format!("_dnslink.{}.", domain.trim_end_matches('.'));
            let lookup_err = |reason: String| DnsLinkError::Lookup {
                domain: domain.to_string(),
                reason,
            };
            let answer = tokio::time::timeout(LOOKUP_TIMEOUT, self.inner.txt_lookup(fqdn))
                .await
                .map_err(|_| lookup_err(format!("no answer within {LOOKUP_TIMEOUT:?}")))?
                .map_err(|e| lookup_err(e.to_string()))?;
            let ttl = answer
                .as_lookup()
                .valid_until()
                .saturating_duration_since(Instant::now());
            let strings: Vec<String> = answer
                .iter()
                .map(|txt| {
                    let joined: Vec<u8> = txt
                        .txt_data()
                        .iter()
                        .flat_map(|s| s.iter().copied())
                        .collect();
                    String::from_utf8_lossy(&joined).into_owned()
                })
                .collect();
            let path = pick(domain, &strings)?;
            Ok(DnsLink { path, ttl })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_one_dnslink_value() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick("a.b", &s(&["v=spf1", "dnslink=/ipfs/bafkqaaa"])).unwrap(),
            "/ipfs/bafkqaaa"
        );
        assert_eq!(
            pick("a.b", &s(&["dnslink=/ipns/x.y/", "dnslink=/ipns/x.y"])).unwrap(),
            "/ipns/x.y"
        );
        assert!(matches!(
            pick("a.b", &s(&["dnslink=/foo/bar", "hello"])),
            Err(DnsLinkError::Missing { .. })
        ));
        assert!(matches!(
            pick("a.b", &s(&["dnslink=/ipfs/a", "dnslink=/ipfs/b"])),
            Err(DnsLinkError::Ambiguous { .. })
        ));
    }

    #[test]
    fn domain_checks() {
        assert!(check_domain("dist.ipfs.tech").is_ok());
        assert!(check_domain("dist.ipfs.tech.").is_ok());
        for bad in [
            "",
            "localhost",
            "a..b",
            "a b.c",
            "a/b.c",
            &format!("{}.x", "a".repeat(64)),
        ] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }
}
