//! The broker's REST surface on the wire, black-box: the real broker on kubesim over HTTP.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

fn with(mut v: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = if parent.is_empty() {
        &mut v
    } else {
        v.pointer_mut(parent).unwrap()
    };
    if new.is_null() {
        target.as_object_mut().unwrap().remove(key);
    } else {
        target[key] = new;
    }
    v
}

fn assert_error(code: u16, body: &Value, want_code: u16, want_error: &str, want_message: &str) {
    assert_eq!(code, want_code, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert_eq!(body["message"], want_message, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(
        body.as_object().unwrap().len(),
        3,
        "exactly error, message, code: {body}"
    );
}

#[tokio::test]
async fn seed_examples_and_record_before_202() {
    let env = common::start(&[]).await;
    let (code, body) = env.post("/v1/provision", &common::seed_provision()).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(
        body["message"],
        "Provisioning request accepted for database/postgres-app-db"
    );
    let id = body["deploymentId"].as_str().unwrap().to_string();
    assert!(id.starts_with("deploy-") && id.len() == 39, "{id}");
    assert!(
        id[7..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );

    // The intent record is in the cluster by the time the 202 arrived.
    let records = common::records(&env, "team-platform");
    let rec = records
        .get("postgres-app-db.database")
        .await
        .expect("record exists");
    assert_eq!(rec.data["spec"]["deploymentId"], id);
    assert_eq!(rec.data["spec"]["spec"]["engine"], "postgresql");
    assert_eq!(rec.data["spec"]["spec"]["backup"]["retention"], "7d");
    let labels = rec.metadata.labels.unwrap();
    assert_eq!(labels["kidp.io/deployment-id"], id);
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kidp-broker");
    assert_eq!(
        rec.metadata.finalizers.unwrap(),
        vec!["kidp.io/deprovision"]
    );

    // Status and resources read it back.
    let (code, st) = env.get(&format!("/v1/status?id={id}")).await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["deploymentId"], id);
    assert_eq!(st["phase"], "Provisioning");
    assert!(st["lastUpdated"].as_str().unwrap().ends_with('Z'));
    let st_keys: Vec<&String> = st.as_object().unwrap().keys().collect();
    assert_eq!(
        st_keys,
        vec!["deploymentId", "lastUpdated", "message", "phase"]
    );

    let resources = common::eventually("record in the cache", Duration::from_secs(5), || async {
        let (code, r) = env
            .get("/v1/resources?namespace=team-platform&resourceName=postgres-app-db")
            .await;
        (code == 200 && r["total"] == 1).then_some(r)
    })
    .await;
    assert_eq!(resources["namespace"], "team-platform");
    let r = &resources["resources"][0];
    assert_eq!(r["deploymentId"], id);
    assert_eq!(r["resourceType"], "database");
    assert_eq!(
        r["desiredSpec"],
        json!({"engine": "postgresql", "version": "15", "size": "medium"})
    );
    assert_eq!(r["driftDetected"], false);
    assert!(r["estimatedMonthlyCost"].as_f64().unwrap() > 0.0);
    let (code, posted) = env
        .post("/v1/resources", &json!({"namespace": "team-platform", "resourceType": "database", "resourceName": "postgres-app-db"}))
        .await;
    assert_eq!(code, 200);
    assert_eq!(posted["total"], 1);
    assert_eq!(posted["resources"][0]["deploymentId"], id);
    let (_, other) = env
        .get("/v1/resources?namespace=team-platform&resourceType=database")
        .await;
    assert_eq!(other["total"], 1);
    let (_, none) = env.get("/v1/resources?namespace=elsewhere").await;
    assert_eq!(
        none,
        json!({"resources": [], "total": 0, "namespace": "elsewhere"})
    );

    // The seed's deprovision example, with the id we got.
    let dep = json!({
        "deploymentId": id,
        "resourceType": "database",
        "resourceName": "postgres-app-db",
        "namespace": "team-platform",
        "callbackUrl": "http://manager:9090/v1/callback"
    });
    let (code, body) = env.post("/v1/deprovision", &dep).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        body,
        json!({"status": "accepted", "message": format!("Deprovisioning request accepted for deployment {id}")})
    );
    let rec = records.get("postgres-app-db.database").await.unwrap();
    assert_eq!(
        rec.data["spec"]["deprovision"]["callbackUrl"],
        "http://manager:9090/v1/callback"
    );
    // Repeating it is accepted again.
    let (code, _) = env.post("/v1/deprovision", &dep).await;
    assert_eq!(code, 202);
    // The manager's callback URL does not resolve here, so Deleted is never acknowledged and the record stays.
    let (_, st) = env.get(&format!("/v1/status?id={id}")).await;
    assert!(
        st["phase"] == "Deleting" || st["phase"] == "Deleted",
        "{st}"
    );
    env.stop().await;
}

#[tokio::test]
async fn every_validation_rule_has_its_message() {
    let env = common::start(&[]).await;
    let seed = common::seed_provision();
    let cases: Vec<(Value, &str)> = vec![
        (
            with(seed.clone(), "/resourceName", Value::Null),
            "resourceName is required",
        ),
        (
            with(seed.clone(), "/resourceName", json!("")),
            "resourceName is required",
        ),
        (
            with(seed.clone(), "/namespace", Value::Null),
            "namespace is required",
        ),
        (with(seed.clone(), "/team", Value::Null), "team is required"),
        (
            with(seed.clone(), "/owner", Value::Null),
            "owner is required",
        ),
        (
            with(seed.clone(), "/callbackUrl", Value::Null),
            "callbackUrl is required",
        ),
        (
            with(seed.clone(), "/resourceType", Value::Null),
            "resourceType is required",
        ),
        (with(seed.clone(), "/spec", Value::Null), "spec is required"),
        (
            with(seed.clone(), "/spec/engine", Value::Null),
            "spec.engine is required",
        ),
        (
            with(seed.clone(), "/spec/version", Value::Null),
            "spec.version is required",
        ),
        (
            with(seed.clone(), "/spec/size", Value::Null),
            "spec.size is required",
        ),
        (
            with(seed.clone(), "/resourceName", json!("Bad_Name")),
            "resourceName must be a lowercase RFC 1035 label (a-z, 0-9, '-', starting with a letter and ending with a letter or digit) of at most 40 characters",
        ),
        (
            with(seed.clone(), "/resourceName", json!("9lives")),
            "resourceName must be a lowercase RFC 1035 label (a-z, 0-9, '-', starting with a letter and ending with a letter or digit) of at most 40 characters",
        ),
        (
            with(seed.clone(), "/resourceName", json!("a".repeat(41))),
            "resourceName must be a lowercase RFC 1035 label (a-z, 0-9, '-', starting with a letter and ending with a letter or digit) of at most 40 characters",
        ),
        (
            with(seed.clone(), "/resourceType", json!("queue")),
            "resourceType must be one of: database, cache, topic",
        ),
        (
            with(seed.clone(), "/resourceType", json!("cache")),
            "resourceType \"cache\" is not supported yet (supported: database)",
        ),
        (
            with(seed.clone(), "/resourceType", json!("topic")),
            "resourceType \"topic\" is not supported yet (supported: database)",
        ),
        (
            with(seed.clone(), "/spec/engine", json!("oracle")),
            "spec.engine must be one of: postgresql, mysql, mongodb, redis",
        ),
        (
            with(seed.clone(), "/spec/version", json!("11")),
            "spec.version \"11\" is not supported for postgresql (supported: 12, 13, 14, 15, 16)",
        ),
        (
            with(seed.clone(), "/spec/size", json!("huge")),
            "spec.size must be one of: small, medium, large, xlarge",
        ),
        (
            with(seed.clone(), "/owner", json!("not-an-email")),
            "owner must be an email address",
        ),
        (
            with(seed.clone(), "/callbackUrl", json!("manager:9090/cb")),
            "callbackUrl must be an absolute http(s) URL",
        ),
        (
            with(seed.clone(), "/callbackUrl", json!("ftp://manager/cb")),
            "callbackUrl must be an absolute http(s) URL",
        ),
        (
            with(seed.clone(), "/spec/backup/retention", json!("7 days")),
            "spec.backup.retention must be a duration such as 7d or 36h",
        ),
        (
            with(seed.clone(), "/spec/backup/schedule", json!("every night")),
            "spec.backup.schedule must be a 5-field cron expression such as \"0 2 * * *\"",
        ),
        (
            with(seed.clone(), "/spec/backup/schedule", json!("61 2 * * *")),
            "spec.backup.schedule must be a 5-field cron expression such as \"0 2 * * *\"",
        ),
        (
            with(seed.clone(), "/spec/foo", json!(1)),
            "unknown field \"spec.foo\"",
        ),
        (
            with(seed.clone(), "/extra", json!(1)),
            "unknown field \"extra\"",
        ),
        (
            with(seed.clone(), "/spec/highAvailability", json!("yes")),
            "spec.highAvailability must be a boolean",
        ),
    ];
    for (body, message) in cases {
        let (code, resp) = env.post("/v1/provision", &body).await;
        assert_error(code, &resp, 400, "validation_failed", message);
    }
    // Deprovision and query validation.
    let (code, resp) = env
        .post(
            "/v1/deprovision",
            &json!({"deploymentId": "abc", "resourceType": "database", "resourceName": "x", "namespace": "team-platform"}),
        )
        .await;
    assert_error(
        code,
        &resp,
        400,
        "validation_failed",
        "deploymentId must look like deploy-<32 hex characters>",
    );
    let (code, resp) = env.get("/v1/resources").await;
    assert_error(
        code,
        &resp,
        400,
        "validation_failed",
        "namespace is required",
    );
    let (code, resp) = env.get("/v1/status").await;
    assert_error(code, &resp, 400, "validation_failed", "id is required");
    let (code, resp) = env.get("/v1/status?id=nope").await;
    assert_error(
        code,
        &resp,
        400,
        "validation_failed",
        "id must look like deploy-<32 hex characters>",
    );
    env.stop().await;
}

#[tokio::test]
async fn malformed_bodies_content_types_and_size() {
    let env = common::start(&[]).await;
    let send = |body: &'static str, ct: Option<&'static str>| {
        let mut r = env.http.post(env.url("/v1/provision")).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        async move {
            let resp = r.send().await.unwrap();
            let code = resp.status().as_u16();
            (code, resp.json::<Value>().await.unwrap())
        }
    };
    let (code, body) = send("{\"resourceType\": ", Some("application/json")).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("the request body is not valid JSON"),
        "{body}"
    );
    let (code, body) = send("", Some("application/json")).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (code, body) = send("[1,2]", Some("application/json")).await;
    assert_error(
        code,
        &body,
        400,
        "validation_failed",
        "request body must be a JSON object",
    );
    let (code, body) = send(
        "resourceType=database",
        Some("application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Content-Type must be application/json"),
        "{body}"
    );
    let (code, body) = send("{}", None).await;
    assert_error(
        code,
        &body,
        400,
        "invalid_request",
        "Content-Type must be application/json",
    );

    let big = json!({"resourceName": "x".repeat(100 * 1024)});
    let (code, body) = env.post("/v1/provision", &big).await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(body["code"], 413);

    let (code, body) = env.get("/v1/nothing-here").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (404, Some("route_not_found")),
        "{body}"
    );
    let r = env
        .http
        .delete(env.url("/v1/provision"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    env.stop().await;
}

#[tokio::test]
async fn not_found_idempotency_and_conflicts() {
    let env = common::start(&[]).await;
    let unknown = "deploy-0123456789abcdef0123456789abcdef";
    let (code, body) = env.get(&format!("/v1/status?id={unknown}")).await;
    assert_error(
        code,
        &body,
        404,
        "resource_not_found",
        &format!("deployment {unknown} not found"),
    );
    let (code, body) = env
        .post(
            "/v1/deprovision",
            &json!({"deploymentId": unknown, "resourceType": "database", "resourceName": "postgres-app-db", "namespace": "team-platform"}),
        )
        .await;
    assert_error(
        code,
        &body,
        404,
        "resource_not_found",
        &format!("deployment {unknown} not found"),
    );

    let seed = common::seed_provision();
    let (c1, b1) = env.post("/v1/provision", &seed).await;
    let (c2, b2) = env.post("/v1/provision", &seed).await;
    assert_eq!((c1, c2), (202, 202));
    assert_eq!(
        b1["deploymentId"], b2["deploymentId"],
        "same request, same deploymentId"
    );

    let changed = with(seed.clone(), "/spec/size", json!("large"));
    let (code, body) = env.post("/v1/provision", &changed).await;
    assert_error(
        code,
        &body,
        409,
        "resource_conflict",
        &format!(
            "database/postgres-app-db already exists in namespace team-platform with a different spec (deployment {})",
            b1["deploymentId"].as_str().unwrap()
        ),
    );

    // The same name in another namespace is another deployment.
    let (code, other) = env
        .post(
            "/v1/provision",
            &with(seed.clone(), "/namespace", json!("team-data")),
        )
        .await;
    assert_eq!(code, 202);
    assert_ne!(other["deploymentId"], b1["deploymentId"]);

    // Deprovision with a mismatching name is refused and names the real owner of the id.
    let (code, body) = env
        .post(
            "/v1/deprovision",
            &json!({"deploymentId": b1["deploymentId"], "resourceType": "database", "resourceName": "someone-else", "namespace": "team-platform"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "validation_failed");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("belongs to database/postgres-app-db in namespace team-platform"),
        "{body}"
    );

    // A deployment being deprovisioned cannot be provisioned again under the same name until it is gone.
    let (code, _) = env
        .post(
            "/v1/deprovision",
            &json!({"deploymentId": b1["deploymentId"], "resourceType": "database", "resourceName": "postgres-app-db", "namespace": "team-platform"}),
        )
        .await;
    assert_eq!(code, 202);
    let (code, body) = env.post("/v1/provision", &seed).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("is being deprovisioned"),
        "{body}"
    );
    env.stop().await;
}

#[tokio::test]
async fn end_of_life_versions_warn_and_at_rest_needs_a_storage_class() {
    let env = common::start(&[]).await;
    let eol = with(
        with(common::seed_provision(), "/spec/version", json!("12")),
        "/resourceName",
        json!("old-pg"),
    );
    let (code, body) = env.post("/v1/provision", &eol).await;
    assert_eq!(code, 202, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Provisioning request accepted for database/old-pg; warning:"),
        "{msg}"
    );
    assert!(msg.contains("end-of-life"), "{msg}");
    env.stop().await;

    // Without an encrypting StorageClass configured, atRest is refused at provision time.
    let env = common::start(&["--encrypted-storage-class", ""]).await;
    let (code, body) = env.post("/v1/provision", &common::seed_provision()).await;
    assert_error(
        code,
        &body,
        400,
        "validation_failed",
        "spec.encryption.atRest requires an encrypting StorageClass and this broker has none configured (--encrypted-storage-class)",
    );
    env.stop().await;
}

#[tokio::test]
async fn cluster_outage_gives_503_and_readiness_recovers() {
    let mut env = common::start(&[]).await;
    let (code, body) = env.get("/readiness").await;
    assert_eq!(
        (code, &body["ready"], &body["reason"]),
        (200, &json!(true), &json!("ok"))
    );

    let sim = env.sim.take().unwrap();
    sim.shutdown().await;
    let (code, body) = env.post("/v1/provision", &common::seed_provision()).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"], "kubernetes_error");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("kubernetes API not accessible"),
        "{body}"
    );
    let (code, body) = env.get("/readiness").await;
    assert_eq!(code, 503);
    assert_eq!(body["ready"], false);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("kubernetes API not accessible:"),
        "{body}"
    );
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    // The cluster comes back on the same address (empty: kubesim keeps no state here); the CRD is put back as
    // an operator would, and the broker recovers by itself.
    let sim = common::start_sim(env.sim_addr).await;
    let crd: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(env.kube.clone());
    // `kidp-broker crd` prints both CRDs as one YAML stream.
    use serde::Deserialize;
    let yaml = kidp_broker::crd_yaml();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "ManagedResource and Team");
    for doc in &docs {
        crd.patch(
            doc["metadata"]["name"].as_str().unwrap(),
            &kube::api::PatchParams::apply("test").force(),
            &kube::api::Patch::Apply(doc),
        )
        .await
        .unwrap();
    }
    env.sim = Some(sim);
    common::eventually("readiness recovers", Duration::from_secs(30), || async {
        let (code, _) = env.get("/readiness").await;
        (code == 200).then_some(())
    })
    .await;
    let (code, body) = env.post("/v1/provision", &common::seed_provision()).await;
    assert_eq!(code, 202, "{body}");
    env.stop().await;
}

#[tokio::test]
async fn health_metrics_spec_and_swagger() {
    let env = common::start(&[]).await;
    let (code, h) = env.get("/health").await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let (code, _) = env.post("/v1/provision", &common::seed_provision()).await;
    assert_eq!(code, 202);
    let (code, _) = env.post("/v1/provision", &json!({})).await;
    assert_eq!(code, 400);

    let m = env.metrics().await;
    assert!(
        m.contains(
            "broker_http_request_duration_seconds_bucket{endpoint=\"/v1/provision\",method=\"POST\""
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "broker_provision_requests_total{resource_type=\"database\",status=\"success\"}"
        ),
        "{m}"
    );
    assert!(m.contains("# HELP broker_provision_requests_total"), "{m}");
    assert!(m.contains("broker_kubernetes_api_available 1"), "{m}");

    let served = env
        .http
        .get(env.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&served).unwrap(),
        serde_json::from_str::<Value>(&committed).unwrap()
    );
    // Swagger UI's "Try it out" and generated clients must reach the host that served the document, whatever
    // its name and port: every server URL is relative.
    let served: Value = serde_json::from_str(&served).unwrap();
    let servers = served["servers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for s in servers {
        let url = s["url"].as_str().unwrap();
        assert!(
            url.starts_with('/') && !url.starts_with("//"),
            "server {url:?} is relative"
        );
    }
    let yaml = env.http.get(env.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(yaml.status().as_u16(), 200);
    let docs = env.http.get(env.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "Swagger UI is served"
    );
    env.stop().await;
}
