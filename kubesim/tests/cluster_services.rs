//! The services a cluster offers besides stored objects, against kubesim over HTTP with kube-rs: metrics.k8s.io,
//! TokenReview and SubjectAccessReview, API faults from the `kubesim-faults` ConfigMap, and `--data-file`
//! durability across a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::discovery::Discovery;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config};
use serde_json::{Value, json};

// ----- helpers -----

fn api_err(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// kube 5's default client retries 429, 503 and 504 (up to 15 times, honouring Retry-After); fault tests want to
/// see the first answer.
fn client_without_retries(url: &str) -> Client {
    let mut cfg = Config::new(url.parse().expect("url"));
    cfg.default_retry = false;
    Client::try_from(cfg).expect("client")
}

fn metrics_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", kind),
        plural,
    )
}

fn pod_metrics(client: &Client, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = metrics_resource("PodMetrics", "pods");
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn node_metrics(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &metrics_resource("NodeMetrics", "nodes"))
}

async fn create_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
}

fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{
            "name": "db", "image": "postgres:16",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}
        }]}
    }))
    .unwrap()
}

/// Makes a pod Running through its status subresource, as a kubelet would (harmless when one runs too).
async fn make_running(pods: &Api<Pod>, name: &str) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Running",
            "podIP": "10.244.0.10",
            "conditions": [{"type": "Ready", "status": "True"}]
        }})),
    )
    .await
    .unwrap();
}

async fn phase(pods: &Api<Pod>, name: &str) -> String {
    pods.get(name)
        .await
        .unwrap()
        .status
        .and_then(|s| s.phase)
        .unwrap_or_default()
}

/// Replaces the data of the faults ConfigMap (server-side apply drops the keys not given).
async fn set_faults(client: &Client, data: Value) {
    Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
        .patch(
            "kubesim-faults",
            &PatchParams::apply("fault-injector").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kubesim-faults", "namespace": "kube-system"},
                "data": data,
            })),
        )
        .await
        .unwrap();
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": name}})).unwrap()
}

/// `"1378681n"` → nanocores.
fn nanocores(q: &str) -> u64 {
    q.strip_suffix('n')
        .unwrap_or_else(|| panic!("CPU in nanocores: {q}"))
        .parse()
        .unwrap()
}

/// `"5764Ki"` → bytes.
fn kib_bytes(q: &str) -> u64 {
    q.strip_suffix("Ki")
        .unwrap_or_else(|| panic!("memory in Ki: {q}"))
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubesim-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ----- metrics.k8s.io -----

#[tokio::test]
async fn pod_metrics_are_served_for_running_pods_only() {
    let s = common::start().await;
    let ns = "metrics-demo";
    create_namespace(&s.client, ns).await;
    // Keeps `stuck` Pending (ErrImagePull) when the kubelet runs; without a kubelet it stays Pending anyway.
    set_faults(
        &s.client,
        json!({"imagePullFailure": format!("^{ns}/stuck$")}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), ns);
    pods.create(&PostParams::default(), &pod("web", "500m", "256Mi"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("stuck", "1", "1Gi"))
        .await
        .unwrap();
    make_running(&pods, "web").await;

    let metrics = pod_metrics(&s.client, Some(ns));
    let m = common::eventually(
        "PodMetrics for the Running pod",
        Duration::from_secs(10),
        || {
            let metrics = metrics.clone();
            async move { metrics.get("web").await.ok() }
        },
    )
    .await;
    assert_eq!(m.metadata.namespace.as_deref(), Some(ns));
    assert_eq!(
        m.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str),
        Some("web"),
        "labels are the pod's"
    );
    assert_eq!(m.data["window"], "15s");
    assert!(
        m.data["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{}",
        m.data
    );
    let c = &m.data["containers"][0];
    assert_eq!(c["name"], "db");
    // 20–60 % of a 500m / 256Mi request.
    let cpu = nanocores(c["usage"]["cpu"].as_str().unwrap());
    assert!((100_000_000..=300_000_000).contains(&cpu), "cpu {cpu}n");
    let mem = kib_bytes(c["usage"]["memory"].as_str().unwrap());
    let req = 256 * 1024 * 1024;
    assert!(mem >= req / 5 && mem <= req * 6 / 10, "memory {mem}");

    // The Pending pod has none: 404 on get, absent from lists (checked while it is Pending before and after).
    assert_ne!(phase(&pods, "stuck").await, "Running");
    let e = api_err(metrics.get("stuck").await.unwrap_err());
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(
        e.message,
        format!("pods.metrics.k8s.io \"{ns}/stuck\" not found")
    );
    let names = |l: kube::core::ObjectList<DynamicObject>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()
    };
    assert_eq!(
        names(metrics.list(&ListParams::default()).await.unwrap()),
        vec!["web"]
    );
    assert!(
        names(
            pod_metrics(&s.client, None)
                .list(&ListParams::default())
                .await
                .unwrap()
        )
        .contains(&"web".to_string()),
        "listed across namespaces too"
    );
    assert_ne!(phase(&pods, "stuck").await, "Running");

    // Label selectors select by the pod's labels.
    let sel = |l: &str| ListParams::default().labels(l);
    assert_eq!(
        names(metrics.list(&sel("app=web")).await.unwrap()),
        vec!["web"]
    );
    assert!(names(metrics.list(&sel("app=other")).await.unwrap()).is_empty());

    // Read-only.
    let e = api_err(
        metrics
            .create(&PostParams::default(), &m)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (405, "MethodNotAllowed"));
    s.sim.shutdown().await;
}

#[tokio::test]
async fn node_metrics_are_listed_and_grow_with_running_pods() {
    let s = common::start().await;
    let nodes = node_metrics(&s.client);
    let cpu_of = |o: &DynamicObject| nanocores(o.data["usage"]["cpu"].as_str().unwrap());
    let listed = nodes.list(&ListParams::default()).await.unwrap();
    let node_names: Vec<String> = Api::<Node>::all(s.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let metric_names: Vec<String> = listed
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(metric_names, node_names, "one NodeMetrics per node");
    let idle = nodes.get("kubesim-node").await.unwrap();
    assert_eq!(idle.data["window"], "15s");
    assert!(kib_bytes(idle.data["usage"]["memory"].as_str().unwrap()) > 0);
    let idle_cpu = cpu_of(&idle);

    // A Running pod on the node adds at least 20 % of its 2-core request.
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let mut p = pod("busy", "2", "1Gi");
    p.spec.as_mut().unwrap().node_name = Some("kubesim-node".into());
    pods.create(&PostParams::default(), &p).await.unwrap();
    make_running(&pods, "busy").await;
    common::eventually(
        "node usage includes the pod",
        Duration::from_secs(10),
        || {
            let nodes = nodes.clone();
            async move {
                let busy = cpu_of(&nodes.get("kubesim-node").await.ok()?);
                // The node's own overhead moves by at most 60m between scrape windows; the pod adds ≥ 400m.
                (busy > idle_cpu + 300_000_000).then_some(())
            }
        },
    )
    .await;

    let e = api_err(nodes.get("no-such-node").await.unwrap_err());
    assert!(e.is_not_found(), "{e:?}");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn metrics_and_review_apis_are_discoverable() {
    let s = common::start().await;
    for aggregated in [false, true] {
        let d = Discovery::new(s.client.clone());
        let d = if aggregated {
            d.run_aggregated().await.unwrap()
        } else {
            d.run().await.unwrap()
        };
        let g = d.get("metrics.k8s.io").expect("metrics.k8s.io advertised");
        assert_eq!(g.preferred_version(), Some("v1beta1"));
        let found: BTreeMap<String, (String, Vec<String>)> = g
            .versioned_resources("v1beta1")
            .into_iter()
            .map(|(ar, caps)| {
                let mut verbs = caps.operations.clone();
                verbs.sort();
                (ar.plural, (ar.kind, verbs))
            })
            .collect();
        let get_list = vec!["get".to_string(), "list".to_string()];
        assert_eq!(found["pods"], ("PodMetrics".to_string(), get_list.clone()));
        assert_eq!(found["nodes"], ("NodeMetrics".to_string(), get_list));
        for (group, plural, kind) in [
            ("authentication.k8s.io", "tokenreviews", "TokenReview"),
            (
                "authorization.k8s.io",
                "subjectaccessreviews",
                "SubjectAccessReview",
            ),
        ] {
            let (ar, caps) = d
                .get(group)
                .and_then(|g| g.recommended_kind(kind))
                .unwrap_or_else(|| panic!("{kind} advertised (aggregated: {aggregated})"));
            assert_eq!(ar.plural, plural);
            assert_eq!(caps.operations, vec!["create".to_string()]);
        }
    }
    s.sim.shutdown().await;
}

// ----- TokenReview and SubjectAccessReview -----

const TOKEN_FILE: &str = r#"
tokens:
  - token: alice-token
    user: alice
    uid: "1001"
    groups: [platform]
    rules:
      - namespaces: ["team-*"]
        verbs: [get, list, create]
        resources: [statefulsets]
        groups: [apps]
  - token: bob-token
    user: bob
groups:
  auditors:
    rules:
      - verbs: [get, list]
anonymous:
  rules:
    - verbs: [get]
      nonResourceURLs: ["/healthz"]
"#;

async fn token_review(
    client: &Client,
    token: &str,
) -> k8s_openapi::api::authentication::v1::TokenReviewStatus {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.into(),
            audiences: None,
        },
        ..Default::default()
    };
    Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .expect("status")
}

async fn access(
    client: &Client,
    user: &str,
    groups: &[&str],
    ns: &str,
    verb: &str,
    group: &str,
    resource: &str,
) -> (bool, String) {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: (!user.is_empty()).then(|| user.to_string()),
            groups: (!groups.is_empty()).then(|| groups.iter().map(|g| g.to_string()).collect()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let st = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .expect("status");
    (st.allowed, st.reason.unwrap_or_default())
}

#[tokio::test]
async fn reviews_follow_the_token_file() {
    let dir = temp_dir("tokens");
    let path = dir.join("tokens.yaml");
    std::fs::write(&path, TOKEN_FILE).unwrap();
    let s = common::start_with(kubesim::Options {
        token_file: Some(path),
        ..Default::default()
    })
    .await;
    let c = &s.client;

    let st = token_review(c, "alice-token").await;
    assert_eq!(st.authenticated, Some(true));
    let user = st.user.unwrap();
    assert_eq!(user.username.as_deref(), Some("alice"));
    assert_eq!(user.uid.as_deref(), Some("1001"));
    assert_eq!(
        user.groups.unwrap(),
        vec!["platform".to_string(), "system:authenticated".to_string()]
    );
    let st = token_review(c, "who-knows").await;
    assert_ne!(st.authenticated, Some(true), "unknown token");
    assert!(st.user.and_then(|u| u.username).is_none());

    // Allowed by alice's rule, in a namespace matching the glob.
    let (ok, reason) = access(c, "alice", &[], "team-a", "create", "apps", "statefulsets").await;
    assert!(ok, "{reason}");
    assert!(reason.contains("alice"), "{reason}");
    // Denied: namespace outside the glob, verb not granted, wrong group, user without rules.
    for (ns, verb, group, user) in [
        ("prod", "create", "apps", "alice"),
        ("team-a", "delete", "apps", "alice"),
        ("team-a", "create", "", "alice"),
        ("team-a", "get", "apps", "bob"),
    ] {
        let (ok, reason) = access(c, user, &[], ns, verb, group, "statefulsets").await;
        assert!(!ok, "{user} {verb} {group} in {ns}: {reason}");
        assert!(reason.contains("no rule allows"), "{reason}");
    }
    // Group rules apply to members of the group.
    assert!(
        access(c, "carol", &["auditors"], "anything", "list", "", "pods")
            .await
            .0
    );
    assert!(
        !access(c, "carol", &["auditors"], "anything", "delete", "", "pods")
            .await
            .0
    );
    // The anonymous section applies to system:anonymous only.
    let health = |user: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some("/healthz".into()),
                verb: Some("get".into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let sars = Api::<SubjectAccessReview>::all(c.clone());
    let anon = sars
        .create(&PostParams::default(), &health("system:anonymous"))
        .await
        .unwrap();
    assert!(anon.status.unwrap().allowed);
    let bob = sars
        .create(&PostParams::default(), &health("bob"))
        .await
        .unwrap();
    assert!(!bob.status.unwrap().allowed);

    // A review without a subject is invalid, as upstream.
    let e = api_err(
        sars.create(
            &PostParams::default(),
            &SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes::default()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    s.sim.shutdown().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn without_a_token_file_every_review_is_denied_except_the_anonymous_policy() {
    let s = common::start().await;
    let st = token_review(&s.client, "alice-token").await;
    assert_ne!(st.authenticated, Some(true));
    let (ok, _) = access(&s.client, "alice", &[], "default", "get", "", "pods").await;
    assert!(!ok);
    let (ok, _) = access(
        &s.client,
        "system:anonymous",
        &[],
        "default",
        "get",
        "",
        "pods",
    )
    .await;
    assert!(!ok, "no anonymous policy configured");
    s.sim.shutdown().await;

    let s = common::start_with(kubesim::Options {
        anonymous_allow: vec!["verbs=get,list;resources=pods;groups=".into()],
        ..Default::default()
    })
    .await;
    let (ok, reason) = access(
        &s.client,
        "system:anonymous",
        &[],
        "default",
        "get",
        "",
        "pods",
    )
    .await;
    assert!(ok, "{reason}");
    let (ok, _) = access(
        &s.client,
        "",
        &["system:unauthenticated"],
        "x",
        "list",
        "",
        "pods",
    )
    .await;
    assert!(
        ok,
        "the unauthenticated group gets the anonymous policy too"
    );
    let (ok, _) = access(
        &s.client,
        "system:anonymous",
        &[],
        "default",
        "delete",
        "",
        "pods",
    )
    .await;
    assert!(!ok);
    let (ok, _) = access(&s.client, "alice", &[], "default", "get", "", "pods").await;
    assert!(!ok, "named users get nothing from the anonymous policy");
    s.sim.shutdown().await;
}

// ----- API faults -----

#[tokio::test]
async fn error_rate_one_with_503_gives_service_unavailable_with_retry_after() {
    let s = common::start().await;
    let raw = client_without_retries(&s.sim.url());
    let cms: Api<ConfigMap> = Api::namespaced(raw.clone(), "default");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    set_faults(
        &s.client,
        json!({"apiErrorRate": "1", "apiErrorCodes": "503", "apiRetryAfter": "2"}),
    )
    .await;

    let e = api_err(cms.get("a").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (503, "ServiceUnavailable"));
    assert_eq!(e.details.map(|d| d.retry_after_seconds), Some(2));
    let resp = raw
        .send(
            http::Request::get("/api/v1/namespaces/default/configmaps")
                .body(kube::client::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "2");

    // The faults ConfigMap itself stays reachable, so the fault can be switched off.
    let faults: Api<ConfigMap> = Api::namespaced(raw.clone(), "kube-system");
    assert!(faults.get("kubesim-faults").await.is_ok());
    assert!(faults.list(&ListParams::default()).await.is_ok());
    set_faults(&raw, json!({"apiErrorRate": "0"})).await;
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "a");
    set_faults(&raw, json!({"apiErrorRate": "1"})).await;
    assert!(cms.get("a").await.is_err());
    faults
        .delete("kubesim-faults", &Default::default())
        .await
        .unwrap();
    assert!(
        cms.get("a").await.is_ok(),
        "deleting the ConfigMap ends every fault"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn error_codes_429_and_500_look_like_upstream() {
    let s = common::start().await;
    let raw = client_without_retries(&s.sim.url());
    let cms: Api<ConfigMap> = Api::namespaced(raw.clone(), "default");
    set_faults(
        &s.client,
        json!({"apiErrorRate": "1", "apiErrorCodes": "429"}),
    )
    .await;
    let e = api_err(cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(e.details.map(|d| d.retry_after_seconds), Some(1));
    set_faults(
        &s.client,
        json!({"apiErrorRate": "1", "apiErrorCodes": "500"}),
    )
    .await;
    let e = api_err(cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert!(
        e.message.starts_with("Internal error occurred: "),
        "{}",
        e.message
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn error_rate_is_a_probability() {
    let s = common::start().await;
    let raw = client_without_retries(&s.sim.url());
    let cms: Api<ConfigMap> = Api::namespaced(raw, "default");
    set_faults(
        &s.client,
        json!({"apiErrorRate": "0.5", "apiErrorCodes": "500"}),
    )
    .await;
    let mut failed = 0;
    for _ in 0..200 {
        if cms.list(&ListParams::default()).await.is_err() {
            failed += 1;
        }
    }
    // Binomial(200, 0.5): outside 60..=140 has a probability below 1e-8.
    assert!((60..=140).contains(&failed), "{failed} of 200 failed");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn fault_match_scopes_faults_to_a_verb_and_resource() {
    let s = common::start().await;
    let raw = client_without_retries(&s.sim.url());
    let cms: Api<ConfigMap> = Api::namespaced(raw.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(raw.clone(), "default");
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    set_faults(
        &s.client,
        json!({"apiErrorRate": "1", "apiErrorCodes": "503", "apiFaultMatch": "^create configmaps$"}),
    )
    .await;
    let e = api_err(
        cms.create(&PostParams::default(), &cm("after"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 503);
    assert!(cms.get("before").await.is_ok(), "get is not matched");
    assert!(
        cms.list(&ListParams::default()).await.is_ok(),
        "list is not matched"
    );
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    assert!(
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .is_ok(),
        "other resources are not matched"
    );
    // Resources are named with their group, so a pattern can tell apps from core.
    set_faults(
        &s.client,
        json!({"apiErrorRate": "1", "apiFaultMatch": "^patch statefulsets\\.apps"}),
    )
    .await;
    assert!(
        cms.create(&PostParams::default(), &cm("after"))
            .await
            .is_ok()
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn latency_is_added_to_matched_requests() {
    let s = common::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    cms.create(&PostParams::default(), &cm("slow"))
        .await
        .unwrap();
    set_faults(
        &s.client,
        json!({"apiLatency": "1s", "apiFaultMatch": "^get configmaps$"}),
    )
    .await;
    let started = Instant::now();
    cms.get("slow").await.unwrap();
    let slow = started.elapsed();
    assert!(slow >= Duration::from_secs(1), "get took {slow:?}");
    let started = Instant::now();
    cms.list(&ListParams::default()).await.unwrap();
    let fast = started.elapsed();
    assert!(
        fast < Duration::from_secs(1),
        "an unmatched list took {fast:?}"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn watch_streams_are_cut() {
    let s = common::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), "default");
    set_faults(
        &s.client,
        json!({"watchMaxDuration": "1s", "apiFaultMatch": "^watch configmaps$"}),
    )
    .await;
    let mut other = secrets
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let started = Instant::now();
    // kube-rs asks for timeoutSeconds=290: without the fault this stream would stay open for minutes.
    let mut stream = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = stream.next().await {
            ev.expect("events before the cut are intact");
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch was cut");
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        other.next().now_or_never().is_none(),
        "an unmatched watch stays open"
    );
    s.sim.shutdown().await;
}

// ----- durability -----

const WIDGET_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.example.com"},
  "spec": {"group": "example.com", "scope": "Namespaced",
    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
    "versions": [{"name": "v1", "served": true, "storage": true,
      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
}"#;

#[tokio::test]
async fn restart_with_data_file_keeps_every_object_and_a_reflector_recovers() {
    let dir = temp_dir("data");
    let data_file = dir.join("kubesim.json");
    let s = common::start_with(kubesim::Options {
        data_file: Some(data_file.clone()),
        ..Default::default()
    })
    .await;
    let addr = s.sim.addr();
    create_namespace(&s.client, "durable").await;
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_str(WIDGET_CRD).unwrap(),
    )
    .await
    .unwrap();
    let widget_res = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(s.client.clone(), "durable", &widget_res);
    let mut w = DynamicObject::new("w1", &widget_res);
    w.data = json!({"spec": {"size": 3}});
    let widget = widgets.create(&PostParams::default(), &w).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "durable");
    let mut first_rv = String::new();
    for name in ["a", "b", "c"] {
        let o = cms.create(&PostParams::default(), &cm(name)).await.unwrap();
        if first_rv.is_empty() {
            first_rv = o.metadata.resource_version.unwrap();
        }
    }

    // A reflector on the old server, reconnecting with backoff while kubesim is down.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let reflector_task = tokio::spawn(
        // Without the namespace's kube-root-ca.crt, which its controller writes at its own pace.
        reflector(
            writer,
            watcher(
                cms.clone(),
                watcher::Config::default().fields("metadata.name!=kube-root-ca.crt"),
            ),
        )
        .default_backoff()
        .applied_objects()
        .for_each(|_| async {}),
    );
    tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready())
        .await
        .expect("reflector ready")
        .unwrap();
    assert_eq!(reader.state().len(), 3);

    let snapshot = |l: kube::core::ObjectList<ConfigMap>| -> BTreeMap<String, (String, String)> {
        l.items
            .into_iter()
            .map(|o| {
                let m = o.metadata;
                (
                    m.name.unwrap(),
                    (m.uid.unwrap(), m.resource_version.unwrap()),
                )
            })
            .collect()
    };
    let before_list = cms.list(&ListParams::default()).await.unwrap();
    let before_rv: u64 = before_list
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let before = snapshot(before_list);
    let default_ns_uid = Api::<Namespace>::all(s.client.clone())
        .get("default")
        .await
        .unwrap()
        .metadata
        .uid;

    // Written shortly after the change, not only at shutdown.
    let c_uid = before["c"].0.clone();
    common::eventually(
        "the data file holds the last write",
        Duration::from_secs(10),
        || {
            let found = std::fs::read_to_string(&data_file).is_ok_and(|t| t.contains(&c_uid));
            async move { found.then_some(()) }
        },
    )
    .await;

    s.sim.shutdown().await;
    let s2 = common::start_with(kubesim::Options {
        listen: addr,
        data_file: Some(data_file.clone()),
        ..Default::default()
    })
    .await;
    let cms2: Api<ConfigMap> = Api::namespaced(s2.client.clone(), "durable");
    assert_eq!(
        snapshot(cms2.list(&ListParams::default()).await.unwrap()),
        before,
        "same objects, uids and resourceVersions"
    );
    let default_after = Api::<Namespace>::all(s2.client.clone())
        .get("default")
        .await
        .unwrap();
    assert_eq!(
        default_after.metadata.uid, default_ns_uid,
        "seeded objects are kept, not re-seeded"
    );
    let widgets2: Api<DynamicObject> =
        Api::namespaced_with(s2.client.clone(), "durable", &widget_res);
    let w2 = widgets2
        .get("w1")
        .await
        .expect("the CRD's resource is served again");
    assert_eq!(w2.metadata.uid, widget.metadata.uid);
    assert_eq!(
        w2.metadata.resource_version,
        widget.metadata.resource_version
    );
    assert_eq!(w2.data["spec"]["size"], 3);

    // New writes continue the resourceVersion sequence.
    let d = cms2.create(&PostParams::default(), &cm("d")).await.unwrap();
    let d_rv: u64 = d.metadata.resource_version.unwrap().parse().unwrap();
    assert!(d_rv > before_rv, "{d_rv} after {before_rv}");
    cms2.delete("a", &Default::default()).await.unwrap();

    // A watch from before the restart gets the in-stream 410 (the change log did not survive).
    let mut old = cms2
        .watch(&WatchParams::default(), &first_rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), old.next()).await {
        Ok(Some(Ok(WatchEvent::Error(e)))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected an in-stream 410, got {other:?}"),
    }

    // The reflector reconnected to the same port and converged.
    common::eventually("the reflector converges", Duration::from_secs(30), || {
        let names: BTreeSet<String> = reader
            .state()
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        async move { (names == BTreeSet::from(["b".into(), "c".into(), "d".into()])).then_some(()) }
    })
    .await;
    reflector_task.abort();
    s2.sim.shutdown().await;
    assert!(
        !dir.join("kubesim.json.tmp").exists(),
        "writes are renamed into place"
    );
    std::fs::remove_dir_all(dir).ok();
}
