//! The controllers that make workloads come alive: what kube-controller-manager, kube-scheduler and a kwok-like
//! kubelet would do in a real cluster.
//!
//! Owns the machinery every controller shares: a work queue of object keys with delayed requeues, the loop that
//! feeds it from the store's change events (with a full resync when the event fan-out lagged), an index of
//! children by their controlling owner, and small helpers to write the way real controllers write (a field
//! manager per component, status through the `/status` scope, owner references with `controller: true`).
//!
//! Controllers run each in their own task and reconcile one key at a time inside [`Store::write`], so every
//! reconcile sees a consistent store and no lock is ever held across an `.await`. They never reach into the HTTP
//! layer, and they never poll: a key is reconciled when an event names it or when a timer it asked for fires.

mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
pub(crate) mod events;
mod job;
mod kubelet;
mod namespace;
mod podfaults;
mod rbac;
mod schedule;
mod statefulset;
mod volume;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::fieldmanager::Scope;
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{DeleteOpts, Event, EventType, Inner, ObjKey, Propagation, Store, WriteOpts};

/// The field manager of every kube-controller-manager controller, as upstream records it (the binary's name).
pub(crate) const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// How long a controller waits before retrying a key whose write failed (a conflict, a terminating namespace).
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Reconciles per turn of a controller's loop before it yields to other tasks: long enough to batch, short
/// enough that a resync of thousands of keys does not starve the HTTP server of the runtime.
const BATCH: usize = 64;

/// Starts every controller; they stop when `shutdown` turns true.
pub(crate) fn spawn(
    store: Arc<Store>,
    shutdown: watch::Receiver<bool>,
    opts: &crate::Options,
    real: Option<(
        Arc<crate::realpods::Runtime>,
        tokio::sync::mpsc::UnboundedReceiver<ObjKey>,
    )>,
) {
    let ready_delay = opts.ready_delay;
    let (pods, sts, cr, pvcs, pvs, deps, rss, jobs, cjs, pdbs) = {
        let g = store.lock();
        (
            g.def("", "pods"),
            g.def("apps", "statefulsets"),
            g.def("apps", "controllerrevisions"),
            g.def("", "persistentvolumeclaims"),
            g.def("", "persistentvolumes"),
            g.def("apps", "deployments"),
            g.def("apps", "replicasets"),
            g.def("batch", "jobs"),
            g.def("batch", "cronjobs"),
            g.def("policy", "poddisruptionbudgets"),
        )
    };
    let cms = store.lock().def("", "configmaps");
    let (namespaces, service_accounts) = {
        let g = store.lock();
        (g.def("", "namespaces"), g.def("", "serviceaccounts"))
    };
    run_in_task(
        &store,
        &shutdown,
        namespace::NamespaceController::new(namespaces, service_accounts, cms.clone()),
    );
    let (services, endpoints, slices) = {
        let g = store.lock();
        (
            g.def("", "services"),
            g.def("", "endpoints"),
            g.def("discovery.k8s.io", "endpointslices"),
        )
    };
    run_in_task(
        &store,
        &shutdown,
        endpoints::EndpointsController::new(services, pods.clone(), endpoints, slices),
    );
    let (core_events, modern_events) = {
        let g = store.lock();
        (g.def("", "events"), g.def("events.k8s.io", "events"))
    };
    run_in_task(
        &store,
        &shutdown,
        events::EventExpiry::new(core_events, modern_events, opts.event_ttl),
    );
    let cluster_roles = store.lock().def(crate::rbac::RBAC_GROUP, "clusterroles");
    run_in_task(
        &store,
        &shutdown,
        rbac::AggregationController::new(cluster_roles),
    );
    let daemonsets = store.lock().def("apps", "daemonsets");
    run_in_task(
        &store,
        &shutdown,
        daemonset::DaemonSetController::new(daemonsets, pods.clone()),
    );
    run_in_task(
        &store,
        &shutdown,
        statefulset::StatefulSetController::new(sts.clone(), pods.clone(), cr, pvcs.clone()),
    );
    run_in_task(
        &store,
        &shutdown,
        deployment::DeploymentController::new(deps.clone(), rss.clone()),
    );
    run_in_task(
        &store,
        &shutdown,
        deployment::ReplicaSetController::new(rss.clone(), pods.clone()),
    );
    run_in_task(
        &store,
        &shutdown,
        job::JobController::new(jobs.clone(), pods.clone()),
    );
    run_in_task(
        &store,
        &shutdown,
        cronjob::CronJobController::new(cjs, jobs),
    );
    run_in_task(
        &store,
        &shutdown,
        volume::VolumeBinder::new(pvcs.clone(), pvs),
    );
    run_in_task(
        &store,
        &shutdown,
        disruption::DisruptionController::new(pdbs, pods.clone(), sts, deps, rss),
    );
    run_in_task(
        &store,
        &shutdown,
        kubelet::Kubelet::new(pods, pvcs, cms, ready_delay, opts.pod_cidr, real),
    );
}

fn run_in_task<C: Controller>(store: &Arc<Store>, shutdown: &watch::Receiver<bool>, ctl: C) {
    tokio::spawn(run(store.clone(), ctl, shutdown.clone()));
}

/// One controller: which events concern it, and how it reconciles one key.
pub(crate) trait Controller: Send + 'static {
    /// Name for logs.
    const NAME: &'static str;

    /// Rebuilds every cache from the store and queues every key: at start, and after events were lost.
    fn resync(&mut self, g: &Inner, q: &mut WorkQueue);

    /// Updates caches from one committed change and queues the keys it concerns.
    fn observe(&mut self, ev: &Event, q: &mut WorkQueue);

    /// Brings one object towards its desired state, under the store's lock. Returns when to look again even if
    /// no event arrives (a timer: readiness delays, minReadySeconds, schedules), or `None`.
    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration>;

    /// Keys that something outside the store names for a reconcile (the container runtime's reports), taken
    /// once when the loop starts.
    fn wakeups(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ObjKey>> {
        None
    }
}

/// Keys waiting to be reconciled: a FIFO without duplicates, plus keys due at a later instant.
#[derive(Default)]
pub(crate) struct WorkQueue {
    ready: VecDeque<ObjKey>,
    queued: HashSet<ObjKey>,
    delayed: BTreeSet<(Instant, ObjKey)>,
    due: HashMap<ObjKey, Instant>,
}

impl WorkQueue {
    /// Queues a key now.
    pub(crate) fn add(&mut self, key: ObjKey) {
        if let Some(at) = self.due.remove(&key) {
            self.delayed.remove(&(at, key.clone()));
        }
        if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    /// Queues a key after `after`, unless it is already due sooner.
    pub(crate) fn add_after(&mut self, key: ObjKey, after: Duration) {
        if self.queued.contains(&key) {
            return;
        }
        let at = Instant::now() + after;
        if let Some(prev) = self.due.get(&key) {
            if *prev <= at {
                return;
            }
            self.delayed.remove(&(*prev, key.clone()));
        }
        self.due.insert(key.clone(), at);
        self.delayed.insert((at, key));
    }

    fn promote(&mut self, now: Instant) {
        while let Some((at, _)) = self.delayed.first() {
            if *at > now {
                break;
            }
            let Some((_, key)) = self.delayed.pop_first() else {
                break;
            };
            self.due.remove(&key);
            if self.queued.insert(key.clone()) {
                self.ready.push_back(key);
            }
        }
    }

    fn pop(&mut self) -> Option<ObjKey> {
        let k = self.ready.pop_front()?;
        self.queued.remove(&k);
        Some(k)
    }

    fn next_due(&self) -> Option<Instant> {
        self.delayed.first().map(|(at, _)| *at)
    }
}

/// The loop of one controller: events in, keys out, reconciles under the lock, timers for requeues.
async fn run<C: Controller>(store: Arc<Store>, mut ctl: C, mut shutdown: watch::Receiver<bool>) {
    // Subscribe before the first list so that nothing committed in between is missed.
    let mut rx = store.subscribe();
    let mut wakeups = ctl.wakeups();
    let mut q = WorkQueue::default();
    // Events at or below this resourceVersion are already reflected in the caches built by the last resync.
    let mut horizon = store.write(|g| {
        ctl.resync(g, &mut q);
        g.rv
    });
    let mut budget = BATCH;
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Take every event already committed, so that caches are as current as the store before reconciling.
        loop {
            match rx.try_recv() {
                Ok(ev) => {
                    if ev.rv > horizon {
                        ctl.observe(&ev, &mut q);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(n)) => {
                    tracing::debug!(controller = C::NAME, missed = n, "events lost; resyncing");
                    horizon = store.write(|g| {
                        ctl.resync(g, &mut q);
                        g.rv
                    });
                }
                Err(TryRecvError::Closed) => return,
            }
        }
        if let Some(w) = wakeups.as_mut() {
            while let Ok(key) = w.try_recv() {
                q.add(key);
            }
        }
        q.promote(Instant::now());
        if let Some(key) = q.pop() {
            if let Some(after) = store.write(|g| ctl.reconcile(g, &key)) {
                q.add_after(key, after);
            }
            budget -= 1;
            if budget == 0 {
                budget = BATCH;
                tokio::task::yield_now().await;
            }
            continue;
        }
        budget = BATCH;
        let wake = q.next_due();
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if ev.rv > horizon {
                        ctl.observe(&ev, &mut q);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(controller = C::NAME, missed = n, "events lost; resyncing");
                    horizon = store.write(|g| {
                        ctl.resync(g, &mut q);
                        g.rv
                    });
                }
                Err(RecvError::Closed) => return,
            },
            Some(key) = recv_wakeup(&mut wakeups) => q.add(key),
            _ = sleep_until(wake) => {}
        }
    }
}

async fn recv_wakeup(
    w: &mut Option<tokio::sync::mpsc::UnboundedReceiver<ObjKey>>,
) -> Option<ObjKey> {
    match w {
        Some(w) => w.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether an event is about resource `def`.
pub(crate) fn is_of(ev: &Event, def: &ResourceDef) -> bool {
    ev.res.0 == def.group && ev.res.1 == def.plural
}

/// The resync of a controller that owns one kind through an [`OwnerIndex`]: rebuild the index from every child
/// and queue every owner.
pub(crate) fn resync_owned(
    g: &Inner,
    owners: &ResourceDef,
    children: &ResourceDef,
    index: &mut OwnerIndex,
    q: &mut WorkQueue,
) {
    index.clear();
    for c in g.list(children, None) {
        index.record(&c, false);
    }
    for o in g.list(owners, None) {
        q.add(key_of(&o));
    }
}

/// Routes an event for such a controller: a changed owner is queued, a changed child queues its owners.
/// Returns whether the event was of either kind.
pub(crate) fn observe_owned(
    ev: &Event,
    owners: &ResourceDef,
    children: &ResourceDef,
    index: &mut OwnerIndex,
    q: &mut WorkQueue,
) -> bool {
    if is_of(ev, owners) {
        if ev.kind != EventType::Deleted {
            q.add(key_of(&ev.object));
        }
        true
    } else if is_of(ev, children) {
        for owner in index.record_event(ev) {
            q.add(owner);
        }
        true
    } else {
        false
    }
}

/// The key of an object.
pub(crate) fn key_of(o: &Value) -> ObjKey {
    (meta::namespace(o).to_string(), meta::name(o).to_string())
}

// ----- owner references -----

/// The owner reference with `controller: true`, if any.
pub(crate) fn controller_ref(o: &Value) -> Option<&Value> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Whether `o` is controlled by the object with this uid.
pub(crate) fn controlled_by(o: &Value, owner_uid: &str) -> bool {
    controller_ref(o)
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
        == Some(owner_uid)
}

/// A controller owner reference to `owner`, as `metav1.NewControllerRef` builds it.
pub(crate) fn new_controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": meta::name(owner),
        "uid": meta::uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Children of one resource grouped by the name of their controlling owner of one kind, kept current from
/// events: the informer index a real controller would use instead of listing a namespace on every sync.
///
/// Keyed by the owner's name, not uid, so that deletion events need no lookup; callers check the uid of each child
/// against the live owner (a child of an earlier owner of the same name is not theirs).
#[derive(Default)]
pub(crate) struct OwnerIndex {
    owner_kind: &'static str,
    children: HashMap<ObjKey, BTreeSet<String>>,
    owner_of: HashMap<ObjKey, String>,
}

impl OwnerIndex {
    /// An index of children whose controller is of `owner_kind` (e.g. "StatefulSet").
    pub(crate) fn new(owner_kind: &'static str) -> Self {
        OwnerIndex {
            owner_kind,
            ..Default::default()
        }
    }

    fn owner_name<'a>(&self, o: &'a Value) -> Option<&'a str> {
        let r = controller_ref(o)?;
        (r.get("kind").and_then(Value::as_str) == Some(self.owner_kind))
            .then(|| r.get("name").and_then(Value::as_str))
            .flatten()
    }

    /// Records the current state of a child (or its removal). Returns the owners whose children changed: the
    /// previous one and the current one.
    pub(crate) fn record(&mut self, o: &Value, gone: bool) -> Vec<ObjKey> {
        let (ns, name) = key_of(o);
        let child = (ns.clone(), name.clone());
        let new_owner = if gone {
            None
        } else {
            self.owner_name(o).map(str::to_string)
        };
        let old_owner = self.owner_of.get(&child).cloned();
        let mut touched = vec![];
        if old_owner != new_owner
            && let Some(old) = &old_owner
        {
            let ok = (ns.clone(), old.clone());
            if let Some(set) = self.children.get_mut(&ok) {
                set.remove(&name);
                if set.is_empty() {
                    self.children.remove(&ok);
                }
            }
        }
        match &new_owner {
            Some(n) => {
                self.children
                    .entry((ns.clone(), n.clone()))
                    .or_default()
                    .insert(name.clone());
                self.owner_of.insert(child, n.clone());
            }
            None => {
                self.owner_of.remove(&child);
            }
        }
        if let Some(o) = old_owner {
            touched.push((ns.clone(), o));
        }
        if let Some(n) = new_owner
            && !touched.iter().any(|(_, t)| *t == n)
        {
            touched.push((ns, n));
        }
        touched
    }

    /// Records what an event did to a child; see [`OwnerIndex::record`].
    pub(crate) fn record_event(&mut self, ev: &Event) -> Vec<ObjKey> {
        self.record(&ev.object, ev.kind == EventType::Deleted)
    }

    /// Forgets everything (before a resync).
    pub(crate) fn clear(&mut self) {
        self.children.clear();
        self.owner_of.clear();
    }

    /// The current children of `owner` that are controlled by `owner_uid`, read from the store.
    pub(crate) fn children_of(
        &self,
        g: &Inner,
        def: &ResourceDef,
        owner: &ObjKey,
        owner_uid: &str,
    ) -> Vec<Arc<Value>> {
        self.children
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|n| g.get(def, &owner.0, n).ok())
            .filter(|c| controlled_by(c, owner_uid))
            .collect()
    }
}

// ----- writing as a controller -----

/// Write options for a controller's own write: never a dry run, never forced.
pub(crate) fn write_opts(manager: &str) -> WriteOpts {
    WriteOpts {
        dry_run: false,
        manager: manager.to_string(),
        force: false,
    }
}

/// Creates an object; failures are logged (the next sync retries) and give `None`.
pub(crate) fn create(
    g: &mut Inner,
    def: &Arc<ResourceDef>,
    ns: &str,
    body: Value,
    manager: &str,
) -> Option<Arc<Value>> {
    let ns_opt = def.namespaced.then_some(ns);
    match g.create(def, ns_opt, body, &write_opts(manager)) {
        Ok(o) => {
            events::child_changed(g, &o, true);
            Some(o)
        }
        Err(e) => {
            tracing::debug!(manager, resource = %def.plural, error = %e.message, "create failed");
            None
        }
    }
}

/// Writes `status` through the `/status` scope unless it is already what the object holds. Returns false when
/// the write failed.
pub(crate) fn write_status(
    g: &mut Inner,
    def: &Arc<ResourceDef>,
    obj: &Value,
    status: Value,
    manager: &str,
) -> bool {
    if obj.get("status") == Some(&status) {
        return true;
    }
    let mut new = obj.clone();
    new["status"] = status;
    let (ns, name) = key_of(obj);
    match g.replace(def, &ns, &name, new, Scope::Status, &write_opts(manager)) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(manager, resource = %def.plural, name, error = %e.message, "status write failed");
            false
        }
    }
}

/// Replaces the main resource with `new` (which carries the resourceVersion it was derived from).
pub(crate) fn update(
    g: &mut Inner,
    def: &Arc<ResourceDef>,
    new: Value,
    manager: &str,
) -> Option<Arc<Value>> {
    let (ns, name) = key_of(&new);
    match g.replace(def, &ns, &name, new, Scope::Main, &write_opts(manager)) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::debug!(manager, resource = %def.plural, name, error = %e.message, "update failed");
            None
        }
    }
}

/// Deletes one object, guarded by its uid so that a newer object of the same name is never hit.
pub(crate) fn delete(
    g: &mut Inner,
    def: &Arc<ResourceDef>,
    obj: &Value,
    grace_seconds: Option<i64>,
    propagation: Option<Propagation>,
) -> bool {
    let (ns, name) = key_of(obj);
    let d = DeleteOpts {
        propagation,
        grace_seconds,
        precondition_uid: Some(meta::uid(obj).to_string()),
        ..Default::default()
    };
    match g.delete(def, &ns, &name, &d) {
        Ok(_) => {
            events::child_changed(g, obj, false);
            true
        }
        Err(e) => {
            if e.code != 404 {
                tracing::debug!(resource = %def.plural, name, error = %e.message, "delete failed");
            }
            false
        }
    }
}

// ----- reading objects -----

/// `o[path]` as an i64, or `default`.
pub(crate) fn int_at(o: &Value, path: &str, default: i64) -> i64 {
    o.pointer(path).and_then(Value::as_i64).unwrap_or(default)
}

/// `o[path]` as a str, or "".
pub(crate) fn str_at<'a>(o: &'a Value, path: &str) -> &'a str {
    o.pointer(path).and_then(Value::as_str).unwrap_or("")
}

/// `metadata.labels` as a map, if present.
pub(crate) fn labels(o: &Value) -> Option<&Map<String, Value>> {
    o.pointer("/metadata/labels").and_then(Value::as_object)
}

/// A timestamp as the API writes it.
pub(crate) fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// `status.phase` of a pod, or "".
pub(crate) fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

/// A pod that has finished for good.
pub(crate) fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn condition<'a>(o: &'a Value, ty: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
}

/// `podutil.IsPodReady`: the Ready condition is True.
pub(crate) fn is_ready(pod: &Value) -> bool {
    condition(pod, "Ready").and_then(|c| c.get("status")) == Some(&json!("True"))
}

/// Running, and Ready.
pub(crate) fn is_running_ready(pod: &Value) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// `podutil.IsPodAvailable`: ready for at least `min_ready` seconds. `Err(Some(d))` when ready but available only
/// in `d`; `Err(None)` when not ready at all.
pub(crate) fn availability(
    pod: &Value,
    min_ready: i64,
    now: jiff::Timestamp,
) -> Result<(), Option<Duration>> {
    if !is_ready(pod) {
        return Err(None);
    }
    if min_ready <= 0 {
        return Ok(());
    }
    let since = condition(pod, "Ready")
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(parse_time);
    let Some(since) = since else {
        return Ok(());
    };
    let at = since + jiff::SignedDuration::from_secs(min_ready);
    if at <= now {
        Ok(())
    } else {
        let left = (at - now).get_milliseconds().max(0) as u64;
        // The transition time has whole seconds; look again just after the boundary.
        Err(Some(Duration::from_millis(left + 50)))
    }
}

/// The sooner of two optional requeue delays.
pub(crate) fn sooner(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A status condition, keeping `lastTransitionTime` from `prev` when the status did not change (as every
/// upstream controller's SetCondition does).
pub(crate) fn condition_json(
    prev: Option<&Value>,
    ty: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let status_s = if status { "True" } else { "False" };
    let prev_c = prev
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        });
    let since = prev_c
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status_s))
        .and_then(|c| c.get("lastTransitionTime"))
        .cloned()
        .unwrap_or_else(|| json!(now));
    let mut c = json!({"type": ty, "status": status_s, "lastTransitionTime": since});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

/// Resolves an `IntOrString` (a count or a percentage of `total`), rounding a percentage up or down.
pub(crate) fn scaled_value(v: Option<&Value>, total: i64, round_up: bool, default: i64) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => {
                let x = p * total;
                if round_up { (x + 99) / 100 } else { x / 100 }
            }
            None => s.parse().unwrap_or(default),
        },
        _ => default,
    }
}

// ----- hashing as upstream names things -----

/// FNV-1a, 32 bits: the hash upstream uses for ControllerRevision names and pod-template-hash.
pub(crate) struct Fnv32(u32);

impl Fnv32 {
    pub(crate) fn new() -> Self {
        Fnv32(0x811c_9dc5)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    /// Hashes a JSON value in a canonical form (object keys sorted), independent of map ordering features.
    pub(crate) fn write_json(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                self.write(b"{");
                for k in keys {
                    self.write(serde_json::to_string(k).unwrap_or_default().as_bytes());
                    self.write(b":");
                    self.write_json(&m[k]);
                    self.write(b",");
                }
                self.write(b"}");
            }
            Value::Array(a) => {
                self.write(b"[");
                for x in a {
                    self.write_json(x);
                    self.write(b",");
                }
                self.write(b"]");
            }
            other => self.write(other.to_string().as_bytes()),
        }
    }

    pub(crate) fn sum(&self) -> u32 {
        self.0
    }
}

/// `rand.SafeEncodeString`: maps each character of `s` into an alphabet without vowels or look-alikes, so that
/// hashes in names never spell words.
pub(crate) fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The hash of a pod template (with the collision count, when non-zero) as a name-safe string.
pub(crate) fn template_hash(v: &Value, collision_count: i64) -> String {
    let mut h = Fnv32::new();
    h.write_json(v);
    if collision_count > 0 {
        h.write(collision_count.to_string().as_bytes());
    }
    safe_encode(&h.sum().to_string())
}

/// 64 hex digits derived from `seed`: a stable stand-in for a sha256 digest or a container id.
pub(crate) fn hex64(seed: &str) -> String {
    let mut out = String::with_capacity(64);
    for salt in 0u8..8 {
        let mut h = Fnv32::new();
        h.write(&[salt]);
        h.write(seed.as_bytes());
        out.push_str(&format!("{:08x}", h.sum()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_dedups_and_delays() {
        let mut q = WorkQueue::default();
        let k = ("ns".to_string(), "a".to_string());
        q.add(k.clone());
        q.add(k.clone());
        assert_eq!(q.pop(), Some(k.clone()));
        assert_eq!(q.pop(), None);
        q.add_after(k.clone(), Duration::from_secs(60));
        q.add_after(k.clone(), Duration::from_secs(1));
        assert_eq!(
            q.delayed.len(),
            1,
            "the sooner deadline replaces the later one"
        );
        q.promote(Instant::now() + Duration::from_secs(2));
        assert_eq!(q.pop(), Some(k));
        assert!(q.next_due().is_none());
    }

    #[test]
    fn owner_index_follows_children() {
        let mut ix = OwnerIndex::new("StatefulSet");
        let pod = json!({"metadata": {"name": "web-0", "namespace": "d", "ownerReferences": [{"kind": "StatefulSet", "name": "web", "uid": "u1", "controller": true}]}});
        assert_eq!(
            ix.record(&pod, false),
            vec![("d".to_string(), "web".to_string())]
        );
        assert!(ix.children[&("d".into(), "web".into())].contains("web-0"));
        let orphan = json!({"metadata": {"name": "web-0", "namespace": "d"}});
        assert_eq!(
            ix.record(&orphan, false),
            vec![("d".to_string(), "web".to_string())]
        );
        assert!(ix.children.is_empty());
    }

    #[test]
    fn safe_encoding_and_percentages() {
        assert_eq!(safe_encode("0123"), "4567");
        assert_eq!(scaled_value(Some(&json!("25%")), 3, true, 0), 1);
        assert_eq!(scaled_value(Some(&json!("25%")), 3, false, 0), 0);
        assert_eq!(scaled_value(Some(&json!(2)), 3, false, 0), 2);
        assert_eq!(hex64("postgres").len(), 64);
        assert_ne!(hex64("postgres"), hex64("mysql"));
    }
}
