//! The broker never adopts, overwrites or deletes what it did not create, and derived names never collide
//! between deployments: end to end against kubesim with objects made by someone else.

mod common;

use std::time::Duration;

use common::{Env, Receiver, eventually, provision};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

async fn phase_and_message(env: &Env, id: &str) -> (String, String) {
    let (_, st) = env.get(&format!("/v1/status?id={id}")).await;
    (
        st["phase"].as_str().unwrap_or("").to_string(),
        st["message"].as_str().unwrap_or("").to_string(),
    )
}

/// What must not change about someone else's object: its labels, annotations, owners and content.
fn fingerprint(v: Value) -> Value {
    json!({
        "labels": v["metadata"]["labels"],
        "annotations": v["metadata"]["annotations"],
        "ownerReferences": v["metadata"]["ownerReferences"],
        "uid": v["metadata"]["uid"],
        "spec": v["spec"],
        "data": v["data"],
    })
}

async fn snapshot(env: &Env, ns: &str) -> Vec<Value> {
    let secrets: Api<Secret> = Api::namespaced(env.kube.clone(), ns);
    let svcs: Api<Service> = Api::namespaced(env.kube.clone(), ns);
    let sts: Api<StatefulSet> = Api::namespaced(env.kube.clone(), ns);
    vec![
        fingerprint(
            serde_json::to_value(secrets.get("victim-credentials").await.unwrap()).unwrap(),
        ),
        fingerprint(serde_json::to_value(svcs.get("victim2").await.unwrap()).unwrap()),
        fingerprint(serde_json::to_value(sts.get("victim2").await.unwrap()).unwrap()),
    ]
}

#[tokio::test]
async fn foreign_objects_fail_the_deployment_and_survive_its_deprovision_unchanged() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    let ns = "team-victim";
    // Someone else's objects, under names the broker would derive for `victim` and `victim2`.
    let (code, _) = env
        .post(
            "/v1/provision",
            &provision("warmup", ns, "redis", "7.2", "small", &rx.url),
        )
        .await;
    assert_eq!(code, 202, "the namespace exists");
    let pp = PostParams::default();
    let secrets: Api<Secret> = Api::namespaced(env.kube.clone(), ns);
    secrets
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "victim-credentials", "labels": {"app": "theirs"}},
                "stringData": {"password": "their-password"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(env.kube.clone(), ns);
    svcs.create(
        &pp,
        &serde_json::from_value(json!({
            "metadata": {"name": "victim2", "labels": {"app": "theirs"}},
            "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(env.kube.clone(), ns);
    sts.create(
        &pp,
        &serde_json::from_value(json!({
            "metadata": {"name": "victim2", "labels": {"app": "theirs"}},
            "spec": {
                "serviceName": "victim2", "replicas": 1,
                "selector": {"matchLabels": {"app": "theirs"}},
                "template": {"metadata": {"labels": {"app": "theirs"}},
                             "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}
            }
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let before = snapshot(&env, ns).await;

    let mut ids = Vec::new();
    for (name, refused) in [
        (
            "victim",
            "Secret victim-credentials exists and is not managed by deployment",
        ),
        (
            "victim2",
            "StatefulSet victim2 exists and is not managed by deployment",
        ),
    ] {
        let (code, resp) = env
            .post(
                "/v1/provision",
                &provision(name, ns, "postgresql", "16", "small", &rx.url),
            )
            .await;
        assert_eq!(code, 202, "{resp}");
        let id = resp["deploymentId"].as_str().unwrap().to_string();
        let (phase, message) = eventually(&format!("{name} Failed"), LONG, || async {
            let pm = phase_and_message(&env, &id).await;
            (pm.0 == "Failed").then_some(pm)
        })
        .await;
        assert_eq!(phase, "Failed");
        assert!(message.contains(refused), "{name}: {message}");
        assert!(message.contains(&id), "{message}");
        ids.push((name, id));
    }
    assert_eq!(
        snapshot(&env, ns).await,
        before,
        "nothing foreign was written"
    );

    for (name, id) in &ids {
        let (code, resp) = env
            .post(
                "/v1/deprovision",
                &json!({"deploymentId": id, "resourceType": "database", "resourceName": name, "namespace": ns}),
            )
            .await;
        assert_eq!(code, 202, "{resp}");
        eventually(&format!("{name} gone"), LONG, || async {
            let (code, _) = env.get(&format!("/v1/status?id={id}")).await;
            (code == 404).then_some(())
        })
        .await;
    }
    assert_eq!(
        snapshot(&env, ns).await,
        before,
        "nothing foreign was deleted or changed by the deprovision"
    );
    env.stop().await;
}

#[tokio::test]
async fn derived_names_never_collide_between_deployments() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    let ns = "team-clash";
    let (code, first) = env
        .post(
            "/v1/provision",
            &provision("clash", ns, "redis", "7.2", "small", &rx.url),
        )
        .await;
    assert_eq!(code, 202, "{first}");
    let clash_id = first["deploymentId"].as_str().unwrap().to_string();
    eventually("clash in the cache", LONG, || async {
        let (_, list) = env.get(&format!("/v1/resources?namespace={ns}")).await;
        (list["total"] == 1).then_some(())
    })
    .await;
    let (code, resp) = env
        .post(
            "/v1/provision",
            &provision("clash-headless", ns, "redis", "7.2", "small", &rx.url),
        )
        .await;
    assert_eq!(code, 409, "{resp}");
    assert_eq!(resp["error"], "resource_conflict");
    let msg = resp["message"].as_str().unwrap();
    assert!(
        msg.contains("Service clash-headless") && msg.contains(&clash_id),
        "{msg}"
    );
    // An unrelated name is fine.
    let (code, resp) = env
        .post(
            "/v1/provision",
            &provision("clash2", ns, "redis", "7.2", "small", &rx.url),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    env.stop().await;
}
