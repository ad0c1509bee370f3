//! Dynamic provisioning and binding of PersistentVolumeClaims: what a CSI provisioner and the persistentvolume
//! controller do together.
//!
//! Owns, for every claim: its `storageClassName` when it has none (the DefaultStorageClass admission plugin's
//! work, done here, naming `standard`), a PersistentVolume `pvc-<claim uid>` of the requested size, the binding
//! (`spec.volumeName`, the bind annotations, `status.phase: Bound` with capacity and access modes), and deleting
//! that volume when the claim goes and the reclaim policy is Delete.
//!
//! Simplified: claims bind at once whatever the class's `volumeBindingMode` (no waiting for the first consumer),
//! a class need not exist, and the `kubernetes.io/pvc-protection` finalizer is not used (a claim goes as soon as it
//! is deleted, even while a pod mounts it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{
    CONTROLLER_MANAGER, Controller, WorkQueue, create, delete, is_of, key_of, str_at, update,
    write_status,
};
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, EventType, Inner, ObjKey};

/// The class a claim without one gets.
const DEFAULT_STORAGE_CLASS: &str = "standard";
/// The provisioner the volumes claim to come from.
const PROVISIONER: &str = "kubesim.io/hostpath";

/// Provisions and binds claims.
pub(crate) struct VolumeBinder {
    pvcs: Arc<ResourceDef>,
    pvs: Arc<ResourceDef>,
    /// Claims deleted since their volume was last looked at: key → uid.
    released: HashMap<ObjKey, String>,
}

impl VolumeBinder {
    pub(crate) fn new(pvcs: Arc<ResourceDef>, pvs: Arc<ResourceDef>) -> Self {
        VolumeBinder {
            pvcs,
            pvs,
            released: HashMap::new(),
        }
    }

    fn release(&self, g: &mut Inner, claim_uid: &str) {
        let Ok(pv) = g.get(&self.pvs, "", &format!("pvc-{claim_uid}")) else {
            return;
        };
        if str_at(&pv, "/spec/claimRef/uid") == claim_uid
            && str_at(&pv, "/spec/persistentVolumeReclaimPolicy") == "Delete"
        {
            delete(g, &self.pvs, &pv, None, None);
        }
    }

    fn reclaim_policy(g: &Inner, class: &str) -> String {
        let def = g.def("storage.k8s.io", "storageclasses");
        g.get(&def, "", class)
            .ok()
            .map(|sc| str_at(&sc, "/reclaimPolicy").to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "Delete".into())
    }
}

impl Controller for VolumeBinder {
    const NAME: &'static str = "persistentvolume-binder";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        for c in g.list(&self.pvcs, None) {
            q.add(key_of(&c));
        }
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        if !is_of(ev, &self.pvcs) {
            return;
        }
        let key = key_of(&ev.object);
        if ev.kind == EventType::Deleted {
            self.released
                .insert(key.clone(), meta::uid(&ev.object).to_string());
        } else if str_at(&ev.object, "/status/phase") == "Bound" {
            return;
        }
        q.add(key);
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        if let Some(uid) = self.released.remove(key) {
            self.release(g, &uid);
        }
        let claim = g.get(&self.pvcs, &key.0, &key.1).ok()?;
        if meta::is_deleting(&claim) || str_at(&claim, "/status/phase") == "Bound" {
            return None;
        }
        let storage = claim
            .pointer("/spec/resources/requests/storage")
            .cloned()
            .filter(|s| !s.is_null())?;
        let uid = meta::uid(&claim).to_string();
        let pv_name = format!("pvc-{uid}");
        let class = match str_at(&claim, "/spec/storageClassName") {
            "" => DEFAULT_STORAGE_CLASS.to_string(),
            c => c.to_string(),
        };
        let access = claim
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or_else(|| json!(["ReadWriteOnce"]));
        if g.get(&self.pvs, "", &pv_name).is_err() {
            let pv = json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
                "spec": {
                    "capacity": {"storage": storage},
                    "accessModes": access,
                    "persistentVolumeReclaimPolicy": Self::reclaim_policy(g, &class),
                    "storageClassName": class,
                    "volumeMode": claim.pointer("/spec/volumeMode").cloned().unwrap_or_else(|| json!("Filesystem")),
                    "claimRef": {
                        "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                        "namespace": key.0, "name": key.1, "uid": uid,
                        "resourceVersion": meta::str_field(&claim, "resourceVersion"),
                    },
                    "hostPath": {"path": format!("/var/lib/kubesim/volumes/{pv_name}"), "type": ""},
                },
            });
            let Some(pv) = create(g, &self.pvs, "", pv, CONTROLLER_MANAGER) else {
                return Some(super::RETRY_AFTER_ERROR);
            };
            let mut st = pv.get("status").cloned().unwrap_or_else(|| json!({}));
            st["phase"] = json!("Bound");
            write_status(g, &self.pvs, &pv, st, CONTROLLER_MANAGER);
        }
        let mut bound = (*claim).clone();
        bound["spec"]["storageClassName"] = json!(class);
        bound["spec"]["volumeName"] = json!(pv_name);
        let md = meta::metadata_mut(&mut bound);
        let ann = md.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = ann.as_object_mut() {
            a.insert("pv.kubernetes.io/bind-completed".into(), json!("yes"));
            a.insert("pv.kubernetes.io/bound-by-controller".into(), json!("yes"));
            a.insert(
                "volume.kubernetes.io/storage-provisioner".into(),
                json!(PROVISIONER),
            );
        }
        let Some(bound) = update(g, &self.pvcs, bound, CONTROLLER_MANAGER) else {
            return Some(super::RETRY_AFTER_ERROR);
        };
        let mut st = bound.get("status").cloned().unwrap_or_else(|| json!({}));
        st["phase"] = json!("Bound");
        st["accessModes"] = access;
        st["capacity"] = json!({"storage": storage});
        if !write_status(g, &self.pvcs, &bound, st, CONTROLLER_MANAGER) {
            return Some(super::RETRY_AFTER_ERROR);
        }
        None
    }
}
