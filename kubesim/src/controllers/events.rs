//! Events as the components' event recorders write them, so that `kubectl describe` and `kubectl events` tell
//! what happened: one `core/v1` Event and its `events.k8s.io/v1` twin per occurrence (upstream keeps one storage
//! with two views; kubesim has two storages and writes both).
//!
//! A repeat (same object, type, reason, message and component within ten minutes, as client-go's event
//! correlator counts them) updates the Event instead of writing a new one: `count` and `lastTimestamp` of the
//! core Event, `series` of its twin. Events expire `Options::event_ttl` after they were last written
//! (kube-apiserver's `--event-ttl`, one hour by default), by [`EventExpiry`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Controller, WorkQueue};
use crate::fieldmanager::Scope;
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, EventType, Inner, ObjKey, WriteOpts};

/// How long a repeat is folded into the Event it repeats (client-go's `defaultAggregateIntervalInSeconds`).
const SERIES_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_secs(600);

/// `Normal` or `Warning`, as upstream's event types.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Normal,
    Warning,
}

/// What to record: about which object, why, and who says so.
pub(crate) struct Occurrence<'a> {
    pub kind: Kind,
    pub reason: &'a str,
    pub message: String,
    /// The reporting component (`kubelet`, `default-scheduler`, `replicaset-controller`, …).
    pub component: &'a str,
}

/// Records `what` about `object` (whose `apiVersion`, `kind` and metadata name it).
pub(crate) fn record(g: &mut Inner, object: &Value, what: Occurrence<'_>) {
    let ns = match meta::namespace(object) {
        "" => "default",
        ns => ns,
    };
    let name = meta::name(object);
    let kind = match what.kind {
        Kind::Normal => "Normal",
        Kind::Warning => "Warning",
    };
    let series_key = format!(
        "{}\u{0}{kind}\u{0}{}\u{0}{}\u{0}{}\u{0}{ns}\u{0}{name}",
        meta::uid(object),
        what.reason,
        what.message,
        what.component
    );
    if repeat(g, &series_key) {
        return;
    }
    let event_name = format!("{name}.{:016x}", rand::random::<u64>());
    let reference = json!({
        "apiVersion": object.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": object.get("kind").cloned().unwrap_or(Value::Null),
        "name": name,
        "namespace": meta::namespace(object),
        "uid": meta::uid(object),
        "resourceVersion": meta::str_field(object, "resourceVersion"),
    });
    let now = meta::now();
    let micro = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let host = if what.component == "kubelet" {
        json!("kubesim-node")
    } else {
        Value::Null
    };
    let core = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": ns},
        "involvedObject": reference,
        "reason": what.reason, "message": what.message, "type": kind,
        "source": {"component": what.component, "host": host},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": what.component, "reportingInstance": "kubesim-node",
    });
    let modern = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": ns},
        "eventTime": micro,
        "reportingController": what.component, "reportingInstance": "kubesim-node",
        "action": what.reason, "reason": what.reason, "regarding": reference,
        "note": what.message, "type": kind,
    });
    let opts = WriteOpts {
        manager: what.component.to_string(),
        ..Default::default()
    };
    let mut recorded = false;
    for (group, body) in [("", core), ("events.k8s.io", modern)] {
        let def = g.def(group, "events");
        match g.create(&def, Some(ns), body, &opts) {
            Ok(_) => recorded = true,
            // A terminating namespace refuses new objects, events included; nothing else depends on them.
            Err(e) => {
                tracing::debug!(reason = what.reason, error = %e.message, "event not recorded")
            }
        }
    }
    if recorded {
        g.event_series.insert(
            series_key,
            (ns.to_string(), event_name, jiff::Timestamp::now()),
        );
    }
}

/// Folds a repeat into the Event already recorded for `key`, if there is one seen within the window: the core
/// Event's `count` and `lastTimestamp`, the twin's `series`. Returns whether it did.
fn repeat(g: &mut Inner, key: &str) -> bool {
    let now = jiff::Timestamp::now();
    let Some((ns, name, seen)) = g.event_series.get(key).cloned() else {
        return false;
    };
    let core_def = g.def("", "events");
    let Some(core) = g
        .get(&core_def, &ns, &name)
        .ok()
        .filter(|_| now.duration_since(seen) < SERIES_WINDOW)
    else {
        g.event_series.remove(key);
        return false;
    };
    let opts = WriteOpts {
        manager: core
            .get("reportingComponent")
            .and_then(Value::as_str)
            .unwrap_or("kube-controller-manager")
            .to_string(),
        ..Default::default()
    };
    let count = core.get("count").and_then(Value::as_i64).unwrap_or(1) + 1;
    let mut new = (*core).clone();
    new["count"] = json!(count);
    new["lastTimestamp"] = json!(meta::format_time(now));
    if g.replace(&core_def, &ns, &name, new, Scope::Main, &opts)
        .is_err()
    {
        g.event_series.remove(key);
        return false;
    }
    let modern_def = g.def("events.k8s.io", "events");
    if let Ok(modern) = g.get(&modern_def, &ns, &name) {
        let mut new = (*modern).clone();
        new["series"] = json!({
            "count": count,
            "lastObservedTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        });
        let _ = g.replace(&modern_def, &ns, &name, new, Scope::Main, &opts);
    }
    if let Some(entry) = g.event_series.get_mut(key) {
        entry.2 = now;
    }
    true
}

/// Deletes Events (both views) once they have not been written for the TTL, as etcd's lease on each Event does.
pub(crate) struct EventExpiry {
    core: Arc<ResourceDef>,
    modern: Arc<ResourceDef>,
    ttl: Duration,
}

impl EventExpiry {
    pub(crate) fn new(core: Arc<ResourceDef>, modern: Arc<ResourceDef>, ttl: Duration) -> Self {
        EventExpiry { core, modern, ttl }
    }

    /// When an Event was last written: its series' or core `lastTimestamp`, else its creation.
    fn last_written(o: &Value) -> Option<jiff::Timestamp> {
        [
            "/series/lastObservedTime",
            "/lastTimestamp",
            "/eventTime",
            "/metadata/creationTimestamp",
        ]
        .iter()
        .filter_map(|p| o.pointer(p).and_then(Value::as_str))
        .find_map(super::parse_time)
    }
}

impl Controller for EventExpiry {
    const NAME: &'static str = "event-ttl";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        for def in [&self.core, &self.modern] {
            for e in g.iter(def, None) {
                q.add(super::key_of(e));
            }
        }
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        if ev.kind != EventType::Deleted
            && (super::is_of(ev, &self.core) || super::is_of(ev, &self.modern))
        {
            q.add_after(super::key_of(&ev.object), self.ttl);
        }
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let now = jiff::Timestamp::now();
        let mut next: Option<Duration> = None;
        for def in [self.core.clone(), self.modern.clone()] {
            let Ok(e) = g.get(&def, &key.0, &key.1) else {
                continue;
            };
            let age = Self::last_written(&e)
                .map(|t| now.duration_since(t).unsigned_abs())
                .unwrap_or(self.ttl);
            if age >= self.ttl {
                super::delete(g, &def, &e, None, None);
            } else {
                next = super::sooner(next, Some(self.ttl - age));
            }
        }
        next
    }
}

/// The component that creates `kind`'s children, as upstream's controllers name themselves in Events.
pub(crate) fn controller_of(kind: &str) -> &'static str {
    match kind {
        "ReplicaSet" => "replicaset-controller",
        "StatefulSet" => "statefulset-controller",
        "Deployment" => "deployment-controller",
        "Job" => "job-controller",
        "CronJob" => "cronjob-controller",
        "DaemonSet" => "daemonset-controller",
        _ => "kube-controller-manager",
    }
}

/// `SuccessfulCreate`/`SuccessfulDelete` on the controlling owner of `child`, worded as each upstream
/// controller words them; Deployments report their ReplicaSets as scaling instead.
pub(crate) fn child_changed(g: &mut Inner, child: &Value, created: bool) {
    let Some(owner_ref) = super::controller_ref(child).cloned() else {
        return;
    };
    let owner_kind = owner_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    if !matches!(
        owner_kind,
        "ReplicaSet" | "StatefulSet" | "Job" | "CronJob" | "DaemonSet" | "ReplicationController"
    ) {
        // Deployments report scaling instead (see `scaled`); EndpointSlices and the like are not announced.
        return;
    }
    let owner_name = owner_ref.get("name").and_then(Value::as_str).unwrap_or("");
    let child_kind = child.get("kind").and_then(Value::as_str).unwrap_or("");
    let child_name = meta::name(child);
    let owner = json!({
        "apiVersion": owner_ref.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner_kind,
        "metadata": {"name": owner_name, "namespace": meta::namespace(child),
            "uid": owner_ref.get("uid").cloned().unwrap_or(Value::Null)},
    });
    let (reason, message) = match (owner_kind, created) {
        ("StatefulSet", true) if child_kind == "PersistentVolumeClaim" => (
            "SuccessfulCreate",
            format!("create Claim {child_name} in StatefulSet {owner_name} success"),
        ),
        ("StatefulSet", true) => (
            "SuccessfulCreate",
            format!("create {child_kind} {child_name} in StatefulSet {owner_name} successful"),
        ),
        ("StatefulSet", false) => (
            "SuccessfulDelete",
            format!("delete {child_kind} {child_name} in StatefulSet {owner_name} successful"),
        ),
        (_, true) => (
            "SuccessfulCreate",
            format!("Created {}: {child_name}", child_kind.to_lowercase()),
        ),
        (_, false) => (
            "SuccessfulDelete",
            format!("Deleted {}: {child_name}", child_kind.to_lowercase()),
        ),
    };
    record(
        g,
        &owner,
        Occurrence {
            kind: Kind::Normal,
            reason,
            message,
            component: controller_of(owner_kind),
        },
    );
}

/// `ScalingReplicaSet` on the Deployment that owns `rs`, as the deployment controller reports each scaling.
pub(crate) fn scaled(g: &mut Inner, rs: &Value, from: i64, to: i64) {
    let Some(owner_ref) = super::controller_ref(rs).cloned() else {
        return;
    };
    if from == to || owner_ref.get("kind").and_then(Value::as_str) != Some("Deployment") {
        return;
    }
    let owner = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": owner_ref.get("name").cloned().unwrap_or(Value::Null),
            "namespace": meta::namespace(rs),
            "uid": owner_ref.get("uid").cloned().unwrap_or(Value::Null)},
    });
    let way = if to > from { "up" } else { "down" };
    record(
        g,
        &owner,
        Occurrence {
            kind: Kind::Normal,
            reason: "ScalingReplicaSet",
            message: format!(
                "Scaled {way} replica set {} from {from} to {to}",
                meta::name(rs)
            ),
            component: "deployment-controller",
        },
    );
}
