//! The use cases between the REST surface and the cluster: accepting a provision, accepting a deprovision, and
//! the views of what runs (`/v1/status`, `/v1/resources`). Business rules live here — idempotency, the
//! create race, who owns a deployment id, how phase, health, drift, usage and cost are assembled — so the HTTP
//! handlers only parse, call one function and map the answer. Authorization and quotas belong here too.
//!
//! Never touches HTTP framework types; answers in domain terms ([`Refusal`], [`ResourceView`]).

mod accept;
mod authorize;
mod quota;
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
    /// Refuse provisions whose team has no `Team` resource (otherwise such teams are unlimited).
    pub require_team: bool,
    /// One quota decision per team at a time, so that two concurrent requests cannot both squeeze under a limit.
    pub team_locks: TeamLocks,
    /// This replica's part in sharing the work (readiness reports it).
    pub coordination: Arc<crate::actors::shards::Coordination>,
}

/// A lock per team name.
#[derive(Default)]
pub struct TeamLocks {
    locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl TeamLocks {
    /// Waits for the team's turn.
    pub async fn lock(&self, team: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(team.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
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
    /// The subject may not do this here, nobody may, or the team's Team does not allow it (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// It clashes with what exists (409).
    #[error("{0}")]
    Conflict(String),
    /// Over the team's limits (403 `quota_exceeded`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The broker cannot answer yet (503): its caches have not synced.
    #[error("{0}")]
    NotReady(String),
    /// The cluster failed (503 for outages; the HTTP layer decides what text is safe).
    #[error(transparent)]
    Cluster(#[from] K8sError),
}
