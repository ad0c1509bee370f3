//! The deployment lifecycle as a pure state machine: [`Machine::step`] takes one [`Input`] and the time, changes
//! the state and returns the [`Effect`]s the actor shell must carry out. No I/O, no clock, no randomness: the
//! shell passes in the time ([`Now`]) and the jitter of a retry, so every transition is unit-tested with a
//! fake clock.
//!
//! Progress is one [`Stage`]; what cannot happen together cannot be written down (a provisioning permit is
//! held exactly in `Applying` and `AwaitingReady`, a record delete is only ever in flight in `Deleting`, the
//! finalizer is only removed from `Finalizing`). Two things run beside the stage: the ordered callback
//! [`Outbox`] and the status write, each with at most one call in flight.
//!
//! Callbacks follow the phases `Provisioning → Ready | Failed → Deleting → Deleted`: a phase is queued only
//! when it comes later than every phase told or queued, so none is sent twice or out of order, and a
//! deprovision always ends in `Deleted` (delivered, refused by the receiver, or abandoned after the delivery
//! lifetime) before the finalizer is removed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::domain::{Health, Phase};

/// The time as the shell sees it: a monotonic instant for timers, and the wall clock for what is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For deadlines and backoff.
    pub at: Instant,
    /// For `lastUpdated` and callback times.
    pub utc: jiff::Timestamp,
}

impl Now {
    /// The real time (only the shell calls this).
    pub fn real() -> Self {
        Now {
            at: Instant::now(),
            utc: jiff::Timestamp::now(),
        }
    }

    /// This time moved on by `d`.
    #[cfg(test)]
    pub fn plus(self, d: Duration) -> Self {
        Now {
            at: self.at + d,
            utc: self
                .utc
                .checked_add(jiff::SignedDuration::try_from(d).unwrap_or_default())
                .unwrap_or(self.utc),
        }
    }
}

/// Timings of the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// From the start of provisioning to Ready, at most; then Failed.
    pub provision_timeout: Duration,
    /// How long a pod may stay in one failure state (ErrImagePull, CrashLoopBackOff, …) before Failed.
    pub failure_grace: Duration,
    /// The wait before a Kubernetes call that failed is made again.
    pub call_retry: Duration,
    /// Consecutive rejections of the workload by the API server after which the deployment is Failed.
    pub apply_rejections: u32,
    /// The first callback retry delay (doubling per attempt, with jitter).
    pub callback_initial_backoff: Duration,
    /// The longest callback retry delay.
    pub callback_max_backoff: Duration,
    /// How long one callback is retried, from its first attempt, before it is abandoned.
    pub delivery_lifetime: Duration,
    /// How long a delete that was accepted may take to show before it is asked for again.
    pub delete_recheck: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            provision_timeout: Duration::from_secs(600),
            failure_grace: Duration::from_secs(120),
            call_retry: Duration::from_secs(2),
            apply_rejections: 3,
            callback_initial_backoff: Duration::from_secs(1),
            callback_max_backoff: Duration::from_secs(300),
            delivery_lifetime: Duration::from_secs(3600),
            delete_recheck: Duration::from_secs(10),
        }
    }
}

/// What the intent record says, as far as the lifecycle is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFacts {
    /// `metadata.generation`, reported back as `observedGeneration`.
    pub generation: Option<i64>,
    /// `spec.deprovision` is set.
    pub deprovision_requested: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// The `foregroundDeletion` finalizer is still there: the garbage collector is removing the children.
    pub foreground_pending: bool,
    /// The stored spec could be read (a record written by hand may hold anything).
    pub spec_readable: bool,
}

impl RecordFacts {
    fn deprovisioning(&self) -> bool {
        self.deprovision_requested || self.terminating
    }
}

/// A pod that will not come up by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub pod: String,
    pub reason: String,
    pub message: String,
}

/// What runs in the cluster for this deployment (from the reflector stores).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Replicas the deployment should have.
    pub replicas: u32,
    /// Pods Running and Ready.
    pub ready_pods: usize,
    /// The workload is ready: every replica ready and the latest spec observed.
    pub workload_ready: bool,
    /// The first pod stuck in a failure state.
    pub problem: Option<PodProblem>,
    /// Objects of any kind still labelled with the deployment id.
    pub remaining_children: usize,
    /// What runs differs from what was asked.
    pub drifted: bool,
}

/// Why a Kubernetes call failed, as far as the lifecycle cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Timeout, connection failure, 5xx, 429: worth trying again as is.
    Unavailable(String),
    /// The API server refused the request (4xx): trying again as is may not help.
    Rejected(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unavailable(m) | CallError::Rejected(m) => f.write_str(m),
        }
    }
}

/// The result of one callback attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A 2xx answer.
    Delivered,
    /// Worth retrying: connect error, timeout, 408, 429, 5xx.
    Retry(String),
    /// Not worth retrying: another 4xx, or a URL the policy refuses.
    Rejected(String),
}

/// One thing that happened, as the shell reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The intent record (re)appeared or changed.
    Record(RecordFacts),
    /// The intent record is gone from the cluster.
    RecordGone,
    /// What runs changed (or was looked at again).
    Seen(Seen),
    /// Waiting for a provisioning permit in `namespace` at this 1-based position, behind at most `limit`
    /// running.
    PermitQueued {
        position: usize,
        limit: usize,
        namespace: String,
    },
    /// The namespace throttle granted the permit.
    PermitGranted,
    /// Applying the rendered objects finished.
    Applied(Result<(), CallError>),
    /// A status write finished.
    StatusWritten(Result<(), CallError>),
    /// A callback attempt finished; `jitter` in [0.8, 1.2) spreads the retry (drawn by the shell).
    CallbackDone { result: Delivery, jitter: f64 },
    /// The record delete (foreground) finished.
    RecordDeleted(Result<(), CallError>),
    /// Deleting the children by label finished.
    ChildrenDeleted(Result<(), CallError>),
    /// Removing the broker's finalizer finished.
    FinalizerRemoved(Result<(), CallError>),
    /// Time passed (a timer or the periodic resync).
    Tick,
}

/// A callback to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub phase: Phase,
    pub message: String,
    /// When the phase was reached.
    pub time: jiff::Timestamp,
    /// 1-based.
    pub attempt: u32,
}

/// How a callback's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Delivered,
    Rejected,
    Abandoned,
}

impl Finish {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Delivered => "delivered",
            Finish::Rejected => "rejected",
            Finish::Abandoned => "abandoned",
        }
    }
}

/// Something worth a log line or a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The phase changed.
    Phase { from: Phase, to: Phase },
    /// Ready for the first time.
    Provisioned,
    /// What runs started to differ from what was asked.
    DriftDetected,
    /// A callback attempt failed and will be retried after `delay`.
    CallbackRetrying {
        phase: Phase,
        attempt: u32,
        reason: String,
        delay: Duration,
    },
    /// A callback is done with.
    CallbackFinished {
        phase: Phase,
        how: Finish,
        attempts: u32,
        reason: Option<String>,
    },
    /// A Kubernetes call failed and will be retried.
    CallFailed { call: &'static str, error: String },
    /// The record disappeared before the deprovisioning finished.
    RecordVanished,
}

/// What the record's status should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    pub phase: Phase,
    pub health: Health,
    pub message: String,
    pub last_updated: jiff::Timestamp,
    /// Endpoint, port and secret are reported once the deployment was Ready.
    pub reached_ready: bool,
    pub observed_generation: Option<i64>,
    pub last_notified: Option<Phase>,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Ask the namespace throttle for a provisioning permit.
    RequestPermit,
    /// Give the permit back, or leave the queue.
    ReleasePermit,
    /// Render and apply every object (idempotent); answer with [`Input::Applied`].
    Apply,
    /// Write the record's status; answer with [`Input::StatusWritten`].
    WriteStatus(StatusView),
    /// Send one callback attempt; answer with [`Input::CallbackDone`].
    Deliver(Notice),
    /// Delete the record with foreground propagation; answer with [`Input::RecordDeleted`].
    DeleteRecord,
    /// Delete every object labelled with the deployment id; answer with [`Input::ChildrenDeleted`].
    DeleteChildren,
    /// Remove the broker's finalizer from the record; answer with [`Input::FinalizerRemoved`].
    RemoveFinalizer,
    /// Send [`Input::Tick`] after this long.
    WakeIn(Duration),
    /// Log or count this.
    Report(Event),
    /// The deployment is done: stop the actor.
    Stop,
}

/// One Kubernetes call's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Not made yet.
    Idle,
    /// Waiting for its answer.
    InFlight,
    /// Failed; make it again at this time.
    RetryAt(Instant),
    /// Succeeded at this time.
    Done(Instant),
}

impl Call {
    /// Whether the call should be made now: not made, due for a retry, or done long enough ago
    /// (`recheck`) that its effect should have shown.
    fn due(self, now: Instant, recheck: Option<Duration>) -> bool {
        match self {
            Call::Idle => true,
            Call::InFlight => false,
            Call::RetryAt(t) => now >= t,
            Call::Done(t) => recheck.is_some_and(|r| now >= t + r),
        }
    }
}

/// A pod problem and since when it is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    pub problem: PodProblem,
    pub since: Instant,
}

/// Where a deployment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for a provisioning permit; the queue position once the throttle has said it.
    Queued { position: Option<usize> },
    /// Permit held; the objects are being applied.
    Applying {
        started: Instant,
        call: Call,
        rejections: u32,
    },
    /// Permit held; objects applied, waiting for every replica to be ready.
    AwaitingReady {
        started: Instant,
        trouble: Option<Trouble>,
    },
    /// Provisioned; health follows the pods.
    Ready { health: Health },
    /// Provisioning gave up; the reason is the message.
    Failed,
    /// Deprovisioning: the record is deleted (foreground), then the children go.
    Deleting {
        /// An apply was in flight when the deprovision came: its answer is awaited first, so that it cannot
        /// re-create objects after they were deleted.
        draining_apply: bool,
        record_delete: Call,
        children_delete: Call,
    },
    /// Everything is gone; `Deleted` is being told, then the finalizer goes.
    Finalizing { finalizer: Call },
    /// The record is gone: only the callbacks still owed remain.
    Departing,
    /// Nothing left to do.
    Done,
}

impl Stage {
    /// The phase this stage reports.
    pub fn phase(&self) -> Phase {
        match self {
            Stage::Queued { .. } | Stage::Applying { .. } | Stage::AwaitingReady { .. } => {
                Phase::Provisioning
            }
            Stage::Ready { .. } => Phase::Ready,
            Stage::Failed => Phase::Failed,
            Stage::Deleting { .. } => Phase::Deleting,
            Stage::Finalizing { .. } | Stage::Departing | Stage::Done => Phase::Deleted,
        }
    }

    fn holds_permit(&self) -> bool {
        matches!(self, Stage::Applying { .. } | Stage::AwaitingReady { .. })
    }

    fn in_queue(&self) -> bool {
        matches!(self, Stage::Queued { .. })
    }
}

/// Callback order: a phase is sent only after every phase of a lower rank.
fn rank(p: Phase) -> u8 {
    match p {
        Phase::Provisioning => 1,
        Phase::Ready | Phase::Failed => 2,
        Phase::Deleting => 3,
        Phase::Deleted => 4,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    phase: Phase,
    message: String,
    time: jiff::Timestamp,
    attempts: u32,
    first_attempt: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    Idle,
    InFlight,
    BackingOff(Instant),
}

/// The deployment's callbacks, one at a time, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    queue: VecDeque<Pending>,
    sending: Sending,
}

impl Outbox {
    fn new() -> Self {
        Outbox {
            queue: VecDeque::new(),
            sending: Sending::Idle,
        }
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.sending != Sending::InFlight
    }

    /// Callbacks waiting or in flight.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    fn last_phase(&self) -> Option<Phase> {
        self.queue.back().map(|p| p.phase)
    }
}

/// The deployment retry delay before attempt `attempt + 1`: doubling from the initial backoff up to the
/// maximum, times `jitter`.
pub fn backoff(s: &Settings, attempt: u32, jitter: f64) -> Duration {
    let exp = s
        .callback_initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(s.callback_max_backoff)
        .mul_f64(jitter.clamp(0.5, 1.5))
}

/// What the record's status said when the actor (re)started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub phase: Option<Phase>,
    pub health: Option<Health>,
    pub message: Option<String>,
    pub last_updated: Option<jiff::Timestamp>,
    pub reached_ready: bool,
    pub observed_generation: Option<i64>,
    pub last_notified: Option<Phase>,
}

/// One deployment's lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    settings: Settings,
    stage: Stage,
    facts: RecordFacts,
    seen: Seen,
    message: String,
    last_changed: jiff::Timestamp,
    notified: Option<Phase>,
    outbox: Outbox,
    status: Call,
    written: Option<StatusView>,
    reached_ready: bool,
    drifted: bool,
    stopped: bool,
}

/// The message of a deployment that could not be read back from its record.
pub const UNREADABLE_SPEC: &str = "the stored spec cannot be read; deprovision and provision again";

impl Machine {
    /// The state of a deployment whose record says `facts` and `stored`, and the first effects: a new
    /// deployment queues for a permit; a restarted one resumes where its status stood and owes the manager
    /// every phase it was not told.
    pub fn resume(
        settings: Settings,
        facts: RecordFacts,
        stored: Stored,
        now: Now,
    ) -> (Machine, Vec<Effect>) {
        let mut fx = Vec::new();
        let phase = stored.phase.unwrap_or(Phase::Provisioning);
        let stage = if facts.deprovisioning() {
            match phase {
                Phase::Deleted => Stage::Finalizing {
                    finalizer: Call::Idle,
                },
                _ => Stage::Deleting {
                    draining_apply: false,
                    record_delete: Call::Idle,
                    children_delete: Call::Idle,
                },
            }
        } else {
            match phase {
                Phase::Provisioning if facts.spec_readable => Stage::Queued { position: None },
                Phase::Provisioning | Phase::Failed => Stage::Failed,
                Phase::Ready => Stage::Ready {
                    health: stored.health.unwrap_or(Health::Unknown),
                },
                Phase::Deleting => Stage::Deleting {
                    draining_apply: false,
                    record_delete: Call::Idle,
                    children_delete: Call::Idle,
                },
                Phase::Deleted => Stage::Finalizing {
                    finalizer: Call::Idle,
                },
            }
        };
        let unreadable = stage == Stage::Failed && phase == Phase::Provisioning;
        let message = if unreadable {
            UNREADABLE_SPEC.to_string()
        } else {
            stored
                .message
                .clone()
                .unwrap_or_else(|| "Provisioning request accepted; waiting to start".to_string())
        };
        let written = match (stored.phase, &stored.message, stored.last_updated) {
            (Some(phase), Some(message), Some(last_updated)) => Some(StatusView {
                phase,
                health: stored.health.unwrap_or(Health::Unknown),
                message: message.clone(),
                last_updated,
                reached_ready: stored.reached_ready,
                observed_generation: stored.observed_generation,
                last_notified: stored.last_notified,
            }),
            _ => None,
        };
        let mut m = Machine {
            settings,
            stage,
            facts,
            seen: Seen::default(),
            message,
            last_changed: if unreadable {
                now.utc
            } else {
                stored.last_updated.unwrap_or(now.utc)
            },
            notified: stored.last_notified,
            outbox: Outbox::new(),
            status: Call::Idle,
            written,
            reached_ready: stored.reached_ready || stored.last_notified == Some(Phase::Ready),
            drifted: false,
            stopped: false,
        };
        if m.stage.in_queue() {
            fx.push(Effect::RequestPermit);
        }
        // What the manager is owed: every phase on the path to where the deployment stands, after the last
        // one it was told.
        let path: &[Phase] = match (&m.stage, phase) {
            (Stage::Queued { .. }, _) => &[],
            (Stage::Failed, _) if unreadable => &[Phase::Failed],
            (Stage::Ready { .. }, _) => &[Phase::Provisioning, Phase::Ready],
            (Stage::Failed, _) => &[Phase::Provisioning, Phase::Failed],
            (Stage::Deleting { .. }, _) => &[Phase::Deleting],
            (_, _) => &[Phase::Deleting, Phase::Deleted],
        };
        for p in path {
            m.enqueue(*p, now);
        }
        m.advance(now, &mut fx);
        (m, fx)
    }

    /// The current stage.
    #[cfg(test)]
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.stage.phase()
    }

    /// The current message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The last phase the manager was told (delivered, refused or abandoned).
    #[cfg(test)]
    pub fn notified(&self) -> Option<Phase> {
        self.notified
    }

    /// The callbacks still to send.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The deployment's health: Healthy or Degraded once Ready, Unknown before and after.
    pub fn health(&self) -> Health {
        match self.stage {
            Stage::Ready { health } => health,
            _ => Health::Unknown,
        }
    }

    /// Takes one input at time `now` and returns what to do.
    pub fn step(&mut self, input: Input, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.stopped {
            return fx;
        }
        self.take(input, now, &mut fx);
        self.advance(now, &mut fx);
        fx
    }

    /// Applies an input's news to the state.
    fn take(&mut self, input: Input, now: Now, fx: &mut Vec<Effect>) {
        let retry_at = now.at + self.settings.call_retry;
        match input {
            Input::Record(facts) => self.facts = facts,
            Input::Seen(seen) => self.seen = seen,
            Input::Tick => {}
            Input::RecordGone => match self.stage {
                Stage::Done | Stage::Departing => {}
                // Deleted is queued or told already; the finalizer is gone, so is the record.
                Stage::Finalizing { .. } => self.stage = Stage::Departing,
                _ => {
                    fx.push(Effect::Report(Event::RecordVanished));
                    self.leave_permit(fx);
                    self.enqueue(Phase::Deleting, now);
                    // The children carry ownerReferences to the record, so the garbage collector removes
                    // them; the delete by label makes sure of it.
                    fx.push(Effect::DeleteChildren);
                    self.set_stage(Stage::Departing, fx);
                    self.set_message("Resource deleted", now);
                    self.enqueue(Phase::Deleted, now);
                }
            },
            Input::PermitQueued {
                position,
                limit,
                namespace,
            } => {
                if let Stage::Queued { position: p } = &mut self.stage {
                    *p = Some(position);
                    self.set_message(
                        format!(
                            "Queued: position {position} in namespace {namespace} (at most {limit} provision at once)"
                        ),
                        now,
                    );
                }
            }
            Input::PermitGranted => match self.stage {
                Stage::Queued { .. } => {
                    self.set_stage(
                        Stage::Applying {
                            started: now.at,
                            call: Call::Idle,
                            rejections: 0,
                        },
                        fx,
                    );
                    self.set_message("Creating the workload", now);
                    self.enqueue(Phase::Provisioning, now);
                }
                // Granted after the deployment moved on (a deprovision while queued): not needed.
                _ if !self.stage.holds_permit() => fx.push(Effect::ReleasePermit),
                _ => {}
            },
            Input::Applied(result) => match self.stage.clone() {
                Stage::Applying {
                    started,
                    rejections,
                    ..
                } => match result {
                    Ok(()) => {
                        self.stage = Stage::AwaitingReady {
                            started,
                            trouble: None,
                        };
                    }
                    Err(e) => {
                        let rejections = match e {
                            CallError::Rejected(_) => rejections + 1,
                            CallError::Unavailable(_) => rejections,
                        };
                        if rejections >= self.settings.apply_rejections {
                            self.fail(
                                format!("the Kubernetes API keeps rejecting the workload: {e}"),
                                now,
                                fx,
                            );
                        } else {
                            self.stage = Stage::Applying {
                                started,
                                call: Call::RetryAt(retry_at),
                                rejections,
                            };
                            fx.push(Effect::Report(Event::CallFailed {
                                call: "apply",
                                error: e.to_string(),
                            }));
                            fx.push(Effect::WakeIn(self.settings.call_retry));
                        }
                    }
                },
                Stage::Deleting {
                    record_delete,
                    children_delete,
                    ..
                } => {
                    self.stage = Stage::Deleting {
                        draining_apply: false,
                        record_delete,
                        children_delete,
                    }
                }
                _ => {}
            },
            Input::StatusWritten(result) => {
                self.status = match result {
                    Ok(()) => Call::Done(now.at),
                    Err(e) => {
                        self.written = None;
                        fx.push(Effect::Report(Event::CallFailed {
                            call: "status",
                            error: e.to_string(),
                        }));
                        fx.push(Effect::WakeIn(self.settings.call_retry));
                        Call::RetryAt(retry_at)
                    }
                }
            }
            Input::CallbackDone { result, jitter } => self.callback_done(result, jitter, now, fx),
            Input::RecordDeleted(result) => {
                let next = self.settings.answer("record delete", result, now, fx);
                if let Stage::Deleting { record_delete, .. } = &mut self.stage {
                    *record_delete = next;
                }
            }
            Input::ChildrenDeleted(result) => {
                let next = self.settings.answer("children delete", result, now, fx);
                if let Stage::Deleting {
                    children_delete, ..
                } = &mut self.stage
                {
                    *children_delete = next;
                }
            }
            Input::FinalizerRemoved(result) => {
                let next = self.settings.answer("finalizer removal", result, now, fx);
                if let Stage::Finalizing { finalizer } = &mut self.stage {
                    *finalizer = next;
                }
            }
        }
    }

    /// Takes the next steps given what is known now.
    fn advance(&mut self, now: Now, fx: &mut Vec<Effect>) {
        if self.facts.deprovisioning()
            && matches!(
                self.stage,
                Stage::Queued { .. }
                    | Stage::Applying { .. }
                    | Stage::AwaitingReady { .. }
                    | Stage::Ready { .. }
                    | Stage::Failed
            )
        {
            let draining_apply = matches!(
                self.stage,
                Stage::Applying {
                    call: Call::InFlight,
                    ..
                }
            );
            self.leave_permit(fx);
            self.set_stage(
                Stage::Deleting {
                    draining_apply,
                    record_delete: Call::Idle,
                    children_delete: Call::Idle,
                },
                fx,
            );
            self.set_message("Deprovisioning: deleting the workload and its storage", now);
            self.enqueue(Phase::Deleting, now);
        }
        let s = self.settings.clone();
        match self.stage.clone() {
            Stage::Queued { .. } | Stage::Failed => {}
            Stage::Applying {
                started,
                call,
                rejections,
            } => {
                if call.due(now.at, None) {
                    self.stage = Stage::Applying {
                        started,
                        call: Call::InFlight,
                        rejections,
                    };
                    fx.push(Effect::Apply);
                    fx.push(Effect::WakeIn(s.provision_timeout));
                }
                self.check_timeout(started, now, fx);
            }
            Stage::AwaitingReady { started, trouble } => {
                self.await_ready(started, trouble, now, fx)
            }
            Stage::Ready { health } => {
                let h = Health::of(Phase::Ready, self.seen.ready_pods, self.seen.replicas);
                if h != health {
                    self.stage = Stage::Ready { health: h };
                    let msg = match h {
                        Health::Healthy => "Database is running and healthy".to_string(),
                        _ => format!(
                            "Degraded: {} of {} replicas ready",
                            self.seen.ready_pods, self.seen.replicas
                        ),
                    };
                    self.set_message(msg, now);
                }
                if self.seen.drifted && !self.drifted {
                    fx.push(Effect::Report(Event::DriftDetected));
                }
                self.drifted = self.seen.drifted;
            }
            Stage::Deleting {
                draining_apply,
                record_delete,
                children_delete,
            } => self.delete(draining_apply, record_delete, children_delete, now, fx),
            Stage::Finalizing { .. } | Stage::Departing | Stage::Done => {}
        }
        self.finish_step(now, fx)
    }

    fn await_ready(
        &mut self,
        started: Instant,
        trouble: Option<Trouble>,
        now: Now,
        fx: &mut Vec<Effect>,
    ) {
        if self.seen.workload_ready {
            self.leave_permit(fx);
            self.set_stage(
                Stage::Ready {
                    health: Health::Healthy,
                },
                fx,
            );
            self.reached_ready = true;
            fx.push(Effect::Report(Event::Provisioned));
            self.set_message("Database provisioned and healthy", now);
            self.enqueue(Phase::Ready, now);
            return;
        }
        let (ready, replicas) = (self.seen.ready_pods, self.seen.replicas);
        match self.seen.problem.clone() {
            Some(problem) => {
                let since = match trouble {
                    Some(t) if t.problem == problem => t.since,
                    _ => {
                        fx.push(Effect::WakeIn(self.settings.failure_grace));
                        now.at
                    }
                };
                self.stage = Stage::AwaitingReady {
                    started,
                    trouble: Some(Trouble {
                        problem: problem.clone(),
                        since,
                    }),
                };
                if now.at >= since + self.settings.failure_grace {
                    let detail = if problem.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", problem.message)
                    };
                    let msg = format!("pod {} is in {}{detail}", problem.pod, problem.reason);
                    return self.fail(msg, now, fx);
                }
                self.set_message(
                    format!("Waiting for pod {}: {}", problem.pod, problem.reason),
                    now,
                );
            }
            None => {
                self.stage = Stage::AwaitingReady {
                    started,
                    trouble: None,
                };
                self.set_message(
                    format!("Waiting for replicas: {ready} of {replicas} ready"),
                    now,
                );
            }
        }
        self.check_timeout(started, now, fx);
    }

    fn delete(
        &mut self,
        draining_apply: bool,
        mut record_delete: Call,
        mut children_delete: Call,
        now: Now,
        fx: &mut Vec<Effect>,
    ) {
        let recheck = self.settings.delete_recheck;
        if draining_apply {
            // Wait for the apply's answer before anything is deleted, so it cannot re-create objects.
            return;
        }
        if !self.facts.terminating {
            if record_delete.due(now.at, Some(recheck)) {
                record_delete = Call::InFlight;
                fx.push(Effect::DeleteRecord);
                fx.push(Effect::WakeIn(recheck));
            }
        } else {
            let remaining = self.seen.remaining_children;
            if !self.facts.foreground_pending && remaining == 0 {
                self.set_stage(
                    Stage::Finalizing {
                        finalizer: Call::Idle,
                    },
                    fx,
                );
                self.set_message("Resource deleted", now);
                self.enqueue(Phase::Deleted, now);
                return;
            }
            // Without foreground propagation (a `kubectl delete`), or once the garbage collector is done,
            // whatever still carries the deployment's label is deleted by the broker.
            if !self.facts.foreground_pending && children_delete.due(now.at, Some(recheck)) {
                children_delete = Call::InFlight;
                fx.push(Effect::DeleteChildren);
                fx.push(Effect::WakeIn(recheck));
            }
            self.set_message(
                format!("Deprovisioning: waiting for {remaining} objects to be removed"),
                now,
            );
        }
        self.stage = Stage::Deleting {
            draining_apply,
            record_delete,
            children_delete,
        };
    }

    /// Callbacks, status, the finalizer and stopping: what every step ends with.
    fn finish_step(&mut self, now: Now, fx: &mut Vec<Effect>) {
        self.pump(now, fx);
        if !matches!(self.stage, Stage::Departing | Stage::Done) {
            self.sync_status(now, fx);
        }
        let retry = self.settings.delete_recheck;
        let told = self.notified == Some(Phase::Deleted) && self.outbox.is_idle();
        let status_current = matches!(self.status, Call::Done(_) | Call::Idle)
            && self.written.as_ref() == Some(&self.view());
        if let Stage::Finalizing { finalizer } = &mut self.stage
            && told
            && status_current
            && finalizer.due(now.at, Some(retry))
        {
            *finalizer = Call::InFlight;
            fx.push(Effect::RemoveFinalizer);
            fx.push(Effect::WakeIn(retry));
        }
        if self.stage == Stage::Departing && self.outbox.is_idle() {
            self.stage = Stage::Done;
        }
        if self.stage == Stage::Done && !self.stopped {
            self.stopped = true;
            fx.push(Effect::Stop);
        }
    }

    fn check_timeout(&mut self, started: Instant, now: Now, fx: &mut Vec<Effect>) {
        let limit = self.settings.provision_timeout;
        if now.at >= started + limit {
            let msg = format!(
                "provisioning timed out after {}s ({} of {} replicas ready)",
                limit.as_secs(),
                self.seen.ready_pods,
                self.seen.replicas
            );
            self.fail(msg, now, fx);
        }
    }

    fn fail(&mut self, message: String, now: Now, fx: &mut Vec<Effect>) {
        self.leave_permit(fx);
        self.set_stage(Stage::Failed, fx);
        self.set_message(message, now);
        self.enqueue(Phase::Failed, now);
    }

    /// Returns the permit or leaves the queue, if the stage has either.
    fn leave_permit(&mut self, fx: &mut Vec<Effect>) {
        if self.stage.holds_permit() || self.stage.in_queue() {
            fx.push(Effect::ReleasePermit);
        }
    }

    fn set_stage(&mut self, stage: Stage, fx: &mut Vec<Effect>) {
        let (from, to) = (self.stage.phase(), stage.phase());
        if from != to {
            fx.push(Effect::Report(Event::Phase { from, to }));
        }
        self.stage = stage;
    }

    fn set_message(&mut self, message: impl Into<String>, now: Now) {
        let message = message.into();
        if self.message != message {
            self.message = message;
            self.last_changed = now.utc;
        }
    }

    /// Queues a callback for `phase` unless the manager was told it or a later one, or it is queued.
    fn enqueue(&mut self, phase: Phase, now: Now) {
        let latest = self.outbox.last_phase().or(self.notified);
        if latest.is_some_and(|l| rank(l) >= rank(phase)) {
            return;
        }
        self.outbox.queue.push_back(Pending {
            phase,
            message: self.message.clone(),
            time: now.utc,
            attempts: 0,
            first_attempt: None,
        });
    }

    fn pump(&mut self, now: Now, fx: &mut Vec<Effect>) {
        let ready = match self.outbox.sending {
            Sending::Idle => true,
            Sending::InFlight => false,
            Sending::BackingOff(t) => now.at >= t,
        };
        if !ready {
            return;
        }
        let Some(head) = self.outbox.queue.front_mut() else {
            self.outbox.sending = Sending::Idle;
            return;
        };
        head.attempts += 1;
        head.first_attempt.get_or_insert(now.at);
        self.outbox.sending = Sending::InFlight;
        fx.push(Effect::Deliver(Notice {
            phase: head.phase,
            message: head.message.clone(),
            time: head.time,
            attempt: head.attempts,
        }));
    }

    fn callback_done(&mut self, result: Delivery, jitter: f64, now: Now, fx: &mut Vec<Effect>) {
        if self.outbox.sending != Sending::InFlight {
            return;
        }
        let Some(head) = self.outbox.queue.front() else {
            self.outbox.sending = Sending::Idle;
            return;
        };
        let (phase, attempts) = (head.phase, head.attempts);
        let first = head.first_attempt.unwrap_or(now.at);
        let finished = match result {
            Delivery::Delivered => Some((Finish::Delivered, None)),
            Delivery::Rejected(why) => Some((Finish::Rejected, Some(why))),
            Delivery::Retry(why) => {
                let deadline = first + self.settings.delivery_lifetime;
                if now.at >= deadline {
                    Some((Finish::Abandoned, Some(why)))
                } else {
                    // The last attempt is made at the deadline, not after it.
                    let delay = backoff(&self.settings, attempts, jitter).min(deadline - now.at);
                    self.outbox.sending = Sending::BackingOff(now.at + delay);
                    fx.push(Effect::WakeIn(delay));
                    fx.push(Effect::Report(Event::CallbackRetrying {
                        phase,
                        attempt: attempts,
                        reason: why,
                        delay,
                    }));
                    None
                }
            }
        };
        if let Some((how, reason)) = finished {
            self.outbox.queue.pop_front();
            self.outbox.sending = Sending::Idle;
            self.notified = Some(phase);
            fx.push(Effect::Report(Event::CallbackFinished {
                phase,
                how,
                attempts,
                reason,
            }));
        }
    }

    /// What the status should say now.
    pub fn view(&self) -> StatusView {
        StatusView {
            phase: self.phase(),
            health: self.health(),
            message: self.message.clone(),
            last_updated: self.last_changed,
            reached_ready: self.reached_ready,
            observed_generation: self.facts.generation,
            last_notified: self.notified,
        }
    }

    fn sync_status(&mut self, now: Now, fx: &mut Vec<Effect>) {
        let want = self.view();
        if self.written.as_ref() == Some(&want) || !self.status.due(now.at, Some(Duration::ZERO)) {
            return;
        }
        self.written = Some(want.clone());
        self.status = Call::InFlight;
        fx.push(Effect::WriteStatus(want));
    }
}

impl Settings {
    /// The next state of a call that answered.
    fn answer(
        &self,
        what: &'static str,
        result: Result<(), CallError>,
        now: Now,
        fx: &mut Vec<Effect>,
    ) -> Call {
        match result {
            Ok(()) => Call::Done(now.at),
            Err(e) => {
                fx.push(Effect::Report(Event::CallFailed {
                    call: what,
                    error: e.to_string(),
                }));
                fx.push(Effect::WakeIn(self.call_retry));
                Call::RetryAt(now.at + self.call_retry)
            }
        }
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
