//! The intent record: the `ManagedResource` custom resource (`kidp.io/v1alpha1`) that holds every accepted request.
//!
//! It is written before the broker answers 202, so the cluster, not the broker's memory, is the source of truth.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that keeps a record until the broker has told the manager it is Deleted.
pub const FINALIZER: &str = "kidp.io/deprovision";

/// Labels put on the record and on every child object.
pub mod labels {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "kidp-broker";
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const DEPLOYMENT_ID: &str = "kidp.io/deployment-id";
    pub const RESOURCE_TYPE: &str = "kidp.io/resource-type";
    pub const TEAM: &str = "kidp.io/team";
}

/// What the manager asked for, as accepted.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kidp.io",
    version = "v1alpha1",
    kind = "ManagedResource",
    namespaced,
    status = "ManagedResourceStatus",
    shortname = "mres",
    category = "kidp",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.resourceType"}"#,
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.spec.engine"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Deployment","type":"string","priority":1,"jsonPath":".spec.deploymentId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedResourceSpec {
    /// `deploy-` + 32 hex characters; stable for the life of the record.
    pub deployment_id: String,
    pub resource_type: String,
    pub resource_name: String,
    pub team: String,
    pub owner: String,
    pub callback_url: String,
    /// The desired spec exactly as accepted (engine, version, size, highAvailability, backup, encryption).
    #[schemars(schema_with = "open_object")]
    pub spec: serde_json::Value,
    /// Set when deprovisioning was requested; the record is then deleted by the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprovision: Option<DeprovisionRequest>,
}

/// A deprovision request, persisted before it is acknowledged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeprovisionRequest {
    pub requested_at: String,
    /// Where the Deleting/Deleted callbacks go; the provision callback URL when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// What the broker observed and told the manager.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedResourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last phase the manager acknowledged (a 2xx to its callback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notified_phase: Option<String>,
}

fn open_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    serde_json::from_value(serde_json::json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    }))
    .expect("static schema")
}

/// The record's object name: unique per namespace, resource type and resource name.
pub fn record_name(resource_type: &str, resource_name: &str) -> String {
    format!("{resource_name}.{resource_type}")
}

/// The labels every object of one deployment carries.
pub fn common_labels(
    deployment_id: &str,
    resource_type: &str,
    resource_name: &str,
    engine: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::NAME.to_string(), engine.to_string()),
        (labels::INSTANCE.to_string(), resource_name.to_string()),
        (labels::DEPLOYMENT_ID.to_string(), deployment_id.to_string()),
        (labels::RESOURCE_TYPE.to_string(), resource_type.to_string()),
    ])
}

/// The CRD as YAML, for `kidp-broker crd | kubectl apply --server-side -f -`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&ManagedResource::crd()).expect("CRD serializes")
}
