//! The Deployment and ReplicaSet controllers, after upstream's `pkg/controller/deployment` and `replicaset`.
//!
//! Owns, for every Deployment: one ReplicaSet per distinct pod template (`<deployment>-<pod-template-hash>`, with
//! the `pod-template-hash` label and the `deployment.kubernetes.io/revision` annotations), the rolling update
//! (maxSurge / maxUnavailable) or Recreate between them, old ReplicaSets trimmed to `revisionHistoryLimit`, and
//! `status` with the `Available` and `Progressing` conditions that `kubectl rollout status` reads. For every
//! ReplicaSet: pods `<replicaset>-<random>` up or down to `spec.replicas`, and its `status`.
//!
//! Simplified: a scaling event during a rollout does not scale ReplicaSets proportionally (the rollout logic
//! converges instead), pods are created in one go rather than in slow-start batches, and ReplicaSets do not adopt
//! pods by selector: only pods they created are theirs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{
    CONTROLLER_MANAGER, Controller, OwnerIndex, RETRY_AFTER_ERROR, WorkQueue, availability,
    condition_json, create, delete, int_at, is_ready, is_terminal, key_of, labels,
    new_controller_ref, observe_owned, parse_time, resync_owned, scaled_value, sooner, str_at,
    template_hash, update, write_status,
};
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, Inner, ObjKey};

const HASH_LABEL: &str = "pod-template-hash";
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const DESIRED_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
const MAX_COLLISIONS: i64 = 16;

/// Reconciles Deployments into ReplicaSets.
pub(crate) struct DeploymentController {
    deployments: Arc<ResourceDef>,
    replicasets: Arc<ResourceDef>,
    rs_index: OwnerIndex,
}

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The Deployment's annotations its ReplicaSets carry (upstream's `copyDeploymentAnnotationsToReplicaSet`):
/// all but the last applied configuration and the controller's own bookkeeping.
fn copied_annotations(d: &Value) -> serde_json::Map<String, Value> {
    const SKIPPED: &[&str] = &[
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        DESIRED_ANNOTATION,
        MAX_ANNOTATION,
    ];
    d.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !SKIPPED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// `EqualIgnoreHash`: the ReplicaSet's template is the Deployment's, but for the hash label.
fn same_template(rs: &Value, template: &Value) -> bool {
    let mut t = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
        if l.is_empty()
            && template.pointer("/metadata/labels").is_none()
            && let Some(md) = t.get_mut("metadata").and_then(Value::as_object_mut)
        {
            md.remove("labels");
        }
    }
    t == *template
}

/// What the Deployment asks of its ReplicaSets' size: its replicas and how far a rollout may surge above them
/// (recorded on each ReplicaSet as the desired-replicas and max-replicas annotations).
#[derive(Clone, Copy)]
struct Size {
    replicas: i64,
    surge: i64,
}

fn spec_replicas(rs: &Value) -> i64 {
    int_at(rs, "/spec/replicas", 1)
}

fn status_int(o: &Value, field: &str) -> i64 {
    int_at(o, &format!("/status/{field}"), 0)
}

impl DeploymentController {
    pub(crate) fn new(deployments: Arc<ResourceDef>, replicasets: Arc<ResourceDef>) -> Self {
        DeploymentController {
            deployments,
            replicasets,
            rs_index: OwnerIndex::new("Deployment"),
        }
    }

    fn scale(&self, g: &mut Inner, rs: &Value, replicas: i64, size: Size) -> bool {
        if spec_replicas(rs) == replicas {
            return false;
        }
        let mut new = rs.clone();
        new["spec"]["replicas"] = json!(replicas);
        let ann = meta::metadata_mut(&mut new)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        ann[DESIRED_ANNOTATION] = json!(size.replicas.to_string());
        ann[MAX_ANNOTATION] = json!((size.replicas + size.surge).to_string());
        let done = update(g, &self.replicasets, new, CONTROLLER_MANAGER).is_some();
        if done {
            super::events::scaled(g, rs, spec_replicas(rs), replicas);
        }
        done
    }

    /// Creates the ReplicaSet for the Deployment's current template.
    fn create_new_rs(
        &mut self,
        g: &mut Inner,
        d: &Value,
        replicas: i64,
        size: Size,
        rev: i64,
        collisions: &mut i64,
    ) -> Option<Arc<Value>> {
        let template = d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let (ns, name) = key_of(d);
        for _ in 0..MAX_COLLISIONS {
            let hash = template_hash(&template, *collisions);
            let rs_name = format!("{name}-{hash}");
            let mut t = template.clone();
            t["metadata"]["labels"][HASH_LABEL] = json!(hash);
            let mut selector = d
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or_else(|| json!({}));
            selector["matchLabels"][HASH_LABEL] = json!(hash);
            let mut l = labels(&template).cloned().unwrap_or_default();
            l.insert(HASH_LABEL.into(), json!(hash));
            let mut annotations = copied_annotations(d);
            annotations.insert(REVISION_ANNOTATION.into(), json!(rev.to_string()));
            annotations.insert(DESIRED_ANNOTATION.into(), json!(size.replicas.to_string()));
            annotations.insert(
                MAX_ANNOTATION.into(),
                json!((size.replicas + size.surge).to_string()),
            );
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name, "namespace": ns, "labels": l,
                    "annotations": annotations,
                    "ownerReferences": [new_controller_ref(d)],
                },
                "spec": {
                    "replicas": replicas,
                    "minReadySeconds": int_at(d, "/spec/minReadySeconds", 0),
                    "selector": selector,
                    "template": t,
                },
            });
            match g.create(
                &self.replicasets,
                Some(&ns),
                rs,
                &super::write_opts(CONTROLLER_MANAGER),
            ) {
                Ok(o) => {
                    self.rs_index.record(&o, false);
                    super::events::scaled(g, &o, 0, spec_replicas(&o));
                    return Some(o);
                }
                Err(e) if e.code == 409 => {
                    if let Ok(existing) = g.get(&self.replicasets, &ns, &rs_name)
                        && super::controlled_by(&existing, meta::uid(d))
                        && same_template(&existing, &template)
                    {
                        return Some(existing);
                    }
                    *collisions += 1;
                }
                Err(e) => {
                    tracing::debug!(deployment = name, error = %e.message, "creating a ReplicaSet failed");
                    return None;
                }
            }
        }
        None
    }
}

impl Controller for DeploymentController {
    const NAME: &'static str = "deployment-controller";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        resync_owned(
            g,
            &self.deployments,
            &self.replicasets,
            &mut self.rs_index,
            q,
        );
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        observe_owned(
            ev,
            &self.deployments,
            &self.replicasets,
            &mut self.rs_index,
            q,
        );
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let d = g.get(&self.deployments, &key.0, &key.1).ok()?;
        if meta::is_deleting(&d) {
            return None;
        }
        let uid = meta::uid(&d).to_string();
        let replicas = int_at(&d, "/spec/replicas", 1).max(0);
        let template = d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let recreate = str_at(&d, "/spec/strategy/type") == "Recreate";
        let paused = d
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (surge, mut unavailable) = if recreate {
            (0, 0)
        } else {
            (
                scaled_value(
                    d.pointer("/spec/strategy/rollingUpdate/maxSurge"),
                    replicas,
                    true,
                    0,
                ),
                scaled_value(
                    d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
                    replicas,
                    false,
                    0,
                ),
            )
        };
        if surge == 0 && unavailable == 0 && !recreate {
            // Upstream's fencepost rule: a rollout must be able to make progress.
            unavailable = 1;
        }
        let size = Size { replicas, surge };
        let mut collisions = int_at(&d, "/status/collisionCount", 0);

        let mut rss = self.rs_index.children_of(g, &self.replicasets, key, &uid);
        rss.sort_by(|a, b| {
            (meta::str_field(a, "creationTimestamp"), meta::name(a))
                .cmp(&(meta::str_field(b, "creationTimestamp"), meta::name(b)))
        });
        let new_idx = rss.iter().position(|rs| same_template(rs, &template));
        let max_old_rev = rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, rs)| revision(rs))
            .max()
            .unwrap_or(0);
        let mut created = false;
        let mut scaled = false;
        let mut new_rs = new_idx.map(|i| rss.remove(i));
        let old: Vec<Arc<Value>> = rss;
        if new_rs.is_none() && !paused {
            let old_total: i64 = old.iter().map(|r| spec_replicas(r)).sum();
            let initial = if recreate {
                if old_total > 0 { 0 } else { replicas }
            } else if old_total == 0 {
                replicas
            } else {
                replicas.min((replicas + surge - old_total).max(0))
            };
            new_rs = self.create_new_rs(g, &d, initial, size, max_old_rev + 1, &mut collisions);
            if new_rs.is_none() {
                return Some(RETRY_AFTER_ERROR);
            }
            created = true;
        } else if let Some(rs) = &new_rs
            && revision(rs) <= max_old_rev
        {
            // A rollback to an older template: its ReplicaSet becomes the newest revision, with the
            // Deployment's annotations (its change-cause) as they are now.
            let mut bumped = (**rs).clone();
            let ann = meta::metadata_mut(&mut bumped)
                .entry("annotations")
                .or_insert_with(|| json!({}));
            for (k, v) in copied_annotations(&d) {
                ann[k.as_str()] = v;
            }
            ann[REVISION_ANNOTATION] = json!((max_old_rev + 1).to_string());
            new_rs = update(g, &self.replicasets, bumped, CONTROLLER_MANAGER).or(new_rs);
        } else if let Some(rs) = &new_rs {
            // The Deployment's annotations follow to its current ReplicaSet (a change-cause set later).
            let copied = copied_annotations(&d);
            let current = rs
                .pointer("/metadata/annotations")
                .and_then(Value::as_object);
            if copied
                .iter()
                .any(|(k, v)| current.and_then(|c| c.get(k)) != Some(v))
            {
                let mut refreshed = (**rs).clone();
                let ann = meta::metadata_mut(&mut refreshed)
                    .entry("annotations")
                    .or_insert_with(|| json!({}));
                for (k, v) in copied {
                    ann[k.as_str()] = v;
                }
                new_rs = update(g, &self.replicasets, refreshed, CONTROLLER_MANAGER).or(new_rs);
            }
        }

        if !paused && let Some(nrs) = new_rs.clone() {
            let active_old: Vec<&Arc<Value>> =
                old.iter().filter(|r| spec_replicas(r) > 0).collect();
            if recreate {
                for rs in &active_old {
                    scaled |= self.scale(g, rs, 0, size);
                }
                let old_pods: i64 = old.iter().map(|r| status_int(r, "replicas")).sum();
                if active_old.is_empty() && old_pods == 0 {
                    scaled |= self.scale(g, &nrs, replicas, size);
                }
            } else if active_old.is_empty() {
                scaled |= self.scale(g, &nrs, replicas, size);
            } else {
                // Scale the new ReplicaSet up within maxSurge.
                let total: i64 =
                    active_old.iter().map(|r| spec_replicas(r)).sum::<i64>() + spec_replicas(&nrs);
                let max_total = replicas + surge;
                let mut new_replicas = spec_replicas(&nrs);
                if total < max_total {
                    new_replicas = replicas.min(new_replicas + (max_total - total));
                    scaled |= self.scale(g, &nrs, new_replicas, size);
                }
                // Scale old ReplicaSets down within maxUnavailable: unhealthy pods first, then available ones.
                let min_available = replicas - unavailable;
                let all_total = total - spec_replicas(&nrs) + new_replicas;
                let new_unavailable = (new_replicas - status_int(&nrs, "availableReplicas")).max(0);
                let mut budget = all_total - min_available - new_unavailable;
                let mut remaining: Vec<(Arc<Value>, i64)> = active_old
                    .iter()
                    .map(|r| ((*r).clone(), spec_replicas(r)))
                    .collect();
                for (rs, target) in remaining.iter_mut() {
                    if budget <= 0 {
                        break;
                    }
                    let unhealthy = (*target - status_int(rs, "availableReplicas")).max(0);
                    let down = unhealthy.min(budget);
                    if down > 0 {
                        *target -= down;
                        budget -= down;
                    }
                }
                let available: i64 = old
                    .iter()
                    .chain(std::iter::once(&nrs))
                    .map(|r| status_int(r, "availableReplicas"))
                    .sum();
                let mut can_remove = available - min_available;
                for (rs, target) in remaining.iter_mut() {
                    if can_remove <= 0 {
                        break;
                    }
                    let down = (*target)
                        .min(can_remove)
                        .min(status_int(rs, "availableReplicas"));
                    *target -= down;
                    can_remove -= down;
                }
                for (rs, target) in &remaining {
                    scaled |= self.scale(g, rs, *target, size);
                }
            }
        }

        // Re-read the ReplicaSets as they are now, then trim the history of empty old ones.
        let new_rs = new_rs.and_then(|r| g.get(&self.replicasets, &key.0, meta::name(&r)).ok());
        let old: Vec<Arc<Value>> = old
            .iter()
            .filter_map(|r| g.get(&self.replicasets, &key.0, meta::name(r)).ok())
            .collect();
        let limit = int_at(&d, "/spec/revisionHistoryLimit", 10).max(0) as usize;
        let empty_old: Vec<&Arc<Value>> = old
            .iter()
            .filter(|r| spec_replicas(r) == 0 && status_int(r, "replicas") == 0)
            .collect();
        if empty_old.len() > limit {
            for rs in &empty_old[..empty_old.len() - limit] {
                delete(g, &self.replicasets, rs, None, None);
            }
        }

        // The revision annotation of the Deployment follows its newest ReplicaSet.
        let mut d = d;
        if let Some(nrs) = &new_rs {
            let rev = revision(nrs).to_string();
            let cur = d
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .and_then(Value::as_str);
            if cur != Some(rev.as_str()) {
                let mut nd = (*d).clone();
                let ann = meta::metadata_mut(&mut nd)
                    .entry("annotations")
                    .or_insert_with(|| json!({}));
                ann[REVISION_ANNOTATION] = json!(rev);
                if let Some(o) = update(g, &self.deployments, nd, CONTROLLER_MANAGER) {
                    d = o;
                }
            }
        }

        let all: Vec<&Arc<Value>> = old.iter().chain(new_rs.iter()).collect();
        let sum = |f: &str| all.iter().map(|r| status_int(r, f)).sum::<i64>();
        let total_spec: i64 = all.iter().map(|r| spec_replicas(r)).sum();
        let st_replicas = sum("replicas");
        let updated = new_rs
            .as_ref()
            .map(|r| status_int(r, "replicas"))
            .unwrap_or(0);
        let ready = sum("readyReplicas");
        let available = sum("availableReplicas");
        let now = meta::now();
        let prev = d.get("status");
        let rs_name = new_rs
            .as_ref()
            .map(|r| meta::name(r).to_string())
            .unwrap_or_default();

        let available_ok = available >= replicas - unavailable;
        let available_cond = if available_ok {
            condition_json(
                prev,
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &now,
            )
        } else {
            condition_json(
                prev,
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &now,
            )
        };
        let complete = updated == replicas && st_replicas == replicas && available == replicas;
        let prev_prog = prev
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| str_at(c, "/type") == "Progressing"))
            .cloned();
        let progressed = created
            || scaled
            || updated > status_int(&d, "updatedReplicas")
            || ready > status_int(&d, "readyReplicas")
            || available > status_int(&d, "availableReplicas")
            || (st_replicas - updated)
                < (status_int(&d, "replicas") - status_int(&d, "updatedReplicas"));
        let deadline = d
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64);
        let mut requeue = None;
        let (ok, reason, message): (&str, &str, String) = if paused {
            ("Unknown", "DeploymentPaused", "Deployment is paused".into())
        } else if complete {
            (
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            )
        } else if created {
            (
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{rs_name}\""),
            )
        } else if progressed {
            (
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
            )
        } else {
            let last = prev_prog
                .as_ref()
                .and_then(|c| c.get("lastUpdateTime"))
                .and_then(Value::as_str)
                .and_then(parse_time);
            match (deadline, last) {
                (Some(secs), Some(last)) => {
                    let at = last + jiff::SignedDuration::from_secs(secs);
                    let now_ts = jiff::Timestamp::now();
                    if at <= now_ts {
                        (
                            "False",
                            "ProgressDeadlineExceeded",
                            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                        )
                    } else {
                        let left = (at - now_ts).get_milliseconds().max(0) as u64;
                        requeue = Some(Duration::from_millis(left + 50));
                        prev_reason_or(&prev_prog, &rs_name)
                    }
                }
                _ => prev_reason_or(&prev_prog, &rs_name),
            }
        };
        let same = prev_prog.as_ref().is_some_and(|c| {
            str_at(c, "/status") == ok
                && str_at(c, "/reason") == reason
                && str_at(c, "/message") == message
        });
        let mut prog =
            json!({"type": "Progressing", "status": ok, "reason": reason, "message": message});
        // lastUpdateTime moves on progress; lastTransitionTime only when the status changes.
        let keep_update = same && !progressed;
        prog["lastUpdateTime"] = match (&prev_prog, keep_update) {
            (Some(c), true) => c
                .get("lastUpdateTime")
                .cloned()
                .unwrap_or_else(|| json!(now)),
            _ => json!(now),
        };
        prog["lastTransitionTime"] = match &prev_prog {
            Some(c) if str_at(c, "/status") == ok => c
                .get("lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| json!(now)),
            _ => json!(now),
        };
        let mut available_cond = available_cond;
        available_cond["lastUpdateTime"] = prev
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| str_at(c, "/type") == "Available"))
            .filter(|c| str_at(c, "/status") == str_at(&available_cond, "/status"))
            .and_then(|c| c.get("lastUpdateTime").cloned())
            .unwrap_or_else(|| json!(now));
        if !complete
            && !paused
            && requeue.is_none()
            && let Some(secs) = deadline
        {
            requeue = Some(Duration::from_secs(secs.max(1) as u64));
        }

        let mut status = Map::new();
        status.insert(
            "observedGeneration".into(),
            json!(int_at(&d, "/metadata/generation", 1)),
        );
        for (k, v) in [
            ("replicas", st_replicas),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("unavailableReplicas", (total_spec - available).max(0)),
        ] {
            if v != 0 {
                status.insert(k.into(), json!(v));
            }
        }
        status.insert("conditions".into(), json!([available_cond, prog]));
        if collisions > 0 {
            status.insert("collisionCount".into(), json!(collisions));
        }
        if !write_status(
            g,
            &self.deployments,
            &d,
            Value::Object(status),
            CONTROLLER_MANAGER,
        ) {
            return Some(RETRY_AFTER_ERROR);
        }
        requeue
    }
}

fn prev_reason_or(prev: &Option<Value>, rs_name: &str) -> (&'static str, &'static str, String) {
    match prev.as_ref().map(|c| str_at(c, "/reason")) {
        Some("NewReplicaSetCreated") => (
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{rs_name}\""),
        ),
        Some("ReplicaSetUpdated") => (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
        ),
        Some("ProgressDeadlineExceeded") => (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        ),
        _ => (
            "True",
            "FoundNewReplicaSet",
            format!("Found new replica set \"{rs_name}\""),
        ),
    }
}

/// Reconciles ReplicaSets into pods.
pub(crate) struct ReplicaSetController {
    replicasets: Arc<ResourceDef>,
    pods: Arc<ResourceDef>,
    pod_index: OwnerIndex,
}

impl ReplicaSetController {
    pub(crate) fn new(replicasets: Arc<ResourceDef>, pods: Arc<ResourceDef>) -> Self {
        ReplicaSetController {
            replicasets,
            pods,
            pod_index: OwnerIndex::new("ReplicaSet"),
        }
    }
}

/// Which pods a ReplicaSet removes first when it scales down (upstream `ActivePodsWithRanks`, simplified):
/// unscheduled before scheduled, pending before running, unready before ready, newest first.
fn deletion_rank(p: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let scheduled = u8::from(!str_at(p, "/spec/nodeName").is_empty());
    let phase = match super::phase(p) {
        "Pending" => 0,
        "Running" => 2,
        _ => 1,
    };
    (
        scheduled,
        phase,
        u8::from(is_ready(p)),
        std::cmp::Reverse(meta::str_field(p, "creationTimestamp").to_string()),
    )
}

impl Controller for ReplicaSetController {
    const NAME: &'static str = "replicaset-controller";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        resync_owned(g, &self.replicasets, &self.pods, &mut self.pod_index, q);
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        observe_owned(ev, &self.replicasets, &self.pods, &mut self.pod_index, q);
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let rs = g.get(&self.replicasets, &key.0, &key.1).ok()?;
        if meta::is_deleting(&rs) {
            return None;
        }
        let uid = meta::uid(&rs).to_string();
        let want = spec_replicas(&rs).max(0);
        let min_ready = int_at(&rs, "/spec/minReadySeconds", 0);
        let pods = self.pod_index.children_of(g, &self.pods, key, &uid);
        let mut names: Vec<String> = pods.iter().map(|p| meta::name(p).to_string()).collect();
        let mut active: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| !is_terminal(p) && !meta::is_deleting(p))
            .collect();
        let have = active.len() as i64;
        let mut requeue = None;
        if have < want {
            let template = rs
                .pointer("/spec/template")
                .cloned()
                .unwrap_or_else(|| json!({}));
            for _ in have..want {
                let mut md = json!({
                    "generateName": format!("{}-", key.1),
                    "namespace": key.0,
                    "ownerReferences": [new_controller_ref(&rs)],
                });
                for f in ["labels", "annotations", "finalizers"] {
                    if let Some(v) = template.pointer(&format!("/metadata/{f}")) {
                        md[f] = v.clone();
                    }
                }
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": md,
                    "spec": template.get("spec").cloned().unwrap_or_else(|| json!({}))});
                match create(g, &self.pods, &key.0, pod, CONTROLLER_MANAGER) {
                    Some(p) => {
                        self.pod_index.record(&p, false);
                        names.push(meta::name(&p).to_string());
                    }
                    None => {
                        requeue = Some(RETRY_AFTER_ERROR);
                        break;
                    }
                }
            }
        } else if have > want {
            active.sort_by_key(|p| deletion_rank(p));
            for p in active.iter().take((have - want) as usize) {
                delete(g, &self.pods, p, None, None);
            }
        }

        let template_labels = rs
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let now = jiff::Timestamp::now();
        let (mut replicas, mut labeled, mut ready, mut available) = (0i64, 0i64, 0i64, 0i64);
        for n in &names {
            let Ok(p) = g.get(&self.pods, &key.0, n) else {
                continue;
            };
            if !super::controlled_by(&p, &uid) || is_terminal(&p) || meta::is_deleting(&p) {
                continue;
            }
            replicas += 1;
            let pl = labels(&p);
            if template_labels
                .iter()
                .all(|(k, v)| pl.and_then(|l| l.get(k)) == Some(v))
            {
                labeled += 1;
            }
            if is_ready(&p) {
                ready += 1;
                match availability(&p, min_ready, now) {
                    Ok(()) => available += 1,
                    Err(wait) => requeue = sooner(requeue, wait),
                }
            }
        }
        let mut status = Map::new();
        status.insert("replicas".into(), json!(replicas));
        for (k, v) in [
            ("fullyLabeledReplicas", labeled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ] {
            if v != 0 {
                status.insert(k.into(), json!(v));
            }
        }
        status.insert(
            "observedGeneration".into(),
            json!(int_at(&rs, "/metadata/generation", 1)),
        );
        if let Some(c) = rs.pointer("/status/conditions") {
            status.insert("conditions".into(), c.clone());
        }
        if !write_status(
            g,
            &self.replicasets,
            &rs,
            Value::Object(status),
            CONTROLLER_MANAGER,
        ) {
            return Some(RETRY_AFTER_ERROR);
        }
        requeue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compare_without_the_hash_label() {
        let t =
            json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c"}]}});
        let mut rs_t = t.clone();
        rs_t["metadata"]["labels"][HASH_LABEL] = json!("abc");
        let rs = json!({"spec": {"template": rs_t}});
        assert!(same_template(&rs, &t));
        let other =
            json!({"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}});
        assert!(!same_template(&rs, &other));
    }

    #[test]
    fn unscheduled_and_unready_pods_go_first() {
        let ready = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"nodeName": "n"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let pending = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"nodeName": "n"},
            "status": {"phase": "Pending"}});
        let unscheduled = json!({"metadata": {}, "spec": {}, "status": {"phase": "Pending"}});
        let mut v = [&ready, &pending, &unscheduled];
        v.sort_by_key(|p| deletion_rank(p));
        assert_eq!(v, [&unscheduled, &pending, &ready]);
    }
}
