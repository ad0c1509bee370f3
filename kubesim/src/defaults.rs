//! Defaulting and per-kind "PrepareForCreate" behaviour that upstream registries apply to built-in kinds.
//!
//! Clients compare what they wrote with what they read back, and controllers key off defaulted fields
//! (`podManagementPolicy`, `updateStrategy`, …), so the defaults must be the upstream ones.

use serde_json::{Map, Value, json};

use crate::registry::ResourceDef;

fn obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    if !m.get(key).map(Value::is_object).unwrap_or(false) {
        m.insert(key.into(), json!({}));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

fn default(m: &mut Map<String, Value>, key: &str, val: Value) {
    if m.get(key).map(Value::is_null).unwrap_or(true) {
        m.insert(key.into(), val);
    }
}

/// The object under `key` of `m`, if it is one.
fn obj_at<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// Defaults every pod spec gets, in pods and in workload templates.
fn pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    default(s, "restartPolicy", json!("Always"));
    default(s, "dnsPolicy", json!("ClusterFirst"));
    default(s, "schedulerName", json!("default-scheduler"));
    default(s, "terminationGracePeriodSeconds", json!(30));
    default(s, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let last = image.rsplit('/').next().unwrap_or("");
                let policy = if !last.contains(':') || last.ends_with(":latest") {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                default(c, "imagePullPolicy", json!(policy));
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
                        default(p, "timeoutSeconds", json!(1));
                        default(p, "periodSeconds", json!(10));
                        default(p, "successThreshold", json!(1));
                        default(p, "failureThreshold", json!(3));
                        if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                            default(h, "path", json!("/"));
                            default(h, "scheme", json!("HTTP"));
                        }
                    }
                }
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Where a pod's service account token, CA bundle and namespace are mounted.
const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What a real API server adds to a new pod (not to pod templates): the defaults of the Pod type
/// (`enableServiceLinks`) and the admission plugins every cluster runs — ServiceAccount (`serviceAccountName`
/// and the `kube-api-access-*` projected volume mounted in every container, unless automounting is off),
/// Priority (`priority: 0`, `preemptionPolicy`) and DefaultTolerationSeconds (five minutes on not-ready and
/// unreachable nodes).
pub(crate) fn admit_pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "serviceAccountName", json!("default"));
    let sa = spec["serviceAccountName"].clone();
    default(spec, "serviceAccount", sa);
    default(spec, "priority", json!(0));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !list
                .iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
            {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    if spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        == Some(false)
    {
        return;
    }
    let mounted = |c: &Value| {
        c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|m| {
                m.iter().any(|v| {
                    v.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT)
                })
            })
    };
    let suffix: String = {
        use rand::Rng as _;
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut rng = rand::rng();
        (0..5)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let volume = format!("kube-api-access-{suffix}");
    let mut used = false;
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut() {
                if mounted(c) {
                    continue;
                }
                if let Some(m) = c.as_object_mut() {
                    let mounts = m.entry("volumeMounts").or_insert_with(|| json!([]));
                    if let Some(a) = mounts.as_array_mut() {
                        a.push(json!({"name": volume, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT}));
                        used = true;
                    }
                }
            }
        }
    }
    if used {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(a) = volumes.as_array_mut() {
            a.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}}));
        }
    }
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template")
        && let Some(ps) = t.get_mut("spec")
    {
        pod_spec(ps);
    }
}

/// Upstream's QoS class from container requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.map(|r| !r.is_empty()).unwrap_or(false)
            || lim.map(|l| !l.is_empty()).unwrap_or(false)
        {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(r));
            let q = req.and_then(|q| q.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

/// Spec defaults applied on every create and update.
/// Removes explicit `null`s, as decoding into the Go types does for the built-in kinds: a stored object never
/// says `"field": null`, so two writes of one template compare (and hash) equal however their nulls differ.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// What a kind's strategy sets on create only, once the object has its uid: a Job's generated selector and
/// the labels it puts on the template (`batch.kubernetes.io/controller-uid`, `job-name` and their legacy
/// forms), unless the Job asks for `manualSelector`.
pub(crate) fn on_create(def: &ResourceDef, o: &mut Value) {
    if !(def.group == "batch" && def.plural == "jobs") {
        return;
    }
    if o.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = crate::meta::uid(o).to_string();
    let name = crate::meta::name(o).to_string();
    let Some(spec) = obj(o, "spec") else { return };
    if !spec.contains_key("selector") {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
    let Some(template) = obj_at(spec, "template") else {
        return;
    };
    if !template.get("metadata").is_some_and(Value::is_object) {
        template.insert("metadata".into(), json!({}));
    }
    let Some(md) = obj_at(template, "metadata") else {
        return;
    };
    if !md.get("labels").is_some_and(Value::is_object) {
        md.insert("labels".into(), json!({}));
    }
    if let Some(labels) = obj_at(md, "labels") {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(k).or_insert_with(|| json!(v));
        }
    }
}

/// Whether the kind's strategy keeps `metadata.generation` (set to 1 on create, bumped when the spec changes):
/// custom resources and the kinds with a spec that controllers observe. ConfigMaps, Secrets, Namespaces,
/// ServiceAccounts, Events, Endpoints, Leases, RBAC objects and the like have none, as upstream.
pub(crate) fn has_generation(def: &ResourceDef) -> bool {
    def.from_crd
        || matches!(
            (def.group.as_str(), def.plural.as_str()),
            ("", "pods" | "replicationcontrollers")
                | (
                    "apps",
                    "deployments" | "replicasets" | "statefulsets" | "daemonsets"
                )
                | ("batch", "jobs" | "cronjobs")
                | ("policy", "poddisruptionbudgets")
                | (
                    "networking.k8s.io",
                    "networkpolicies" | "ingresses" | "ingressclasses"
                )
                | ("autoscaling", "horizontalpodautoscalers")
                | ("apiextensions.k8s.io", "customresourcedefinitions")
                | (
                    "admissionregistration.k8s.io",
                    "validatingwebhookconfigurations" | "mutatingwebhookconfigurations"
                )
        )
}

pub(crate) fn apply_defaults(def: &ResourceDef, o: &mut Value) {
    if !def.from_crd {
        strip_nulls(o);
    }
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => {
            if let Some(s) = o.get_mut("spec") {
                pod_spec(s);
            }
        }
        ("apps", "statefulsets") => {
            if let Some(s) = obj(o, "spec") {
                default(s, "replicas", json!(1));
                default(s, "podManagementPolicy", json!("OrderedReady"));
                default(
                    s,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                // An empty strategy (what protobuf clients send for the Go zero struct) is defaulted too.
                if let Some(u) = obj_at(s, "updateStrategy") {
                    default(u, "type", json!("RollingUpdate"));
                }
                if let Some(u) = obj_at(s, "updateStrategy")
                    && u.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                {
                    let r = u.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(r) = r.as_object_mut() {
                        default(r, "partition", json!(0));
                    }
                }
                default(s, "revisionHistoryLimit", json!(10));
                default(
                    s,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                if let Some(vcts) = s
                    .get_mut("volumeClaimTemplates")
                    .and_then(Value::as_array_mut)
                {
                    for t in vcts.iter_mut() {
                        if let Some(ts) = obj(t, "spec") {
                            default(ts, "volumeMode", json!("Filesystem"));
                        }
                        if let Some(m) = t.as_object_mut() {
                            default(m, "apiVersion", json!("v1"));
                            default(m, "kind", json!("PersistentVolumeClaim"));
                        }
                    }
                }
                template(s);
            }
        }
        ("apps", "deployments") => {
            if let Some(s) = obj(o, "spec") {
                default(s, "replicas", json!(1));
                default(
                    s,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
                );
                if let Some(st) = obj_at(s, "strategy") {
                    default(st, "type", json!("RollingUpdate"));
                }
                if let Some(st) = obj_at(s, "strategy")
                    && st.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                {
                    let r = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(r) = r.as_object_mut() {
                        default(r, "maxSurge", json!("25%"));
                        default(r, "maxUnavailable", json!("25%"));
                    }
                }
                default(s, "revisionHistoryLimit", json!(10));
                default(s, "progressDeadlineSeconds", json!(600));
                template(s);
            }
        }
        ("apps", "replicasets") | ("apps", "daemonsets") => {
            if let Some(s) = obj(o, "spec") {
                if def.plural == "replicasets" {
                    default(s, "replicas", json!(1));
                } else {
                    default(s, "updateStrategy", json!({}));
                    if let Some(u) = obj_at(s, "updateStrategy") {
                        default(u, "type", json!("RollingUpdate"));
                        if u.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                            let r = u.entry("rollingUpdate").or_insert_with(|| json!({}));
                            if let Some(r) = r.as_object_mut() {
                                default(r, "maxUnavailable", json!(1));
                                default(r, "maxSurge", json!(0));
                            }
                        }
                    }
                    default(s, "revisionHistoryLimit", json!(10));
                }
                template(s);
            }
        }
        ("batch", "jobs") => {
            if let Some(s) = obj(o, "spec") {
                default(s, "completions", json!(1));
                default(s, "parallelism", json!(1));
                default(s, "backoffLimit", json!(6));
                default(s, "completionMode", json!("NonIndexed"));
                default(s, "suspend", json!(false));
                template(s);
            }
        }
        ("batch", "cronjobs") => {
            if let Some(s) = obj(o, "spec") {
                default(s, "concurrencyPolicy", json!("Allow"));
                default(s, "suspend", json!(false));
                default(s, "successfulJobsHistoryLimit", json!(3));
                default(s, "failedJobsHistoryLimit", json!(1));
                if let Some(jt) = s.get_mut("jobTemplate")
                    && let Some(js) = obj(jt, "spec")
                {
                    template(js);
                }
            }
        }
        ("", "services") => {
            if let Some(s) = obj(o, "spec") {
                default(s, "type", json!("ClusterIP"));
                default(s, "sessionAffinity", json!("None"));
                default(s, "internalTrafficPolicy", json!("Cluster"));
                if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            default(p, "targetPort", port);
                        }
                    }
                }
            }
        }
        ("", "secrets") => {
            if let Some(m) = o.as_object_mut() {
                default(m, "type", json!("Opaque"));
                // The apiserver folds write-only stringData into data and never stores it.
                if let Some(Value::Object(sd)) = m.remove("stringData") {
                    use base64::Engine;
                    let mut d = m
                        .get("data")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or("").to_string();
                        d.insert(
                            k,
                            json!(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                    m.insert("data".into(), Value::Object(d));
                }
            }
        }
        ("", "namespaces") => {
            if let Some(s) = obj(o, "spec") {
                default(s, "finalizers", json!(["kubernetes"]));
            }
            let name = o
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(md) = obj(o, "metadata") {
                let labels = md.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        ("", "persistentvolumeclaims") => {
            if let Some(s) = obj(o, "spec") {
                default(s, "volumeMode", json!("Filesystem"));
            }
        }
        _ => {}
    }
}

/// The status an object starts with when created through the main resource (upstream `PrepareForCreate`).
/// `None` keeps what the client sent (kinds without a status subresource).
pub(crate) fn initial_status(def: &ResourceDef, o: &Value) -> Option<Value> {
    if !def.status {
        return None;
    }
    Some(match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => json!({
            "phase": "Pending",
            "qosClass": qos_class(o.get("spec").unwrap_or(&Value::Null)),
        }),
        ("", "namespaces") => json!({"phase": "Active"}),
        ("", "persistentvolumeclaims") => json!({"phase": "Pending"}),
        ("", "persistentvolumes") => json!({"phase": "Pending"}),
        ("", "services") => json!({"loadBalancer": {}}),
        // The status fields the Go types write even when zero (no omitempty): strict clients require them.
        ("apps", "statefulsets") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "replicasets") | ("", "replicationcontrollers") => json!({"replicas": 0}),
        ("apps", "daemonsets") => json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0}),
        ("policy", "poddisruptionbudgets") => json!({"disruptionsAllowed": 0, "currentHealthy": 0,
            "desiredHealthy": 0, "expectedPods": 0}),
        ("autoscaling", "horizontalpodautoscalers") => json!({"desiredReplicas": 0}),
        _ => json!({}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn def(group: &str, plural: &str) -> ResourceDef {
        let r = Registry::with_builtins();
        (**r.get(&(group.into(), plural.into())).unwrap()).clone()
    }

    #[test]
    fn nested_defaults_fill_what_the_user_left_out() {
        let mut d = json!({"spec": {"strategy": {"type": "RollingUpdate"},
            "template": {"spec": {"containers": [{"name": "c", "image": "x:1",
                "readinessProbe": {"httpGet": {"port": 80}}}]}}}});
        apply_defaults(&def("apps", "deployments"), &mut d);
        assert_eq!(
            d["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": "25%", "maxUnavailable": "25%"})
        );
        let probe = &d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
        assert_eq!(
            (
                &probe["timeoutSeconds"],
                &probe["periodSeconds"],
                &probe["successThreshold"],
                &probe["failureThreshold"]
            ),
            (&json!(1), &json!(10), &json!(1), &json!(3))
        );
        assert_eq!(
            probe["httpGet"],
            json!({"port": 80, "path": "/", "scheme": "HTTP"})
        );
        let mut s = json!({"spec": {"updateStrategy": {"type": "RollingUpdate"},
            "template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        apply_defaults(&def("apps", "statefulsets"), &mut s);
        assert_eq!(s["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
        // The Go zero struct, as kubectl's protobuf generators send it.
        let mut d = json!({"spec": {"strategy": {},
            "template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        apply_defaults(&def("apps", "deployments"), &mut d);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
    }

    #[test]
    fn new_pods_get_what_admission_adds() {
        let mut p = json!({"spec": {"containers": [{"name": "a", "image": "x:1"},
            {"name": "b", "image": "x:1", "volumeMounts": [{"name": "own", "mountPath": SERVICE_ACCOUNT_MOUNT}]}]}});
        admit_pod(&mut p);
        let s = &p["spec"];
        assert_eq!(
            (
                s["serviceAccountName"].as_str(),
                s["enableServiceLinks"].as_bool()
            ),
            (Some("default"), Some(true))
        );
        assert_eq!(
            (
                s["priority"].as_i64(),
                s["tolerations"].as_array().unwrap().len()
            ),
            (Some(0), 2)
        );
        let volume = s["volumes"][0]["name"].as_str().unwrap();
        assert!(
            volume.starts_with("kube-api-access-") && volume.len() == 21,
            "{volume}"
        );
        assert_eq!(s["containers"][0]["volumeMounts"][0]["name"], volume);
        // A container that mounts the path itself keeps its own mount.
        assert_eq!(
            s["containers"][1]["volumeMounts"].as_array().unwrap().len(),
            1
        );

        let mut off = json!({"spec": {"automountServiceAccountToken": false, "serviceAccountName": "db",
            "containers": [{"name": "a", "image": "x:1"}]}});
        admit_pod(&mut off);
        assert!(off["spec"].get("volumes").is_none());
        assert_eq!(off["spec"]["serviceAccount"], "db");
    }

    #[test]
    fn nulls_are_dropped_from_built_in_kinds() {
        let mut o = json!({"metadata": {"name": "x", "labels": null},
            "data": {"a": "1"}, "spec": {"list": [{"k": null, "v": 1}]}});
        apply_defaults(&def("", "configmaps"), &mut o);
        assert_eq!(
            o,
            json!({"metadata": {"name": "x"}, "data": {"a": "1"}, "spec": {"list": [{"v": 1}]}})
        );
    }

    #[test]
    fn required_zero_status_fields_are_there_from_the_start() {
        let st = |g: &str, p: &str| initial_status(&def(g, p), &json!({})).unwrap();
        assert_eq!(
            st("apps", "statefulsets"),
            json!({"replicas": 0, "availableReplicas": 0})
        );
        assert_eq!(st("apps", "replicasets"), json!({"replicas": 0}));
        assert_eq!(st("apps", "daemonsets")["numberMisscheduled"], 0);
        assert_eq!(
            st("policy", "poddisruptionbudgets")["disruptionsAllowed"],
            0
        );
        assert_eq!(st("apps", "deployments"), json!({}));
    }

    #[test]
    fn statefulset_defaults() {
        let mut o = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "postgres:15"}]}}}});
        apply_defaults(&def("apps", "statefulsets"), &mut o);
        assert_eq!(o["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(o["spec"]["replicas"], 1);
        assert_eq!(o["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
        assert_eq!(
            o["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut o = json!({"stringData": {"password": "hunter2"}, "data": {"a": "Yg=="}});
        apply_defaults(&def("", "secrets"), &mut o);
        assert!(o.get("stringData").is_none());
        assert_eq!(o["data"]["password"], "aHVudGVyMg==");
        assert_eq!(o["data"]["a"], "Yg==");
        assert_eq!(o["type"], "Opaque");
    }

    #[test]
    fn pod_qos() {
        let spec =
            json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&spec), "Guaranteed");
        let spec = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&spec), "Burstable");
        assert_eq!(qos_class(&json!({"containers": [{}]})), "BestEffort");
    }
}
