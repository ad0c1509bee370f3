//! List semantics shared by strategic merge patch and server-side apply.
//!
//! The real apiserver reads these from the OpenAPI schema (`patchMergeKey`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`). kubesim has no
//! schema, so this module owns a small table keyed by field name (plus a
//! little context) and the helpers that identify list items by key.

use serde_json::{Map, Number, Value};

/// How a JSON array at a given place in an object is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// The list is a single value: a patch or apply replaces it wholesale.
    Atomic,
    /// A list of distinct scalars merged as a set union (e.g. finalizers).
    Set,
    /// An associative list whose items are identified by these key fields.
    Map(&'static [&'static str]),
}

const NAME: &[&str] = &["name"];
const CONTAINER_PORT: &[&str] = &["containerPort", "protocol"];
const SERVICE_PORT: &[&str] = &["port", "protocol"];

/// Container-like lists; a `ports` list directly inside one of these holds
/// container ports rather than service ports.
const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// Classifies the list found at `path`.
///
/// `path` is the chain of object field names from the object root to the
/// list (array indices omitted), e.g. `["spec","template","spec","containers"]`.
pub(crate) fn list_kind(path: &[&str]) -> ListKind {
    let Some((&last, parents)) = path.split_last() else {
        return ListKind::Atomic;
    };
    match last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => ListKind::Map(NAME),
        "volumeMounts" => ListKind::Map(&["mountPath"]),
        "volumeDevices" => ListKind::Map(&["devicePath"]),
        "conditions" => ListKind::Map(&["type"]),
        "ownerReferences" => ListKind::Map(&["uid"]),
        "hostAliases" => ListKind::Map(&["ip"]),
        "topologySpreadConstraints" => ListKind::Map(&["topologyKey", "whenUnsatisfiable"]),
        "finalizers" => ListKind::Set,
        "ports" => match parents.last() {
            Some(parent) if CONTAINER_LISTS.contains(parent) => ListKind::Map(CONTAINER_PORT),
            Some(&"spec") if !parents.iter().any(|p| CONTAINER_LISTS.contains(p)) => {
                ListKind::Map(SERVICE_PORT)
            }
            _ => ListKind::Atomic,
        },
        _ => ListKind::Atomic,
    }
}

/// Value of key field `field` in a list item, applying the server-side
/// default when the client left it out.
///
/// The real apiserver defaults `protocol` before merging, so an item written
/// without it must still match one that spells out `"TCP"`.
pub(crate) fn key_value(item: &Value, field: &str) -> Option<Value> {
    match item.get(field) {
        Some(Value::Null) | None if field == "protocol" => Some(Value::String("TCP".into())),
        Some(Value::Null) | None => None,
        Some(v) => Some(v.clone()),
    }
}

/// The identity of an associative-list item: its key fields (defaults
/// applied), as an object with sorted keys. `None` when the item is not an
/// object or lacks a key that has no default.
pub(crate) fn item_key(item: &Value, keys: &[&str]) -> Option<Map<String, Value>> {
    if !item.is_object() {
        return None;
    }
    let mut sorted: Vec<&str> = keys.to_vec();
    // Inserting in sorted order keeps the encoding stable even if serde_json
    // is built with `preserve_order`.
    sorted.sort_unstable();
    let mut out = Map::new();
    for k in sorted {
        out.insert(k.to_string(), key_value(item, k)?);
    }
    Some(out)
}

/// Whether `item` carries exactly the identity `key` (as built by
/// [`item_key`], or parsed back from a `k:` field-path element).
pub(crate) fn item_matches(item: &Value, key: &Map<String, Value>) -> bool {
    item.is_object()
        && key.iter().all(|(field, want)| {
            key_value(item, field).is_some_and(|have| values_equal(&have, want))
        })
}

/// JSON equality as the apiserver sees it: numbers compare by value, so `1`
/// and `1.0` are equal (Go decodes both to the same number).
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn numbers_equal(x: &Number, y: &Number) -> bool {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (integer(x), integer(y)) {
        (Some(a), Some(b)) => a == b,
        // Exact float comparison is intended: this mirrors JSON value equality.
        _ => x.as_f64() == y.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_lists_are_maps_keyed_by_name() {
        for path in [
            &["spec", "template", "spec", "containers"][..],
            &["spec", "initContainers"],
            &["spec", "containers", "env"],
            &["spec", "volumes"],
            &["spec", "imagePullSecrets"],
        ] {
            assert_eq!(list_kind(path), ListKind::Map(&["name"]), "{path:?}");
        }
        assert_eq!(
            list_kind(&["spec", "containers", "volumeMounts"]),
            ListKind::Map(&["mountPath"])
        );
        assert_eq!(
            list_kind(&["status", "conditions"]),
            ListKind::Map(&["type"])
        );
        assert_eq!(
            list_kind(&["metadata", "ownerReferences"]),
            ListKind::Map(&["uid"])
        );
    }

    #[test]
    fn ports_depend_on_context() {
        assert_eq!(
            list_kind(&["spec", "template", "spec", "containers", "ports"]),
            ListKind::Map(&["containerPort", "protocol"])
        );
        assert_eq!(
            list_kind(&["spec", "ports"]),
            ListKind::Map(&["port", "protocol"])
        );
        assert_eq!(list_kind(&["subsets", "ports"]), ListKind::Atomic);
        assert_eq!(list_kind(&["ports"]), ListKind::Atomic);
    }

    #[test]
    fn finalizers_are_sets_and_the_rest_atomic() {
        assert_eq!(list_kind(&["metadata", "finalizers"]), ListKind::Set);
        for last in [
            "args",
            "command",
            "envFrom",
            "tolerations",
            "volumeClaimTemplates",
        ] {
            assert_eq!(list_kind(&["spec", last]), ListKind::Atomic, "{last}");
        }
        assert_eq!(list_kind(&[]), ListKind::Atomic);
    }

    #[test]
    fn item_key_applies_protocol_default_and_sorts() {
        let key = item_key(
            &json!({"containerPort": 80, "name": "http"}),
            CONTAINER_PORT,
        )
        .expect("key");
        assert_eq!(
            serde_json::to_string(&key).unwrap(),
            r#"{"containerPort":80,"protocol":"TCP"}"#
        );
        assert!(item_key(&json!({"image": "x"}), NAME).is_none());
        assert!(item_key(&json!("x"), NAME).is_none());
        assert!(item_matches(
            &json!({"containerPort": 80, "protocol": "TCP"}),
            &key
        ));
        assert!(!item_matches(
            &json!({"containerPort": 80, "protocol": "UDP"}),
            &key
        ));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(values_equal(&json!(1), &json!(1.0)));
        assert!(values_equal(
            &json!({"a": [1, -2]}),
            &json!({"a": [1.0, -2]})
        ));
        assert!(!values_equal(&json!(1), &json!(2)));
        assert!(!values_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!values_equal(&json!("1"), &json!(1)));
    }
}
