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
    /// An object the deployment would write belongs to someone else: never retried, never overwritten.
    Foreign(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unavailable(m) | CallError::Rejected(m) | CallError::Foreign(m) => {
                f.write_str(m)
            }
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

mod machine;
mod outbox;
mod resume;

pub use outbox::Outbox;
#[cfg(test)]
use outbox::backoff;

#[cfg(test)]
mod tests;
