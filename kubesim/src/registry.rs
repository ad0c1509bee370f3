//! The catalogue of served resources: the built-in kinds and those that CustomResourceDefinitions add at run time.
//!
//! Owns the mapping from a URL's group/version/plural to a [`ResourceDef`], including the resources answered
//! outside the store (metrics, reviews; see [`Backend`]). It never stores objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::table::PrinterColumn;

/// Identifies one stored resource independently of the version it is served at: `(group, plural)`.
pub(crate) type ResKey = (String, String);

/// Where the scale subresource finds replicas and the selector in an object.
#[derive(Clone, Debug)]
pub(crate) struct ScaleDef {
    pub spec_replicas: Vec<String>,
    pub status_replicas: Vec<String>,
    /// Path to a selector: a string (CRDs) or a metav1.LabelSelector object (built-ins).
    pub label_selector: Option<Vec<String>>,
}

/// Everything the server needs to know to serve one resource.
#[derive(Clone, Debug)]
pub(crate) struct ResourceDef {
    pub group: String,
    /// Served versions, the storage version first.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<&'static str>,
    pub status: bool,
    pub scale: Option<ScaleDef>,
    /// Columns a CRD asked `kubectl get` to print.
    pub printer_columns: Option<Vec<PrinterColumn>>,
    /// Set for resources that come from a CRD.
    pub from_crd: bool,
    /// Where requests for this resource are answered.
    pub backend: Backend,
}

/// Where a resource's requests are answered: the object store, or a module that computes each answer and stores
/// nothing (the "virtual" resources that aggregated APIs and review endpoints are upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Stored objects: built-in kinds and custom resources.
    Store,
    /// `metrics.k8s.io` PodMetrics and NodeMetrics, computed from pods by `metrics_api`.
    PodMetrics,
    NodeMetrics,
    /// `authentication.k8s.io` TokenReview and SelfSubjectReview, `authorization.k8s.io` SubjectAccessReview,
    /// LocalSubjectAccessReview, SelfSubjectAccessReview and SelfSubjectRulesReview: created, answered, not
    /// stored (`reviews`, `rbac`).
    Review,
}

/// A subresource as discovery lists it: name, the kind it answers with as `(group, version, kind)` (`None`: the
/// resource's own), and its verbs.
pub(crate) type Subresource = (
    &'static str,
    Option<(&'static str, &'static str, &'static str)>,
    &'static [&'static str],
);

impl ResourceDef {
    /// The subresources of the resource: what discovery lists and the router serves.
    pub(crate) fn subresources(&self) -> Vec<Subresource> {
        const RW: &[&str] = &["get", "patch", "update"];
        let mut s = vec![];
        if self.status {
            s.push(("status", None, RW));
        }
        if self.scale.is_some() {
            s.push(("scale", Some(("autoscaling", "v1", "Scale")), RW));
        }
        if self.group.is_empty() && self.plural == "pods" {
            s.push(("log", None, &["get"][..]));
        }
        if self.group.is_empty() && self.plural == "serviceaccounts" {
            s.push((
                "token",
                Some(("authentication.k8s.io", "v1", "TokenRequest")),
                &["create"][..],
            ));
        }
        s
    }

    pub(crate) fn key(&self) -> ResKey {
        (self.group.clone(), self.plural.clone())
    }

    pub(crate) fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub(crate) fn storage_version(&self) -> &str {
        &self.versions[0]
    }

    /// The `group` part apimachinery puts in error details and messages (`statefulsets.apps`).
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    scale: bool,
    all_category: bool,
}

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        kind,
        namespaced,
        short,
        status,
        scale: false,
        all_category: false,
    }
}

const fn workload(mut b: Builtin, scale: bool) -> Builtin {
    b.scale = scale;
    b.all_category = true;
    b
}

/// The built-in kinds kubesim serves. Status subresources exist where upstream has them.
const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    b("", "v1", "nodes", "Node", false, &["no"], true),
    b("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    b("", "v1", "secrets", "Secret", true, &[], false),
    workload(
        b("", "v1", "services", "Service", true, &["svc"], true),
        false,
    ),
    b("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
    workload(b("", "v1", "pods", "Pod", true, &["po"], true), false),
    b(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
    ),
    b(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        &["pv"],
        true,
    ),
    b("", "v1", "events", "Event", true, &["ev"], false),
    b(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    b(
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        true,
        &["quota"],
        true,
    ),
    b(
        "",
        "v1",
        "limitranges",
        "LimitRange",
        true,
        &["limits"],
        false,
    ),
    workload(
        b(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            true,
        ),
        true,
    ),
    workload(
        b(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
        ),
        true,
    ),
    workload(
        b(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            true,
        ),
        true,
    ),
    workload(
        b("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true),
        false,
    ),
    b(
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        &[],
        false,
    ),
    workload(b("batch", "v1", "jobs", "Job", true, &[], true), false),
    workload(
        b("batch", "v1", "cronjobs", "CronJob", true, &["cj"], true),
        false,
    ),
    b(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
        false,
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        false,
    ),
    b(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        false,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
    b(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
        &["sc"],
        false,
    ),
    workload(
        b(
            "",
            "v1",
            "replicationcontrollers",
            "ReplicationController",
            true,
            &["rc"],
            true,
        ),
        // Its selector is a plain map, not a LabelSelector: no scale subresource rather than a wrong one.
        false,
    ),
    b("", "v1", "podtemplates", "PodTemplate", true, &[], false),
    b(
        "apiregistration.k8s.io",
        "v1",
        "apiservices",
        "APIService",
        false,
        &[],
        true,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        &["ing"],
        true,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
        &[],
        false,
    ),
    workload(
        b(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            true,
        ),
        false,
    ),
    b(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
        false,
    ),
    b(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        false,
        &["pc"],
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        &[],
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
];

/// A resource answered outside the store.
struct Virtual {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    backend: Backend,
}

/// The resources answered outside the store, with the only verbs their upstream servers accept.
const VIRTUALS: &[Virtual] = &[
    Virtual {
        group: "metrics.k8s.io",
        version: "v1beta1",
        plural: "pods",
        kind: "PodMetrics",
        namespaced: true,
        verbs: &["get", "list"],
        backend: Backend::PodMetrics,
    },
    Virtual {
        group: "metrics.k8s.io",
        version: "v1beta1",
        plural: "nodes",
        kind: "NodeMetrics",
        namespaced: false,
        verbs: &["get", "list"],
        backend: Backend::NodeMetrics,
    },
    Virtual {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "tokenreviews",
        kind: "TokenReview",
        namespaced: false,
        verbs: &["create"],
        backend: Backend::Review,
    },
    Virtual {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "selfsubjectreviews",
        kind: "SelfSubjectReview",
        namespaced: false,
        verbs: &["create"],
        backend: Backend::Review,
    },
    Virtual {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "subjectaccessreviews",
        kind: "SubjectAccessReview",
        namespaced: false,
        verbs: &["create"],
        backend: Backend::Review,
    },
    Virtual {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "localsubjectaccessreviews",
        kind: "LocalSubjectAccessReview",
        namespaced: true,
        verbs: &["create"],
        backend: Backend::Review,
    },
    Virtual {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        verbs: &["create"],
        backend: Backend::Review,
    },
    Virtual {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectrulesreviews",
        kind: "SelfSubjectRulesReview",
        namespaced: false,
        verbs: &["create"],
        backend: Backend::Review,
    },
];

/// Lower-case kind, as upstream derives `singularName`.
fn singular_of(kind: &str) -> String {
    kind.to_ascii_lowercase()
}

/// All resources being served, keyed by `(group, plural)`.
#[derive(Default, Clone)]
pub(crate) struct Registry {
    defs: BTreeMap<ResKey, Arc<ResourceDef>>,
}

impl Registry {
    /// A registry holding the built-in kinds.
    pub(crate) fn with_builtins() -> Self {
        let mut r = Registry::default();
        for bi in BUILTINS {
            let scale = bi.scale.then(|| ScaleDef {
                spec_replicas: vec!["spec".into(), "replicas".into()],
                status_replicas: vec!["status".into(), "replicas".into()],
                label_selector: Some(vec!["spec".into(), "selector".into()]),
            });
            r.insert(ResourceDef {
                group: bi.group.into(),
                versions: vec![bi.version.into()],
                plural: bi.plural.into(),
                singular: singular_of(bi.kind),
                kind: bi.kind.into(),
                namespaced: bi.namespaced,
                short_names: bi.short.iter().map(|s| s.to_string()).collect(),
                categories: if bi.all_category {
                    vec!["all".into()]
                } else {
                    vec![]
                },
                verbs: ALL_VERBS.to_vec(),
                status: bi.status,
                scale,
                printer_columns: None,
                from_crd: false,
                backend: Backend::Store,
            });
        }
        for v in VIRTUALS {
            r.insert(ResourceDef {
                group: v.group.into(),
                versions: vec![v.version.into()],
                plural: v.plural.into(),
                singular: singular_of(v.kind),
                kind: v.kind.into(),
                namespaced: v.namespaced,
                short_names: vec![],
                categories: vec![],
                verbs: v.verbs.to_vec(),
                status: false,
                scale: None,
                printer_columns: None,
                from_crd: false,
                backend: v.backend,
            });
        }
        r
    }

    pub(crate) fn insert(&mut self, def: ResourceDef) {
        self.defs.insert(def.key(), Arc::new(def));
    }

    pub(crate) fn remove(&mut self, key: &ResKey) {
        self.defs.remove(key);
    }

    pub(crate) fn get(&self, key: &ResKey) -> Option<&Arc<ResourceDef>> {
        self.defs.get(key)
    }

    /// The resource served at `group/version` under `plural`.
    pub(crate) fn lookup(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceDef>> {
        self.defs
            .get(&(group.to_string(), plural.to_string()))
            .filter(|d| d.versions.iter().any(|v| v == version))
            .cloned()
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ResourceDef>> {
        self.defs.values()
    }

    /// Group names with the versions they serve, groups in a stable order (core first, then by name).
    pub(crate) fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in self.defs.values() {
            let vs = out.entry(d.group.clone()).or_default();
            for v in &d.versions {
                if !vs.contains(v) {
                    vs.push(v.clone());
                }
            }
        }
        out
    }

    /// Resources served at one group version.
    pub(crate) fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceDef>> + 'a {
        self.defs
            .values()
            .filter(move |d| d.group == group && d.versions.iter().any(|v| v == version))
    }
}

/// Builds the resource a CustomResourceDefinition describes; `None` when the CRD is malformed.
pub(crate) fn def_from_crd(crd: &Value) -> Result<ResourceDef, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .ok_or("spec.names.plural: Required value")?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("spec.names.kind: Required value")?;
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| singular_of(kind));
    let scope = spec.get("scope").and_then(Value::as_str).unwrap_or("");
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        _ => return Err("spec.scope: Unsupported value: must be Namespaced or Cluster".into()),
    };
    let expected_name = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name != expected_name {
        return Err(format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions: Required value")?;
    let mut served: Vec<String> = vec![];
    let mut storage: Option<&Value> = None;
    for v in versions {
        let vname = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name: Required value")?;
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage = Some(v);
            served.insert(0, vname.to_string());
        } else if v.get("served").and_then(Value::as_bool) == Some(true) {
            served.push(vname.to_string());
        }
    }
    let storage = storage.ok_or(
        "spec.versions: Invalid value: must have exactly one version marked as storage version",
    )?;
    let subresources = storage.get("subresources");
    let status = subresources.and_then(|s| s.get("status")).is_some();
    let scale = subresources.and_then(|s| s.get("scale")).map(|sc| {
        let path = |k: &str| -> Option<Vec<String>> {
            sc.get(k).and_then(Value::as_str).map(|p| {
                p.trim_start_matches('.')
                    .split('.')
                    .map(str::to_string)
                    .collect()
            })
        };
        ScaleDef {
            spec_replicas: path("specReplicasPath").unwrap_or_default(),
            status_replicas: path("statusReplicasPath").unwrap_or_default(),
            label_selector: path("labelSelectorPath"),
        }
    });
    let printer_columns = storage
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| PrinterColumn {
                    name: str_of(c, "name"),
                    type_: str_of(c, "type"),
                    format: str_of(c, "format"),
                    description: str_of(c, "description"),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    json_path: str_of(c, "jsonPath"),
                })
                .collect()
        });
    let list = |k: &str| -> Vec<String> {
        names
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ResourceDef {
        group: group.into(),
        versions: served,
        plural: plural.into(),
        singular,
        kind: kind.into(),
        namespaced,
        short_names: list("shortNames"),
        categories: list("categories"),
        verbs: ALL_VERBS.to_vec(),
        status,
        scale,
        printer_columns,
        from_crd: true,
        backend: Backend::Store,
    })
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The status a real apiextensions-apiserver gives an accepted CRD; kube-rs' `conditions::is_crd_established`
/// waits for the `Established` condition.
pub(crate) fn crd_status(crd: &Value, now: &str) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = names.clone();
    if accepted.get("singular").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["singular"] = json!(singular_of(k));
    }
    if accepted.get("listKind").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["listKind"] = json!(format!("{k}List"));
    }
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
        ],
        "acceptedNames": accepted,
        "storedVersions": storage,
    })
}
