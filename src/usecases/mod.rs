//! The use cases between the REST surface and the cluster: accepting a provision, accepting a deprovision, and
//! the views of what runs (`/v1/status`, `/v1/resources`). Business rules live here — idempotency, the
//! create race, who owns a deployment id, how phase, health, drift, usage and cost are assembled — so the HTTP
//! handlers only parse, call one function and map the answer. Authorization and quotas belong here too.
//!
//! Never touches HTTP framework types; answers in domain terms ([`Refusal`], [`ResourceView`]).

mod accept;
mod authorize;
mod views;

use std::sync::Arc;

use crate::auth::Access;
use crate::domain::{CallbackUrlPolicy, PriceTable};
use crate::k8s::usage::UsageCache;
use crate::k8s::{Cluster, K8sError};

pub use self::views::{ResourceView, SpecView};

/// What the use cases work with.
pub struct Broker {
    pub cluster: Arc<Cluster>,
    /// The StorageClass used for `encryption.atRest`; `None` refuses such requests.
    pub encrypted_storage_class: Option<String>,
    /// Where callbacks may go (checked at accept time).
    pub callbacks: CallbackUrlPolicy,
    /// The price table for cost estimates.
    pub prices: PriceTable,
    /// Pod usage from the metrics API.
    pub usage: Arc<UsageCache>,
    /// Authentication and the namespace policy.
    pub access: Arc<Access>,
}

/// Why a use case said no.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request cannot be served as asked (400).
    #[error("{0}")]
    Invalid(String),
    /// No such deployment (404).
    #[error("{0}")]
    NotFound(String),
    /// The subject may not do this here, or nobody may (403).
    #[error("{0}")]
    Forbidden(String),
    /// It clashes with what exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The broker cannot answer yet (503): its caches have not synced.
    #[error("{0}")]
    NotReady(String),
    /// The cluster failed (503 for outages; the HTTP layer decides what text is safe).
    #[error(transparent)]
    Cluster(#[from] K8sError),
}
