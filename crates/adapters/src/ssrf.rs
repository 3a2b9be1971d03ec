//! The SSRF guard: destinations may not reach loopback, private, link-local, carrier-grade
//! NAT, cloud metadata, documentation, benchmarking and other non-public addresses, nor IPv6
//! forms that carry such an IPv4 address (mapped, NAT64, 6to4, Teredo), unless
//! `security.allow_private_destinations` is on ([`UrlPolicy::AllowPrivate`]).
//!
//! It acts twice, because DNS can answer differently later:
//! - when a destination is written: a literal address or a `localhost` name in a URL is refused,
//!   and so is a name that resolves to a forbidden address then ([`UrlPolicy::check_resolved`]);
//!   a name that does not resolve at all is accepted;
//! - when a connection is made: literal addresses are checked before any request
//!   ([`UrlPolicy::check_url`]) and names resolve through [`GuardedResolver`], which fails the
//!   connection when any address is forbidden. Redirects are never followed (see
//!   `http::client`), so a 3xx cannot lead around either check.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::Name;

use url::{Host, Url};

/// The configuration key that lets destinations reach private addresses.
pub const SETTING: &str = "security.allow_private_destinations";

/// Which addresses destinations may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlPolicy {
    /// Public addresses only: the default.
    #[default]
    PublicOnly,
    /// Any address (`security.allow_private_destinations = true`): for a hub whose receivers
    /// live on the same private network, and for local development.
    AllowPrivate,
}

/// Why a destination's host was refused. Its message names the address, the range and the
/// setting that would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject} {range}; destinations may reach private addresses only when {SETTING} = true")]
pub struct Forbidden {
    /// `127.0.0.1 is a loopback address` or `db.internal resolves to 10.0.0.1, a private address`.
    subject: String,
    range: String,
    /// The host as written.
    pub host: String,
    /// The refused address; `None` for a `localhost` name refused without resolving.
    pub address: Option<IpAddr>,
}

impl Forbidden {
    fn literal(ip: IpAddr, range: String) -> Self {
        Self { subject: format!("{ip} is"), range, host: ip.to_string(), address: Some(ip) }
    }

    fn resolved(host: &str, ip: IpAddr, range: String) -> Self {
        Self { subject: format!("{host} resolves to {ip},"), range, host: host.to_owned(), address: Some(ip) }
    }

    fn localhost(host: &str) -> Self {
        Self {
            subject: format!("{host} is"),
            range: "a loopback name".to_owned(),
            host: host.to_owned(),
            address: None,
        }
    }
}

impl UrlPolicy {
    /// The policy `security.allow_private_destinations` asks for.
    pub fn from_setting(allow_private_destinations: bool) -> Self {
        if allow_private_destinations { Self::AllowPrivate } else { Self::PublicOnly }
    }

    /// Checks a URL's host without resolving it: literal addresses and `localhost` names.
    pub fn check_url(self, url: &Url) -> Result<(), Forbidden> {
        match url.host() {
            Some(host) => self.check_host(&host),
            None => Ok(()),
        }
    }

    /// Checks a host without resolving it: literal addresses and `localhost` names.
    pub fn check_host(self, host: &Host<&str>) -> Result<(), Forbidden> {
        if self == Self::AllowPrivate {
            return Ok(());
        }
        match host {
            Host::Ipv4(ip) => check_literal(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => check_literal(IpAddr::V6(*ip)),
            Host::Domain(name) if is_localhost(name) => Err(Forbidden::localhost(name)),
            // URLs of schemes the URL standard does not know (`nats://`, `amqp://`) keep an
            // address as a name.
            Host::Domain(name) => match name.parse::<IpAddr>() {
                Ok(ip) => check_literal(ip),
                Err(_) => Ok(()),
            },
        }
    }

    /// [`UrlPolicy::check_url`], then, for a name, what it resolves to now. A name that does
    /// not resolve within `timeout` is accepted: DNS can change, and the connect-time check
    /// still applies.
    pub async fn check_resolved(self, url: &Url, timeout: Duration) -> Result<(), Forbidden> {
        self.check_resolved_with(url, timeout, &system_lookup()).await
    }

    async fn check_resolved_with(
        self,
        url: &Url,
        timeout: Duration,
        lookup: &Lookup,
    ) -> Result<(), Forbidden> {
        self.check_url(url)?;
        let (Self::PublicOnly, Some(Host::Domain(name))) = (self, url.host()) else {
            return Ok(());
        };
        match tokio::time::timeout(timeout, lookup(name.to_owned())).await {
            Ok(Ok(addresses)) => check_addresses(name, &addresses),
            Ok(Err(_)) | Err(_) => Ok(()),
        }
    }
}

fn check_literal(ip: IpAddr) -> Result<(), Forbidden> {
    match forbidden_range(ip) {
        Some(range) => Err(Forbidden::literal(ip, range)),
        None => Ok(()),
    }
}

fn check_addresses(host: &str, addresses: &[SocketAddr]) -> Result<(), Forbidden> {
    for address in addresses {
        if let Some(range) = forbidden_range(address.ip()) {
            return Err(Forbidden::resolved(host, address.ip(), range));
        }
    }
    Ok(())
}

/// `localhost` and its subdomains (RFC 6761), which resolvers may answer without asking DNS.
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// What makes `ip` unfit for a destination (`a loopback address (127.0.0.0/8)`), or `None`
/// for a public address.
pub fn forbidden_range(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(ip) => v4_range(ip).map(str::to_owned),
        IpAddr::V6(ip) => v6_range(ip),
    }
}

/// Checked in order, so the narrower entries come before the ranges that contain them.
const V4_RANGES: [([u8; 4], u32, &str); 16] = [
    ([0, 0, 0, 0], 8, "a \"this network\" address (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "a private address (10.0.0.0/8)"),
    ([100, 64, 0, 0], 10, "a carrier-grade NAT address (100.64.0.0/10)"),
    ([127, 0, 0, 0], 8, "a loopback address (127.0.0.0/8)"),
    ([169, 254, 169, 254], 32, "the cloud metadata address"),
    ([169, 254, 0, 0], 16, "a link-local address (169.254.0.0/16)"),
    ([172, 16, 0, 0], 12, "a private address (172.16.0.0/12)"),
    ([192, 0, 0, 0], 24, "an IETF protocol assignment (192.0.0.0/24)"),
    ([192, 0, 2, 0], 24, "a documentation address (192.0.2.0/24)"),
    ([192, 168, 0, 0], 16, "a private address (192.168.0.0/16)"),
    ([198, 18, 0, 0], 15, "a benchmarking address (198.18.0.0/15)"),
    ([198, 51, 100, 0], 24, "a documentation address (198.51.100.0/24)"),
    ([203, 0, 113, 0], 24, "a documentation address (203.0.113.0/24)"),
    ([224, 0, 0, 0], 4, "a multicast address (224.0.0.0/4)"),
    ([255, 255, 255, 255], 32, "the broadcast address"),
    ([240, 0, 0, 0], 4, "a reserved address (240.0.0.0/4)"),
];

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(network, prefix, _)| {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            bits & mask == u32::from_be_bytes(*network)
        })
        .map(|(_, _, name)| *name)
}

/// AWS's instance metadata service over IPv6.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// The IPv4 address in 32 bits of an IPv6 one, from the segment at `first` on.
fn v4_at(segments: [u16; 8], first: usize) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(segments[first]) << 16) | u32::from(segments[first + 1]))
}

/// What makes an IPv6 address unfit. Forms that carry an IPv4 address (mapped, translated,
/// NAT64, 6to4, Teredo) are judged by that address: a relay or translator would deliver there.
fn v6_range(ip: Ipv6Addr) -> Option<String> {
    let segments = ip.segments();
    let fixed = |description: &str| Some(description.to_owned());
    let embedded = |form: &str, v4: Ipv4Addr| v4_range(v4).map(|range| format!("{form} of {v4}, {range}"));
    if ip.is_unspecified() {
        return fixed("the unspecified address");
    }
    if ip.is_loopback() {
        return fixed("the loopback address");
    }
    if ip == AWS_METADATA_V6 {
        return fixed("the cloud metadata address");
    }
    match segments {
        [0, 0, 0, 0, 0, 0xffff, ..] => embedded("the IPv4-mapped form", v4_at(segments, 6)),
        [0, 0, 0, 0, 0xffff, 0, ..] => embedded("the IPv4-translated form", v4_at(segments, 6)),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => embedded("the NAT64 form", v4_at(segments, 6)),
        [0x64, 0xff9b, 1, ..] => fixed("a local-use NAT64 address (64:ff9b:1::/48)"),
        [0, 0, 0, 0, 0, 0, ..] => fixed("a deprecated IPv4-compatible address (::/96)"),
        [0x100, 0, 0, 0, ..] => fixed("a discard-only address (100::/64)"),
        [0x2002, ..] => embedded("the 6to4 form", v4_at(segments, 1)),
        // Teredo carries the client's address with every bit flipped.
        [0x2001, 0, ..] => embedded("the Teredo form", !v4_at(segments, 6)),
        [0x2001, 2, 0, ..] => fixed("a benchmarking address (2001:2::/48)"),
        [0x2001, 0xdb8, ..] => fixed("a documentation address (2001:db8::/32)"),
        [first, ..] if first & 0xfff0 == 0x3ff0 => fixed("a documentation address (3fff::/20)"),
        [first, ..] if first & 0xfe00 == 0xfc00 => fixed("a unique local address (fc00::/7)"),
        [first, ..] if first & 0xffc0 == 0xfe80 => fixed("a link-local address (fe80::/10)"),
        [first, ..] if first & 0xffc0 == 0xfec0 => fixed("a site-local address (fec0::/10)"),
        [first, ..] if first & 0xff00 == 0xff00 => fixed("a multicast address (ff00::/8)"),
        _ => None,
    }
}

type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;
/// Resolves a host name; the system resolver, or a test double.
type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    })
}

/// The `http` adapter's resolver: the system's. Under [`UrlPolicy::PublicOnly`] it fails
/// when any address is forbidden (so no connection to one is even attempted), and its
/// [`Forbidden`] error stays in the chain of the request's error, where the adapter finds it.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    lookup: Lookup,
    policy: UrlPolicy,
}

impl GuardedResolver {
    pub(crate) fn new(policy: UrlPolicy) -> Self {
        Self { lookup: system_lookup(), policy }
    }
}

type Resolving = Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, BoxError>> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let lookup = Arc::clone(&self.lookup);
        let guarded = self.policy == UrlPolicy::PublicOnly;
        Box::pin(async move {
            if guarded && is_localhost(&host) {
                return Err(Forbidden::localhost(&host).into());
            }
            let addresses = lookup(host.clone()).await?;
            if guarded {
                check_addresses(&host, &addresses)?;
            }
            Ok(addresses.into_iter())
        })
    }
}

/// The [`Forbidden`] refusal somewhere in `err`'s chain of causes, if the guard caused it.
pub(crate) fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Forbidden> {
    let mut current = Some(err);
    while let Some(cause) = current {
        if let Some(forbidden) = cause.downcast_ref::<Forbidden>() {
            return Some(forbidden);
        }
        current = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forbidden_v4_ranges_are_refused_and_public_ones_pass() {
        for forbidden in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.168.1.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.255",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(forbidden_range(ip(forbidden)).is_some(), "{forbidden}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.3.0",
            "198.51.101.1",
            "203.0.112.255",
            "198.17.255.255",
            "198.20.0.0",
            "93.184.216.34",
            "223.255.255.255",
        ] {
            assert_eq!(forbidden_range(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn forbidden_v6_ranges_are_refused_and_public_ones_pass() {
        for forbidden in [
            "::",
            "::1",
            "::7f00:1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
            "fc00::1",
            "fd12:3456::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(forbidden_range(ip(forbidden)).is_some(), "{forbidden}");
        }
        for public in ["2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8"] {
            assert_eq!(forbidden_range(ip(public)), None, "{public}");
        }
    }

    /// Each IPv6 form that carries an IPv4 address: refused when that address is, allowed when
    /// it is public.
    #[test]
    fn embedded_v4_addresses_are_judged_by_the_v4_address() {
        let cases = [
            // 6to4: 2002:VVVV:VVVV::/48.
            ("2002:7f00:1::1", "2002:808:808::1", "the 6to4 form of 127.0.0.1, a loopback"),
            (
                "2002:a9fe:a9fe::",
                "2002:5db8:d822:1::1",
                "the 6to4 form of 169.254.169.254, the cloud metadata",
            ),
            // Teredo: 2001:0::/32, the client's address inverted in the last 32 bits.
            (
                "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
                "the Teredo form of 10.0.0.1",
            ),
            ("2001::80ff:fffe", "2001::a2bb:2725", "the Teredo form of 127.0.0.1"),
            // NAT64 and the IPv4-mapped and -translated forms.
            ("64:ff9b::c0a8:101", "64:ff9b::5db8:d822", "the NAT64 form of 192.168.1.1"),
            ("64:ff9b::198.51.100.1", "64:ff9b::1.1.1.1", "the NAT64 form of 198.51.100.1, a documentation"),
            ("::ffff:203.0.113.9", "::ffff:1.1.1.1", "the IPv4-mapped form of 203.0.113.9, a documentation"),
            ("::ffff:0:a00:1", "::ffff:0:808:808", "the IPv4-translated form of 10.0.0.1"),
        ];
        for (refused, allowed, message) in cases {
            let range = forbidden_range(ip(refused)).unwrap_or_default();
            assert!(range.starts_with(message), "{refused}: {range:?}");
            assert_eq!(forbidden_range(ip(allowed)), None, "{allowed}");
        }
    }

    #[test]
    fn v6_documentation_benchmarking_and_special_prefixes_are_refused() {
        for (refused, range) in [
            ("2001:db8::1", "a documentation address (2001:db8::/32)"),
            ("2001:db8:ffff:ffff::1", "a documentation address (2001:db8::/32)"),
            ("3fff:fff::1", "a documentation address (3fff::/20)"),
            ("2001:2::1", "a benchmarking address (2001:2::/48)"),
            ("64:ff9b:1::8.8.8.8", "a local-use NAT64 address (64:ff9b:1::/48)"),
            ("100::1", "a discard-only address (100::/64)"),
            ("::8.8.8.8", "a deprecated IPv4-compatible address (::/96)"),
        ] {
            assert_eq!(forbidden_range(ip(refused)).as_deref(), Some(range), "{refused}");
        }
        for allowed in ["2001:db9::1", "2001:2:1::1", "4000::1", "2001:4860:4860::8888", "100:0:0:1::1"] {
            assert_eq!(forbidden_range(ip(allowed)), None, "{allowed}");
        }
    }

    #[test]
    fn embedded_forms_in_urls_are_refused_before_any_lookup() {
        for refused in
            ["http://[2002:a00:1::1]/", "http://[2001::80ff:fffe]:8080/", "https://192.0.2.10/hook"]
        {
            let url = Url::parse(refused).unwrap();
            assert!(UrlPolicy::PublicOnly.check_url(&url).is_err(), "{refused}");
            assert_eq!(UrlPolicy::AllowPrivate.check_url(&url), Ok(()), "{refused}");
        }
    }

    #[test]
    fn messages_name_the_address_the_range_and_the_setting() {
        let url = Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        let err = UrlPolicy::PublicOnly.check_url(&url).unwrap_err();
        assert_eq!(
            err.to_string(),
            "169.254.169.254 is the cloud metadata address; destinations may reach private \
             addresses only when security.allow_private_destinations = true"
        );
        let mapped = Url::parse("http://[::ffff:10.0.0.1]/").unwrap();
        let err = UrlPolicy::PublicOnly.check_url(&mapped).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "::ffff:10.0.0.1 is the IPv4-mapped form of 10.0.0.1, a private address (10.0.0.0/8);"
            ),
            "{err}"
        );
    }

    #[test]
    fn literal_hosts_and_localhost_names_are_checked_without_dns() {
        let policy = UrlPolicy::PublicOnly;
        for refused in [
            "http://127.0.0.1:9000/hook",
            "http://[::1]/",
            "https://10.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://localhost/",
            "http://LocalHost./",
            "http://api.localhost:8080/",
        ] {
            let url = Url::parse(refused).unwrap();
            assert!(policy.check_url(&url).is_err(), "{refused}");
            assert_eq!(UrlPolicy::AllowPrivate.check_url(&url), Ok(()), "{refused}");
        }
        for accepted in ["https://example.com/hook", "http://8.8.8.8/", "http://localhost.example.com/"] {
            assert_eq!(policy.check_url(&Url::parse(accepted).unwrap()), Ok(()), "{accepted}");
        }
    }

    fn lookup_answering(addresses: &'static [&'static str]) -> Lookup {
        Arc::new(move |_host: String| {
            let answer = addresses.iter().map(|a| SocketAddr::new(a.parse().unwrap(), 0)).collect();
            Box::pin(async move { Ok(answer) })
        })
    }

    fn failing_lookup() -> Lookup {
        Arc::new(|_host: String| Box::pin(async { Err(io::Error::other("no such host")) }))
    }

    fn hanging_lookup() -> Lookup {
        Arc::new(|_host: String| Box::pin(std::future::pending()))
    }

    #[tokio::test]
    async fn names_resolving_to_a_forbidden_address_are_refused_at_write_time() {
        let url = Url::parse("https://hooks.internal.test/x").unwrap();
        let timeout = Duration::from_secs(2);
        let policy = UrlPolicy::PublicOnly;
        let err = policy
            .check_resolved_with(&url, timeout, &lookup_answering(&["93.184.216.34", "10.0.0.7"]))
            .await
            .unwrap_err();
        assert_eq!(err.address, Some(ip("10.0.0.7")));
        assert!(err.to_string().starts_with("hooks.internal.test resolves to 10.0.0.7, a private"), "{err}");
        assert_eq!(
            policy.check_resolved_with(&url, timeout, &lookup_answering(&["93.184.216.34"])).await,
            Ok(())
        );
        // DNS may change: a name that does not resolve (now, or in time) is accepted.
        assert_eq!(policy.check_resolved_with(&url, timeout, &failing_lookup()).await, Ok(()));
        let short = Duration::from_millis(20);
        assert_eq!(policy.check_resolved_with(&url, short, &hanging_lookup()).await, Ok(()));
        let private = lookup_answering(&["10.0.0.7"]);
        assert_eq!(UrlPolicy::AllowPrivate.check_resolved_with(&url, timeout, &private).await, Ok(()));
    }

    #[tokio::test]
    async fn names_resolving_to_an_embedded_or_documentation_address_are_refused_at_write_time() {
        let url = Url::parse("https://hooks.internal.test/x").unwrap();
        let timeout = Duration::from_secs(2);
        const ANSWERS: [&[&str]; 4] =
            [&["2002:a9fe:a9fe::1"], &["2001::80ff:fffe"], &["2001:db8::5"], &["198.51.100.20"]];
        for answer in ANSWERS {
            let err = UrlPolicy::PublicOnly
                .check_resolved_with(&url, timeout, &lookup_answering(answer))
                .await
                .unwrap_err();
            assert_eq!(err.address, Some(ip(answer[0])), "{answer:?}");
        }
    }

    #[tokio::test]
    async fn the_system_resolver_sees_localhost_as_loopback() {
        let url = Url::parse("http://localhost:9000/").unwrap();
        // Through the lookup itself, not the name rule.
        let resolved = system_lookup()("localhost".to_owned()).await.unwrap();
        assert!(resolved.iter().all(|a| forbidden_range(a.ip()).is_some()), "{resolved:?}");
        assert!(UrlPolicy::PublicOnly.check_resolved(&url, Duration::from_secs(2)).await.is_err());
    }

    /// A one-shot HTTP server on loopback that answers 204 to anything.
    async fn answering_server() -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        address
    }

    /// POSTs to `url` through a connector resolving with `resolver`.
    async fn post_through(
        resolver: GuardedResolver,
        url: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(resolver);
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
        let request = http::Request::post(url).body(http_body_util::Empty::new()).unwrap();
        client.request(request).await
    }

    fn guarded(lookup: Lookup) -> GuardedResolver {
        GuardedResolver { lookup, policy: UrlPolicy::PublicOnly }
    }

    #[tokio::test]
    async fn the_resolver_refuses_forbidden_addresses_before_connecting() {
        let server = answering_server().await;
        let url = format!("http://receiver.test:{}/hook", server.port());
        let err = post_through(guarded(lookup_answering(&["127.0.0.1"])), &url).await.unwrap_err();
        let forbidden = refusal(&err).expect("the guard's refusal is in the chain");
        assert_eq!(forbidden.host, "receiver.test");
        assert_eq!(forbidden.address, Some(ip("127.0.0.1")));
        // An IPv6 answer that carries a loopback IPv4 address is refused the same way.
        let err = post_through(guarded(lookup_answering(&["2002:7f00:1::1"])), &url).await.unwrap_err();
        assert_eq!(refusal(&err).and_then(|f| f.address), Some(ip("2002:7f00:1::1")));
        let named = format!("http://localhost:{}/", server.port());
        let err = post_through(GuardedResolver::new(UrlPolicy::PublicOnly), &named).await.unwrap_err();
        assert_eq!(refusal(&err).map(|f| f.address), Some(None));
    }

    #[tokio::test]
    async fn allowing_private_addresses_resolves_without_the_guard() {
        let server = answering_server().await;
        let allowing =
            GuardedResolver { lookup: lookup_answering(&["127.0.0.1"]), policy: UrlPolicy::AllowPrivate };
        let url = format!("http://receiver.test:{}/hook", server.port());
        let answer = post_through(allowing, &url).await.expect("the request reaches loopback");
        assert_eq!(answer.status(), 204);
        let named = format!("http://localhost:{}/", server.port());
        let answer = post_through(GuardedResolver::new(UrlPolicy::AllowPrivate), &named).await.unwrap();
        assert_eq!(answer.status(), 204);
    }

    #[test]
    fn addresses_in_urls_of_other_schemes_are_checked_as_addresses() {
        for raw in
            ["nats://127.0.0.1:4222", "amqp://10.0.0.1/vhost", "redis://[::1]:6379/0", "mqtt://localhost"]
        {
            let url = Url::parse(raw).unwrap();
            assert!(UrlPolicy::PublicOnly.check_url(&url).is_err(), "{raw}");
            assert!(UrlPolicy::AllowPrivate.check_url(&url).is_ok(), "{raw}");
        }
        let named = Url::parse("nats://broker.switchyard.invalid:4222").unwrap();
        assert!(UrlPolicy::PublicOnly.check_url(&named).is_ok(), "names are checked when resolved");
    }

    #[test]
    fn policies_follow_the_setting() {
        assert_eq!(UrlPolicy::from_setting(false), UrlPolicy::PublicOnly);
        assert_eq!(UrlPolicy::from_setting(true), UrlPolicy::AllowPrivate);
        assert_eq!(UrlPolicy::default(), UrlPolicy::PublicOnly);
    }
}
