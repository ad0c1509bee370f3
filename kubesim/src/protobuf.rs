//! Request bodies in the Kubernetes protobuf envelope (`application/vnd.kubernetes.protobuf`), which kubectl's
//! typed generators send (`kubectl create namespace`, `create configmap`, `create secret`, `create deployment`,
//! `run`, …).
//!
//! The envelope is the magic `k8s\0` followed by a `runtime.Unknown` message: the object's apiVersion and kind,
//! and its bytes as the kind's own message. The messages are decoded with descriptors compiled from upstream's
//! `generated.proto` files (vendored under `kubesim/proto/`, compiled by protox at the first protobuf request) by
//! prost-reflect, and turned into the JSON the store keeps, following the Go types' JSON forms where they differ
//! from the messages (times, quantities, int-or-strings, raw extensions, and zero values Go writes to the wire
//! but omits from JSON: without that, a template sent as protobuf and the same template sent as JSON would hash
//! differently, and `kubectl rollout undo` would make a new ReplicaSet instead of reusing the old one).
//!
//! Responses are encoded the same way back ([`encode`]) when a client asks for protobuf first in `Accept` and the
//! kind's schema is vendored; anything else is answered in JSON, which every such client also accepts.

use std::sync::OnceLock;

use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind as PbKind, MapKey, MessageDescriptor,
    ReflectMessage as _, Value as Pb,
};
use serde_json::{Map, Value, json};

use crate::apierror::{ApiError, ApiResult};

/// The media type of the envelope.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// The vendored schema files, by the name their imports use.
const FILES: &[(&str, &str)] = &[
    (
        "k8s.io/apimachinery/pkg/runtime/generated.proto",
        include_str!("../proto/k8s.io/apimachinery/pkg/runtime/generated.proto"),
    ),
    (
        "k8s.io/apimachinery/pkg/runtime/schema/generated.proto",
        include_str!("../proto/k8s.io/apimachinery/pkg/runtime/schema/generated.proto"),
    ),
    (
        "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
        include_str!("../proto/k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto"),
    ),
    (
        "k8s.io/apimachinery/pkg/api/resource/generated.proto",
        include_str!("../proto/k8s.io/apimachinery/pkg/api/resource/generated.proto"),
    ),
    (
        "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
        include_str!("../proto/k8s.io/apimachinery/pkg/util/intstr/generated.proto"),
    ),
    (
        "k8s.io/api/core/v1/generated.proto",
        include_str!("../proto/k8s.io/api/core/v1/generated.proto"),
    ),
    (
        "k8s.io/api/apps/v1/generated.proto",
        include_str!("../proto/k8s.io/api/apps/v1/generated.proto"),
    ),
    (
        "k8s.io/api/scheduling/v1alpha3/generated.proto",
        include_str!("../proto/k8s.io/api/scheduling/v1alpha3/generated.proto"),
    ),
    (
        "k8s.io/api/batch/v1/generated.proto",
        include_str!("../proto/k8s.io/api/batch/v1/generated.proto"),
    ),
    (
        "k8s.io/api/rbac/v1/generated.proto",
        include_str!("../proto/k8s.io/api/rbac/v1/generated.proto"),
    ),
    (
        "k8s.io/api/authentication/v1/generated.proto",
        include_str!("../proto/k8s.io/api/authentication/v1/generated.proto"),
    ),
    (
        "k8s.io/api/authorization/v1/generated.proto",
        include_str!("../proto/k8s.io/api/authorization/v1/generated.proto"),
    ),
];

/// The proto package of an API group's version, for the groups whose schemas are vendored.
fn package(api_version: &str) -> Option<&'static str> {
    Some(match api_version {
        "v1" => "k8s.io.api.core.v1",
        "apps/v1" => "k8s.io.api.apps.v1",
        "batch/v1" => "k8s.io.api.batch.v1",
        "rbac.authorization.k8s.io/v1" => "k8s.io.api.rbac.v1",
        "authentication.k8s.io/v1" => "k8s.io.api.authentication.v1",
        "authorization.k8s.io/v1" => "k8s.io.api.authorization.v1",
        _ => return None,
    })
}

/// Serves the vendored files to protox.
struct Vendored;

impl protox::file::FileResolver for Vendored {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        let (_, source) = FILES
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| protox::Error::file_not_found(name))?;
        protox::file::File::from_source(name, source)
    }
}

fn pool() -> ApiResult<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut compiler = protox::Compiler::with_file_resolver(Vendored);
        compiler.include_imports(true);
        for (name, _) in FILES {
            compiler.open_file(name).map_err(|e| e.to_string())?;
        }
        Ok(compiler.descriptor_pool())
    })
    .as_ref()
    .map_err(|e| ApiError::internal(format!("kubesim's protobuf schemas do not compile: {e}")))
}

fn message(name: &str) -> ApiResult<MessageDescriptor> {
    pool()?
        .get_message_by_name(name)
        .ok_or_else(|| ApiError::internal(format!("no protobuf message {name}")))
}

fn field<'a>(msg: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, Pb>> {
    msg.get_field_by_name(name)
}

fn str_field(msg: &DynamicMessage, name: &str) -> String {
    field(msg, name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Decodes an enveloped object into its JSON form, `apiVersion` and `kind` included.
pub(crate) fn decode(body: &[u8]) -> ApiResult<Value> {
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request(
            "the protobuf body does not start with the Kubernetes envelope's magic (k8s\\0)",
        )
    })?;
    let unknown = DynamicMessage::decode(message("k8s.io.apimachinery.pkg.runtime.Unknown")?, rest)
        .map_err(|e| ApiError::bad_request(format!("malformed protobuf envelope: {e}")))?;
    let type_meta = field(&unknown, "typeMeta")
        .and_then(|v| v.as_message().cloned())
        .ok_or_else(|| ApiError::bad_request("the protobuf envelope has no typeMeta"))?;
    let api_version = str_field(&type_meta, "apiVersion");
    let kind = str_field(&type_meta, "kind");
    let encoding = str_field(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(ApiError::bad_request(format!(
            "unsupported protobuf content encoding {encoding:?}"
        )));
    }
    let pkg = package(&api_version).ok_or_else(|| unsupported(&api_version, &kind))?;
    let desc = pool()?
        .get_message_by_name(&format!("{pkg}.{kind}"))
        .ok_or_else(|| unsupported(&api_version, &kind))?;
    let raw = field(&unknown, "raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let object = DynamicMessage::decode(desc, raw)
        .map_err(|e| ApiError::bad_request(format!("malformed protobuf {kind}: {e}")))?;
    let mut out = to_json(&object);
    if let Some(m) = out.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(out)
}

fn unsupported(api_version: &str, kind: &str) -> ApiError {
    ApiError::unsupported_protobuf(&format!(
        "kubesim has no protobuf schema for {api_version} {kind}; send it as JSON"
    ))
}

/// Whether `kind` of `api_version` has a vendored schema.
pub(crate) fn has_schema(api_version: &str, kind: &str) -> bool {
    package(api_version).is_some_and(|pkg| {
        pool().is_ok_and(|p| p.get_message_by_name(&format!("{pkg}.{kind}")).is_some())
    })
}

/// The envelope of an object (or a list) in its JSON form: `None` when its kind has no vendored schema or a
/// field cannot be represented, so that the caller answers in JSON instead.
pub(crate) fn encode(obj: &Value) -> Option<Vec<u8>> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    let pkg = package(api_version)?;
    let desc = pool().ok()?.get_message_by_name(&format!("{pkg}.{kind}"))?;
    let object = from_json(&desc, obj)?;
    let mut unknown = DynamicMessage::new(message("k8s.io.apimachinery.pkg.runtime.Unknown").ok()?);
    let mut type_meta =
        DynamicMessage::new(message("k8s.io.apimachinery.pkg.runtime.TypeMeta").ok()?);
    type_meta.set_field_by_name("apiVersion", Pb::String(api_version.into()));
    type_meta.set_field_by_name("kind", Pb::String(kind.into()));
    unknown.set_field_by_name("typeMeta", Pb::Message(type_meta));
    unknown.set_field_by_name("raw", Pb::Bytes(object.encode_to_vec().into()));
    unknown.set_field_by_name("contentEncoding", Pb::String(String::new()));
    unknown.set_field_by_name("contentType", Pb::String(String::new()));
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    Some(out)
}

/// A message from its JSON form: the reverse of [`to_json`]. JSON fields the message lacks are dropped (the
/// store keeps what clients sent; a protobuf client would not see them either).
/// Fields of Go structs embedded with `json:",inline"`: a message of their own in protobuf, their fields part
/// of the parent in JSON (`secretKeyRef.name` is `SecretKeySelector.localObjectReference.name` on the wire).
const INLINE: &[(&str, &str)] = &[
    (
        "k8s.io.api.core.v1.SecretKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapKeySelector",
        "localObjectReference",
    ),
    ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
    (
        "k8s.io.api.core.v1.ConfigMapEnvSource",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapVolumeSource",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.SecretProjection",
        "localObjectReference",
    ),
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    (
        "k8s.io.api.core.v1.PersistentVolumeSpec",
        "persistentVolumeSource",
    ),
    ("k8s.io.api.core.v1.Probe", "handler"),
    (
        "k8s.io.api.core.v1.EphemeralContainer",
        "ephemeralContainerCommon",
    ),
    ("k8s.io.api.networking.v1.IngressRule", "ingressRuleValue"),
];

fn is_inline(desc: &MessageDescriptor, f: &FieldDescriptor) -> bool {
    INLINE
        .iter()
        .any(|(m, name)| *m == desc.full_name() && *name == f.name())
}

fn from_json(desc: &MessageDescriptor, v: &Value) -> Option<DynamicMessage> {
    let mut msg = DynamicMessage::new(desc.clone());
    match desc.full_name() {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let at: jiff::Timestamp = v.as_str()?.parse().ok()?;
            msg.set_field_by_name("seconds", Pb::I64(at.as_second()));
            msg.set_field_by_name("nanos", Pb::I32(at.subsec_nanosecond()));
            return Some(msg);
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            msg.set_field_by_name("string", Pb::String(s));
            return Some(msg);
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            match v {
                Value::String(s) => {
                    msg.set_field_by_name("type", Pb::I64(1));
                    msg.set_field_by_name("strVal", Pb::String(s.clone()));
                }
                Value::Number(n) => {
                    msg.set_field_by_name("type", Pb::I64(0));
                    msg.set_field_by_name("intVal", Pb::I32(i32::try_from(n.as_i64()?).ok()?));
                }
                _ => return None,
            }
            return Some(msg);
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => {
            msg.set_field_by_name("raw", Pb::Bytes(serde_json::to_vec(v).ok()?.into()));
            return Some(msg);
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            msg.set_field_by_name("Raw", Pb::Bytes(serde_json::to_vec(v).ok()?.into()));
            return Some(msg);
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => return None,
        _ => {}
    }
    let obj = v.as_object()?;
    for f in desc.fields() {
        if is_inline(desc, &f) {
            if let PbKind::Message(m) = f.kind() {
                let sub = from_json(&m, v)?;
                if sub.fields().next().is_some() {
                    msg.set_field(&f, Pb::Message(sub));
                }
            }
            continue;
        }
        let Some(x) = obj.get(f.json_name()) else {
            continue;
        };
        if x.is_null() {
            continue;
        }
        let value = if f.is_map() {
            let PbKind::Message(entry) = f.kind() else {
                return None;
            };
            let value_field = entry.map_entry_value_field();
            let mut m = std::collections::HashMap::new();
            for (k, item) in x.as_object()? {
                m.insert(
                    MapKey::String(k.clone()),
                    scalar_or_message(&value_field, item)?,
                );
            }
            Pb::Map(m)
        } else if f.is_list() {
            let items = x
                .as_array()?
                .iter()
                .map(|item| scalar_or_message(&f, item))
                .collect::<Option<Vec<_>>>()?;
            Pb::List(items)
        } else {
            scalar_or_message(&f, x)?
        };
        msg.set_field(&f, value);
    }
    Some(msg)
}

/// One value of field `f` (an element, for lists and maps).
fn scalar_or_message(f: &FieldDescriptor, v: &Value) -> Option<Pb> {
    Some(match f.kind() {
        PbKind::Message(m) => Pb::Message(from_json(&m, v)?),
        PbKind::String => Pb::String(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        PbKind::Bool => Pb::Bool(v.as_bool()?),
        PbKind::Int32 | PbKind::Sint32 | PbKind::Sfixed32 => {
            Pb::I32(i32::try_from(v.as_i64()?).ok()?)
        }
        PbKind::Int64 | PbKind::Sint64 | PbKind::Sfixed64 => Pb::I64(v.as_i64()?),
        PbKind::Uint32 | PbKind::Fixed32 => Pb::U32(u32::try_from(v.as_u64()?).ok()?),
        PbKind::Uint64 | PbKind::Fixed64 => Pb::U64(v.as_u64()?),
        PbKind::Double => Pb::F64(v.as_f64()?),
        PbKind::Float => Pb::F32(v.as_f64()? as f32),
        PbKind::Bytes => Pb::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?
                .into(),
        ),
        PbKind::Enum(_) => Pb::EnumNumber(i32::try_from(v.as_i64()?).ok()?),
    })
}

/// Integer fields that are pointers in the Go types, where 0 is a value and not "unset", so that a 0 on the wire
/// is kept (Go writes every non-pointer field, zero or not; its JSON omits the zeros).
const ZERO_MEANINGFUL: &[&str] = &[
    "replicas",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "backoffLimit",
    "backoffLimitPerIndex",
    "parallelism",
    "completions",
    "ttlSecondsAfterFinished",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "partition",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "priority",
    "defaultMode",
    "mode",
    "minReadySeconds",
    "maxSkew",
    "start",
];

/// Boolean fields that are pointers in the Go types, where `false` is a value (the others are omitted when
/// false, as Go's JSON omits them).
const FALSE_MEANINGFUL: &[&str] = &[
    "automountServiceAccountToken",
    "enableServiceLinks",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "privileged",
    "allowPrivilegeEscalation",
    "suspend",
    "optional",
    "immutable",
    "controller",
    "blockOwnerDeletion",
    "shareProcessNamespace",
    "hostUsers",
    "setHostnameAsFQDN",
    "allocateLoadBalancerNodePorts",
    "manualSelector",
    "publishNotReadyAddresses",
];

/// A message in its JSON form.
fn to_json(msg: &DynamicMessage) -> Value {
    let desc = msg.descriptor();
    match desc.full_name() {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            return time(msg, desc.full_name().ends_with("MicroTime"));
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => return json!(str_field(msg, "string")),
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            let is_string = field(msg, "type").and_then(|v| v.as_i64()).unwrap_or(0) == 1;
            return if is_string {
                json!(str_field(msg, "strVal"))
            } else {
                json!(field(msg, "intVal").and_then(|v| v.as_i32()).unwrap_or(0))
            };
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let name = if desc.full_name().ends_with("FieldsV1") {
                "Raw"
            } else {
                "raw"
            };
            let raw = field(msg, name)
                .and_then(|v| v.as_bytes().cloned())
                .unwrap_or_default();
            return serde_json::from_slice(&raw).unwrap_or(Value::Null);
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            let ns = field(msg, "duration").and_then(|v| v.as_i64()).unwrap_or(0);
            return json!(go_duration(ns));
        }
        _ => {}
    }
    let mut out = Map::new();
    for (f, v) in msg.fields() {
        if is_inline(&desc, &f)
            && let Pb::Message(sub) = v
        {
            if let Value::Object(m) = to_json(sub) {
                out.extend(m);
            }
            continue;
        }
        let name = f.json_name().to_string();
        let value = match v {
            Pb::List(items) => Value::Array(items.iter().map(value).collect()),
            Pb::Map(entries) => {
                let mut m: Vec<(String, Value)> = entries
                    .iter()
                    .map(|(k, v)| (map_key(k), value(v)))
                    .collect();
                m.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(m.into_iter().collect())
            }
            other => {
                let v = value(other);
                let kept = match v {
                    Value::Bool(false) => FALSE_MEANINGFUL.contains(&f.name()),
                    ref v if is_zero(v) => ZERO_MEANINGFUL.contains(&f.name()),
                    _ => true,
                };
                if !kept {
                    continue;
                }
                v
            }
        };
        out.insert(name, value);
    }
    Value::Object(out)
}

/// Zero numbers and empty strings (what Go's JSON omits) and zero times (`null` in Go's JSON).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn value(v: &Pb) -> Value {
    match v {
        Pb::Bool(b) => json!(b),
        Pb::I32(n) => json!(n),
        Pb::I64(n) => json!(n),
        Pb::U32(n) => json!(n),
        Pb::U64(n) => json!(n),
        Pb::F32(n) => json!(n),
        Pb::F64(n) => json!(n),
        Pb::String(s) => json!(s),
        Pb::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Pb::EnumNumber(n) => json!(n),
        Pb::Message(m) => to_json(m),
        Pb::List(items) => Value::Array(items.iter().map(value).collect()),
        Pb::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (map_key(k), value(v)))
                .collect(),
        ),
    }
}

fn map_key(k: &MapKey) -> String {
    match k {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// `metav1.Time` (seconds, RFC 3339) or `MicroTime` (microseconds); the zero time is `null`.
fn time(msg: &DynamicMessage, micro: bool) -> Value {
    let seconds = field(msg, "seconds").and_then(|v| v.as_i64()).unwrap_or(0);
    let nanos = field(msg, "nanos").and_then(|v| v.as_i32()).unwrap_or(0);
    if seconds == 0 && nanos == 0 {
        return Value::Null;
    }
    let Ok(at) = jiff::Timestamp::new(seconds, if micro { nanos / 1000 * 1000 } else { 0 }) else {
        return Value::Null;
    };
    json!(if micro {
        at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    })
}

/// A duration as Go's `time.Duration.String` prints whole seconds: `1h2m3s`, `45s`, `0s`.
fn go_duration(nanos: i64) -> String {
    let secs = nanos / 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an enveloped object from its message, as client-go does.
    fn envelope(api_version: &str, kind: &str, object: &DynamicMessage) -> Vec<u8> {
        let mut unknown =
            DynamicMessage::new(message("k8s.io.apimachinery.pkg.runtime.Unknown").unwrap());
        let mut type_meta =
            DynamicMessage::new(message("k8s.io.apimachinery.pkg.runtime.TypeMeta").unwrap());
        type_meta.set_field_by_name("apiVersion", Pb::String(api_version.into()));
        type_meta.set_field_by_name("kind", Pb::String(kind.into()));
        unknown.set_field_by_name("typeMeta", Pb::Message(type_meta));
        unknown.set_field_by_name("raw", Pb::Bytes(object.encode_to_vec().into()));
        let mut out = MAGIC.to_vec();
        out.extend(unknown.encode_to_vec());
        out
    }

    fn msg(name: &str) -> DynamicMessage {
        DynamicMessage::new(message(name).unwrap())
    }

    #[test]
    fn objects_encode_to_the_envelope_and_decode_back_to_the_same_json() {
        let dep = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "team", "uid": "u-1", "resourceVersion": "42",
                "generation": 3, "creationTimestamp": "2026-12-02T06:00:00Z",
                "labels": {"app": "web"}, "annotations": {"deployment.kubernetes.io/revision": "2"},
                "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1",
                    "time": "2026-12-02T06:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx",
                        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
            "status": {"replicas": 2, "readyReplicas": 1, "conditions": [{"type": "Available",
                "status": "True", "lastTransitionTime": "2026-12-02T06:00:01Z", "reason": "MinimumReplicasAvailable"}]}
        });
        let bytes = encode(&dep).expect("apps/v1 Deployment has a schema");
        // Embedded Go structs are inline in JSON: a Secret reference, a volume's source, a probe's handler.
        let mut with_embedded = dep.clone();
        with_embedded["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "P",
            "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}]);
        with_embedded["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
            json!({"tcpSocket": {"port": 80}, "periodSeconds": 2});
        with_embedded["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "tls", "secret": {"secretName": "web-tls", "defaultMode": 288}}]);
        let back = decode(&encode(&with_embedded).unwrap()).unwrap();
        assert_eq!(back, with_embedded);
        assert!(
            !serde_json::to_string(&back)
                .unwrap()
                .contains("localObjectReference"),
            "no Go-embedded field shows by its message name"
        );
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(decode(&bytes).unwrap(), dep);
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "7", "continue": "abc"},
            "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}]});
        let back = decode(&encode(&list).unwrap()).unwrap();
        assert_eq!(back["metadata"], list["metadata"]);
        assert_eq!(back["items"][0]["data"], json!({"k": "v"}));
        assert!(encode(&json!({"apiVersion": "example.com/v1", "kind": "Widget"})).is_none());
    }

    #[test]
    fn the_vendored_schemas_compile() {
        for m in [
            "k8s.io.api.core.v1.Namespace",
            "k8s.io.api.core.v1.Pod",
            "k8s.io.api.apps.v1.Deployment",
            "k8s.io.api.batch.v1.Job",
            "k8s.io.api.rbac.v1.Role",
        ] {
            assert!(message(m).is_ok(), "{m}");
        }
    }

    #[test]
    fn an_enveloped_configmap_decodes_to_its_json_with_go_zero_values_left_out() {
        let mut meta = msg("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta");
        meta.set_field_by_name("name", Pb::String("settings".into()));
        // Go writes every non-pointer field, empty or not.
        meta.set_field_by_name("namespace", Pb::String(String::new()));
        meta.set_field_by_name("generation", Pb::I64(0));
        meta.set_field_by_name(
            "creationTimestamp",
            Pb::Message(msg("k8s.io.apimachinery.pkg.apis.meta.v1.Time")),
        );
        let mut cm = msg("k8s.io.api.core.v1.ConfigMap");
        cm.set_field_by_name("metadata", Pb::Message(meta));
        let mut data = std::collections::HashMap::new();
        data.insert(MapKey::String("mode".into()), Pb::String("fast".into()));
        cm.set_field_by_name("data", Pb::Map(data));
        let json = decode(&envelope("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(
            json,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings"}, "data": {"mode": "fast"}})
        );
    }

    #[test]
    fn special_types_take_their_json_forms() {
        let mut port = msg("k8s.io.api.core.v1.ServicePort");
        let mut target = msg("k8s.io.apimachinery.pkg.util.intstr.IntOrString");
        target.set_field_by_name("type", Pb::I64(1));
        target.set_field_by_name("strVal", Pb::String("http".into()));
        port.set_field_by_name("targetPort", Pb::Message(target));
        port.set_field_by_name("port", Pb::I32(80));
        assert_eq!(to_json(&port), json!({"port": 80, "targetPort": "http"}));

        let mut req = msg("k8s.io.api.core.v1.ResourceRequirements");
        let mut q = msg("k8s.io.apimachinery.pkg.api.resource.Quantity");
        q.set_field_by_name("string", Pb::String("1Gi".into()));
        let mut limits = std::collections::HashMap::new();
        limits.insert(MapKey::String("memory".into()), Pb::Message(q));
        req.set_field_by_name("limits", Pb::Map(limits));
        assert_eq!(to_json(&req), json!({"limits": {"memory": "1Gi"}}));

        let mut t = msg("k8s.io.apimachinery.pkg.apis.meta.v1.Time");
        t.set_field_by_name("seconds", Pb::I64(1_700_000_000));
        assert_eq!(to_json(&t), json!("2023-11-14T22:13:20Z"));

        let mut secret = msg("k8s.io.api.core.v1.Secret");
        let mut data = std::collections::HashMap::new();
        data.insert(
            MapKey::String("password".into()),
            Pb::Bytes(b"s3cret".to_vec().into()),
        );
        secret.set_field_by_name("data", Pb::Map(data));
        assert_eq!(to_json(&secret), json!({"data": {"password": "czNjcmV0"}}));

        // A replica count of 0 is a value, not "unset"; a non-pointer false is "unset".
        let mut spec = msg("k8s.io.api.apps.v1.DeploymentSpec");
        spec.set_field_by_name("replicas", Pb::I32(0));
        spec.set_field_by_name("paused", Pb::Bool(false));
        assert_eq!(to_json(&spec), json!({"replicas": 0}));
        let mut pod = msg("k8s.io.api.core.v1.PodSpec");
        pod.set_field_by_name("hostNetwork", Pb::Bool(false));
        pod.set_field_by_name("automountServiceAccountToken", Pb::Bool(false));
        assert_eq!(
            to_json(&pod),
            json!({"automountServiceAccountToken": false})
        );
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
    }

    #[test]
    fn bad_envelopes_are_refused_with_the_reason() {
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\xff\xff").unwrap_err().code, 400);
        let cm = msg("k8s.io.api.core.v1.ConfigMap");
        let e = decode(&envelope("example.com/v1", "Widget", &cm)).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(
            e.message
                .contains("no protobuf schema for example.com/v1 Widget"),
            "{}",
            e.message
        );
    }
}
