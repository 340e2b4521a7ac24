//! Where a daemon gets blocks, records and providers from: the configured gateways (or the
//! defaults, with a local Kubo gateway first when it answers), the name resolver over the
//! gateways and routing endpoints, and the routing clients for provider discovery.

use super::config::Config;
use super::{probe, DaemonError};
use crate::fetch::{RecordApi, RecordClient, DEFAULT_RECORD_TIMEOUT};
use crate::name::{Resolver, ResolverConfig};

/// The block and record sources in use: the configured ones, or the defaults with the
/// local gateway first when it answers the probe.
pub(super) async fn choose_sources(config: &Config) -> (Vec<String>, Vec<String>, Option<String>) {
    let mut gateways = config.gateways.clone();
    let mut local = None;
    if config.default_sources {
        if let Some(addr) = config.local_gateway {
            if probe::local_gateway_answers(addr).await {
                let url = probe::gateway_url(addr);
                gateways.insert(0, url.clone());
                local = Some(url);
            } else {
                tracing::info!(%addr, "no local gateway answers; using public gateways only");
            }
        }
    }
    tracing::info!(gateways = ?gateways, routing = ?config.routings, "block and record sources");
    (gateways, config.routings.clone(), local)
}

/// The resolver for name roots: record sources from the gateways and routing endpoints,
/// the last good records kept in `<cache>/names`.
pub(super) fn build_resolver(
    config: &Config,
    gateways: &[String],
    routings: &[String],
) -> Result<Resolver, DaemonError> {
    let http = RecordClient::http_client().map_err(DaemonError::Records)?;
    let mut sources = Vec::new();
    if !config.offline {
        for (urls, api) in [
            (gateways, RecordApi::Gateway),
            (routings, RecordApi::Routing),
        ] {
            for url in urls {
                sources.push(
                    RecordClient::new(url, api, http.clone(), DEFAULT_RECORD_TIMEOUT)
                        .map_err(DaemonError::Records)?,
                );
            }
        }
    }
    Resolver::new(ResolverConfig {
        sources,
        dns_server: config.dns_server,
        state_dir: Some(config.cache_dir.join("names")),
        min_ttl: config.min_ttl,
        max_ttl: config.max_ttl,
        publisher: config.publisher.clone(),
    })
    .map_err(|source| DaemonError::Resolve {
        spec: config.root.to_string(),
        source: Box::new(source),
    })
}

/// Clients for provider discovery: the routing endpoints in use, none when offline.
pub(super) fn routing_clients(
    config: &Config,
    routings: &[String],
) -> Vec<crate::fetch::routing::RoutingClient> {
    use crate::fetch::routing::{RoutingClient, DEFAULT_ROUTING_TIMEOUT};
    if config.offline {
        return Vec::new();
    }
    routings
        .iter()
        .filter_map(|u| match RoutingClient::new(u, DEFAULT_ROUTING_TIMEOUT) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("provider discovery skips {u}: {e}");
                None
            }
        })
        .collect()
}
