//! The disruption controller, after upstream's `pkg/controller/disruption`: PodDisruptionBudget status.
//!
//! Owns each budget's `status`: `expectedPods` (the selected pods, or with a percentage or `maxUnavailable` the
//! replicas their controllers want), `currentHealthy` (ready pods not being deleted), `desiredHealthy`,
//! `disruptionsAllowed`, `observedGeneration` and the `DisruptionAllowed` condition. It never evicts anything.
//!
//! Simplified: a selected pod without a controller counts as one expected pod where upstream reports an error.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    CONTROLLER_MANAGER, Controller, RETRY_AFTER_ERROR, WorkQueue, condition_json, controller_ref,
    int_at, is_of, is_ready, key_of, labels, scaled_value, str_at, write_status,
};
use crate::meta;
use crate::registry::ResourceDef;
use crate::selector::{LabelSelector, from_label_selector_object};
use crate::store::{Event, EventType, Inner, ObjKey};

/// Reconciles PodDisruptionBudget status.
pub(crate) struct DisruptionController {
    pdbs: Arc<ResourceDef>,
    pods: Arc<ResourceDef>,
    statefulsets: Arc<ResourceDef>,
    deployments: Arc<ResourceDef>,
    replicasets: Arc<ResourceDef>,
    /// Each budget's selector, by namespace and name, to route pod events.
    selectors: HashMap<String, HashMap<String, LabelSelector>>,
}

fn selector_of(pdb: &Value) -> LabelSelector {
    from_label_selector_object(pdb.pointer("/spec/selector").unwrap_or(&Value::Null))
        .unwrap_or_else(|_| from_label_selector_object(&Value::Null).expect("null selects nothing"))
}

impl DisruptionController {
    pub(crate) fn new(
        pdbs: Arc<ResourceDef>,
        pods: Arc<ResourceDef>,
        statefulsets: Arc<ResourceDef>,
        deployments: Arc<ResourceDef>,
        replicasets: Arc<ResourceDef>,
    ) -> Self {
        DisruptionController {
            pdbs,
            pods,
            statefulsets,
            deployments,
            replicasets,
            selectors: HashMap::new(),
        }
    }

    /// The replicas the controller of `pod` wants, with the controller's uid (to count each controller once).
    fn controller_scale(&self, g: &Inner, pod: &Value) -> Option<(String, i64)> {
        let r = controller_ref(pod)?;
        let ns = meta::namespace(pod);
        let name = str_at(r, "/name");
        match str_at(r, "/kind") {
            "StatefulSet" => {
                let s = g.get(&self.statefulsets, ns, name).ok()?;
                Some((meta::uid(&s).to_string(), int_at(&s, "/spec/replicas", 1)))
            }
            "ReplicaSet" => {
                let rs = g.get(&self.replicasets, ns, name).ok()?;
                if let Some(dr) = controller_ref(&rs)
                    && str_at(dr, "/kind") == "Deployment"
                    && let Ok(d) = g.get(&self.deployments, ns, str_at(dr, "/name"))
                {
                    return Some((meta::uid(&d).to_string(), int_at(&d, "/spec/replicas", 1)));
                }
                Some((meta::uid(&rs).to_string(), int_at(&rs, "/spec/replicas", 1)))
            }
            _ => None,
        }
    }
}

impl Controller for DisruptionController {
    const NAME: &'static str = "disruption-controller";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        self.selectors.clear();
        for p in g.list(&self.pdbs, None) {
            let (ns, name) = key_of(&p);
            self.selectors
                .entry(ns.clone())
                .or_default()
                .insert(name.clone(), selector_of(&p));
            q.add((ns, name));
        }
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        let ns = meta::namespace(&ev.object);
        if is_of(ev, &self.pdbs) {
            let name = meta::name(&ev.object).to_string();
            if ev.kind == EventType::Deleted {
                if let Some(m) = self.selectors.get_mut(ns) {
                    m.remove(&name);
                }
            } else {
                self.selectors
                    .entry(ns.to_string())
                    .or_default()
                    .insert(name.clone(), selector_of(&ev.object));
                q.add((ns.to_string(), name));
            }
            return;
        }
        let Some(budgets) = self.selectors.get(ns) else {
            return;
        };
        if is_of(ev, &self.pods) {
            let now = labels(&ev.object);
            let before = ev.prev.as_deref().and_then(labels);
            for (name, sel) in budgets {
                if sel.matches(now) || (ev.prev.is_some() && sel.matches(before)) {
                    q.add((ns.to_string(), name.clone()));
                }
            }
        } else if is_of(ev, &self.statefulsets)
            || is_of(ev, &self.deployments)
            || is_of(ev, &self.replicasets)
        {
            // Only a change of scale changes what budgets expect.
            let replicas = |o: Option<&Value>| o.and_then(|o| o.pointer("/spec/replicas")).cloned();
            if replicas(Some(&ev.object)) != replicas(ev.prev.as_deref()) {
                for name in budgets.keys() {
                    q.add((ns.to_string(), name.clone()));
                }
            }
        }
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let pdb = g.get(&self.pdbs, &key.0, &key.1).ok()?;
        if meta::is_deleting(&pdb) {
            return None;
        }
        let sel = selector_of(&pdb);
        let pods: Vec<Arc<Value>> = g
            .list(&self.pods, Some(&key.0))
            .into_iter()
            .filter(|p| sel.matches(labels(p)))
            .collect();
        let min_available = pdb.pointer("/spec/minAvailable");
        let max_unavailable = pdb.pointer("/spec/maxUnavailable");
        let counts_pods =
            matches!(min_available, Some(Value::Number(_))) && max_unavailable.is_none();
        let expected = if counts_pods {
            pods.len() as i64
        } else {
            let mut seen = HashSet::new();
            let mut total = 0;
            for p in &pods {
                match self.controller_scale(g, p) {
                    Some((uid, n)) => {
                        if seen.insert(uid) {
                            total += n;
                        }
                    }
                    None => total += 1,
                }
            }
            total
        };
        let healthy = pods
            .iter()
            .filter(|p| is_ready(p) && !meta::is_deleting(p))
            .count() as i64;
        let desired = match (min_available, max_unavailable) {
            (_, Some(mu)) => (expected - scaled_value(Some(mu), expected, true, 0)).max(0),
            (Some(ma), None) => scaled_value(Some(ma), expected, true, 0),
            (None, None) => 0,
        };
        let allowed = (healthy - desired).max(0);
        let generation = int_at(&pdb, "/metadata/generation", 1);
        let prev = pdb.get("status");
        let mut cond = if allowed > 0 {
            condition_json(
                prev,
                "DisruptionAllowed",
                true,
                "SufficientPods",
                "",
                &meta::now(),
            )
        } else {
            condition_json(
                prev,
                "DisruptionAllowed",
                false,
                "InsufficientPods",
                "",
                &meta::now(),
            )
        };
        cond["message"] = json!("");
        cond["observedGeneration"] = json!(generation);
        let status = json!({
            "observedGeneration": generation,
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": [cond],
        });
        if !write_status(g, &self.pdbs, &pdb, status, CONTROLLER_MANAGER) {
            return Some(RETRY_AFTER_ERROR);
        }
        None
    }
}
