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
///
/// A custom key is built with [`CounterKey::custom`], which bounds its length: see there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CounterKey {
    Request(Client, Route),
    Custom(String),
}

/// The longest custom rate-limit key (from a `key_fn`, [`Limit::by`](crate::Limit::by) or
/// [`RateLimiter`](crate::RateLimiter)) counted under its own text, in bytes. A longer key
/// (or one that starts like a digest, `~blake3:`) is counted under its BLAKE3 digest, 72
/// bytes, the same in every process: no client-chosen key can be too long for a store, and
/// each costs the limiter a bounded amount of memory.
pub const MAX_KEY_TEXT_BYTES: usize = 200;
/// How a digested key starts. A key given with this start is digested too, so a client cannot
/// send the digest of someone else's long key and share that key's counters.
const DIGEST_MARK: &str = "~blake3:";
/// The length of a digested key: the mark and 64 hex digits.
const DIGEST_TEXT_BYTES: usize = DIGEST_MARK.len() + 64;
/// BLAKE3's key-derivation context: the digests of this crate are of their own domain.
const DIGEST_CONTEXT: &str = "jtc-throttle 2026-12-06 long rate-limit key";

impl CounterKey {
    /// A custom key (from a `key_fn`, [`Limit::by`](crate::Limit::by) or
    /// [`RateLimiter`](crate::RateLimiter)), bounded: a key longer than
    /// [`MAX_KEY_TEXT_BYTES`] is replaced by its BLAKE3 digest (keyed by this crate's own
    /// derivation context), so no client-chosen key can be too long for a store, and each
    /// tracked key costs a bounded amount of memory. The digest is the same in every process,
    /// so instances sharing a cache share the count of a long key; BLAKE3 is collision
    /// resistant, so two keys never share a count by accident or by design.
    pub(crate) fn custom(key: &str) -> Self {
        if key.len() <= MAX_KEY_TEXT_BYTES && !key.starts_with(DIGEST_MARK) {
            return Self::Custom(key.to_owned());
        }
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        hasher.update(key.as_bytes());
        let mut text = String::with_capacity(DIGEST_TEXT_BYTES);
        text.push_str(DIGEST_MARK);
        text.push_str(hasher.finalize().to_hex().as_str());
        Self::Custom(text)
    }

    /// The bytes this key holds on the heap (for the memory store's accounting).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::Request(..) => 0,
            Self::Custom(text) => text.capacity(),
        }
    }
}

/// The forwarding header your trusted proxies write, the one the limiter reads
/// ([`ThrottleLayer::forwarded_header`](crate::ThrottleLayer::forwarded_header)).
///
/// Only that header is read; the other is ignored even from a trusted proxy. A proxy passes
/// through the headers it does not write itself, so reading both would let a client pick its
/// own identity by sending the one its proxy does not touch.
///
/// | in front of the app | header |
/// |---|---|
/// | nginx (`proxy_add_x_forwarded_for`), AWS ALB, Cloudflare, Google Cloud LB, HAProxy (`option forwardfor`), Envoy (`use_remote_address`) | `XForwardedFor` |
/// | a proxy configured for RFC 7239 (nginx with `proxy_set_header Forwarded ...`, Envoy's `forwarded` header option) | `Forwarded` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`: what most proxies and load balancers append.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

/// How to tell clients apart.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) forwarded_header: ForwardedHeader,
    pub(crate) ipv6_prefix: u8,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
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
        let chain = forwarded_for(headers, self.forwarded_header);
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

/// The addresses of the forwarding chain, client first, from the one header the trusted
/// proxies write. `None` marks an entry that is not an address.
fn forwarded_for(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    match header {
        ForwardedHeader::Forwarded => headers
            .get_all(http::header::FORWARDED)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("for=unknown").split(','))
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (name, value) = pair.split_once('=')?;
                        name.trim().eq_ignore_ascii_case("for").then_some(value)
                    })
                    .and_then(parse_node)
            })
            .collect(),
        ForwardedHeader::XForwardedFor => headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("unknown").split(','))
            .map(parse_node)
            .collect(),
    }
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
    fn forwarded_is_read_only_when_named_and_parsed_per_rfc_7239() {
        let identity = Identity {
            forwarded_header: ForwardedHeader::Forwarded,
            ..behind(&["10.0.0.0/8"])
        };
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
        // An element without `for` is a hop we cannot read: stop at the last trusted proxy.
        let no_for = request(
            "10.1.1.1:443",
            &[("forwarded", "for=192.0.2.1, proto=https")],
        );
        assert_eq!(identity.client_text(&no_for), "10.1.1.1");
    }

    #[test]
    fn only_the_named_header_is_read() {
        // The default: X-Forwarded-For, which nginx and ALB append to. A client's own
        // `Forwarded`, passed through untouched by such a proxy, is ignored.
        let identity = behind(&["10.0.0.0/8"]);
        let spoofing = request(
            "10.0.0.2:80",
            &[
                ("forwarded", "for=1.2.3.4"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
        );
        assert_eq!(identity.client_text(&spoofing), "198.51.100.7");
        let only_forwarded = request("10.0.0.2:80", &[("forwarded", "for=1.2.3.4")]);
        assert_eq!(identity.client_text(&only_forwarded), "10.0.0.2");
        // Named the other way round, X-Forwarded-For is the one ignored.
        let rfc = Identity {
            forwarded_header: ForwardedHeader::Forwarded,
            ..behind(&["10.0.0.0/8"])
        };
        let spoofing = request(
            "10.0.0.2:80",
            &[
                ("forwarded", "for=198.51.100.8"),
                ("x-forwarded-for", "1.2.3.4"),
            ],
        );
        assert_eq!(rfc.client_text(&spoofing), "198.51.100.8");
    }

    #[test]
    fn long_custom_keys_are_digested_and_digests_cannot_be_forged() {
        let short = CounterKey::custom("user:42");
        assert_eq!(short, CounterKey::Custom("user:42".into()));
        let exact = "k".repeat(MAX_KEY_TEXT_BYTES);
        assert_eq!(
            CounterKey::custom(&exact),
            CounterKey::Custom(exact.clone())
        );
        let long = "k".repeat(100_000);
        let digest = CounterKey::custom(&long);
        let CounterKey::Custom(text) = &digest else {
            panic!("custom")
        };
        assert_eq!(text.len(), DIGEST_TEXT_BYTES);
        assert!(text.starts_with(DIGEST_MARK));
        assert_eq!(digest, CounterKey::custom(&long), "the same in every call");
        assert_ne!(digest, CounterKey::custom(&format!("{long}x")));
        // Sending the digest's text as a key does not reach the long key's counter.
        assert_ne!(CounterKey::custom(text), digest);
        assert!(digest.heap_bytes() <= 2 * DIGEST_TEXT_BYTES);
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
