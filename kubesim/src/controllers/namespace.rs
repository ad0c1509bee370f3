//! What every namespace of a real cluster holds from its first moment, after upstream's service account
//! controller (`pkg/controller/serviceaccount`) and root CA publisher (`pkg/controller/certificates/rootcacertpublisher`):
//! the `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap. Both are put back when deleted, as
//! upstream does, and neither is made in a namespace being deleted.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{CONTROLLER_MANAGER, Controller, RETRY_AFTER_ERROR, WorkQueue, create, update};
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, EventType, Inner, ObjKey};

/// The ConfigMap the root CA publisher keeps in every namespace.
pub(crate) const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// The CA bundle published as `ca.crt`: the CA that signs kubesim's serving certificate (`--tls`).
pub(crate) const ROOT_CA_PEM: &str = crate::tls::CA_PEM;

/// Keeps each namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.
pub(crate) struct NamespaceController {
    namespaces: Arc<ResourceDef>,
    service_accounts: Arc<ResourceDef>,
    config_maps: Arc<ResourceDef>,
}

impl NamespaceController {
    pub(crate) fn new(
        namespaces: Arc<ResourceDef>,
        service_accounts: Arc<ResourceDef>,
        config_maps: Arc<ResourceDef>,
    ) -> Self {
        NamespaceController {
            namespaces,
            service_accounts,
            config_maps,
        }
    }
}

impl Controller for NamespaceController {
    const NAME: &'static str = "namespace-defaults";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        for ns in g.list(&self.namespaces, None) {
            q.add((String::new(), meta::name(&ns).to_string()));
        }
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        let o = &ev.object;
        if ev.res == self.namespaces.key() {
            if ev.kind != EventType::Deleted {
                q.add((String::new(), meta::name(o).to_string()));
            }
            return;
        }
        // One of ours removed or changed: look at its namespace again.
        let ours = (ev.res == self.service_accounts.key() && meta::name(o) == "default")
            || (ev.res == self.config_maps.key() && meta::name(o) == ROOT_CA_CONFIGMAP);
        if ours {
            q.add((String::new(), meta::namespace(o).to_string()));
        }
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let ns = key.1.as_str();
        let namespace = g.get(&self.namespaces, "", ns).ok()?;
        if meta::is_deleting(&namespace) {
            return None;
        }
        let mut failed = false;
        if g.get(&self.service_accounts, ns, "default").is_err() {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": ns}});
            failed |= create(g, &self.service_accounts, ns, sa, CONTROLLER_MANAGER).is_none();
        }
        let data = json!({"ca.crt": ROOT_CA_PEM});
        match g.get(&self.config_maps, ns, ROOT_CA_CONFIGMAP) {
            Err(_) => {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": ns,
                        "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": data});
                failed |= create(g, &self.config_maps, ns, cm, CONTROLLER_MANAGER).is_none();
            }
            Ok(cm) if cm.get("data") != Some(&data) => {
                let mut fixed = (*cm).clone();
                fixed["data"] = data;
                failed |= update(g, &self.config_maps, fixed, CONTROLLER_MANAGER).is_none();
            }
            Ok(_) => {}
        }
        failed.then_some(RETRY_AFTER_ERROR)
    }
}
