//! Watches, kube-runtime watchers and reflectors, and CRDs, against kubesim over HTTP.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> WatchEvent<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5s")
        .expect("stream open")
        .expect("event parses")
}

fn describe(ev: &WatchEvent<ConfigMap>) -> String {
    match ev {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Bookmark(_) => "BOOKMARK".into(),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let a = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let rv = a.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    api.delete("b", &Default::default()).await.unwrap();

    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = vec![];
    let mut last_rv = 0u64;
    for _ in 0..3 {
        let ev = next_event(&mut stream).await;
        if let WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) = &ev {
            let r: u64 = o
                .metadata
                .resource_version
                .as_deref()
                .unwrap()
                .parse()
                .unwrap();
            assert!(r > last_rv, "resourceVersions increase along the stream");
            last_rv = r;
        }
        seen.push(describe(&ev));
    }
    assert_eq!(seen, vec!["ADDED b", "MODIFIED a", "DELETED b"]);

    // And the stream goes on with live changes.
    api.create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    assert_eq!(describe(&next_event(&mut stream).await), "ADDED c");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn label_selected_watch_sees_objects_enter_and_leave() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let mut stream = api
        .watch(&WatchParams::default().labels("app=db"), "0")
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("x", &[("app", "web")]))
        .await
        .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    assert_eq!(describe(&next_event(&mut stream).await), "ADDED x");
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    assert_eq!(describe(&next_event(&mut stream).await), "DELETED x");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn too_old_resource_version_is_an_in_stream_410() {
    let s = common::start_with(kubesim::Options {
        history: 20,
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let first = api
        .create(&PostParams::default(), &cm("old", &[]))
        .await
        .unwrap();
    for i in 0..40 {
        api.create(&PostParams::default(), &cm(&format!("n{i}"), &[]))
            .await
            .unwrap();
    }
    let rv = first.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message.starts_with("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected ERROR 410, got {}", describe(&other)),
    }
    assert!(
        stream.next().await.is_none(),
        "the server closes the stream after the error"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let s = common::start_with(kubesim::Options {
        history: 20,
        ..Default::default()
    })
    .await;
    let watched: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    watched
        .create(&PostParams::default(), &cm("w", &[]))
        .await
        .unwrap();
    // Without bookmarks the watcher's resourceVersion stays at its list; short server timeouts make it re-watch.
    let cfg = watcher::Config::default().disable_bookmarks().timeout(1);
    let mut events = watcher(watched.clone(), cfg).boxed();
    let mut inits = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
        {
            Some(Ok(watcher::Event::Init)) => inits += 1,
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("unexpected error before InitDone: {e}"),
            None => panic!("watcher ended"),
        }
    }
    assert_eq!(inits, 1);
    // Push the watcher's resourceVersion out of the server's history through writes it does not watch.
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(s.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
        )
        .await
        .unwrap();
    let other: Api<ConfigMap> = Api::namespaced(s.client.clone(), "other");
    for i in 0..40 {
        other
            .create(&PostParams::default(), &cm(&format!("o{i}"), &[]))
            .await
            .unwrap();
    }
    let mut saw_410 = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("a relist within 20s");
        match next {
            Some(Err(watcher::Error::WatchError(e))) if e.code == 410 => saw_410 = true,
            Some(Ok(watcher::Event::Init)) => {
                inits += 1;
                break;
            }
            Some(_) => {}
            None => panic!("watcher ended"),
        }
    }
    assert!(saw_410, "the watcher saw the in-stream 410");
    assert_eq!(inits, 2, "and relisted");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn reflectors_become_ready_with_list_watch_and_streaming_lists() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    // More than one page of the watcher's default page size (500).
    for i in 0..620 {
        api.create(
            &PostParams::default(),
            &cm(&format!("r{i:04}"), &[("set", "r")]),
        )
        .await
        .unwrap();
    }
    for cfg in [
        watcher::Config::default().labels("set=r"),
        watcher::Config::default().labels("set=r").streaming_lists(),
    ] {
        let (reader, writer) = reflector::store::<ConfigMap>();
        let stream = reflector(writer, watcher(api.clone(), cfg))
            .applied_objects()
            .try_for_each(|_| async { Ok(()) });
        let task = tokio::spawn(stream);
        tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready())
            .await
            .expect("ready within 10s")
            .unwrap();
        assert_eq!(reader.state().len(), 620);
        // The store follows live changes.
        api.create(&PostParams::default(), &cm("live", &[("set", "r")]))
            .await
            .unwrap();
        common::eventually("store sees the new object", Duration::from_secs(5), || {
            let n = reader.state().len();
            async move { (n == 621).then_some(()) }
        })
        .await;
        api.delete("live", &Default::default()).await.unwrap();
        common::eventually("store sees the delete", Duration::from_secs(5), || {
            let n = reader.state().len();
            async move { (n == 620).then_some(()) }
        })
        .await;
        task.abort();
    }
    s.sim.shutdown().await;
}

#[tokio::test]
async fn watch_list_metadata_only() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    api.create(&PostParams::default(), &cm("m", &[("k", "v")]))
        .await
        .unwrap();
    let list = api
        .list_metadata(&ListParams::default().labels("k=v"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.labels.as_ref().unwrap()["k"], "v");
    let got = api.get_metadata("m").await.unwrap();
    assert_eq!(got.types.unwrap().kind, "PartialObjectMetadata");
    s.sim.shutdown().await;
}

/// A custom resource like the broker's intent record.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "kidp.io",
    version = "v1alpha1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
#[kube(printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#)]
pub struct WidgetSpec {
    size: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    phase: String,
}

#[tokio::test]
async fn crd_is_served_with_its_status_subresource() {
    let s = common::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    crds.patch(
        "widgets.kidp.io",
        &PatchParams::apply("test"),
        &Patch::Apply(Widget::crd()),
    )
    .await
    .unwrap();
    let established = kube::runtime::wait::await_condition(
        crds.clone(),
        "widgets.kidp.io",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(5), established)
        .await
        .expect("established within 5s")
        .unwrap();

    let discovery = kube::Discovery::new(s.client.clone()).run().await.unwrap();
    assert!(
        discovery.get("kidp.io").is_some(),
        "the CRD's group is discoverable"
    );

    let widgets: Api<Widget> = Api::namespaced(s.client.clone(), "default");
    let w = Widget::new(
        "w1",
        WidgetSpec {
            size: "small".into(),
        },
    );
    let made = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(made.metadata.generation, Some(1));
    let st = widgets
        .patch_status(
            "w1",
            &PatchParams::apply("ctl"),
            &Patch::Apply(json!({"apiVersion": "kidp.io/v1alpha1", "kind": "Widget", "metadata": {"name": "w1"}, "status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().phase, "Ready");
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes leave generation alone"
    );
    let spec_write = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": "large"}, "status": {"phase": "Bogus"}})),
        )
        .await
        .unwrap();
    assert_eq!(spec_write.spec.size, "large");
    assert_eq!(spec_write.status.unwrap().phase, "Ready");
    assert_eq!(spec_write.metadata.generation, Some(2));

    // Deleting the CRD removes its instances, then the CRD.
    crds.delete("widgets.kidp.io", &Default::default())
        .await
        .unwrap();
    common::eventually("CRD gone", Duration::from_secs(5), || async {
        crds.get_opt("widgets.kidp.io")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let e = widgets.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 404));
    let _ = BTreeMap::<String, String>::new();
    s.sim.shutdown().await;
}
