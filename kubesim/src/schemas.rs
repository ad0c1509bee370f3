//! OpenAPI v3 schemas of the built-in kinds, for `/openapi/v3/...` documents that `kubectl explain` (and other
//! schema readers) can walk: upstream's schema names (`io.k8s.api.apps.v1.Deployment`), descriptions, types and
//! `$ref`s wrapped in `allOf` as upstream publishes them, and `x-kubernetes-group-version-kind` on each kind.
//!
//! The schemas come from k8s-openapi's `schemars` implementations (generated from upstream's own OpenAPI
//! document), so they follow the Kubernetes release k8s-openapi's `latest` feature names; kubesim writes none by
//! hand. Each group version's set is generated once and kept.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

/// Registers `T` in the generator and returns its schema name.
fn add<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
    g.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The schema name of a built-in kind, registering it (and everything it refers to) in `g`.
fn register(g: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
    Some(match (group, version, kind) {
        ("", "v1", "Namespace") => add::<api::core::v1::Namespace>(g),
        ("", "v1", "Node") => add::<api::core::v1::Node>(g),
        ("", "v1", "ConfigMap") => add::<api::core::v1::ConfigMap>(g),
        ("", "v1", "Secret") => add::<api::core::v1::Secret>(g),
        ("", "v1", "Service") => add::<api::core::v1::Service>(g),
        ("", "v1", "Endpoints") => add::<api::core::v1::Endpoints>(g),
        ("", "v1", "Pod") => add::<api::core::v1::Pod>(g),
        ("", "v1", "PersistentVolumeClaim") => add::<api::core::v1::PersistentVolumeClaim>(g),
        ("", "v1", "PersistentVolume") => add::<api::core::v1::PersistentVolume>(g),
        ("", "v1", "Event") => add::<api::core::v1::Event>(g),
        ("", "v1", "ServiceAccount") => add::<api::core::v1::ServiceAccount>(g),
        ("", "v1", "ResourceQuota") => add::<api::core::v1::ResourceQuota>(g),
        ("", "v1", "LimitRange") => add::<api::core::v1::LimitRange>(g),
        ("", "v1", "ReplicationController") => add::<api::core::v1::ReplicationController>(g),
        ("", "v1", "PodTemplate") => add::<api::core::v1::PodTemplate>(g),
        ("apps", "v1", "StatefulSet") => add::<api::apps::v1::StatefulSet>(g),
        ("apps", "v1", "Deployment") => add::<api::apps::v1::Deployment>(g),
        ("apps", "v1", "ReplicaSet") => add::<api::apps::v1::ReplicaSet>(g),
        ("apps", "v1", "DaemonSet") => add::<api::apps::v1::DaemonSet>(g),
        ("apps", "v1", "ControllerRevision") => add::<api::apps::v1::ControllerRevision>(g),
        ("batch", "v1", "Job") => add::<api::batch::v1::Job>(g),
        ("batch", "v1", "CronJob") => add::<api::batch::v1::CronJob>(g),
        ("policy", "v1", "PodDisruptionBudget") => add::<api::policy::v1::PodDisruptionBudget>(g),
        ("networking.k8s.io", "v1", "NetworkPolicy") => {
            add::<api::networking::v1::NetworkPolicy>(g)
        }
        ("networking.k8s.io", "v1", "Ingress") => add::<api::networking::v1::Ingress>(g),
        ("networking.k8s.io", "v1", "IngressClass") => add::<api::networking::v1::IngressClass>(g),
        ("coordination.k8s.io", "v1", "Lease") => add::<api::coordination::v1::Lease>(g),
        ("events.k8s.io", "v1", "Event") => add::<api::events::v1::Event>(g),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            add::<apiextensions::CustomResourceDefinition>(g)
        }
        ("storage.k8s.io", "v1", "StorageClass") => add::<api::storage::v1::StorageClass>(g),
        ("apiregistration.k8s.io", "v1", "APIService") => add::<apiregistration::APIService>(g),
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            add::<api::autoscaling::v2::HorizontalPodAutoscaler>(g)
        }
        ("discovery.k8s.io", "v1", "EndpointSlice") => add::<api::discovery::v1::EndpointSlice>(g),
        ("scheduling.k8s.io", "v1", "PriorityClass") => {
            add::<api::scheduling::v1::PriorityClass>(g)
        }
        ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => {
            add::<api::admissionregistration::v1::ValidatingWebhookConfiguration>(g)
        }
        ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => {
            add::<api::admissionregistration::v1::MutatingWebhookConfiguration>(g)
        }
        ("rbac.authorization.k8s.io", "v1", "Role") => add::<api::rbac::v1::Role>(g),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => add::<api::rbac::v1::RoleBinding>(g),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => add::<api::rbac::v1::ClusterRole>(g),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            add::<api::rbac::v1::ClusterRoleBinding>(g)
        }
        ("authentication.k8s.io", "v1", "TokenReview") => {
            add::<api::authentication::v1::TokenReview>(g)
        }
        ("authentication.k8s.io", "v1", "SelfSubjectReview") => {
            add::<api::authentication::v1::SelfSubjectReview>(g)
        }
        ("authorization.k8s.io", "v1", "SubjectAccessReview") => {
            add::<api::authorization::v1::SubjectAccessReview>(g)
        }
        ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => {
            add::<api::authorization::v1::LocalSubjectAccessReview>(g)
        }
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => {
            add::<api::authorization::v1::SelfSubjectAccessReview>(g)
        }
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => {
            add::<api::authorization::v1::SelfSubjectRulesReview>(g)
        }
        _ => return None,
    })
}

/// The `components.schemas` of one group version's built-in kinds (`kinds`), with
/// `x-kubernetes-group-version-kind` set on each kind's schema, and the names of the kinds that have one.
pub(crate) fn builtin_schemas(
    group: &str,
    version: &str,
    kinds: &[String],
) -> (Map<String, Value>, HashMap<String, String>) {
    type Cached = (Map<String, Value>, HashMap<String, String>);
    type Key = (String, String, Vec<String>);
    static CACHE: OnceLock<Mutex<HashMap<Key, Cached>>> = OnceLock::new();
    let key = (group.to_string(), version.to_string(), kinds.to_vec());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return hit.clone();
    }
    let mut g = SchemaSettings::openapi3()
        .with(|s| s.meta_schema = None)
        .into_generator();
    let mut names = HashMap::new();
    for kind in kinds {
        if let Some(name) = register(&mut g, group, version, kind) {
            names.insert(kind.clone(), name);
        }
    }
    let mut schemas: Map<String, Value> = g.take_definitions(true);
    for (kind, name) in &names {
        if let Some(s) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            s.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "kind": kind, "version": version}]),
            );
        }
    }
    let out = (schemas, names);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, out.clone());
    out
}
