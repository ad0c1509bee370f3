//! Object validation that the apiserver performs for every kind: names, and the few per-kind rules clients trip on.

use serde_json::Value;

use crate::apierror::ApiError;
use crate::registry::ResourceDef;

/// RFC 1123 label: at most 63 lowercase alphanumerics or '-', starting and ending alphanumeric.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Kinds whose names must be DNS labels, not subdomains (upstream `ValidateNamespaceName`, `ValidateServiceName`).
fn needs_label(def: &ResourceDef) -> bool {
    def.group.is_empty() && matches!(def.plural.as_str(), "namespaces" | "services")
}

/// Validates `metadata.name` the way apimachinery's `ValidateObjectMeta` does.
pub(crate) fn validate_name(def: &ResourceDef, name: &str) -> Result<(), ApiError> {
    let (ok, msg) = if def.group == "rbac.authorization.k8s.io" {
        // RBAC names are path segments (`ValidateRBACName`), so `system:discovery` is a valid ClusterRole name.
        match name {
            "." | ".." => (false, "may not be '.' or '..'"),
            _ if name.contains('/') => (false, "may not contain '/'"),
            _ if name.contains('%') => (false, "may not contain '%'"),
            _ => (!name.is_empty(), "name or generateName is required"),
        }
    } else if needs_label(def) {
        (
            is_dns1123_label(name),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    } else {
        (
            is_dns1123_subdomain(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        &def.kind,
        &def.group,
        name,
        &[(
            "metadata.name".into(),
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": {msg}"),
        )],
    ))
}

/// Per-kind rules that real clients rely on being enforced.
pub(crate) fn validate_object(def: &ResourceDef, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut causes: Vec<(String, &'static str, String)> = vec![];
    if let Some(labels) = obj.pointer("/metadata/labels") {
        match labels.as_object() {
            Some(m) => {
                for (k, v) in m {
                    if !v.is_string() {
                        causes.push((
                            format!("metadata.labels.{k}"),
                            "FieldValueInvalid",
                            "Invalid value: label values must be strings".into(),
                        ));
                    } else if v.as_str().map(str::len).unwrap_or(0) > 63 {
                        causes.push((
                            "metadata.labels".into(),
                            "FieldValueInvalid",
                            format!(
                                "Invalid value: \"{}\": must be no more than 63 characters",
                                v.as_str().unwrap_or("")
                            ),
                        ));
                    }
                }
            }
            None if labels.is_null() => {}
            None => causes.push((
                "metadata.labels".into(),
                "FieldValueInvalid",
                "Invalid value: must be an object".into(),
            )),
        }
    }
    let core = def.group.is_empty();
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => {
            let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
            if containers.map(|c| c.is_empty()).unwrap_or(true) {
                causes.push((
                    "spec.containers".into(),
                    "FieldValueRequired",
                    "Required value".into(),
                ));
            }
            for (i, c) in containers.into_iter().flatten().enumerate() {
                if c.get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    causes.push((
                        format!("spec.containers[{i}].image"),
                        "FieldValueRequired",
                        "Required value".into(),
                    ));
                }
            }
        }
        ("apps", "statefulsets") | ("apps", "deployments") | ("apps", "replicasets") => {
            if obj.pointer("/spec/selector").is_none() {
                causes.push((
                    "spec.selector".into(),
                    "FieldValueRequired",
                    "Required value".into(),
                ));
            }
            if obj
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .map(|c| c.is_empty())
                .unwrap_or(true)
            {
                causes.push((
                    "spec.template.spec.containers".into(),
                    "FieldValueRequired",
                    "Required value".into(),
                ));
            }
            if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
                && r < 0
            {
                causes.push((
                    "spec.replicas".into(),
                    "FieldValueInvalid",
                    format!("Invalid value: {r}: must be greater than or equal to 0"),
                ));
            }
        }
        _ if core && def.plural == "secrets" => {
            if let Some(data) = obj.get("data").and_then(Value::as_object) {
                for (k, v) in data {
                    let ok = v
                        .as_str()
                        .map(|s| {
                            use base64::Engine;
                            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                        })
                        .unwrap_or(false);
                    if !ok {
                        causes.push((
                            format!("data[{k}]"),
                            "FieldValueInvalid",
                            "Invalid value: must be base64 encoded".into(),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    finish(def, name, causes)
}

/// A kind as upstream names it in messages: `StatefulSet.apps`, `Pod`.
pub(crate) fn qualified_kind(def: &ResourceDef) -> String {
    if def.group.is_empty() {
        def.kind.clone()
    } else {
        format!("{}.{}", def.kind, def.group)
    }
}

/// A value as upstream's `field.Invalid` prints it (JSON since Kubernetes 1.30).
fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(v) => v.to_string(),
    }
}

/// A value with what Kubernetes' semantic equality ignores taken out: explicit nulls and empty lists (Go
/// decodes both as an absent field, and `Semantic.DeepEqual` treats empty and nil slices as equal).
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null() && !v.as_array().is_some_and(|a| a.is_empty()))
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    let norm = |v: Option<&Value>| v.map(normalized).filter(|v| !v.is_null());
    norm(a) == norm(b)
}

/// `spec` with `keep` (the fields an update may change) taken out.
fn spec_without(obj: &Value, keep: &[&str]) -> Value {
    let mut spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(m) = spec.as_object_mut() {
        for k in keep {
            m.remove(*k);
        }
    }
    spec
}

type Cause = (String, &'static str, String);

fn immutable(causes: &mut Vec<Cause>, field: &str, new: Option<&Value>) {
    causes.push((
        field.into(),
        "FieldValueInvalid",
        format!("Invalid value: {}: field is immutable", shown(new)),
    ));
}

fn forbidden(causes: &mut Vec<Cause>, field: &str, message: &str) {
    causes.push((
        field.into(),
        "FieldValueForbidden",
        format!("Forbidden: {message}"),
    ));
}

/// Whether every `matchLabels` pair of a selector is among `labels` (the part of upstream's selector/template
/// check that matters: a selector that cannot select its own pods).
fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let Some(want) = selector.get("matchLabels").and_then(Value::as_object) else {
        return true;
    };
    let labels = labels.and_then(Value::as_object);
    want.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Metadata rules of every write, create or update: owner references as `ValidateOwnerReferences` has them.
pub(crate) fn validate_metadata(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let mut causes: Vec<Cause> = vec![];
    let refs = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    let mut first_controller: Option<String> = None;
    for r in refs.into_iter().flatten() {
        let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("");
        let version = field("apiVersion").rsplit('/').next().unwrap_or("");
        for (f, empty, what) in [
            ("apiVersion", version.is_empty(), "version"),
            ("kind", field("kind").is_empty(), "kind"),
            ("name", field("name").is_empty(), "name"),
            ("uid", field("uid").is_empty(), "uid"),
        ] {
            if empty {
                causes.push((
                    format!("metadata.ownerReferences.{f}"),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: {what} must not be empty",
                        shown(r.get(f).or(Some(&Value::String(String::new()))))
                    ),
                ));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let this = format!("{}/{}", field("kind"), field("name"));
            match &first_controller {
                Some(first) => causes.push((
                    "metadata.ownerReferences".into(),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}",
                        shown(obj.pointer("/metadata/ownerReferences"))
                    ),
                )),
                None => first_controller = Some(this),
            }
        }
    }
    finish(def, name, causes)
}

fn finish(def: &ResourceDef, name: &str, causes: Vec<Cause>) -> Result<(), ApiError> {
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &qualified_kind(def),
            &def.group,
            name,
            &causes,
        ))
    }
}

/// An update's body may leave `metadata.uid` out (it is kept) but not change it.
pub(crate) fn validate_uid(
    def: &ResourceDef,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let mut causes: Vec<Cause> = vec![];
    let uid = new
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !uid.is_empty() && Some(uid) != old.pointer("/metadata/uid").and_then(Value::as_str) {
        immutable(&mut causes, "metadata.uid", new.pointer("/metadata/uid"));
    }
    finish(def, name, causes)
}

/// What upstream refuses on an update and not on a create, compared on the defaulted objects: finalizers added to an object being deleted, and each kind's immutable spec fields.
pub(crate) fn validate_update(
    def: &ResourceDef,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let mut causes: Vec<Cause> = vec![];
    if crate::meta::is_deleting(old) {
        let before = crate::meta::finalizers(old);
        let added: Vec<String> = crate::meta::finalizers(new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            forbidden(
                &mut causes,
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            );
        }
    }
    let spec = |o: &Value, p: &str| o.pointer(p).cloned();
    match (def.group.as_str(), def.plural.as_str()) {
        ("apps", "statefulsets") => {
            let mutable = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            if !semantic_eq(
                Some(&spec_without(old, &mutable)),
                Some(&spec_without(new, &mutable)),
            ) {
                forbidden(
                    &mut causes,
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                );
            }
        }
        ("apps", "deployments") | ("apps", "replicasets") | ("apps", "daemonsets") => {
            let (o, n) = (spec(old, "/spec/selector"), spec(new, "/spec/selector"));
            if !semantic_eq(o.as_ref(), n.as_ref()) {
                immutable(&mut causes, "spec.selector", n.as_ref());
            }
        }
        ("batch", "jobs") => {
            for (f, p) in [
                ("spec.selector", "/spec/selector"),
                ("spec.template", "/spec/template"),
                ("spec.completions", "/spec/completions"),
            ] {
                let (o, n) = (spec(old, p), spec(new, p));
                if !semantic_eq(o.as_ref(), n.as_ref()) {
                    immutable(&mut causes, f, n.as_ref());
                }
            }
        }
        ("", "pods") => {
            // What a pod update may change: images, activeDeadlineSeconds, added tolerations, the grace
            // period, and (kubesim's kubelet binds pods by update, not through pods/binding) nodeName once.
            let strip = |o: &Value| {
                let mut s = o.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = s.as_object_mut() {
                    for k in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                        "nodeName",
                    ] {
                        m.remove(k);
                    }
                    for list in ["containers", "initContainers", "ephemeralContainers"] {
                        if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                            for c in cs {
                                if let Some(c) = c.as_object_mut() {
                                    c.remove("image");
                                }
                            }
                        }
                    }
                }
                s
            };
            let old_node = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let node_changed = !old_node.is_empty()
                && old.pointer("/spec/nodeName") != new.pointer("/spec/nodeName");
            let tolerations_removed = old
                .pointer("/spec/tolerations")
                .and_then(Value::as_array)
                .is_some_and(|before| {
                    let after = new.pointer("/spec/tolerations").and_then(Value::as_array);
                    before.iter().any(|t| !after.is_some_and(|a| a.contains(t)))
                });
            if node_changed
                || tolerations_removed
                || !semantic_eq(Some(&strip(old)), Some(&strip(new)))
            {
                forbidden(
                    &mut causes,
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                );
            }
        }
        ("", "configmaps") | ("", "secrets")
            if old.get("immutable").and_then(Value::as_bool) == Some(true) =>
        {
            let fields: &[&str] = if def.plural == "secrets" {
                &["data", "type"]
            } else {
                &["data", "binaryData"]
            };
            for f in fields {
                if !semantic_eq(old.get(*f), new.get(*f)) {
                    forbidden(&mut causes, f, "field is immutable when `immutable` is set");
                }
            }
            if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                forbidden(
                    &mut causes,
                    "immutable",
                    "field is immutable when `immutable` is set",
                );
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            let (o, n) = (spec(old, "/roleRef"), spec(new, "/roleRef"));
            if !semantic_eq(o.as_ref(), n.as_ref()) {
                causes.push((
                    "roleRef".into(),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: cannot change roleRef",
                        shown(n.as_ref())
                    ),
                ));
            }
        }
        ("", "persistentvolumeclaims") => {
            // Only the requested size and the attributes class may change once a claim exists; the volume
            // name may be set once, by the binder, and a missing class once (retroactive default class).
            let unset = |p: &str| {
                old.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
            };
            let unbound = unset("/spec/volumeName");
            let unclassed = unset("/spec/storageClassName");
            let strip = |o: &Value| {
                let mut s = o.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = s.as_object_mut() {
                    m.remove("volumeAttributesClassName");
                    if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut) {
                        r.remove("requests");
                    }
                    if unbound {
                        m.remove("volumeName");
                    }
                    if unclassed {
                        m.remove("storageClassName");
                    }
                }
                s
            };
            if !semantic_eq(Some(&strip(old)), Some(&strip(new))) {
                forbidden(
                    &mut causes,
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                );
            }
        }
        _ => {}
    }
    finish(def, name, causes)
}

/// What a workload's create and update both need: a selector that selects the pods of its own template.
pub(crate) fn validate_selector(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let workload = def.group == "apps"
        && matches!(
            def.plural.as_str(),
            "deployments" | "replicasets" | "statefulsets" | "daemonsets"
        );
    let Some(selector) = obj.pointer("/spec/selector").filter(|_| workload) else {
        return Ok(());
    };
    let mut causes: Vec<Cause> = vec![];
    let empty = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    let labels = obj.pointer("/spec/template/metadata/labels");
    if empty {
        causes.push((
            "spec.selector".into(),
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: empty selector is invalid for {}",
                shown(Some(selector)),
                def.kind.to_lowercase()
            ),
        ));
    } else if !selector_matches(selector, labels) {
        causes.push((
            "spec.template.metadata.labels".into(),
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                shown(labels)
            ),
        ));
    }
    finish(def, name, causes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns1123_label("pg-0"));
        assert!(!is_dns1123_label("Pg"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain("a_b"));
    }
}
