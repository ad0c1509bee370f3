//! One actor per deployment, alive from accept until `Deleted` has been told. It alone writes the deployment's
//! objects and status and sends its callbacks, so requests about one deployment never race.
//!
//! This file is only the shell around the pure state machine in [`super::lifecycle`]: it turns messages into
//! [`Input`]s (reading the reflector stores into [`Seen`]) and carries out the [`Effect`]s as tasks that answer
//! by message. The tasks belong to the actor and are aborted when it stops.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::task::JoinSet;

use super::Lifecycle;
use super::callback::{self, Callback};
use super::lifecycle::{
    CallError, Delivery, Effect, Event, Finish, Input, Machine, Notice, Now, RecordFacts, Seen,
    StatusView, Stored,
};
use super::throttle::{Permit, ThrottleMsg, ThrottleRef};
use crate::domain::{self, DeploymentId, DesiredSpec, Phase};
use crate::k8s::record::{ManagedResource, ManagedResourceStatus};
use crate::k8s::render;
use crate::k8s::state::{self, Observation};
use crate::k8s::{K8sError, rfc3339, workload};

/// The exit reason of an actor whose deployment is done (Deleted told, finalizer removed).
pub const FINISHED: &str = "finished";

/// The actor (state lives in [`DeploymentState`]).
pub struct Deployment;

/// What the supervisor hands a new deployment actor.
pub struct DeploymentArgs {
    pub lc: Arc<Lifecycle>,
    pub throttle: ThrottleRef,
    pub record: Arc<ManagedResource>,
}

/// Messages to a deployment actor.
pub enum DeploymentMsg {
    /// The intent record changed (or was listed again).
    Record(Arc<ManagedResource>),
    /// The intent record is gone from the cluster.
    RecordGone,
    /// An object the deployment owns changed: read the stores again.
    Observe,
    /// The namespace throttle's answer.
    Permit(Permit),
    /// Applying the rendered objects finished.
    Applied(Result<(), K8sError>),
    /// A status write finished.
    StatusWritten(Result<(), K8sError>),
    /// A callback attempt finished.
    CallbackDone(Delivery),
    /// The record delete finished.
    RecordDeleted(Result<(), K8sError>),
    /// Deleting the children by label finished.
    ChildrenDeleted(Result<(), K8sError>),
    /// The finalizer removal finished.
    FinalizerRemoved(Result<(), K8sError>),
    /// Time passed: deadlines, retries, and the periodic resync.
    Tick,
}

impl From<&K8sError> for CallError {
    fn from(e: &K8sError) -> Self {
        match e {
            K8sError::Timeout { .. } | K8sError::Unavailable(_) => {
                CallError::Unavailable(e.to_string())
            }
            K8sError::Rejected(s) => {
                CallError::Rejected(format!("{} ({} {})", s.message, s.code, s.reason))
            }
            K8sError::NotOurs { .. } => CallError::Foreign(e.to_string()),
            K8sError::NotFound(_) | K8sError::Unsupported(_) | K8sError::Other(_) => {
                CallError::Rejected(e.to_string())
            }
        }
    }
}

fn call_result(r: &Result<(), K8sError>) -> Result<(), CallError> {
    r.as_ref().map(|_| ()).map_err(CallError::from)
}

/// Everything one deployment actor holds.
pub struct DeploymentState {
    lc: Arc<Lifecycle>,
    throttle: ThrottleRef,
    id: DeploymentId,
    ns: String,
    record_name: String,
    record: Arc<ManagedResource>,
    machine: Machine,
    seen: Seen,
    /// Callbacks this actor counts in the queue gauge.
    queued: usize,
    tasks: JoinSet<()>,
}

fn facts(rec: &ManagedResource) -> RecordFacts {
    RecordFacts {
        generation: rec.metadata.generation,
        deprovision_requested: rec.spec.deprovision.is_some(),
        terminating: rec.metadata.deletion_timestamp.is_some(),
        foreground_pending: rec
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion")),
        spec_readable: rec.spec.spec.desired().is_some(),
    }
}

fn stored(rec: &ManagedResource) -> Stored {
    let st = rec.status.clone().unwrap_or_default();
    Stored {
        phase: st.phase,
        health: st.health,
        message: st.message,
        last_updated: st.last_updated.as_deref().and_then(|t| t.parse().ok()),
        reached_ready: st.endpoint.is_some(),
        observed_generation: st.observed_generation,
        last_notified: st.last_notified_phase,
    }
}

fn rv(r: &ManagedResource) -> u64 {
    r.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl DeploymentState {
    fn desired(&self) -> Option<&DesiredSpec> {
        self.record.spec.spec.desired()
    }

    fn resource_name(&self) -> &str {
        &self.record.spec.resource_name
    }

    fn observe(&self) -> Observation {
        state::observe(
            self.lc.cluster.stores(),
            &self.ns,
            self.resource_name(),
            self.id.as_str(),
        )
    }

    /// What the stores say, in the machine's terms.
    fn look(&self) -> Seen {
        let obs = self.observe();
        let Some(desired) = self.desired() else {
            return Seen {
                remaining_children: obs.remaining_children,
                ..Seen::default()
            };
        };
        let replicas = desired.replicas();
        Seen {
            replicas,
            ready_pods: obs.ready_pods(),
            workload_ready: obs.ready(replicas),
            problem: obs.problem().map(|p| super::lifecycle::PodProblem {
                pod: p.pod,
                reason: p.reason,
                message: p.message,
            }),
            remaining_children: obs.remaining_children,
            drifted: obs
                .actual_spec(desired)
                .is_some_and(|a| !domain::drift(desired, &a).is_empty()),
        }
    }

    fn endpoint(&self) -> String {
        render::endpoint(
            self.resource_name(),
            &self.ns,
            &self.lc.workload.cluster_domain,
        )
    }

    fn port(&self) -> Option<u16> {
        self.desired().map(|d| d.engine.info().port)
    }

    fn status(&self, v: &StatusView) -> ManagedResourceStatus {
        ManagedResourceStatus {
            phase: Some(v.phase),
            health: Some(v.health),
            message: Some(v.message.clone()),
            last_updated: Some(rfc3339(v.last_updated)),
            endpoint: v.reached_ready.then(|| self.endpoint()),
            port: if v.reached_ready { self.port() } else { None },
            connection_secret: v
                .reached_ready
                .then(|| render::credentials_secret_name(self.resource_name())),
            observed_generation: v.observed_generation,
            last_notified_phase: v.last_notified,
        }
    }

    /// The callback body, as the API reference shows it.
    fn callback(&self, n: &Notice) -> Callback {
        let obs = self.observe();
        let desired = self.desired();
        let actual = desired.and_then(|d| obs.actual_spec(d));
        let version = actual
            .as_ref()
            .and_then(|a| a.version.clone())
            .or_else(|| desired.map(|d| d.version.clone()))
            .unwrap_or_default();
        let engine = desired
            .map(|d| d.engine.as_str().to_string())
            .unwrap_or_default();
        // The cost of what actually runs, as /v1/resources reports it.
        let cost = desired
            .map(|d| {
                let footprint = match &actual {
                    Some(a) => domain::actual_footprint(d, a, obs.volume_gib),
                    None => domain::desired_footprint(d),
                };
                domain::monthly_cost(&self.lc.prices, &footprint)
            })
            .unwrap_or(0.0);
        let spec = &self.record.spec;
        let url = match (n.phase, &spec.deprovision) {
            (Phase::Deleting | Phase::Deleted, Some(d)) => d
                .callback_url
                .clone()
                .unwrap_or_else(|| spec.callback_url.clone()),
            _ => spec.callback_url.clone(),
        };
        let mut body = json!({
            "deploymentId": self.id.as_str(),
            "resourceType": spec.resource_type,
            "resourceName": spec.resource_name,
            "namespace": self.ns,
            "phase": n.phase.as_str(),
            "message": n.message,
            "time": rfc3339(n.time),
            "additionalMetadata": {"version": version, "engine": engine},
            "estimatedMonthlyCost": if n.phase == Phase::Deleted { 0.0 } else { cost },
        });
        if n.phase == Phase::Ready {
            body["endpoint"] = json!(self.endpoint());
            body["port"] = json!(self.port());
            body["connectionSecret"] = json!(render::credentials_secret_name(self.resource_name()));
        }
        Callback {
            url,
            body,
            event_id: callback::event_id(self.id.as_str(), n.phase),
        }
    }

    /// Steps the machine with `input`, first telling it what the stores say if that changed.
    fn step(&mut self, myself: &ActorRef<DeploymentMsg>, input: Input) {
        let now = Now::real();
        let seen = self.look();
        let mut fx = Vec::new();
        if seen != self.seen {
            self.seen = seen.clone();
            fx.extend(self.machine.step(Input::Seen(seen), now));
        }
        fx.extend(self.machine.step(input, now));
        self.run(myself, fx);
    }

    /// Runs a Kubernetes call as a task of this actor and reports its result back by message.
    fn spawn_call<F>(
        &mut self,
        myself: &ActorRef<DeploymentMsg>,
        call: F,
        msg: fn(Result<(), K8sError>) -> DeploymentMsg,
    ) where
        F: Future<Output = Result<(), K8sError>> + Send + 'static,
    {
        let me = myself.clone();
        self.tasks.spawn(async move {
            let r = call.await;
            let _ = me.cast(msg(r));
        });
    }

    fn run(&mut self, myself: &ActorRef<DeploymentMsg>, effects: Vec<Effect>) {
        for effect in effects {
            self.run_one(myself, effect);
        }
        self.count_queued(self.machine.outbox().pending());
    }

    fn count_queued(&mut self, n: usize) {
        if n != self.queued {
            crate::metrics::callback_queue(n as f64 - self.queued as f64);
            self.queued = n;
        }
    }

    fn run_one(&mut self, myself: &ActorRef<DeploymentMsg>, effect: Effect) {
        let lc = self.lc.clone();
        let (ns, name) = (self.ns.clone(), self.record_name.clone());
        match effect {
            Effect::RequestPermit => {
                let me = myself.clone();
                let _ = self.throttle.cast(ThrottleMsg::Acquire {
                    namespace: ns,
                    id: self.id.clone(),
                    sink: Arc::new(move |p| {
                        let _ = me.cast(DeploymentMsg::Permit(p));
                    }),
                });
            }
            Effect::ReleasePermit => {
                let _ = self.throttle.cast(ThrottleMsg::Release {
                    namespace: ns,
                    id: self.id.clone(),
                });
            }
            Effect::Apply => {
                let rec = self.record.clone();
                self.spawn_call(
                    myself,
                    async move { workload::apply(&lc.cluster, &rec, &lc.workload).await },
                    DeploymentMsg::Applied,
                );
            }
            Effect::WriteStatus(view) => {
                let status = self.status(&view);
                self.spawn_call(
                    myself,
                    async move { lc.cluster.write_status(&ns, &name, &status).await },
                    DeploymentMsg::StatusWritten,
                );
            }
            Effect::Deliver(notice) => {
                let cb = self.callback(&notice);
                let me = myself.clone();
                self.tasks.spawn(async move {
                    let d = callback::deliver(
                        &lc.http,
                        &lc.resolver,
                        &lc.callbacks,
                        &cb,
                        notice.attempt,
                    )
                    .await;
                    let _ = me.cast(DeploymentMsg::CallbackDone(d));
                });
            }
            Effect::DeleteRecord => self.spawn_call(
                myself,
                async move { lc.cluster.delete_record(&ns, &name).await },
                DeploymentMsg::RecordDeleted,
            ),
            Effect::DeleteChildren => {
                let id = self.id.clone();
                let uid = self.record.metadata.uid.clone().unwrap_or_default();
                let resource = self.record.spec.resource_name.clone();
                self.spawn_call(
                    myself,
                    async move {
                        lc.cluster
                            .delete_children(&ns, id.as_str(), &uid, &resource)
                            .await
                    },
                    DeploymentMsg::ChildrenDeleted,
                )
            }
            Effect::RemoveFinalizer => {
                let rec = self.record.clone();
                self.spawn_call(
                    myself,
                    async move { lc.cluster.remove_finalizer(&rec).await },
                    DeploymentMsg::FinalizerRemoved,
                )
            }
            Effect::WakeIn(d) => {
                let me = myself.clone();
                self.tasks.spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = me.cast(DeploymentMsg::Tick);
                });
            }
            Effect::Report(event) => self.report(event),
            Effect::Stop => myself.stop(Some(FINISHED.into())),
        }
    }

    /// Records a Kubernetes Event on the record, as a task of this actor; a failure only costs the Event.
    fn record_event(&mut self, reason: &'static str, message: String, warning: bool) {
        let (lc, rec) = (self.lc.clone(), self.record.clone());
        self.tasks.spawn(async move {
            if let Err(e) = lc
                .cluster
                .record_event(&rec, reason, &message, warning)
                .await
            {
                tracing::debug!(error = %e, reason, "could not record an Event");
            }
        });
    }

    fn report(&mut self, event: Event) {
        let id = self.id.to_string();
        let id = id.as_str();
        match event {
            Event::Phase { from, to } => {
                tracing::info!(deployment_id = %id, %from, %to, detail = %self.machine.message(), "phase");
                self.record_event(
                    to.as_str(),
                    self.machine.message().to_string(),
                    to == Phase::Failed,
                );
            }
            Event::Provisioned => {
                if let Some(t) = &self.record.metadata.creation_timestamp {
                    let secs = (jiff::Timestamp::now() - t.0)
                        .total(jiff::Unit::Second)
                        .unwrap_or(0.0);
                    crate::metrics::provision_duration(
                        &self.record.spec.resource_type,
                        secs.max(0.0),
                    );
                }
            }
            Event::DriftDetected => {
                crate::metrics::drift_detected(&self.ns, &self.record.spec.resource_type);
                tracing::warn!(deployment_id = %id, "drift detected");
            }
            Event::CallbackRetrying {
                phase,
                attempt,
                reason,
                delay,
            } => {
                crate::metrics::callback(phase.as_str(), "retry");
                tracing::info!(deployment_id = %id, %phase, attempt, %reason, retry_in = ?delay, "callback not delivered");
            }
            Event::CallbackFinished {
                phase,
                how,
                attempts,
                reason,
            } => {
                crate::metrics::callback(phase.as_str(), how.as_str());
                match how {
                    Finish::Delivered => {}
                    Finish::Rejected => {
                        tracing::error!(deployment_id = %id, %phase, attempts, reason = ?reason, "callback refused by the receiver; not retrying");
                        self.record_event(
                            "CallbackRefused",
                            format!(
                                "the {phase} callback was refused: {}",
                                reason.unwrap_or_default()
                            ),
                            true,
                        );
                    }
                    Finish::Abandoned => {
                        tracing::error!(
                            deployment_id = %id, %phase, attempts, reason = ?reason,
                            lifetime = ?self.lc.timing.delivery_lifetime,
                            "callback abandoned: not delivered within the delivery lifetime"
                        );
                        self.record_event(
                            "CallbackAbandoned",
                            format!(
                                "the {phase} callback was not delivered in {attempts} attempts: {}",
                                reason.unwrap_or_default()
                            ),
                            true,
                        );
                    }
                }
            }
            Event::CallFailed { call, error } => {
                tracing::warn!(deployment_id = %id, call, %error, "Kubernetes call failed; retrying")
            }
            Event::RecordVanished => {
                tracing::warn!(deployment_id = %id, "record removed without deprovisioning")
            }
        }
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
        let id = DeploymentId::parse(&rec.spec.deployment_id)
            .ok_or_else(|| format!("invalid deployment id {:?}", rec.spec.deployment_id))?;
        let (machine, fx) = Machine::resume(
            args.lc.timing.clone(),
            facts(&rec),
            stored(&rec),
            Now::real(),
        );
        let mut st = DeploymentState {
            lc: args.lc.clone(),
            throttle: args.throttle,
            id,
            ns: rec.metadata.namespace.clone().unwrap_or_default(),
            record_name: rec.metadata.name.clone().unwrap_or_default(),
            record: rec,
            machine,
            seen: Seen::default(),
            queued: 0,
            tasks: JoinSet::new(),
        };
        // Effects run here, in the supervisor's spawn order, so that the namespace queue is FIFO by acceptance.
        st.run(&myself, fx);
        let resync = st.lc.resync;
        let me = myself.clone();
        st.tasks.spawn(async move {
            let mut tick = tokio::time::interval(resync);
            tick.tick().await;
            loop {
                tick.tick().await;
                if me.cast(DeploymentMsg::Tick).is_err() {
                    return;
                }
            }
        });
        let _ = myself.cast(DeploymentMsg::Observe);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Reap finished tasks so the set holds only what still runs.
        while st.tasks.try_join_next().is_some() {}
        let input = match msg {
            DeploymentMsg::Record(rec) => {
                // A record listed again after a watch restart can be older than one already seen.
                if rv(&rec) < rv(&st.record) {
                    return Ok(());
                }
                st.record = rec;
                Input::Record(facts(&st.record))
            }
            DeploymentMsg::RecordGone => Input::RecordGone,
            DeploymentMsg::Observe | DeploymentMsg::Tick => Input::Tick,
            DeploymentMsg::Permit(Permit::Granted) => Input::PermitGranted,
            DeploymentMsg::Permit(Permit::Queued(position)) => Input::PermitQueued {
                position,
                limit: st.lc.namespace_concurrency,
                namespace: st.ns.clone(),
            },
            DeploymentMsg::Applied(r) => Input::Applied(call_result(&r)),
            DeploymentMsg::StatusWritten(r) => Input::StatusWritten(call_result(&r)),
            DeploymentMsg::CallbackDone(result) => {
                use rand::Rng;
                Input::CallbackDone {
                    result,
                    jitter: rand::rng().random_range(0.8..1.2),
                }
            }
            DeploymentMsg::RecordDeleted(r) => Input::RecordDeleted(call_result(&r)),
            DeploymentMsg::ChildrenDeleted(r) => Input::ChildrenDeleted(call_result(&r)),
            DeploymentMsg::FinalizerRemoved(r) => Input::FinalizerRemoved(call_result(&r)),
        };
        st.step(&myself, input);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        st.tasks.abort_all();
        st.count_queued(0);
        // Idempotent: returns a permit still held or leaves the queue.
        let _ = st.throttle.cast(ThrottleMsg::Release {
            namespace: st.ns.clone(),
            id: st.id.clone(),
        });
        Ok(())
    }
}
