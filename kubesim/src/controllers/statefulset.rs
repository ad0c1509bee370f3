//! The StatefulSet controller, after upstream's `stateful_set_control.go` and `stateful_set_utils.go`.
//!
//! Owns, for every StatefulSet: its ControllerRevisions (`<set>-<hash>`, one per distinct pod template, trimmed to
//! `revisionHistoryLimit`), its pods `<set>-<ordinal>` with their identity (labels, hostname, subdomain, claim
//! volumes), the claims from `volumeClaimTemplates` (`<claim>-<set>-<ordinal>`, created before their pod) and the
//! owner references on them that `persistentVolumeClaimRetentionPolicy` asks for, ordered or parallel creation and
//! scale-down, rolling updates down to the partition, and `status` written through `/status` as upstream computes
//! it. Deleting the pods of a deleted set, and the claims that reference it, is the garbage collector's work.
//!
//! Left out: adopting and releasing pods by selector (only pods this controller created are its own),
//! `maxUnavailable` (alpha upstream), and the Events upstream records.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{
    CONTROLLER_MANAGER, Controller, OwnerIndex, RETRY_AFTER_ERROR, WorkQueue, availability, create,
    delete, int_at, is_of, is_running_ready, is_terminal, labels, new_controller_ref,
    observe_owned, resync_owned, sooner, str_at, template_hash, update, write_status,
};
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, Inner, ObjKey};

/// The pod label naming the ControllerRevision a pod was made from.
const REVISION_LABEL: &str = "controller-revision-hash";
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The ControllerRevision label holding the bare hash.
const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Upstream truncates the set's name to this many characters in revision names.
const REVISION_PREFIX_MAX: usize = 223;
/// Hash collisions tried before giving up on a sync.
const MAX_COLLISIONS: i64 = 16;

/// Reconciles StatefulSets.
pub(crate) struct StatefulSetController {
    sets: Arc<ResourceDef>,
    pods: Arc<ResourceDef>,
    revisions: Arc<ResourceDef>,
    claims: Arc<ResourceDef>,
    pod_index: OwnerIndex,
    revision_index: OwnerIndex,
}

/// What one set asks for, read once per sync.
struct SetSpec {
    name: String,
    ns: String,
    uid: String,
    replicas: i64,
    start: i64,
    min_ready: i64,
    monotonic: bool,
    rolling: bool,
    partition: i64,
    delete_when_deleted: bool,
    delete_when_scaled: bool,
}

impl SetSpec {
    fn read(set: &Value) -> Self {
        SetSpec {
            name: meta::name(set).to_string(),
            ns: meta::namespace(set).to_string(),
            uid: meta::uid(set).to_string(),
            replicas: int_at(set, "/spec/replicas", 1).max(0),
            start: int_at(set, "/spec/ordinals/start", 0).max(0),
            min_ready: int_at(set, "/spec/minReadySeconds", 0),
            monotonic: str_at(set, "/spec/podManagementPolicy") != "Parallel",
            rolling: str_at(set, "/spec/updateStrategy/type") != "OnDelete",
            partition: int_at(set, "/spec/updateStrategy/rollingUpdate/partition", 0).max(0),
            delete_when_deleted: str_at(
                set,
                "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted",
            ) == "Delete",
            delete_when_scaled: str_at(
                set,
                "/spec/persistentVolumeClaimRetentionPolicy/whenScaled",
            ) == "Delete",
        }
    }

    fn pod_name(&self, ordinal: i64) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// The ordinal of one of this set's pods, from its name.
    fn ordinal(&self, pod: &Value) -> Option<i64> {
        let rest = meta::name(pod)
            .strip_prefix(&self.name)?
            .strip_prefix('-')?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.parse().ok()
    }

    fn in_range(&self, ordinal: i64) -> bool {
        ordinal >= self.start && ordinal < self.start + self.replicas
    }
}

fn revision_of(pod: &Value) -> &str {
    labels(pod)
        .and_then(|l| l.get(REVISION_LABEL))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `isHealthy`: running, ready and not terminating.
fn is_healthy(pod: &Value) -> bool {
    is_running_ready(pod) && !meta::is_deleting(pod)
}

/// What a revision stores: a strategic merge patch that replaces the pod template (upstream `getPatch`).
fn revision_data(set: &Value) -> Value {
    let mut template = set
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    template["$patch"] = json!("replace");
    json!({"spec": {"template": template}})
}

/// The pod template a revision restores.
fn revision_template(rev: &Value) -> Value {
    let mut t = rev
        .pointer("/data/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    t
}

impl StatefulSetController {
    pub(crate) fn new(
        sets: Arc<ResourceDef>,
        pods: Arc<ResourceDef>,
        revisions: Arc<ResourceDef>,
        claims: Arc<ResourceDef>,
    ) -> Self {
        StatefulSetController {
            sets,
            pods,
            revisions,
            claims,
            pod_index: OwnerIndex::new("StatefulSet"),
            revision_index: OwnerIndex::new("StatefulSet"),
        }
    }

    /// Finds or creates the revision for the set's current template (upstream `getStatefulSetRevisions`).
    /// `revisions` is sorted by `.revision` and gains the new one.
    fn update_revision(
        &mut self,
        g: &mut Inner,
        set: &Value,
        spec: &SetSpec,
        revisions: &mut Vec<Arc<Value>>,
        collisions: &mut i64,
    ) -> Option<Arc<Value>> {
        let data = revision_data(set);
        let latest = revisions
            .last()
            .map(|r| int_at(r, "/revision", 0))
            .unwrap_or(0);
        if let Some(eq) = revisions
            .iter()
            .rev()
            .find(|r| r.get("data") == Some(&data))
            .cloned()
        {
            if int_at(&eq, "/revision", 0) == latest {
                return Some(eq);
            }
            // Rolling back to an earlier template: that revision becomes the newest again.
            let mut bumped = (*eq).clone();
            bumped["revision"] = json!(latest + 1);
            let out = update(g, &self.revisions, bumped, CONTROLLER_MANAGER)?;
            revisions.retain(|r| meta::uid(r) != meta::uid(&out));
            revisions.push(out.clone());
            return Some(out);
        }
        let prefix: String = spec.name.chars().take(REVISION_PREFIX_MAX).collect();
        let template_labels = set
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        for _ in 0..MAX_COLLISIONS {
            let hash = template_hash(&data, *collisions);
            let name = format!("{prefix}-{hash}");
            let mut rev_labels = template_labels.clone();
            rev_labels[REVISION_HASH_LABEL] = json!(hash);
            let mut md = json!({
                "name": name, "namespace": spec.ns, "labels": rev_labels,
                "ownerReferences": [new_controller_ref(set)],
            });
            if let Some(a) = set.pointer("/metadata/annotations") {
                md["annotations"] = a.clone();
            }
            let cr = json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": md,
                "data": data, "revision": latest + 1,
            });
            match g.create(
                &self.revisions,
                Some(&spec.ns),
                cr,
                &super::write_opts(CONTROLLER_MANAGER),
            ) {
                Ok(o) => {
                    self.revision_index.record(&o, false);
                    revisions.push(o.clone());
                    return Some(o);
                }
                Err(e) if e.code == 409 => {
                    if let Ok(existing) = g.get(&self.revisions, &spec.ns, &name)
                        && existing.get("data") == Some(&data)
                        && super::controlled_by(&existing, &spec.uid)
                    {
                        return Some(existing);
                    }
                    *collisions += 1;
                }
                Err(e) => {
                    tracing::debug!(set = %spec.name, error = %e.message, "creating a ControllerRevision failed");
                    return None;
                }
            }
        }
        None
    }

    /// The claims of one ordinal, built from the templates (upstream `getPersistentVolumeClaims`).
    fn claims_for(&self, set: &Value, spec: &SetSpec, ordinal: i64) -> Vec<(String, Value)> {
        let selector_labels = set
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        set.pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| {
                let template_name = meta::name(t).to_string();
                let name = format!("{template_name}-{}-{ordinal}", spec.name);
                let mut l = labels(t).cloned().unwrap_or_default();
                l.extend(selector_labels.clone());
                let mut md = json!({"name": name, "namespace": spec.ns, "labels": l});
                if let Some(a) = t.pointer("/metadata/annotations") {
                    md["annotations"] = a.clone();
                }
                let claim = json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md,
                    "spec": t.get("spec").cloned().unwrap_or_else(|| json!({})),
                });
                (template_name, claim)
            })
            .collect()
    }

    /// Creates the claims of an ordinal that do not exist. False when one is being deleted: the pod must wait.
    fn create_missing_claims(
        &self,
        g: &mut Inner,
        set: &Value,
        spec: &SetSpec,
        ordinal: i64,
    ) -> bool {
        let mut ok = true;
        for (_, mut claim) in self.claims_for(set, spec, ordinal) {
            match g.get(&self.claims, &spec.ns, meta::name(&claim)) {
                Ok(existing) if meta::is_deleting(&existing) => ok = false,
                Ok(_) => {}
                Err(_) => {
                    if spec.delete_when_deleted {
                        claim["metadata"]["ownerReferences"] = json!([new_controller_ref(set)]);
                    }
                    if create(g, &self.claims, &spec.ns, claim, CONTROLLER_MANAGER).is_none() {
                        ok = false;
                    }
                }
            }
        }
        ok
    }

    /// Sets the owner references of a pod's claims as the retention policy asks (upstream
    /// `updateClaimOwnerRefForSetAndPod`): the set owns them when they go with the set, the pod owns them once it
    /// is scaled away and they go with scale-down.
    fn fix_claim_owners(
        &self,
        g: &mut Inner,
        set: &Value,
        spec: &SetSpec,
        pod: &Value,
        ordinal: i64,
    ) {
        let scaled_down = !spec.in_range(ordinal);
        for (_, want) in self.claims_for(set, spec, ordinal) {
            let Ok(claim) = g.get(&self.claims, &spec.ns, meta::name(&want)) else {
                continue;
            };
            if meta::is_deleting(&claim) {
                continue;
            }
            let old: Vec<Value> = claim
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ours = |r: &Value| {
                let kind = str_at(r, "/kind");
                let name = str_at(r, "/name");
                (kind == "StatefulSet" && name == spec.name)
                    || (kind == "Pod" && name == meta::name(pod))
            };
            let mut refs: Vec<Value> = old.iter().filter(|r| !ours(r)).cloned().collect();
            let foreign_controller = refs
                .iter()
                .any(|r| r.get("controller").and_then(Value::as_bool) == Some(true));
            if !foreign_controller {
                if spec.delete_when_scaled && scaled_down {
                    refs.push(new_controller_ref(pod));
                } else if spec.delete_when_deleted && !(spec.delete_when_scaled && scaled_down) {
                    refs.push(new_controller_ref(set));
                }
            }
            if refs == old {
                continue;
            }
            let mut new = (*claim).clone();
            let md = meta::metadata_mut(&mut new);
            if refs.is_empty() {
                md.remove("ownerReferences");
            } else {
                md.insert("ownerReferences".into(), json!(refs));
            }
            update(g, &self.claims, new, CONTROLLER_MANAGER);
        }
    }

    /// A new pod for an ordinal from a template (upstream `newStatefulSetPod` + `setPodRevision`).
    fn new_pod(
        &self,
        set: &Value,
        spec: &SetSpec,
        template: &Value,
        ordinal: i64,
        revision: &str,
    ) -> Value {
        let name = spec.pod_name(ordinal);
        let mut l = labels(template).cloned().unwrap_or_default();
        l.insert(POD_NAME_LABEL.into(), json!(name));
        l.insert(POD_INDEX_LABEL.into(), json!(ordinal.to_string()));
        l.insert(REVISION_LABEL.into(), json!(revision));
        let mut md = json!({
            "name": name, "namespace": spec.ns, "labels": l,
            "ownerReferences": [new_controller_ref(set)],
        });
        for f in ["annotations", "finalizers"] {
            if let Some(v) = template.pointer(&format!("/metadata/{f}")) {
                md[f] = v.clone();
            }
        }
        let mut pod_spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
        pod_spec["hostname"] = json!(name);
        let service = str_at(set, "/spec/serviceName");
        if !service.is_empty() {
            pod_spec["subdomain"] = json!(service);
        }
        // Each claim template becomes a volume of the same name, replacing a volume the template had by that name.
        let claims = self.claims_for(set, spec, ordinal);
        let mut volumes: Vec<Value> = claims
            .iter()
            .map(|(tname, c)| json!({"name": tname, "persistentVolumeClaim": {"claimName": meta::name(c)}}))
            .collect();
        let claim_names: HashSet<&str> = claims.iter().map(|(n, _)| n.as_str()).collect();
        for v in pod_spec
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !claim_names.contains(str_at(v, "/name")) {
                volumes.push(v.clone());
            }
        }
        if !volumes.is_empty() {
            pod_spec["volumes"] = json!(volumes);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": pod_spec})
    }

    /// Deletes revisions beyond `revisionHistoryLimit` that no pod and neither status revision uses.
    fn truncate_history(
        &mut self,
        g: &mut Inner,
        set: &Value,
        revisions: &[Arc<Value>],
        live: &HashSet<String>,
    ) {
        let limit = int_at(set, "/spec/revisionHistoryLimit", 10).max(0) as usize;
        let old: Vec<&Arc<Value>> = revisions
            .iter()
            .filter(|r| !live.contains(meta::name(r)))
            .collect();
        if old.len() <= limit {
            return;
        }
        for r in &old[..old.len() - limit] {
            delete(g, &self.revisions, r, None, None);
        }
    }
}

impl Controller for StatefulSetController {
    const NAME: &'static str = "statefulset-controller";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        resync_owned(g, &self.sets, &self.pods, &mut self.pod_index, q);
        self.revision_index.clear();
        for r in g.list(&self.revisions, None) {
            self.revision_index.record(&r, false);
        }
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        if !observe_owned(ev, &self.sets, &self.pods, &mut self.pod_index, q)
            && is_of(ev, &self.revisions)
        {
            self.revision_index.record_event(ev);
        }
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let set = g.get(&self.sets, &key.0, &key.1).ok()?;
        if meta::is_deleting(&set) {
            return None;
        }
        let spec = SetSpec::read(&set);
        let now = jiff::Timestamp::now();

        let mut revisions = self
            .revision_index
            .children_of(g, &self.revisions, key, &spec.uid);
        revisions.sort_by_key(|r| int_at(r, "/revision", 0));
        let mut collisions = int_at(&set, "/status/collisionCount", 0);
        let Some(update_rev) =
            self.update_revision(g, &set, &spec, &mut revisions, &mut collisions)
        else {
            return Some(RETRY_AFTER_ERROR);
        };
        let current_rev = revisions
            .iter()
            .find(|r| meta::name(r) == str_at(&set, "/status/currentRevision"))
            .cloned()
            .unwrap_or_else(|| update_rev.clone());
        let update_name = meta::name(&update_rev).to_string();
        let current_name = meta::name(&current_rev).to_string();

        let pods = self.pod_index.children_of(g, &self.pods, key, &spec.uid);
        let mut slots: Vec<Option<Arc<Value>>> = vec![None; spec.replicas as usize];
        let mut condemned: Vec<(i64, Arc<Value>)> = vec![];
        for p in pods {
            match spec.ordinal(&p) {
                Some(o) if spec.in_range(o) => slots[(o - spec.start) as usize] = Some(p),
                Some(o) => condemned.push((o, p)),
                None => {}
            }
        }
        condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut names: Vec<String> = slots
            .iter()
            .flatten()
            .chain(condemned.iter().map(|(_, p)| p))
            .map(|p| meta::name(p).to_string())
            .collect();
        let first_unhealthy = slots
            .iter()
            .flatten()
            .chain(condemned.iter().rev().map(|(_, p)| p))
            .find(|p| !is_healthy(p))
            .map(|p| meta::uid(p).to_string());

        let mut requeue = None;
        let mut stop = false;
        // Living replicas, lowest ordinal first.
        for (i, slot) in slots.iter().enumerate() {
            let ordinal = spec.start + i as i64;
            match slot {
                Some(p) if is_terminal(p) => {
                    // A finished pod is replaced: deleted now, created again on a later sync.
                    if !meta::is_deleting(p) {
                        delete(g, &self.pods, p, None, None);
                    }
                    stop = true;
                    break;
                }
                None => {
                    let (template, revision) =
                        if spec.rolling && ordinal < spec.start + spec.partition {
                            (revision_template(&current_rev), current_name.as_str())
                        } else {
                            (revision_template(&update_rev), update_name.as_str())
                        };
                    if !self.create_missing_claims(g, &set, &spec, ordinal) {
                        stop = true;
                        requeue = Some(RETRY_AFTER_ERROR);
                        break;
                    }
                    let pod = self.new_pod(&set, &spec, &template, ordinal, revision);
                    if let Some(created) = create(g, &self.pods, &spec.ns, pod, CONTROLLER_MANAGER)
                    {
                        self.pod_index.record(&created, false);
                        names.push(meta::name(&created).to_string());
                    } else {
                        requeue = Some(RETRY_AFTER_ERROR);
                    }
                    if spec.monotonic {
                        stop = true;
                        break;
                    }
                }
                Some(p) => {
                    if super::phase(p) == "Pending" {
                        self.create_missing_claims(g, &set, &spec, ordinal);
                    }
                    if spec.monotonic {
                        if meta::is_deleting(p) || !is_running_ready(p) {
                            stop = true;
                            break;
                        }
                        if let Err(wait) = availability(p, spec.min_ready, now) {
                            requeue = sooner(requeue, wait);
                            stop = true;
                            break;
                        }
                    }
                    self.fix_claim_owners(g, &set, &spec, p, ordinal);
                }
            }
        }
        if !stop {
            for (ordinal, p) in &condemned {
                self.fix_claim_owners(g, &set, &spec, p, *ordinal);
            }
            // Scale down from the highest ordinal, waiting for each to go under OrderedReady.
            for (_, p) in &condemned {
                if meta::is_deleting(p) {
                    if spec.monotonic {
                        stop = true;
                        break;
                    }
                    continue;
                }
                let is_first_unhealthy = first_unhealthy.as_deref() == Some(meta::uid(p));
                if spec.monotonic && !is_first_unhealthy {
                    if !is_running_ready(p) {
                        stop = true;
                        break;
                    }
                    if let Err(wait) = availability(p, spec.min_ready, now) {
                        requeue = sooner(requeue, wait);
                        stop = true;
                        break;
                    }
                }
                delete(g, &self.pods, p, None, None);
                if spec.monotonic {
                    stop = true;
                    break;
                }
            }
        }
        if !stop && spec.rolling {
            // Replace pods not at the update revision, highest ordinal first, one at a time, down to the partition.
            let floor = spec.partition.min(spec.replicas) as usize;
            for slot in slots[floor..].iter().rev() {
                let Some(p) = slot else { break };
                if revision_of(p) != update_name && !meta::is_deleting(p) {
                    delete(g, &self.pods, p, None, None);
                    break;
                }
                if !is_healthy(p) {
                    break;
                }
            }
        }

        // Status from the pods as they are after this sync.
        let mut st = Counts::default();
        let mut live: HashSet<String> = HashSet::new();
        live.insert(current_name.clone());
        live.insert(update_name.clone());
        for n in &names {
            let Ok(p) = g.get(&self.pods, &spec.ns, n) else {
                continue;
            };
            if !super::controlled_by(&p, &spec.uid) {
                continue;
            }
            live.insert(revision_of(&p).to_string());
            if !super::phase(&p).is_empty() {
                st.replicas += 1;
            }
            if is_running_ready(&p) {
                st.ready += 1;
                match availability(&p, spec.min_ready, now) {
                    Ok(()) => st.available += 1,
                    Err(wait) => requeue = sooner(requeue, wait),
                }
            }
            if !super::phase(&p).is_empty() && !meta::is_deleting(&p) {
                if revision_of(&p) == current_name {
                    st.current += 1;
                }
                if revision_of(&p) == update_name {
                    st.updated += 1;
                }
            }
        }
        let mut current_name = current_name;
        if spec.rolling
            && st.updated == spec.replicas
            && st.ready == spec.replicas
            && st.replicas == spec.replicas
        {
            // completeRollingUpdate: every replica runs the update revision, which becomes the current one.
            st.current = st.updated;
            current_name = update_name.clone();
        }
        let mut status = Map::new();
        status.insert(
            "observedGeneration".into(),
            json!(int_at(&set, "/metadata/generation", 1)),
        );
        status.insert("replicas".into(), json!(st.replicas));
        // Upstream's omitempty fields are left out when zero, as the apiserver's JSON has them.
        for (k, v) in [
            ("readyReplicas", st.ready),
            ("currentReplicas", st.current),
            ("updatedReplicas", st.updated),
        ] {
            if v != 0 {
                status.insert(k.into(), json!(v));
            }
        }
        status.insert("currentRevision".into(), json!(current_name));
        status.insert("updateRevision".into(), json!(update_name));
        status.insert("collisionCount".into(), json!(collisions));
        status.insert("availableReplicas".into(), json!(st.available));
        if let Some(c) = set.pointer("/status/conditions") {
            status.insert("conditions".into(), c.clone());
        }
        if !write_status(
            g,
            &self.sets,
            &set,
            Value::Object(status),
            CONTROLLER_MANAGER,
        ) {
            requeue = Some(RETRY_AFTER_ERROR);
        }
        self.truncate_history(g, &set, &revisions, &live);
        requeue
    }
}

#[derive(Default)]
struct Counts {
    replicas: i64,
    ready: i64,
    available: i64,
    current: i64,
    updated: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_names() {
        let set = json!({"metadata": {"name": "web", "namespace": "d", "uid": "u"}, "spec": {"replicas": 3}});
        let spec = SetSpec::read(&set);
        let pod = |n: &str| json!({"metadata": {"name": n}});
        assert_eq!(spec.ordinal(&pod("web-2")), Some(2));
        assert_eq!(spec.ordinal(&pod("web-x")), None);
        assert_eq!(spec.ordinal(&pod("webby-1")), None);
        assert!(spec.in_range(2) && !spec.in_range(3));
        assert!(spec.monotonic && spec.rolling);
    }

    #[test]
    fn revisions_store_a_replacing_template_patch() {
        let set = json!({"spec": {"template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": []}}}});
        let data = revision_data(&set);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let rev = json!({"data": data});
        assert_eq!(revision_template(&rev), set["spec"]["template"]);
        let h = template_hash(&data, 0);
        assert_ne!(
            h,
            template_hash(&data, 1),
            "the collision count changes the hash"
        );
    }
}
