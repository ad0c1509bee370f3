//! Events as the components' event recorders write them, so that `kubectl describe` and `kubectl events` tell
//! what happened: one `core/v1` Event and its `events.k8s.io/v1` twin per occurrence (upstream keeps one storage
//! with two views; kubesim has two storages and writes both).
//!
//! Simplified: no aggregation of repeats into `count`/`series` (a repeat is a new Event) and no time-to-live.

use serde_json::{Value, json};

use crate::meta;
use crate::store::{Inner, WriteOpts};

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
    let event_name = format!("{name}.{:016x}", rand::random::<u64>());
    let kind = match what.kind {
        Kind::Normal => "Normal",
        Kind::Warning => "Warning",
    };
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
    for (group, body) in [("", core), ("events.k8s.io", modern)] {
        let def = g.def(group, "events");
        if let Err(e) = g.create(&def, Some(ns), body, &opts) {
            // A terminating namespace refuses new objects, events included; nothing else depends on them.
            tracing::debug!(reason = what.reason, error = %e.message, "event not recorded");
        }
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
