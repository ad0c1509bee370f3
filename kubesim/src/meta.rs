//! Small accessors for `metadata` fields of untyped objects, and the apiserver's time formats.

use serde_json::{Map, Value, json};

/// `metadata.<field>` as a string, or "".
pub(crate) fn str_field<'a>(o: &'a Value, field: &str) -> &'a str {
    o.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(crate) fn name(o: &Value) -> &str {
    str_field(o, "name")
}

pub(crate) fn namespace(o: &Value) -> &str {
    str_field(o, "namespace")
}

pub(crate) fn uid(o: &Value) -> &str {
    str_field(o, "uid")
}

pub(crate) fn is_deleting(o: &Value) -> bool {
    !str_field(o, "deletionTimestamp").is_empty()
}

/// The `metadata` map, created when missing or not an object.
pub(crate) fn metadata_mut(o: &mut Value) -> &mut Map<String, Value> {
    if !o.is_object() {
        *o = json!({});
    }
    let m = o.as_object_mut().expect("object");
    if !m.get("metadata").map(Value::is_object).unwrap_or(false) {
        m.insert("metadata".into(), json!({}));
    }
    m.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("metadata object")
}

pub(crate) fn finalizers(o: &Value) -> Vec<String> {
    o.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn set_finalizers(o: &mut Value, f: &[String]) {
    let md = metadata_mut(o);
    if f.is_empty() {
        md.remove("finalizers");
    } else {
        md.insert("finalizers".into(), json!(f));
    }
}

/// `(uid, blockOwnerDeletion)` for each owner reference.
pub(crate) fn owner_uids(o: &Value) -> Vec<(String, bool)> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let uid = r.get("uid").and_then(Value::as_str)?;
                    let block = r
                        .get("blockOwnerDeletion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    Some((uid.to_string(), block))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 in whole seconds with a `Z`, as `metav1.Time` serializes.
pub(crate) fn now() -> String {
    format_time(jiff::Timestamp::now())
}

pub(crate) fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Everything but metadata, status and type information: what a change to bumps `generation`.
pub(crate) fn spec_part_eq(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(a) == strip(b)
}

/// A random lowercase suffix from upstream's alphabet (no vowels, no look-alike digits).
pub(crate) fn random_suffix(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
