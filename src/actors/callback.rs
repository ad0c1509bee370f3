//! Callback delivery: one HTTP POST per attempt, classified into delivered / retry / rejected, with the event id,
//! attempt number and (when a secret is configured) an HMAC-SHA256 signature over `timestamp.body`; the retry
//! schedule (exponential with jitter); and the ordered per-deployment outbox the deployment actor owns.
//!
//! Delivery runs as a spawned task that reports back by message, so an actor's mailbox never waits on the network.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::domain::{HttpUrl, Phase};

/// Header carrying a stable id per deployment and phase, for de-duplication by the receiver.
pub const HEADER_EVENT_ID: &str = "X-KIDP-Event-Id";
/// Header carrying the 1-based attempt number.
pub const HEADER_ATTEMPT: &str = "X-KIDP-Delivery-Attempt";
/// Header carrying the Unix time (seconds) the signature covers.
pub const HEADER_TIMESTAMP: &str = "X-KIDP-Timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const HEADER_SIGNATURE: &str = "X-KIDP-Signature";

/// How long one attempt may take before it counts as failed (and is retried).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivery settings shared by every deployment.
#[derive(Clone, Debug)]
pub struct CallbackPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub signing_secret: Option<String>,
    /// Host patterns callbacks may go to (`*` wildcards); empty allows any host.
    pub allowed_hosts: Vec<String>,
    /// Whether link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata services) are allowed.
    pub allow_link_local: bool,
}

/// One callback to deliver.
#[derive(Clone, Debug)]
pub struct Callback {
    pub phase: Phase,
    pub url: String,
    pub body: serde_json::Value,
    pub event_id: String,
}

/// What one attempt achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// Worth retrying: connect error, timeout, 408, 429, 5xx.
    Retry(String),
    /// Not worth retrying: another 4xx, or a URL the policy refuses.
    Rejected(String),
}

/// A stable event id for a deployment's phase, so a redelivery after a broker restart carries the same id.
pub fn event_id(deployment_id: &str, phase: Phase) -> String {
    let digest = Sha256::digest(format!("{deployment_id}/{}", phase.as_str()).as_bytes());
    format!("evt-{}", hex::encode(&digest[..16]))
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before attempt `attempt + 1` (attempt is 1-based): doubling from the initial backoff up to the
/// maximum, with ±20% jitter so that many deployments retrying one manager do not synchronize.
pub fn backoff(policy: &CallbackPolicy, attempt: u32) -> Duration {
    use rand::Rng;
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let base = exp.min(policy.max_backoff);
    let jitter = rand::rng().random_range(0.8..1.2);
    base.mul_f64(jitter)
}

fn host_allowed(policy: &CallbackPolicy, host: &str) -> bool {
    if policy.allowed_hosts.is_empty() {
        return true;
    }
    policy.allowed_hosts.iter().any(|p| glob(p, host))
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(s),
        Some((pre, post)) => {
            s.len() >= pre.len() + post.len()
                && s[..pre.len()].eq_ignore_ascii_case(pre)
                && s[s.len() - post.len()..].eq_ignore_ascii_case(post)
        }
    }
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Whether the policy lets callbacks go to `url` (checked at provision time, and again, with DNS, at delivery).
pub fn check_url(policy: &CallbackPolicy, url: &str) -> Result<(), String> {
    let parsed = HttpUrl::parse(url)
        .map_err(|_| "callbackUrl must be an absolute http(s) URL".to_string())?;
    if !host_allowed(policy, parsed.host()) {
        return Err(format!(
            "callbackUrl host \"{}\" is not in the broker's callback allowlist",
            parsed.host()
        ));
    }
    if !policy.allow_link_local && parsed.ip().is_some_and(link_local) {
        return Err("callbackUrl must not point at a link-local address".into());
    }
    Ok(())
}

/// Resolves the URL's host and refuses link-local answers (a name may resolve to a metadata service).
async fn check_resolved(policy: &CallbackPolicy, url: &str) -> Result<(), String> {
    check_url(policy, url)?;
    if policy.allow_link_local {
        return Ok(());
    }
    let parsed = HttpUrl::parse(url).map_err(|_| "invalid URL".to_string())?;
    if parsed.ip().is_some() {
        return Ok(());
    }
    let port = parsed.port();
    if let Ok(addrs) = tokio::net::lookup_host((parsed.host(), port)).await {
        for a in addrs {
            if link_local(a.ip()) {
                return Err(format!(
                    "{} resolves to a link-local address",
                    parsed.host()
                ));
            }
        }
    }
    Ok(())
}

/// One delivery attempt.
pub async fn deliver(
    client: &reqwest::Client,
    policy: &CallbackPolicy,
    cb: &Callback,
    attempt: u32,
) -> Outcome {
    if let Err(e) = check_resolved(policy, &cb.url).await {
        return Outcome::Rejected(e);
    }
    let body = serde_json::to_vec(&cb.body).unwrap_or_default();
    let mut req = client
        .post(&cb.url)
        .timeout(ATTEMPT_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(HEADER_EVENT_ID, &cb.event_id)
        .header(HEADER_ATTEMPT, attempt.to_string());
    if let Some(secret) = &policy.signing_secret {
        let ts = jiff::Timestamp::now().as_second().max(0) as u64;
        req = req
            .header(HEADER_TIMESTAMP, ts.to_string())
            .header(HEADER_SIGNATURE, signature(secret, ts, &body));
    }
    match req.body(body).send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            match code {
                200..=299 => Outcome::Delivered,
                408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {code}")),
                _ => Outcome::Rejected(format!("HTTP {code}")),
            }
        }
        Err(e) if e.is_timeout() => Outcome::Retry("timeout".into()),
        Err(e) => Outcome::Retry(format!("connection error: {e}")),
    }
}

/// A deployment's callbacks, delivered one at a time in order.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Callback>,
    in_flight: bool,
    /// A retry is scheduled: nothing is sent until [`Outbox::resume`].
    backing_off: bool,
    attempt: u32,
}

impl Outbox {
    /// Queues a callback unless the same phase is already queued.
    pub fn push(&mut self, cb: Callback) {
        if self.queue.iter().any(|q| q.phase == cb.phase) {
            return;
        }
        crate::metrics::callback_queue(1.0);
        self.queue.push_back(cb);
    }

    /// The next callback to send and its attempt number, if nothing is in flight.
    pub fn start_next(&mut self) -> Option<(Callback, u32)> {
        if self.in_flight || self.backing_off {
            return None;
        }
        let head = self.queue.front()?.clone();
        self.in_flight = true;
        self.attempt += 1;
        Some((head, self.attempt))
    }

    /// The head's attempt finished; returns the head when it is done with (delivered or rejected).
    pub fn finish(&mut self, outcome: &Outcome) -> Option<Callback> {
        self.in_flight = false;
        match outcome {
            Outcome::Retry(_) => {
                self.backing_off = true;
                None
            }
            Outcome::Delivered | Outcome::Rejected(_) => {
                self.attempt = 0;
                crate::metrics::callback_queue(-1.0);
                self.queue.pop_front()
            }
        }
    }

    /// The scheduled retry is due.
    pub fn resume(&mut self) {
        self.backing_off = false;
    }

    /// The attempt number of the head (0 when none has been made).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.in_flight
    }

    pub fn contains(&self, phase: Phase) -> bool {
        self.queue.iter().any(|c| c.phase == phase)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if !self.queue.is_empty() {
            crate::metrics::callback_queue(-(self.queue.len() as f64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CallbackPolicy {
        CallbackPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            signing_secret: None,
            allowed_hosts: vec![],
            allow_link_local: false,
        }
    }

    #[test]
    fn event_ids_are_stable_per_phase() {
        let a = event_id("deploy-0123", Phase::Ready);
        assert_eq!(a, event_id("deploy-0123", Phase::Ready));
        assert_ne!(a, event_id("deploy-0123", Phase::Provisioning));
        assert!(a.starts_with("evt-") && a.len() == 36);
    }

    #[test]
    fn signature_is_hmac_over_timestamp_dot_body() {
        // Reference computed independently: HMAC-SHA256(key="secret", msg="1700000000.{}").
        let sig = signature("secret", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(sig, signature("other", 1_700_000_000, b"{}"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy();
        let d1 = backoff(&p, 1);
        let d3 = backoff(&p, 3);
        let d20 = backoff(&p, 20);
        assert!(
            d1 >= Duration::from_millis(80) && d1 <= Duration::from_millis(120),
            "{d1:?}"
        );
        assert!(
            d3 >= Duration::from_millis(320) && d3 <= Duration::from_millis(480),
            "{d3:?}"
        );
        assert!(d20 <= Duration::from_millis(2400), "{d20:?}");
    }

    #[test]
    fn url_policy() {
        let mut p = policy();
        assert!(check_url(&p, "http://manager:9090/cb").is_ok());
        assert!(check_url(&p, "http://169.254.169.254/latest").is_err());
        assert!(check_url(&p, "http://[fe80::1]/x").is_err());
        p.allowed_hosts = vec!["*.example.com".into(), "manager".into()];
        assert!(check_url(&p, "https://hooks.example.com/cb").is_ok());
        assert!(check_url(&p, "http://manager/cb").is_ok());
        assert!(check_url(&p, "http://evil.com/cb").is_err());
        p.allow_link_local = true;
        p.allowed_hosts.clear();
        assert!(check_url(&p, "http://169.254.169.254/latest").is_ok());
    }

    #[test]
    fn outbox_is_ordered_and_retries_the_head() {
        let mut o = Outbox::default();
        let cb = |phase| Callback {
            phase,
            url: "http://m/cb".into(),
            body: serde_json::json!({}),
            event_id: "e".into(),
        };
        o.push(cb(Phase::Provisioning));
        o.push(cb(Phase::Ready));
        o.push(cb(Phase::Ready));
        assert_eq!(o.len(), 2, "a queued phase is not queued twice");
        let (first, n) = o.start_next().unwrap();
        assert_eq!((first.phase, n), (Phase::Provisioning, 1));
        assert!(o.start_next().is_none(), "one in flight at a time");
        assert!(o.finish(&Outcome::Retry("503".into())).is_none());
        assert!(
            o.start_next().is_none(),
            "nothing is sent while backing off"
        );
        o.resume();
        let (again, n) = o.start_next().unwrap();
        assert_eq!((again.phase, n), (Phase::Provisioning, 2));
        assert_eq!(
            o.finish(&Outcome::Delivered).unwrap().phase,
            Phase::Provisioning
        );
        let (next, n) = o.start_next().unwrap();
        assert_eq!((next.phase, n), (Phase::Ready, 1));
        o.finish(&Outcome::Rejected("404".into()));
        assert!(o.is_idle());
    }
}
