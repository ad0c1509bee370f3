//! The response bodies.

use poem_openapi::Object;
use poem_openapi::types::Example;

use super::text::*;

// --- responses --------------------------------------------------------------------------------------------

/// 202 answer to a provision request.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", example)]
pub struct ProvisionAccepted {
    /// Always `accepted`.
    pub status: String,
    pub deployment_id: String,
    pub message: String,
}

impl Example for ProvisionAccepted {
    fn example() -> Self {
        ProvisionAccepted {
            status: "accepted".into(),
            deployment_id: "deploy-fc8fc917314e2b8b698427458cd35342".into(),
            message: "Provisioning request accepted for database/postgres-app-db".into(),
        }
    }
}

/// 202 answer to a deprovision request.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", example)]
pub struct DeprovisionAccepted {
    /// Always `accepted`.
    pub status: String,
    pub message: String,
}

impl Example for DeprovisionAccepted {
    fn example() -> Self {
        DeprovisionAccepted {
            status: "accepted".into(),
            message: "Deprovisioning request accepted for deployment deploy-fc8fc917314e2b8b698427458cd35342"
                .into(),
        }
    }
}

/// `GET /v1/status` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", example)]
pub struct DeploymentStatus {
    pub deployment_id: String,
    pub phase: Text<PhaseRule>,
    pub message: String,
    /// When the phase or message last changed (RFC 3339).
    pub last_updated: Text<DateTimeRule>,
}

impl Example for DeploymentStatus {
    fn example() -> Self {
        DeploymentStatus {
            deployment_id: "deploy-fc8fc917314e2b8b698427458cd35342".into(),
            phase: "Ready".into(),
            message: "Resource provisioned successfully".into(),
            last_updated: "2025-10-03T09:30:00Z".into(),
        }
    }
}

/// Engine, version and size.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct SpecSummary {
    pub engine: String,
    pub version: String,
    pub size: String,
}

/// What the deployment consumes right now.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ResourceUsage {
    #[oai(skip_serializing_if_is_none)]
    pub cpu_usage: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub memory_usage: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub storage_usage: Option<String>,
    pub replicas: u32,
    /// Why usage figures are missing (for example: the metrics API is not installed).
    #[oai(skip_serializing_if_is_none)]
    pub unavailable_reason: Option<String>,
}

/// The state of one managed resource. `actualSpec` is absent until the broker has observed the workload,
/// `resourceUsage` until the workload runs.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ResourceState {
    pub deployment_id: String,
    pub resource_type: String,
    pub resource_name: String,
    pub namespace: String,
    pub phase: Text<PhaseRule>,
    pub health_status: Text<HealthStatusRule>,
    pub message: String,
    /// When this answer was computed (RFC 3339).
    pub last_checked: Text<DateTimeRule>,
    #[oai(skip_serializing_if_is_none)]
    pub endpoint: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub port: Option<u16>,
    #[oai(skip_serializing_if_is_none)]
    pub connection_secret: Option<String>,
    // Absent until the broker has observed the workload. (No doc comment: a description beside the `$ref`
    // would wrap it in `allOf`, and generated clients would get a second copy of `SpecSummary`.)
    #[oai(skip_serializing_if_is_none)]
    pub actual_spec: Option<SpecSummary>,
    pub desired_spec: SpecSummary,
    pub drift_detected: bool,
    pub drift_details: Vec<String>,
    // Absent until the workload runs (no doc comment, as for `actual_spec`).
    #[oai(skip_serializing_if_is_none)]
    pub resource_usage: Option<ResourceUsage>,
    pub estimated_monthly_cost: f64,
}

/// `GET`/`POST /v1/resources` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ResourceList {
    pub resources: Vec<ResourceState>,
    pub total: u32,
    pub namespace: String,
}

/// `GET /health` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct Health {
    /// Always `healthy` while the process serves.
    pub status: String,
    pub version: String,
    /// The broker's clock (RFC 3339).
    pub time: Text<DateTimeRule>,
}

/// `GET /readiness` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub version: String,
    /// This replica's identity in the shard Leases.
    #[oai(skip_serializing_if_is_none)]
    pub replica: Option<String>,
    /// The shards (0–15, by namespace hash) whose deployments this replica runs now.
    #[oai(skip_serializing_if_is_none)]
    pub shards: Option<Vec<u32>>,
}
