//! Per-request limits applied before routing: the request line and header sizes (414/431 in the error body),
//! a deadline for the request body, and the per-client rate limit of the `/v1` API (429 with `Retry-After`).
//!
//! The rate limit is keyed by [`RateKey`]: the authenticated subject when the request carries a
//! [`RateSubject`] extension (the authentication layer, which runs before this one, inserts it), else the
//! client's IP address. This module never authenticates anything and never trusts `X-Forwarded-For` from a peer
//! outside `--trusted-proxies`.
//!
//! Not limited: `/health`, `/readiness`, the spec and Swagger UI (probes and documentation must answer while a
//! client is being throttled) and the metrics port (a separate server).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use poem::error::ResponseError as _;
use poem::http::HeaderValue;
use poem::{Body, Request, Response};

use super::errors::Problem;

/// How often idle keys are dropped from the limiter's table. A key is dropped once its bucket is full again
/// (indistinguishable from a new key), so the table holds only clients seen within about one burst's refill
/// time; sweeping once a minute keeps it bounded without touching the table on every request.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// IPv6 clients are keyed by their /64: one host usually holds a whole /64 and could otherwise rotate through
/// 2^64 addresses, each with a fresh budget.
const IPV6_KEY_PREFIX: u8 = 64;

/// The authenticated subject of a request, as the authentication layer records it in the request's
/// extensions. When present it is the rate-limit key; the layer that inserts it must run before this one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateSubject(pub String);

/// Whose budget a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// An authenticated subject.
    Subject(String),
    /// An unauthenticated client, by IP address (IPv6 by its /64).
    Ip(IpAddr),
}

/// What is limited and how, from the configuration.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Requests per minute per [`RateKey`] on the `/v1` API; 0 disables rate limiting.
    pub rate_per_minute: u32,
    /// How many requests a client may make at once before the per-minute rate applies.
    pub rate_burst: u32,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Longest request target (path and query) accepted, in bytes; longer gets 414.
    pub max_uri_bytes: usize,
    /// Largest total of header names and values accepted, in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// The whole request body must arrive within this long after the headers.
    pub body_read_timeout: Duration,
}

impl RequestLimits {
    /// The limits from the command line.
    pub fn from_args(args: &crate::config::Args) -> Self {
        RequestLimits {
            rate_per_minute: args.rate_limit_per_minute,
            rate_burst: args.rate_limit_burst,
            trusted_proxies: args.trusted_proxies.clone(),
            max_uri_bytes: args.max_uri_bytes,
            max_header_bytes: args.max_header_bytes,
            body_read_timeout: Duration::from_secs(args.body_read_timeout_seconds.max(1)),
        }
    }
}

/// The limits in force for one server: the checks run on every request, in [`RequestGuard::admit`].
pub struct RequestGuard {
    limits: RequestLimits,
    limiter: Option<DefaultKeyedRateLimiter<RateKey>>,
    clock: DefaultClock,
    started: Instant,
    /// Seconds since `started` of the last sweep of idle keys.
    last_sweep: AtomicU64,
}

impl RequestGuard {
    /// Builds the guard; a rate of 0 disables rate limiting.
    pub fn new(limits: RequestLimits) -> Arc<Self> {
        let limiter = NonZeroU32::new(limits.rate_per_minute).map(|rate| {
            let burst = NonZeroU32::new(limits.rate_burst).unwrap_or(NonZeroU32::MIN);
            DefaultKeyedRateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Arc::new(RequestGuard {
            limits,
            limiter,
            clock: DefaultClock::default(),
            started: Instant::now(),
            last_sweep: AtomicU64::new(0),
        })
    }

    /// Checks one request before it is routed: the refusal to send, or the request to serve. `endpoint` is the
    /// route template, for the metric.
    // The refusal is a whole response, as the middleware sends it; it is no bigger than the request it returns.
    #[allow(clippy::result_large_err)]
    pub fn admit(&self, req: Request, endpoint: &'static str) -> Result<Request, Response> {
        let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if target > self.limits.max_uri_bytes {
            return Err(Problem::new(
                414,
                "uri_too_long",
                format!(
                    "the request target is longer than {} bytes",
                    self.limits.max_uri_bytes
                ),
            )
            .as_response());
        }
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        if header_bytes > self.limits.max_header_bytes {
            return Err(Problem::new(
                431,
                "headers_too_large",
                format!(
                    "the request headers are larger than {} bytes",
                    self.limits.max_header_bytes
                ),
            )
            .as_response());
        }
        if is_rate_limited_path(req.uri().path())
            && let Some(limiter) = &self.limiter
        {
            let key = rate_key(&req, &self.limits.trusted_proxies);
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(self.clock.now());
                crate::metrics::rate_limited(endpoint);
                return Err(self.too_many(wait));
            }
            self.sweep_now_and_then(limiter);
        }
        Ok(req)
    }

    /// Puts the request's body under the read deadline. This runs before anything reads the body (the audit
    /// layer peeks at it before the rate limit is checked), so no reader can wait on a withheld body for ever.
    pub fn deadline_body(&self, req: &mut Request) {
        let body = req.take_body();
        req.set_body(with_deadline(body, self.limits.body_read_timeout));
    }

    fn too_many(&self, wait: Duration) -> Response {
        let seconds = retry_after_seconds(wait);
        let mut resp = Problem::rate_limited(self.limits.rate_per_minute, seconds).as_response();
        resp.headers_mut()
            .insert(poem::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        resp
    }

    /// Drops keys whose budget is full again, at most once per [`SWEEP_INTERVAL`]; the request that wins the
    /// race does it, so there is no background task to stop.
    fn sweep_now_and_then(&self, limiter: &DefaultKeyedRateLimiter<RateKey>) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now >= last + SWEEP_INTERVAL.as_secs()
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The `/v1` API is limited; health, readiness, the spec and the docs are not.
fn is_rate_limited_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// `Retry-After` in whole seconds, rounded up (a client that waits exactly that long is admitted), at least 1.
fn retry_after_seconds(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

/// The key a request is counted against: its subject if authenticated, else its client IP.
pub fn rate_key(req: &Request, trusted_proxies: &[IpNet]) -> RateKey {
    if let Some(RateSubject(subject)) = req.extensions().get::<RateSubject>() {
        return RateKey::Subject(subject.clone());
    }
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_canonical())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    RateKey::Ip(ip_key(client_ip(peer, forwarded, trusted_proxies)))
}

/// The client's address: the peer, unless the peer is a trusted proxy; then `X-Forwarded-For` is walked from
/// the right (the hop the nearest proxy saw) past every trusted proxy, and the first untrusted hop is the
/// client. The entries left of it are whatever the client chose to send, so they are never used. An entry
/// that is not an address ends the walk at the last trusted hop.
fn client_ip<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.map(str::trim).filter(|h| !h.is_empty()).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - u32::from(IPV6_KEY_PREFIX));
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// The body, failing with a timeout error unless it has all arrived by `timeout` from now: a client that sends
/// complete headers and then trickles (or withholds) the body would otherwise hold its connection forever.
fn with_deadline(body: Body, timeout: Duration) -> Body {
    let deadline = tokio::time::Instant::now() + timeout;
    let chunks = Box::pin(body.into_bytes_stream());
    let timed = futures::stream::unfold(Some(chunks), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs()
                    ),
                )),
                None,
            )),
        }
    });
    Body::from_bytes_stream(timed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        let xff = |s: &'static str| s.split(',');
        // An untrusted peer: its header is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), xff("198.51.100.1"), &trusted),
            ip("203.0.113.9")
        );
        // A trusted peer: the right-most untrusted hop, not what the client wrote on the left.
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                xff("1.1.1.1, 198.51.100.7, 10.0.0.1"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // Every hop trusted: the left-most.
        assert_eq!(
            client_ip(ip("127.0.0.1"), xff("10.1.1.1, 10.0.0.1"), &trusted),
            ip("10.1.1.1")
        );
        // Garbage ends the walk at the last trusted hop; no header leaves the peer.
        assert_eq!(
            client_ip(ip("10.0.0.2"), xff("nonsense, 10.0.0.1"), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), std::iter::empty(), &trusted),
            ip("10.0.0.2")
        );
        // Ports and IPv4-mapped IPv6 are normalised.
        assert_eq!(
            client_ip(ip("10.0.0.2"), xff("[2001:db8::1]:443"), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), xff("::ffff:198.51.100.3"), &trusted),
            ip("198.51.100.3")
        );
    }

    #[test]
    fn an_authenticated_subject_is_the_key_else_the_peer() {
        let peer: std::net::SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let (parts, ()) = poem::http::Request::builder()
            .header("x-forwarded-for", "198.51.100.1")
            .body(())
            .unwrap()
            .into_parts();
        let parts = poem::RequestParts::from((
            parts,
            poem::web::LocalAddr(peer.into()),
            poem::web::RemoteAddr(peer.into()),
            poem::http::uri::Scheme::HTTP,
        ));
        let mut req = Request::from_parts(parts, Body::empty());
        assert_eq!(rate_key(&req, &[]), RateKey::Ip(ip("203.0.113.9")));
        req.extensions_mut()
            .insert(RateSubject("team-platform-manager".into()));
        assert_eq!(
            rate_key(&req, &[]),
            RateKey::Subject("team-platform-manager".into())
        );
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        assert_eq!(
            ip_key(ip("2001:db8:1:2:aaaa::1")),
            ip_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(ip_key(ip("2001:db8:1:2::1")), ip_key(ip("2001:db8:1:3::1")));
        assert_eq!(ip_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn only_the_v1_api_is_limited() {
        for p in ["/v1/provision", "/v1/status", "/v1/nope", "/v1"] {
            assert!(is_rate_limited_path(p), "{p}");
        }
        for p in [
            "/health",
            "/readiness",
            "/openapi.json",
            "/docs",
            "/v10",
            "/",
        ] {
            assert!(!is_rate_limited_path(p), "{p}");
        }
    }
}
