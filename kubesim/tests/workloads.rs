//! Workloads coming alive against kubesim over HTTP with kube-rs: StatefulSets (ordering, claims, scaling, rolling
//! updates, retention), Deployments, Jobs, CronJobs, disruption budgets, and the pod faults of
//! `kube-system/kubesim-faults` as pod status shows them.
//!
//! Orderings are read from watch streams, and across resources from resourceVersions: kubesim has one counter
//! for every object, as etcd has one revision for the whole keyspace.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Short enough to keep the suite fast, long enough that every stage is visible on a watch.
const READY_DELAY: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(30);

async fn sim() -> common::Sim {
    common::start_with(kubesim::Options {
        ready_delay: READY_DELAY,
        ..Default::default()
    })
    .await
}

fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

fn sts(name: &str, replicas: i32, image: &str, policy: Value) -> StatefulSet {
    from(json!({
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "persistentVolumeClaimRetentionPolicy": policy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "db", "image": image, "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
}

fn pod(name: &str, image: &str) -> Pod {
    from(
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": image}]}}),
    )
}

/// One event seen on a watch.
#[derive(Clone, Debug)]
struct Seen {
    rv: u64,
    kind: &'static str,
    name: String,
    object: Value,
}

/// Records every event of a watch in the background, from the current state on.
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start<K>(api: Api<K>) -> Recorder
    where
        K: Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + 'static,
    {
        let rv = api
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let mut stream = api
            .watch(&WatchParams::default(), &rv)
            .await
            .unwrap()
            .boxed();
        let seen = Arc::new(Mutex::new(vec![]));
        let out = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let (kind, o) = match ev {
                    WatchEvent::Added(o) => ("ADDED", o),
                    WatchEvent::Modified(o) => ("MODIFIED", o),
                    WatchEvent::Deleted(o) => ("DELETED", o),
                    _ => continue,
                };
                let object = serde_json::to_value(&o).unwrap();
                let rv = object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let name = object["metadata"]["name"].as_str().unwrap().to_string();
                out.lock().unwrap().push(Seen {
                    rv,
                    kind,
                    name,
                    object,
                });
            }
        });
        Recorder { seen, task }
    }

    fn events(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn first(&self, pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
        self.events().into_iter().find(|e| pred(e))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn condition<'a>(o: &'a Value, ty: &str) -> &'a Value {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .unwrap_or(&Value::Null)
}

fn json_of<T: Serialize>(o: &T) -> Value {
    serde_json::to_value(o).unwrap()
}

async fn wait_sts(
    api: &Api<StatefulSet>,
    name: &str,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    common::eventually(what, DEADLINE, || async {
        let s = json_of(&api.get(name).await.ok()?);
        f(&s).then_some(s)
    })
    .await
}

/// Settled: every replica ready at the update revision, and the controller has seen the latest spec.
fn settled(s: &Value, replicas: i64) -> bool {
    let st = &s["status"];
    st["observedGeneration"] == s["metadata"]["generation"]
        && st["readyReplicas"].as_i64().unwrap_or(0) == replicas
        && st["replicas"].as_i64() == Some(replicas)
        && st["updatedReplicas"].as_i64().unwrap_or(0) == replicas
        && st["currentRevision"] == st["updateRevision"]
}

async fn pod_names(api: &Api<Pod>) -> Vec<String> {
    let mut v: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn statefulset_comes_up_in_order_with_bound_claims() {
    let s = sim().await;
    let sets: Api<StatefulSet> = Api::default_namespaced(s.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(s.client.clone());
    let pod_events = Recorder::start(pods.clone()).await;
    let pvc_events = Recorder::start(pvcs.clone()).await;

    let policy = json!({"whenDeleted": "Delete", "whenScaled": "Retain"});
    sets.create(
        &PostParams::default(),
        &sts("web", 3, "postgres:16", policy),
    )
    .await
    .unwrap();
    let set = wait_sts(&sets, "web", "3 ready replicas", |s| settled(s, 3)).await;
    let st = &set["status"];
    assert_eq!(st["availableReplicas"], 3);
    assert_eq!(st["currentReplicas"], 3);
    assert_eq!(st["collisionCount"], 0);
    let revision = st["updateRevision"].as_str().unwrap().to_string();
    assert!(revision.starts_with("web-"), "{revision}");

    // Ordered: each claim before its pod, and pod i+1 only once pod i was Ready.
    let added = |r: &Recorder, name: &str| {
        r.first(|e| e.kind == "ADDED" && e.name == name)
            .unwrap_or_else(|| panic!("{name} was created"))
            .rv
    };
    for i in 0..3 {
        let claim = added(&pvc_events, &format!("data-web-{i}"));
        let pod = added(&pod_events, &format!("web-{i}"));
        assert!(
            claim < pod,
            "claim data-web-{i} (rv {claim}) precedes pod web-{i} (rv {pod})"
        );
        if i > 0 {
            let prev_ready = pod_events
                .first(|e| e.name == format!("web-{}", i - 1) && is_ready(&e.object))
                .expect("the previous pod became ready")
                .rv;
            assert!(
                prev_ready < pod,
                "web-{i} (rv {pod}) waited for web-{} to be Ready (rv {prev_ready})",
                i - 1
            );
        }
    }
    // The pod went Pending/ContainerCreating before Running.
    let creating = pod_events
        .first(|e| {
            e.name == "web-0"
                && e.object
                    .pointer("/status/containerStatuses/0/state/waiting/reason")
                    == Some(&json!("ContainerCreating"))
        })
        .expect("web-0 showed ContainerCreating");
    assert_eq!(creating.object["status"]["phase"], "Pending");

    for i in 0..3 {
        let name = format!("web-{i}");
        let p = json_of(&pods.get(&name).await.unwrap());
        let l = &p["metadata"]["labels"];
        assert_eq!(l["controller-revision-hash"], revision.as_str());
        assert_eq!(l["statefulset.kubernetes.io/pod-name"], name.as_str());
        assert_eq!(l["apps.kubernetes.io/pod-index"], i.to_string());
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                &owner["kind"],
                &owner["name"],
                &owner["controller"],
                &owner["blockOwnerDeletion"]
            ),
            (
                &json!("StatefulSet"),
                &json!("web"),
                &json!(true),
                &json!(true)
            )
        );
        assert_eq!(owner["uid"], set["metadata"]["uid"]);
        assert_eq!(p["spec"]["hostname"], name.as_str());
        assert_eq!(p["spec"]["subdomain"], "web");
        assert_eq!(p["spec"]["nodeName"], "kubesim-node");
        assert_eq!(
            p["spec"]["volumes"][0],
            json!({"name": "data", "persistentVolumeClaim": {"claimName": format!("data-web-{i}")}})
        );
        let st = &p["status"];
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["hostIP"], "10.0.0.1");
        assert!(st["podIP"].as_str().unwrap().starts_with("10.244."), "{st}");
        assert!(st["startTime"].is_string());
        let cs = &st["containerStatuses"][0];
        assert_eq!(cs["image"], "docker.io/library/postgres:16");
        let image_id = cs["imageID"].as_str().unwrap();
        let digest = image_id
            .strip_prefix("docker.io/library/postgres@sha256:")
            .unwrap();
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{image_id}"
        );
        assert!(
            cs["containerID"]
                .as_str()
                .unwrap()
                .starts_with("containerd://")
        );
        assert_eq!(
            (&cs["ready"], &cs["started"], &cs["restartCount"]),
            (&json!(true), &json!(true), &json!(0))
        );
        assert!(cs["state"]["running"]["startedAt"].is_string());
        let types: Vec<&str> = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert!(types.contains(&t), "{types:?}");
            assert_eq!(condition(&p, t)["status"], "True");
            assert!(condition(&p, t)["lastTransitionTime"].is_string());
        }

        let claim = json_of(&pvcs.get(&format!("data-web-{i}")).await.unwrap());
        assert_eq!(claim["status"]["phase"], "Bound");
        assert_eq!(claim["status"]["capacity"]["storage"], "1Gi");
        assert_eq!(claim["spec"]["storageClassName"], "standard");
        assert!(
            claim["spec"]["volumeName"]
                .as_str()
                .unwrap()
                .starts_with("pvc-")
        );
        assert_eq!(claim["metadata"]["labels"]["app"], "web");
        let owner = &claim["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["name"]),
            (&json!("StatefulSet"), &json!("web")),
            "whenDeleted: Delete"
        );
    }

    let revs: Api<ControllerRevision> = Api::default_namespaced(s.client.clone());
    let rev = revs.get(&revision).await.unwrap();
    assert_eq!(rev.revision, Some(1));
    assert_eq!(rev.metadata.labels.unwrap()["app"], "web");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn statefulset_scales_and_rolls_a_template_change_through() {
    let s = sim().await;
    let sets: Api<StatefulSet> = Api::default_namespaced(s.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(s.client.clone());
    sets.create(
        &PostParams::default(),
        &sts(
            "db",
            3,
            "postgres:16",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        ),
    )
    .await
    .unwrap();
    let first = wait_sts(&sets, "db", "3 ready", |s| settled(s, 3)).await;
    let old_rev = first["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();

    // Scale down: the highest ordinal goes first, and retained claims stay.
    let deletions = Recorder::start(pods.clone()).await;
    sets.patch_scale(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_sts(&sets, "db", "scaled to 1", |s| settled(s, 1)).await;
    common::eventually("only db-0 left", DEADLINE, || async {
        (pod_names(&pods).await == ["db-0"]).then_some(())
    })
    .await;
    let gone: Vec<String> = deletions
        .events()
        .into_iter()
        .filter(|e| e.kind == "DELETED")
        .map(|e| e.name)
        .collect();
    assert_eq!(gone, ["db-2", "db-1"]);
    assert_eq!(
        pvcs.list(&ListParams::default()).await.unwrap().items.len(),
        3,
        "whenScaled: Retain"
    );

    sets.patch_scale(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    wait_sts(&sets, "db", "back to 3", |s| settled(s, 3)).await;
    assert_eq!(pod_names(&pods).await, ["db-0", "db-1", "db-2"]);

    // A template change rolls through from the highest ordinal down, and the revisions settle.
    let rolling = Recorder::start(pods.clone()).await;
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}})),
    )
    .await
    .unwrap();
    let done = wait_sts(&sets, "db", "the update rolled out", |s| {
        settled(s, 3) && s["status"]["updateRevision"] != old_rev.as_str()
    })
    .await;
    let new_rev = done["status"]["updateRevision"].as_str().unwrap();
    assert_eq!(done["status"]["currentRevision"], new_rev);
    assert_eq!(done["status"]["currentReplicas"], 3);
    let order: Vec<String> = rolling
        .events()
        .into_iter()
        .filter(|e| e.kind == "DELETED")
        .map(|e| e.name)
        .collect();
    assert_eq!(order, ["db-2", "db-1", "db-0"]);
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let p = json_of(&p);
        assert_eq!(p["metadata"]["labels"]["controller-revision-hash"], new_rev);
        assert_eq!(p["spec"]["containers"][0]["image"], "postgres:17");
        assert_eq!(
            p["status"]["containerStatuses"][0]["image"],
            "docker.io/library/postgres:17"
        );
    }
    let revs: Api<ControllerRevision> = Api::default_namespaced(s.client.clone());
    let mut numbers: Vec<(String, i64)> = revs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r.metadata.name.unwrap(), r.revision.unwrap()))
        .collect();
    numbers.sort_by_key(|(_, n)| *n);
    assert_eq!(
        numbers,
        vec![(old_rev.clone(), 1), (new_rev.to_string(), 2)]
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn statefulset_rolling_update_respects_the_partition() {
    let s = sim().await;
    let sets: Api<StatefulSet> = Api::default_namespaced(s.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let mut set = json_of(&sts(
        "part",
        3,
        "redis:7",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    ));
    set["spec"]["podManagementPolicy"] = json!("Parallel");
    set["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    sets.create(&PostParams::default(), &from(set))
        .await
        .unwrap();
    let first = wait_sts(&sets, "part", "3 ready", |s| settled(s, 3)).await;
    let old_rev = first["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    sets.patch(
        "part",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "redis:8"}]}}}})),
    )
    .await
    .unwrap();
    let st = wait_sts(
        &sets,
        "part",
        "the ordinal above the partition updated",
        |s| s["status"]["updatedReplicas"] == 1 && s["status"]["readyReplicas"] == 3,
    )
    .await;
    assert_eq!(
        st["status"]["currentRevision"],
        old_rev.as_str(),
        "a partitioned rollout keeps the current revision"
    );
    let rev_of = |p: &Pod| p.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    assert_eq!(rev_of(&pods.get("part-0").await.unwrap()), old_rev);
    assert_eq!(rev_of(&pods.get("part-1").await.unwrap()), old_rev);
    assert_eq!(
        rev_of(&pods.get("part-2").await.unwrap()),
        st["status"]["updateRevision"].as_str().unwrap()
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn claims_follow_the_retention_policy() {
    let s = sim().await;
    let sets: Api<StatefulSet> = Api::default_namespaced(s.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(s.client.clone());
    for (name, policy) in [
        (
            "gone",
            json!({"whenDeleted": "Delete", "whenScaled": "Delete"}),
        ),
        (
            "kept",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        ),
    ] {
        let mut set = json_of(&sts(name, 2, "mysql:8.4", policy));
        set["spec"]["podManagementPolicy"] = json!("Parallel");
        sets.create(&PostParams::default(), &from(set))
            .await
            .unwrap();
    }
    wait_sts(&sets, "gone", "gone ready", |s| settled(s, 2)).await;
    wait_sts(&sets, "kept", "kept ready", |s| settled(s, 2)).await;
    let claims = || async {
        let mut v: Vec<String> = pvcs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        claims().await,
        ["data-gone-0", "data-gone-1", "data-kept-0", "data-kept-1"]
    );

    // whenScaled: Delete: the claim of a scaled-away pod goes with the pod.
    sets.patch_scale(
        "gone",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    common::eventually("data-gone-1 deleted with its pod", DEADLINE, || async {
        (claims().await == ["data-gone-0", "data-kept-0", "data-kept-1"]).then_some(())
    })
    .await;

    for name in ["gone", "kept"] {
        sets.delete(name, &DeleteParams::default()).await.unwrap();
    }
    common::eventually("every pod gone", DEADLINE, || async {
        pod_names(&pods).await.is_empty().then_some(())
    })
    .await;
    common::eventually(
        "whenDeleted: Delete removed gone's claims",
        DEADLINE,
        || async { (claims().await == ["data-kept-0", "data-kept-1"]).then_some(()) },
    )
    .await;
    for name in ["data-kept-0", "data-kept-1"] {
        let c = pvcs.get(name).await.unwrap();
        assert!(
            c.metadata.deletion_timestamp.is_none(),
            "Retain keeps {name}"
        );
        assert!(c.metadata.owner_references.unwrap_or_default().is_empty());
    }
    s.sim.shutdown().await;
}

/// Sets the pod fault keys; `None` removes a key.
async fn set_faults(client: &kube::Client, data: Value) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubesim-faults", "namespace": "kube-system"}, "data": data});
    cms.patch(
        "kubesim-faults",
        &PatchParams::apply("tests").force(),
        &Patch::Apply(cm),
    )
    .await
    .unwrap();
}

fn waiting_reason(p: &Value) -> Option<&str> {
    p.pointer("/status/containerStatuses/0/state/waiting/reason")
        .and_then(Value::as_str)
}

#[tokio::test]
async fn image_pull_failure_shows_err_image_pull_then_back_off() {
    let s = sim().await;
    set_faults(&s.client, json!({"imagePullFailure": "^default/broken-"})).await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let events = Recorder::start(pods.clone()).await;
    pods.create(&PostParams::default(), &pod("broken-0", "postgres:99-nope"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("fine-0", "postgres:16"))
        .await
        .unwrap();
    let p = common::eventually("ImagePullBackOff", DEADLINE, || async {
        let p = json_of(&pods.get("broken-0").await.ok()?);
        (waiting_reason(&p) == Some("ImagePullBackOff")).then_some(p)
    })
    .await;
    let mut reasons: Vec<String> = vec![];
    for e in events.events().into_iter().filter(|e| e.name == "broken-0") {
        if let Some(r) = waiting_reason(&e.object)
            && reasons.last().map(String::as_str) != Some(r)
        {
            reasons.push(r.to_string());
        }
    }
    assert_eq!(
        reasons,
        ["ContainerCreating", "ErrImagePull", "ImagePullBackOff"]
    );
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(
        cs["state"]["waiting"]["message"],
        "Back-off pulling image \"postgres:99-nope\""
    );
    assert_eq!(cs["ready"], false);
    assert_eq!(cs["imageID"], "");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(condition(&p, "Ready")["status"], "False");
    assert_eq!(condition(&p, "Ready")["reason"], "ContainersNotReady");
    let err = events
        .first(|e| e.name == "broken-0" && waiting_reason(&e.object) == Some("ErrImagePull"))
        .unwrap();
    assert_eq!(err.object["status"]["phase"], "Pending");
    // The fault is per pod: the other one runs.
    common::eventually("fine-0 ready", DEADLINE, || async {
        is_ready(&json_of(&pods.get("fine-0").await.ok()?)).then_some(())
    })
    .await;
    s.sim.shutdown().await;
}

#[tokio::test]
async fn crash_loop_shows_back_off_with_rising_restarts() {
    let s = sim().await;
    set_faults(&s.client, json!({"crashLoop": "^default/crashy$"})).await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let created = pods
        .create(&PostParams::default(), &pod("crashy", "redis:7"))
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();
    let restarts = |p: &Value| {
        p.pointer("/status/containerStatuses/0/restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let first = common::eventually("CrashLoopBackOff", DEADLINE, || async {
        let p = json_of(&pods.get("crashy").await.ok()?);
        (waiting_reason(&p) == Some("CrashLoopBackOff")).then_some(p)
    })
    .await;
    let later = common::eventually("restartCount rises", DEADLINE, || async {
        let p = json_of(&pods.get("crashy").await.ok()?);
        (restarts(&p) >= restarts(&first) + 2).then_some(p)
    })
    .await;
    let cs = &later["status"]["containerStatuses"][0];
    assert_eq!(
        cs["state"]["waiting"]["message"],
        format!("back-off 5m0s restarting failed container=c pod=crashy_default({uid})")
    );
    let last = &cs["lastState"]["terminated"];
    assert_eq!(
        (&last["exitCode"], &last["reason"]),
        (&json!(1), &json!("Error"))
    );
    assert!(
        last["startedAt"].is_string() && last["finishedAt"].is_string(),
        "{last}"
    );
    assert_eq!(cs["ready"], false);
    assert_eq!(later["status"]["phase"], "Running");
    assert_eq!(condition(&later, "Ready")["status"], "False");
    assert_eq!(condition(&later, "ContainersReady")["status"], "False");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn not_ready_toggles_while_the_key_matches() {
    let s = sim().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    pods.create(&PostParams::default(), &pod("flaky", "mongo:7"))
        .await
        .unwrap();
    let ready = |want: bool| {
        let pods = pods.clone();
        async move {
            common::eventually(&format!("Ready={want}"), DEADLINE, || async {
                let p = json_of(&pods.get("flaky").await.ok()?);
                (is_ready(&p) == want && p["status"]["phase"] == "Running").then_some(p)
            })
            .await
        }
    };
    ready(true).await;
    set_faults(&s.client, json!({"notReady": "default/flaky"})).await;
    let p = ready(false).await;
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], false);
    assert!(
        cs["state"]["running"].is_object(),
        "the container keeps running: {cs}"
    );
    assert_eq!(condition(&p, "ContainersReady")["status"], "False");
    assert_eq!(
        condition(&p, "Ready")["message"],
        "containers with unready status: [c]"
    );
    set_faults(&s.client, json!({"notReady": ""})).await;
    let p = ready(true).await;
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    s.sim.shutdown().await;
}

#[tokio::test]
async fn ready_delay_fault_holds_every_pod_back() {
    let s = sim().await;
    set_faults(&s.client, json!({"readyDelay": "2s"})).await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let started = tokio::time::Instant::now();
    pods.create(&PostParams::default(), &pod("slow", "nginx:1.27"))
        .await
        .unwrap();
    common::eventually("slow ready", DEADLINE, || async {
        is_ready(&json_of(&pods.get("slow").await.ok()?)).then_some(())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ready after {:?}",
        started.elapsed()
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn deployment_becomes_available_and_rolls() {
    let s = sim().await;
    let deps: Api<Deployment> = Api::default_namespaced(s.client.clone());
    let rss: Api<ReplicaSet> = Api::default_namespaced(s.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let d: Deployment = from(json!({
        "metadata": {"name": "api"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "nginx:1.27"}]}}}
    }));
    deps.create(&PostParams::default(), &d).await.unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(s.client.clone());
    pdbs.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": "api"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "api"}}}})),
    )
    .await
    .unwrap();
    let complete = |d: &Value, image: &str| {
        let st = &d["status"];
        st["observedGeneration"] == d["metadata"]["generation"]
            && st["availableReplicas"] == 3
            && st["updatedReplicas"] == 3
            && st["replicas"] == 3
            && d["spec"]["template"]["spec"]["containers"][0]["image"] == image
            && condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
    };
    let d = common::eventually("available", DEADLINE, || async {
        let d = json_of(&deps.get("api").await.ok()?);
        complete(&d, "nginx:1.27").then_some(d)
    })
    .await;
    assert_eq!(condition(&d, "Available")["status"], "True");
    assert_eq!(
        condition(&d, "Available")["reason"],
        "MinimumReplicasAvailable"
    );
    assert_eq!(condition(&d, "Progressing")["status"], "True");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let rs_list = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs_list.len(), 1);
    let rs = json_of(&rs_list[0]);
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs["metadata"]["name"], format!("api-{hash}"));
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let p = json_of(&p);
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash.as_str());
        assert!(
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("api-{hash}-"))
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }
    let pdb = common::eventually("budget status", DEADLINE, || async {
        let b = json_of(&pdbs.get("api").await.ok()?);
        (b["status"]["currentHealthy"] == 3).then_some(b)
    })
    .await;
    assert_eq!(
        (
            &pdb["status"]["desiredHealthy"],
            &pdb["status"]["disruptionsAllowed"],
            &pdb["status"]["expectedPods"]
        ),
        (&json!(2), &json!(1), &json!(3))
    );
    assert_eq!(condition(&pdb, "DisruptionAllowed")["status"], "True");

    deps.patch(
        "api",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "nginx:1.28"}]}}}})),
    )
    .await
    .unwrap();
    let d = common::eventually("rolled", DEADLINE, || async {
        let d = json_of(&deps.get("api").await.ok()?);
        complete(&d, "nginx:1.28").then_some(d)
    })
    .await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let by_replicas: BTreeMap<String, i32> = rss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r.metadata.name.unwrap(), r.spec.replicas.unwrap()))
        .collect();
    assert_eq!(by_replicas.len(), 2);
    assert_eq!(
        by_replicas[&format!("api-{hash}")],
        0,
        "the old ReplicaSet is scaled down"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn job_runs_pods_to_completion() {
    let s = sim().await;
    let jobs: Api<Job> = Api::default_namespaced(s.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let j: Job = from(json!({
        "metadata": {"name": "backup"},
        "spec": {"completions": 2, "parallelism": 1,
                 "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "dump", "image": "postgres:16"}]}}}
    }));
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let done = common::eventually("Complete", DEADLINE, || async {
        let j = json_of(&jobs.get("backup").await.ok()?);
        (condition(&j, "Complete")["status"] == "True").then_some(j)
    })
    .await;
    assert_eq!(done["status"]["succeeded"], 2);
    assert!(done["status"]["completionTime"].is_string());
    assert!(done["status"]["startTime"].is_string());
    assert_eq!(condition(&done, "Complete")["reason"], "CompletionsReached");
    assert_eq!(condition(&done, "SuccessCriteriaMet")["status"], "True");
    let ps = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=backup"))
        .await
        .unwrap()
        .items;
    assert_eq!(ps.len(), 2);
    for p in ps {
        let p = json_of(&p);
        assert_eq!(p["status"]["phase"], "Succeeded");
        let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(
            (&t["exitCode"], &t["reason"]),
            (&json!(0), &json!("Completed"))
        );
    }
    s.sim.shutdown().await;
}

#[tokio::test]
async fn cronjob_creates_a_job_for_a_missed_schedule() {
    let s = sim().await;
    let cjs: Api<CronJob> = Api::default_namespaced(s.client.clone());
    let jobs: Api<Job> = Api::default_namespaced(s.client.clone());
    // Daily at a minute three minutes ago, with the last run recorded before it: as if the controller had been
    // down at that minute. The missed start runs now, and the next one is a day away, so nothing else fires.
    let now = jiff::Timestamp::now();
    let due = jiff::Timestamp::from_second((now.as_second() / 60 - 3) * 60).unwrap();
    let at = due.to_zoned(jiff::tz::TimeZone::UTC);
    let cj: CronJob = from(json!({
        "metadata": {"name": "nightly"},
        "spec": {"schedule": format!("{} {} * * *", at.minute(), at.hour()),
                 "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "b", "image": "busybox:1.36"}]}}}}}
    }));
    let cj = cjs.create(&PostParams::default(), &cj).await.unwrap();
    let long_ago = due - jiff::SignedDuration::from_mins(2);
    cjs.patch_status(
        "nightly",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"lastScheduleTime": long_ago.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}})),
    )
    .await
    .unwrap();
    let job = common::eventually("a Job of the CronJob", DEADLINE, || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("CronJob", cj.metadata.uid.as_deref().unwrap())
    );
    let done = common::eventually(
        "the Job succeeded and the CronJob saw it",
        DEADLINE,
        || async {
            let c = json_of(&cjs.get("nightly").await.ok()?);
            (c["status"]["lastSuccessfulTime"].is_string() && c["status"]["active"].is_null())
                .then_some(c)
        },
    )
    .await;
    let scheduled: jiff::Timestamp = done["status"]["lastScheduleTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(scheduled, due);
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(format!("nightly-{}", scheduled.as_second() / 60).as_str())
    );
    assert!(
        job.meta()
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp")
    );
    s.sim.shutdown().await;
}

/// The core Events about `name` with `reason`, as (count, lastTimestamp).
async fn core_events(client: &kube::Client, name: &str, reason: &str) -> Vec<Value> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(client.clone());
    events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| json_of(&e))
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .collect()
}

#[tokio::test]
async fn repeated_events_are_counted_in_one_event_and_its_series() {
    let s = sim().await;
    set_faults(&s.client, json!({"crashLoop": "^default/loops$"})).await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    pods.create(&PostParams::default(), &pod("loops", "redis:7"))
        .await
        .unwrap();
    let backoff = common::eventually("BackOff counted twice", DEADLINE, || async {
        let found = core_events(&s.client, "loops", "BackOff").await;
        (found.len() == 1 && found[0]["count"].as_i64() >= Some(2)).then(|| found[0].clone())
    })
    .await;
    let stamp = |k: &str| {
        backoff[k]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    assert!(
        stamp("lastTimestamp") >= stamp("firstTimestamp"),
        "{backoff}"
    );
    let counted = backoff["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["manager"] == "kubelet" && m["fieldsV1"]["f:count"].is_object());
    assert!(counted, "the kubelet's recorder wrote the count: {backoff}");
    let modern: Api<k8s_openapi::api::events::v1::Event> =
        Api::default_namespaced(s.client.clone());
    let twin = json_of(
        &modern
            .get(backoff["metadata"]["name"].as_str().unwrap())
            .await
            .unwrap(),
    );
    assert!(twin["series"]["count"].as_i64() >= Some(2), "{twin}");
    assert!(twin["series"]["lastObservedTime"].is_string(), "{twin}");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn events_expire_after_their_ttl() {
    let s = common::start_with(kubesim::Options {
        ready_delay: READY_DELAY,
        event_ttl: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    pods.create(&PostParams::default(), &pod("brief", "redis:7"))
        .await
        .unwrap();
    common::eventually("the kubelet's Started event", DEADLINE, || async {
        (!core_events(&s.client, "brief", "Started").await.is_empty()).then_some(())
    })
    .await;
    common::eventually("every Event about the pod expired", DEADLINE, || async {
        let core: Api<k8s_openapi::api::core::v1::Event> =
            Api::default_namespaced(s.client.clone());
        let modern: Api<k8s_openapi::api::events::v1::Event> =
            Api::default_namespaced(s.client.clone());
        let left = core.list(&Default::default()).await.ok()?.items.len()
            + modern.list(&Default::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    s.sim.shutdown().await;
}

#[tokio::test]
async fn follow_streams_log_lines_as_the_container_changes() {
    use futures::{AsyncBufReadExt, TryStreamExt};
    use kube::api::LogParams;
    let s = sim().await;
    set_faults(&s.client, json!({"notReady": "^default/tail$"})).await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    pods.create(&PostParams::default(), &pod("tail", "redis:7"))
        .await
        .unwrap();
    common::eventually("running, not ready", DEADLINE, || async {
        let p = json_of(&pods.get("tail").await.ok()?);
        (p["status"]["phase"] == "Running" && !is_ready(&p)).then_some(())
    })
    .await;
    let stream = pods
        .log_stream(
            "tail",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut lines = stream.lines();
    async fn next<R: futures::AsyncBufRead + Unpin>(
        lines: &mut futures::io::Lines<R>,
    ) -> Option<String> {
        tokio::time::timeout(DEADLINE, lines.try_next())
            .await
            .expect("a line or the end within the deadline")
            .unwrap()
    }
    assert_eq!(
        next(&mut lines).await.as_deref(),
        Some("kubesim: container c started (image docker.io/library/redis:7)")
    );
    // The stream stays open, and says when the container becomes ready.
    set_faults(&s.client, json!({"notReady": ""})).await;
    assert_eq!(
        next(&mut lines).await.as_deref(),
        Some("kubesim: container c is ready")
    );
    // It ends with the pod.
    pods.delete("tail", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(next(&mut lines).await, None);
    s.sim.shutdown().await;
}
