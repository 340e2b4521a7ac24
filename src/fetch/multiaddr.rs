//! Multiaddrs of HTTP gateways, both ways: [`gateway_url`] turns a text multiaddr that names
//! an HTTP(S) endpoint into a gateway base URL, and [`multiaddr_of_url`] turns a gateway base
//! URL back into one (what a pin request's `origins` carry).
//!
//! Accepted shapes (multiformats/multiaddr protocols table; IPIP-378 for gateway providers):
//! `/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>` followed by `/http` (plain), `/tls/http` or the
//! deprecated `/https` (TLS), or `/tls/sni/<name>/http` (TLS to that name), optionally ending
//! in `/p2p/<peer id>` (ignored). Anything else (`/udp/.../quic-v1`, a bare `/p2p/<id>`,
//! `/http-path/...`, port 0) names no gateway we can reach and gives `None`. Whether a plain
//! `/http` address may be used is the caller's policy (`fetch::routing` allows it only for
//! local addresses).

/// The gateway base URL a multiaddr names (`http://host:port` or `https://host:port`), or
/// `None` when it names no HTTP endpoint.
pub fn gateway_url(addr: &str) -> Option<String> {
    let mut parts = addr.strip_prefix('/')?.split('/');
    let (proto, host) = (parts.next()?, parts.next()?);
    let host = match proto {
        "ip4" => host.parse::<std::net::Ipv4Addr>().ok()?.to_string(),
        "ip6" => format!("[{}]", host.parse::<std::net::Ipv6Addr>().ok()?),
        "dns" | "dns4" | "dns6" if valid_dns_name(host) => host.to_ascii_lowercase(),
        _ => return None,
    };
    if parts.next()? != "tcp" {
        return None;
    }
    let port: u16 = parts.next()?.parse().ok().filter(|p| *p != 0)?;
    let rest: Vec<&str> = parts.collect();
    let tail = match rest.iter().position(|p| *p == "p2p") {
        // A trailing peer id is allowed; nothing may follow it.
        Some(i) if i + 2 == rest.len() => &rest[..i],
        Some(_) => return None,
        None => &rest[..],
    };
    let (scheme, host) = match tail {
        ["http"] => ("http", host),
        ["tls", "http"] | ["https"] => ("https", host),
        ["tls", "sni", sni, "http"] if valid_dns_name(sni) => ("https", sni.to_ascii_lowercase()),
        _ => return None,
    };
    Some(format!("{scheme}://{host}:{port}"))
}

/// The multiaddr of a gateway base URL (`http://127.0.0.1:8080` →
/// `/ip4/127.0.0.1/tcp/8080/http`, `https://example.org` → `/dns/example.org/tcp/443/tls/http`),
/// or `None` when the URL has a path prefix, user info, a query, or a scheme other than
/// http/https (a multiaddr cannot say those).
pub fn multiaddr_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "http" => (false, 80),
        "https" => (true, 443),
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (ip, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => default_port,
                None => return None,
            };
            (
                format!("/ip6/{}", ip.parse::<std::net::Ipv6Addr>().ok()?),
                port,
            )
        }
        None => {
            let (h, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().ok()?),
                None => (authority, default_port),
            };
            if let Ok(ip) = h.parse::<std::net::Ipv4Addr>() {
                (format!("/ip4/{ip}"), port)
            } else if valid_dns_name(h) {
                (format!("/dns/{}", h.to_ascii_lowercase()), port)
            } else {
                return None;
            }
        }
    };
    let proto = if tls { "tls/http" } else { "http" };
    Some(format!("{host}/tcp/{port}/{proto}"))
}

/// A plausible DNS name: 1–253 bytes of letters, digits, `-` and `.`, no empty label.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiaddrs_to_urls() {
        let cases = [
            ("/ip4/127.0.0.1/tcp/8080/http", Some("http://127.0.0.1:8080")),
            ("/ip6/::1/tcp/80/http", Some("http://[::1]:80")),
            ("/dns/Example.org/tcp/443/tls/http", Some("https://example.org:443")),
            ("/dns4/gw.example/tcp/443/https", Some("https://gw.example:443")),
            (
                "/ip4/10.0.0.1/tcp/8080/http/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
                Some("http://10.0.0.1:8080"),
            ),
            ("/ip4/10.0.0.1/tcp/4001", None),
            ("/ip4/10.0.0.1/udp/4001/quic-v1", None),
            ("/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN", None),
            ("/ip4/999.0.0.1/tcp/80/http", None),
            ("/ip4/10.0.0.1/tcp/99999/http", None),
            ("/dns/a..b/tcp/80/http", None),
            ("/ip4/10.0.0.1/tcp/80/http/extra", None),
            ("/ip4/10.0.0.1/tcp/80/http/p2p/x/more", None),
            ("ip4/10.0.0.1/tcp/80/http", None),
            ("", None),
        ];
        for (addr, want) in cases {
            assert_eq!(gateway_url(addr).as_deref(), want, "{addr}");
        }
    }

    #[test]
    fn urls_to_multiaddrs_and_back() {
        let cases = [
            (
                "http://127.0.0.1:8080",
                Some("/ip4/127.0.0.1/tcp/8080/http"),
            ),
            (
                "http://127.0.0.1:8080/",
                Some("/ip4/127.0.0.1/tcp/8080/http"),
            ),
            (
                "https://Example.org",
                Some("/dns/example.org/tcp/443/tls/http"),
            ),
            ("http://[::1]:9000", Some("/ip6/::1/tcp/9000/http")),
            ("http://host/prefix", None),
            ("http://user@host", None),
            ("ftp://host", None),
            ("http://host:notaport", None),
        ];
        for (url, want) in cases {
            let got = multiaddr_of_url(url);
            assert_eq!(got.as_deref(), want, "{url}");
            if let Some(addr) = got {
                assert!(gateway_url(&addr).is_some(), "{addr} round-trips");
            }
        }
    }
}
