//! The DNS resolver a daemon builds from `dns_servers`: UDP and TCP to
//! each `ip:port`, or the system's configuration (`/etc/resolv.conf`)
//! when the list is empty. An unreadable system configuration leaves a
//! resolver without servers, so every lookup fails as "try again" (as
//! Postfix's do when the name service is down) instead of the daemon not
//! starting. One function, so smtp-client's MX lookups and smtpd's
//! message authentication ask the same servers the same way.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// A resolver asking `servers` (or the system's) with `opts`.
pub fn resolver(servers: &[SocketAddr], opts: ResolverOpts) -> Result<TokioResolver, NetError> {
    let config = if servers.is_empty() {
        match TokioResolver::builder_tokio() {
            Ok(mut b) => {
                *b.options_mut() = opts;
                return b.build();
            }
            Err(e) => {
                tracing::error!(
                    "cannot read the system resolver configuration: {e}; set dns_servers"
                );
                ResolverConfig::from_name_servers(Vec::new())
            }
        }
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        ResolverConfig::from_name_servers(name_servers)
    };
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
}
