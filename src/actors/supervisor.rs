//! The supervisor: one per broker. It spawns a deployment actor for every intent record it is told about
//! (the record reflector lists them all at start, so a restarted broker resumes every deployment), routes
//! observed changes to the owning actor by deployment id, and restarts a crashed child with backoff. A child's
//! exit never stops it. The namespace throttle is an actor of its own whose handle each deployment holds.
//!
//! It runs only the deployments of the shards this replica holds ([`super::shards`]): the coordinator tells it
//! when a shard is acquired (spawn its deployments from the record store) and when one must be given up (stop
//! them, and answer only once they have stopped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::Lifecycle;
use super::deployment::{Deployment, DeploymentArgs, DeploymentMsg, FINISHED};
use super::shards::shard_of;
use super::throttle::{ThrottleMsg, ThrottleRef};
use crate::domain::{DeploymentId, Phase};
use crate::k8s::record::ManagedResource;

/// The supervisor actor (state lives in [`SupervisorState`]).
pub struct Supervisor;

/// What the supervisor starts with.
pub struct SupervisorArgs {
    pub lc: Arc<Lifecycle>,
    pub throttle: ThrottleRef,
}

/// Messages to the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// A record was created, changed or listed: spawn its actor or forward the change.
    Record(Arc<ManagedResource>),
    /// A record disappeared from the cluster.
    RecordGone(DeploymentId),
    /// An object owned by this deployment changed.
    Nudge(DeploymentId),
    /// Spawn the actor of a deployment again (after a crash, with backoff).
    Respawn(DeploymentId),
    /// This replica now holds the shard: run its deployments.
    AcquireShard(u32),
    /// This replica must stop acting for the shard: stop its deployments, then answer.
    ReleaseShard(u32, RpcReplyPort<()>),
}

/// The supervisor's state.
pub struct SupervisorState {
    lc: Arc<Lifecycle>,
    throttle: ThrottleRef,
    children: HashMap<DeploymentId, ActorRef<DeploymentMsg>>,
    ids: HashMap<ActorId, (DeploymentId, String)>,
    crashes: HashMap<DeploymentId, u32>,
    /// The shards whose deployments run here.
    held: HashSet<u32>,
}

/// How long a deployment actor gets to stop when its shard is given up.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn shard_of_record(rec: &ManagedResource) -> u32 {
    shard_of(rec.metadata.namespace.as_deref().unwrap_or_default())
}

/// Restart backoff for a crashed deployment actor: doubling from 1s, at most a minute.
fn restart_backoff(crashes: u32) -> Duration {
    Duration::from_secs(1u64 << crashes.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

impl SupervisorState {
    async fn spawn(&mut self, myself: &ActorRef<SupervisorMsg>, rec: Arc<ManagedResource>) {
        let Some(id) = DeploymentId::parse(&rec.spec.deployment_id) else {
            tracing::warn!(record = ?rec.metadata.name, "a record with an invalid deployment id is ignored");
            return;
        };
        let ns = rec.metadata.namespace.clone().unwrap_or_default();
        let args = DeploymentArgs {
            lc: self.lc.clone(),
            throttle: self.throttle.clone(),
            record: rec,
        };
        // Spawning one at a time, in the order records are observed (their creation order), keeps the
        // namespace queue FIFO by acceptance: each actor asks for its permit while starting.
        match Actor::spawn_linked(Some(id.to_string()), Deployment, args, myself.get_cell()).await {
            Ok((child, _)) => {
                self.ids.insert(child.get_id(), (id.clone(), ns));
                self.children.insert(id, child);
                crate::metrics::deployment_actors(self.children.len());
            }
            Err(e) => {
                tracing::error!(deployment_id = %id, error = %e, "cannot spawn deployment actor; retrying");
                let n = self.crashes.entry(id.clone()).or_default();
                *n += 1;
                myself.send_after(restart_backoff(*n), move || SupervisorMsg::Respawn(id));
            }
        }
    }

    /// Forgets a stopped child and returns whatever permit it held.
    fn forget(&mut self, actor: ActorId) -> Option<DeploymentId> {
        let (id, ns) = self.ids.remove(&actor)?;
        self.children.remove(&id);
        let _ = self.throttle.cast(ThrottleMsg::Release {
            namespace: ns,
            id: id.clone(),
        });
        crate::metrics::deployment_actors(self.children.len());
        Some(id)
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            lc: args.lc,
            throttle: args.throttle,
            children: HashMap::new(),
            ids: HashMap::new(),
            crashes: HashMap::new(),
            held: HashSet::new(),
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
                let child = DeploymentId::parse(&rec.spec.deployment_id)
                    .and_then(|id| state.children.get(&id).cloned());
                match child {
                    Some(child) => {
                        let _ = child.cast(DeploymentMsg::Record(rec));
                    }
                    None if state.held.contains(&shard_of_record(&rec)) => {
                        state.spawn(&myself, rec).await
                    }
                    None => {}
                }
            }
            SupervisorMsg::AcquireShard(shard) => {
                if state.held.insert(shard) {
                    // Oldest first, so that the namespace queues stay in acceptance order.
                    let mut recs: Vec<Arc<ManagedResource>> = state
                        .lc
                        .cluster
                        .records()
                        .state()
                        .into_iter()
                        .filter(|r| shard_of_record(r) == shard)
                        .collect();
                    recs.sort_by(|a, b| {
                        (&a.metadata.creation_timestamp, &a.metadata.name)
                            .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
                    });
                    for rec in recs {
                        let running = DeploymentId::parse(&rec.spec.deployment_id)
                            .is_some_and(|id| state.children.contains_key(&id));
                        if !running {
                            state.spawn(&myself, rec).await;
                        }
                    }
                }
            }
            SupervisorMsg::ReleaseShard(shard, reply) => {
                state.held.remove(&shard);
                let leaving: Vec<(ActorId, ActorRef<DeploymentMsg>)> = state
                    .ids
                    .iter()
                    .filter(|(_, (_, ns))| shard_of(ns) == shard)
                    .filter_map(|(aid, (id, _))| Some((*aid, state.children.get(id)?.clone())))
                    .collect();
                for (aid, child) in leaving {
                    if child.stop_and_wait(None, Some(STOP_TIMEOUT)).await.is_err() {
                        tracing::error!(actor = ?child.get_name(), "deployment actor did not stop in time");
                    }
                    state.forget(aid);
                }
                let _ = reply.send(());
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
            SupervisorMsg::Respawn(id) => {
                if state.children.contains_key(&id) {
                    return Ok(());
                }
                match state.lc.cluster.record_by_id(&id) {
                    Some(rec) if !state.held.contains(&shard_of_record(&rec)) => {}
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
                if let Some(id) = state.forget(cell.get_id()) {
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
                if let Some(id) = state.forget(cell.get_id()) {
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

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.throttle.stop(None);
        Ok(())
    }
}

/// Keeps `broker_resources_total{namespace,type,phase}` current from the record store (every few seconds;
/// label sets that disappear are set to zero rather than left stale).
/// It stops once the lifecycle is gone (the supervisor holds the last strong reference).
pub async fn export_resource_counts(lc: std::sync::Weak<Lifecycle>) {
    let mut seen: BTreeMap<(String, String, Phase), usize> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(lc) = lc.upgrade() else {
            return;
        };
        let mut now: BTreeMap<(String, String, Phase), usize> = BTreeMap::new();
        for r in lc.cluster.records().state() {
            let phase = crate::k8s::record::phase_of(&r);
            *now.entry((
                r.metadata.namespace.clone().unwrap_or_default(),
                r.spec.resource_type.clone(),
                phase,
            ))
            .or_default() += 1;
        }
        for key in seen.keys() {
            if !now.contains_key(key) {
                crate::metrics::resources(&key.0, &key.1, key.2.as_str(), 0);
            }
        }
        for ((ns, ty, phase), n) in &now {
            crate::metrics::resources(ns, ty, phase.as_str(), *n);
        }
        seen = now;
    }
}
