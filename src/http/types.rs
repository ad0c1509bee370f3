//! The wire types of the REST API, exactly as `broker-api.md` shows them. Request types here only document the
//! bodies (parsing and validation live in the domain); response types are what handlers return.

use poem_openapi::types::Example;
use poem_openapi::{Enum, Object};

/// Kinds of resource; only `database` is provisioned today.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum ResourceTypeDoc {
    Database,
    Cache,
    Topic,
}

/// Database engines.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum EngineDoc {
    Postgresql,
    Mysql,
    Mongodb,
    Redis,
}

/// Sizes: small 1 CPU/2Gi, medium 2 CPU/4Gi, large 4 CPU/8Gi, xlarge 8 CPU/16Gi.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum SizeDoc {
    Small,
    Medium,
    Large,
    Xlarge,
}

/// Backup settings.
#[derive(Object, Debug, Clone)]
#[oai(rename = "BackupSpec", rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupDoc {
    pub enabled: bool,
    /// A duration such as `7d` or `36h` (default `7d`).
    #[oai(skip_serializing_if_is_none)]
    pub retention: Option<String>,
    /// A 5-field cron expression (default `0 2 * * *`).
    #[oai(skip_serializing_if_is_none)]
    pub schedule: Option<String>,
}

/// Encryption settings.
#[derive(Object, Debug, Clone)]
#[oai(
    rename = "EncryptionSpec",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct EncryptionDoc {
    /// Volumes on an encrypting StorageClass (the broker must be configured with one).
    #[oai(skip_serializing_if_is_none)]
    pub at_rest: Option<bool>,
    /// TLS between clients and the database.
    #[oai(skip_serializing_if_is_none)]
    pub in_transit: Option<bool>,
}

/// What to provision.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ResourceSpec", rename_all = "camelCase", deny_unknown_fields)]
pub struct SpecDoc {
    pub engine: EngineDoc,
    /// One of the engine's supported versions: postgresql 12–16, mysql 5.7/8.0/8.4, mongodb 5.0/6.0/7.0,
    /// redis 6.2/7.0/7.2.
    pub version: String,
    pub size: SizeDoc,
    #[oai(skip_serializing_if_is_none)]
    pub high_availability: Option<bool>,
    #[oai(skip_serializing_if_is_none)]
    pub backup: Option<BackupDoc>,
    #[oai(skip_serializing_if_is_none)]
    pub encryption: Option<EncryptionDoc>,
}

/// `POST /v1/provision` body.
#[derive(Object, Debug, Clone)]
#[oai(
    rename = "ProvisionRequest",
    rename_all = "camelCase",
    deny_unknown_fields,
    example
)]
pub struct ProvisionRequestDoc {
    pub resource_type: ResourceTypeDoc,
    /// Lowercase RFC 1035 label (starts with a letter), at most 40 characters.
    pub resource_name: String,
    /// Kubernetes namespace (RFC 1123 label).
    pub namespace: String,
    pub team: String,
    /// An email address.
    pub owner: String,
    /// Absolute http(s) URL that receives phase callbacks.
    pub callback_url: String,
    pub spec: SpecDoc,
}

impl Example for ProvisionRequestDoc {
    fn example() -> Self {
        ProvisionRequestDoc {
            resource_type: ResourceTypeDoc::Database,
            resource_name: "postgres-app-db".into(),
            namespace: "team-platform".into(),
            team: "platform-team".into(),
            owner: "user@example.com".into(),
            callback_url: "http://manager:9090/v1/callback".into(),
            spec: SpecDoc {
                engine: EngineDoc::Postgresql,
                version: "15".into(),
                size: SizeDoc::Medium,
                high_availability: Some(true),
                backup: Some(BackupDoc {
                    enabled: true,
                    retention: Some("7d".into()),
                    schedule: None,
                }),
                encryption: Some(EncryptionDoc {
                    at_rest: Some(true),
                    in_transit: Some(true),
                }),
            },
        }
    }
}

/// `POST /v1/deprovision` body.
#[derive(Object, Debug, Clone)]
#[oai(
    rename = "DeprovisionRequest",
    rename_all = "camelCase",
    deny_unknown_fields,
    example
)]
pub struct DeprovisionRequestDoc {
    /// `deploy-` followed by 32 lowercase hex characters.
    pub deployment_id: String,
    pub resource_type: ResourceTypeDoc,
    pub resource_name: String,
    pub namespace: String,
    /// Where the Deleting/Deleted callbacks go; the provision callback URL when absent.
    #[oai(skip_serializing_if_is_none)]
    pub callback_url: Option<String>,
}

impl Example for DeprovisionRequestDoc {
    fn example() -> Self {
        DeprovisionRequestDoc {
            deployment_id: "deploy-fc8fc917314e2b8b698427458cd35342".into(),
            resource_type: ResourceTypeDoc::Database,
            resource_name: "postgres-app-db".into(),
            namespace: "team-platform".into(),
            callback_url: Some("http://manager:9090/v1/callback".into()),
        }
    }
}

/// `POST /v1/resources` body.
#[derive(Object, Debug, Clone)]
#[oai(
    rename = "ResourcesQuery",
    rename_all = "camelCase",
    deny_unknown_fields,
    example
)]
pub struct ResourcesQueryDoc {
    pub namespace: String,
    #[oai(skip_serializing_if_is_none)]
    pub resource_type: Option<ResourceTypeDoc>,
    #[oai(skip_serializing_if_is_none)]
    pub resource_name: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub deployment_id: Option<String>,
}

impl Example for ResourcesQueryDoc {
    fn example() -> Self {
        ResourcesQueryDoc {
            namespace: "team-platform".into(),
            resource_type: Some(ResourceTypeDoc::Database),
            resource_name: Some("postgres-app-db".into()),
            deployment_id: None,
        }
    }
}

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
    /// Provisioning, Ready, Failed, Deleting or Deleted.
    pub phase: String,
    pub message: String,
    /// RFC 3339.
    pub last_updated: String,
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

/// The state of one managed resource.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ResourceState {
    pub deployment_id: String,
    pub resource_type: String,
    pub resource_name: String,
    pub namespace: String,
    pub phase: String,
    /// Healthy, Degraded or Unknown.
    pub health_status: String,
    pub message: String,
    pub last_checked: String,
    #[oai(skip_serializing_if_is_none)]
    pub endpoint: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub port: Option<u16>,
    #[oai(skip_serializing_if_is_none)]
    pub connection_secret: Option<String>,
    /// What is observed running; null until the broker has observed the workload.
    #[oai(skip_serializing_if_is_none)]
    pub actual_spec: Option<SpecSummary>,
    pub desired_spec: SpecSummary,
    pub drift_detected: bool,
    pub drift_details: Vec<String>,
    /// null until the workload runs.
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
    pub time: String,
}

/// `GET /readiness` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub version: String,
}
