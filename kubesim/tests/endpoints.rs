//! Endpoints and EndpointSlices kept from Services' selectors and their pods, as upstream's controllers keep
//! them. kube-rs against kubesim over HTTP.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

fn fast() -> kubesim::Options {
    kubesim::Options {
        ready_delay: Duration::from_millis(50),
        ..Default::default()
    }
}

async fn endpoints_json(api: &Api<Endpoints>, name: &str) -> Option<Value> {
    api.get_opt(name)
        .await
        .ok()?
        .map(|e| serde_json::to_value(e).unwrap())
}

#[tokio::test]
async fn a_selecting_service_lists_its_ready_pods_with_resolved_ports() {
    let s = common::start_with(fast()).await;
    let deployments: Api<Deployment> = Api::default_namespaced(s.client.clone());
    deployments
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27", "ports": [{"name": "http", "containerPort": 8080}]}]}}}})),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::default_namespaced(s.client.clone());
    services
        .create(
            &PostParams::default(),
            &from(
                json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
            ),
        )
        .await
        .unwrap();
    let endpoints: Api<Endpoints> = Api::default_namespaced(s.client.clone());
    let ep = common::eventually("two ready addresses", Duration::from_secs(10), || async {
        let ep = endpoints_json(&endpoints, "web").await?;
        (ep["subsets"][0]["addresses"].as_array()?.len() == 2).then_some(ep)
    })
    .await;
    assert_eq!(
        ep["subsets"][0]["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let address = &ep["subsets"][0]["addresses"][0];
    assert_eq!(address["targetRef"]["kind"], "Pod");
    assert!(
        address["ip"].as_str().unwrap().starts_with("10."),
        "{address}"
    );

    let slices: Api<EndpointSlice> = Api::default_namespaced(s.client.clone());
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let slice = serde_json::to_value(&list.items[0]).unwrap();
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
    assert_eq!(
        slice["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");

    // A pod deleted leaves; an edit of the Endpoints by hand is undone.
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let victim = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    endpoints
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"subsets": null})),
        )
        .await
        .unwrap();
    common::eventually(
        "back to two addresses, without the deleted pod",
        Duration::from_secs(10),
        || async {
            let ep = endpoints_json(&endpoints, "web").await?;
            let names: Vec<String> = ep["subsets"][0]["addresses"]
                .as_array()?
                .iter()
                .map(|a| a["targetRef"]["name"].as_str().unwrap().to_string())
                .collect();
            (names.len() == 2 && !names.contains(&victim)).then_some(())
        },
    )
    .await;

    // The Service deleted: its Endpoints go, and its slice by owner reference.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(
        "endpoints and slice gone",
        Duration::from_secs(10),
        || async {
            let ep = endpoints.get_opt("web").await.ok()?;
            let left = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?
                .items
                .len();
            (ep.is_none() && left == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn headless_services_name_their_statefulset_pods_and_selectorless_ones_are_left_alone() {
    let s = common::start_with(fast()).await;
    let services: Api<Service> = Api::default_namespaced(s.client.clone());
    services
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "selector": {"app": "db"},
                "ports": [{"port": 5432}]}})),
        )
        .await
        .unwrap();
    let sets: Api<StatefulSet> = Api::default_namespaced(s.client.clone());
    sets.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}})),
    )
    .await
    .unwrap();
    let endpoints: Api<Endpoints> = Api::default_namespaced(s.client.clone());
    let ep = common::eventually(
        "the pod by its hostname",
        Duration::from_secs(10),
        || async {
            let ep = endpoints_json(&endpoints, "db").await?;
            ep["subsets"][0]["addresses"][0]["hostname"]
                .is_string()
                .then_some(ep)
        },
    )
    .await;
    assert_eq!(ep["subsets"][0]["addresses"][0]["hostname"], "db-0");
    assert_eq!(
        ep["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 5432);

    // A Service without a selector: the user's Endpoints stay as written.
    services
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "external"}, "spec": {"ports": [{"port": 443}]}})),
        )
        .await
        .unwrap();
    let mine = json!({"metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 443}]}]});
    endpoints
        .create(&PostParams::default(), &from(mine))
        .await
        .unwrap();
    // The controller handles events in order: once a Service made after them has its Endpoints, it has seen
    // the user's Endpoints too.
    services
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "marker"}, "spec": {"selector": {"app": "db"}, "ports": [{"port": 1}]}})),
        )
        .await
        .unwrap();
    common::eventually(
        "the marker's endpoints",
        Duration::from_secs(10),
        || async { endpoints_json(&endpoints, "marker").await.map(|_| ()) },
    )
    .await;
    let ep = endpoints_json(&endpoints, "external").await.unwrap();
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "192.0.2.10");
}
