//! DaemonSets on kubesim's one node: a pod per set, pinned by node affinity, replaced when the template
//! changes, gone with the set. kube-rs against kubesim over HTTP.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn pods_of(api: &Api<Pod>) -> Vec<Value> {
    api.list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

#[tokio::test]
async fn a_daemonset_runs_one_pod_on_the_node_and_rolls_it_on_a_new_template() {
    let s = common::start_with(kubesim::Options {
        ready_delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let sets: Api<DaemonSet> = Api::default_namespaced(s.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    sets.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "agent"}, "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "busybox:1.36"}]}}}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let status = common::eventually("the daemon pod ready", Duration::from_secs(10), || async {
        let ds = serde_json::to_value(sets.get("agent").await.ok()?).unwrap();
        (ds["status"]["numberReady"] == 1 && ds["status"]["numberAvailable"] == 1)
            .then_some(ds["status"].clone())
    })
    .await;
    assert_eq!(status["desiredNumberScheduled"], 1);
    assert_eq!(status["currentNumberScheduled"], 1);
    assert_eq!(status["updatedNumberScheduled"], 1);
    let first = pods_of(&pods).await;
    assert_eq!(first.len(), 1);
    let pod = &first[0];
    assert_eq!(pod["spec"]["nodeName"], "kubesim-node");
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0]["values"][0],
        "kubesim-node"
    );
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    let old_hash = pod["metadata"]["labels"]["controller-revision-hash"].clone();

    // A new template replaces the pod.
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "busybox:1.37"}]}}}})),
    )
    .await
    .unwrap();
    common::eventually(
        "the pod of the new template ready",
        Duration::from_secs(15),
        || async {
            let now = pods_of(&pods).await;
            let p = now.first()?;
            (now.len() == 1
                && p["metadata"]["labels"]["controller-revision-hash"] != old_hash
                && p["spec"]["containers"][0]["image"] == "busybox:1.37"
                && p["status"]["phase"] == "Running")
                .then_some(())
        },
    )
    .await;

    // Deleted, the set takes its pod along.
    sets.delete("agent", &DeleteParams::background())
        .await
        .unwrap();
    common::eventually("the pod collected", Duration::from_secs(10), || async {
        pods_of(&pods).await.is_empty().then_some(())
    })
    .await;
}
