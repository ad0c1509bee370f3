//! The DaemonSet controller, after upstream's `pkg/controller/daemon`, for kubesim's one node: one pod per
//! DaemonSet (`<set>-<suffix>`), pinned to the node by node affinity on `metadata.name` and labelled with the
//! template's `controller-revision-hash`; a changed template replaces the pod (RollingUpdate with one
//! unavailable at a time, which on one node is the pod itself; OnDelete waits for the user to delete it).
//!
//! Simplified: no ControllerRevisions, no node selectors or taints to honour (the one node fits every pod), and
//! `maxSurge` is ignored.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::kubelet::NODE_NAME;
use super::{
    CONTROLLER_MANAGER, Controller, OwnerIndex, RETRY_AFTER_ERROR, WorkQueue, availability, create,
    delete, int_at, is_ready, is_terminal, new_controller_ref, observe_owned, resync_owned, sooner,
    str_at, template_hash, write_status,
};
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, Inner, ObjKey};

const HASH_LABEL: &str = "controller-revision-hash";

/// Runs one pod of every DaemonSet on the node.
pub(crate) struct DaemonSetController {
    daemonsets: Arc<ResourceDef>,
    pods: Arc<ResourceDef>,
    pod_index: OwnerIndex,
}

impl DaemonSetController {
    pub(crate) fn new(daemonsets: Arc<ResourceDef>, pods: Arc<ResourceDef>) -> Self {
        DaemonSetController {
            daemonsets,
            pods,
            pod_index: OwnerIndex::new("DaemonSet"),
        }
    }
}

/// The pod of `ds` for its current template.
fn pod_for(ds: &Value, hash: &str) -> Value {
    let template = ds
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let (ns, name) = (meta::namespace(ds), meta::name(ds));
    let mut md = json!({
        "generateName": format!("{name}-"),
        "namespace": ns,
        "ownerReferences": [new_controller_ref(ds)],
    });
    for f in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.pointer(&format!("/metadata/{f}")) {
            md[f] = v.clone();
        }
    }
    md["labels"][HASH_LABEL] = json!(hash);
    md["labels"]["pod-template-generation"] =
        json!(int_at(ds, "/metadata/generation", 1).to_string());
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    // Upstream pins a daemon pod to its node through affinity, not nodeName, and lets it stay through the
    // node conditions that would evict other pods.
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE_NAME]}]}]
    });
    let mut tolerations = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        let effect = if key.ends_with("not-ready") || key.ends_with("unreachable") {
            "NoExecute"
        } else {
            "NoSchedule"
        };
        if !tolerations
            .iter()
            .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
        {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    }
    spec["tolerations"] = json!(tolerations);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec})
}

impl Controller for DaemonSetController {
    const NAME: &'static str = "daemonset-controller";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        resync_owned(g, &self.daemonsets, &self.pods, &mut self.pod_index, q);
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        observe_owned(ev, &self.daemonsets, &self.pods, &mut self.pod_index, q);
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let ds = g.get(&self.daemonsets, &key.0, &key.1).ok()?;
        if meta::is_deleting(&ds) {
            return None;
        }
        let uid = meta::uid(&ds).to_string();
        let template = ds
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let hash = template_hash(&template, 0);
        let on_delete = str_at(&ds, "/spec/updateStrategy/type") == "OnDelete";
        let min_ready = int_at(&ds, "/spec/minReadySeconds", 0);
        let pods = self.pod_index.children_of(g, &self.pods, key, &uid);
        let active: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| !is_terminal(p) && !meta::is_deleting(p))
            .collect();
        let current = |p: &Value| str_at(p, &format!("/metadata/labels/{HASH_LABEL}")) == hash;
        let mut requeue = None;
        match active.as_slice() {
            [] if pods.iter().all(|p| !meta::is_deleting(p)) => {
                match create(
                    g,
                    &self.pods,
                    &key.0,
                    pod_for(&ds, &hash),
                    CONTROLLER_MANAGER,
                ) {
                    Some(p) => {
                        self.pod_index.record(&p, false);
                    }
                    None => requeue = Some(RETRY_AFTER_ERROR),
                }
            }
            // A pod being replaced is still going: the new one comes once it is gone.
            [] => {}
            [one] => {
                if !current(one) && !on_delete {
                    delete(g, &self.pods, one, None, None);
                }
            }
            many => {
                // More than one on the node: keep one of the current template's, remove the rest.
                let keep = many.iter().find(|p| current(p)).copied().unwrap_or(many[0]);
                for p in many {
                    if !Arc::ptr_eq(p, keep) {
                        delete(g, &self.pods, p, None, None);
                    }
                }
            }
        }

        let now = jiff::Timestamp::now();
        let live: Vec<Arc<Value>> = self
            .pod_index
            .children_of(g, &self.pods, key, &uid)
            .into_iter()
            .filter(|p| !is_terminal(p) && !meta::is_deleting(p))
            .collect();
        let scheduled = live.len() as i64;
        let ready = live.iter().filter(|p| is_ready(p)).count() as i64;
        let updated = live.iter().filter(|p| current(p)).count() as i64;
        let mut available = 0i64;
        for p in &live {
            match availability(p, min_ready, now) {
                Ok(()) => available += 1,
                Err(wait) => requeue = sooner(requeue, wait),
            }
        }
        let mut status = Map::new();
        for (k, v) in [
            ("currentNumberScheduled", scheduled),
            ("desiredNumberScheduled", 1),
            ("numberMisscheduled", 0),
            ("numberReady", ready),
        ] {
            status.insert(k.into(), json!(v));
        }
        for (k, v) in [
            ("numberAvailable", available),
            ("updatedNumberScheduled", updated),
            ("numberUnavailable", 1 - available),
        ] {
            if v != 0 {
                status.insert(k.into(), json!(v));
            }
        }
        status.insert(
            "observedGeneration".into(),
            json!(int_at(&ds, "/metadata/generation", 1)),
        );
        if !write_status(
            g,
            &self.daemonsets,
            &ds,
            Value::Object(status),
            CONTROLLER_MANAGER,
        ) {
            return Some(RETRY_AFTER_ERROR);
        }
        requeue
    }
}
