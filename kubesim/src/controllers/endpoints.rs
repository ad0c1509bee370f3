//! The endpoints and EndpointSlice controllers, after upstream's `pkg/controller/endpoint` and
//! `pkg/controller/endpointslice`: for every Service with a selector, the Endpoints object of the same name and
//! one EndpointSlice (`<service>-<suffix>`, labelled `kubernetes.io/service-name`) listing the selected pods
//! that have an IP, ready or not, with each service port's target port resolved against the pod.
//!
//! A Service without a selector is left alone: its Endpoints are the user's. Simplified: one slice per Service
//! and address family IPv4 only (upstream splits at 100 endpoints); no topology hints; `publishNotReadyAddresses`
//! is honoured for Endpoints only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    CONTROLLER_MANAGER, Controller, RETRY_AFTER_ERROR, WorkQueue, create, delete, is_of, is_ready,
    is_terminal, key_of, labels, new_controller_ref, str_at, update,
};
use crate::meta;
use crate::registry::ResourceDef;
use crate::selector::{LabelSelector, from_label_selector_object};
use crate::store::{Event, EventType, Inner, ObjKey};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Keeps the Endpoints and EndpointSlice of every Service with a selector.
pub(crate) struct EndpointsController {
    services: Arc<ResourceDef>,
    pods: Arc<ResourceDef>,
    endpoints: Arc<ResourceDef>,
    slices: Arc<ResourceDef>,
    /// Each selecting Service's selector, by namespace and name, to route pod events.
    selectors: HashMap<String, HashMap<String, LabelSelector>>,
}

/// The selector of a Service, `None` when it selects nothing (no selector, or an empty one).
fn selector_of(svc: &Value) -> Option<LabelSelector> {
    let map = svc.pointer("/spec/selector").and_then(Value::as_object)?;
    if map.is_empty() {
        return None;
    }
    from_label_selector_object(&json!({ "matchLabels": map })).ok()
}

impl EndpointsController {
    pub(crate) fn new(
        services: Arc<ResourceDef>,
        pods: Arc<ResourceDef>,
        endpoints: Arc<ResourceDef>,
        slices: Arc<ResourceDef>,
    ) -> Self {
        EndpointsController {
            services,
            pods,
            endpoints,
            slices,
            selectors: HashMap::new(),
        }
    }

    fn remember(&mut self, svc: &Value) {
        let (ns, name) = key_of(svc);
        let entry = self.selectors.entry(ns).or_default();
        match selector_of(svc) {
            Some(sel) => {
                entry.insert(name, sel);
            }
            None => {
                entry.remove(&name);
            }
        }
    }
}

/// The port a service port reaches on `pod`: its numeric target, the pod's port of that name, or the port.
fn target_port(port: &Value, pod: &Value) -> Option<i64> {
    match port.get("targetPort") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(name)) => pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(|c| c.get("ports").and_then(Value::as_array))
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))
            .and_then(|p| p.get("containerPort"))
            .and_then(Value::as_i64),
        _ => port.get("port").and_then(Value::as_i64),
    }
}

/// A service port as it reaches `pod`: its resolved port, protocol and (when `name` is given) name.
fn resolved_port(port: &Value, pod: &Value, name: Option<Value>) -> Option<Value> {
    let mut out = json!({"port": target_port(port, pod)?,
        "protocol": port.get("protocol").cloned().unwrap_or(json!("TCP"))});
    if let Some(n) = name {
        out["name"] = n;
    }
    Some(out)
}

/// A pod's hostname when it is published under the headless Service `service` (a StatefulSet pod).
fn published_hostname<'a>(pod: &'a Value, service: &str, headless: bool) -> Option<&'a str> {
    let hostname = str_at(pod, "/spec/hostname");
    (headless && !hostname.is_empty() && str_at(pod, "/spec/subdomain") == service)
        .then_some(hostname)
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "name": meta::name(pod), "namespace": meta::namespace(pod), "uid": meta::uid(pod)})
}

impl Controller for EndpointsController {
    const NAME: &'static str = "endpoints-controller";

    fn resync(&mut self, g: &Inner, q: &mut WorkQueue) {
        self.selectors.clear();
        for svc in g.list(&self.services, None) {
            self.remember(&svc);
            q.add(key_of(&svc));
        }
    }

    fn observe(&mut self, ev: &Event, q: &mut WorkQueue) {
        let o = &ev.object;
        let ns = meta::namespace(o);
        if is_of(ev, &self.services) {
            if ev.kind == EventType::Deleted {
                if let Some(m) = self.selectors.get_mut(ns) {
                    m.remove(meta::name(o));
                }
            } else {
                self.remember(o);
            }
            q.add(key_of(o));
        } else if is_of(ev, &self.pods) {
            let Some(services) = self.selectors.get(ns) else {
                return;
            };
            let now = labels(o);
            let before = ev.prev.as_deref().and_then(labels);
            for (name, sel) in services {
                if sel.matches(now) || (ev.prev.is_some() && sel.matches(before)) {
                    q.add((ns.to_string(), name.clone()));
                }
            }
        } else if is_of(ev, &self.endpoints) {
            // Those of a selecting Service are ours: changed or removed by someone else, they are put back.
            // Any other Endpoints (of a Service without a selector, or of none) are the user's.
            if self
                .selectors
                .get(ns)
                .is_some_and(|m| m.contains_key(meta::name(o)))
            {
                q.add(key_of(o));
            }
        } else if is_of(ev, &self.slices)
            && labels(o)
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .and_then(Value::as_str)
                == Some(MANAGED_BY)
        {
            let svc = labels(o)
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .and_then(Value::as_str)
                .unwrap_or("");
            q.add((ns.to_string(), svc.to_string()));
        }
    }

    fn reconcile(&mut self, g: &mut Inner, key: &ObjKey) -> Option<Duration> {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let svc = match g.get(&self.services, ns, name) {
            Ok(s) if !meta::is_deleting(&s) => s,
            _ => {
                // The Service is gone (keys come from Services and their pods): so are its Endpoints, as
                // upstream deletes them; its slices go with it, by owner reference.
                if let Ok(ep) = g.get(&self.endpoints, ns, name) {
                    delete(g, &self.endpoints, &ep, None, None);
                }
                return None;
            }
        };
        let sel = selector_of(&svc)?;
        let publish_not_ready = svc
            .pointer("/spec/publishNotReadyAddresses")
            .and_then(Value::as_bool)
            == Some(true);
        let headless = str_at(&svc, "/spec/clusterIP") == "None";
        let ports: Vec<Value> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut pods: Vec<Arc<Value>> = g
            .list(&self.pods, Some(ns))
            .into_iter()
            .filter(|p| sel.matches(labels(p)))
            .filter(|p| !str_at(p, "/status/podIP").is_empty() && !is_terminal(p))
            .collect();
        pods.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));

        // Endpoints: one subset per distinct set of resolved ports (upstream's repacking), ready and not.
        let mut subsets: Vec<(Vec<Value>, Vec<Value>, Vec<Value>)> = Vec::new();
        for pod in pods.iter().filter(|p| !meta::is_deleting(p)) {
            let resolved: Vec<Value> = ports
                .iter()
                .filter_map(|p| {
                    let name = p.get("name").filter(|n| n.as_str() != Some("")).cloned();
                    resolved_port(p, pod, name)
                })
                .collect();
            let mut address = json!({"ip": str_at(pod, "/status/podIP"),
                "nodeName": str_at(pod, "/spec/nodeName"), "targetRef": target_ref(pod)});
            if let Some(hostname) = published_hostname(pod, name, headless) {
                address["hostname"] = json!(hostname);
            }
            let at = match subsets.iter().position(|(p, _, _)| *p == resolved) {
                Some(i) => i,
                None => {
                    subsets.push((resolved, Vec::new(), Vec::new()));
                    subsets.len() - 1
                }
            };
            if is_ready(pod) || publish_not_ready {
                subsets[at].1.push(address);
            } else {
                subsets[at].2.push(address);
            }
        }
        let subsets: Vec<Value> = subsets
            .into_iter()
            .map(|(ports, ready, not_ready)| {
                let mut s = json!({"ports": ports});
                if !ready.is_empty() {
                    s["addresses"] = json!(ready);
                }
                if !not_ready.is_empty() {
                    s["notReadyAddresses"] = json!(not_ready);
                }
                s
            })
            .collect();
        let mut ep_labels = labels(&svc).cloned().unwrap_or_default();
        if headless {
            ep_labels.insert("service.kubernetes.io/headless".into(), json!(""));
        }
        let mut failed = false;
        match g.get(&self.endpoints, ns, name) {
            Err(_) => {
                let mut ep = json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": ep_labels}});
                if !subsets.is_empty() {
                    ep["subsets"] = json!(subsets);
                }
                failed |= create(g, &self.endpoints, ns, ep, CONTROLLER_MANAGER).is_none();
            }
            Ok(ep) => {
                let current = ep.get("subsets").cloned().unwrap_or(json!([]));
                if current != json!(subsets) || labels(&ep) != Some(&ep_labels) {
                    let mut new = (*ep).clone();
                    new["subsets"] = json!(subsets);
                    meta::metadata_mut(&mut new).insert("labels".into(), json!(ep_labels));
                    failed |= update(g, &self.endpoints, new, CONTROLLER_MANAGER).is_none();
                }
            }
        }

        // The EndpointSlice: every pod with an IP, with its conditions.
        let slice_ports: Vec<Value> = ports
            .iter()
            .filter_map(|p| {
                let name = p.get("name").cloned().unwrap_or(json!(""));
                resolved_port(p, pods.first()?, Some(name))
            })
            .collect();
        let endpoints: Vec<Value> = pods
            .iter()
            .map(|pod| {
                let ready = is_ready(pod) && !meta::is_deleting(pod);
                let mut e = json!({"addresses": [str_at(pod, "/status/podIP")],
                    "conditions": {"ready": ready, "serving": is_ready(pod), "terminating": meta::is_deleting(pod)},
                    "nodeName": str_at(pod, "/spec/nodeName"), "targetRef": target_ref(pod)});
                if let Some(hostname) = published_hostname(pod, name, headless) {
                    e["hostname"] = json!(hostname);
                }
                e
            })
            .collect();
        let existing = g.list(&self.slices, Some(ns)).into_iter().find(|s| {
            labels(s)
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .and_then(Value::as_str)
                == Some(name)
                && labels(s)
                    .and_then(|l| l.get(MANAGED_BY_LABEL))
                    .and_then(Value::as_str)
                    == Some(MANAGED_BY)
        });
        match existing {
            None => {
                let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{name}-"), "namespace": ns,
                        "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
                        "ownerReferences": [new_controller_ref(&svc)]},
                    "addressType": "IPv4", "endpoints": endpoints, "ports": slice_ports});
                failed |= create(g, &self.slices, ns, slice, CONTROLLER_MANAGER).is_none();
            }
            Some(s) => {
                if s.get("endpoints") != Some(&json!(endpoints))
                    || s.get("ports") != Some(&json!(slice_ports))
                {
                    let mut new = (*s).clone();
                    new["endpoints"] = json!(endpoints);
                    new["ports"] = json!(slice_ports);
                    failed |= update(g, &self.slices, new, CONTROLLER_MANAGER).is_none();
                }
            }
        }
        failed.then_some(RETRY_AFTER_ERROR)
    }
}
