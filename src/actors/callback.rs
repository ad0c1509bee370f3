//! Callback delivery: one HTTP POST per attempt, classified into delivered / retry / rejected, with the event id,
//! attempt number and (when a secret is configured) an HMAC-SHA256 signature over `timestamp.body`. The order,
//! retry schedule and lifetime of callbacks are the lifecycle's ([`super::lifecycle`]).
//!
//! Delivery runs as a spawned task that reports back by message, so an actor's mailbox never waits on the network.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::lifecycle::Delivery;
use crate::domain::{CallbackUrlPolicy, Phase};

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

/// Resolves the URL's host and refuses link-local answers (a name may resolve to a metadata service).
async fn check_resolved(policy: &CallbackPolicy, url: &str) -> Result<(), String> {
    let parsed = policy.urls.check(url)?;
    if parsed.ip().is_some() {
        return Ok(());
    }
    let port = parsed.port();
    if let Ok(addrs) = tokio::net::lookup_host((parsed.host(), port)).await {
        for a in addrs {
            if policy.urls.refuses_address(a.ip()) {
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
) -> Delivery {
    if let Err(e) = check_resolved(policy, &cb.url).await {
        return Delivery::Rejected(e);
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
