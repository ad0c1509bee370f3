//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Owns the column definitions and row cells for the kinds kubesim serves (modelled on the apiserver's
//! built-in printers), CRD `additionalPrinterColumns` with the small JSONPath subset they use, and the
//! apiserver's age formatting. Rows always carry every column, priority 1 included: kubectl itself hides
//! priority-1 columns unless `-o wide` is given, exactly as with a real apiserver.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::selector::from_label_selector_object;

/// One additionalPrinterColumn from a CRD version (name, type, jsonPath, description, priority, format).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PrinterColumn {
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    /// Simple JSONPath such as `.spec.replicas` or `.status.conditions[?(@.type=="Ready")].status`.
    pub json_path: String,
}

/// Builds a Table for `objects` of one resource.
///
/// `kind` is the resource's Kind (`Pod`); the plural (`pods`) is accepted too. `group` is the API group,
/// `""` for core. `crd_columns` are a CRD version's printer columns: when given they win, and an empty
/// slice means the CRD declared none, which prints `Name, Age` like the apiserver's default. Kinds
/// without a printer here also get `Name, Age`. `include_object` is the `?includeObject=` value: `None`,
/// `Object`, or anything else for `Metadata` (the default). `list_meta` becomes the Table's `metadata`;
/// `now` is the clock Age columns count from.
pub(crate) fn table(
    kind: &str,
    group: &str,
    objects: &[&Value],
    crd_columns: Option<&[PrinterColumn]>,
    include_object: &str,
    list_meta: Value,
    now: Timestamp,
) -> Value {
    let (columns, rows): (Vec<ColumnDef>, Vec<Row>) = match (crd_columns, builtin(group, kind)) {
        (Some(cols), _) => custom_table(cols, objects, now),
        (None, Some(b)) => (b.columns(), objects.iter().map(|o| b.row(o, now)).collect()),
        (None, None) => custom_table(&[], objects, now),
    };
    let include = IncludeObject::parse(include_object);
    let rows: Vec<Value> = objects
        .iter()
        .zip(rows)
        .map(|(obj, row)| {
            let mut r = Map::new();
            r.insert("cells".into(), Value::Array(row.cells));
            if let Some(conditions) = row.conditions {
                r.insert("conditions".into(), conditions);
            }
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
                    r.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": metadata,
                        }),
                    );
                }
                IncludeObject::Object => {
                    r.insert("object".into(), (*obj).clone());
                }
            }
            Value::Object(r)
        })
        .collect();
    let metadata = if list_meta.is_null() {
        json!({})
    } else {
        list_meta
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns.iter().map(ColumnDef::to_json).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("none") {
            IncludeObject::None
        } else if s.eq_ignore_ascii_case("object") {
            IncludeObject::Object
        } else {
            IncludeObject::Metadata
        }
    }
}

/// A Table column definition as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ColumnDef {
    name: String,
    type_: String,
    format: String,
    description: String,
    priority: i64,
}

impl ColumnDef {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The cells of one row, plus the row conditions the pod printer sets for finished pods.
struct Row {
    cells: Vec<Value>,
    conditions: Option<Value>,
}

impl From<Vec<Value>> for Row {
    fn from(cells: Vec<Value>) -> Self {
        Row {
            cells,
            conditions: None,
        }
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace; it identifies the object.";
const AGE_DESC: &str =
    "Time since the server recorded the object's creation (metadata.creationTimestamp).";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const SELECTOR_DESC: &str = "Label selector for pods.";

fn name_col() -> ColumnDef {
    ColumnDef {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: NAME_DESC.into(),
        priority: 0,
    }
}

fn col(name: &str, type_: &str, priority: i64, description: &str) -> ColumnDef {
    ColumnDef {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: description.into(),
        priority,
    }
}

fn age_col() -> ColumnDef {
    col("Age", "string", 0, AGE_DESC)
}

// ---------------------------------------------------------------------------------------------
// Custom resources (and every kind without a dedicated printer)

/// Name plus the CRD's columns. With no columns the apiserver serves a single default `Age` column
/// (`.metadata.creationTimestamp`, type `date`); with columns it adds nothing, not even Age.
fn custom_table(
    cols: &[PrinterColumn],
    objects: &[&Value],
    now: Timestamp,
) -> (Vec<ColumnDef>, Vec<Row>) {
    let default_age = [PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: AGE_DESC.into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }];
    let cols = if cols.is_empty() {
        &default_age[..]
    } else {
        cols
    };
    let paths: Vec<Option<Vec<Step>>> = cols
        .iter()
        .map(|c| parse_jsonpath(&c.json_path).ok())
        .collect();
    let mut defs = vec![name_col()];
    defs.extend(cols.iter().map(|c| ColumnDef {
        name: c.name.clone(),
        type_: c.type_.clone(),
        format: c.format.clone(),
        description: if c.description.is_empty() {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                c.json_path
            )
        } else {
            c.description.clone()
        },
        priority: c.priority,
    }));
    let rows = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![Value::from(str_at(obj, "/metadata/name"))];
            for (c, path) in cols.iter().zip(&paths) {
                let found = path
                    .as_ref()
                    .and_then(|steps| eval_jsonpath(steps, obj).into_iter().next());
                cells.push(found.map_or(Value::Null, |v| typed_cell(&c.type_, v, now)));
            }
            Row::from(cells)
        })
        .collect();
    (defs, rows)
}

/// Converts a JSONPath result to the cell the apiserver would send for the column's type; a value of
/// the wrong type becomes `null`, which kubectl prints as `<none>`.
fn typed_cell(type_: &str, v: &Value, now: Timestamp) -> Value {
    match type_ {
        // The apiserver prints string columns through JSONPath's text output, so any scalar shows;
        // compound values are rendered as JSON here rather than Go's map syntax.
        "string" => match v {
            Value::Null => Value::Null,
            Value::String(s) => Value::from(s.as_str()),
            other => Value::from(other.to_string()),
        },
        "integer" => v
            .as_i64()
            // Truncation mirrors the apiserver's int64(float64) conversion.
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => v.as_f64().map_or(Value::Null, Value::from),
        "boolean" => v.as_bool().map_or(Value::Null, Value::from),
        "date" => match v.as_str() {
            Some(s) if is_zero_time(s) => Value::from("<unknown>"),
            Some(s) => match s.parse::<Timestamp>() {
                Ok(ts) => Value::from(human_duration(now.duration_since(ts))),
                Err(_) => Value::from("<invalid>"),
            },
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// Built-in printers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Builtin {
    Pod,
    StatefulSet,
    Deployment,
    ReplicaSet,
    DaemonSet,
    ControllerRevision,
    Service,
    Namespace,
    Node,
    ConfigMap,
    Secret,
    ServiceAccount,
    PersistentVolumeClaim,
    Job,
    CronJob,
    /// core/v1 Event.
    Event,
    /// events.k8s.io/v1 Event: same columns, different field names.
    EventsV1,
    Lease,
    PodDisruptionBudget,
    CustomResourceDefinition,
    StorageClass,
    PersistentVolume,
}

fn builtin(group: &str, kind: &str) -> Option<Builtin> {
    let k = kind.to_ascii_lowercase();
    let b = match (group, k.as_str()) {
        ("", "pod" | "pods") => Builtin::Pod,
        ("apps", "statefulset" | "statefulsets") => Builtin::StatefulSet,
        ("apps", "deployment" | "deployments") => Builtin::Deployment,
        ("apps", "replicaset" | "replicasets") => Builtin::ReplicaSet,
        ("apps", "daemonset" | "daemonsets") => Builtin::DaemonSet,
        ("apps", "controllerrevision" | "controllerrevisions") => Builtin::ControllerRevision,
        ("", "service" | "services") => Builtin::Service,
        ("", "namespace" | "namespaces") => Builtin::Namespace,
        ("", "node" | "nodes") => Builtin::Node,
        ("", "configmap" | "configmaps") => Builtin::ConfigMap,
        ("", "secret" | "secrets") => Builtin::Secret,
        ("", "serviceaccount" | "serviceaccounts") => Builtin::ServiceAccount,
        ("", "persistentvolumeclaim" | "persistentvolumeclaims") => Builtin::PersistentVolumeClaim,
        ("batch", "job" | "jobs") => Builtin::Job,
        ("batch", "cronjob" | "cronjobs") => Builtin::CronJob,
        ("", "event" | "events") => Builtin::Event,
        ("events.k8s.io", "event" | "events") => Builtin::EventsV1,
        ("coordination.k8s.io", "lease" | "leases") => Builtin::Lease,
        ("policy", "poddisruptionbudget" | "poddisruptionbudgets") => Builtin::PodDisruptionBudget,
        ("apiextensions.k8s.io", "customresourcedefinition" | "customresourcedefinitions") => {
            Builtin::CustomResourceDefinition
        }
        ("storage.k8s.io", "storageclass" | "storageclasses") => Builtin::StorageClass,
        ("", "persistentvolume" | "persistentvolumes") => Builtin::PersistentVolume,
        _ => return None,
    };
    Some(b)
}

impl Builtin {
    fn columns(self) -> Vec<ColumnDef> {
        // Descriptions are short paraphrases of the API field docs; kubectl never prints them.
        let c = col;
        match self {
            Builtin::Pod => vec![
                name_col(),
                c(
                    "Ready",
                    "string",
                    0,
                    "Ready containers out of all containers.",
                ),
                c(
                    "Status",
                    "string",
                    0,
                    "The aggregate status of the containers.",
                ),
                c(
                    "Restarts",
                    "string",
                    0,
                    "Container restarts, and when the last one was.",
                ),
                age_col(),
                c("IP", "string", 1, "The pod's primary IP address."),
                c("Node", "string", 1, "The node the pod is bound to."),
                c(
                    "Nominated Node",
                    "string",
                    1,
                    "The node nominated for preemption.",
                ),
                c(
                    "Readiness Gates",
                    "string",
                    1,
                    "Readiness gates that are True.",
                ),
            ],
            Builtin::StatefulSet => vec![
                name_col(),
                c("Ready", "string", 0, "Ready pods out of desired replicas."),
                age_col(),
                c("Containers", "string", 1, CONTAINERS_DESC),
                c("Images", "string", 1, IMAGES_DESC),
            ],
            Builtin::Deployment => vec![
                name_col(),
                c("Ready", "string", 0, "Ready pods out of desired replicas."),
                c(
                    "Up-to-date",
                    "integer",
                    0,
                    "Pods with the desired template.",
                ),
                c("Available", "integer", 0, "Available pods."),
                age_col(),
                c("Containers", "string", 1, CONTAINERS_DESC),
                c("Images", "string", 1, IMAGES_DESC),
                c("Selector", "string", 1, SELECTOR_DESC),
            ],
            Builtin::ReplicaSet => vec![
                name_col(),
                c("Desired", "integer", 0, "Desired replicas."),
                c("Current", "integer", 0, "Observed replicas."),
                c("Ready", "integer", 0, "Ready replicas."),
                age_col(),
                c("Containers", "string", 1, CONTAINERS_DESC),
                c("Images", "string", 1, IMAGES_DESC),
                c("Selector", "string", 1, SELECTOR_DESC),
            ],
            Builtin::DaemonSet => vec![
                name_col(),
                c(
                    "Desired",
                    "integer",
                    0,
                    "Nodes that should run the daemon pod.",
                ),
                c("Current", "integer", 0, "Nodes running the daemon pod."),
                c("Ready", "integer", 0, "Nodes with a ready daemon pod."),
                c(
                    "Up-to-date",
                    "integer",
                    0,
                    "Nodes running the updated daemon pod.",
                ),
                c(
                    "Available",
                    "integer",
                    0,
                    "Nodes with an available daemon pod.",
                ),
                c(
                    "Node Selector",
                    "string",
                    0,
                    "The pod template's node selector.",
                ),
                age_col(),
                c("Containers", "string", 1, CONTAINERS_DESC),
                c("Images", "string", 1, IMAGES_DESC),
                c("Selector", "string", 1, SELECTOR_DESC),
            ],
            Builtin::ControllerRevision => vec![
                name_col(),
                c("Controller", "string", 0, "Controller of the object."),
                c(
                    "Revision",
                    "integer",
                    0,
                    "The revision this object represents.",
                ),
                age_col(),
            ],
            Builtin::Service => vec![
                name_col(),
                c("Type", "string", 0, "How the Service is exposed."),
                c(
                    "Cluster-IP",
                    "string",
                    0,
                    "The IP address assigned to the service.",
                ),
                c(
                    "External-IP",
                    "string",
                    0,
                    "External addresses of the service.",
                ),
                c("Port(s)", "string", 0, "The ports exposed by this service."),
                age_col(),
                c(
                    "Selector",
                    "string",
                    1,
                    "Pods the service routes traffic to.",
                ),
            ],
            Builtin::Namespace => vec![
                name_col(),
                c("Status", "string", 0, "The status of the namespace."),
                age_col(),
            ],
            Builtin::Node => vec![
                name_col(),
                c("Status", "string", 0, "The status of the node."),
                c("Roles", "string", 0, "The roles of the node."),
                age_col(),
                c(
                    "Version",
                    "string",
                    0,
                    "Kubelet version reported by the node.",
                ),
                c("Internal-IP", "string", 1, "The node's first InternalIP."),
                c("External-IP", "string", 1, "The node's first ExternalIP."),
                c("OS-Image", "string", 1, "OS image reported by the node."),
                c(
                    "Kernel-Version",
                    "string",
                    1,
                    "Kernel version reported by the node.",
                ),
                c(
                    "Container-Runtime",
                    "string",
                    1,
                    "Container runtime version.",
                ),
            ],
            Builtin::ConfigMap => vec![
                name_col(),
                c("Data", "integer", 0, "Keys in data and binaryData."),
                age_col(),
            ],
            Builtin::Secret => vec![
                name_col(),
                c("Type", "string", 0, "The type of the secret."),
                c("Data", "integer", 0, "Keys in the secret."),
                age_col(),
            ],
            Builtin::ServiceAccount => vec![
                name_col(),
                c(
                    "Secrets",
                    "integer",
                    0,
                    "Secrets listed by the service account.",
                ),
                age_col(),
            ],
            Builtin::PersistentVolumeClaim => vec![
                name_col(),
                c("Status", "string", 0, "The phase of the claim."),
                c("Volume", "string", 0, "The volume bound to the claim."),
                c("Capacity", "string", 0, "The storage of the bound volume."),
                c(
                    "Access Modes",
                    "string",
                    0,
                    "The access modes of the bound volume.",
                ),
                c(
                    "StorageClass",
                    "string",
                    0,
                    "The storage class of the claim.",
                ),
                c(
                    "VolumeAttributesClass",
                    "string",
                    0,
                    "The applied attributes class.",
                ),
                age_col(),
                c("VolumeMode", "string", 1, "Filesystem or Block."),
            ],
            Builtin::StorageClass => vec![
                name_col(),
                c(
                    "Provisioner",
                    "string",
                    0,
                    "The volume plugin that provisions volumes.",
                ),
                c(
                    "ReclaimPolicy",
                    "string",
                    0,
                    "What happens to released volumes.",
                ),
                c(
                    "VolumeBindingMode",
                    "string",
                    0,
                    "When claims are bound and provisioned.",
                ),
                c(
                    "AllowVolumeExpansion",
                    "string",
                    0,
                    "Whether volumes can be expanded.",
                ),
                age_col(),
            ],
            Builtin::PersistentVolume => vec![
                name_col(),
                c("Capacity", "string", 0, "The storage of the volume."),
                c(
                    "Access Modes",
                    "string",
                    0,
                    "The access modes of the volume.",
                ),
                c(
                    "Reclaim Policy",
                    "string",
                    0,
                    "What happens to the volume when released.",
                ),
                c("Status", "string", 0, "The phase of the volume."),
                c("Claim", "string", 0, "The claim bound to the volume."),
                c(
                    "StorageClass",
                    "string",
                    0,
                    "The storage class of the volume.",
                ),
                c(
                    "VolumeAttributesClass",
                    "string",
                    0,
                    "The attributes class of the volume.",
                ),
                c("Reason", "string", 0, "Why the volume is in its phase."),
                age_col(),
                c("VolumeMode", "string", 1, "Filesystem or Block."),
            ],
            Builtin::Job => vec![
                name_col(),
                c("Status", "string", 0, "Status of the job."),
                c(
                    "Completions",
                    "string",
                    0,
                    "Succeeded pods out of completions.",
                ),
                c(
                    "Duration",
                    "string",
                    0,
                    "Time the job ran, or has run so far.",
                ),
                age_col(),
                c("Containers", "string", 1, CONTAINERS_DESC),
                c("Images", "string", 1, IMAGES_DESC),
                c("Selector", "string", 1, SELECTOR_DESC),
            ],
            Builtin::CronJob => vec![
                name_col(),
                c("Schedule", "string", 0, "The schedule in Cron format."),
                c("Timezone", "string", 0, "The time zone of the schedule."),
                c("Suspend", "boolean", 0, "Whether new runs are suspended."),
                c("Active", "integer", 0, "Currently running jobs."),
                c(
                    "Last Schedule",
                    "string",
                    0,
                    "When a job was last scheduled.",
                ),
                age_col(),
                c("Containers", "string", 1, CONTAINERS_DESC),
                c("Images", "string", 1, IMAGES_DESC),
                c("Selector", "string", 1, SELECTOR_DESC),
            ],
            Builtin::Event | Builtin::EventsV1 => vec![
                c("Last Seen", "string", 0, "When the event last occurred."),
                c("Type", "string", 0, "Normal or Warning."),
                c("Reason", "string", 0, "Short, machine-readable reason."),
                c("Object", "string", 0, "The object the event is about."),
                c(
                    "Subobject",
                    "string",
                    1,
                    "The part of the object concerned.",
                ),
                c("Source", "string", 1, "The component reporting the event."),
                c("Message", "string", 0, "Human-readable description."),
                c("First Seen", "string", 1, "When the event first occurred."),
                c("Count", "integer", 1, "How often the event occurred."),
                ColumnDef {
                    priority: 1,
                    ..name_col()
                },
            ],
            Builtin::Lease => vec![
                name_col(),
                c("Holder", "string", 0, "The holder of the lease."),
                age_col(),
            ],
            Builtin::PodDisruptionBudget => vec![
                name_col(),
                c(
                    "Min Available",
                    "string",
                    0,
                    "Pods that must stay available.",
                ),
                c(
                    "Max Unavailable",
                    "string",
                    0,
                    "Pods that may be unavailable.",
                ),
                c(
                    "Allowed Disruptions",
                    "integer",
                    0,
                    "Pods that may be disrupted now.",
                ),
                age_col(),
            ],
            // The apiextensions server uses the generic convertor for CRDs themselves.
            Builtin::CustomResourceDefinition => {
                vec![name_col(), c("Created At", "date", 0, AGE_DESC)]
            }
        }
    }

    fn row(self, o: &Value, now: Timestamp) -> Row {
        let name = Value::from(str_at(o, "/metadata/name"));
        let age = Value::from(since(o.pointer("/metadata/creationTimestamp"), now));
        match self {
            Builtin::Pod => pod_row(o, now),
            Builtin::StatefulSet => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                vec![name, ratio(o, "/status/readyReplicas"), age, names, images].into()
            }
            Builtin::Deployment => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                vec![
                    name,
                    ratio(o, "/status/readyReplicas"),
                    int_at(o, "/status/updatedReplicas").into(),
                    int_at(o, "/status/availableReplicas").into(),
                    age,
                    names,
                    images,
                    selector_cell(o.pointer("/spec/selector")),
                ]
                .into()
            }
            Builtin::ReplicaSet => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                vec![
                    name,
                    replicas(o).into(),
                    int_at(o, "/status/replicas").into(),
                    int_at(o, "/status/readyReplicas").into(),
                    age,
                    names,
                    images,
                    selector_cell(o.pointer("/spec/selector")),
                ]
                .into()
            }
            Builtin::DaemonSet => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                vec![
                    name,
                    int_at(o, "/status/desiredNumberScheduled").into(),
                    int_at(o, "/status/currentNumberScheduled").into(),
                    int_at(o, "/status/numberReady").into(),
                    int_at(o, "/status/updatedNumberScheduled").into(),
                    int_at(o, "/status/numberAvailable").into(),
                    format_labels(o.pointer("/spec/template/spec/nodeSelector")).into(),
                    age,
                    names,
                    images,
                    selector_cell(o.pointer("/spec/selector")),
                ]
                .into()
            }
            Builtin::ControllerRevision => vec![
                name,
                controller_of(o).into(),
                int_at(o, "/revision").into(),
                age,
            ]
            .into(),
            Builtin::Service => service_row(o, name, age),
            Builtin::Namespace => {
                let phase = non_empty(str_at(o, "/status/phase")).unwrap_or("Active");
                vec![name, phase.into(), age].into()
            }
            Builtin::Node => node_row(o, name, age),
            Builtin::ConfigMap => {
                let n = obj_len(o, "/data") + obj_len(o, "/binaryData");
                vec![name, n.into(), age].into()
            }
            Builtin::Secret => {
                let ty = non_empty(str_at(o, "/type")).unwrap_or("Opaque");
                // stringData is write-only and folded into data by a real server; count it in case the
                // object was stored as written.
                let mut keys: Vec<&String> = obj_keys(o, "/data");
                keys.extend(obj_keys(o, "/stringData"));
                keys.sort();
                keys.dedup();
                vec![name, ty.into(), keys.len().into(), age].into()
            }
            Builtin::ServiceAccount => vec![name, arr_at(o, "/secrets").len().into(), age].into(),
            Builtin::PersistentVolumeClaim => pvc_row(o, name, age),
            Builtin::StorageClass => {
                let default = [
                    "storageclass.kubernetes.io~1is-default-class",
                    "storageclass.beta.kubernetes.io~1is-default-class",
                ]
                .iter()
                .any(|a| str_at(o, &format!("/metadata/annotations/{a}")) == "true");
                let name = if default {
                    format!("{} (default)", str_at(o, "/metadata/name")).into()
                } else {
                    name
                };
                vec![
                    name,
                    str_at(o, "/provisioner").into(),
                    non_empty(str_at(o, "/reclaimPolicy"))
                        .unwrap_or("Delete")
                        .into(),
                    non_empty(str_at(o, "/volumeBindingMode"))
                        .unwrap_or("Immediate")
                        .into(),
                    bool_at(o, "/allowVolumeExpansion").into(),
                    age,
                ]
                .into()
            }
            Builtin::PersistentVolume => pv_row(o, name, age),
            Builtin::Job => job_row(o, name, age, now),
            Builtin::CronJob => {
                let (names, images) =
                    containers(o, "/spec/jobTemplate/spec/template/spec/containers");
                let last = o
                    .pointer("/status/lastScheduleTime")
                    .filter(|v| !v.is_null())
                    .map_or_else(|| "<none>".to_string(), |v| since(Some(v), now));
                let tz = non_empty(str_at(o, "/spec/timeZone")).unwrap_or("<none>");
                // The server defaults suspend to false, so a missing value prints as False.
                let suspend = if bool_at(o, "/spec/suspend") {
                    "True"
                } else {
                    "False"
                };
                vec![
                    name,
                    str_at(o, "/spec/schedule").into(),
                    tz.into(),
                    suspend.into(),
                    arr_at(o, "/status/active").len().into(),
                    last.into(),
                    age,
                    names,
                    images,
                    selector_cell(o.pointer("/spec/jobTemplate/spec/selector")),
                ]
                .into()
            }
            Builtin::Event => event_row(o, now, &CORE_EVENT_FIELDS),
            Builtin::EventsV1 => event_row(o, now, &EVENTS_V1_FIELDS),
            Builtin::Lease => vec![name, str_at(o, "/spec/holderIdentity").into(), age].into(),
            Builtin::PodDisruptionBudget => {
                let bound = |p: &str| match o.pointer(p) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => "N/A".to_string(),
                };
                vec![
                    name,
                    bound("/spec/minAvailable").into(),
                    bound("/spec/maxUnavailable").into(),
                    int_at(o, "/status/disruptionsAllowed").into(),
                    age,
                ]
                .into()
            }
            Builtin::CustomResourceDefinition => {
                // The generic convertor prints the raw timestamp; Go's zero time when it is unset.
                let created = non_empty(str_at(o, "/metadata/creationTimestamp"))
                    .and_then(|s| s.parse::<Timestamp>().ok())
                    .map_or_else(
                        || "0001-01-01T00:00:00Z".to_string(),
                        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    );
                vec![name, created.into()].into()
            }
        }
    }
}

fn pod_row(p: &Value, now: Timestamp) -> Row {
    let init_specs = arr_at(p, "/spec/initContainers");
    // Init containers with restartPolicy Always are sidecars: they count as regular containers once started.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always")
    };
    let total = arr_at(p, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| str_at(c, "/restartPolicy") == "Always")
            .count();
    let phase = str_at(p, "/status/phase");
    let mut reason = non_empty(str_at(p, "/status/reason"))
        .unwrap_or(phase)
        .to_string();
    let conditions = arr_at(p, "/status/conditions");
    if conditions
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let condition_true = |ty: &str| {
        conditions
            .iter()
            .any(|c| str_at(c, "/type") == ty && str_at(c, "/status") == "True")
    };

    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut sidecar_restarts = 0i64;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let mut initializing = false;
    for (i, cs) in arr_at(p, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let count = int_at(cs, "/restartCount");
        let finished = last_finished(cs);
        restarts += count;
        last_restart = last_restart.max(finished);
        let sidecar = is_sidecar(str_at(cs, "/name"));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = cs.pointer("/state/terminated");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && bool_at(cs, "/started") {
            if bool_at(cs, "/ready") {
                ready += 1;
            }
            continue;
        }
        let waiting = str_at(cs, "/state/waiting/reason");
        reason = if let Some(t) = terminated {
            match non_empty(str_at(t, "/reason")) {
                Some(r) => format!("Init:{r}"),
                None if int_at(t, "/signal") != 0 => {
                    format!("Init:Signal:{}", int_at(t, "/signal"))
                }
                None => format!("Init:ExitCode:{}", int_at(t, "/exitCode")),
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }
    if !initializing || condition_true("Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walked backwards so the first container's state wins the Status column, as upstream.
        for cs in arr_at(p, "/status/containerStatuses").iter().rev() {
            restarts += int_at(cs, "/restartCount");
            last_restart = last_restart.max(last_finished(cs));
            let waiting = str_at(cs, "/state/waiting/reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = cs.pointer("/state/terminated") {
                reason = match non_empty(str_at(t, "/reason")) {
                    Some(r) => r.to_string(),
                    None if int_at(t, "/signal") != 0 => format!("Signal:{}", int_at(t, "/signal")),
                    None => format!("ExitCode:{}", int_at(t, "/exitCode")),
                };
            } else if bool_at(cs, "/ready") && cs.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true("Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }
    if has_value(p, "/metadata/deletionTimestamp") {
        if str_at(p, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration(now.duration_since(t)))
        }
        _ => restarts.to_string(),
    };
    let ip = arr_at(p, "/status/podIPs")
        .first()
        .map(|x| str_at(x, "/ip"))
        .and_then(non_empty)
        .or_else(|| non_empty(str_at(p, "/status/podIP")))
        .unwrap_or("<none>");
    let gates = arr_at(p, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        // Only the first condition of a type counts, as upstream.
        let passing = gates
            .iter()
            .filter(|g| {
                let ty = str_at(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| str_at(c, "/type") == ty)
                    .is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    let row_conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed",
            "message": "The pod failed."}]),
        ),
        _ => None,
    };
    Row {
        cells: vec![
            str_at(p, "/metadata/name").into(),
            format!("{ready}/{total}").into(),
            reason.into(),
            restarts_cell.into(),
            since(p.pointer("/metadata/creationTimestamp"), now).into(),
            ip.into(),
            non_empty(str_at(p, "/spec/nodeName"))
                .unwrap_or("<none>")
                .into(),
            non_empty(str_at(p, "/status/nominatedNodeName"))
                .unwrap_or("<none>")
                .into(),
            gates_cell.into(),
        ],
        conditions: row_conditions,
    }
}

/// When the container's previous run ended, which dates the "(5m ago)" part of Restarts.
fn last_finished(cs: &Value) -> Option<Timestamp> {
    cs.pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn service_row(o: &Value, name: Value, age: Value) -> Row {
    let ty = non_empty(str_at(o, "/spec/type")).unwrap_or("ClusterIP");
    let cluster_ip = arr_at(o, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .and_then(non_empty)
        .or_else(|| non_empty(str_at(o, "/spec/clusterIP")))
        .unwrap_or("<none>");
    let external_ips: Vec<&str> = arr_at(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut all: Vec<&str> = arr_at(o, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    non_empty(str_at(i, "/ip")).or_else(|| non_empty(str_at(i, "/hostname")))
                })
                .collect();
            all.extend(&external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(o, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr_at(o, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = non_empty(str_at(p, "/protocol")).unwrap_or("TCP");
            let port = int_at(p, "/port");
            match int_at(p, "/nodePort") {
                0 => format!("{port}/{proto}"),
                node_port => format!("{port}:{node_port}/{proto}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name,
        ty.into(),
        cluster_ip.into(),
        external.into(),
        ports.into(),
        age,
        format_labels(o.pointer("/spec/selector")).into(),
    ]
    .into()
}

fn node_row(o: &Value, name: Value, age: Value) -> Row {
    let mut status: Vec<&str> = match arr_at(o, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Ready")
    {
        Some(c) if str_at(c, "/status") == "True" => vec!["Ready"],
        Some(_) => vec!["NotReady"],
        None => vec!["Unknown"],
    };
    if bool_at(o, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = vec![];
    if let Some(labels) = o.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k
                .strip_prefix("node-role.kubernetes.io/")
                .and_then(non_empty)
            {
                roles.push(role);
            } else if k == "kubernetes.io/role"
                && let Some(role) = v.as_str().and_then(non_empty)
            {
                roles.push(role);
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |ty: &str| {
        arr_at(o, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == ty)
            .map_or("<none>", |a| str_at(a, "/address"))
    };
    let info = |field: &str| {
        non_empty(str_at(o, &format!("/status/nodeInfo/{field}"))).unwrap_or("<unknown>")
    };
    vec![
        name,
        status.join(",").into(),
        roles.into(),
        age,
        str_at(o, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
    .into()
}

/// Access modes as kubectl abbreviates them, in upstream's order.
fn access_modes(list: &[Value]) -> String {
    let modes: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    let abbreviated: Vec<&str> = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(full, _)| modes.contains(full))
    .map(|(_, short)| *short)
    .collect();
    abbreviated.join(",")
}

fn pv_row(o: &Value, name: Value, age: Value) -> Row {
    let phase = if has_value(o, "/metadata/deletionTimestamp") {
        "Terminating"
    } else {
        str_at(o, "/status/phase")
    };
    let claim = if has_value(o, "/spec/claimRef") {
        format!(
            "{}/{}",
            str_at(o, "/spec/claimRef/namespace"),
            str_at(o, "/spec/claimRef/name")
        )
    } else {
        String::new()
    };
    let class = o
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(o, "/spec/storageClassName"));
    vec![
        name,
        str_at(o, "/spec/capacity/storage").into(),
        access_modes(arr_at(o, "/spec/accessModes")).into(),
        str_at(o, "/spec/persistentVolumeReclaimPolicy").into(),
        phase.into(),
        claim.into(),
        class.into(),
        non_empty(str_at(o, "/spec/volumeAttributesClassName"))
            .unwrap_or("<unset>")
            .into(),
        str_at(o, "/status/reason").into(),
        age,
        non_empty(str_at(o, "/spec/volumeMode"))
            .unwrap_or("<unset>")
            .into(),
    ]
    .into()
}

fn pvc_row(o: &Value, name: Value, age: Value) -> Row {
    let phase = if has_value(o, "/metadata/deletionTimestamp") {
        "Terminating"
    } else {
        str_at(o, "/status/phase")
    };
    let volume = str_at(o, "/spec/volumeName");
    // Capacity and access modes describe the bound volume, so they stay blank until binding.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            str_at(o, "/status/capacity/storage").to_string(),
            access_modes(arr_at(o, "/status/accessModes")),
        )
    };
    // The beta annotation still takes precedence over the field, as in the apiserver's helper.
    let class = o
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(o, "/spec/storageClassName"));
    let vac = non_empty(str_at(o, "/status/currentVolumeAttributesClassName")).unwrap_or("<unset>");
    let mode = non_empty(str_at(o, "/spec/volumeMode")).unwrap_or("<unset>");
    vec![
        name,
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        class.into(),
        vac.into(),
        age,
        mode.into(),
    ]
    .into()
}

fn job_row(o: &Value, name: Value, age: Value, now: Timestamp) -> Row {
    let succeeded = int_at(o, "/status/succeeded");
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(o, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let ts = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Timestamp>().ok())
    };
    let duration = match (ts("/status/startTime"), ts("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = arr_at(o, "/status/conditions");
    let has = |ty: &str| {
        conditions
            .iter()
            .any(|c| str_at(c, "/type") == ty && str_at(c, "/status") == "True")
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if has_value(o, "/metadata/deletionTimestamp") {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (names, images) = containers(o, "/spec/template/spec/containers");
    vec![
        name,
        status.into(),
        completions.into(),
        duration.into(),
        age,
        names,
        images,
        selector_cell(o.pointer("/spec/selector")),
    ]
    .into()
}

/// Where the two Event APIs keep the fields the printer needs (JSON pointers).
struct EventFields {
    first: &'static str,
    last: &'static str,
    count: &'static str,
    regarding: &'static str,
    message: &'static str,
    source_component: &'static str,
    source_host: &'static str,
    reporting_instance: &'static str,
}

const CORE_EVENT_FIELDS: EventFields = EventFields {
    first: "/firstTimestamp",
    last: "/lastTimestamp",
    count: "/count",
    regarding: "/involvedObject",
    message: "/message",
    source_component: "/source/component",
    source_host: "/source/host",
    reporting_instance: "/reportingInstance",
};

const EVENTS_V1_FIELDS: EventFields = EventFields {
    first: "/deprecatedFirstTimestamp",
    last: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    regarding: "/regarding",
    message: "/note",
    source_component: "/deprecatedSource/component",
    source_host: "/deprecatedSource/host",
    reporting_instance: "/reportingInstance",
};

fn event_row(o: &Value, now: Timestamp, f: &EventFields) -> Row {
    let first = if has_value(o, f.first) {
        since(o.pointer(f.first), now)
    } else {
        since(o.pointer("/eventTime"), now)
    };
    let mut last = if has_value(o, f.last) {
        since(o.pointer(f.last), now)
    } else {
        first.clone()
    };
    let mut count = int_at(o, f.count);
    if o.pointer("/series").is_some_and(|s| !s.is_null()) {
        last = since(o.pointer("/series/lastObservedTime"), now);
        count = int_at(o, "/series/count");
    } else if count == 0 {
        // Singleton events from the new API carry no count.
        count = 1;
    }
    let regarding = o.pointer(f.regarding).unwrap_or(&Value::Null);
    let kind = str_at(regarding, "/kind").to_lowercase();
    let target = match non_empty(str_at(regarding, "/name")) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    let component =
        non_empty(str_at(o, f.source_component)).unwrap_or(str_at(o, "/reportingController"));
    let host = non_empty(str_at(o, f.source_host)).unwrap_or(str_at(o, f.reporting_instance));
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        last.into(),
        str_at(o, "/type").into(),
        str_at(o, "/reason").into(),
        target.into(),
        str_at(regarding, "/fieldPath").into(),
        source.into(),
        str_at(o, f.message).trim().into(),
        first.into(),
        count.into(),
        str_at(o, "/metadata/name").into(),
    ]
    .into()
}

/// `kind.group/name` of the controlling owner, e.g. `statefulset.apps/web`, or `<none>`.
fn controller_of(o: &Value) -> String {
    let Some(owner) = arr_at(o, "/metadata/ownerReferences")
        .iter()
        .find(|r| bool_at(r, "/controller"))
    else {
        return "<none>".to_string();
    };
    let kind = str_at(owner, "/kind").to_lowercase();
    let group = str_at(owner, "/apiVersion")
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let name = str_at(owner, "/name");
    match (kind.is_empty(), group.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => format!("{kind}/{name}"),
        (false, false) => format!("{kind}.{group}/{name}"),
    }
}

/// "ready/desired", where desired is `spec.replicas` (defaulted to 1 like the apiserver).
fn ratio(o: &Value, ready: &str) -> Value {
    format!("{}/{}", int_at(o, ready), replicas(o)).into()
}

fn replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Comma-joined container names and images of a pod spec's container list.
fn containers(o: &Value, ptr: &str) -> (Value, Value) {
    let cs = arr_at(o, ptr);
    let names: Vec<&str> = cs.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(",").into(), images.join(",").into())
}

/// A `metav1.LabelSelector` in its string form, `<none>` when it selects by nothing.
fn selector_cell(sel: Option<&Value>) -> Value {
    let text = sel
        .and_then(|s| from_label_selector_object(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    if text.is_empty() {
        "<none>".into()
    } else {
        text.into()
    }
}

/// A plain `map[string]string` of labels as `k=v,...` sorted by key, or `<none>`.
fn format_labels(m: Option<&Value>) -> String {
    let mut pairs: Vec<String> = m
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    // Sorted explicitly: serde_json may be built with preserve_order.
    pairs.sort();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

// ---------------------------------------------------------------------------------------------
// Small JSON accessors (missing or mistyped values read as zero values, like Go structs)

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn bool_at(v: &Value, ptr: &str) -> bool {
    v.pointer(ptr).and_then(Value::as_bool).unwrap_or(false)
}

fn arr_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn obj_len(v: &Value, ptr: &str) -> usize {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .map_or(0, Map::len)
}

fn obj_keys<'a>(v: &'a Value, ptr: &str) -> Vec<&'a String> {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default()
}

fn has_value(v: &Value, ptr: &str) -> bool {
    v.pointer(ptr)
        .is_some_and(|x| !x.is_null() && x.as_str() != Some(""))
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

// ---------------------------------------------------------------------------------------------
// Age

fn is_zero_time(s: &str) -> bool {
    s.starts_with("0001-01-01T00:00:00")
}

/// Age of a timestamp value as kubectl shows it; `<unknown>` when absent or unparseable.
fn since(v: Option<&Value>, now: Timestamp) -> String {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() && !is_zero_time(s) => match s.parse::<Timestamp>() {
            Ok(t) => human_duration(now.duration_since(t)),
            Err(_) => "<unknown>".to_string(),
        },
        _ => "<unknown>".to_string(),
    }
}

/// apimachinery's `duration.HumanDuration`: two significant units while the larger is small
/// (`5m30s`, `3h5m`, `3d4h`, `2y30d`), one unit otherwise (`90s`, `45m`, `20h`, `45d`).
/// Up to a second in the future is clock skew and reads `0s`.
fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            dy => format!("{years}y{dy}d"),
        };
    }
    format!("{years}y")
}

// ---------------------------------------------------------------------------------------------
// JSONPath subset for additionalPrinterColumns

/// One step of a parsed JSONPath.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// `.name` or `['name']`
    Field(String),
    /// `.*` or `[*]`: every element or member value.
    Wildcard,
    /// `[n]`; negative counts from the end.
    Index(i64),
    /// `[?(@.path op literal)]` or `[?(@.path)]`, applied to array elements.
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    path: Vec<String>,
    test: Option<(CmpOp, Value)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Parses `.spec.foo`, `.items[0].name`, `.status.conditions[?(@.type=="Ready")].status`; also accepts
/// the template form `{.spec.foo}` and a leading `$`. Recursive descent and slices are not supported.
fn parse_jsonpath(expr: &str) -> Result<Vec<Step>, String> {
    let mut s = expr.trim();
    if let Some(inner) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        s = inner.trim();
    }
    s = s.strip_prefix('$').unwrap_or(s);
    let chars: Vec<char> = s.chars().collect();
    let mut steps = vec![];
    let mut i = 0;
    // A bare `spec.foo` is read as `.spec.foo`.
    let mut implicit_dot = !chars.is_empty() && chars[0] != '.' && chars[0] != '[';
    while i < chars.len() {
        if implicit_dot || chars[i] == '.' {
            if !implicit_dot {
                i += 1;
            }
            implicit_dot = false;
            if chars.get(i) == Some(&'.') {
                return Err(format!("recursive descent is not supported in {expr:?}"));
            }
            let start = i;
            while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name.contains(char::is_whitespace) {
                return Err(format!("whitespace in field name {name:?} in {expr:?}"));
            }
            match name.as_str() {
                "" if i == chars.len() => break,
                "" => return Err(format!("empty field name in {expr:?}")),
                "*" => steps.push(Step::Wildcard),
                _ => steps.push(Step::Field(name)),
            }
        } else if chars[i] == '[' {
            let start = i + 1;
            let mut j = start;
            let mut depth = 0i32;
            let mut quote: Option<char> = None;
            loop {
                let Some(&c) = chars.get(j) else {
                    return Err(format!("unterminated '[' in {expr:?}"));
                };
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '(') => depth += 1,
                    (None, ')') => depth -= 1,
                    (None, ']') if depth == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            let inner: String = chars[start..j].iter().collect();
            steps.push(parse_bracket(inner.trim(), expr)?);
            i = j + 1;
        } else {
            return Err(format!("unexpected {:?} in JSONPath {expr:?}", chars[i]));
        }
    }
    Ok(steps)
}

fn parse_bracket(inner: &str, expr: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|x| x.strip_suffix(')')) {
        return parse_filter(f.trim(), expr).map(Step::Filter);
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name.to_string()));
    }
    inner
        .parse::<i64>()
        .map(Step::Index)
        .map_err(|_| format!("unsupported subscript [{inner}] in {expr:?}"))
}

fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
}

fn parse_filter(f: &str, expr: &str) -> Result<Filter, String> {
    let bad = || format!("unsupported filter ?({f}) in {expr:?}");
    let mut rest = f.strip_prefix('@').ok_or_else(bad)?;
    let mut path = vec![];
    while let Some(r) = rest.strip_prefix('.') {
        let end = r
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '/')))
            .unwrap_or(r.len());
        if end == 0 {
            return Err(bad());
        }
        path.push(r[..end].to_string());
        rest = &r[end..];
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(Filter { path, test: None });
    }
    let ops = [
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<=", CmpOp::Le),
        (">=", CmpOp::Ge),
        ("<", CmpOp::Lt),
        (">", CmpOp::Gt),
    ];
    let (op, lit) = ops
        .iter()
        .find_map(|(text, op)| rest.strip_prefix(text).map(|l| (*op, l.trim())))
        .ok_or_else(bad)?;
    let value = if let Some(s) = unquote(lit) {
        Value::from(s)
    } else if lit == "true" || lit == "false" {
        Value::from(lit == "true")
    } else if let Ok(n) = lit.parse::<i64>() {
        Value::from(n)
    } else if let Ok(n) = lit.parse::<f64>() {
        Value::from(n)
    } else {
        return Err(bad());
    };
    Ok(Filter {
        path,
        test: Some((op, value)),
    })
}

impl Filter {
    fn matches(&self, element: &Value) -> bool {
        let mut cur = element;
        for seg in &self.path {
            match cur.get(seg.as_str()) {
                Some(v) => cur = v,
                // Elements lacking the field never match, whatever the operator.
                None => return false,
            }
        }
        let Some((op, want)) = &self.test else {
            return true;
        };
        let ordering = match (cur, want) {
            (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => {
                Some(a.cmp(b))
            }
            _ => None,
        };
        use std::cmp::Ordering::{Equal, Greater, Less};
        match (op, ordering) {
            (CmpOp::Ne, None) => true,
            (_, None) => false,
            (CmpOp::Eq, Some(o)) => o == Equal,
            (CmpOp::Ne, Some(o)) => o != Equal,
            (CmpOp::Lt, Some(o)) => o == Less,
            (CmpOp::Le, Some(o)) => o != Greater,
            (CmpOp::Gt, Some(o)) => o == Greater,
            (CmpOp::Ge, Some(o)) => o != Less,
        }
    }
}

/// Every value the path reaches, in document order.
fn eval_jsonpath<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for step in steps {
        let mut next = vec![];
        for v in cur {
            match (step, v) {
                (Step::Field(name), Value::Object(m)) => next.extend(m.get(name)),
                (Step::Wildcard, Value::Array(a)) => next.extend(a),
                (Step::Wildcard, Value::Object(m)) => next.extend(m.values()),
                (Step::Index(i), Value::Array(a)) => {
                    let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
                    let idx = if *i < 0 { len + i } else { *i };
                    next.extend(usize::try_from(idx).ok().and_then(|k| a.get(k)));
                }
                (Step::Filter(f), Value::Array(a)) => {
                    next.extend(a.iter().filter(|e| f.matches(e)))
                }
                _ => {}
            }
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-01-01T12:00:00Z".parse().unwrap()
    }

    /// A timestamp `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        (now() - SignedDuration::from_secs(secs))
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    fn build(kind: &str, group: &str, objs: &[Value]) -> Value {
        let refs: Vec<&Value> = objs.iter().collect();
        table(
            kind,
            group,
            &refs,
            None,
            "",
            json!({"resourceVersion": "7"}),
            now(),
        )
    }

    fn names(t: &Value) -> Vec<String> {
        t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn cells(t: &Value, row: usize) -> Vec<Value> {
        t["rows"][row]["cells"].as_array().unwrap().clone()
    }

    /// Asserts the column count matches every row's cell count, then returns row 0's cells.
    fn only_row(kind: &str, group: &str, obj: Value) -> Vec<Value> {
        let t = build(kind, group, &[obj]);
        assert_eq!(
            names(&t).len(),
            cells(&t, 0).len(),
            "{kind}: columns vs cells"
        );
        cells(&t, 0)
    }

    #[test]
    fn human_duration_matches_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (90, "90s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (599, "9m59s"),
            (600, "10m"),
            (45 * 60, "45m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600, "8h"),
            (20 * 3600 + 59 * 60, "20h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (8 * 86400, "8d"),
            (45 * 86400, "45d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (730 * 86400 + 30 * 86400, "2y30d"),
            (365 * 8 * 86400, "8y"),
            (365 * 9 * 86400 + 100 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(secs)),
                want,
                "{secs}s"
            );
        }
        // Sub-second skew into the future still reads 0s.
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    }

    #[test]
    fn since_handles_missing_and_bad_timestamps() {
        assert_eq!(since(None, now()), "<unknown>");
        assert_eq!(since(Some(&json!("")), now()), "<unknown>");
        assert_eq!(since(Some(&json!("yesterday")), now()), "<unknown>");
        assert_eq!(
            since(Some(&json!("0001-01-01T00:00:00Z")), now()),
            "<unknown>"
        );
        assert_eq!(since(Some(&json!(ago(65))), now()), "65s");
        assert_eq!(
            since(Some(&json!("2025-01-01T11:59:59.500000Z")), now()),
            "0s"
        );
    }

    fn jp<'a>(path: &str, v: &'a Value) -> Vec<&'a Value> {
        let steps = parse_jsonpath(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        eval_jsonpath(&steps, v)
    }

    #[test]
    fn jsonpath_fields_indexes_and_wildcards() {
        let v = json!({
            "spec": {"replicas": 3, "my-key": "x", "ports": [{"port": 80}, {"port": 443}]},
            "metadata": {"labels": {"a.b/c": "d"}}
        });
        assert_eq!(jp(".spec.replicas", &v), vec![&json!(3)]);
        assert_eq!(jp("{.spec.replicas}", &v), vec![&json!(3)]);
        assert_eq!(jp("$.spec.replicas", &v), vec![&json!(3)]);
        assert_eq!(jp("spec.replicas", &v), vec![&json!(3)]);
        assert_eq!(jp(".spec.my-key", &v), vec![&json!("x")]);
        assert_eq!(jp(".spec.ports[1].port", &v), vec![&json!(443)]);
        assert_eq!(jp(".spec.ports[-1].port", &v), vec![&json!(443)]);
        assert!(jp(".spec.ports[5].port", &v).is_empty());
        assert_eq!(jp(".spec.ports[*].port", &v), vec![&json!(80), &json!(443)]);
        assert_eq!(jp(".spec.ports.*.port", &v), vec![&json!(80), &json!(443)]);
        assert_eq!(jp(".metadata.labels['a.b/c']", &v), vec![&json!("d")]);
        assert!(jp(".spec.missing.deeper", &v).is_empty());
        assert!(jp(".spec.replicas.deeper", &v).is_empty());
        assert_eq!(jp("", &v), vec![&v]);
    }

    #[test]
    fn jsonpath_filters() {
        let v = json!({"status": {"conditions": [
            {"type": "Progressing", "status": "True", "n": 1},
            {"type": "Ready", "status": "False", "n": 2, "flag": true},
            {"type": "Synced", "status": "True", "n": 3}
        ]}});
        let ready = r#".status.conditions[?(@.type=="Ready")].status"#;
        assert_eq!(jp(ready, &v), vec![&json!("False")]);
        assert_eq!(
            jp(".status.conditions[?(@.type == 'Synced')].n", &v),
            vec![&json!(3)]
        );
        assert_eq!(
            jp(".status.conditions[?(@.status!=\"True\")].type", &v),
            vec![&json!("Ready")]
        );
        assert_eq!(
            jp(".status.conditions[?(@.n>1)].n", &v),
            vec![&json!(2), &json!(3)]
        );
        assert_eq!(
            jp(".status.conditions[?(@.n<=1)].type", &v),
            vec![&json!("Progressing")]
        );
        assert_eq!(
            jp(".status.conditions[?(@.flag)].type", &v),
            vec![&json!("Ready")]
        );
        assert_eq!(
            jp(".status.conditions[?(@.flag==true)].n", &v),
            vec![&json!(2)]
        );
        assert!(jp(r#".status.conditions[?(@.type=="Nope")].status"#, &v).is_empty());
        // Filters apply to arrays only.
        assert!(jp(r#".status[?(@.type=="Ready")]"#, &v).is_empty());
    }

    #[test]
    fn jsonpath_rejects_what_it_cannot_evaluate() {
        for bad in [
            ".a..b",
            ".a[",
            ".a[1:2]",
            ".a[?(x==1)]",
            ".a[?(@.x~1)]",
            ".a b",
        ] {
            assert!(parse_jsonpath(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn table_envelope_and_include_object() {
        let obj = json!({"kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}}, "spec": {"x": 1}});
        let refs = [&obj];
        let t = table(
            "Widget",
            "example.com",
            &refs,
            None,
            "",
            json!({"resourceVersion": "9"}),
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "9"}));
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "w", "labels": {"a": "b"}}})
        );
        let full = table(
            "Widget",
            "example.com",
            &refs,
            None,
            "Object",
            Value::Null,
            now(),
        );
        assert_eq!(full["rows"][0]["object"], obj);
        assert_eq!(full["metadata"], json!({}));
        let none = table(
            "Widget",
            "example.com",
            &refs,
            None,
            "None",
            Value::Null,
            now(),
        );
        assert!(none["rows"][0].get("object").is_none());
        let meta = table(
            "Widget",
            "example.com",
            &refs,
            None,
            "Metadata",
            Value::Null,
            now(),
        );
        assert_eq!(meta["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let empty = table("Widget", "example.com", &[], None, "", Value::Null, now());
        assert_eq!(empty["rows"], json!([]));
    }

    #[test]
    fn column_definitions_have_the_wire_shape() {
        let t = build("Pod", "", &[]);
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0})
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let priorities: Vec<i64> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["priority"].as_i64().unwrap())
            .collect();
        assert_eq!(priorities, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn unknown_kinds_and_crds_without_columns_print_name_and_age() {
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": ago(300)}});
        let t = build("Widget", "example.com", std::slice::from_ref(&obj));
        assert_eq!(names(&t), ["Name", "Age"]);
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(cells(&t, 0), [json!("w"), json!("5m")]);
        let refs = [&obj];
        let t = table(
            "Widget",
            "example.com",
            &refs,
            Some(&[]),
            "",
            Value::Null,
            now(),
        );
        assert_eq!(names(&t), ["Name", "Age"]);
        assert_eq!(cells(&t, 0), [json!("w"), json!("5m")]);
    }

    fn pcol(name: &str, type_: &str, path: &str, priority: i64) -> PrinterColumn {
        PrinterColumn {
            name: name.into(),
            type_: type_.into(),
            json_path: path.into(),
            priority,
            ..PrinterColumn::default()
        }
    }

    #[test]
    fn crd_columns_are_evaluated_and_typed() {
        let cols = [
            pcol("Replicas", "integer", ".spec.replicas", 0),
            pcol(
                "Ready",
                "string",
                r#".status.conditions[?(@.type=="Ready")].status"#,
                0,
            ),
            pcol("Ratio", "number", ".status.ratio", 1),
            pcol("Paused", "boolean", ".spec.paused", 0),
            pcol("Created", "date", ".metadata.creationTimestamp", 0),
            pcol("Port", "string", ".spec.port", 0),
            pcol("Missing", "string", ".spec.nope", 0),
            pcol("Broken", "string", ".spec..x", 0),
            pcol("WrongType", "integer", ".spec.name", 0),
            pcol("Map", "string", ".spec.map", 0),
        ];
        let obj = json!({
            "metadata": {"name": "db1", "creationTimestamp": ago(4000)},
            "spec": {"replicas": 3.0, "paused": false, "port": 5432, "name": "x", "map": {"k": "v"}},
            "status": {"ratio": 0.5, "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let refs = [&obj];
        let mut described = cols.clone();
        described[0].description = "How many".into();
        let t = table(
            "Database",
            "example.com",
            &refs,
            Some(&described),
            "",
            Value::Null,
            now(),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Replicas",
                "Ready",
                "Ratio",
                "Paused",
                "Created",
                "Port",
                "Missing",
                "Broken",
                "WrongType",
                "Map"
            ]
        );
        assert_eq!(t["columnDefinitions"][1]["description"], "How many");
        assert_eq!(
            t["columnDefinitions"][2]["description"],
            r#"Custom resource definition column (in JSONPath format): .status.conditions[?(@.type=="Ready")].status"#
        );
        assert_eq!(t["columnDefinitions"][3]["priority"], 1);
        assert_eq!(
            cells(&t, 0),
            [
                json!("db1"),
                json!(3),
                json!("True"),
                json!(0.5),
                json!(false),
                json!("66m"),
                json!("5432"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!(r#"{"k":"v"}"#),
            ]
        );
        let bad_date = json!({"metadata": {"name": "x", "creationTimestamp": "soon"}});
        let cols = [pcol("Created", "date", ".metadata.creationTimestamp", 0)];
        let refs = [&bad_date];
        let t = table(
            "Database",
            "example.com",
            &refs,
            Some(&cols),
            "",
            Value::Null,
            now(),
        );
        assert_eq!(cells(&t, 0)[1], "<invalid>");
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": ago(330)},
            "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "app", "image": "nginx"}]},
            "status": status
        })
    }

    fn pod_cells(status: Value) -> Vec<Value> {
        only_row("Pod", "", pod(status))
    }

    #[test]
    fn pod_running_and_ready() {
        let c = pod_cells(json!({
            "phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                                   "state": {"running": {"startedAt": ago(300)}}}]
        }));
        assert_eq!(
            c,
            [
                json!("web-0"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("5m30s"),
                json!("10.0.0.5"),
                json!("kwok-node-0"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn pod_pending_and_waiting_reasons() {
        let c = pod_cells(json!({"phase": "Pending"}));
        assert_eq!(
            (&c[1], &c[2], &c[5]),
            (&json!("0/1"), &json!("Pending"), &json!("<none>"))
        );
        for reason in ["ContainerCreating", "ErrImagePull", "ImagePullBackOff"] {
            let c = pod_cells(json!({"phase": "Pending", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}}
            ]}));
            assert_eq!(c[1], "0/1");
            assert_eq!(c[2], reason);
        }
    }

    #[test]
    fn pod_crash_loop_counts_restarts_with_last_restart_age() {
        let c = pod_cells(json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(125)}}
        }]}));
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "4 (2m5s ago)");
        // Restarts without a recorded finish time print the bare count.
        let c = pod_cells(json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}}},
            {"name": "side", "ready": false, "restartCount": 1, "state": {"running": {}}}
        ]}));
        assert_eq!(c[3], "3");
    }

    #[test]
    fn pod_terminated_states() {
        let c = pod_cells(json!({"phase": "Failed", "containerStatuses": [
            {"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137}}}
        ]}));
        assert_eq!(c[2], "ExitCode:137");
        let c = pod_cells(json!({"phase": "Failed", "containerStatuses": [
            {"name": "app", "ready": false, "state": {"terminated": {"exitCode": 0, "signal": 9}}}
        ]}));
        assert_eq!(c[2], "Signal:9");
        let t = build(
            "Pod",
            "",
            &[pod(json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "app", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}))],
        );
        assert_eq!(cells(&t, 0)[2], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
        let t = build("Pod", "", &[pod(json!({"phase": "Running"}))]);
        assert!(t["rows"][0].get("conditions").is_none());
    }

    #[test]
    fn pod_terminating_and_node_lost() {
        let mut p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": true, "state": {"running": {}}}
        ]}));
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(only_row("Pod", "", p.clone())[2], "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(only_row("Pod", "", p.clone())[2], "Unknown");
        p["status"] = json!({"phase": "Succeeded"});
        assert_eq!(only_row("Pod", "", p)[2], "Succeeded");
    }

    #[test]
    fn pod_init_containers_and_sidecars() {
        let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "init", "ready": false, "state": {"waiting": {"reason": "PodInitializing"}}}
        ]}));
        p["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox"}]);
        assert_eq!(only_row("Pod", "", p.clone())[2], "Init:0/1");
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(only_row("Pod", "", p.clone())[2], "Init:ImagePullBackOff");
        p["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 2}});
        assert_eq!(only_row("Pod", "", p.clone())[2], "Init:ExitCode:2");
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(only_row("Pod", "", p.clone())[2], "Init:Error");

        // A started sidecar counts toward Ready and the total.
        p["spec"]["initContainers"][0]["restartPolicy"] = json!("Always");
        p["status"] = json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "init", "ready": true, "started": true, "restartCount": 1,
                                       "state": {"running": {}}}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}}}]
        });
        let c = only_row("Pod", "", p);
        assert_eq!(
            (&c[1], &c[2], &c[3]),
            (&json!("2/2"), &json!("Running"), &json!("3"))
        );
    }

    #[test]
    fn pod_scheduling_gates_nomination_and_readiness_gates() {
        let mut p = pod(
            json!({"phase": "Pending", "nominatedNodeName": "n2", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                {"type": "example.com/gate", "status": "True"}
            ]}),
        );
        p["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/gate"}, {"conditionType": "other"}]);
        p["spec"]["nodeName"] = Value::Null;
        let c = only_row("Pod", "", p);
        assert_eq!(c[2], "SchedulingGated");
        assert_eq!(c[6], "<none>");
        assert_eq!(c[7], "n2");
        assert_eq!(c[8], "1/2");
    }

    fn workload(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": ago(7200)}, "spec": spec, "status": status})
    }

    fn template(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    #[test]
    fn statefulset_row() {
        let t = build(
            "StatefulSet",
            "apps",
            &[workload(
                json!({"replicas": 3, "template": template(json!([{"name": "pg", "image": "postgres:16"},
                                                             {"name": "exp", "image": "exporter"}]))}),
                json!({"readyReplicas": 2}),
            )],
        );
        assert_eq!(names(&t), ["Name", "Ready", "Age", "Containers", "Images"]);
        assert_eq!(
            cells(&t, 0),
            [
                json!("web"),
                json!("2/3"),
                json!("120m"),
                json!("pg,exp"),
                json!("postgres:16,exporter")
            ]
        );
        // Nothing observed yet and no replicas given: the server default of 1 is the denominator.
        let c = only_row("statefulsets", "apps", workload(json!({}), json!({})));
        assert_eq!(c[1], "0/1");
    }

    #[test]
    fn deployment_and_replicaset_rows() {
        let spec = json!({"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                          "template": template(json!([{"name": "c", "image": "i"}]))});
        let status = json!({"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1});
        let t = build(
            "Deployment",
            "apps",
            &[workload(spec.clone(), status.clone())],
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            [
                json!("web"),
                json!("1/2"),
                json!(2),
                json!(1),
                json!("120m"),
                json!("c"),
                json!("i"),
                json!("app=web")
            ]
        );
        let t = build("ReplicaSet", "apps", &[workload(spec, status)]);
        assert_eq!(
            names(&t),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            [
                json!("web"),
                json!(2),
                json!(2),
                json!(1),
                json!("120m"),
                json!("c"),
                json!("i"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn daemonset_and_controllerrevision_rows() {
        let c = only_row(
            "DaemonSet",
            "apps",
            workload(
                json!({"template": {"spec": {"nodeSelector": {"z": "1", "a": "2"}, "containers": []}}}),
                json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                       "updatedNumberScheduled": 3, "numberAvailable": 2}),
            ),
        );
        assert_eq!(
            &c[1..7],
            [
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("a=2,z=1")
            ]
        );
        assert_eq!(c[10], "<none>");
        let cr = json!({"metadata": {"name": "web-7c9f", "creationTimestamp": ago(60), "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}
        ]}, "revision": 2});
        assert_eq!(
            only_row("ControllerRevision", "apps", cr),
            [
                json!("web-7c9f"),
                json!("statefulset.apps/web"),
                json!(2),
                json!("60s")
            ]
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(only_row("ControllerRevision", "apps", orphan)[1], "<none>");
    }

    fn service(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "db", "creationTimestamp": ago(30)}, "spec": spec, "status": status})
    }

    #[test]
    fn service_rows() {
        let t = build(
            "Service",
            "",
            &[service(
                json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                       "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 9187}],
                       "selector": {"app": "pg", "role": "primary"}}),
                json!({}),
            )],
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            [
                json!("db"),
                json!("ClusterIP"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("5432/TCP,9187/TCP"),
                json!("30s"),
                json!("app=pg,role=primary")
            ]
        );
        let headless = only_row(
            "Service",
            "",
            service(json!({"clusterIP": "None"}), json!({})),
        );
        assert_eq!(
            (&headless[1], &headless[2], &headless[4]),
            (&json!("ClusterIP"), &json!("None"), &json!("<none>"))
        );
        let np = only_row(
            "Service",
            "",
            service(
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080, "protocol": "UDP"}],
                           "externalIPs": ["1.2.3.4"]}),
                json!({}),
            ),
        );
        assert_eq!(
            (&np[2], &np[3], &np[4]),
            (&json!("<none>"), &json!("1.2.3.4"), &json!("80:30080/UDP"))
        );
        let lb = only_row(
            "Service",
            "",
            service(json!({"type": "LoadBalancer"}), json!({})),
        );
        assert_eq!(lb[3], "<pending>");
        let lb = only_row(
            "Service",
            "",
            service(
                json!({"type": "LoadBalancer"}),
                json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}]}}),
            ),
        );
        assert_eq!(lb[3], "5.6.7.8,lb.example");
        let en = only_row(
            "Service",
            "",
            service(
                json!({"type": "ExternalName", "externalName": "db.example"}),
                json!({}),
            ),
        );
        assert_eq!(en[3], "db.example");
    }

    #[test]
    fn namespace_configmap_secret_serviceaccount_rows() {
        let meta = json!({"name": "x", "creationTimestamp": ago(10)});
        assert_eq!(
            only_row(
                "Namespace",
                "",
                json!({"metadata": meta, "status": {"phase": "Terminating"}})
            ),
            [json!("x"), json!("Terminating"), json!("10s")]
        );
        assert_eq!(
            only_row("namespaces", "", json!({"metadata": meta}))[1],
            "Active"
        );
        assert_eq!(
            only_row(
                "ConfigMap",
                "",
                json!({"metadata": meta, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}})
            ),
            [json!("x"), json!(3), json!("10s")]
        );
        assert_eq!(
            only_row(
                "Secret",
                "",
                json!({"metadata": meta, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
            ),
            [
                json!("x"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("10s")
            ]
        );
        assert_eq!(
            only_row(
                "Secret",
                "",
                json!({"metadata": meta, "data": {"a": ""}, "stringData": {"a": "", "b": ""}})
            ),
            [json!("x"), json!("Opaque"), json!(2), json!("10s")]
        );
        assert_eq!(
            only_row(
                "ServiceAccount",
                "",
                json!({"metadata": meta, "secrets": [{"name": "t"}]})
            ),
            [json!("x"), json!(1), json!("10s")]
        );
    }

    #[test]
    fn pvc_rows() {
        let t = build(
            "PersistentVolumeClaim",
            "",
            &[json!({
                "metadata": {"name": "data-web-0", "creationTimestamp": ago(3600 * 30)},
                "spec": {"storageClassName": "standard", "volumeName": "pvc-123", "volumeMode": "Filesystem",
                         "resources": {"requests": {"storage": "1Gi"}}},
                "status": {"phase": "Bound", "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                           "capacity": {"storage": "1Gi"}}
            })],
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            [
                json!("data-web-0"),
                json!("Bound"),
                json!("pvc-123"),
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("standard"),
                json!("<unset>"),
                json!("30h"),
                json!("Filesystem")
            ]
        );
        let pending = only_row(
            "PersistentVolumeClaim",
            "",
            json!({"metadata": {"name": "p", "deletionTimestamp": ago(1),
                                "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
                   "spec": {"storageClassName": "new", "resources": {"requests": {"storage": "1Gi"}}},
                   "status": {"phase": "Pending"}}),
        );
        assert_eq!(
            &pending[1..6],
            [
                json!("Terminating"),
                json!(""),
                json!(""),
                json!(""),
                json!("old")
            ]
        );
        assert_eq!(pending[8], "<unset>");
    }

    fn job(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "migrate", "creationTimestamp": ago(600)}, "spec": spec, "status": status})
    }

    #[test]
    fn job_rows() {
        let t = build(
            "Job",
            "batch",
            &[job(
                json!({"completions": 1, "selector": {"matchLabels": {"job-name": "migrate"}},
                       "template": template(json!([{"name": "m", "image": "tool"}]))}),
                json!({"succeeded": 1, "startTime": ago(600), "completionTime": ago(555),
                       "conditions": [{"type": "Complete", "status": "True"}]}),
            )],
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            [
                json!("migrate"),
                json!("Complete"),
                json!("1/1"),
                json!("45s"),
                json!("10m"),
                json!("m"),
                json!("tool"),
                json!("job-name=migrate")
            ]
        );
        let running = only_row(
            "Job",
            "batch",
            job(json!({"parallelism": 3}), json!({"startTime": ago(200)})),
        );
        assert_eq!(
            &running[1..4],
            [json!("Running"), json!("0/1 of 3"), json!("3m20s")]
        );
        let not_started = only_row("Job", "batch", job(json!({}), json!({})));
        assert_eq!(
            &not_started[1..4],
            [json!("Running"), json!("0/1"), json!("")]
        );
        let failed = only_row(
            "Job",
            "batch",
            job(
                json!({"completions": 2}),
                json!({"conditions": [
                {"type": "Complete", "status": "False"}, {"type": "Failed", "status": "True"}]}),
            ),
        );
        assert_eq!(&failed[1..3], [json!("Failed"), json!("0/2")]);
        let suspended = only_row(
            "Job",
            "batch",
            job(
                json!({}),
                json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
            ),
        );
        assert_eq!(suspended[1], "Suspended");
    }

    #[test]
    fn cronjob_rows() {
        let cj = json!({
            "metadata": {"name": "backup", "creationTimestamp": ago(86400 * 3)},
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template(json!([{"name": "b", "image": "bk"}]))}}},
            "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(90)}
        });
        let t = build("CronJob", "batch", std::slice::from_ref(&cj));
        assert_eq!(
            names(&t),
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            [
                json!("backup"),
                json!("0 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("90s"),
                json!("3d"),
                json!("b"),
                json!("bk"),
                json!("<none>")
            ]
        );
        let mut suspended = cj;
        suspended["spec"]["suspend"] = json!(true);
        suspended["spec"]["timeZone"] = json!("Etc/UTC");
        suspended["status"] = json!({});
        let c = only_row("CronJob", "batch", suspended);
        assert_eq!(
            &c[2..6],
            [json!("Etc/UTC"), json!("True"), json!(0), json!("<none>")]
        );
    }

    #[test]
    fn core_event_rows() {
        let t = build(
            "Event",
            "",
            &[json!({
                "metadata": {"name": "web-0.17a", "namespace": "default"},
                "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
                "reason": "BackOff", "type": "Warning", "message": " Back-off restarting failed container \n",
                "source": {"component": "kubelet", "host": "node-1"},
                "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 7
            })],
        );
        assert_eq!(
            names(&t),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(t["columnDefinitions"][9]["format"], "name");
        assert_eq!(
            cells(&t, 0),
            [
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-0"),
                json!("spec.containers{app}"),
                json!("kubelet, node-1"),
                json!("Back-off restarting failed container"),
                json!("10m"),
                json!(7),
                json!("web-0.17a")
            ]
        );
        // New-style event written through core/v1: eventTime and series, no count.
        let c = only_row(
            "Event",
            "",
            json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Namespace"},
                   "eventTime": "2025-01-01T11:58:00.123456Z", "reportingComponent": "x",
                   "reportingController": "ctrl", "reportingInstance": "ctrl-1"}),
        );
        assert_eq!(c[0], "119s");
        assert_eq!(c[3], "namespace");
        assert_eq!(c[5], "ctrl, ctrl-1");
        assert_eq!(c[8], 1);
    }

    #[test]
    fn events_k8s_io_rows_use_the_new_field_names() {
        let c = only_row(
            "Event",
            "events.k8s.io",
            json!({
                "metadata": {"name": "web.1"},
                "eventTime": ago(300),
                "series": {"count": 4, "lastObservedTime": ago(20)},
                "regarding": {"kind": "StatefulSet", "name": "web"},
                "note": "create Pod web-0 in StatefulSet web successful",
                "reason": "SuccessfulCreate", "type": "Normal",
                "reportingController": "statefulset-controller", "reportingInstance": ""
            }),
        );
        assert_eq!(
            c,
            [
                json!("20s"),
                json!("Normal"),
                json!("SuccessfulCreate"),
                json!("statefulset/web"),
                json!(""),
                json!("statefulset-controller"),
                json!("create Pod web-0 in StatefulSet web successful"),
                json!("5m"),
                json!(4),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn lease_pdb_crd_node_rows() {
        let meta = json!({"name": "x", "creationTimestamp": ago(100)});
        assert_eq!(
            only_row(
                "Lease",
                "coordination.k8s.io",
                json!({"metadata": meta, "spec": {"holderIdentity": "pod-a"}})
            ),
            [json!("x"), json!("pod-a"), json!("100s")]
        );
        assert_eq!(
            only_row(
                "Lease",
                "coordination.k8s.io",
                json!({"metadata": meta, "spec": {}})
            )[1],
            ""
        );
        assert_eq!(
            only_row(
                "PodDisruptionBudget",
                "policy",
                json!({"metadata": meta, "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}})
            ),
            [
                json!("x"),
                json!("2"),
                json!("N/A"),
                json!(1),
                json!("100s")
            ]
        );
        assert_eq!(
            only_row(
                "PodDisruptionBudget",
                "policy",
                json!({"metadata": meta, "spec": {"maxUnavailable": "25%"}})
            )[1..4],
            [json!("N/A"), json!("25%"), json!(0)]
        );
        let t = build(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            &[
                json!({"metadata": {"name": "dbs.example.com", "creationTimestamp": "2024-06-01T08:09:10Z"}}),
            ],
        );
        assert_eq!(names(&t), ["Name", "Created At"]);
        assert_eq!(
            cells(&t, 0),
            [json!("dbs.example.com"), json!("2024-06-01T08:09:10Z")]
        );
        let node = json!({
            "metadata": {"name": "kwok-node-0", "creationTimestamp": ago(100),
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "agent",
                                    "node-role.kubernetes.io/": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "kwok"}}
        });
        assert_eq!(
            only_row("Node", "", node),
            [
                json!("kwok-node-0"),
                json!("Ready,SchedulingDisabled"),
                json!("agent,control-plane"),
                json!("100s"),
                json!("v1.33.0"),
                json!("10.0.0.1"),
                json!("<none>"),
                json!("kwok"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
        let bare = only_row("Node", "", json!({"metadata": {"name": "n"}}));
        assert_eq!(
            (&bare[1], &bare[2], &bare[3]),
            (&json!("Unknown"), &json!("<none>"), &json!("<unknown>"))
        );
    }

    #[test]
    fn every_row_is_as_wide_as_its_columns() {
        let kinds = [
            ("Pod", ""),
            ("StatefulSet", "apps"),
            ("Deployment", "apps"),
            ("ReplicaSet", "apps"),
            ("DaemonSet", "apps"),
            ("ControllerRevision", "apps"),
            ("Service", ""),
            ("Namespace", ""),
            ("Node", ""),
            ("ConfigMap", ""),
            ("Secret", ""),
            ("ServiceAccount", ""),
            ("PersistentVolumeClaim", ""),
            ("Job", "batch"),
            ("CronJob", "batch"),
            ("Event", ""),
            ("Event", "events.k8s.io"),
            ("Lease", "coordination.k8s.io"),
            ("PodDisruptionBudget", "policy"),
            ("CustomResourceDefinition", "apiextensions.k8s.io"),
        ];
        for (kind, group) in kinds {
            assert!(builtin(group, kind).is_some(), "{group}/{kind}");
            // An empty object must still yield a full row: real stores hold partially-filled objects.
            only_row(kind, group, json!({}));
        }
        assert!(builtin("", "Deployment").is_none());
        assert!(builtin("apps", "deployments").is_some());
    }
}
