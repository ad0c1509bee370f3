//! Callback delivery: one HTTP POST per attempt, classified into delivered / retry / rejected, with the event id,
//! attempt number and (when a secret is configured) an HMAC-SHA256 signature over `timestamp.body`. The order,
//! retry schedule and lifetime of callbacks are the lifecycle's ([`super::lifecycle`]).
//!
//! Delivery runs as a spawned task that reports back by message, so an actor's mailbox never waits on the network.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::lifecycle::Delivery;
use crate::domain::{CallbackTarget, CallbackUrlPolicy, Phase};

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
    pub signing_secret: Option<String>,
    /// Where callbacks may go.
    pub urls: CallbackUrlPolicy,
}

/// One callback to deliver.
#[derive(Clone, Debug)]
pub struct Callback {
    pub url: String,
    pub body: serde_json::Value,
    pub event_id: String,
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

/// The addresses a name resolved to when it was checked, so the connection goes to exactly those (a second DNS
/// answer cannot swap in an address the policy refuses).
const PIN_FOR: Duration = Duration::from_secs(60);

/// The callback client's DNS resolver: answers with the addresses a delivery's check pinned, and otherwise
/// resolves and refuses any answer the policy refuses.
pub struct CheckedResolver {
    policy: CallbackUrlPolicy,
    pins: Mutex<HashMap<String, (Vec<IpAddr>, Instant)>>,
}

impl CheckedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: CallbackUrlPolicy) -> Arc<Self> {
        Arc::new(CheckedResolver {
            policy,
            pins: Mutex::new(HashMap::new()),
        })
    }

    fn pin(&self, host: &str, ips: Vec<IpAddr>) {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        pins.retain(|_, (_, at)| at.elapsed() < PIN_FOR);
        pins.insert(host.to_ascii_lowercase(), (ips, Instant::now()));
    }

    fn pinned(&self, host: &str) -> Option<Vec<IpAddr>> {
        let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        pins.get(&host.to_ascii_lowercase())
            .filter(|(_, at)| at.elapsed() < PIN_FOR)
            .map(|(ips, _)| ips.clone())
    }

    /// Resolves `host` and checks every answer with its port; pins the answers when all pass. A name that
    /// does not resolve (yet) is worth retrying; an answer the policy refuses is not.
    async fn check(&self, host: &str, port: u16) -> Result<(), Delivery> {
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
            Ok(a) => a.collect(),
            Err(e) => return Err(Delivery::Retry(format!("{host} does not resolve: {e}"))),
        };
        if addrs.is_empty() {
            return Err(Delivery::Retry(format!("{host} does not resolve")));
        }
        for a in &addrs {
            if let Some(why) = self.policy.refuses(*a) {
                return Err(Delivery::Rejected(format!("{host} resolves to {why}")));
            }
        }
        self.pin(host, addrs.iter().map(|a| a.ip()).collect());
        Ok(())
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let pinned = self.pinned(&host);
        let policy = self.policy.clone();
        Box::pin(async move {
            let ips = match pinned {
                Some(ips) => ips,
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|a| a.ip())
                    .collect(),
            };
            // Port 0: the URL's port replaces it; checks that need the port were made when pinning.
            if let Some(why) = ips
                .iter()
                .find_map(|ip| policy.refuses(SocketAddr::new(*ip, 0)))
            {
                return Err(format!("{host} resolves to {why}").into());
            }
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// One delivery attempt.
pub async fn deliver(
    client: &reqwest::Client,
    resolver: &CheckedResolver,
    policy: &CallbackPolicy,
    cb: &Callback,
    attempt: u32,
) -> Delivery {
    let checked = match policy.urls.check(&cb.url) {
        Ok(CallbackTarget::Address(_)) => Ok(()),
        Ok(CallbackTarget::Name { host, port }) => resolver.check(&host, port).await,
        Err(e) => Err(Delivery::Rejected(e)),
    };
    if let Err(refused) = checked {
        return refused;
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
                200..=299 => Delivery::Delivered,
                408 | 429 | 500..=599 => Delivery::Retry(format!("HTTP {code}")),
                _ => Delivery::Rejected(format!("HTTP {code}")),
            }
        }
        Err(e) if e.is_timeout() => Delivery::Retry("timeout".into()),
        Err(e) => Delivery::Retry(format!("connection error: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
