//! One actor per deployment, alive from accept until `Deleted` has been delivered. It alone writes the
//! deployment's objects and status and sends its callbacks, so requests about one deployment never race.
//!
//! The state machine: `Provisioning → Ready | Failed`, and from any of them `Deleting → Deleted`; health
//! (Healthy/Degraded) is tracked separately for a Ready deployment. Every handler ends in [`evaluate`], which
//! looks at the record and the reflector stores and takes the next step; Kubernetes calls and callbacks run as
//! spawned tasks that answer by message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;

use super::Lifecycle;
use super::callback::{self, Callback, Outbox, Outcome};
use super::supervisor::SupervisorMsg;
use crate::domain::{self, DesiredSpec, Health, Phase};
use crate::k8s::record::{ManagedResource, ManagedResourceStatus};
use crate::k8s::render::{self, Credentials, Owner, RenderContext, TlsMaterial};
use crate::k8s::state::{self, Observation};
use crate::k8s::{K8sError, now};

/// The exit reason of an actor whose deployment is done (Deleted delivered, finalizer removed).
pub const FINISHED: &str = "finished";

/// How often a failed apply is retried when the API server is unavailable.
const APPLY_RETRY: Duration = Duration::from_secs(2);

/// Consecutive rejections (4xx) of an apply after which the deployment is Failed.
const APPLY_REJECTIONS: u32 = 3;

/// The actor (state lives in [`DeploymentState`]).
pub struct Deployment;

/// What the supervisor hands a new deployment actor.
pub struct DeploymentArgs {
    pub lc: Arc<Lifecycle>,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub record: Arc<ManagedResource>,
}

/// Messages to a deployment actor.
#[derive(Debug)]
pub enum DeploymentMsg {
    /// The intent record changed (or was listed again).
    Record(Arc<ManagedResource>),
    /// The intent record is gone from the cluster.
    RecordGone,
    /// An object the deployment owns changed: re-read the stores.
    Observe,
    /// The namespace throttle granted the provisioning permit.
    PermitGranted,
    /// Still waiting for a permit, at this 1-based queue position.
    Queued(usize),
    /// Applying the rendered objects finished.
    Applied(Result<(), ApplyError>),
    /// A status write finished.
    StatusWritten(Result<(), String>),
    /// A callback attempt finished.
    CallbackDone(Outcome),
    /// Time to attempt the head callback again.
    CallbackRetry,
    /// The record delete finished.
    DeleteDone(Result<(), String>),
    /// Deleting the children by label finished.
    ChildrenDeleted(Result<(), String>),
    /// The finalizer removal finished.
    FinalizerDone(Result<(), String>),
    /// Re-evaluate (timeouts, grace periods, and in case a nudge was dropped).
    Tick,
}

/// Why applying failed.
#[derive(Debug, Clone)]
pub enum ApplyError {
    /// The API server is unavailable; try again.
    Unavailable(String),
    /// The API server refused the object.
    Rejected(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PermitState {
    None,
    Requested,
    Waiting(usize),
    Held,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ApplyState {
    NotYet,
    InFlight,
    Done,
}

/// Everything one deployment actor knows.
pub struct DeploymentState {
    lc: Arc<Lifecycle>,
    supervisor: ActorRef<SupervisorMsg>,
    id: String,
    ns: String,
    record_name: String,
    record: Arc<ManagedResource>,
    desired: Option<DesiredSpec>,
    phase: Phase,
    health: Health,
    message: String,
    last_changed: String,
    notified: Option<Phase>,
    permit: PermitState,
    started: Option<Instant>,
    apply: ApplyState,
    rejections: u32,
    problem_since: Option<(String, Instant)>,
    outbox: Outbox,
    status_in_flight: bool,
    written: Option<ManagedResourceStatus>,
    delete_requested: bool,
    children_deleted: bool,
    finalizer_in_flight: bool,
    drifted: bool,
    stopping: bool,
}

fn rank(p: Phase) -> u8 {
    match p {
        Phase::Provisioning => 1,
        Phase::Ready | Phase::Failed => 2,
        Phase::Deleting => 3,
        Phase::Deleted => 4,
    }
}

impl DeploymentState {
    fn deprovisioning(&self) -> bool {
        self.record.spec.deprovision.is_some() || self.record.metadata.deletion_timestamp.is_some()
    }

    fn resource_name(&self) -> &str {
        &self.record.spec.resource_name
    }

    fn resource_type(&self) -> &str {
        &self.record.spec.resource_type
    }

    fn replicas(&self) -> u32 {
        self.desired.as_ref().map(|d| d.replicas()).unwrap_or(1)
    }

    fn observe(&self) -> Observation {
        state::observe(
            self.lc.cluster.stores(),
            &self.ns,
            self.resource_name(),
            &self.id,
        )
    }

    fn set(&mut self, phase: Phase, message: impl Into<String>) {
        let message = message.into();
        if self.phase != phase || self.message != message {
            if self.phase != phase {
                tracing::info!(deployment_id = %self.id, from = %self.phase.as_str(), to = %phase.as_str(), %message, "phase");
            }
            self.phase = phase;
            self.message = message;
            self.last_changed = now();
        }
    }

    fn endpoint(&self) -> String {
        render::endpoint(self.resource_name(), &self.ns, &self.lc.cluster_domain)
    }

    fn port(&self) -> Option<u16> {
        self.desired.as_ref().map(|d| d.engine.info().port)
    }

    /// The status this actor wants the record to carry.
    fn desired_status(&self) -> ManagedResourceStatus {
        let reached_ready =
            matches!(self.phase, Phase::Ready) || self.notified == Some(Phase::Ready);
        ManagedResourceStatus {
            phase: Some(self.phase.as_str().to_string()),
            message: Some(self.message.clone()),
            last_updated: Some(self.last_changed.clone()),
            endpoint: reached_ready.then(|| self.endpoint()),
            port: if reached_ready { self.port() } else { None },
            connection_secret: reached_ready
                .then(|| render::credentials_secret_name(self.resource_name())),
            observed_generation: self.record.metadata.generation,
            last_notified_phase: self.notified.map(|p| p.as_str().to_string()),
        }
    }

    /// The callback body, as the API reference shows it.
    fn callback(&self, phase: Phase) -> Callback {
        let obs = self.observe();
        let version = self
            .desired
            .as_ref()
            .and_then(|d| obs.actual_spec(d))
            .and_then(|a| a.version)
            .or_else(|| self.desired.as_ref().map(|d| d.version.clone()))
            .unwrap_or_default();
        let engine = self
            .desired
            .as_ref()
            .map(|d| d.engine.as_str().to_string())
            .unwrap_or_default();
        // The cost of what actually runs, as /v1/resources reports it.
        let cost = self
            .desired
            .as_ref()
            .map(|d| {
                let footprint = match obs.actual_spec(d) {
                    Some(a) => domain::actual_footprint(d, &a, obs.volume_gib),
                    None => domain::desired_footprint(d),
                };
                domain::monthly_cost(&self.lc.prices, &footprint)
            })
            .unwrap_or(0.0);
        let url = match (phase, &self.record.spec.deprovision) {
            (Phase::Deleting | Phase::Deleted, Some(d)) => d
                .callback_url
                .clone()
                .unwrap_or_else(|| self.record.spec.callback_url.clone()),
            _ => self.record.spec.callback_url.clone(),
        };
        let message = if phase == self.phase {
            self.message.clone()
        } else {
            default_message(phase).to_string()
        };
        let mut body = json!({
            "deploymentId": self.id,
            "resourceType": self.resource_type(),
            "resourceName": self.resource_name(),
            "namespace": self.ns,
            "phase": phase.as_str(),
            "message": message,
            "time": now(),
            "additionalMetadata": {"version": version, "engine": engine},
            "estimatedMonthlyCost": if phase == Phase::Deleted { 0.0 } else { cost },
        });
        if matches!(phase, Phase::Ready) {
            body["endpoint"] = json!(self.endpoint());
            body["port"] = json!(self.port());
            body["connectionSecret"] = json!(render::credentials_secret_name(self.resource_name()));
        }
        Callback {
            phase,
            url,
            body,
            event_id: callback::event_id(&self.id, phase),
        }
    }

    fn enqueue(&mut self, phase: Phase) {
        if self.notified.is_some_and(|n| rank(n) >= rank(phase)) || self.outbox.contains(phase) {
            return;
        }
        let cb = self.callback(phase);
        self.outbox.push(cb);
    }

    /// Queues what the manager has not been told yet, after a (re)start.
    fn enqueue_owed(&mut self) {
        let path: &[Phase] = match self.phase {
            Phase::Provisioning => &[],
            Phase::Ready => &[Phase::Provisioning, Phase::Ready],
            Phase::Failed => &[Phase::Provisioning, Phase::Failed],
            Phase::Deleting => &[Phase::Deleting],
            Phase::Deleted => &[Phase::Deleting, Phase::Deleted],
        };
        for p in path {
            self.enqueue(*p);
        }
    }

    fn release_permit(&mut self) {
        if self.permit != PermitState::None {
            let _ = self.supervisor.cast(SupervisorMsg::Release {
                namespace: self.ns.clone(),
                id: self.id.clone(),
            });
            self.permit = PermitState::None;
        }
    }
}

fn default_message(phase: Phase) -> &'static str {
    match phase {
        Phase::Provisioning => "Provisioning started",
        Phase::Ready => "Database provisioned and healthy",
        Phase::Failed => "Provisioning failed",
        Phase::Deleting => "Deprovisioning started",
        Phase::Deleted => "Resource deleted",
    }
}

impl Actor for Deployment {
    type Msg = DeploymentMsg;
    type State = DeploymentState;
    type Arguments = DeploymentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: DeploymentArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let rec = args.record;
        let status = rec.status.clone().unwrap_or_default();
        let phase = status
            .phase
            .as_deref()
            .and_then(|p| p.parse::<Phase>().ok())
            .unwrap_or(Phase::Provisioning);
        let desired = serde_json::from_value::<DesiredSpec>(rec.spec.spec.clone()).ok();
        let mut st = DeploymentState {
            lc: args.lc.clone(),
            supervisor: args.supervisor,
            id: rec.spec.deployment_id.clone(),
            ns: rec.metadata.namespace.clone().unwrap_or_default(),
            record_name: rec.metadata.name.clone().unwrap_or_default(),
            desired,
            phase,
            health: Health::Unknown,
            message: status
                .message
                .clone()
                .unwrap_or_else(|| "Provisioning request accepted; waiting to start".into()),
            last_changed: status.last_updated.clone().unwrap_or_else(now),
            notified: status
                .last_notified_phase
                .as_deref()
                .and_then(|p| p.parse::<Phase>().ok()),
            permit: PermitState::None,
            started: None,
            apply: ApplyState::NotYet,
            rejections: 0,
            problem_since: None,
            outbox: Outbox::default(),
            status_in_flight: false,
            written: rec.status.clone(),
            delete_requested: false,
            children_deleted: false,
            finalizer_in_flight: false,
            drifted: false,
            stopping: false,
            record: rec,
        };
        if st.desired.is_none() && !st.deprovisioning() {
            st.set(
                Phase::Failed,
                "the stored spec cannot be read; deprovision and provision again",
            );
        }
        st.enqueue_owed();
        let resync = st.lc.resync;
        myself.send_interval(resync, || DeploymentMsg::Tick);
        let _ = myself.cast(DeploymentMsg::Tick);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DeploymentMsg::Record(rec) => {
                // A record listed again after a watch restart can be older than one already seen.
                let newer = rv(&rec) >= rv(&st.record);
                if newer {
                    st.record = rec;
                }
            }
            DeploymentMsg::RecordGone => {
                if st.deprovisioning() || st.phase == Phase::Deleted {
                    st.stopping = true;
                    st.release_permit();
                    myself.stop(Some(FINISHED.into()));
                    return Ok(());
                }
                // Deleted behind the broker's back (finalizer forced off): nothing left to manage.
                tracing::warn!(deployment_id = %st.id, "record removed without deprovisioning");
                st.stopping = true;
                st.release_permit();
                myself.stop(Some(FINISHED.into()));
                return Ok(());
            }
            DeploymentMsg::Observe | DeploymentMsg::Tick => {}
            DeploymentMsg::PermitGranted => st.permit = PermitState::Held,
            DeploymentMsg::Queued(pos) => {
                if st.permit != PermitState::Held {
                    st.permit = PermitState::Waiting(pos);
                }
            }
            DeploymentMsg::Applied(res) => match res {
                Ok(()) => {
                    st.apply = ApplyState::Done;
                    st.rejections = 0;
                }
                Err(ApplyError::Unavailable(e)) => {
                    tracing::warn!(deployment_id = %st.id, error = %e, "apply failed; retrying");
                    st.apply = ApplyState::NotYet;
                    myself.send_after(APPLY_RETRY, || DeploymentMsg::Tick);
                    return Ok(());
                }
                Err(ApplyError::Rejected(e)) => {
                    st.rejections += 1;
                    st.apply = ApplyState::NotYet;
                    if st.rejections >= APPLY_REJECTIONS {
                        st.set(
                            Phase::Failed,
                            format!("the Kubernetes API keeps rejecting the workload: {e}"),
                        );
                    } else {
                        myself.send_after(APPLY_RETRY, || DeploymentMsg::Tick);
                        return Ok(());
                    }
                }
            },
            DeploymentMsg::StatusWritten(res) => {
                st.status_in_flight = false;
                if let Err(e) = res {
                    tracing::warn!(deployment_id = %st.id, error = %e, "status write failed; will retry");
                    st.written = None;
                }
            }
            DeploymentMsg::CallbackDone(outcome) => {
                let attempt = st.outbox.attempt();
                let done = st.outbox.finish(&outcome);
                match (&outcome, done) {
                    (Outcome::Retry(why), _) => {
                        crate::metrics::callback(st.outbox_head_phase(), "retry");
                        let delay = callback::backoff(&st.lc.callbacks, attempt);
                        tracing::info!(deployment_id = %st.id, attempt, reason = %why, retry_in = ?delay, "callback not delivered");
                        myself.send_after(delay, || DeploymentMsg::CallbackRetry);
                    }
                    (Outcome::Delivered, Some(cb)) => {
                        crate::metrics::callback(cb.phase.as_str(), "delivered");
                        st.notified = Some(cb.phase);
                    }
                    (Outcome::Rejected(why), Some(cb)) => {
                        crate::metrics::callback(cb.phase.as_str(), "rejected");
                        tracing::error!(deployment_id = %st.id, phase = %cb.phase.as_str(), reason = %why, "callback rejected; not retrying");
                        st.notified = Some(cb.phase);
                    }
                    _ => {}
                }
            }
            DeploymentMsg::CallbackRetry => st.outbox.resume(),
            DeploymentMsg::DeleteDone(res) => {
                if let Err(e) = res {
                    tracing::warn!(deployment_id = %st.id, error = %e, "record delete failed; retrying");
                    st.delete_requested = false;
                }
            }
            DeploymentMsg::ChildrenDeleted(res) => {
                if let Err(e) = res {
                    tracing::warn!(deployment_id = %st.id, error = %e, "deleting children failed; retrying");
                    st.children_deleted = false;
                }
            }
            DeploymentMsg::FinalizerDone(res) => {
                st.finalizer_in_flight = false;
                if let Err(e) = res {
                    tracing::warn!(deployment_id = %st.id, error = %e, "finalizer removal failed; retrying");
                }
            }
        }
        evaluate(&myself, st);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        st.release_permit();
        Ok(())
    }
}

impl DeploymentState {
    fn outbox_head_phase(&self) -> &'static str {
        // Only used for a metric label; the head is still queued after a retry.
        if self.outbox.contains(Phase::Deleted) && !self.outbox.contains(Phase::Deleting) {
            "Deleted"
        } else if self.outbox.contains(Phase::Deleting) {
            "Deleting"
        } else if self.outbox.contains(Phase::Provisioning) {
            "Provisioning"
        } else if self.outbox.contains(Phase::Failed) {
            "Failed"
        } else {
            "Ready"
        }
    }
}

fn rv(r: &ManagedResource) -> u64 {
    r.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The next steps, given what the actor knows now.
fn evaluate(myself: &ActorRef<DeploymentMsg>, st: &mut DeploymentState) {
    if st.stopping {
        return;
    }
    if st.deprovisioning() {
        deprovision(myself, st);
    } else {
        match st.phase {
            Phase::Provisioning => provision(myself, st),
            Phase::Ready => watch_ready(st),
            Phase::Failed | Phase::Deleting | Phase::Deleted => {}
        }
    }
    pump_callbacks(myself, st);
    flush_status(myself, st);
}

fn provision(myself: &ActorRef<DeploymentMsg>, st: &mut DeploymentState) {
    match st.permit {
        PermitState::None => {
            st.permit = PermitState::Requested;
            let _ = st.supervisor.cast(SupervisorMsg::Acquire {
                namespace: st.ns.clone(),
                id: st.id.clone(),
            });
            return;
        }
        PermitState::Requested => return,
        PermitState::Waiting(pos) => {
            let limit = st.lc.namespace_concurrency;
            st.set(
                Phase::Provisioning,
                format!(
                    "Queued: position {pos} in namespace {} (at most {limit} provision at once)",
                    st.ns
                ),
            );
            return;
        }
        PermitState::Held => {}
    }
    if st.started.is_none() {
        st.started = Some(Instant::now());
        st.set(Phase::Provisioning, "Creating the workload");
        st.enqueue(Phase::Provisioning);
    }
    if st.apply == ApplyState::NotYet {
        st.apply = ApplyState::InFlight;
        spawn_apply(myself, st);
        return;
    }
    if st.apply != ApplyState::Done {
        return;
    }
    let obs = st.observe();
    if obs.ready(st.replicas()) {
        let took = st.record.metadata.creation_timestamp.as_ref().map(|t| {
            (jiff::Timestamp::now() - t.0)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0)
        });
        if let Some(secs) = took {
            crate::metrics::provision_duration(st.resource_type(), secs.max(0.0));
        }
        st.set(Phase::Ready, "Database provisioned and healthy");
        st.health = Health::Healthy;
        st.release_permit();
        st.enqueue(Phase::Ready);
        return;
    }
    let ready = obs.ready_pods();
    match obs.problem() {
        Some(p) => {
            let key = format!("{}/{}", p.pod, p.reason);
            let since = match &st.problem_since {
                Some((k, since)) if *k == key => *since,
                _ => {
                    st.problem_since = Some((key, Instant::now()));
                    Instant::now()
                }
            };
            if since.elapsed() >= st.lc.failure_grace {
                let detail = if p.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", p.message)
                };
                fail(st, format!("pod {} is in {}{detail}", p.pod, p.reason));
                return;
            }
            st.set(
                Phase::Provisioning,
                format!("Waiting for pod {}: {}", p.pod, p.reason),
            );
        }
        None => {
            st.problem_since = None;
            st.set(
                Phase::Provisioning,
                format!("Waiting for replicas: {ready} of {} ready", st.replicas()),
            );
        }
    }
    if let Some(started) = st.started
        && started.elapsed() >= st.lc.provision_timeout
    {
        fail(
            st,
            format!(
                "provisioning timed out after {}s ({ready} of {} replicas ready)",
                st.lc.provision_timeout.as_secs(),
                st.replicas()
            ),
        );
    }
}

fn fail(st: &mut DeploymentState, message: String) {
    st.set(Phase::Failed, message);
    st.release_permit();
    st.enqueue(Phase::Failed);
}

fn watch_ready(st: &mut DeploymentState) {
    let obs = st.observe();
    let replicas = st.replicas() as usize;
    let ready = obs.ready_pods();
    let health = if ready >= replicas {
        Health::Healthy
    } else {
        Health::Degraded
    };
    if health != st.health {
        st.health = health;
        match health {
            Health::Healthy => st.set(Phase::Ready, "Database is running and healthy"),
            _ => st.set(
                Phase::Ready,
                format!("Degraded: {ready} of {replicas} replicas ready"),
            ),
        }
    }
    if let Some(desired) = &st.desired {
        let drifted = obs
            .actual_spec(desired)
            .is_some_and(|a| !domain::drift(desired, &a).is_empty());
        if drifted && !st.drifted {
            crate::metrics::drift_detected(&st.ns, st.resource_type());
            tracing::warn!(deployment_id = %st.id, "drift detected");
        }
        st.drifted = drifted;
    }
}

fn deprovision(myself: &ActorRef<DeploymentMsg>, st: &mut DeploymentState) {
    if !matches!(st.phase, Phase::Deleting | Phase::Deleted) {
        st.release_permit();
        st.set(
            Phase::Deleting,
            "Deprovisioning: deleting the workload and its storage",
        );
        st.enqueue(Phase::Deleting);
    }
    if !st.delete_requested && st.record.metadata.deletion_timestamp.is_none() {
        st.delete_requested = true;
        let lc = st.lc.clone();
        let (ns, name) = (st.ns.clone(), st.record_name.clone());
        report(
            myself,
            async move { lc.cluster.delete_record(&ns, &name).await },
            DeploymentMsg::DeleteDone,
        );
    }
    if st.phase == Phase::Deleting {
        let foreground_done = st.record.metadata.deletion_timestamp.is_some()
            && !st
                .record
                .metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"));
        let obs = st.observe();
        // Deleted without foreground propagation (kubectl delete): the garbage collector waits for the record,
        // which waits for the broker, so the broker removes the children itself.
        let background = st.record.metadata.deletion_timestamp.is_some()
            && !st
                .record
                .metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"));
        if background && obs.remaining_children > 0 && !st.children_deleted {
            st.children_deleted = true;
            let lc = st.lc.clone();
            let (ns, id) = (st.ns.clone(), st.id.clone());
            report(
                myself,
                async move { lc.cluster.delete_children(&ns, &id).await },
                DeploymentMsg::ChildrenDeleted,
            );
        }
        if foreground_done && obs.remaining_children == 0 {
            st.set(Phase::Deleted, "Resource deleted");
            st.enqueue(Phase::Deleted);
        } else if st.record.metadata.deletion_timestamp.is_some() {
            st.set(
                Phase::Deleting,
                format!(
                    "Deprovisioning: waiting for {} objects to be removed",
                    obs.remaining_children
                ),
            );
        }
    }
    let told = st.notified == Some(Phase::Deleted);
    let status_current = st.written.as_ref() == Some(&st.desired_status());
    if st.phase == Phase::Deleted
        && told
        && st.outbox.is_idle()
        && status_current
        && !st.finalizer_in_flight
    {
        st.finalizer_in_flight = true;
        let lc = st.lc.clone();
        let rec = st.record.clone();
        report(
            myself,
            async move { lc.cluster.remove_finalizer(&rec).await },
            DeploymentMsg::FinalizerDone,
        );
    }
}

/// Runs a Kubernetes call as a task and reports its result back by message, so the mailbox never waits on the
/// network.
fn report<Fut>(
    myself: &ActorRef<DeploymentMsg>,
    call: Fut,
    msg: fn(Result<(), String>) -> DeploymentMsg,
) where
    Fut: Future<Output = crate::k8s::Result<()>> + Send + 'static,
{
    let me = myself.clone();
    tokio::spawn(async move {
        let r = call.await.map_err(|e| e.to_string());
        let _ = me.cast(msg(r));
    });
}

fn pump_callbacks(myself: &ActorRef<DeploymentMsg>, st: &mut DeploymentState) {
    let Some((cb, attempt)) = st.outbox.start_next() else {
        return;
    };
    let lc = st.lc.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let outcome = callback::deliver(&lc.http, &lc.callbacks, &cb, attempt).await;
        let _ = me.cast(DeploymentMsg::CallbackDone(outcome));
    });
}

fn flush_status(myself: &ActorRef<DeploymentMsg>, st: &mut DeploymentState) {
    if st.status_in_flight {
        return;
    }
    let want = st.desired_status();
    if st.written.as_ref() == Some(&want) {
        return;
    }
    st.status_in_flight = true;
    st.written = Some(want.clone());
    let lc = st.lc.clone();
    let (ns, name) = (st.ns.clone(), st.record_name.clone());
    report(
        myself,
        async move { lc.cluster.write_status(&ns, &name, &want).await },
        DeploymentMsg::StatusWritten,
    );
}

/// Renders and applies every object of the deployment (idempotent: server-side apply).
fn spawn_apply(myself: &ActorRef<DeploymentMsg>, st: &DeploymentState) {
    let Some(desired) = st.desired.clone() else {
        return;
    };
    let lc = st.lc.clone();
    let rec = st.record.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let r = apply_all(&lc, &rec, &desired).await;
        let _ = me.cast(DeploymentMsg::Applied(r));
    });
}

fn classify(e: K8sError) -> ApplyError {
    match e {
        K8sError::Unavailable(m) => ApplyError::Unavailable(m),
        K8sError::Api(s) => {
            ApplyError::Rejected(format!("{} ({} {})", s.message, s.code, s.reason))
        }
        other => ApplyError::Rejected(other.to_string()),
    }
}

async fn apply_all(
    lc: &Lifecycle,
    rec: &ManagedResource,
    desired: &DesiredSpec,
) -> Result<(), ApplyError> {
    let ns = rec.metadata.namespace.clone().unwrap_or_default();
    let name = &rec.spec.resource_name;
    // Credentials are generated once and kept: re-rendering must not rotate a password under a running database.
    let existing = lc
        .cluster
        .get_secret(&ns, &render::credentials_secret_name(name))
        .await
        .map_err(classify)?;
    let info = desired.engine.info();
    let secret_field = |k: &str| -> Option<String> {
        existing
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(k))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    let credentials = Credentials {
        username: secret_field("username").unwrap_or_else(|| info.default_username.to_string()),
        password: secret_field("password").unwrap_or_else(render::generate_password),
        database: secret_field("database").unwrap_or_else(|| info.default_database.to_string()),
    };
    let tls = if desired.encryption.in_transit {
        let tls_name = format!("{name}-tls");
        let current = lc
            .cluster
            .get_secret(&ns, &tls_name)
            .await
            .map_err(classify)?;
        let field = |k: &str| -> Option<String> {
            current
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        match (field("ca.crt"), field("tls.crt"), field("tls.key")) {
            (Some(ca_crt), Some(tls_crt), Some(tls_key)) => Some(TlsMaterial {
                ca_crt,
                tls_crt,
                tls_key,
            }),
            _ => {
                let names = vec![
                    name.clone(),
                    format!("{name}.{ns}"),
                    format!("{name}.{ns}.svc"),
                    render::endpoint(name, &ns, &lc.cluster_domain),
                    format!(
                        "*.{}.{ns}.svc.{}",
                        render::headless_service_name(name),
                        lc.cluster_domain
                    ),
                ];
                Some(render::generate_tls(&names).map_err(ApplyError::Rejected)?)
            }
        }
    } else {
        None
    };
    let uid = rec.metadata.uid.clone().unwrap_or_default();
    let record_name = rec.metadata.name.clone().unwrap_or_default();
    let ctx = RenderContext {
        owner: Owner {
            api_version: "kidp.io/v1alpha1",
            kind: "ManagedResource",
            name: &record_name,
            uid: &uid,
        },
        namespace: &ns,
        deployment_id: &rec.spec.deployment_id,
        resource_type: &rec.spec.resource_type,
        resource_name: name,
        team: &rec.spec.team,
        image_registry: lc.image_registry.as_deref(),
        storage_class: if desired.encryption.at_rest {
            lc.encrypted_storage_class.as_deref()
        } else {
            None
        },
        credentials: &credentials,
        tls: tls.as_ref(),
        cluster_domain: &lc.cluster_domain,
    };
    for obj in render::render(desired, &ctx) {
        lc.cluster.apply(&obj).await.map_err(classify)?;
    }
    Ok(())
}
