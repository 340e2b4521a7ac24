//! What a mount is rooted at (`/ipfs/<cid>`, `/ipns/<key>`, `/ipns/<dnslink-domain>`): the
//! parser and printer of root strings, pure so that the fuzz build (which has no resolver)
//! can check them. Resolving a [`RootSpec`] to a CID is `resolve`'s job.

use std::fmt;
use std::str::FromStr;

use cid::Cid;

use super::dnslink::check_domain;
use super::IpnsName;

/// What a mount is rooted at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootSpec {
    /// A fixed CID.
    Ipfs(Cid),
    /// An IPNS key name.
    Ipns(IpnsName),
    /// A DNSLink domain.
    DnsLink(String),
}

/// Why a root spec string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("root {input:?}: {reason}")]
pub struct RootSpecError {
    /// The input (shortened).
    pub input: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl FromStr for RootSpec {
    type Err = RootSpecError;

    /// Parses `/ipfs/<cid>`, `/ipns/<key>` or `/ipns/<domain>` (a trailing `/` is allowed,
    /// a sub-path is not: a root is a directory CID).
    fn from_str(s: &str) -> Result<RootSpec, RootSpecError> {
        let err = |reason: &str| RootSpecError {
            input: s.chars().take(120).collect(),
            reason: reason.to_string(),
        };
        let (ns, rest) = if let Some(r) = s.strip_prefix("/ipfs/") {
            ("ipfs", r.trim_end_matches('/'))
        } else if let Some(r) = s.strip_prefix("/ipns/") {
            ("ipns", r.trim_end_matches('/'))
        } else {
            return Err(err(
                "expected /ipfs/<cid>, /ipns/<key> or /ipns/<dnslink-domain>",
            ));
        };
        if rest.is_empty() {
            return Err(err("nothing after the namespace"));
        }
        if rest.contains('/') {
            return Err(err(
                "a root takes no sub-path: give the root directory itself",
            ));
        }
        match ns {
            "ipfs" => Cid::try_from(rest)
                .map(RootSpec::Ipfs)
                .map_err(|e| err(&format!("not a CID: {e}"))),
            _ => {
                if let Ok(name) = rest.parse::<IpnsName>() {
                    return Ok(RootSpec::Ipns(name));
                }
                if rest.contains('.') {
                    check_domain(rest).map_err(|e| err(&e.to_string()))?;
                    return Ok(RootSpec::DnsLink(rest.trim_end_matches('.').to_lowercase()));
                }
                Err(err("neither an IPNS key name (k51…) nor a DNSLink domain"))
            }
        }
    }
}

impl fmt::Display for RootSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootSpec::Ipfs(cid) => write!(f, "/ipfs/{cid}"),
            RootSpec::Ipns(name) => write!(f, "/ipns/{name}"),
            RootSpec::DnsLink(domain) => write!(f, "/ipns/{domain}"),
        }
    }
}

impl RootSpec {
    /// Whether the root can change (anything but `/ipfs/`).
    pub fn is_mutable(&self) -> bool {
        !matches!(self, RootSpec::Ipfs(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_specs_parse_with_clear_errors() {
        let cid = "bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui";
        assert!(matches!(
            format!("/ipfs/{cid}/").parse(),
            Ok(RootSpec::Ipfs(_))
        ));
        let k = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";
        assert!(matches!(
            format!("/ipns/{k}").parse(),
            Ok(RootSpec::Ipns(_))
        ));
        assert!(matches!(
            "/ipns/12D3KooWLQzUv2FHWGVPXTXSZpdHs7oHbXub2G5WC8Tx4NQhyd2d".parse(),
            Ok(RootSpec::Ipns(_))
        ));
        assert_eq!(
            "/ipns/Dist.IPFS.tech".parse::<RootSpec>().unwrap(),
            RootSpec::DnsLink("dist.ipfs.tech".into())
        );
        for (bad, says) in [
            ("bafkqaaa", "expected /ipfs/"),
            ("/ipfs/", "nothing after"),
            ("/ipfs/notacid", "not a CID"),
            (&format!("/ipfs/{cid}/sub"), "sub-path"),
            ("/ipns/nodots", "neither"),
            ("/ipns/bad domain.com", "labels"),
        ] {
            let e = bad.parse::<RootSpec>().unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }
}
