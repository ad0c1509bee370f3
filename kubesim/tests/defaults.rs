//! What a real cluster has without being asked: the `default` ServiceAccount and `kube-root-ca.crt` in every
//! namespace, the `default/kubernetes` Service, the zero-valued status fields of new workloads, and the
//! built-in kinds clients expect to find. kube-rs against kubesim over HTTP.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

async fn both_present(s: &common::Sim, ns: &str) -> Option<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(s.client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), ns);
    let sa = sas.get_opt("default").await.ok()??;
    let cm = cms.get_opt("kube-root-ca.crt").await.ok()??;
    let ca = cm.data.as_ref()?.get("ca.crt")?;
    (ca.starts_with("-----BEGIN CERTIFICATE-----") && sa.metadata.uid.is_some()).then_some(())
}

#[tokio::test]
async fn every_namespace_gets_its_default_service_account_and_root_ca() {
    let s = common::start().await;
    // The namespaces kubesim starts with, and a new one.
    for ns in ["default", "kube-system", "kube-public"] {
        common::eventually(ns, Duration::from_secs(5), || both_present(&s, ns)).await;
    }
    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "team-a"}})),
        )
        .await
        .unwrap();
    common::eventually("team-a", Duration::from_secs(5), || {
        both_present(&s, "team-a")
    })
    .await;

    // Deleted, they come back, as upstream's controllers put them back.
    let sas: Api<ServiceAccount> = Api::namespaced(s.client.clone(), "team-a");
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "team-a");
    let old_uid = sas.get("default").await.unwrap().metadata.uid;
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    cms.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually("recreated", Duration::from_secs(5), || async {
        let sa = sas.get_opt("default").await.ok()??;
        (sa.metadata.uid != old_uid).then_some(())
    })
    .await;
    common::eventually("root CA back", Duration::from_secs(5), || {
        both_present(&s, "team-a")
    })
    .await;

    // An edited bundle is put back.
    cms.patch(
        "kube-root-ca.crt",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"data": {"ca.crt": "tampered"}})),
    )
    .await
    .unwrap();
    common::eventually("bundle restored", Duration::from_secs(5), || {
        both_present(&s, "team-a")
    })
    .await;
}

#[tokio::test]
async fn the_api_server_has_its_service_and_workloads_start_with_zero_status() {
    let s = common::start().await;
    let services: Api<Service> = Api::namespaced(s.client.clone(), "default");
    let k = services.get("kubernetes").await.unwrap();
    let spec = k.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    assert_eq!(spec.ports.unwrap()[0].port, 443);
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(s.client.clone(), "default");
    let ep = serde_json::to_value(endpoints.get("kubernetes").await.unwrap()).unwrap();
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 6443);

    let template = json!({"metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    let selector = json!({"matchLabels": {"app": "x"}});
    // Zero replicas, so that no controller writes status before the create's answer is read.
    let sts: Api<StatefulSet> = Api::default_namespaced(s.client.clone());
    let created = sts
        .create(
            &PostParams::default(),
            &from(
                json!({"metadata": {"name": "x"}, "spec": {"replicas": 0, "serviceName": "x",
                "selector": selector, "template": template}}),
            ),
        )
        .await
        .unwrap();
    let st = created.status.unwrap();
    assert_eq!((st.replicas, st.available_replicas), (0, Some(0)));
    let rss: Api<ReplicaSet> = Api::default_namespaced(s.client.clone());
    let created = rss
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "x"}, "spec": {"replicas": 0, "selector": selector, "template": template}})),
        )
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().replicas, 0);
    let dss: Api<DaemonSet> = Api::default_namespaced(s.client.clone());
    let created = dss
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "x"}, "spec": {"selector": selector, "template": template}})),
        )
        .await
        .unwrap();
    let st = created.status.unwrap();
    assert_eq!(
        (st.number_misscheduled, st.desired_number_scheduled),
        (0, 0)
    );
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(s.client.clone());
    let created = pdbs
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "x"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "none"}}}})),
        )
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().disruptions_allowed, Some(0));
}

#[tokio::test]
async fn the_other_built_in_kinds_are_served() {
    let s = common::start().await;
    let kinds: &[(&str, &str, &str, &str, bool, Value)] = &[
        (
            "",
            "v1",
            "replicationcontrollers",
            "ReplicationController",
            true,
            json!({"spec": {"replicas": 0, "selector": {"app": "rc"}, "template": {"metadata": {"labels": {"app": "rc"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}}),
        ),
        (
            "",
            "v1",
            "podtemplates",
            "PodTemplate",
            true,
            json!({"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}),
        ),
        (
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            "APIService",
            false,
            json!({"spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15}}),
        ),
        (
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            true,
            json!({"spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}}),
        ),
        (
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "IngressClass",
            false,
            json!({"spec": {"controller": "example.com/ingress"}}),
        ),
        (
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3}}),
        ),
        (
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            json!({"addressType": "IPv4", "endpoints": []}),
        ),
        (
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            false,
            json!({"value": 1000}),
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            json!({}),
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            json!({}),
        ),
    ];
    for (group, version, plural, kind, namespaced, body) in kinds {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let ar = ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version: api_version.clone(),
            kind: kind.to_string(),
            plural: plural.to_string(),
        };
        let api: Api<DynamicObject> = if *namespaced {
            Api::namespaced_with(s.client.clone(), "default", &ar)
        } else {
            Api::all_with(s.client.clone(), &ar)
        };
        let mut obj = body.clone();
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        obj["metadata"] = json!({"name": "sample"});
        let created = api
            .create(&PostParams::default(), &from(obj))
            .await
            .unwrap_or_else(|e| panic!("{plural}: {e}"));
        assert_eq!(created.types.unwrap().kind, *kind);
        assert_eq!(
            api.list(&Default::default()).await.unwrap().items.len(),
            1,
            "{plural}"
        );
    }
    // And discovery lists them, so kubectl finds them by name.
    let discovery = kube::Discovery::new(s.client.clone()).run().await.unwrap();
    for group in [
        "apiregistration.k8s.io",
        "networking.k8s.io",
        "autoscaling",
        "discovery.k8s.io",
        "scheduling.k8s.io",
        "admissionregistration.k8s.io",
    ] {
        assert!(discovery.get(group).is_some(), "{group}");
    }
}

#[tokio::test]
async fn generation_job_selectors_node_ports_and_scale_managed_fields() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::{Patch, PatchParams};
    let s = common::start().await;
    let ns = "default";

    // metadata.generation only where upstream's strategy keeps one.
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), ns);
    let cm = cms
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "plain"}, "data": {"a": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        cm.metadata.generation, None,
        "ConfigMaps have no generation"
    );
    let cm = cms
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(cm.metadata.generation, None);
    let deps: Api<Deployment> = Api::namespaced(s.client.clone(), ns);
    let dep = deps
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "web"}, "spec": {"replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})),
        )
        .await
        .unwrap();
    assert_eq!(dep.metadata.generation, Some(1));

    // Writes through /scale are recorded with subresource: scale.
    let scaled = deps
        .patch_scale(
            "web",
            &PatchParams::apply("autoscaler"),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(3));
    let dep = deps.get("web").await.unwrap();
    let entry = dep
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("autoscaler"))
        .expect("the scaler's entry");
    assert_eq!(entry.subresource.as_deref(), Some("scale"));
    assert_eq!(entry.operation.as_deref(), Some("Update"));
    assert_eq!(
        entry.fields_v1.unwrap().0,
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert_eq!(dep.metadata.generation, Some(2));

    // A Job gets its selector and template labels from its uid.
    let jobs: Api<Job> = Api::namespaced(s.client.clone(), ns);
    let job = jobs
        .create(
            &PostParams::default(),
            &from(
                json!({"metadata": {"name": "once"}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
            ),
        )
        .await
        .unwrap();
    let uid = job.metadata.uid.clone().unwrap();
    let spec = job.spec.unwrap();
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap(),
        std::collections::BTreeMap::from([(
            "batch.kubernetes.io/controller-uid".to_string(),
            uid.clone()
        )])
    );
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
        ("controller-uid", uid.as_str()),
        ("batch.kubernetes.io/job-name", "once"),
        ("job-name", "once"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
    }

    // NodePort Services get a node port in range; a taken, out-of-range or misplaced one is refused.
    let svcs: Api<Service> = Api::namespaced(s.client.clone(), ns);
    let svc = svcs
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort",
                "selector": {"app": "web"}, "ports": [{"port": 80}, {"name": "b", "port": 81, "nodePort": 31000}]}})),
        )
        .await
        .unwrap();
    let ports = svc.spec.unwrap().ports.unwrap();
    let first = ports[0].node_port.expect("a node port was allocated");
    assert!((30000..=32767).contains(&first), "{first}");
    assert_eq!(ports[1].node_port, Some(31000));
    let refused = |body: Value| {
        let svcs = svcs.clone();
        async move {
            match svcs.create(&PostParams::default(), &from(body)).await {
                Err(kube::Error::Api(e)) => (e.code, e.message),
                other => panic!("expected a 422, got {other:?}"),
            }
        }
    };
    assert_eq!(
        refused(json!({"metadata": {"name": "taken"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 31000}]}}))
        .await,
        (422, "Service \"taken\" is invalid: spec.ports[0].nodePort: Invalid value: 31000: provided port is already allocated".to_string())
    );
    assert_eq!(
        refused(json!({"metadata": {"name": "low"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 80}]}}))
        .await,
        (422, "Service \"low\" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767".to_string())
    );
    assert_eq!(
        refused(
            json!({"metadata": {"name": "cip"}, "spec": {"type": "ClusterIP",
            "ports": [{"port": 80, "nodePort": 30500}]}})
        )
        .await
        .0,
        422
    );
    // An update keeps the allocated port.
    let again = svcs
        .patch(
            "np",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(again.spec.unwrap().ports.unwrap()[0].node_port, Some(first));
    s.sim.shutdown().await;
}
