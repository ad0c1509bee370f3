//! The node `kubesim-node`: a scheduler step that binds pods to it, and a kwok-like kubelet that runs them.
//!
//! Owns every pod's `spec.nodeName` binding and its status as a kubelet reports it: Pending with
//! `ContainerCreating`, then Running and Ready after the readiness delay (with jitter); pod and host IPs,
//! `startTime`, container statuses with `image`, `imageID` and `containerID`, the pod conditions with their
//! transition times; pods owned by a Job finish (Succeeded) after a short run; the faults of
//! `kube-system/kubesim-faults` (see `podfaults`); and the last step of graceful deletion.
//!
//! No containers run, so every duration is simulated and compressed:
//! - a pod starts `ready_delay` plus up to half of it again (jitter) plus the faults' `readyDelay` after it was
//!   admitted; a Job's pod runs for `ready_delay` and exits 0;
//! - a pod being deleted is removed (`gracePeriodSeconds: 0`) after `ready_delay` or its grace period, whichever is
//!   shorter, not after the full grace period: nothing runs that needs the time to stop, and tests stay fast;
//! - `ErrImagePull` shows for `ready_delay` before it settles to `ImagePullBackOff`;
//! - a crash-looping container restarts after a back-off that starts at `ready_delay` and doubles up to one minute
//!   (upstream: 10 s doubling to 5 min), while its waiting message keeps upstream's steady-state text `back-off 5m0s`.
//!
//! The kubelet's memory of a pod (when it starts, its restarts) lives here, keyed by uid, as a real kubelet's
//! runtime state does; after a kubesim restart a pod already running is adopted as it stands.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::events::{self, Kind, Occurrence};
use super::podfaults::{Matched, PodFaults};
use super::{
    Controller, WorkQueue, condition_json, controller_ref, delete, hex64, is_of, is_terminal,
    key_of, str_at, update, write_status,
};
use crate::faults::{FAULTS_CONFIGMAP, FAULTS_NAMESPACE};
use crate::meta;
use crate::realpods::{ContainerReport, PodCidr, Report, Runtime, State, Terminated, plan};
use crate::registry::ResourceDef;
use crate::store::{Event, EventType, Inner, ObjKey};
use tokio::sync::mpsc;

/// The one node; it is seeded by the store.
pub(crate) const NODE_NAME: &str = "kubesim-node";
/// The node's InternalIP, as the seeded Node reports it.
const HOST_IP: &str = crate::realpods::HOST_IP;
/// Field managers, as upstream's components record themselves.
const KUBELET: &str = "kubelet";
const SCHEDULER: &str = "kube-scheduler";
/// Pods naming another scheduler are left alone, as the default scheduler does.
const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// How often an unschedulable pod is tried again (upstream's backoff queue retries within seconds).
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(1);
/// The longest simulated crash back-off.
const CRASH_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// The shortest simulated delays, so that a zero `ready_delay` still shows each state for a moment.
const MIN_STEP: Duration = Duration::from_millis(20);

/// The simulated durations, all derived from the `ready_delay` option.
#[derive(Clone, Copy, Debug)]
struct Timing {
    ready_delay: Duration,
}

impl Timing {
    fn start_delay(&self, extra: Duration) -> Duration {
        let ms = self.ready_delay.as_millis() as u64;
        let jitter = if ms >= 2 {
            rand::rng().random_range(0..=ms / 2)
        } else {
            0
        };
        self.ready_delay + Duration::from_millis(jitter) + extra
    }

    fn step(&self) -> Duration {
        self.ready_delay.max(MIN_STEP)
    }
}

/// What the kubelet remembers about one pod.
#[derive(Debug)]
struct PodRuntime {
    key: ObjKey,
    ip: String,
    /// `status.startTime`: when the kubelet admitted the pod.
    admitted: String,
    /// When the containers start (image pulled, sandbox up).
    start_at: Instant,
    pull_failed_at: Option<Instant>,
    /// When the current run of the containers started (wall clock), once started.
    run_started: Option<String>,
    restarts: i64,
    /// The previous run: (startedAt, finishedAt).
    last_run: Option<(String, String)>,
    /// While crash-looping: when the next restart happens and the back-off after it.
    crash_next: Option<(Instant, Duration)>,
    /// A Job's pod: when its containers exit 0.
    completes_at: Option<Instant>,
    /// Terminated for good: (succeeded, startedAt, finishedAt).
    done: Option<(bool, String, String)>,
}

/// Where a pod's containers stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Creating,
    PullError { backoff: bool },
    Crashing,
    Running { ready: bool },
    Done { succeeded: bool },
}

/// The scheduler step and the kubelet of `kubesim-node`.
pub(crate) struct Kubelet {
    pods: Arc<ResourceDef>,
    pvcs: Arc<ResourceDef>,
    configmaps: Arc<ResourceDef>,
    timing: Timing,
    faults: PodFaults,
    runtimes: HashMap<String, PodRuntime>,
    /// Deadlines of pods being deleted, by uid.
    terminating: HashMap<String, Instant>,
    /// Pods waiting for a claim to exist, by claim.
    waiting_for_claim: HashMap<ObjKey, BTreeSet<ObjKey>>,
    next_ip: u32,
    cidr: PodCidr,
    /// The container runtime (`--kubelet containers`) and the channel its reports wake pods on.
    real: Option<Arc<Runtime>>,
    wakeups: Option<mpsc::UnboundedReceiver<ObjKey>>,
    /// Pods the container runtime runs or will run: their address and admission time, by uid.
    real_pods: HashMap<String, (String, String)>,
}

impl Kubelet {
    pub(crate) fn new(
        pods: Arc<ResourceDef>,
        pvcs: Arc<ResourceDef>,
        configmaps: Arc<ResourceDef>,
        ready_delay: Duration,
        cidr: PodCidr,
        real: Option<(Arc<Runtime>, mpsc::UnboundedReceiver<ObjKey>)>,
    ) -> Self {
        let (real, wakeups) = match real {
            Some((r, w)) => (Some(r), Some(w)),
            None => (None, None),
        };
        Kubelet {
            cidr,
            real,
            wakeups,
            real_pods: HashMap::new(),
            pods,
            pvcs,
            configmaps,
            timing: Timing { ready_delay },
            faults: PodFaults::default(),
            runtimes: HashMap::new(),
            terminating: HashMap::new(),
            waiting_for_claim: HashMap::new(),
            next_ip: 1,
        }
    }

    fn allocate_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        self.cidr.ip(n)
    }

    /// The scheduler's part: bind an unbound pod to the node once the claims it mounts exist. Returns when to
    /// try again if it could not be bound.
    fn schedule(&mut self, g: &mut Inner, pod: &Value) -> Result<(), Option<Duration>> {
        if str_at(pod, "/spec/schedulerName") != DEFAULT_SCHEDULER {
            return Err(None);
        }
        let ns = meta::namespace(pod);
        let claims: Vec<&str> = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v.pointer("/persistentVolumeClaim/claimName")
                    .and_then(Value::as_str)
            })
            .collect();
        for claim in claims {
            let problem = match g.get(&self.pvcs, ns, claim) {
                Err(_) => Some("not found"),
                Ok(c) if meta::is_deleting(&c) => Some("is being deleted"),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                self.waiting_for_claim
                    .entry((ns.to_string(), claim.to_string()))
                    .or_default()
                    .insert(key_of(pod));
                let msg = format!(
                    "0/1 nodes are available: persistentvolumeclaim \"{claim}\" {problem}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
                );
                let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
                let now = meta::now();
                let mut c = condition_json(
                    Some(&status),
                    "PodScheduled",
                    false,
                    "Unschedulable",
                    &msg,
                    &now,
                );
                c["lastProbeTime"] = Value::Null;
                let told = pod
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|x| x.get("message") == c.get("message")));
                status["conditions"] = json!([c]);
                write_status(g, &self.pods, pod, status, SCHEDULER);
                if !told {
                    events::record(
                        g,
                        pod,
                        Occurrence {
                            kind: Kind::Warning,
                            reason: "FailedScheduling",
                            message: msg,
                            component: DEFAULT_SCHEDULER,
                        },
                    );
                }
                return Err(Some(UNSCHEDULABLE_RETRY));
            }
        }
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = json!(NODE_NAME);
        let Some(bound) = update(g, &self.pods, bound, SCHEDULER) else {
            return Err(Some(super::RETRY_AFTER_ERROR));
        };
        events::record(
            g,
            &bound,
            Occurrence {
                kind: Kind::Normal,
                reason: "Scheduled",
                message: format!(
                    "Successfully assigned {}/{} to {NODE_NAME}",
                    meta::namespace(&bound),
                    meta::name(&bound)
                ),
                component: DEFAULT_SCHEDULER,
            },
        );
        // Upstream's binding sets PodScheduled in the same step; here it is the scheduler's status write.
        let mut status = bound.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut c = condition_json(Some(&status), "PodScheduled", true, "", "", &meta::now());
        c["lastProbeTime"] = Value::Null;
        status["conditions"] = json!([c]);
        write_status(g, &self.pods, &bound, status, SCHEDULER);
        Ok(())
    }

    /// The last step of graceful deletion: once the (compressed) grace period is over, remove the pod.
    fn terminate(&mut self, g: &mut Inner, pod: &Value, now: Instant) -> Option<Duration> {
        if str_at(pod, "/spec/nodeName") != NODE_NAME {
            return None;
        }
        let uid = meta::uid(pod).to_string();
        let grace = super::int_at(pod, "/metadata/deletionGracePeriodSeconds", 0).max(0) as u64;
        if let Some(rt) = &self.real
            && rt.has(&uid)
        {
            // Real containers take the grace period they are given (the runtime wakes the pod when done).
            rt.stop(&uid, Duration::from_secs(grace));
            let report = rt.report(&uid)?;
            if !report.stopped {
                if let Some((ip, admitted)) = self.real_pods.get(&uid) {
                    let status = real_status(pod, &report, ip, admitted, &meta::now());
                    write_status(g, &self.pods, pod, status, KUBELET);
                }
                return Some(Duration::from_secs(1));
            }
            self.real_pods.remove(&uid);
            rt.forget(&uid);
            delete(g, &self.pods, pod, Some(0), None);
            return None;
        }
        let stop = Duration::from_secs(grace).min(self.timing.ready_delay);
        let at = *self.terminating.entry(uid.clone()).or_insert(now + stop);
        if now < at {
            return Some(at - now);
        }
        self.terminating.remove(&uid);
        delete(g, &self.pods, pod, Some(0), None);
        None
    }
}

impl Kubelet {
    /// A pod for the container runtime: start it (once its images, ConfigMaps, Secrets and claims are there) and
    /// write its status from the runtime's report. `None` when the pod is not the runtime's (an image stays
    /// simulated, or it finished before kubesim started): the simulated kubelet takes it.
    fn reconcile_real(
        &mut self,
        g: &mut Inner,
        pod: &Value,
        rt: &Arc<Runtime>,
    ) -> Option<Option<Duration>> {
        let uid = meta::uid(pod).to_string();
        if !rt.has(&uid) {
            if is_terminal(pod)
                || !plan::images_are_real(rt.manifest(), &rt.config().image_dir, pod)
            {
                return None;
            }
            let host_network = pod
                .pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !self.real_pods.contains_key(&uid) {
                let ip = if host_network {
                    HOST_IP.to_string()
                } else {
                    match str_at(pod, "/status/podIP") {
                        "" => self.allocate_ip(),
                        ip => ip.to_string(),
                    }
                };
                let admitted = match str_at(pod, "/status/startTime") {
                    "" => meta::now(),
                    t => t.to_string(),
                };
                self.real_pods.insert(uid.clone(), (ip, admitted));
            }
            let (ip, _) = self.real_pods.get(&uid)?.clone();
            let planned = plan::plan(
                g,
                pod,
                (!host_network).then_some(ip),
                rt.manifest(),
                &rt.config().image_dir,
                &rt.claims_dir(),
            );
            match planned {
                Ok(p) => rt.run(key_of(pod), p),
                Err(blocked) => {
                    let (ip, admitted) = self.real_pods.get(&uid)?.clone();
                    let (reason, message, retry) = match blocked {
                        plan::Blocked::Image(m) => ("ErrImagePull", m, Duration::from_secs(10)),
                        plan::Blocked::Config(m) => {
                            ("CreateContainerConfigError", m, Duration::from_secs(2))
                        }
                    };
                    let report = Report::blocked(pod, reason, &message);
                    let status = real_status(pod, &report, &ip, &admitted, &meta::now());
                    let before = pod.get("status").cloned().unwrap_or(Value::Null);
                    write_status(g, &self.pods, pod, status.clone(), KUBELET);
                    container_events(g, pod, &before, &status);
                    return Some(Some(retry));
                }
            }
        }
        let report = rt.report(&uid)?;
        let (ip, admitted) = self.real_pods.get(&uid)?.clone();
        let status = real_status(pod, &report, &ip, &admitted, &meta::now());
        let before = pod.get("status").cloned().unwrap_or(Value::Null);
        if !write_status(g, &self.pods, pod, status.clone(), KUBELET) {
            return Some(Some(super::RETRY_AFTER_ERROR));
        }
        container_events(g, pod, &before, &status);
        Some(None)
    }
}

/// The pod conditions a kubelet writes (keeping PodScheduled as the scheduler wrote it): the sandbox, then
/// `initialized` and `ready` as (status, reason, message).
fn set_conditions(
    status: &mut Value,
    prev: Option<&Value>,
    wall: &str,
    sandbox: bool,
    initialized: (bool, &str, &str),
    ready: (bool, &str, &str),
) {
    let pc = |ty: &str, ok: bool, reason: &str, msg: &str| {
        let mut c = condition_json(prev, ty, ok, reason, msg, wall);
        c["lastProbeTime"] = Value::Null;
        c
    };
    let scheduled = prev
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
        })
        .cloned()
        .unwrap_or_else(|| pc("PodScheduled", true, "", ""));
    status["conditions"] = json!([
        pc("PodReadyToStartContainers", sandbox, "", ""),
        pc("Initialized", initialized.0, initialized.1, initialized.2),
        pc("Ready", ready.0, ready.1, ready.2),
        pc("ContainersReady", ready.0, ready.1, ready.2),
        scheduled,
    ]);
}

/// The node's and the pod's addresses and the pod's start time.
fn set_addresses(status: &mut Value, ip: &str, admitted: &str) {
    status["hostIP"] = json!(HOST_IP);
    status["hostIPs"] = json!([{"ip": HOST_IP}]);
    status["podIP"] = json!(ip);
    status["podIPs"] = json!([{ "ip": ip }]);
    status["startTime"] = json!(admitted);
}

/// A pod's status from the container runtime's report, as a kubelet computes it (upstream's `getPhase`).
fn real_status(pod: &Value, r: &Report, ip: &str, admitted: &str, wall: &str) -> Value {
    let prev = pod.get("status");
    let mut status = prev.cloned().unwrap_or_else(|| json!({}));
    let policy = match str_at(pod, "/spec/restartPolicy") {
        "" => "Always",
        p => p,
    };
    let exited = |c: &ContainerReport| match &c.state {
        State::Terminated(t) => Some(t.exit_code),
        _ => None,
    };
    let inits_done = r.init.iter().all(|c| exited(c) == Some(0));
    let phase =
        if r.failed.is_some() {
            "Failed"
        } else if !inits_done {
            "Pending"
        } else if r
            .containers
            .iter()
            .any(|c| matches!(c.state, State::Running { .. }))
        {
            "Running"
        } else if !r.containers.is_empty() && r.containers.iter().all(|c| exited(c).is_some()) {
            let all_ok = r.containers.iter().all(|c| exited(c) == Some(0));
            match (policy, all_ok) {
                ("Always", _) => "Running",
                (_, true) => "Succeeded",
                ("Never", false) => "Failed",
                _ => "Running",
            }
        } else if r.containers.iter().all(|c| {
            c.restarts == 0 && c.last.is_none() && matches!(c.state, State::Waiting { .. })
        }) {
            "Pending"
        } else {
            "Running"
        };
    let ready = phase == "Running" && r.containers.iter().all(|c| c.ready);
    let unready: Vec<&str> = r
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let done = matches!(phase, "Succeeded" | "Failed");
    let (ready_reason, ready_msg) = match phase {
        "Succeeded" => ("PodCompleted", String::new()),
        "Failed" => ("PodFailed", String::new()),
        _ if ready => ("", String::new()),
        _ => (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        ),
    };
    let (init_reason, init_msg) = if inits_done || done {
        (
            if done && phase == "Succeeded" {
                "PodCompleted"
            } else {
                ""
            },
            String::new(),
        )
    } else {
        let pending: Vec<&str> = r
            .init
            .iter()
            .filter(|c| exited(c) != Some(0))
            .map(|c| c.name.as_str())
            .collect();
        (
            "ContainersNotInitialized",
            format!("containers with incomplete status: [{}]", pending.join(" ")),
        )
    };
    set_conditions(
        &mut status,
        prev,
        wall,
        r.sandbox_ready,
        (inits_done || done, init_reason, &init_msg),
        (ready, ready_reason, &ready_msg),
    );
    status["phase"] = json!(phase);
    if let Some(m) = &r.failed {
        status["message"] = json!(m);
    }
    set_addresses(&mut status, ip, admitted);
    let report = |c: &ContainerReport| -> Value {
        let (full, image_id) = image_ref(&c.image);
        let terminated = |t: &Terminated| {
            json!({"terminated": {
                "exitCode": t.exit_code, "reason": t.reason, "startedAt": t.started_at,
                "finishedAt": t.finished_at, "containerID": t.container_id,
            }})
        };
        let state = match &c.state {
            State::Waiting { reason, message } if message.is_empty() => {
                json!({"waiting": {"reason": reason}})
            }
            State::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated(t) => terminated(t),
        };
        let pulled = !c.container_id.is_empty();
        let mut s = json!({
            "name": c.name,
            "image": if pulled { full } else { c.image.clone() },
            "imageID": if pulled { image_id } else { String::new() },
            "ready": c.ready,
            "restartCount": c.restarts,
            "started": c.started,
            "state": state,
            "lastState": c.last.as_ref().map(terminated).unwrap_or_else(|| json!({})),
        });
        if pulled {
            s["containerID"] = json!(c.container_id);
        }
        s
    };
    let mut statuses: Vec<Value> = r.containers.iter().map(report).collect();
    statuses.sort_by(|a, b| str_at(a, "/name").cmp(str_at(b, "/name")));
    status["containerStatuses"] = json!(statuses);
    if !r.init.is_empty() {
        status["initContainerStatuses"] = json!(r.init.iter().map(report).collect::<Vec<_>>());
    }
    status
}

impl Controller for Kubelet {
    const NAME: &'static str = "kubelet";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        let cm = g
            .get(&self.configmaps, FAULTS_NAMESPACE, FAULTS_CONFIGMAP)
            .ok();
        self.faults = PodFaults::from_configmap(cm.as_deref());
        let pods = g.list(&self.pods, None);
        let live: std::collections::HashSet<&str> = pods.iter().map(|p| meta::uid(p)).collect();
        self.runtimes.retain(|uid, _| live.contains(uid.as_str()));
        self.terminating
            .retain(|uid, _| live.contains(uid.as_str()));
        self.real_pods.retain(|uid, _| live.contains(uid.as_str()));
        if let Some(rt) = &self.real {
            let claims: std::collections::HashSet<String> = g
                .list(&self.pvcs, None)
                .iter()
                .map(|c| meta::uid(c).to_string())
                .collect();
            rt.prune_claims(&claims);
        }
        for p in &pods {
            // Continue numbering after the highest address in use, e.g. after a restart from a data file.
            if let Some(n) = self.cidr.number(str_at(p, "/status/podIP")) {
                self.next_ip = self.next_ip.max(n + 1);
            }
            q.add(key_of(p));
        }
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        if is_of(ev, &self.pods) {
            if ev.kind == EventType::Deleted {
                let uid = meta::uid(&ev.object);
                self.runtimes.remove(uid);
                self.terminating.remove(uid);
                self.real_pods.remove(uid);
                if let Some(rt) = &self.real {
                    rt.forget(uid);
                }
                return;
            }
            // A pod that finished and is not being deleted needs nothing more from the kubelet.
            if is_terminal(&ev.object) && !meta::is_deleting(&ev.object) {
                return;
            }
            q.add(key_of(&ev.object));
        } else if is_of(ev, &self.pvcs) {
            if ev.kind == EventType::Deleted
                && let Some(rt) = &self.real
            {
                rt.remove_claim(meta::uid(&ev.object));
            }
            if ev.kind != EventType::Deleted
                && let Some(waiting) = self.waiting_for_claim.remove(&key_of(&ev.object))
            {
                for k in waiting {
                    q.add(k);
                }
            }
        } else if is_of(ev, &self.configmaps)
            && meta::namespace(&ev.object) == FAULTS_NAMESPACE
            && meta::name(&ev.object) == FAULTS_CONFIGMAP
        {
            let cm = (ev.kind != EventType::Deleted).then_some(&*ev.object);
            self.faults = PodFaults::from_configmap(cm);
            for rt in self.runtimes.values() {
                q.add(rt.key.clone());
            }
        }
    }

    fn wakeups(&mut self) -> Option<mpsc::UnboundedReceiver<ObjKey>> {
        self.wakeups.take()
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let mut pod = g.get(&self.pods, &key.0, &key.1).ok()?;
        let now = Instant::now();
        if meta::is_deleting(&pod) {
            return self.terminate(g, &pod, now);
        }
        if str_at(&pod, "/spec/nodeName").is_empty() {
            if let Err(retry) = self.schedule(g, &pod) {
                return retry;
            }
            pod = g.get(&self.pods, &key.0, &key.1).ok()?;
        }
        if str_at(&pod, "/spec/nodeName") != NODE_NAME {
            return None;
        }
        let uid = meta::uid(&pod).to_string();
        if let Some(rt) = self.real.clone()
            && let Some(after) = self.reconcile_real(g, &pod, &rt)
        {
            return after;
        }
        if is_terminal(&pod) && !self.runtimes.contains_key(&uid) {
            return None;
        }
        if !self.runtimes.contains_key(&uid) {
            let ip = match str_at(&pod, "/status/podIP") {
                "" => self.allocate_ip(),
                ip => ip.to_string(),
            };
            let delay = self.timing.start_delay(self.faults.ready_delay);
            self.runtimes
                .insert(uid.clone(), PodRuntime::admit(&pod, now, delay, ip));
        }
        let matched = self.faults.matching(&key.0, &key.1);
        let timing = self.timing;
        let rt = self.runtimes.get_mut(&uid)?;
        let wall = meta::now();
        let (stage, wake) = rt.advance(&pod, matched, now, &wall, &timing);
        let status = pod_status(&pod, rt, stage, &wall);
        let before = pod.get("status").cloned().unwrap_or(Value::Null);
        if !write_status(g, &self.pods, &pod, status.clone(), KUBELET) {
            return Some(super::RETRY_AFTER_ERROR);
        }
        container_events(g, &pod, &before, &status);
        wake.map(|at| at.saturating_duration_since(now))
    }
}

impl PodRuntime {
    /// Takes a pod in: a new one starts after `delay`; one that already runs (a kubesim restart) is adopted.
    fn admit(pod: &Value, now: Instant, delay: Duration, ip: String) -> Self {
        let statuses = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array);
        let running_since = statuses.and_then(|cs| {
            let starts: Vec<&str> = cs
                .iter()
                .filter_map(|c| {
                    c.pointer("/state/running/startedAt")
                        .and_then(Value::as_str)
                })
                .collect();
            (!starts.is_empty() && starts.len() == cs.len()).then(|| starts[0].to_string())
        });
        let restarts = statuses
            .and_then(|cs| cs.first())
            .and_then(|c| c.get("restartCount"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let admitted = match str_at(pod, "/status/startTime") {
            "" => meta::now(),
            t => t.to_string(),
        };
        PodRuntime {
            key: key_of(pod),
            ip,
            admitted,
            start_at: if running_since.is_some() {
                now
            } else {
                now + delay
            },
            pull_failed_at: None,
            run_started: running_since,
            restarts,
            last_run: None,
            crash_next: None,
            completes_at: None,
            done: None,
        }
    }

    /// Moves the simulated containers forward to `now`. Returns the stage and when it next changes by itself.
    fn advance(
        &mut self,
        pod: &Value,
        f: Matched,
        now: Instant,
        wall: &str,
        timing: &Timing,
    ) -> (Stage, Option<Instant>) {
        if let Some((succeeded, _, _)) = &self.done {
            return (
                Stage::Done {
                    succeeded: *succeeded,
                },
                None,
            );
        }
        let job_pod = controller_ref(pod)
            .and_then(|r| r.get("kind"))
            .and_then(Value::as_str)
            == Some("Job");
        let restart_policy = match str_at(pod, "/spec/restartPolicy") {
            "" => "Always",
            p => p,
        };
        if self.run_started.is_none() {
            if now < self.start_at {
                return (Stage::Creating, Some(self.start_at));
            }
            if f.image_pull {
                let since = *self.pull_failed_at.get_or_insert(now);
                let settle = since + timing.step();
                return if now < settle {
                    (Stage::PullError { backoff: false }, Some(settle))
                } else {
                    (Stage::PullError { backoff: true }, None)
                };
            }
            self.run_started = Some(wall.to_string());
            if job_pod {
                self.completes_at = Some(now + timing.step());
            }
        }
        let started = self.run_started.clone().unwrap_or_else(|| wall.to_string());
        if f.crash {
            if restart_policy == "Never" {
                self.done = Some((false, started, wall.to_string()));
                return (Stage::Done { succeeded: false }, None);
            }
            match self.crash_next {
                None => {
                    // The containers exit as soon as they start; the kubelet restarts them after a back-off.
                    self.restarts += 1;
                    self.last_run = Some((started, wall.to_string()));
                    self.run_started = Some(wall.to_string());
                    let backoff = timing.step();
                    self.crash_next = Some((now + backoff, backoff));
                }
                Some((at, backoff)) if now >= at => {
                    self.restarts += 1;
                    self.last_run = Some((started, wall.to_string()));
                    self.run_started = Some(wall.to_string());
                    let backoff = (backoff * 2).min(CRASH_BACKOFF_CAP);
                    self.crash_next = Some((now + backoff, backoff));
                }
                Some(_) => {}
            }
            return (Stage::Crashing, self.crash_next.map(|(at, _)| at));
        }
        if self.crash_next.take().is_some() {
            // The fault was lifted: the next restart succeeds.
            self.run_started = Some(wall.to_string());
            if job_pod {
                self.completes_at = Some(now + timing.step());
            }
        }
        if let Some(at) = self.completes_at {
            if now >= at {
                self.done = Some((true, started, wall.to_string()));
                return (Stage::Done { succeeded: true }, None);
            }
            return (
                Stage::Running {
                    ready: !f.not_ready,
                },
                Some(at),
            );
        }
        (
            Stage::Running {
                ready: !f.not_ready,
            },
            None,
        )
    }
}

/// The Events a kubelet records as a pod's containers move: pulling, pulled, created, started, and the
/// failures (image pulls, crash loops), each once per change of a container's state.
fn container_events(g: &mut Inner, pod: &Value, before: &Value, after: &Value) {
    let statuses = |s: &Value| -> Vec<Value> {
        ["initContainerStatuses", "containerStatuses"]
            .iter()
            .filter_map(|k| s.get(*k).and_then(Value::as_array))
            .flatten()
            .cloned()
            .collect()
    };
    let old = statuses(before);
    let waiting = |c: &Value| str_at(c, "/state/waiting/reason").to_string();
    let running = |c: &Value| c.pointer("/state/running").is_some();
    for c in statuses(after) {
        let name = str_at(&c, "/name").to_string();
        let image = str_at(&c, "/image").to_string();
        let prev = old.iter().find(|o| str_at(o, "/name") == name);
        let mut say = |kind: Kind, reason: &'static str, message: String| {
            events::record(
                g,
                pod,
                Occurrence {
                    kind,
                    reason,
                    message,
                    component: KUBELET,
                },
            );
        };
        let was_waiting = prev.map(waiting).unwrap_or_default();
        let now_waiting = waiting(&c);
        // A kubelet repeats its BackOff warning at each restart it holds back; the recorder counts the repeats.
        let backed_off_again = now_waiting == "CrashLoopBackOff"
            && prev.is_some_and(|p| p.get("restartCount") != c.get("restartCount"));
        if now_waiting != was_waiting || backed_off_again {
            match now_waiting.as_str() {
                "ContainerCreating" => say(
                    Kind::Normal,
                    "Pulling",
                    format!("Pulling image \"{image}\""),
                ),
                "ErrImagePull" => say(
                    Kind::Warning,
                    "Failed",
                    format!(
                        "Failed to pull image \"{image}\": {}",
                        str_at(&c, "/state/waiting/message")
                    ),
                ),
                "ImagePullBackOff" => say(
                    Kind::Warning,
                    "BackOff",
                    format!("Back-off pulling image \"{image}\""),
                ),
                "CrashLoopBackOff" => say(
                    Kind::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {name} in pod {}_{}({})",
                        meta::name(pod),
                        meta::namespace(pod),
                        meta::uid(pod)
                    ),
                ),
                _ => {}
            }
        }
        if running(&c) && !prev.is_some_and(running) {
            let restarted = prev.is_some_and(|p| p.get("restartCount") != c.get("restartCount"));
            if !restarted {
                say(
                    Kind::Normal,
                    "Pulled",
                    format!("Successfully pulled image \"{image}\""),
                );
            }
            say(
                Kind::Normal,
                "Created",
                format!("Created container: {name}"),
            );
            say(Kind::Normal, "Started", format!("Started container {name}"));
        }
    }
}

/// The pod's status for a stage, built on what the status holds (qosClass and any fields of other writers).
fn pod_status(pod: &Value, rt: &PodRuntime, stage: Stage, wall: &str) -> Value {
    let prev = pod.get("status");
    let mut status = prev.cloned().unwrap_or_else(|| json!({}));
    let uid = meta::uid(pod);
    let containers = names_and_images(pod, "containers");
    let inits = names_and_images(pod, "initContainers");
    let started = !matches!(stage, Stage::Creating | Stage::PullError { .. });
    let phase = match stage {
        Stage::Creating | Stage::PullError { .. } => "Pending",
        Stage::Crashing | Stage::Running { .. } => "Running",
        Stage::Done { succeeded: true } => "Succeeded",
        Stage::Done { succeeded: false } => "Failed",
    };
    let containers_ready = matches!(stage, Stage::Running { ready: true });
    let unready: Vec<&str> = if containers_ready {
        vec![]
    } else {
        containers.iter().map(|(n, _)| n.as_str()).collect()
    };
    let (ready_reason, ready_msg) = match stage {
        Stage::Done { succeeded: true } => ("PodCompleted", String::new()),
        Stage::Done { succeeded: false } => ("PodFailed", String::new()),
        _ if containers_ready => ("", String::new()),
        _ => (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        ),
    };
    let initialized = started || inits.is_empty();
    let (init_reason, init_msg) = match stage {
        Stage::Done { succeeded: true } => ("PodCompleted", String::new()),
        _ if initialized => ("", String::new()),
        _ => (
            "ContainersNotInitialized",
            format!(
                "containers with incomplete status: [{}]",
                inits
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
    };
    let sandbox = !matches!(stage, Stage::Done { .. });
    set_conditions(
        &mut status,
        prev,
        wall,
        sandbox,
        (initialized, init_reason, &init_msg),
        (containers_ready, ready_reason, &ready_msg),
    );
    status["phase"] = json!(phase);
    let host_network = pod
        .pointer("/spec/hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ip = if host_network {
        HOST_IP
    } else {
        rt.ip.as_str()
    };
    set_addresses(&mut status, ip, &rt.admitted);
    let mut statuses: Vec<Value> = containers
        .iter()
        .map(|(name, image)| container_status(name, image, uid, rt, stage, !inits.is_empty()))
        .collect();
    // The kubelet reports container statuses sorted by name.
    statuses.sort_by(|a, b| str_at(a, "/name").cmp(str_at(b, "/name")));
    status["containerStatuses"] = json!(statuses);
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(
            inits
                .iter()
                .map(|(name, image)| init_status(name, image, uid, rt, stage))
                .collect::<Vec<_>>()
        );
    }
    status
}

fn names_and_images(pod: &Value, list: &str) -> Vec<(String, String)> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            (
                str_at(c, "/name").to_string(),
                str_at(c, "/image").to_string(),
            )
        })
        .collect()
}

fn container_id(uid: &str, name: &str, run: i64) -> String {
    format!("containerd://{}", hex64(&format!("{uid}/{name}/{run}")))
}

fn container_status(
    name: &str,
    image: &str,
    uid: &str,
    rt: &PodRuntime,
    stage: Stage,
    has_init: bool,
) -> Value {
    let (full, image_id) = image_ref(image);
    let id = container_id(uid, name, rt.restarts);
    let mut s = json!({
        "name": name,
        "image": full,
        "imageID": image_id,
        "ready": false,
        "restartCount": rt.restarts,
        "started": false,
        "lastState": {},
    });
    let pod_ref = format!("{}_{}({uid})", rt.key.1, rt.key.0);
    match stage {
        Stage::Creating => {
            // Nothing is pulled yet: the runtime reports the image as written and no id.
            s["image"] = json!(image);
            s["imageID"] = json!("");
            let reason = if has_init {
                "PodInitializing"
            } else {
                "ContainerCreating"
            };
            s["state"] = json!({"waiting": {"reason": reason}});
        }
        Stage::PullError { backoff } => {
            s["image"] = json!(image);
            s["imageID"] = json!("");
            s["state"] = if backoff {
                json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")}})
            } else {
                json!({"waiting": {"reason": "ErrImagePull", "message": format!(
                    "rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
                )}})
            };
        }
        Stage::Crashing => {
            // The runtime still reports the container that exited last.
            s["containerID"] = json!(container_id(uid, name, rt.restarts - 1));
            s["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                "back-off 5m0s restarting failed container={name} pod={pod_ref}"
            )}});
        }
        Stage::Running { ready } => {
            s["containerID"] = json!(id);
            s["ready"] = json!(ready);
            s["started"] = json!(true);
            s["state"] =
                json!({"running": {"startedAt": rt.run_started.clone().unwrap_or_default()}});
        }
        Stage::Done { succeeded } => {
            let (start, end) = rt
                .done
                .as_ref()
                .map(|(_, a, b)| (a.clone(), b.clone()))
                .unwrap_or_default();
            s["containerID"] = json!(id);
            s["state"] = json!({"terminated": {
                "exitCode": if succeeded { 0 } else { 1 },
                "reason": if succeeded { "Completed" } else { "Error" },
                "startedAt": start, "finishedAt": end, "containerID": id,
            }});
        }
    }
    if let Some((start, end)) = &rt.last_run {
        let prev_id = container_id(uid, name, rt.restarts - 1);
        s["lastState"] = json!({"terminated": {
            "exitCode": 1, "reason": "Error", "startedAt": start, "finishedAt": end, "containerID": prev_id,
        }});
    }
    s
}

fn init_status(name: &str, image: &str, uid: &str, rt: &PodRuntime, stage: Stage) -> Value {
    let (full, image_id) = image_ref(image);
    let mut s = json!({
        "name": name, "image": full, "imageID": image_id, "ready": false, "restartCount": 0,
        "started": false, "lastState": {},
    });
    match stage {
        Stage::Creating => {
            s["image"] = json!(image);
            s["imageID"] = json!("");
            s["state"] = json!({"waiting": {"reason": "PodInitializing"}});
        }
        Stage::PullError { backoff } => {
            s["image"] = json!(image);
            s["imageID"] = json!("");
            let reason = if backoff {
                "ImagePullBackOff"
            } else {
                "ErrImagePull"
            };
            s["state"] = json!({"waiting": {"reason": reason, "message": format!("Back-off pulling image \"{image}\"")}});
        }
        _ => {
            // Init containers ran to completion before the others started.
            let id = container_id(uid, name, 0);
            let at = rt.admitted.clone();
            s["ready"] = json!(true);
            s["containerID"] = json!(id);
            s["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": at, "finishedAt": at, "containerID": id}});
        }
    }
    s
}

/// A reference as containerd reports it (`docker.io/library/postgres:16`) and the image id
/// (`docker.io/library/postgres@sha256:…`, a digest derived from the reference).
fn image_ref(image: &str) -> (String, String) {
    let (name, tag_or_digest) = split_tag(image);
    let mut parts = name.splitn(2, '/');
    let first = parts.next().unwrap_or("");
    let rest = parts.next();
    let full_name = match rest {
        Some(rest) if first.contains('.') || first.contains(':') || first == "localhost" => {
            format!("{first}/{rest}")
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    match tag_or_digest {
        Some(d) if d.starts_with("sha256:") => {
            (format!("{full_name}@{d}"), format!("{full_name}@{d}"))
        }
        tag => {
            let tag = tag.unwrap_or("latest");
            let full = format!("{full_name}:{tag}");
            let id = format!("{full_name}@sha256:{}", hex64(&full));
            (full, id)
        }
    }
}

/// `(name, tag or digest)`: a tag is the part after the last `:` that follows the last `/`.
fn split_tag(image: &str) -> (&str, Option<&str>) {
    if let Some((n, d)) = image.split_once('@') {
        return (n, Some(d));
    }
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_as_containerd_reports_them() {
        let (full, id) = image_ref("postgres:16");
        assert_eq!(full, "docker.io/library/postgres:16");
        assert!(id.starts_with("docker.io/library/postgres@sha256:"));
        assert_eq!(id.len(), "docker.io/library/postgres@sha256:".len() + 64);
        assert_eq!(
            image_ref("bitnami/redis").0,
            "docker.io/bitnami/redis:latest"
        );
        assert_eq!(
            image_ref("registry.local:5000/db/mysql:8.4").0,
            "registry.local:5000/db/mysql:8.4"
        );
        assert_eq!(split_tag("localhost:5000/x"), ("localhost:5000/x", None));
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "db-0", "namespace": "d", "uid": "u"},
               "spec": {"restartPolicy": "Always", "containers": [{"name": "db", "image": "postgres:16"}]},
               "status": {"phase": "Pending", "qosClass": "BestEffort"}})
    }

    #[test]
    fn a_pod_goes_creating_then_running_then_unready_under_fault() {
        let t = Timing {
            ready_delay: Duration::from_millis(100),
        };
        let now = Instant::now();
        let p = pod();
        let mut rt = PodRuntime::admit(&p, now, Duration::from_millis(100), "10.244.0.2".into());
        let (stage, wake) = rt.advance(&p, Matched::default(), now, "t0", &t);
        assert_eq!(stage, Stage::Creating);
        assert_eq!(wake, Some(now + Duration::from_millis(100)));
        let s = pod_status(&p, &rt, stage, "t0");
        assert_eq!(s["phase"], "Pending");
        assert_eq!(s["qosClass"], "BestEffort");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        let later = now + Duration::from_millis(150);
        let (stage, _) = rt.advance(&p, Matched::default(), later, "t1", &t);
        assert_eq!(stage, Stage::Running { ready: true });
        let s = pod_status(&p, &rt, stage, "t1");
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["conditions"][2]["type"], "Ready");
        assert_eq!(s["conditions"][2]["status"], "True");
        let unready = Matched {
            not_ready: true,
            ..Default::default()
        };
        let (stage, _) = rt.advance(&p, unready, later, "t2", &t);
        assert_eq!(stage, Stage::Running { ready: false });
    }

    #[test]
    fn crash_loop_counts_restarts() {
        let t = Timing {
            ready_delay: Duration::from_millis(10),
        };
        let now = Instant::now();
        let p = pod();
        let mut rt = PodRuntime::admit(&p, now, Duration::ZERO, "10.244.0.2".into());
        let crash = Matched {
            crash: true,
            ..Default::default()
        };
        let (stage, wake) = rt.advance(&p, crash, now, "t0", &t);
        assert_eq!(stage, Stage::Crashing);
        assert_eq!(rt.restarts, 1);
        let (_, _) = rt.advance(&p, crash, wake.unwrap(), "t1", &t);
        assert_eq!(rt.restarts, 2);
        let s = pod_status(&p, &rt, Stage::Crashing, "t1");
        let cs = &s["containerStatuses"][0];
        assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            cs["state"]["waiting"]["message"],
            "back-off 5m0s restarting failed container=db pod=db-0_d(u)"
        );
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(s["phase"], "Running");
    }
}
