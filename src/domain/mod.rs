//! The broker's shared vocabulary: resource types, engines and their catalogue, sizes, deployment ids,
//! phases, validated requests, drift and cost.
//!
//! Everything here is pure: no I/O of any kind (no network, no files, no clock, no Kubernetes, no HTTP
//! framework types), so each rule is unit-tested on its own and every other layer shares one definition of
//! what a request means. The only impurity is [`DeploymentId::generate`], which draws random bits.

mod callback_url;
mod catalogue;
mod cost;
mod cron;
mod drift;
mod formats;
pub mod glob;
mod id;
mod phase;
mod quota;
mod request;

pub use callback_url::{CallbackTarget, CallbackUrlPolicy};
pub use catalogue::{
    Engine, EngineInfo, ResourceType, Size, SizeSpec, UnknownName, VersionInfo, cpu_quantity,
    engine_info, memory_quantity,
};
pub use cost::{
    Footprint, PriceTable, actual_footprint, backup_gib_estimate, desired_footprint, monthly_cost,
};
pub use cron::{CronSchedule, DEFAULT_BACKUP_SCHEDULE};
pub use drift::{
    ActualSpec, drift, parse_cpu_millis, parse_memory_mib, size_from_resources, version_from_image,
};
pub use formats::{
    HttpUrl, UrlError, is_dns1035_label, is_dns1123_label, is_email, is_label_value,
};
pub use id::{DeploymentId, InvalidDeploymentId};
pub use phase::{Health, Phase};
pub use quota::{QuotaRefusal, TeamLimits, TeamPolicy, TeamUsage, admit};
pub use request::{
    BACKUP_FIELDS, Backup, DEFAULT_BACKUP_RETENTION, DEPROVISION_FIELDS, DeprovisionRequest,
    DesiredSpec, ENCRYPTION_FIELDS, Encryption, HA_REPLICAS, MAX_CALLBACK_URL_LEN,
    MAX_NAMESPACE_LEN, MAX_RESOURCE_NAME_LEN, MAX_RETENTION_HOURS, PROVISION_FIELDS,
    ProvisionRequest, QUERY_FIELDS, ResourcesQuery, RetentionError, RetentionPeriod, SPEC_FIELDS,
    ValidationError, eol_warning, parse_deprovision, parse_provision, parse_resources_query,
    parse_resources_query_body, parse_status_id,
};
