//! What a real API server refuses on update, with upstream's 422 messages; the error classes that differ by
//! kind (strategic merge on custom resources, DELETE bodies); and the garbage collector's view of owners in
//! another namespace. kube-rs against kubesim over HTTP.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

fn api_err(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The 422 of a refused write: its message, after checking the class.
fn invalid(r: Result<impl std::fmt::Debug, kube::Error>) -> String {
    let e = api_err(r.expect_err("refused"));
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{e:?}");
    e.message
}

fn merge(v: Value) -> Patch<Value> {
    Patch::Merge(v)
}

fn sts(name: &str) -> StatefulSet {
    from(json!({
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
}

const STS_FORBIDDEN: &str = "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

#[tokio::test]
async fn statefulset_updates_outside_the_mutable_fields_are_refused() {
    let s = common::start().await;
    let api: Api<StatefulSet> = Api::default_namespaced(s.client.clone());
    api.create(&PostParams::default(), &sts("db"))
        .await
        .unwrap();
    let pp = PatchParams::default();

    let claims = merge(json!({"spec": {"volumeClaimTemplates": [{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
    }]}}));
    let msg = invalid(api.patch("db", &pp, &claims).await);
    assert_eq!(
        msg,
        format!("StatefulSet.apps \"db\" is invalid: {STS_FORBIDDEN}")
    );
    for refused in [
        json!({"spec": {"serviceName": "other"}}),
        json!({"spec": {"podManagementPolicy": "Parallel"}}),
    ] {
        let msg = invalid(api.patch("db", &pp, &merge(refused.clone())).await);
        assert!(msg.ends_with(STS_FORBIDDEN), "{refused}: {msg}");
    }

    // What may change does.
    let allowed = merge(json!({"spec": {"replicas": 3, "minReadySeconds": 5,
        "template": {"spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}}));
    let updated = api.patch("db", &pp, &allowed).await.unwrap();
    assert_eq!(updated.spec.replicas, Some(3));

    // Re-applying the same claim templates (what a controller's server-side apply does every reconcile) is
    // no change, defaults and all.
    let ssa = PatchParams::apply("kidp-broker").force();
    let mut again = serde_json::to_value(sts("db")).unwrap();
    again["apiVersion"] = json!("apps/v1");
    again["kind"] = json!("StatefulSet");
    api.patch("db", &ssa, &Patch::Apply(again)).await.unwrap();
}

#[tokio::test]
async fn workload_selectors_are_immutable_and_must_select_their_template() {
    let s = common::start().await;
    let deployments: Api<Deployment> = Api::default_namespaced(s.client.clone());
    let deployment = |labels: Value| -> Deployment {
        from(json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}
            }
        }))
    };
    let msg = invalid(
        deployments
            .create(&PostParams::default(), &deployment(json!({"app": "other"})))
            .await,
    );
    assert_eq!(
        msg,
        "Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"
    );
    deployments
        .create(&PostParams::default(), &deployment(json!({"app": "web"})))
        .await
        .unwrap();
    let msg = invalid(
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &merge(
                    json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}},
                    "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}}}}),
                ),
            )
            .await,
    );
    assert!(
        msg.starts_with(
            "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: {\"matchLabels\":{"
        ) && msg.ends_with("}}: field is immutable"),
        "{msg}"
    );

    // A Job's pod template is fixed once created.
    let jobs: Api<Job> = Api::default_namespaced(s.client.clone());
    jobs.create(
        &PostParams::default(),
        &from(
            json!({"metadata": {"name": "once"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}),
        ),
    )
    .await
    .unwrap();
    let msg = invalid(
        jobs.patch(
            "once",
            &PatchParams::default(),
            &merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}})),
        )
        .await,
    );
    assert!(
        msg.starts_with("Job.batch \"once\" is invalid: spec.template: Invalid value: ")
            && msg.ends_with(": field is immutable"),
        "{msg}"
    );
}

#[tokio::test]
async fn pods_change_only_images_and_the_few_mutable_fields() {
    let s = common::start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    pods.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})),
    )
    .await
    .unwrap();
    let msg = invalid(
        pods.patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "c", "command": ["sleep", "1"]}]}}),
            ),
        )
        .await,
    );
    assert!(
        msg.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
        "{msg}"
    );
    let updated = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"activeDeadlineSeconds": 60,
                "containers": [{"name": "c", "image": "busybox:1.37"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        updated.spec.unwrap().containers[0].image.as_deref(),
        Some("busybox:1.37")
    );
}

#[tokio::test]
async fn immutable_config_and_claims_keep_what_is_fixed() {
    let s = common::start().await;
    let pp = PatchParams::default();
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    cms.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": "fixed"}, "data": {"a": "1"}, "immutable": true})),
    )
    .await
    .unwrap();
    let msg = invalid(
        cms.patch("fixed", &pp, &merge(json!({"data": {"a": "2"}})))
            .await,
    );
    assert_eq!(
        msg,
        "ConfigMap \"fixed\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    let msg = invalid(
        cms.patch("fixed", &pp, &merge(json!({"immutable": false})))
            .await,
    );
    assert!(
        msg.contains("immutable: Forbidden: field is immutable when `immutable` is set"),
        "{msg}"
    );
    // Metadata stays writable.
    cms.patch(
        "fixed",
        &pp,
        &merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();

    let secrets: Api<Secret> = Api::default_namespaced(s.client.clone());
    secrets
        .create(
            &PostParams::default(),
            &from(
                json!({"metadata": {"name": "fixed"}, "stringData": {"a": "1"}, "immutable": true}),
            ),
        )
        .await
        .unwrap();
    let msg = invalid(
        secrets
            .patch("fixed", &pp, &merge(json!({"data": {"a": "Mg=="}})))
            .await,
    );
    assert!(
        msg.starts_with("Secret \"fixed\" is invalid: data: Forbidden"),
        "{msg}"
    );

    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(s.client.clone());
    pvcs.create(
        &PostParams::default(),
        &from(
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
    )
    .await
    .unwrap();
    let msg = invalid(
        pvcs.patch(
            "data",
            &pp,
            &merge(json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
        )
        .await,
    );
    assert_eq!(
        msg,
        "PersistentVolumeClaim \"data\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
    );
    pvcs.patch(
        "data",
        &pp,
        &merge(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn owner_references_and_uids_are_checked() {
    let s = common::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    let owner = |name: &str, uid: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid, "controller": true});
    let msg = invalid(
        cms.create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "two", "ownerReferences": [owner("a", "1"), owner("b", "2")]}})),
        )
        .await,
    );
    assert!(
        msg.starts_with("ConfigMap \"two\" is invalid: metadata.ownerReferences: Invalid value: [{")
            && msg.ends_with("Only one reference can have Controller set to true. Found \"true\" in references for ConfigMap/a and ConfigMap/b"),
        "{msg}"
    );
    let msg = invalid(
        cms.create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "nouid", "ownerReferences": [owner("a", "")]}})),
        )
        .await,
    );
    assert_eq!(
        msg,
        "ConfigMap \"nouid\" is invalid: metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty"
    );

    // A PUT may leave the uid out, not change it.
    let created = cms
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "c"}})),
        )
        .await
        .unwrap();
    let mut replaced = created.clone();
    replaced.metadata.uid = None;
    let replaced = cms
        .replace("c", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    let mut other = replaced.clone();
    other.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let msg = invalid(cms.replace("c", &PostParams::default(), &other).await);
    assert_eq!(
        msg,
        "ConfigMap \"c\" is invalid: metadata.uid: Invalid value: \"00000000-0000-0000-0000-000000000000\": field is immutable"
    );
}

#[tokio::test]
async fn strategic_merge_patches_of_custom_resources_are_unsupported() {
    let s = common::start().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(s.client.clone());
    crds.create(
        &PostParams::default(),
        &from(json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        })),
    )
    .await
    .unwrap();
    let ar = kube::api::ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<kube::api::DynamicObject> =
        Api::namespaced_with(s.client.clone(), "default", &ar);
    let w: kube::api::DynamicObject =
        from(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 1}}));
    common::eventually("the CRD is served", Duration::from_secs(5), || {
        let widgets = widgets.clone();
        let w = w.clone();
        async move { widgets.create(&PostParams::default(), &w).await.ok() }
    })
    .await;
    let e = api_err(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 2}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));
    assert_eq!(
        e.message,
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    // A merge patch is fine.
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn deletes_answer_with_the_object_where_upstream_does() {
    let s = common::start().await;
    let dp = DeleteParams::default();
    let services: Api<Service> = Api::default_namespaced(s.client.clone());
    services
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap();
    assert!(services.delete("svc", &dp).await.unwrap().is_left());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(s.client.clone());
    pvcs.create(
        &PostParams::default(),
        &from(
            json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
    )
    .await
    .unwrap();
    // A claim carries the protection finalizer; either way the answer is the object.
    assert!(pvcs.delete("c", &dp).await.unwrap().is_left());
    let pvs: Api<PersistentVolume> = Api::all(s.client.clone());
    pvs.create(
        &PostParams::default(),
        &from(
            json!({"metadata": {"name": "pv-test"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/x"}}}),
        ),
    )
    .await
    .unwrap();
    assert!(pvs.delete("pv-test", &dp).await.unwrap().is_left());
    let quotas: Api<ResourceQuota> = Api::default_namespaced(s.client.clone());
    quotas
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "10"}}})),
        )
        .await
        .unwrap();
    assert!(quotas.delete("q", &dp).await.unwrap().is_left());
    // ConfigMaps answer with a Status.
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    cms.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": "cm"}})),
    )
    .await
    .unwrap();
    assert!(cms.delete("cm", &dp).await.unwrap().is_right());
}

#[tokio::test]
async fn an_owner_in_another_namespace_counts_as_absent() {
    let s = common::start().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(s.client.clone());
    for ns in ["team-a", "team-b"] {
        namespaces
            .create(
                &PostParams::default(),
                &from(json!({"metadata": {"name": ns}})),
            )
            .await
            .unwrap();
    }
    let a: Api<ConfigMap> = Api::namespaced(s.client.clone(), "team-a");
    let b: Api<ConfigMap> = Api::namespaced(s.client.clone(), "team-b");
    let owner = a
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "owner"}})),
        )
        .await
        .unwrap();
    let uid = owner.metadata.uid.unwrap();
    let reference = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]);
    // Same namespace: kept. Another namespace: collected, as upstream's garbage collector does.
    a.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": "same", "ownerReferences": reference}})),
    )
    .await
    .unwrap();
    b.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": "across", "ownerReferences": reference}})),
    )
    .await
    .unwrap();
    common::eventually(
        "the cross-namespace dependent collected",
        Duration::from_secs(5),
        || {
            let b = b.clone();
            async move { b.get_opt("across").await.unwrap().is_none().then_some(()) }
        },
    )
    .await;
    assert!(a.get_opt("same").await.unwrap().is_some());
}
