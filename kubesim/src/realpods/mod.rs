//! The container kubelet (`kubesim --kubelet containers`): pods bound to `kubesim-node` run as OCI containers
//! under runc on the local engine images (`kubesim images build`), each pod in its own network namespace on the
//! bridge `kubesim0` (see `net`), with its volumes on the host, its probes run for real and its containers'
//! output kept as their logs. The kubelet controller (`controllers::kubelet`) decides which pods run here, starts a
//! worker per pod with the pod's [`plan::PodPlan`], and writes the pod's status from the worker's [`Report`].
//!
//! What a pod goes through, as a kubelet does it: sandbox (network namespace, `/etc/hosts`, `resolv.conf` naming
//! the cluster DNS), volumes (emptyDir, `medium: Memory` as tmpfs, ConfigMap/Secret/projected/downward API files
//! with their modes, the claim's directory, fsGroup ownership), init containers one by one to completion, then
//! every container with its startup, liveness and readiness probes; exits restart by `restartPolicy` with
//! CrashLoopBackOff's doubling back-off (10 s to 5 min; the first restart is immediate); a liveness or startup
//! failure kills the container. Deletion runs the preStop hooks, sends SIGTERM, and SIGKILL when the grace period
//! is over, then removes the sandbox and the pod's directory.
//!
//! Layout under the state directory: `pods/<uid>/{volumes,c,logs}` (volumes, container bundles, logs as
//! `logs/<container>/<restart>.log` in the CRI format) and `claims/<claim uid>` (a claim's data, kept until the
//! claim is deleted).

pub(crate) mod dns;
pub mod net;
pub(crate) mod plan;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::images::Manifest;
use crate::oci;
use crate::store::{ObjKey, Store};
use plan::{Action, ContainerPlan, PodPlan, Probe, VolumePlan};

pub use net::PodCidr;

/// The node's InternalIP (what `status.hostIP` says).
pub(crate) const HOST_IP: &str = "10.0.0.1";
/// Processes per container (the kubelet's `podPidsLimit`, applied to each container here).
const PIDS_LIMIT: i64 = 4096;
/// CrashLoopBackOff: the first back-off, its cap, and how long a run must last to reset it (upstream's values).
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// How the container kubelet is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `kubesim images build` put the images and `manifest.json`.
    pub image_dir: PathBuf,
    /// Where pods' volumes, bundles and logs and the claims' data live.
    pub state_dir: PathBuf,
    pub pod_cidr: PodCidr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Keep claims' data at shutdown (with a data file the claims outlive kubesim).
    pub keep_claims: bool,
}

/// Where a container stands, as its status reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    Waiting { reason: String, message: String },
    Running { started_at: String },
    Terminated(Terminated),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub started_at: String,
    pub finished_at: String,
    pub container_id: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ContainerReport {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<Terminated>,
    pub restarts: i64,
    pub ready: bool,
    pub started: bool,
    pub container_id: String,
}

/// What a pod's worker tells the kubelet.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub sandbox_ready: bool,
    pub init: Vec<ContainerReport>,
    pub containers: Vec<ContainerReport>,
    /// The pod failed for good (an init container failed under `restartPolicy: Never`, or the sandbox could not
    /// be made): the message.
    pub failed: Option<String>,
    /// Stopped and cleaned up after a deletion.
    pub stopped: bool,
}

impl Report {
    /// The report of a pod that cannot start: every container waits with `reason` and `message`.
    pub(crate) fn blocked(pod: &serde_json::Value, reason: &str, message: &str) -> Report {
        let list = |k: &str| -> Vec<ContainerReport> {
            pod.pointer(&format!("/spec/{k}"))
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| ContainerReport {
                    name: crate::controllers::str_at(c, "/name").to_string(),
                    image: crate::controllers::str_at(c, "/image").to_string(),
                    state: State::Waiting {
                        reason: reason.into(),
                        message: message.into(),
                    },
                    last: None,
                    restarts: 0,
                    ready: false,
                    started: false,
                    container_id: String::new(),
                })
                .collect()
        };
        Report {
            init: list("initContainers"),
            containers: list("containers"),
            ..Default::default()
        }
    }
}

impl ContainerReport {
    fn new(c: &ContainerPlan, reason: &str) -> Self {
        ContainerReport {
            name: c.name.clone(),
            image: c.image.clone(),
            state: State::Waiting {
                reason: reason.into(),
                message: String::new(),
            },
            last: None,
            restarts: 0,
            ready: false,
            started: false,
            container_id: String::new(),
        }
    }
}

struct PodHandle {
    key: ObjKey,
    report: Mutex<Report>,
    /// Set to the grace period when the pod is to stop.
    stop: watch::Sender<Option<Duration>>,
    /// Remove the pod's directory when stopped (the pod object is gone).
    forget: std::sync::atomic::AtomicBool,
    /// Turns true once the worker has stopped and cleaned up.
    done: watch::Sender<bool>,
}

/// The container runtime of the node.
pub(crate) struct Runtime {
    cfg: Config,
    manifest: Manifest,
    pods: Mutex<HashMap<String, Arc<PodHandle>>>,
    wake: mpsc::UnboundedSender<ObjKey>,
}

fn now() -> String {
    crate::meta::now()
}

impl Runtime {
    /// Checks the host, cleans what an earlier run left, makes the bridge and starts the cluster DNS. Returns the
    /// runtime and the channel on which it names pods whose report changed.
    pub(crate) async fn start(
        cfg: Config,
        store: Arc<Store>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Runtime>, mpsc::UnboundedReceiver<ObjKey>), String> {
        let missing: Vec<String> = oci::host_check()
            .await
            .into_iter()
            .filter(|c| !c.ok && c.name != "iptables")
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the container kubelet cannot run here: {}",
                missing.join("; ")
            ));
        }
        let manifest = Manifest::load(&cfg.image_dir)
            .map_err(|e| format!("{e} (build the images first: kubesim images build --out DIR)"))?;
        cleanup_leftovers(&cfg.state_dir).await;
        net::ensure_bridge(&cfg.pod_cidr).await?;
        let dns = std::net::SocketAddr::from((cfg.pod_cidr.gateway(), 53));
        dns::serve(dns, store, cfg.domain.clone(), shutdown).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((
            Arc::new(Runtime {
                cfg,
                manifest,
                pods: Mutex::new(HashMap::new()),
                wake: tx,
            }),
            rx,
        ))
    }

    pub(crate) fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn claims_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("claims")
    }

    /// Whether a worker runs (or ran) the pod with this uid.
    pub(crate) fn has(&self, uid: &str) -> bool {
        lock(&self.pods).contains_key(uid)
    }

    /// The latest report of a pod.
    pub(crate) fn report(&self, uid: &str) -> Option<Report> {
        let pods = lock(&self.pods);
        let h = pods.get(uid)?;
        let r = lock(&h.report).clone();
        Some(r)
    }

    /// Starts a worker for a planned pod.
    pub(crate) fn run(self: &Arc<Self>, key: ObjKey, plan: PodPlan) {
        let (stop, stop_rx) = watch::channel(None);
        let report = Report {
            init: plan
                .init
                .iter()
                .map(|c| ContainerReport::new(c, "PodInitializing"))
                .collect(),
            containers: plan
                .containers
                .iter()
                .map(|c| {
                    ContainerReport::new(
                        c,
                        if plan.init.is_empty() {
                            "ContainerCreating"
                        } else {
                            "PodInitializing"
                        },
                    )
                })
                .collect(),
            ..Default::default()
        };
        let handle = Arc::new(PodHandle {
            key,
            report: Mutex::new(report),
            stop,
            forget: Default::default(),
            done: watch::Sender::new(false),
        });
        lock(&self.pods).insert(plan.uid.clone(), handle.clone());
        let rt = self.clone();
        tokio::spawn(async move { rt.run_pod(handle, plan, stop_rx).await });
    }

    /// Asks a pod to stop within `grace` (idempotent; a shorter grace shortens an earlier one).
    pub(crate) fn stop(&self, uid: &str, grace: Duration) {
        if let Some(h) = lock(&self.pods).get(uid) {
            h.stop.send_if_modified(|g| match g {
                Some(prev) if *prev <= grace => false,
                _ => {
                    *g = Some(grace);
                    true
                }
            });
        }
    }

    /// The pod object is gone: stop it at once if it still runs, and remove its directory once stopped.
    pub(crate) fn forget(&self, uid: &str) {
        let gone = {
            let mut pods = lock(&self.pods);
            match pods.get(uid) {
                None => return,
                Some(h) if lock(&h.report).stopped => pods.remove(uid),
                Some(h) => {
                    h.forget.store(true, std::sync::atomic::Ordering::SeqCst);
                    None
                }
            }
        };
        match gone {
            Some(_) => {
                let dir = self.pod_dir(uid);
                tokio::spawn(async move { remove_pod_dir(&dir).await });
            }
            None => self.stop(uid, Duration::ZERO),
        }
    }

    /// A claim was deleted: its data goes.
    pub(crate) fn remove_claim(&self, claim_uid: &str) {
        if claim_uid.is_empty() || claim_uid.contains('/') {
            return;
        }
        let _ = std::fs::remove_dir_all(self.claims_dir().join(claim_uid));
    }

    /// Removes the data of claims that no longer exist (`live`: the uids of the claims in the store).
    pub(crate) fn prune_claims(&self, live: &std::collections::HashSet<String>) {
        let Ok(dir) = std::fs::read_dir(self.claims_dir()) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// The log file of one run of a container, if the pod is one of ours.
    pub(crate) fn log_file(&self, uid: &str, container: &str, run: i64) -> PathBuf {
        self.pod_dir(uid)
            .join("logs")
            .join(container)
            .join(format!("{run}.log"))
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.state_dir.join("pods").join(uid)
    }

    /// Stops every pod (each within its grace period, at most `cap`), then removes the bridge and, unless they
    /// are kept, the claims' data.
    pub(crate) async fn shutdown(&self, cap: Duration) {
        let handles: Vec<(String, Arc<PodHandle>)> = lock(&self.pods)
            .iter()
            .map(|(u, h)| (u.clone(), h.clone()))
            .collect();
        for (uid, h) in &handles {
            h.forget.store(true, std::sync::atomic::Ordering::SeqCst);
            self.stop(uid, cap);
        }
        let deadline = Instant::now() + cap + Duration::from_secs(5);
        for (_, h) in &handles {
            let mut done = h.done.subscribe();
            let _ = tokio::time::timeout_at(deadline, done.wait_for(|d| *d)).await;
        }
        cleanup_leftovers(&self.cfg.state_dir).await;
        net::remove_bridge().await;
        if !self.cfg.keep_claims {
            let _ = std::fs::remove_dir_all(self.claims_dir());
        }
    }

    fn update(&self, h: &PodHandle, f: impl FnOnce(&mut Report)) {
        f(&mut lock(&h.report));
        let _ = self.wake.send(h.key.clone());
    }

    fn container(&self, h: &PodHandle, init: bool, i: usize, f: impl FnOnce(&mut ContainerReport)) {
        self.update(h, |r| {
            let list = if init { &mut r.init } else { &mut r.containers };
            if let Some(c) = list.get_mut(i) {
                f(c);
            }
        });
    }

    async fn run_pod(
        self: Arc<Self>,
        h: Arc<PodHandle>,
        plan: PodPlan,
        mut stop: watch::Receiver<Option<Duration>>,
    ) {
        let dir = self.pod_dir(&plan.uid);
        let plan = Arc::new(plan);
        let outcome = self.sandbox_and_run(&h, &plan, &dir, &mut stop).await;
        if let Err(e) = outcome {
            tracing::warn!(pod = %format!("{}/{}", plan.namespace, plan.name), error = %e, "pod failed");
            self.update(&h, |r| r.failed = Some(e));
        }
        // Wait for the stop (deletion) before the sandbox goes, unless the pod is over already.
        if stop.borrow().is_none() && lock(&h.report).failed.is_none() {
            let _ = stop.wait_for(Option::is_some).await;
        }
        teardown(&plan, &dir).await;
        let forget = h.forget.load(std::sync::atomic::Ordering::SeqCst);
        if forget {
            lock(&self.pods).remove(&plan.uid);
            remove_pod_dir(&dir).await;
        }
        self.update(&h, |r| {
            r.stopped = true;
            r.sandbox_ready = false;
        });
        h.done.send_replace(true);
    }

    /// Makes the sandbox and volumes, runs the init containers and then supervises the containers until the pod
    /// is stopped or done.
    async fn sandbox_and_run(
        self: &Arc<Self>,
        h: &Arc<PodHandle>,
        plan: &Arc<PodPlan>,
        dir: &Path,
        stop: &mut watch::Receiver<Option<Duration>>,
    ) -> Result<(), String> {
        std::fs::create_dir_all(dir.join("volumes")).map_err(|e| e.to_string())?;
        let netns = match &plan.ip {
            Some(ip) => Some(net::create(&plan.uid, ip, &self.cfg.pod_cidr).await?),
            None => None,
        };
        write_sandbox_files(plan, dir, &self.cfg)?;
        let volumes = make_volumes(plan, dir).await?;
        self.update(h, |r| r.sandbox_ready = true);
        let ctx = Ctx {
            rt: self.clone(),
            h: h.clone(),
            plan: plan.clone(),
            dir: dir.to_path_buf(),
            netns,
            volumes: Arc::new(volumes),
        };
        for (i, c) in plan.init.iter().enumerate() {
            loop {
                if stop.borrow().is_some() {
                    return Ok(());
                }
                let run = lock(&h.report).init[i].restarts;
                let code = match ctx.start(c, true, i, run).await {
                    Ok(mut running) => {
                        let waited = tokio::select! {
                            code = running.wait() => Some(code),
                            _ = stop.wait_for(Option::is_some) => None,
                        };
                        let code = match waited {
                            Some(code) => code,
                            None => running.stop(Duration::ZERO).await,
                        };
                        ctx.finished(true, i, code, "");
                        if waited.is_none() {
                            return Ok(());
                        }
                        code
                    }
                    Err(e) => {
                        ctx.start_failed(true, i, &e);
                        128
                    }
                };
                if code == 0 {
                    break;
                }
                if plan.restart_policy == "Never" {
                    return Err(format!("init container {} exited with code {code}", c.name));
                }
                let restarts = lock(&h.report).init[i].restarts;
                let wait = backoff(restarts);
                self.container(h, true, i, |r| {
                    r.restarts += 1;
                    r.state = crash_waiting(&c.name, plan, wait, &r.state);
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(Option::is_some) => return Ok(()),
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, c) in plan.containers.iter().enumerate() {
            let stop = stop.clone();
            let ctx = ctx.clone();
            let c = c.clone();
            tasks.spawn(async move { ctx.supervise(&c, i, stop).await });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The back-off before restart number `restarts + 1`: none for the first, then 10 s doubling up to 5 min.
fn backoff(restarts: i64) -> Duration {
    if restarts <= 0 {
        return Duration::ZERO;
    }
    let doublings = (restarts - 1).min(16) as u32;
    (BACKOFF_START * 2u32.pow(doublings)).min(BACKOFF_CAP)
}

/// The state while a container waits to be restarted: CrashLoopBackOff during a back-off; with none (the first
/// restart) the exited state stands until the new run starts, as a kubelet reports it.
fn crash_waiting(name: &str, plan: &PodPlan, wait: Duration, exited: &State) -> State {
    if wait.is_zero() {
        return exited.clone();
    }
    State::Waiting {
        reason: "CrashLoopBackOff".into(),
        message: format!(
            "back-off {} restarting failed container={name} pod={}_{}({})",
            go_duration(wait),
            plan.name,
            plan.namespace,
            plan.uid
        ),
    }
}

/// A duration as Go prints one (`10s`, `1m20s`, `5m0s`).
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// What the containers of one pod share.
#[derive(Clone)]
struct Ctx {
    rt: Arc<Runtime>,
    h: Arc<PodHandle>,
    plan: Arc<PodPlan>,
    dir: PathBuf,
    netns: Option<PathBuf>,
    volumes: Arc<HashMap<String, PathBuf>>,
}

impl Ctx {
    async fn start(
        &self,
        c: &ContainerPlan,
        init: bool,
        i: usize,
        run: i64,
    ) -> Result<oci::Running, String> {
        let running = start_container(self, c, run).await?;
        let id = container_id(&running.id, run);
        self.rt.container(&self.h, init, i, |s| {
            s.state = State::Running { started_at: now() };
            s.container_id = id;
            // Started (and, without probes, ready) is decided by the probes, from the first moment.
            s.started = false;
            s.ready = false;
        });
        Ok(running)
    }

    fn finished(&self, init: bool, i: usize, code: i32, reason: &str) {
        self.rt.container(&self.h, init, i, |s| {
            let started_at = match &s.state {
                State::Running { started_at } => started_at.clone(),
                _ => now(),
            };
            let reason = if !reason.is_empty() {
                reason.to_string()
            } else if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            };
            s.state = State::Terminated(Terminated {
                exit_code: code,
                reason,
                started_at,
                finished_at: now(),
                container_id: s.container_id.clone(),
            });
            s.ready = false;
            s.started = false;
        });
    }

    fn start_failed(&self, init: bool, i: usize, e: &str) {
        self.rt.container(&self.h, init, i, |s| {
            s.state = State::Waiting {
                reason: "RunContainerError".into(),
                message: e.to_string(),
            };
        });
    }

    fn address(&self) -> String {
        self.plan.ip.clone().unwrap_or_else(|| "127.0.0.1".into())
    }

    /// Runs a container for the life of the pod: start, probe, restart by the pod's policy, stop on deletion.
    async fn supervise(
        &self,
        c: &ContainerPlan,
        i: usize,
        mut stop: watch::Receiver<Option<Duration>>,
    ) {
        loop {
            if stop.borrow().is_some() {
                return;
            }
            let run = lock(&self.h.report).containers[i].restarts;
            let began = Instant::now();
            let (code, reason) = match self.start(c, false, i, run).await {
                Ok(running) => self.watch_running(c, i, running, &mut stop).await,
                Err(e) => {
                    self.start_failed(false, i, &e);
                    (128, String::new())
                }
            };
            if stop.borrow().is_some() {
                return;
            }
            let restart = match self.plan.restart_policy.as_str() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
            if !restart {
                return;
            }
            let mut restarts = lock(&self.h.report).containers[i].restarts;
            if began.elapsed() >= BACKOFF_RESET {
                restarts = 0;
            }
            let wait = backoff(restarts);
            if !reason.is_empty() {
                tracing::info!(container = %c.name, pod = %self.plan.name, "restarting: {reason}");
            }
            self.rt.container(&self.h, false, i, |s| {
                if let State::Terminated(t) = &s.state {
                    s.last = Some(t.clone());
                }
                s.restarts += 1;
                s.state = crash_waiting(&c.name, &self.plan, wait, &s.state);
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(Option::is_some) => return,
            }
        }
    }

    /// Waits for a running container to exit, running its probes meanwhile; on a stop, runs the preStop hook and
    /// stops it within the grace period. Returns the exit code and the reason recorded.
    async fn watch_running(
        &self,
        c: &ContainerPlan,
        i: usize,
        running: oci::Running,
        stop: &mut watch::Receiver<Option<Duration>>,
    ) -> (i32, String) {
        let id = running.id.clone();
        let mut exit = tokio::spawn(async move {
            let mut running = running;
            let code = running.wait().await;
            (code, running)
        });
        let start = Instant::now();
        let mut probes = Probes::new(c, start);
        // Without a startup probe a container is started at once, and without a readiness probe ready at once.
        self.rt.container(&self.h, false, i, |s| {
            s.started = probes.started;
            s.ready = probes.ready;
        });
        let mut killed_for = String::new();
        // After a failed liveness or startup probe's SIGTERM: when SIGKILL follows if it has not exited.
        let mut kill_at: Option<Instant> = None;
        enum Next {
            Exited(Box<Result<(i32, oci::Running), tokio::task::JoinError>>),
            Stop,
            Probe,
            Kill,
        }
        loop {
            let next = probes.next_due();
            let what = tokio::select! {
                done = &mut exit => Next::Exited(Box::new(done)),
                _ = stop.wait_for(Option::is_some) => Next::Stop,
                _ = sleep_until(next) => Next::Probe,
                _ = sleep_until(kill_at) => Next::Kill,
            };
            match what {
                Next::Exited(done) => {
                    let (code, running) = match *done {
                        Ok(x) => x,
                        Err(_) => return (137, String::new()),
                    };
                    running.remove().await;
                    // An OOM kill shows as exit 137 with reason Error: runc removes the container's cgroup,
                    // where the kernel counted it, before the exit is seen (named in the README).
                    self.finished(false, i, code, "");
                    return (code, killed_for);
                }
                Next::Stop => {
                    let grace = stop.borrow().unwrap_or_default();
                    let deadline = Instant::now() + grace;
                    if let Some(hook) = &c.pre_stop
                        && !grace.is_zero()
                    {
                        let _ = tokio::time::timeout(grace, self.act(&id, hook, grace)).await;
                    }
                    let _ = oci::signal(&id, "TERM").await;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let done = match tokio::time::timeout(left, &mut exit).await {
                        Ok(done) => done,
                        Err(_) => {
                            let _ = oci::signal(&id, "KILL").await;
                            (&mut exit).await
                        }
                    };
                    let code = match done {
                        Ok((code, running)) => {
                            running.remove().await;
                            code
                        }
                        Err(_) => 137,
                    };
                    self.finished(false, i, code, "");
                    return (code, String::new());
                }
                Next::Probe => {
                    let outcome = probes.run_due(self, &id).await;
                    self.rt.container(&self.h, false, i, |s| {
                        s.started = probes.started;
                        s.ready = probes.ready;
                    });
                    if let Some(why) = outcome {
                        // A failed liveness or startup probe: the kubelet kills the container.
                        tracing::info!(container = %c.name, "{why}; killing it");
                        killed_for = why;
                        let _ = oci::signal(&id, "TERM").await;
                        kill_at = Some(Instant::now() + self.plan.grace);
                        probes.disable();
                    }
                }
                Next::Kill => {
                    // Only this run of the container: the loop ends when it exits.
                    let _ = oci::signal(&id, "KILL").await;
                    kill_at = None;
                }
            }
        }
    }

    /// Runs a probe's or hook's action against the container `id`; `Ok` when it succeeded.
    async fn act(&self, id: &str, action: &Action, timeout: Duration) -> Result<(), String> {
        match action {
            Action::Exec(cmd) => match oci::exec(id, cmd, timeout).await {
                Ok((0, _)) => Ok(()),
                Ok((code, out)) => Err(format!(
                    "command {cmd:?} exited with {code}: {}",
                    out.trim()
                )),
                Err(e) => Err(e),
            },
            Action::Tcp { port } => {
                let addr = format!("{}:{port}", self.address());
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
                    Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
                }
            }
            Action::Http { port, path } => {
                let addr = format!("{}:{port}", self.address());
                tokio::time::timeout(timeout, http_get(&addr, path))
                    .await
                    .map_err(|_| {
                        format!("Get \"http://{addr}{path}\": context deadline exceeded")
                    })?
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An HTTP GET as a kubelet's probe makes it: a status from 200 to 399 succeeds.
async fn http_get(addr: &str, path: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"http://{addr}{path}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// The probes of one running container, each on its own schedule.
struct Probes {
    started: bool,
    ready: bool,
    list: Vec<ProbeState>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

struct ProbeState {
    kind: Kind,
    probe: Probe,
    next: Instant,
    successes: u32,
    failures: u32,
}

impl Probes {
    fn new(c: &ContainerPlan, start: Instant) -> Self {
        let mut list = vec![];
        for (kind, p) in [
            (Kind::Startup, &c.startup),
            (Kind::Liveness, &c.liveness),
            (Kind::Readiness, &c.readiness),
        ] {
            if let Some(p) = p {
                list.push(ProbeState {
                    kind,
                    probe: p.clone(),
                    next: start + p.initial_delay,
                    successes: 0,
                    failures: 0,
                });
            }
        }
        let started = c.startup.is_none();
        Probes {
            started,
            // No readiness probe: ready as soon as started.
            ready: started && c.readiness.is_none(),
            list,
        }
    }

    fn active(&self, k: Kind) -> bool {
        match k {
            Kind::Startup => !self.started,
            _ => self.started,
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.list
            .iter()
            .filter(|p| self.active(p.kind))
            .map(|p| p.next)
            .min()
    }

    fn disable(&mut self) {
        self.list.clear();
        self.ready = false;
    }

    /// Runs the probes that are due; returns why the container must be killed, if it must.
    async fn run_due(&mut self, ctx: &Ctx, id: &str) -> Option<String> {
        let now = Instant::now();
        for idx in 0..self.list.len() {
            let kind = self.list[idx].kind;
            if !self.active(kind) || self.list[idx].next > now {
                continue;
            }
            let p = self.list[idx].probe.clone();
            let ok = ctx.act(id, &p.action, p.timeout).await;
            let st = &mut self.list[idx];
            st.next = Instant::now() + p.period;
            match ok {
                Ok(()) => {
                    st.failures = 0;
                    st.successes += 1;
                    if st.successes >= p.success_threshold {
                        match kind {
                            Kind::Startup => {
                                self.started = true;
                                if !self.list.iter().any(|p| p.kind == Kind::Readiness) {
                                    self.ready = true;
                                }
                                // The others start their schedules now.
                                let at = Instant::now();
                                for o in self.list.iter_mut().filter(|o| o.kind != Kind::Startup) {
                                    o.next = at + o.probe.initial_delay;
                                }
                            }
                            Kind::Readiness => self.ready = true,
                            Kind::Liveness => {}
                        }
                    }
                }
                Err(e) => {
                    st.successes = 0;
                    st.failures += 1;
                    if st.failures >= p.failure_threshold {
                        match kind {
                            Kind::Readiness => self.ready = false,
                            Kind::Startup => return Some(format!("Startup probe failed: {e}")),
                            Kind::Liveness => return Some(format!("Liveness probe failed: {e}")),
                        }
                    }
                }
            }
        }
        None
    }
}

/// The container's runc id: `ks-<12 hex of the pod uid>-<container>`.
fn runc_id(uid: &str, container: &str) -> String {
    format!("ks-{}-{container}", net::short(uid))
}

async fn start_container(ctx: &Ctx, c: &ContainerPlan, run: i64) -> Result<oci::Running, String> {
    let plan = &ctx.plan;
    let mut mounts = vec![
        oci::Mount {
            source: ctx.dir.join("hosts"),
            destination: "/etc/hosts".into(),
            readonly: false,
        },
        oci::Mount {
            source: ctx.dir.join("resolv.conf"),
            destination: "/etc/resolv.conf".into(),
            readonly: false,
        },
        oci::Mount {
            source: ctx.dir.join("hostname"),
            destination: "/etc/hostname".into(),
            readonly: false,
        },
    ];
    for m in &c.mounts {
        let Some(base) = ctx.volumes.get(&m.volume) else {
            return Err(format!("volume {:?} is not in the pod", m.volume));
        };
        let source = if m.sub_path.is_empty() {
            base.clone()
        } else {
            if m.sub_path.split('/').any(|p| p == "..") || m.sub_path.starts_with('/') {
                return Err(format!("invalid subPath {:?}", m.sub_path));
            }
            let p = base.join(&m.sub_path);
            if !p.exists() {
                std::fs::create_dir_all(&p).map_err(|e| format!("subPath {}: {e}", p.display()))?;
                if let Some(g) = plan.fs_group {
                    set_group(&p, g, 0o2775);
                }
            }
            p
        };
        let ro_volume = matches!(plan.volumes.get(&m.volume), Some(VolumePlan::Files(_)));
        mounts.push(oci::Mount {
            source,
            destination: m.path.clone(),
            readonly: m.read_only || ro_volume,
        });
    }
    let user = match (c.run_as, plan.fs_group) {
        ((None, None), None) if plan.supplemental_groups.is_empty() => None,
        ((uid, gid), fs_group) => {
            let mut extra: Vec<u32> = plan.supplemental_groups.clone();
            extra.extend(fs_group);
            Some(oci::User {
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
                additional_gids: extra,
            })
        }
    };
    let spec = oci::RunSpec {
        id: runc_id(&plan.uid, &c.name),
        image_dir: c.image_dir.clone(),
        state_dir: ctx.dir.join("c"),
        command: c.command.clone(),
        args: c.args.clone(),
        env: c.env.clone(),
        mounts,
        netns: ctx.netns.clone(),
        hostname: plan.hostname.clone(),
        memory_limit_bytes: c.memory_limit,
        cpu_limit_millis: c.cpu_limit_millis,
        pids_limit: Some(PIDS_LIMIT),
        user,
        cwd: c.working_dir.clone(),
        stamped_log: Some(ctx.rt.log_file(&plan.uid, &c.name, run)),
    };
    oci::start(&spec).await
}

fn set_group(p: &Path, gid: u32, mode: u32) {
    let _ = std::os::unix::fs::chown(p, None, Some(gid));
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
}

/// `/etc/hosts` (localhost, the pod's own names), `/etc/resolv.conf` (the cluster DNS and search path) and
/// `/etc/hostname`, shared by the pod's containers.
fn write_sandbox_files(plan: &PodPlan, dir: &Path, cfg: &Config) -> Result<(), String> {
    let w = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let ip = plan.ip.clone().unwrap_or_else(|| HOST_IP.into());
    if plan.subdomain.is_empty() {
        hosts.push_str(&format!("{ip}\t{}\n", plan.hostname));
    } else {
        hosts.push_str(&format!(
            "{ip}\t{h}.{s}.{ns}.svc.{d}\t{h}\n",
            h = plan.hostname,
            s = plan.subdomain,
            ns = plan.namespace,
            d = cfg.domain
        ));
    }
    w("hosts", hosts)?;
    let resolv = if plan.ip.is_some() {
        format!(
            "search {ns}.svc.{d} svc.{d} {d}\nnameserver {gw}\noptions ndots:5\n",
            ns = plan.namespace,
            d = cfg.domain,
            gw = cfg.pod_cidr.gateway()
        )
    } else {
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    };
    w("resolv.conf", resolv)?;
    w("hostname", format!("{}\n", plan.hostname))
}

/// Makes each volume's directory (and content); returns the host directory of each.
async fn make_volumes(plan: &PodPlan, dir: &Path) -> Result<HashMap<String, PathBuf>, String> {
    let mut out = HashMap::new();
    for (name, v) in &plan.volumes {
        let path = match v {
            VolumePlan::Claim(p) => {
                if !p.exists() {
                    std::fs::create_dir_all(p)
                        .map_err(|e| format!("claim {}: {e}", p.display()))?;
                    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777));
                }
                if let Some(g) = plan.fs_group {
                    set_group(p, g, 0o2775);
                }
                p.clone()
            }
            VolumePlan::HostPath(p) => p.clone(),
            VolumePlan::EmptyDir { memory } => {
                let p = dir.join("volumes").join(name);
                std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
                if *memory {
                    run(
                        "mount",
                        &[
                            "-t",
                            "tmpfs",
                            "-o",
                            "mode=0777",
                            "tmpfs",
                            &p.to_string_lossy(),
                        ],
                    )
                    .await?;
                }
                match plan.fs_group {
                    Some(g) => set_group(&p, g, 0o2777),
                    None => {
                        let _ =
                            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777));
                    }
                }
                p
            }
            VolumePlan::Files(files) => {
                let p = dir.join("volumes").join(name);
                std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
                for f in files {
                    if f.path.split('/').any(|s| s == "..") || f.path.starts_with('/') {
                        return Err(format!("invalid path {:?} in volume {name}", f.path));
                    }
                    let target = p.join(&f.path);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                    }
                    std::fs::write(&target, &f.data).map_err(|e| e.to_string())?;
                    let _ = std::fs::set_permissions(
                        &target,
                        std::fs::Permissions::from_mode(f.mode & 0o777),
                    );
                    if let Some(g) = plan.fs_group {
                        let _ = std::os::unix::fs::chown(&target, None, Some(g));
                    }
                }
                if let Some(g) = plan.fs_group {
                    set_group(&p, g, 0o2755);
                }
                p
            }
        };
        out.insert(name.clone(), path);
    }
    Ok(out)
}

async fn run(program: &str, args: &[&str]) -> Result<(), String> {
    oci::command(program, args).await.map(|_| ())
}

/// Removes a stopped pod's sandbox: its network namespace and the mounts of its volumes.
async fn teardown(plan: &PodPlan, dir: &Path) {
    if plan.ip.is_some() {
        net::remove(&plan.uid).await;
    }
    unmount_under(dir).await;
}

/// Unmounts everything mounted below `dir`, deepest first.
async fn unmount_under(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<String> = oci::mount_points()
        .into_iter()
        .filter(|p| p.starts_with(&prefix) || *p == prefix.trim_end_matches('/'))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = run("umount", &["-l", &p]).await;
    }
}

async fn remove_pod_dir(dir: &Path) {
    unmount_under(dir).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// What an earlier (crashed) kubesim left: its containers, mounts, network namespaces and pods' directories.
async fn cleanup_leftovers(state: &Path) {
    if let Ok(out) = oci::command("runc", &["list", "-q"]).await {
        for id in out.lines() {
            if id.starts_with("ks-") {
                let _ = run("runc", &["delete", "--force", id]).await;
            }
        }
    }
    unmount_under(state).await;
    let _ = std::fs::remove_dir_all(state.join("pods"));
    net::remove_all().await;
}

/// A container id as the status reports it: `runc://<64 hex>`, one per run.
fn container_id(runc_id: &str, run: i64) -> String {
    format!(
        "runc://{}",
        crate::controllers::hex64(&format!("{runc_id}/{run}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_back_off_doubles_from_ten_seconds_to_five_minutes() {
        let waits: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(40)), "40s");
    }

    #[test]
    fn container_ids_are_kubesim_s_and_short() {
        let id = runc_id("0b9c2f1e-1234-4abc-9def-0123456789ab", "database");
        assert_eq!(id, "ks-0b9c2f1e1234-database");
    }
}
