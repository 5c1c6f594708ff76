//! Who is asking, and for what: the client and route parts of a rate-limit key.
//!
//! The client is the socket peer (`ConnectInfo<SocketAddr>`), unless the peer is a trusted
//! proxy: then it is the rightmost address of `Forwarded` (RFC 7239) or `X-Forwarded-For`
//! that is not itself a trusted proxy. Headers from untrusted peers are ignored, so a client
//! cannot pick its own identity. IPv6 clients are grouped by prefix (default /64: one host
//! usually owns a whole /64), and IPv4-mapped IPv6 addresses count as IPv4.
//!
//! The route is the matched route template (`/users/{id}`), so `/users/1` … `/users/N` share a
//! bucket, and requests that match no route share one bucket per client.

use std::{
    fmt,
    hash::{Hash, Hasher},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::atomic::{AtomicBool, Ordering},
};

use axum::extract::{ConnectInfo, MatchedPath};
use http::{HeaderMap, Request, StatusCode};
use ipnet::IpNet;

/// The route part of the key for requests that matched no route.
pub(crate) const UNMATCHED_ROUTE: &str = "(unmatched)";
/// The client part of the key when the server gives no peer address.
pub(crate) const UNKNOWN_CLIENT: &str = "(unknown)";

/// A client as the limiter counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    V4(Ipv4Addr),
    /// The network part of an IPv6 address and the prefix length.
    V6(Ipv6Addr, u8),
    /// No peer address was available.
    Unknown,
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}"),
            Self::V6(network, bits) => write!(f, "{network}/{bits}"),
            Self::Unknown => f.write_str(UNKNOWN_CLIENT),
        }
    }
}

/// The route part of a key: the matched template, or none. Cloning shares the template.
#[derive(Debug, Clone)]
pub(crate) struct Route(Option<MatchedPath>);

impl Route {
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
    }
}

impl CounterKey {
    /// Whether this is a client-and-route key for a request that matched no route.
    pub(crate) fn lacks_route(&self) -> bool {
        matches!(self, Self::Request(_, Route(None)))
    }
}

/// Called with the status of a response to a request that matched no route. A request that
/// matched no route ends in a 404 or a 405 when the layer sits inside the `Router`; any other
/// status means the layer wraps the whole `Router` from outside, where axum has not matched a
/// route yet, so every route shares one bucket per client. Says so once, with the fix.
pub(crate) fn check_unmatched_status(status: StatusCode) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
        return;
    }
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %status,
            "jtc-throttle: a request reached a handler without a matched route, so every route \
             shares one rate-limit bucket per client; the ThrottleLayer wraps the Router from \
             outside (ServiceBuilder around the app?). Apply it with `Router::layer` or \
             `Router::route_layer` instead"
        );
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// What a request is counted under, in any store: cheap to build, hash and compare on every
/// request. The memory store keys its counters by it; the cache store turns it into a cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CounterKey {
    Request(Client, Route),
    Custom(String),
}

/// How to tell clients apart.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) ipv6_prefix: u8,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
        }
    }
}

impl Identity {
    /// The client part of the key for `request`.
    pub(crate) fn client<B>(&self, request: &Request<B>) -> Client {
        let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
            warn_missing_connect_info();
            return Client::Unknown;
        };
        let ip = canonical(peer.ip());
        let ip = if self.trusted_proxies.is_empty() {
            ip
        } else {
            self.resolve(ip, request.headers())
        };
        self.group(ip)
    }

    /// Walks the forwarding chain from the peer towards the client, through trusted proxies.
    fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let chain = forwarded_for(headers);
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) if self.is_trusted(*ip) => continue,
                Some(ip) => return *ip,
                // An entry we cannot read ("unknown", an obfuscated name, garbage): stop at the
                // last proxy we trust rather than guess.
                None => break,
            }
        }
        chain
            .iter()
            .rev()
            .map_while(|hop| hop.filter(|ip| self.is_trusted(*ip)))
            .last()
            .unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// An address as a client: IPv4 as is, IPv6 cut to its prefix.
    fn group(&self, ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4),
            IpAddr::V6(v6) => {
                let bits = self.ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                Client::V6(Ipv6Addr::from(u128::from(v6) & mask), bits)
            }
        }
    }
}

/// The matched route template, or the shared bucket for requests that matched none.
pub(crate) fn route<B>(request: &Request<B>) -> Route {
    Route(request.extensions().get::<MatchedPath>().cloned())
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The addresses of the forwarding chain, client first, from `Forwarded` when present,
/// otherwise `X-Forwarded-For`. `None` marks an entry that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("for=unknown").split(','))
        .filter_map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then_some(value)
                })
                .map(parse_node)
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("unknown").split(','))
        .map(parse_node)
        .collect()
}

/// An address out of a forwarding entry: `192.0.2.1`, `192.0.2.1:8080`, `"[2001:db8::1]:80"`,
/// `2001:db8::1`. Anything else is `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Says once per process how to give the limiter the peer address.
fn warn_missing_connect_info() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "jtc-throttle: the request has no peer address, so every such client shares one \
             rate-limit bucket; serve the app with \
             `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Identity {
        fn client_text<B>(&self, request: &Request<B>) -> String {
            self.client(request).to_string()
        }
    }

    fn request(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    fn behind(proxies: &[&str]) -> Identity {
        Identity {
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let identity = Identity::default();
        let spoofed = request(
            "203.0.113.9:5000",
            &[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")],
        );
        assert_eq!(identity.client_text(&spoofed), "203.0.113.9");
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let identity = behind(&["10.0.0.0/8"]);
        let via_two_proxies = request(
            "10.0.0.2:80",
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.1")],
        );
        // 6.6.6.6 was written by the client itself; 198.51.100.7 is who reached our proxy.
        assert_eq!(identity.client_text(&via_two_proxies), "198.51.100.7");
        let two_headers = request(
            "10.0.0.2:80",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "198.51.100.8"),
            ],
        );
        assert_eq!(identity.client_text(&two_headers), "198.51.100.8");
    }

    #[test]
    fn forwarded_is_preferred_and_parsed_per_rfc_7239() {
        let identity = behind(&["10.0.0.0/8"]);
        let r = request(
            "10.1.1.1:443",
            &[
                (
                    "forwarded",
                    r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711""#,
                ),
                ("x-forwarded-for", "9.9.9.9"),
            ],
        );
        assert_eq!(identity.client_text(&r), "2001:db8:cafe::/64");
        let with_port = request("10.1.1.1:443", &[("forwarded", "for=\"192.0.2.43:47011\"")]);
        assert_eq!(identity.client_text(&with_port), "192.0.2.43");
    }

    #[test]
    fn unreadable_hops_stop_at_the_last_trusted_proxy() {
        let identity = behind(&["10.0.0.0/8"]);
        let r = request(
            "10.0.0.2:80",
            &[("x-forwarded-for", "1.1.1.1, garbage, 10.0.0.9")],
        );
        assert_eq!(identity.client_text(&r), "10.0.0.9");
        let only_proxies = request("10.0.0.2:80", &[("x-forwarded-for", "10.0.0.3")]);
        assert_eq!(identity.client_text(&only_proxies), "10.0.0.3");
        let no_header = request("10.0.0.2:80", &[]);
        assert_eq!(identity.client_text(&no_header), "10.0.0.2");
    }

    #[test]
    fn ipv6_is_grouped_by_prefix_and_mapped_ipv4_is_ipv4() {
        let identity = Identity::default();
        let a = request("[2001:db8:1:2:aaaa::1]:1", &[]);
        let b = request("[2001:db8:1:2:ffff::9]:1", &[]);
        let c = request("[2001:db8:1:3::1]:1", &[]);
        assert_eq!(identity.client_text(&a), identity.client_text(&b));
        assert_ne!(identity.client_text(&a), identity.client_text(&c));
        assert_eq!(
            identity.client_text(&request("[::ffff:192.0.2.1]:1", &[])),
            "192.0.2.1"
        );
        let exact = Identity {
            ipv6_prefix: 128,
            ..Identity::default()
        };
        assert_ne!(exact.client_text(&a), exact.client_text(&b));
        let everything = Identity {
            ipv6_prefix: 0,
            ..Identity::default()
        };
        assert_eq!(everything.client_text(&a), "::/0");
    }

    #[test]
    fn a_missing_peer_address_is_one_shared_bucket() {
        let request = Request::builder()
            .header("x-forwarded-for", "1.2.3.4")
            .body(())
            .unwrap();
        assert_eq!(Identity::default().client_text(&request), UNKNOWN_CLIENT);
    }
}
