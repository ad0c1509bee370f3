//! The intent record: the `ManagedResource` custom resource (`kidp.io/v1alpha1`) that holds every accepted request.
//!
//! It is written before the broker answers 202, so the cluster, not the broker's memory, is the source of truth.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{DesiredSpec, Health, Phase};

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
    pub spec: StoredSpec,
    /// Set when deprovisioning was requested; the record is then deleted by the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprovision: Option<DeprovisionRequest>,
}

/// The stored desired spec: what the broker wrote, or, for a record written by hand that does not parse,
/// the raw value, so that one bad record is reported as Failed instead of stalling the watch of all records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum StoredSpec {
    /// A spec the broker can read.
    Readable(DesiredSpec),
    /// Anything else.
    Unreadable(serde_json::Value),
}

impl StoredSpec {
    /// The desired spec, when it can be read.
    pub fn desired(&self) -> Option<&DesiredSpec> {
        match self {
            StoredSpec::Readable(d) => Some(d),
            StoredSpec::Unreadable(_) => None,
        }
    }
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
    /// Provisioning, Ready, Failed, Deleting or Deleted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    #[schemars(schema_with = "phase_schema")]
    pub phase: Option<Phase>,
    /// Healthy, Degraded or Unknown.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    #[schemars(schema_with = "health_schema")]
    pub health: Option<Health>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
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
    /// The last phase whose callback is done with (acknowledged, refused by the receiver, or abandoned).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    #[schemars(schema_with = "phase_schema")]
    pub last_notified_phase: Option<Phase>,
}

/// An unknown value (a status edited by hand, a newer broker's phase) reads as absent: one odd record must
/// not stall the record watch.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
{
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.parse().ok()))
}

fn enum_schema(values: Vec<&'static str>) -> schemars::Schema {
    serde_json::from_value(serde_json::json!({"type": "string", "enum": values}))
        .expect("static schema")
}

fn phase_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    enum_schema(Phase::ALL.iter().map(|p| p.as_str()).collect())
}

fn health_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    enum_schema(Health::ALL.iter().map(|h| h.as_str()).collect())
}

fn open_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    serde_json::from_value(serde_json::json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    }))
    .expect("static schema")
}

/// The phase a record reports: its status, or before the lifecycle wrote one, Deleting when deprovisioning
/// was asked for and Provisioning otherwise.
pub fn phase_of(rec: &ManagedResource) -> Phase {
    match rec.status.as_ref().and_then(|s| s.phase) {
        Some(p) => p,
        None if is_deprovisioning(rec) => Phase::Deleting,
        None => Phase::Provisioning,
    }
}

/// Whether deprovisioning was asked for (by the API) or the record is being deleted (by anyone).
pub fn is_deprovisioning(rec: &ManagedResource) -> bool {
    rec.spec.deprovision.is_some() || rec.metadata.deletion_timestamp.is_some()
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

/// Both CRDs (ManagedResource, Team) as one YAML stream, for `kidp-broker crd | kubectl apply --server-side -f -`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let record = serde_yaml::to_string(&ManagedResource::crd()).expect("CRD serializes");
    let team = serde_yaml::to_string(&super::team::Team::crd()).expect("CRD serializes");
    format!("{record}---\n{team}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_status_values_read_as_absent_and_odd_specs_as_unreadable() {
        let rec: ManagedResource = serde_json::from_value(serde_json::json!({
            "apiVersion": "kidp.io/v1alpha1", "kind": "ManagedResource",
            "metadata": {"name": "a.database", "namespace": "n"},
            "spec": {"deploymentId": "deploy-00000000000000000000000000000000", "resourceType": "database",
                     "resourceName": "a", "team": "t", "owner": "o@x", "callbackUrl": "http://m/cb",
                     "spec": {"engine": "oracle"}},
            "status": {"phase": "Sleeping", "health": 7, "lastNotifiedPhase": "Ready"}
        }))
        .unwrap();
        let st = rec.status.unwrap();
        assert_eq!(st.phase, None);
        assert_eq!(st.health, None);
        assert_eq!(st.last_notified_phase, Some(Phase::Ready));
        assert!(rec.spec.spec.desired().is_none());
    }

    #[test]
    fn status_round_trips_typed() {
        let st = ManagedResourceStatus {
            phase: Some(Phase::Deleting),
            health: Some(Health::Unknown),
            last_notified_phase: Some(Phase::Ready),
            ..Default::default()
        };
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["phase"], "Deleting");
        assert_eq!(
            serde_json::from_value::<ManagedResourceStatus>(v).unwrap(),
            st
        );
        let crd = crd_yaml();
        assert!(
            crd.contains("- Provisioning") && crd.contains("- Degraded"),
            "{crd}"
        );
    }
}
