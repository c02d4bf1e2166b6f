//! Who the client is on the network: the TCP peer, or, when that peer is one of
//! the reverse proxies named in `OTA_TRUSTED_PROXIES`, the address the proxies
//! recorded in `X-Forwarded-For`. Rate limits and logs use this address; from
//! anyone else the header is ignored, so it cannot be spoofed.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use ipnet::IpNet;

/// The subject common name of the client certificate the connection presented,
/// verified against `OTA_TLS_CLIENT_CA` during the TLS handshake. The listener puts
/// it in the request's extensions; a header can never claim it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub String);

/// An `OTA_TRUSTED_PROXIES` entry that is neither an address nor a CIDR.
#[derive(Debug, thiserror::Error)]
#[error("OTA_TRUSTED_PROXIES: {0:?} is neither an IP address nor a CIDR (e.g. 10.0.0.0/8)")]
pub struct BadProxy(pub String);

/// The networks whose connections are reverse proxies that append to `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = BadProxy;

    /// Comma-separated addresses or CIDRs; empty: no proxy is trusted.
    fn from_str(list: &str) -> Result<Self, BadProxy> {
        let parse = |entry: &str| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| BadProxy(entry.to_owned()))
        };
        Ok(Self(list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(parse).collect::<Result<_, _>>()?))
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client behind `peer`: the peer itself unless it is a trusted proxy; then the
    /// rightmost `X-Forwarded-For` entry that is not a trusted proxy (every proxy appends
    /// the address it was reached from, so only entries left of the trusted ones can be
    /// forged). An entry that is not an address ends the walk at the last trusted hop.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        if !self.contains(peer) {
            return ClientAddr { ip: peer, via_proxy: false };
        }
        let mut client = peer;
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let entries: Vec<&str> = forwarded.flat_map(|v| v.split(',')).map(str::trim).collect();
        for entry in entries.into_iter().rev() {
            match parse_entry(entry) {
                Some(ip) if self.contains(ip) => client = ip,
                Some(ip) => return ClientAddr { ip, via_proxy: true },
                None => break,
            }
        }
        ClientAddr { ip: client, via_proxy: true }
    }
}

/// `203.0.113.7`, `2001:db8::1`, or with a port (`203.0.113.7:5000`, `[2001:db8::1]:5000`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The client's address, as a request extension (see `resolve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// Taken from a trusted proxy's `X-Forwarded-For` (or the proxy itself when it named nobody).
    pub via_proxy: bool,
}

/// Puts the request's `ClientAddr` into its extensions (nothing without a peer address).
pub fn resolve<B>(proxies: &TrustedProxies, mut request: Request<B>) -> Request<B> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_canonical());
    if let Some(peer) = peer {
        let client = proxies.client(peer, request.headers());
        request.extensions_mut().insert(client);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().expect("header value"));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let proxies: TrustedProxies = "10.0.0.0/8, 127.0.0.1".parse().expect("list");
        let spoofed = headers(&["1.2.3.4"]);
        assert_eq!(proxies.client(ip("192.0.2.9"), &spoofed), ClientAddr { ip: ip("192.0.2.9"), via_proxy: false });
        assert_eq!(proxies.client(ip("127.0.0.1"), &spoofed), ClientAddr { ip: ip("1.2.3.4"), via_proxy: true });
        let none: TrustedProxies = "".parse().expect("empty");
        assert_eq!(none.client(ip("127.0.0.1"), &spoofed).ip, ip("127.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client_whatever_the_client_prepended() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().expect("list");
        let chain = headers(&["6.6.6.6, 198.51.100.4", "10.1.1.1:8080"]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &chain).ip, ip("198.51.100.4"));
        // Only proxies, or no header: the leftmost trusted hop, never exempt as a direct client.
        assert_eq!(proxies.client(ip("10.0.0.2"), &headers(&["10.9.9.9"])).ip, ip("10.9.9.9"));
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &HeaderMap::new()),
            ClientAddr { ip: ip("10.0.0.2"), via_proxy: true }
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(proxies.client(ip("10.0.0.2"), &headers(&["1.1.1.1, unknown"])).ip, ip("10.0.0.2"));
        assert_eq!(proxies.client(ip("10.0.0.2"), &headers(&["[2001:db8::1]:443"])).ip, ip("2001:db8::1"));
    }

    #[test]
    fn entries_that_are_neither_addresses_nor_cidrs_are_refused() {
        assert!("10.0.0.0/8,::1,192.0.2.1".parse::<TrustedProxies>().is_ok());
        assert!(matches!("10.0.0.0/8,proxy.local".parse::<TrustedProxies>(), Err(BadProxy(e)) if e == "proxy.local"));
    }
}
