//! The deployment lifecycle as actors (ractor): a supervisor that owns the registry of deployments and the
//! namespace throttle, and one long-lived actor per deployment that owns its state machine, its writes and its
//! ordered callbacks. Actors never await the network in a handler: Kubernetes calls and callbacks run as tasks
//! that report back by message.
//!
//! Never touches HTTP framework types.

pub mod callback;
pub mod deployment;
pub mod lifecycle;
pub mod shards;
pub mod supervisor;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::{DeploymentId, PriceTable};
use crate::k8s::Cluster;
use crate::k8s::observe::Observed;

pub use self::callback::CallbackPolicy;
pub use self::lifecycle::Settings as LifecycleSettings;
pub use self::supervisor::SupervisorMsg;

/// Settings and shared handles every actor needs.
pub struct Lifecycle {
    pub cluster: Arc<Cluster>,
    pub http: reqwest::Client,
    /// The callback client's resolver, which pins the addresses a delivery checked.
    pub resolver: Arc<callback::CheckedResolver>,
    pub callbacks: CallbackPolicy,
    /// Timeouts, grace periods, retries and the callback delivery lifetime.
    pub timing: lifecycle::Settings,
    /// Deployments provisioning at once per namespace.
    pub namespace_concurrency: usize,
    /// How workloads are rendered (image registry, cluster domain, encrypting StorageClass).
    pub workload: crate::k8s::workload::WorkloadOptions,
    pub prices: PriceTable,
    /// How often each actor re-evaluates without an event (timeouts, grace periods, a dropped nudge).
    pub resync: Duration,
}

/// Starts the supervisor, and on `tasks` the pump that feeds it observed changes and the resource-count
/// exporter; both end when `stop` is cancelled.
pub async fn start(
    lc: Arc<Lifecycle>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<ActorRef<SupervisorMsg>> {
    let mut events = lc
        .cluster
        .take_events()
        .ok_or_else(|| anyhow::anyhow!("the lifecycle is already running"))?;
    let (throttle, _) = Actor::spawn(None, throttle::Throttle, lc.namespace_concurrency).await?;
    let (sup, _) = Actor::spawn(
        None,
        supervisor::Supervisor,
        supervisor::SupervisorArgs {
            lc: lc.clone(),
            throttle,
        },
    )
    .await?;
    let target = sup.clone();
    let pump_stop = stop.clone();
    tasks.spawn(async move {
        while let Some(Some(ev)) = pump_stop.run_until_cancelled(events.recv()).await {
            let msg = match ev {
                Observed::Record(r) => SupervisorMsg::Record(r),
                Observed::RecordGone { deployment_id } => {
                    match DeploymentId::parse(&deployment_id) {
                        Some(id) => SupervisorMsg::RecordGone(id),
                        None => continue,
                    }
                }
                Observed::Child { deployment_id } => match DeploymentId::parse(&deployment_id) {
                    Some(id) => SupervisorMsg::Nudge(id),
                    None => continue,
                },
            };
            if target.cast(msg).is_err() {
                break;
            }
        }
    });
    tasks.spawn(
        stop.clone()
            .run_until_cancelled_owned(supervisor::export_resource_counts(Arc::downgrade(&lc))),
    );
    Ok(sup)
}
