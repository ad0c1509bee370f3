//! The audit trail: one JSON record per provision or deprovision, accepted or refused, with the request id the
//! response carries; refusals counted.

mod common;

use common::{Receiver, provision};
use serde_json::{Value, json};

fn records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[tokio::test]
async fn every_mutation_leaves_one_audit_record_with_the_request_id() {
    let rx = Receiver::start().await;
    let dir = tempdir();
    let log = dir.join("audit.jsonl");
    let log_arg = log.display().to_string();
    let env = common::start_fast(&["--audit-log", &log_arg]).await;

    // Accepted, with the client's request id.
    let body = provision("audited", "team-audit", "redis", "7.2", "small", &rx.url);
    let resp = env
        .http
        .post(env.url("/v1/provision"))
        .header("X-Request-Id", "req-accepted-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(resp.headers()["x-request-id"], "req-accepted-1");
    let accepted: Value = resp.json().await.unwrap();
    let id = accepted["deploymentId"].as_str().unwrap();

    // Refused before any handler ran (a validation error), with its own id.
    let mut bad = body.clone();
    bad["spec"]["size"] = json!("huge");
    let resp = env
        .http
        .post(env.url("/v1/provision"))
        .header("X-Request-Id", "req-refused-2")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.headers()["x-request-id"], "req-refused-2");

    // No id, or one not safe to echo: a fresh one is generated and echoed.
    let resp = env
        .http
        .post(env.url("/v1/deprovision"))
        .header("X-Request-Id", "bad id with spaces")
        .json(&json!({"deploymentId": "deploy-00000000000000000000000000000000", "resourceType": "database",
                      "resourceName": "nothing", "namespace": "team-audit"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    // Reads are not audited.
    let (code, _) = env.get(&format!("/v1/status?id={id}")).await;
    assert_eq!(code, 200);

    let recs = records(&log);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let by_id = |rid: &str| recs.iter().find(|r| r["requestId"] == rid).unwrap().clone();
    let a = by_id("req-accepted-1");
    assert_eq!(a["action"], "provision");
    assert_eq!(a["result"], 202);
    assert_eq!(a["deploymentId"], id);
    assert_eq!(a["namespace"], "team-audit");
    assert_eq!(a["resourceType"], "database");
    assert_eq!(a["resourceName"], "audited");
    assert_eq!(a["team"], "platform-team");
    assert_eq!(a["error"], Value::Null);
    assert_eq!(a["sourceIp"], "127.0.0.1");
    let r = by_id("req-refused-2");
    assert_eq!(r["result"], 400);
    assert_eq!(r["error"], "validation_failed");
    assert_eq!(r["resourceName"], "audited");
    let d = by_id(&generated);
    assert_eq!(
        (d["action"].clone(), d["result"].clone()),
        (json!("deprovision"), json!(404))
    );
    assert_eq!(d["error"], "resource_not_found");

    // Refusals are counted, validation failures included.
    let m = env.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("broker_provision_requests_total{")
                && l.contains("status=\"invalid\"")
                && l.ends_with(" 1")),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("broker_http_refusals_total{")
                && l.contains("error=\"validation_failed\"")),
        "{m}"
    );
    env.stop().await;
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kidp-audit-{}", uuid_like()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
