//! Races at the edges of the lifecycle, end to end against kubesim: a deprovision right behind its provision,
//! and storms of concurrent provisions and deprovisions of one name. Whatever the interleaving, every
//! deployment must end 404 with `Deleting` then `Deleted` told, leave no object behind and block no name.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Env, Receiver, eventually, provision};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(120);

fn deprovision_body(id: &str, name: &str, ns: &str, cb: &str) -> Value {
    json!({"deploymentId": id, "resourceType": "database", "resourceName": name, "namespace": ns, "callbackUrl": cb})
}

/// Phases told for `id` must be an ordered subsequence of the lifecycle, ending Deleting, Deleted.
fn assert_ended_deleted(rx: &Receiver, id: &str) {
    let phases = rx.phases(id);
    let order = |p: &str| match p {
        "Provisioning" => 1,
        "Ready" | "Failed" => 2,
        "Deleting" => 3,
        "Deleted" => 4,
        other => panic!("unknown phase {other}"),
    };
    let ranks: Vec<u8> = phases.iter().map(|p| order(p)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1]),
        "{id}: phases in order, none twice: {phases:?}"
    );
    assert!(
        phases.ends_with(&["Deleting".to_string(), "Deleted".to_string()]),
        "{id}: ends Deleting, Deleted: {phases:?}"
    );
}

async fn wait_gone(env: &Env, id: &str) {
    eventually(&format!("{id} gone"), LONG, || async {
        let (code, _) = env.get(&format!("/v1/status?id={id}")).await;
        (code == 404).then_some(())
    })
    .await;
}

/// Nothing the broker manages is left in the namespace.
async fn assert_empty(env: &Env, ns: &str) {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=kidp-broker");
    let sts: Api<StatefulSet> = Api::namespaced(env.kube.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(env.kube.clone(), ns);
    let svcs: Api<Service> = Api::namespaced(env.kube.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(env.kube.clone(), ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.kube.clone(), ns);
    eventually(&format!("namespace {ns} empty"), LONG, || async {
        let n = sts.list(&lp).await.unwrap().items.len()
            + pods.list(&lp).await.unwrap().items.len()
            + svcs.list(&lp).await.unwrap().items.len()
            + secrets.list(&lp).await.unwrap().items.len()
            + pvcs.list(&lp).await.unwrap().items.len()
            + common::records(env, ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len();
        (n == 0).then_some(())
    })
    .await;
}

/// Provisions and, with no gap, deprovisions; returns the deployment id.
async fn provision_then_deprovision(env: &Env, body: &Value, cb: &str) -> String {
    let (code, resp) = env.post("/v1/provision", body).await;
    assert_eq!(code, 202, "{resp}");
    let id = resp["deploymentId"].as_str().unwrap().to_string();
    let (name, ns) = (
        body["resourceName"].as_str().unwrap(),
        body["namespace"].as_str().unwrap(),
    );
    let (code, resp) = env
        .post("/v1/deprovision", &deprovision_body(&id, name, ns, cb))
        .await;
    assert_eq!(code, 202, "{resp}");
    id
}

/// Every name can be provisioned again afterwards, and that deployment too goes away cleanly.
async fn assert_names_free(env: &Env, rx: &Receiver, ns: &str, names: &[String]) {
    for name in names {
        let body = provision(name, ns, "redis", "7.2", "small", &rx.url);
        let id = provision_then_deprovision(env, &body, &rx.url).await;
        wait_gone(env, &id).await;
        assert_ended_deleted(rx, &id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_deprovisions_right_behind_their_provisions() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    let ns = "race-seq";
    let names: Vec<String> = (0..20).map(|i| format!("quick-{i}")).collect();
    // 20 names side by side, 10 rounds each: provision, then deprovision with no gap, wait for 404, again.
    let rounds = futures::future::join_all(names.iter().map(|name| {
        let (env, rx) = (&env, &rx);
        async move {
            let mut ids = Vec::new();
            for _ in 0..10 {
                let body = provision(name, ns, "postgresql", "16", "small", &rx.url);
                let id = provision_then_deprovision(env, &body, &rx.url).await;
                wait_gone(env, &id).await;
                ids.push(id);
            }
            ids
        }
    }))
    .await;
    let ids: Vec<String> = rounds.into_iter().flatten().collect();
    assert_eq!(ids.len(), 200);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        200,
        "a new deployment id every round"
    );
    for id in &ids {
        assert_ended_deleted(&rx, id);
    }
    assert_empty(&env, ns).await;
    assert_names_free(&env, &rx, ns, &names[..3]).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_concurrent_provisions_and_deprovisions_of_one_name() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    let ns = "race-storm";
    let mut all = BTreeSet::new();
    for round in 0..30 {
        let name = format!("storm-{}", round % 3);
        let body = provision(&name, ns, "mysql", "8.4", "small", &rx.url);
        // Three identical first requests at once: exactly one deployment.
        let first =
            futures::future::join_all((0..3).map(|_| env.post("/v1/provision", &body))).await;
        let ids: BTreeSet<String> = first
            .iter()
            .map(|(code, resp)| {
                assert_eq!(*code, 202, "{resp}");
                resp["deploymentId"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "identical concurrent provisions share one deployment"
        );
        let id = ids.into_iter().next().unwrap();
        all.insert(id.clone());
        // Deprovisions and more provisions of the same name, all at once.
        let deprov = deprovision_body(&id, &name, ns, &rx.url);
        let storm = futures::future::join_all((0..6).map(|i| {
            let (env, body, deprov) = (&env, &body, &deprov);
            async move {
                if i % 2 == 0 {
                    ("deprovision", env.post("/v1/deprovision", deprov).await)
                } else {
                    ("provision", env.post("/v1/provision", body).await)
                }
            }
        }))
        .await;
        for (what, (code, resp)) in storm {
            match (what, code) {
                ("deprovision", 202) => {}
                // The deployment id of the record, or 409 once the deprovision is stored; a provision after
                // the record is gone starts a new deployment, cleaned up below.
                ("provision", 202) => {
                    all.insert(resp["deploymentId"].as_str().unwrap().to_string());
                }
                ("provision", 409) => assert_eq!(resp["error"], "resource_conflict", "{resp}"),
                _ => panic!("{what} answered {code}: {resp}"),
            }
        }
        wait_gone(&env, &id).await;
    }
    // Deployments started by a provision that came after the record was gone are deprovisioned now.
    for id in &all {
        let (code, st) = env.get(&format!("/v1/status?id={id}")).await;
        if code == 404 {
            continue;
        }
        assert_eq!(code, 200, "{st}");
        let recs = common::records(&env, ns)
            .list(&ListParams::default().labels(&format!("kidp.io/deployment-id={id}")))
            .await
            .unwrap();
        let name = recs.items[0].data["spec"]["resourceName"]
            .as_str()
            .unwrap()
            .to_string();
        let (code, resp) = env
            .post("/v1/deprovision", &deprovision_body(id, &name, ns, &rx.url))
            .await;
        assert_eq!(code, 202, "{resp}");
        wait_gone(&env, id).await;
    }
    for id in &all {
        assert_ended_deleted(&rx, id);
    }
    assert_empty(&env, ns).await;
    let names: Vec<String> = (0..3).map(|i| format!("storm-{i}")).collect();
    assert_names_free(&env, &rx, ns, &names).await;
    env.stop().await;
}
