//! The supervisor: one per broker. It spawns a deployment actor for every intent record it is told about
//! (the record reflector lists them all at start, so a restarted broker resumes every deployment), routes
//! observed changes to the owning actor by deployment id, owns the namespace throttle, and restarts a crashed
//! child with backoff. A child's exit never stops it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::Lifecycle;
use super::deployment::{Deployment, DeploymentArgs, DeploymentMsg, FINISHED};
use super::throttle::{NamespaceThrottle, Permit};
use crate::k8s::record::ManagedResource;

/// The supervisor actor (state lives in [`SupervisorState`]).
pub struct Supervisor;

/// Messages to the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// A record was created, changed or listed: spawn its actor or forward the change.
    Record(Arc<ManagedResource>),
    /// A record disappeared from the cluster.
    RecordGone(String),
    /// An object owned by this deployment changed.
    Nudge(String),
    /// A deployment asks for a provisioning permit in its namespace.
    Acquire { namespace: String, id: String },
    /// A deployment returns its permit (Ready, Failed, deprovisioned) or leaves the queue.
    Release { namespace: String, id: String },
    /// Spawn the actor of a deployment again (after a crash, with backoff).
    Respawn(String),
}

/// The supervisor's state.
pub struct SupervisorState {
    lc: Arc<Lifecycle>,
    children: HashMap<String, ActorRef<DeploymentMsg>>,
    ids: HashMap<ActorId, (String, String)>,
    throttle: NamespaceThrottle,
    crashes: HashMap<String, u32>,
}

/// Whether a deployment still has provisioning to do (and so a place in its namespace's queue).
fn needs_permit(rec: &ManagedResource) -> bool {
    let phase = rec.status.as_ref().and_then(|s| s.phase.as_deref());
    rec.spec.deprovision.is_none()
        && rec.metadata.deletion_timestamp.is_none()
        && matches!(phase, None | Some("Provisioning"))
}

/// Restart backoff for a crashed deployment actor: doubling from 1s, at most a minute.
fn restart_backoff(crashes: u32) -> Duration {
    Duration::from_secs(1u64 << crashes.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

impl SupervisorState {
    async fn spawn(&mut self, myself: &ActorRef<SupervisorMsg>, rec: Arc<ManagedResource>) {
        let id = rec.spec.deployment_id.clone();
        let ns = rec.metadata.namespace.clone().unwrap_or_default();
        // Queue for a permit here, in the order records were observed (their creation order), so the namespace
        // queue is FIFO by acceptance rather than by which actor happens to start first.
        let wants_permit = needs_permit(&rec);
        let args = DeploymentArgs {
            lc: self.lc.clone(),
            supervisor: myself.clone(),
            record: rec,
        };
        match Actor::spawn_linked(Some(id.clone()), Deployment, args, myself.get_cell()).await {
            Ok((child, _)) => {
                self.ids.insert(child.get_id(), (id.clone(), ns.clone()));
                self.children.insert(id.clone(), child);
                crate::metrics::deployment_actors(self.children.len());
                if wants_permit {
                    let permit = self.throttle.acquire(&ns, &id);
                    self.reply(&id, permit);
                    crate::metrics::provision_queue(self.throttle.queued_total());
                }
            }
            Err(e) => {
                tracing::error!(deployment_id = %id, error = %e, "cannot spawn deployment actor; retrying");
                let n = self.crashes.entry(id.clone()).or_default();
                *n += 1;
                myself.send_after(restart_backoff(*n), move || SupervisorMsg::Respawn(id));
            }
        }
    }

    fn reply(&self, id: &str, permit: Permit) {
        if let Some(child) = self.children.get(id) {
            let msg = match permit {
                Permit::Granted => DeploymentMsg::PermitGranted,
                Permit::Queued(pos) => DeploymentMsg::Queued(pos),
            };
            let _ = child.cast(msg);
        }
    }

    fn release(&mut self, namespace: &str, id: &str) {
        for granted in self.throttle.release(namespace, id) {
            self.reply(&granted, Permit::Granted);
        }
        for (waiting, pos) in self.throttle.waiting(namespace) {
            self.reply(&waiting, Permit::Queued(pos));
        }
        crate::metrics::provision_queue(self.throttle.queued_total());
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Lifecycle>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        lc: Arc<Lifecycle>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let limit = lc.namespace_concurrency;
        Ok(SupervisorState {
            lc,
            children: HashMap::new(),
            ids: HashMap::new(),
            throttle: NamespaceThrottle::new(limit),
            crashes: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Record(rec) => {
                let id = rec.spec.deployment_id.clone();
                match state.children.get(&id) {
                    Some(child) => {
                        let _ = child.cast(DeploymentMsg::Record(rec));
                    }
                    None => state.spawn(&myself, rec).await,
                }
            }
            SupervisorMsg::RecordGone(id) => {
                if let Some(child) = state.children.get(&id) {
                    let _ = child.cast(DeploymentMsg::RecordGone);
                }
            }
            SupervisorMsg::Nudge(id) => {
                if let Some(child) = state.children.get(&id) {
                    let _ = child.cast(DeploymentMsg::Observe);
                }
            }
            SupervisorMsg::Acquire { namespace, id } => {
                let permit = state.throttle.acquire(&namespace, &id);
                state.reply(&id, permit);
                crate::metrics::provision_queue(state.throttle.queued_total());
            }
            SupervisorMsg::Release { namespace, id } => state.release(&namespace, &id),
            SupervisorMsg::Respawn(id) => {
                if state.children.contains_key(&id) {
                    return Ok(());
                }
                let rec = state
                    .lc
                    .cluster
                    .records()
                    .find(|r| r.spec.deployment_id == id)
                    .map(|r| Arc::new((*r).clone()));
                match rec {
                    Some(rec) => state.spawn(&myself, rec).await,
                    None => tracing::info!(deployment_id = %id, "record gone; not respawning"),
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorStarted(cell) => {
                tracing::debug!(actor = ?cell.get_name(), "deployment actor started");
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some((id, ns)) = state.ids.remove(&cell.get_id()) {
                    state.children.remove(&id);
                    state.release(&ns, &id);
                    crate::metrics::deployment_actors(state.children.len());
                    if reason.as_deref() == Some(FINISHED) {
                        tracing::info!(deployment_id = %id, "deployment finished");
                        state.crashes.remove(&id);
                    } else {
                        tracing::warn!(deployment_id = %id, ?reason, "deployment actor stopped; respawning");
                        myself.send_after(restart_backoff(1), move || SupervisorMsg::Respawn(id));
                    }
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some((id, ns)) = state.ids.remove(&cell.get_id()) {
                    state.children.remove(&id);
                    state.release(&ns, &id);
                    crate::metrics::deployment_actors(state.children.len());
                    let n = state.crashes.entry(id.clone()).or_default();
                    *n += 1;
                    let delay = restart_backoff(*n);
                    tracing::error!(deployment_id = %id, error = %err, restart_in = ?delay, "deployment actor crashed");
                    myself.send_after(delay, move || SupervisorMsg::Respawn(id));
                }
            }
            other => tracing::debug!(event = ?other, "supervision event"),
        }
        Ok(())
    }
}

/// Keeps `broker_resources_total{namespace,type,phase}` current from the record store (every few seconds;
/// label sets that disappear are set to zero rather than left stale).
/// It stops once the lifecycle is gone (the supervisor holds the last strong reference).
pub async fn export_resource_counts(lc: std::sync::Weak<Lifecycle>) {
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(lc) = lc.upgrade() else {
            return;
        };
        let mut now: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for r in lc.cluster.records().state() {
            let phase = r
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Provisioning".into());
            *now.entry((
                r.metadata.namespace.clone().unwrap_or_default(),
                r.spec.resource_type.clone(),
                phase,
            ))
            .or_default() += 1;
        }
        for key in seen.keys() {
            if !now.contains_key(key) {
                crate::metrics::resources(&key.0, &key.1, &key.2, 0);
            }
        }
        for ((ns, ty, phase), n) in &now {
            crate::metrics::resources(ns, ty, phase, *n);
        }
        seen = now;
    }
}
