//! Tests of the pure lifecycle with a fake clock: every stage transition, deprovision and record loss in every
//! stage, restarts in every stage, timeouts and grace periods, and a randomised check that no input sequence
//! sends a phase twice or out of order or ends a deprovision without `Deleted`.

use super::*;

fn t0() -> Now {
    Now {
        at: Instant::now(),
        utc: "2026-12-01T00:00:00Z".parse().unwrap(),
    }
}

fn settings() -> Settings {
    // The defaults (provision timeout 600 s, failure grace 120 s, call retry 2 s, 3 rejections, backoff from
    // 1 s, lifetime 1 h, delete recheck 10 s), with a lower backoff cap so the lifetime test takes few steps.
    Settings {
        callback_max_backoff: Duration::from_secs(60),
        ..Settings::default()
    }
}

fn live() -> RecordFacts {
    RecordFacts {
        generation: Some(1),
        spec_readable: true,
        ..Default::default()
    }
}

fn deprovisioned() -> RecordFacts {
    RecordFacts {
        deprovision_requested: true,
        ..live()
    }
}

fn terminating(foreground_pending: bool) -> RecordFacts {
    RecordFacts {
        terminating: true,
        foreground_pending,
        ..deprovisioned()
    }
}

fn seen(ready: usize, replicas: u32) -> Seen {
    Seen {
        replicas,
        ready_pods: ready,
        workload_ready: ready >= replicas as usize,
        remaining_children: 5,
        ..Default::default()
    }
}

/// A machine under test: the clock, and what it asked for.
struct Rig {
    m: Machine,
    now: Now,
    fx: Vec<Effect>,
}

impl Rig {
    fn new(facts: RecordFacts, stored: Stored) -> Rig {
        let now = t0();
        let (m, fx) = Machine::resume(settings(), facts, stored, now);
        Rig { m, now, fx }
    }

    fn fresh() -> Rig {
        Rig::new(live(), Stored::default())
    }

    fn go(&mut self, input: Input) -> Vec<Effect> {
        let fx = self.m.step(input, self.now);
        self.fx.extend(fx.clone());
        fx
    }

    fn wait(&mut self, d: Duration) -> Vec<Effect> {
        self.now = self.now.plus(d);
        self.go(Input::Tick)
    }

    /// Takes the effects of one kind asked for so far.
    fn took(&mut self, pred: impl Fn(&Effect) -> bool) -> Vec<Effect> {
        let (hit, rest): (Vec<Effect>, Vec<Effect>) = self.fx.drain(..).partition(|e| pred(e));
        self.fx = rest;
        hit
    }

    fn asked(&mut self, e: &Effect) -> bool {
        !self.took(|x| x == e).is_empty()
    }

    /// The callbacks asked for, by phase.
    fn deliveries(&mut self) -> Vec<Phase> {
        self.took(|e| matches!(e, Effect::Deliver(_)))
            .into_iter()
            .map(|e| match e {
                Effect::Deliver(n) => n.phase,
                _ => unreachable!(),
            })
            .collect()
    }

    /// Answers every callback in flight as delivered, until none is left.
    fn deliver_all(&mut self) -> Vec<Phase> {
        let mut told = Vec::new();
        loop {
            let d = self.deliveries();
            if d.is_empty() {
                return told;
            }
            for p in d {
                told.push(p);
                self.go(Input::CallbackDone {
                    result: Delivery::Delivered,
                    jitter: 1.0,
                });
            }
        }
    }

    /// Answers every status write as done.
    fn ack_status(&mut self) -> Option<StatusView> {
        let mut last = None;
        loop {
            let writes = self.took(|e| matches!(e, Effect::WriteStatus(_)));
            if writes.is_empty() {
                return last;
            }
            for w in writes {
                if let Effect::WriteStatus(v) = w {
                    last = Some(v);
                }
                self.go(Input::StatusWritten(Ok(())));
            }
        }
    }

    /// Provisions to Ready and tells both callbacks.
    fn provision_until_ready(&mut self, replicas: u32) {
        self.go(Input::PermitGranted);
        assert!(self.asked(&Effect::Apply));
        self.go(Input::Applied(Ok(())));
        self.go(Input::Seen(seen(replicas as usize, replicas)));
        assert_eq!(self.m.phase(), Phase::Ready);
        assert_eq!(self.deliver_all(), [Phase::Provisioning, Phase::Ready]);
        self.ack_status();
    }

    /// Drives a deprovision that has been asked for to its end and returns the callbacks told meanwhile.
    fn finish_deprovision(&mut self) -> Vec<Phase> {
        let mut told = self.deliver_all();
        if self.m.stage() != &Stage::Departing {
            if self.asked(&Effect::DeleteRecord) {
                self.go(Input::RecordDeleted(Ok(())));
            }
            self.go(Input::Record(terminating(true)));
            assert_eq!(self.m.phase(), Phase::Deleting, "the GC is still at work");
            self.go(Input::Record(terminating(false)));
            self.go(Input::Seen(Seen {
                remaining_children: 0,
                ..seen(0, 1)
            }));
            assert_eq!(self.m.phase(), Phase::Deleted);
            told.extend(self.deliver_all());
            self.ack_status();
            assert!(self.asked(&Effect::RemoveFinalizer), "{:?}", self.m);
            self.go(Input::FinalizerRemoved(Ok(())));
            self.go(Input::RecordGone);
        }
        told.extend(self.deliver_all());
        assert!(self.asked(&Effect::Stop), "stops: {:?}", self.m);
        told
    }
}

#[test]
fn a_new_deployment_queues_applies_waits_and_is_ready() {
    let mut r = Rig::fresh();
    assert!(r.asked(&Effect::RequestPermit));
    assert_eq!(r.m.phase(), Phase::Provisioning);
    r.go(Input::PermitQueued {
        position: 3,
        limit: 10,
        namespace: "team".into(),
    });
    assert_eq!(r.m.stage(), &Stage::Queued { position: Some(3) });
    assert!(
        r.m.message().starts_with("Queued: position 3"),
        "{}",
        r.m.message()
    );
    assert!(r.deliveries().is_empty(), "nothing is told while queued");
    r.go(Input::PermitGranted);
    assert!(r.asked(&Effect::Apply));
    assert_eq!(r.deliveries(), [Phase::Provisioning]);
    r.go(Input::Applied(Ok(())));
    r.go(Input::Seen(seen(1, 3)));
    assert_eq!(r.m.message(), "Waiting for replicas: 1 of 3 ready");
    assert_eq!(
        r.m.health(),
        Health::Unknown,
        "no health while provisioning"
    );
    r.go(Input::Seen(seen(3, 3)));
    assert_eq!(
        r.m.stage(),
        &Stage::Ready {
            health: Health::Healthy
        }
    );
    assert!(r.asked(&Effect::ReleasePermit));
    assert!(r.asked(&Effect::Report(Event::Provisioned)));
    // Ready waits for Provisioning to be acknowledged: one callback in flight at a time.
    assert!(r.deliveries().is_empty());
    r.go(Input::CallbackDone {
        result: Delivery::Delivered,
        jitter: 1.0,
    });
    assert_eq!(r.deliveries(), [Phase::Ready]);
    r.go(Input::CallbackDone {
        result: Delivery::Delivered,
        jitter: 1.0,
    });
    let v = r.ack_status().expect("status written");
    assert_eq!(
        (v.phase, v.health, v.reached_ready, v.last_notified),
        (Phase::Ready, Health::Healthy, true, Some(Phase::Ready))
    );
    // A replica lost: Degraded, then Healthy again, Ready all along.
    r.go(Input::Seen(seen(2, 3)));
    assert_eq!(r.m.health(), Health::Degraded);
    assert_eq!(r.m.message(), "Degraded: 2 of 3 replicas ready");
    r.go(Input::Seen(seen(3, 3)));
    assert_eq!(r.m.health(), Health::Healthy);
    assert!(r.deliveries().is_empty(), "health is not a phase");
}

#[test]
fn status_is_written_once_per_change_and_retried_after_a_failure() {
    let mut r = Rig::fresh();
    let first = r.took(|e| matches!(e, Effect::WriteStatus(_)));
    assert_eq!(first.len(), 1, "a new record gets its first status");
    r.go(Input::Tick);
    assert!(
        r.took(|e| matches!(e, Effect::WriteStatus(_))).is_empty(),
        "one write in flight"
    );
    r.go(Input::StatusWritten(Err(CallError::Unavailable(
        "down".into(),
    ))));
    assert!(
        r.took(|e| matches!(e, Effect::WriteStatus(_))).is_empty(),
        "not before the retry delay"
    );
    r.wait(Duration::from_secs(2));
    assert_eq!(r.took(|e| matches!(e, Effect::WriteStatus(_))).len(), 1);
    r.go(Input::StatusWritten(Ok(())));
    r.go(Input::Tick);
    assert!(
        r.took(|e| matches!(e, Effect::WriteStatus(_))).is_empty(),
        "nothing changed"
    );
}

#[test]
fn apply_failures_retry_and_repeated_rejections_fail() {
    let mut r = Rig::fresh();
    r.go(Input::PermitGranted);
    assert!(r.asked(&Effect::Apply));
    r.go(Input::Applied(Err(CallError::Unavailable(
        "refused".into(),
    ))));
    assert!(!r.asked(&Effect::Apply), "not at once");
    r.wait(Duration::from_secs(2));
    assert!(r.asked(&Effect::Apply), "after the retry delay");
    for _ in 0..2 {
        r.go(Input::Applied(Err(CallError::Rejected("invalid".into()))));
        assert_eq!(r.m.phase(), Phase::Provisioning);
        r.wait(Duration::from_secs(2));
        assert!(r.asked(&Effect::Apply));
    }
    r.go(Input::Applied(Err(CallError::Rejected("invalid".into()))));
    assert_eq!(r.m.phase(), Phase::Failed);
    assert!(
        r.m.message().contains("keeps rejecting"),
        "{}",
        r.m.message()
    );
    assert!(r.asked(&Effect::ReleasePermit));
    assert_eq!(r.deliver_all(), [Phase::Provisioning, Phase::Failed]);
}

#[test]
fn the_provisioning_timeout_fails_a_deployment_that_never_gets_ready() {
    let mut r = Rig::fresh();
    r.go(Input::PermitGranted);
    r.go(Input::Applied(Ok(())));
    r.go(Input::Seen(seen(1, 3)));
    r.wait(Duration::from_secs(599));
    assert_eq!(r.m.phase(), Phase::Provisioning);
    r.wait(Duration::from_secs(1));
    assert_eq!(r.m.phase(), Phase::Failed);
    assert_eq!(
        r.m.message(),
        "provisioning timed out after 600s (1 of 3 replicas ready)"
    );
    assert!(r.asked(&Effect::ReleasePermit));
}

#[test]
fn a_pod_problem_fails_only_after_the_grace_period_and_a_new_problem_restarts_it() {
    let mut r = Rig::fresh();
    r.go(Input::PermitGranted);
    r.go(Input::Applied(Ok(())));
    let stuck = |reason: &str| Seen {
        problem: Some(PodProblem {
            pod: "db-0".into(),
            reason: reason.into(),
            message: "back-off pulling".into(),
        }),
        ..seen(0, 1)
    };
    r.go(Input::Seen(stuck("ErrImagePull")));
    assert!(
        r.asked(&Effect::WakeIn(Duration::from_secs(120))),
        "a timer for the grace period"
    );
    assert_eq!(r.m.message(), "Waiting for pod db-0: ErrImagePull");
    r.wait(Duration::from_secs(100));
    r.go(Input::Seen(stuck("ImagePullBackOff")));
    r.wait(Duration::from_secs(100));
    assert_eq!(
        r.m.phase(),
        Phase::Provisioning,
        "a different problem restarts the grace period"
    );
    r.wait(Duration::from_secs(20));
    assert_eq!(r.m.phase(), Phase::Failed);
    assert_eq!(
        r.m.message(),
        "pod db-0 is in ImagePullBackOff: back-off pulling"
    );
}

#[test]
fn a_problem_that_clears_does_not_fail() {
    let mut r = Rig::fresh();
    r.go(Input::PermitGranted);
    r.go(Input::Applied(Ok(())));
    r.go(Input::Seen(Seen {
        problem: Some(PodProblem {
            pod: "db-0".into(),
            reason: "CrashLoopBackOff".into(),
            message: String::new(),
        }),
        ..seen(0, 1)
    }));
    r.wait(Duration::from_secs(60));
    r.go(Input::Seen(seen(0, 1)));
    r.wait(Duration::from_secs(100));
    assert_eq!(r.m.phase(), Phase::Provisioning);
    r.go(Input::Seen(seen(1, 1)));
    assert_eq!(r.m.phase(), Phase::Ready);
}

/// Brings a fresh machine to the named stage.
fn in_stage(stage: &str) -> Rig {
    let mut r = Rig::fresh();
    match stage {
        "queued" => {}
        "applying" => {
            r.go(Input::PermitGranted);
        }
        "awaiting ready" => {
            r.go(Input::PermitGranted);
            r.go(Input::Applied(Ok(())));
            r.go(Input::Seen(seen(0, 1)));
        }
        "ready" => r.provision_until_ready(1),
        "failed" => {
            r.go(Input::PermitGranted);
            r.go(Input::Applied(Ok(())));
            r.wait(Duration::from_secs(600));
            assert_eq!(r.m.phase(), Phase::Failed);
        }
        other => panic!("no stage {other}"),
    }
    r
}

const STAGES: [&str; 5] = ["queued", "applying", "awaiting ready", "ready", "failed"];

#[test]
fn deprovision_in_every_stage_ends_deleted_with_the_finalizer_removed() {
    for stage in STAGES {
        let mut r = in_stage(stage);
        let before = r.deliver_all();
        r.ack_status();
        let held = matches!(stage, "queued" | "applying" | "awaiting ready");
        r.took(|e| *e == Effect::ReleasePermit);
        r.go(Input::Record(deprovisioned()));
        assert_eq!(r.m.phase(), Phase::Deleting, "{stage}");
        assert_eq!(
            r.asked(&Effect::ReleasePermit),
            held,
            "{stage}: the permit goes back"
        );
        if stage == "applying" {
            // The apply in flight must answer before anything is deleted, or it could re-create objects.
            assert!(!r.asked(&Effect::DeleteRecord), "{stage}");
            r.go(Input::Applied(Ok(())));
        }
        let after = r.finish_deprovision();
        let mut told = before.clone();
        told.extend(after);
        let want: &[Phase] = match stage {
            "queued" => &[Phase::Deleting, Phase::Deleted],
            "failed" => &[
                Phase::Provisioning,
                Phase::Failed,
                Phase::Deleting,
                Phase::Deleted,
            ],
            // (Provisioning and Ready were told on the way to Ready.)
            "ready" => &[Phase::Deleting, Phase::Deleted],
            _ => &[Phase::Provisioning, Phase::Deleting, Phase::Deleted],
        };
        assert_eq!(told, want, "{stage}");
        // A late permit after the deprovision is handed straight back.
        let fx = r.go(Input::PermitGranted);
        assert!(fx.is_empty(), "{stage}: nothing after stopping: {fx:?}");
    }
}

#[test]
fn a_permit_granted_after_a_deprovision_is_returned() {
    let mut r = in_stage("queued");
    r.go(Input::Record(deprovisioned()));
    r.took(|_| true);
    r.go(Input::PermitGranted);
    assert!(r.asked(&Effect::ReleasePermit));
    assert!(
        !r.asked(&Effect::Apply),
        "no apply for a deployment being deleted"
    );
}

#[test]
fn a_kubectl_delete_without_foreground_has_the_broker_delete_the_children() {
    let mut r = in_stage("ready");
    r.go(Input::Record(RecordFacts {
        terminating: true,
        ..live()
    }));
    assert_eq!(r.m.phase(), Phase::Deleting);
    assert!(!r.asked(&Effect::DeleteRecord), "already being deleted");
    assert!(r.asked(&Effect::DeleteChildren));
    r.go(Input::ChildrenDeleted(Ok(())));
    // Children linger (a slow GC): asked again after the recheck delay, not before.
    r.wait(Duration::from_secs(5));
    assert!(!r.asked(&Effect::DeleteChildren));
    r.wait(Duration::from_secs(5));
    assert!(r.asked(&Effect::DeleteChildren));
    r.go(Input::ChildrenDeleted(Ok(())));
    r.go(Input::Seen(Seen::default()));
    assert_eq!(r.m.phase(), Phase::Deleted);
}

#[test]
fn a_record_delete_that_does_not_show_is_asked_again() {
    let mut r = in_stage("ready");
    r.go(Input::Record(deprovisioned()));
    assert!(r.asked(&Effect::DeleteRecord));
    r.go(Input::RecordDeleted(Err(CallError::Unavailable(
        "timeout".into(),
    ))));
    r.wait(Duration::from_secs(2));
    assert!(r.asked(&Effect::DeleteRecord), "retried after a failure");
    r.go(Input::RecordDeleted(Ok(())));
    r.wait(Duration::from_secs(10));
    assert!(
        r.asked(&Effect::DeleteRecord),
        "asked again when the watch never showed it"
    );
}

#[test]
fn the_record_disappearing_in_every_stage_still_tells_deleted_and_stops() {
    for stage in STAGES {
        let mut r = in_stage(stage);
        let before = r.deliver_all();
        r.took(|e| matches!(e, Effect::WriteStatus(_)) || *e == Effect::ReleasePermit);
        r.go(Input::RecordGone);
        assert_eq!(r.m.phase(), Phase::Deleted, "{stage}");
        assert!(r.asked(&Effect::DeleteChildren), "{stage}");
        assert!(r.asked(&Effect::Report(Event::RecordVanished)), "{stage}");
        let held = matches!(stage, "queued" | "applying" | "awaiting ready");
        assert_eq!(r.asked(&Effect::ReleasePermit), held, "{stage}");
        assert!(
            r.took(|e| matches!(e, Effect::WriteStatus(_))).is_empty(),
            "{stage}: no record to write"
        );
        let after = r.deliver_all();
        assert_eq!(
            after,
            [Phase::Deleting, Phase::Deleted],
            "{stage} (before: {before:?})"
        );
        assert!(r.asked(&Effect::Stop), "{stage}");
    }
    // While deleting, and while finalizing.
    let mut r = in_stage("ready");
    r.go(Input::Record(deprovisioned()));
    r.deliver_all();
    r.go(Input::RecordGone);
    assert_eq!(r.deliver_all(), [Phase::Deleted]);
    assert!(r.asked(&Effect::Stop));
    let mut r = in_stage("ready");
    r.go(Input::Record(terminating(false)));
    r.go(Input::Seen(Seen::default()));
    assert_eq!(r.m.phase(), Phase::Deleted);
    r.go(Input::RecordGone);
    assert_eq!(r.deliver_all(), [Phase::Deleting, Phase::Deleted]);
    assert!(r.asked(&Effect::Stop));
}

fn stored(phase: Phase, notified: Option<Phase>) -> Stored {
    Stored {
        phase: Some(phase),
        health: None,
        message: Some("as stored".into()),
        last_updated: Some("2026-11-30T00:00:00Z".parse().unwrap()),
        reached_ready: phase == Phase::Ready,
        observed_generation: Some(1),
        last_notified: notified,
    }
}

#[test]
fn a_restart_resumes_every_stage_and_sends_only_what_is_owed() {
    use Phase::*;
    let cases: &[(Phase, Option<Phase>, RecordFacts, &[Phase])] = &[
        (Provisioning, None, live(), &[]),
        (Provisioning, Some(Provisioning), live(), &[]),
        (Ready, None, live(), &[Provisioning, Ready]),
        (Ready, Some(Provisioning), live(), &[Ready]),
        (Ready, Some(Ready), live(), &[]),
        (Failed, Some(Provisioning), live(), &[Failed]),
        (Failed, Some(Failed), live(), &[]),
        (Deleting, Some(Ready), deprovisioned(), &[Deleting]),
        (Deleting, Some(Deleting), deprovisioned(), &[]),
        (Deleted, Some(Deleting), terminating(false), &[Deleted]),
        (Deleted, Some(Deleted), terminating(false), &[]),
    ];
    for (phase, notified, facts, owed) in cases {
        let mut r = Rig::new(facts.clone(), stored(*phase, *notified));
        assert_eq!(r.m.phase(), *phase, "{phase:?}/{notified:?}");
        assert_eq!(
            r.asked(&Effect::RequestPermit),
            *phase == Provisioning,
            "{phase:?}: only a deployment still provisioning queues again"
        );
        assert_eq!(r.deliver_all(), *owed, "{phase:?}/{notified:?}");
        if *phase == Provisioning {
            // It provisions again from the start (applying is idempotent) and tells Provisioning only once.
            r.go(Input::PermitGranted);
            assert!(r.asked(&Effect::Apply));
            let again = r.deliver_all();
            let want: &[Phase] = if notified.is_some() {
                &[]
            } else {
                &[Provisioning]
            };
            assert_eq!(again, want);
        }
    }
    // A restart while Deleted was told but the finalizer not yet removed: the finalizer goes.
    let mut r = Rig::new(terminating(false), stored(Deleted, Some(Deleted)));
    r.go(Input::Seen(Seen::default()));
    assert!(r.asked(&Effect::RemoveFinalizer), "{:?}", r.m);
    // A record whose spec cannot be read fails instead of provisioning, and says why.
    let mut r = Rig::new(
        RecordFacts {
            spec_readable: false,
            ..live()
        },
        Stored::default(),
    );
    assert_eq!(r.m.phase(), Failed);
    assert_eq!(r.m.message(), UNREADABLE_SPEC);
    assert!(!r.asked(&Effect::RequestPermit));
    assert_eq!(r.deliver_all(), [Failed]);
}

#[test]
fn callbacks_back_off_then_are_abandoned_after_the_lifetime_and_deprovision_finishes() {
    let mut r = in_stage("ready");
    r.go(Input::Record(deprovisioned()));
    let mut attempts = 0;
    let mut delays = Vec::new();
    loop {
        let d = r.deliveries();
        if d.is_empty() {
            break;
        }
        assert_eq!(d, [Phase::Deleting]);
        attempts += 1;
        let fx = r.go(Input::CallbackDone {
            result: Delivery::Retry("connection refused".into()),
            jitter: 1.0,
        });
        match fx.iter().find_map(|e| match e {
            Effect::WakeIn(d) => Some(*d),
            _ => None,
        }) {
            Some(d) => {
                delays.push(d);
                r.wait(d);
            }
            None => break,
        }
        assert!(attempts < 100, "bounded");
    }
    assert_eq!(&delays[..4], [1, 2, 4, 8].map(Duration::from_secs));
    assert!(
        delays.iter().all(|d| *d <= Duration::from_secs(60)),
        "capped"
    );
    let total: Duration = delays.iter().sum();
    assert_eq!(
        total,
        Duration::from_secs(3600),
        "the last attempt is at the deadline"
    );
    assert!(
        r.took(|e| matches!(
            e,
            Effect::Report(Event::CallbackFinished {
                phase: Phase::Deleting,
                how: Finish::Abandoned,
                ..
            })
        ))
        .len()
            == 1
    );
    assert_eq!(r.m.notified(), Some(Phase::Deleting));
    // Deleted is then attempted, abandoned in its turn, and the finalizer still goes.
    if r.asked(&Effect::DeleteRecord) {
        r.go(Input::RecordDeleted(Ok(())));
    }
    r.go(Input::Record(terminating(false)));
    r.go(Input::Seen(Seen::default()));
    assert_eq!(r.deliveries(), [Phase::Deleted]);
    r.go(Input::CallbackDone {
        result: Delivery::Retry("connection refused".into()),
        jitter: 1.0,
    });
    r.wait(Duration::from_secs(3600));
    assert_eq!(
        r.deliveries(),
        [Phase::Deleted],
        "one last attempt at the deadline"
    );
    r.go(Input::CallbackDone {
        result: Delivery::Retry("connection refused".into()),
        jitter: 1.0,
    });
    r.ack_status();
    assert!(r.asked(&Effect::RemoveFinalizer));
}

#[test]
fn a_refused_callback_is_not_retried() {
    let mut r = Rig::fresh();
    r.go(Input::PermitGranted);
    assert_eq!(r.deliveries(), [Phase::Provisioning]);
    r.go(Input::CallbackDone {
        result: Delivery::Rejected("HTTP 404".into()),
        jitter: 1.0,
    });
    assert!(r.deliveries().is_empty());
    assert_eq!(r.m.notified(), Some(Phase::Provisioning));
    // A stale answer (none in flight) changes nothing.
    let before = r.m.clone();
    r.go(Input::CallbackDone {
        result: Delivery::Delivered,
        jitter: 1.0,
    });
    assert_eq!(r.m, before);
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let s = settings();
    assert_eq!(backoff(&s, 1, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(&s, 3, 1.0), Duration::from_secs(4));
    assert_eq!(backoff(&s, 3, 0.8), Duration::from_millis(3200));
    assert_eq!(backoff(&s, 30, 1.2), Duration::from_secs(72));
}

/// A tiny deterministic generator, so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A simulated cluster and manager around one machine: answers its calls late, out of order, and wrongly
/// at random, while the world changes under it; then turns cooperative so the run can finish.
struct World {
    m: Machine,
    now: Now,
    told: Vec<Phase>,
    /// Calls in flight, answered later in any order.
    pending: Vec<Effect>,
    facts: RecordFacts,
    deprovision_at: Option<usize>,
    record_deleted: bool,
    record_gone: bool,
    finalizer_removed: bool,
    stopped: bool,
}

impl World {
    fn feed(&mut self, input: Input) {
        let fx = self.m.step(input, self.now);
        for e in fx {
            match e {
                Effect::Stop => {
                    assert!(!self.stopped, "Stop is asked once");
                    self.stopped = true;
                }
                Effect::Deliver(_)
                | Effect::Apply
                | Effect::WriteStatus(_)
                | Effect::DeleteRecord
                | Effect::DeleteChildren
                | Effect::RemoveFinalizer
                | Effect::RequestPermit => self.pending.push(e),
                Effect::ReleasePermit | Effect::WakeIn(_) | Effect::Report(_) => {}
            }
        }
    }

    fn answer(&mut self, i: usize, rng: &mut Rng, cooperative: bool) {
        let e = self.pending.swap_remove(i);
        let fail = !cooperative && rng.chance(30);
        let err = || CallError::Unavailable("flaky".into());
        let input = match e {
            Effect::RequestPermit => {
                if !cooperative && rng.chance(50) {
                    // Queued: the throttle grants it later.
                    self.pending.push(Effect::RequestPermit);
                    Input::PermitQueued {
                        position: 1 + rng.below(5) as usize,
                        limit: 2,
                        namespace: "team".into(),
                    }
                } else {
                    Input::PermitGranted
                }
            }
            Effect::Apply => Input::Applied(if fail { Err(err()) } else { Ok(()) }),
            Effect::WriteStatus(_) => Input::StatusWritten(if fail { Err(err()) } else { Ok(()) }),
            Effect::Deliver(n) => {
                let result = if fail {
                    if rng.chance(20) {
                        Delivery::Rejected("HTTP 400".into())
                    } else {
                        Delivery::Retry("HTTP 503".into())
                    }
                } else {
                    Delivery::Delivered
                };
                if matches!(result, Delivery::Delivered | Delivery::Rejected(_)) {
                    self.told.push(n.phase);
                }
                Input::CallbackDone {
                    result,
                    jitter: 0.8 + (rng.below(40) as f64) / 100.0,
                }
            }
            Effect::DeleteRecord => {
                if !fail {
                    self.record_deleted = true;
                }
                Input::RecordDeleted(if fail { Err(err()) } else { Ok(()) })
            }
            Effect::DeleteChildren => {
                Input::ChildrenDeleted(if fail { Err(err()) } else { Ok(()) })
            }
            Effect::RemoveFinalizer => {
                if !fail {
                    self.finalizer_removed = true;
                }
                Input::FinalizerRemoved(if fail { Err(err()) } else { Ok(()) })
            }
            _ => unreachable!(),
        };
        self.feed(input);
    }
}

#[test]
fn no_input_sequence_tells_a_phase_twice_or_out_of_order_or_skips_deleted() {
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let now = t0();
        let (m, fx) = Machine::resume(settings(), live(), Stored::default(), now);
        let mut w = World {
            m,
            now,
            told: Vec::new(),
            pending: Vec::new(),
            facts: live(),
            deprovision_at: Some(rng.below(400) as usize),
            record_deleted: false,
            record_gone: false,
            finalizer_removed: false,
            stopped: false,
        };
        let vanish = rng.chance(10);
        for e in fx {
            w.pending.push(e);
        }
        let mut gc_done = false;
        for round in 0..3000 {
            if w.stopped {
                break;
            }
            let cooperative = round >= 200;
            if w.deprovision_at == Some(round) {
                w.deprovision_at = None;
                w.facts.deprovision_requested = true;
                w.feed(Input::Record(w.facts.clone()));
            }
            if vanish && round == 120 && !w.record_gone {
                w.record_gone = true;
                w.feed(Input::RecordGone);
                continue;
            }
            // The cluster's own progress: the delete shows, the GC works, the record goes.
            if w.record_deleted && !w.facts.terminating && !w.record_gone {
                w.facts.terminating = true;
                w.facts.foreground_pending = true;
                w.feed(Input::Record(w.facts.clone()));
            }
            if w.facts.terminating && w.facts.foreground_pending && (cooperative || rng.chance(20))
            {
                w.facts.foreground_pending = false;
                gc_done = true;
                w.feed(Input::Record(w.facts.clone()));
            }
            if w.finalizer_removed && !w.record_gone {
                w.record_gone = true;
                w.feed(Input::RecordGone);
            }
            let pods = if gc_done { 0 } else { rng.below(4) as usize };
            let s = Seen {
                replicas: 3,
                ready_pods: pods,
                workload_ready: pods >= 3,
                problem: None,
                remaining_children: if gc_done { 0 } else { 4 },
                drifted: rng.chance(5),
            };
            w.feed(Input::Seen(s));
            if !w.pending.is_empty() && (cooperative || rng.chance(70)) {
                let i = rng.below(w.pending.len() as u64) as usize;
                w.answer(i, &mut rng, cooperative);
            }
            w.now = w.now.plus(Duration::from_millis(rng.below(3000)));
            w.feed(Input::Tick);
        }
        let ranks: Vec<u8> = w.told.iter().map(|p| rank(*p)).collect();
        assert!(
            ranks.windows(2).all(|p| p[0] < p[1]),
            "seed {seed}: told {:?}",
            w.told
        );
        assert!(
            w.stopped,
            "seed {seed}: the deprovision finished: {:?}",
            w.m
        );
        assert_eq!(
            w.told.last(),
            Some(&Phase::Deleted),
            "seed {seed}: Deleted is the last thing told: {:?}",
            w.told
        );
        assert!(
            w.record_gone || w.finalizer_removed,
            "seed {seed}: the finalizer went"
        );
    }
}
