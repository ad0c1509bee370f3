//! kube-rs against kubesim over HTTP: CRUD, patches, server-side apply, finalizers, garbage collection,
//! dry runs, namespaces, validation, pagination, selectors, scale and discovery.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::core::Status as ErrorResponse;
use serde_json::json;

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Lists without the `kube-root-ca.crt` ConfigMap every namespace holds, as in a real cluster.
fn ours() -> ListParams {
    ListParams::default().fields("metadata.name!=kube-root-ca.crt")
}

fn api_err(e: kube::Error) -> ErrorResponse {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn deployment(name: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}
        }
    })
}

#[tokio::test]
async fn crud_round_trip() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .unwrap();
    let md = &created.metadata;
    assert!(md.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(md.creation_timestamp.is_some());
    let rv1: u64 = md.resource_version.as_deref().unwrap().parse().unwrap();

    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    assert!(api.get_opt("missing").await.unwrap().is_none());

    let dup = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    let e = api_err(dup);
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"a\" already exists");

    let mut upd = api.get("a").await.unwrap();
    upd.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
    let replaced = api
        .replace("a", &PostParams::default(), &upd)
        .await
        .unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    // The stale resourceVersion of the first read now conflicts.
    let stale = api
        .replace("a", &PostParams::default(), &created)
        .await
        .unwrap_err();
    let e = api_err(stale);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("the object has been modified"));

    let list = api.list(&ours()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv >= rv2);

    let del = api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(del.is_right(), "a configmap delete answers with a Status");
    let e = api_err(api.get("a").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "configmaps \"a\" not found");

    // Recreating a name gives a new uid.
    let again = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    assert_ne!(again.metadata.uid, created.metadata.uid);
    s.sim.shutdown().await;
}

#[tokio::test]
async fn generate_name_and_name_validation() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let mut c = cm("", &[]);
    c.metadata.name = None;
    c.metadata.generate_name = Some("gen-".into());
    let made = api.create(&PostParams::default(), &c).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let e = api_err(
        api.create(&PostParams::default(), &cm("Bad_Name", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value"),
        "{}",
        e.message
    );

    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}))
            .unwrap();
    let e = api_err(pods.create(&PostParams::default(), &pod).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("spec.containers: Required value"),
        "{}",
        e.message
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn namespaces_gate_creation_and_deletion_empties_them() {
    let s = common::start().await;
    let missing: Api<ConfigMap> = Api::namespaced(s.client.clone(), "nope");
    let e = api_err(
        missing
            .create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );

    let nss: Api<Namespace> = Api::all(s.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
    let ns = nss.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "team-a");
    cms.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    // A finalizer holds one object, and with it the namespace, in Terminating.
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();

    nss.delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    let e = api_err(
        cms.create(&PostParams::default(), &cm("late", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert!(
        e.message.contains("because it is being terminated"),
        "{}",
        e.message
    );

    common::eventually("contents deleted", Duration::from_secs(5), || async {
        cms.get_opt("one").await.unwrap().is_none().then_some(())
    })
    .await;
    let ns_now = nss.get("team-a").await.unwrap();
    assert_eq!(ns_now.status.unwrap().phase.as_deref(), Some("Terminating"));

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    common::eventually("namespace gone", Duration::from_secs(5), || async {
        nss.get_opt("team-a").await.unwrap().is_none().then_some(())
    })
    .await;
    s.sim.shutdown().await;
}

#[tokio::test]
async fn merge_strategic_and_json_patches() {
    let s = common::start().await;
    let deps: Api<Deployment> = Api::namespaced(s.client.clone(), "default");
    let d: Deployment = serde_json::from_value(deployment("web", 1)).unwrap();
    let d = deps.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));

    // Merge patch: RFC 7386, null deletes.
    let p = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front", "gone": null}}, "spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["tier"], "front");
    assert_eq!(p.spec.replicas, Some(3));
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );

    // Strategic merge patch: containers merge by name instead of replacing the list.
    let p = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "busybox:1.36"},
                {"name": "web", "image": "nginx:1.28"}
            ]}}}})),
        )
        .await
        .unwrap();
    let cs = p.spec.template.spec.unwrap().containers;
    let names: Vec<_> = cs
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![("web", "nginx:1.28"), ("sidecar", "busybox:1.36")]
    );

    // $patch: delete removes one keyed item.
    let p = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "$patch": "delete"}
            ]}}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.template.spec.unwrap().containers.len(), 1);

    // JSON patch with a passing and a failing test.
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/replicas", "value": 5}
    ]))
    .unwrap();
    let p = deps
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ok))
        .await
        .unwrap();
    assert_eq!(p.spec.replicas, Some(5));
    let bad: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 9}
    ]))
    .unwrap();
    let e = api_err(
        deps.patch("web", &PatchParams::default(), &Patch::<()>::Json(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(deps.get("web").await.unwrap().spec.replicas, Some(5));

    // A status write does not bump generation, and a spec write ignores status. collisionCount is the status
    // field the deployment controller carries over rather than recomputes, so it stays put while the controller
    // keeps writing the rest of the status.
    let before = deps.get("web").await.unwrap();
    let st = deps
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 4, "replicas": 5, "collisionCount": 5}, "spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.metadata.generation, before.metadata.generation);
    assert_eq!(st.spec.replicas, Some(5), "/status ignores spec");
    assert_eq!(st.status.as_ref().unwrap().replicas, Some(5));
    let sp = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"collisionCount": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(
        sp.status.unwrap().collision_count,
        Some(5),
        "the main resource ignores status"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_conflicts_and_force() {
    let s = common::start().await;
    let deps: Api<Deployment> = Api::namespaced(s.client.clone(), "default");
    let a = PatchParams::apply("manager-a");
    let created = deps
        .patch("app", &a, &Patch::Apply(deployment("app", 2)))
        .await
        .unwrap();
    assert_eq!(created.spec.replicas, Some(2));
    let mf = created.metadata.managed_fields.unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("manager-a"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // Re-applying the same configuration changes nothing, not even the resourceVersion. The controllers write
    // to the Deployment (status, the revision annotation) until it is rolled out; compare once they are done.
    let settled = common::eventually(
        "the deployment rolled out",
        Duration::from_secs(30),
        || async {
            let d = deps.get("app").await.ok()?;
            let st = d.status.clone()?;
            (st.observed_generation == d.metadata.generation && st.available_replicas == Some(2))
                .then_some(d)
        },
    )
    .await;
    let again = deps
        .patch("app", &a, &Patch::Apply(deployment("app", 2)))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        settled.metadata.resource_version
    );

    // Another manager setting replicas to a different value conflicts.
    let b = PatchParams::apply("manager-b");
    let e = api_err(
        deps.patch(
            "app",
            &b,
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}, "spec": {"replicas": 7}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("conflict with \"manager-a\""),
        "{}",
        e.message
    );
    assert!(e.message.contains(".spec.replicas"), "{}", e.message);

    // Forcing takes ownership.
    let forced = deps
        .patch(
            "app",
            &b.clone().force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}, "spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.replicas, Some(7));

    // manager-a no longer owns replicas: its apply without replicas keeps manager-b's value,
    // and applying with its old value now conflicts with manager-b.
    let e = api_err(
        deps.patch("app", &a, &Patch::Apply(deployment("app", 2)))
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("conflict with \"manager-b\""),
        "{}",
        e.message
    );

    // A field a manager stops applying is removed when nobody else owns it.
    let mut with_label = deployment("lbl", 1);
    with_label["metadata"]["labels"] = json!({"team": "x"});
    deps.patch("lbl", &a, &Patch::Apply(with_label))
        .await
        .unwrap();
    let dropped = deps
        .patch("lbl", &a, &Patch::Apply(deployment("lbl", 1)))
        .await
        .unwrap();
    assert!(
        !dropped
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("team")
    );

    // Apply requires a field manager.
    let e = api_err(
        deps.patch(
            "app",
            &PatchParams::default(),
            &Patch::Apply(deployment("app", 2)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("fieldManager: Required value"),
        "{}",
        e.message
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_like_kube_runtime_expects() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    api.create(&PostParams::default(), &cm("f", &[]))
        .await
        .unwrap();
    // kube-runtime's finalizer helper: test an absent list against null, then add it.
    let add: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["kidp.io/test"]}
    ]))
    .unwrap();
    let with = api
        .patch("f", &PatchParams::default(), &Patch::<()>::Json(add))
        .await
        .unwrap();
    assert_eq!(with.metadata.finalizers.unwrap(), vec!["kidp.io/test"]);

    let del = api.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = del
        .left()
        .expect("an object with finalizers is returned, not a Status");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        api.get("f")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    // A new finalizer cannot be added once deletion started: 422 Invalid, as upstream's object meta validation.
    let e = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["kidp.io/test", "other"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        e.message,
        "ConfigMap \"f\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"other\"}"
    );

    let remove: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "kidp.io/test"},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]))
    .unwrap();
    api.patch("f", &PatchParams::default(), &Patch::<()>::Json(remove))
        .await
        .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
    s.sim.shutdown().await;
}

/// An owner ConfigMap with two dependents; `block` sets blockOwnerDeletion on the first.
async fn owner_with_dependents(api: &Api<ConfigMap>, owner: &str, block: bool) -> String {
    let o = api
        .create(&PostParams::default(), &cm(owner, &[]))
        .await
        .unwrap();
    let uid = o.metadata.uid.unwrap();
    for (i, b) in [(1, block), (2, false)] {
        let mut d = cm(&format!("{owner}-dep{i}"), &[]);
        d.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.into(),
                uid: uid.clone(),
                controller: Some(i == 1),
                block_owner_deletion: Some(b),
            },
        ]);
        api.create(&PostParams::default(), &d).await.unwrap();
    }
    uid
}

#[tokio::test]
async fn garbage_collection_background() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    owner_with_dependents(&api, "bg", false).await;
    api.delete("bg", &DeleteParams::background()).await.unwrap();
    assert!(
        api.get_opt("bg").await.unwrap().is_none(),
        "the owner goes at once"
    );
    common::eventually("dependents collected", Duration::from_secs(5), || async {
        let left = api.list(&ours()).await.unwrap().items.len();
        (left == 0).then_some(())
    })
    .await;
    s.sim.shutdown().await;
}

#[tokio::test]
async fn garbage_collection_foreground_waits_for_blocking_dependents() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    owner_with_dependents(&api, "fg", true).await;
    // The blocking dependent has a finalizer of its own, so it lingers and blocks the owner.
    api.patch(
        "fg-dep1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/slow"]}})),
    )
    .await
    .unwrap();
    let r = api.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let owner = r.left().expect("foreground deletion returns the object");
    assert!(
        owner
            .metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    common::eventually(
        "non-blocking dependent deleted",
        Duration::from_secs(5),
        || async {
            api.get_opt("fg-dep2")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    let dep1 = api.get("fg-dep1").await.unwrap();
    assert!(dep1.metadata.deletion_timestamp.is_some());
    assert!(
        api.get_opt("fg").await.unwrap().is_some(),
        "owner waits for its blocking dependent"
    );

    api.patch(
        "fg-dep1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    common::eventually(
        "owner gone after dependents",
        Duration::from_secs(5),
        || async { api.get_opt("fg").await.unwrap().is_none().then_some(()) },
    )
    .await;
    s.sim.shutdown().await;
}

#[tokio::test]
async fn garbage_collection_orphan_keeps_dependents() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    owner_with_dependents(&api, "or", false).await;
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    api.delete("or", &dp).await.unwrap();
    common::eventually("owner gone", Duration::from_secs(5), || async {
        api.get_opt("or").await.unwrap().is_none().then_some(())
    })
    .await;
    for d in ["or-dep1", "or-dep2"] {
        let dep = api.get(d).await.unwrap();
        assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
        assert!(dep.metadata.deletion_timestamp.is_none());
    }
    s.sim.shutdown().await;
}

#[tokio::test]
async fn dry_run_leaves_nothing_behind() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let before = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let made = api.create(&pp, &cm("dry", &[("a", "b")])).await.unwrap();
    assert_eq!(made.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none());

    api.create(&PostParams::default(), &cm("real", &[("a", "b")]))
        .await
        .unwrap();
    let rv = api.get("real").await.unwrap().metadata.resource_version;
    let patched = api
        .patch(
            "real",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"a": "changed"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["a"], "changed");
    let applied = api
        .patch(
            "ghost",
            &PatchParams::apply("t").dry_run(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("ghost"));
    assert!(api.get_opt("ghost").await.unwrap().is_none());
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    api.delete("real", &dp).await.unwrap();
    let now = api.get("real").await.unwrap();
    assert_eq!(now.data.unwrap()["a"], "b");
    assert_eq!(now.metadata.resource_version, rv, "dry runs write nothing");
    let after = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_ne!(
        before, after,
        "only the real create moved the resourceVersion"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn pagination_and_selectors() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    for i in 0..25 {
        let mut c = cm(&format!("cm-{i:02}"), &[]);
        let env = ["dev", "prod", "sandbox"][i % 3];
        c.metadata.labels = Some(BTreeMap::from([("env".to_string(), env.to_string())]));
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    // 26 with the namespace's kube-root-ca.crt; remainingItemCount is only given without selectors.
    let first = api.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    let tok = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(16));
    // Pages are one snapshot: a write between pages does not show up.
    api.create(&PostParams::default(), &cm("zz-late", &[]))
        .await
        .unwrap();
    let mut names: Vec<String> = first
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    let mut cont = Some(tok);
    while let Some(c) = cont {
        let page = api
            .list(&ListParams::default().limit(10).continue_token(&c))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        cont = page.metadata.continue_.filter(|c| !c.is_empty());
    }
    assert_eq!(names.len(), 26);
    assert!(names.contains(&"kube-root-ca.crt".to_string()));
    assert!(!names.contains(&"zz-late".to_string()));

    let sel = api
        .list(&ours().labels("env in (dev,sandbox)"))
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 17);
    let neg = api.list(&ours().labels("env!=prod")).await.unwrap();
    assert_eq!(
        neg.items.len(),
        18,
        "!= matches objects without the label too"
    );
    let by_name = api
        .list(&ours().fields("metadata.name=cm-07"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let e = api_err(api.list(&ours().labels("env in (")).await.unwrap_err());
    assert_eq!(e.code, 400);
    s.sim.shutdown().await;
}

#[tokio::test]
async fn secrets_services_and_scale() {
    let s = common::start().await;
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), "default");
    let sec: Secret = serde_json::from_value(
        json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}),
    )
    .unwrap();
    let sec = secrets.create(&PostParams::default(), &sec).await.unwrap();
    assert_eq!(sec.type_.as_deref(), Some("Opaque"));
    assert_eq!(sec.data.unwrap()["password"].0, b"s3cret");
    assert!(sec.string_data.is_none());

    let svcs: Api<Service> = Api::namespaced(s.client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}], "selector": {"app": "db"}}})).unwrap();
    let svc = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let spec = svc.spec.unwrap();
    assert!(
        spec.cluster_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    assert_eq!(spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    let headless: Service = serde_json::from_value(json!({"metadata": {"name": "db-hl"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}})).unwrap();
    let headless = svcs
        .create(&PostParams::default(), &headless)
        .await
        .unwrap();
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));

    let deps: Api<Deployment> = Api::namespaced(s.client.clone(), "default");
    let d: Deployment = serde_json::from_value(deployment("sc", 1)).unwrap();
    deps.create(&PostParams::default(), &d).await.unwrap();
    let sc = deps.get_scale("sc").await.unwrap();
    assert_eq!(sc.spec.unwrap().replicas, Some(1));
    assert_eq!(sc.status.unwrap().selector.as_deref(), Some("app=sc"));
    deps.patch_scale(
        "sc",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    assert_eq!(deps.get("sc").await.unwrap().spec.replicas, Some(4));
    s.sim.shutdown().await;
}

#[tokio::test]
async fn delete_collection_by_label() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let mut c = cm(n, &[]);
        c.metadata.labels = Some(BTreeMap::from([("grp".to_string(), l.to_string())]));
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    let out = api
        .delete_collection(&DeleteParams::default(), &ours().labels("grp=x"))
        .await
        .unwrap();
    let deleted = out.left().expect("a list of deleted objects");
    assert_eq!(deleted.items.len(), 2);
    let left: Vec<_> = api
        .list(&ours())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, vec!["c"]);
    s.sim.shutdown().await;
}

#[tokio::test]
async fn discovery_legacy_and_aggregated() {
    let s = common::start().await;
    let v = s.client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    for aggregated in [false, true] {
        let d = kube::Discovery::new(s.client.clone());
        let d = if aggregated {
            d.run_aggregated().await.unwrap()
        } else {
            d.run().await.unwrap()
        };
        let apps = d.get("apps").expect("apps group");
        let (ar, caps) = apps
            .recommended_resources()
            .into_iter()
            .find(|(ar, _)| ar.plural == "statefulsets")
            .expect("statefulsets served");
        assert_eq!(ar.kind, "StatefulSet");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        assert!(
            caps.subresources
                .iter()
                .any(|(sr, _)| sr.plural == "statefulsets/status" || sr.plural == "status"),
            "{aggregated}: {:?}",
            caps.subresources
                .iter()
                .map(|x| x.0.plural.clone())
                .collect::<Vec<_>>()
        );
        assert!(d.get("").is_some(), "core group");
    }
    s.sim.shutdown().await;
}

/// One raw HTTP/1.1 exchange: status line code and body bytes, as any client would read them.
async fn raw_get(sim: &kubesim::KubeSim, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: kubesim\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

#[tokio::test]
async fn error_bodies_are_written_as_upstream_writes_them() {
    let s = common::start().await;
    // Field order of the Go struct, no "group" for the core group, and the encoder's trailing newline.
    assert_eq!(
        raw_get(&s.sim, "/api/v1/namespaces/default/pods/nope").await,
        (
            404,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"pods\"},\"code\":404}\n".to_string()
        )
    );
    assert_eq!(
        raw_get(&s.sim, "/apis/apps/v1/namespaces/default/deployments/web").await,
        (
            404,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"deployments.apps \\\"web\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"web\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":404}\n".to_string()
        )
    );
    let (code, body) = raw_get(&s.sim, "/api/v1/namespaces/default/configmaps").await;
    assert_eq!(code, 200);
    assert!(body.ends_with("]}"), "lists stream as before");
    let (_, one) = raw_get(&s.sim, "/api/v1/namespaces/default").await;
    assert!(one.ends_with("}\n"), "objects end with a newline: {one:?}");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn continue_tokens_expire_and_resume_inconsistently() {
    let s = common::start_with(kubesim::Options {
        continue_ttl: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    for i in 0..6 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}"), &[]))
            .await
            .unwrap();
    }
    let first = api.list(&ours().limit(2)).await.unwrap();
    let names = |l: &kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect()
    };
    assert_eq!(names(&first), ["cm-0", "cm-1"]);
    let tok = first.metadata.continue_.clone().unwrap();
    // Within the window the token pages on; after it, 410 with a token to resume from the current state.
    api.list(&ours().limit(2).continue_token(&tok))
        .await
        .expect("a fresh token works");
    let expired = common::eventually("the token expires", Duration::from_secs(5), || {
        let api = api.clone();
        let tok = tok.clone();
        async move {
            match api.list(&ours().limit(2).continue_token(&tok)).await {
                Err(kube::Error::Api(e)) if e.code == 410 => Some(e),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(expired.reason, "Expired");
    assert!(
        expired
            .message
            .starts_with("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response"),
        "{}",
        expired.message
    );
    let resume = expired
        .metadata
        .and_then(|m| m.continue_)
        .expect("the Status carries a continue token");
    // The inconsistent continuation sees a write made after the first page, and nothing twice.
    api.delete("cm-3", &Default::default()).await.unwrap();
    let rest = api
        .list(&ours().continue_token(&resume))
        .await
        .expect("the resume token lists the rest");
    assert_eq!(names(&rest), ["cm-2", "cm-4", "cm-5"]);
    s.sim.shutdown().await;
}

/// A pod deleted in the foreground by its owner is terminated gracefully: its `foregroundDeletion` finalizer
/// going (it has no dependents) must not remove it while its kubelet is still stopping it, as upstream's
/// ShouldDeleteDuringUpdate waits for the grace period to be over. The kubelet's final delete removes it.
#[tokio::test]
async fn a_pod_deleted_in_the_foreground_stays_terminating_until_its_kubelet_is_done() {
    let s = common::start_with(kubesim::Options {
        ready_delay: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "worker", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
                "name": "owner", "uid": owner.metadata.uid.clone().unwrap(), "blockOwnerDeletion": true}]},
            "spec": {"terminationGracePeriodSeconds": 30,
                "containers": [{"name": "c", "image": "busybox:1.36"}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    common::eventually("the pod running", Duration::from_secs(10), || async {
        let p = pods.get("worker").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let p = common::eventually("the pod terminating", Duration::from_secs(5), || async {
        let p = pods.get("worker").await.ok()?;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    // The garbage collector drops the pod's foregroundDeletion finalizer at once (it has no dependents). The pod
    // must still be there without it, terminating, until its kubelet (a compressed stop of ready_delay) is done;
    // a pod removed with its last finalizer never shows in this state.
    common::eventually(
        "the pod terminating without finalizers, not yet removed",
        Duration::from_secs(5),
        || async {
            let p = pods.get_opt("worker").await.unwrap()?;
            (p.metadata.deletion_timestamp.is_some()
                && p.metadata.finalizers.unwrap_or_default().is_empty())
            .then_some(())
        },
    )
    .await;
    assert!(
        cms.get_opt("owner").await.unwrap().is_some(),
        "the owner waits for it"
    );
    common::eventually("pod and owner gone", Duration::from_secs(10), || async {
        (pods.get_opt("worker").await.unwrap().is_none()
            && cms.get_opt("owner").await.unwrap().is_none())
        .then_some(())
    })
    .await;
    s.sim.shutdown().await;
}
