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
    let (ok, msg) = if needs_label(def) {
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
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&def.kind, &def.group, name, &causes))
    }
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
