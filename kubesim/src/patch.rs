//! The three non-apply PATCH flavours the apiserver accepts: JSON merge patch
//! (RFC 7386, `application/merge-patch+json`), Kubernetes strategic merge
//! patch (`application/strategic-merge-patch+json`) and JSON patch
//! (RFC 6902, `application/json-patch+json`).
//!
//! This module owns only the document transformation; the caller owns what
//! happens around it (status/spec separation, managedFields, validation).

use std::fmt;

use serde_json::{Map, Value};

use crate::listmeta::{self, ListKind};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatchError {
    /// 422: the patch is well formed but cannot be applied to this object
    /// (missing path, index out of range, failed `test`).
    Unprocessable(String),
    /// 400: the patch document itself is malformed.
    BadRequest(String),
}

impl PatchError {
    /// The human-readable reason, without the HTTP classification.
    pub(crate) fn message(&self) -> &str {
        match self {
            PatchError::Unprocessable(m) | PatchError::BadRequest(m) => m,
        }
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for PatchError {}

fn bad_request(msg: impl Into<String>) -> PatchError {
    PatchError::BadRequest(msg.into())
}

fn unprocessable(msg: impl Into<String>) -> PatchError {
    PatchError::Unprocessable(msg.into())
}

// ---------------------------------------------------------------------------
// JSON merge patch
// ---------------------------------------------------------------------------

/// Applies an RFC 7386 JSON merge patch: objects merge recursively, `null`
/// deletes a field, and any non-object patch value replaces the target.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Strategic merge patch
// ---------------------------------------------------------------------------

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a Kubernetes strategic merge patch.
///
/// Like a merge patch, except that lists classified by
/// [`listmeta::list_kind`] as associative merge item by item, set lists
/// merge as unions, and the `$patch`, `$retainKeys`, `$setElementOrder/…`
/// and `$deleteFromPrimitiveList/…` directives are honoured (and never
/// stored in the object).
pub(crate) fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(bad_request("a strategic merge patch must be a JSON object"));
    };
    smp_object(target, patch, &mut Vec::new())
}

fn kind_at(path: &[String]) -> ListKind {
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    listmeta::list_kind(&refs)
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// `{"$patch": "replace"}` on its own, the marker that replaces a whole list.
fn is_list_replace_marker(item: &Value) -> bool {
    item.as_object().is_some_and(|m| {
        m.len() == 1 && m.get(DIRECTIVE).and_then(Value::as_str) == Some("replace")
    })
}

fn is_map_delete(value: &Value) -> bool {
    value.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

fn string_list<'a>(value: &'a Value, what: &str) -> Result<&'a [Value], PatchError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| bad_request(format!("{what} must be a list, got {value}")))
}

fn smp_object(
    target: &mut Value,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    match patch.get(DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            let mut rest = patch.clone();
            rest.remove(DIRECTIVE);
            // Run the remainder through the merge so nested directives and
            // nulls are interpreted rather than stored verbatim.
            let mut fresh = Value::Object(Map::new());
            smp_object(&mut fresh, &rest, path)?;
            *target = fresh;
            return Ok(());
        }
        Some(Value::String(d)) if d == "delete" => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some(other) => {
            return Err(bad_request(format!("unknown patch type: {other} in map")));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else {
        return Ok(());
    };

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keep = string_list(retain, RETAIN_KEYS)?;
        if keep.iter().any(|k| !k.is_string()) {
            return Err(bad_request(format!("{RETAIN_KEYS} must list strings")));
        }
        fields.retain(|k, _| keep.iter().any(|w| w.as_str() == Some(k.as_str())));
    }

    // The server order of each list that has an ordering directive, captured
    // before the merge changes it.
    let mut server_orders: Vec<(&str, &[Value], Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let doomed = string_list(value, key)?;
            if let Some(Value::Array(list)) = fields.get_mut(field) {
                list.retain(|v| !doomed.iter().any(|d| listmeta::values_equal(v, d)));
            }
        } else if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let order = string_list(value, key)?;
            let original = match fields.get(field) {
                Some(Value::Array(list)) => list.clone(),
                _ => Vec::new(),
            };
            server_orders.push((field, order, original));
        }
    }

    for (key, value) in patch {
        if is_directive_key(key) {
            continue;
        }
        if value.is_null() || is_map_delete(value) {
            fields.remove(key);
            continue;
        }
        path.push(key.clone());
        let slot = fields.entry(key.clone()).or_insert(Value::Null);
        let merged = smp_value(slot, value, path);
        path.pop();
        merged?;
    }

    for (field, order, original) in server_orders {
        path.push(field.to_string());
        let kind = kind_at(path);
        path.pop();
        if let Some(Value::Array(list)) = fields.get_mut(field) {
            reorder(list, order, &original, kind);
        }
    }
    Ok(())
}

fn smp_value(slot: &mut Value, patch: &Value, path: &mut Vec<String>) -> Result<(), PatchError> {
    match patch {
        Value::Object(map) => smp_object(slot, map, path),
        Value::Array(items) => smp_list(slot, items, path),
        scalar => {
            *slot = scalar.clone();
            Ok(())
        }
    }
}

fn smp_list(slot: &mut Value, items: &[Value], path: &mut Vec<String>) -> Result<(), PatchError> {
    let replace = items.iter().any(is_list_replace_marker);
    let items = items.iter().filter(|i| !is_list_replace_marker(i));
    let current = match slot.take() {
        Value::Array(list) if !replace => list,
        _ => Vec::new(),
    };
    let merged = match kind_at(path) {
        ListKind::Atomic => items.cloned().collect(),
        ListKind::Set => {
            let mut list = current;
            for item in items {
                if item.get(DIRECTIVE).is_some() {
                    continue;
                }
                if !list.iter().any(|v| listmeta::values_equal(v, item)) {
                    list.push(item.clone());
                }
            }
            list
        }
        ListKind::Map(keys) => {
            let mut list = current;
            for item in items {
                merge_keyed_item(&mut list, item, keys, path)?;
            }
            list
        }
    };
    *slot = Value::Array(merged);
    Ok(())
}

fn merge_keyed_item(
    list: &mut Vec<Value>,
    item: &Value,
    keys: &[&str],
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    let Value::Object(fields) = item else {
        return Err(bad_request(format!(
            "list {} is keyed by {keys:?} but the patch has the item {item}",
            path.join(".")
        )));
    };
    let key = listmeta::item_key(item, keys).ok_or_else(|| {
        bad_request(format!(
            "map: {item} does not contain declared merge key: {}",
            keys.join(",")
        ))
    })?;
    let existing = list.iter().position(|v| listmeta::item_matches(v, &key));
    match fields.get(DIRECTIVE).and_then(Value::as_str) {
        Some("delete") => {
            list.retain(|v| !listmeta::item_matches(v, &key));
            Ok(())
        }
        // "replace" on an item is handled by `smp_object`, which swaps the
        // matched item wholesale.
        None | Some("replace") | Some("merge") => {
            match existing {
                Some(i) => smp_object(&mut list[i], fields, path)?,
                None => {
                    let mut fresh = Value::Object(Map::new());
                    smp_object(&mut fresh, fields, path)?;
                    list.push(fresh);
                }
            }
            Ok(())
        }
        Some(other) => Err(bad_request(format!("unknown patch type: {other} in list"))),
    }
}

/// Applies `$setElementOrder`: items named in `order` take that relative
/// order, items only the server knows keep theirs, and the two runs are
/// interleaved by their positions in the server's original list (the same
/// best-effort merge the apiserver performs).
fn reorder(list: &mut Vec<Value>, order: &[Value], original: &[Value], kind: ListKind) {
    let identity = |v: &Value| -> Option<Value> {
        match kind {
            ListKind::Map(keys) => listmeta::item_key(v, keys).map(Value::Object),
            ListKind::Set | ListKind::Atomic => Some(v.clone()),
        }
    };
    let position = |haystack: &[Value], v: &Value| -> Option<usize> {
        let id = identity(v)?;
        haystack
            .iter()
            .position(|h| identity(h).is_some_and(|hid| listmeta::values_equal(&hid, &id)))
    };
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) = std::mem::take(list)
        .into_iter()
        .partition(|v| position(order, v).is_some());
    named.sort_by_key(|v| position(order, v));
    server_only.sort_by_key(|v| position(original, v).unwrap_or(usize::MAX));

    let mut named = named.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let take_named = match (named.peek(), server_only.peek()) {
            (Some(a), Some(b)) => matches!(
                (position(original, a), position(original, b)),
                (Some(i), Some(j)) if i < j
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_named {
            named.next()
        } else {
            server_only.next()
        };
        list.extend(next);
    }
}

// ---------------------------------------------------------------------------
// JSON patch
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

struct Op<'a> {
    kind: OpKind,
    path: &'a str,
    from: Option<&'a str>,
    value: Option<&'a Value>,
}

/// Applies an RFC 6902 JSON patch.
///
/// The operations run in order against a copy; the target is only replaced
/// when every operation succeeded, so a failing `test` leaves it untouched.
/// A `test` for `null` succeeds when the path is absent, which kube-runtime's
/// finalizer helper relies on.
pub(crate) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let ops = parse_ops(ops)?;
    let mut doc = target.clone();
    for op in &ops {
        apply_op(&mut doc, op)?;
    }
    *target = doc;
    Ok(())
}

fn parse_ops(ops: &Value) -> Result<Vec<Op<'_>>, PatchError> {
    let Value::Array(list) = ops else {
        return Err(bad_request("a JSON patch must be a list of operations"));
    };
    list.iter()
        .enumerate()
        .map(|(i, raw)| {
            let Value::Object(fields) = raw else {
                return Err(bad_request(format!("operation {i} is not an object")));
            };
            let text = |name: &str| -> Result<Option<&str>, PatchError> {
                match fields.get(name) {
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.as_str())),
                    Some(_) => Err(bad_request(format!(
                        "operation {i}: \"{name}\" must be a string"
                    ))),
                }
            };
            let op =
                text("op")?.ok_or_else(|| bad_request(format!("operation {i} has no \"op\"")))?;
            let kind = match op {
                "add" => OpKind::Add,
                "remove" => OpKind::Remove,
                "replace" => OpKind::Replace,
                "move" => OpKind::Move,
                "copy" => OpKind::Copy,
                "test" => OpKind::Test,
                other => {
                    return Err(bad_request(format!(
                        "operation {i}: unknown op \"{other}\""
                    )));
                }
            };
            let path = text("path")?
                .ok_or_else(|| bad_request(format!("operation {i} ({op}) has no \"path\"")))?;
            let from = text("from")?;
            let value = fields.get("value");
            let needs_value = matches!(kind, OpKind::Add | OpKind::Replace | OpKind::Test);
            if needs_value && value.is_none() {
                return Err(bad_request(format!(
                    "operation {i} ({op}) has no \"value\""
                )));
            }
            if matches!(kind, OpKind::Move | OpKind::Copy) && from.is_none() {
                return Err(bad_request(format!("operation {i} ({op}) has no \"from\"")));
            }
            Ok(Op {
                kind,
                path,
                from,
                value,
            })
        })
        .collect()
}

fn apply_op(doc: &mut Value, op: &Op<'_>) -> Result<(), PatchError> {
    let tokens = parse_pointer(op.path)?;
    let value = || op.value.cloned().unwrap_or(Value::Null);
    match op.kind {
        OpKind::Add => add(doc, &tokens, value(), op.path),
        OpKind::Remove => remove(doc, &tokens, op.path).map(drop),
        OpKind::Replace => {
            let slot = resolve_mut(doc, &tokens).ok_or_else(|| missing("replace", op.path))?;
            *slot = value();
            Ok(())
        }
        OpKind::Move => {
            let from = op.from.unwrap_or_default();
            let from_tokens = parse_pointer(from)?;
            if from_tokens == tokens {
                return resolve(doc, &tokens)
                    .map(drop)
                    .ok_or_else(|| missing("move", from));
            }
            if tokens.starts_with(&from_tokens) {
                return Err(unprocessable(format!(
                    "move operation cannot move {from} into its own child {}",
                    op.path
                )));
            }
            let moved = remove(doc, &from_tokens, from)?;
            add(doc, &tokens, moved, op.path)
        }
        OpKind::Copy => {
            let from = op.from.unwrap_or_default();
            let copied = resolve(doc, &parse_pointer(from)?)
                .cloned()
                .ok_or_else(|| missing("copy", from))?;
            add(doc, &tokens, copied, op.path)
        }
        OpKind::Test => test(doc, &tokens, op.value.unwrap_or(&Value::Null), op.path),
    }
}

fn missing(op: &str, path: &str) -> PatchError {
    unprocessable(format!(
        "{op} operation does not apply: doc is missing path: {path}"
    ))
}

/// Splits a JSON pointer into unescaped reference tokens (RFC 6901).
fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(unprocessable(format!(
            "invalid JSON pointer {pointer:?}: must start with '/'"
        )));
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => {
                        return Err(unprocessable(format!(
                            "invalid JSON pointer {pointer:?}: bad '~' escape"
                        )));
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

/// Parses an array reference token. `-` (one past the end) is only valid
/// where the caller allows appending.
fn array_index(token: &str, len: usize, allow_end: bool) -> Option<usize> {
    if token == "-" {
        return allow_end.then_some(len);
    }
    let canonical = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if !canonical {
        return None;
    }
    let index: usize = token.parse().ok()?;
    (index < len || (allow_end && index == len)).then_some(index)
}

fn resolve<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |node, token| match node {
        Value::Object(m) => m.get(token),
        Value::Array(a) => a.get(array_index(token, a.len(), false)?),
        _ => None,
    })
}

fn resolve_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |node, token| match node {
        Value::Object(m) => m.get_mut(token),
        Value::Array(a) => {
            let i = array_index(token, a.len(), false)?;
            a.get_mut(i)
        }
        _ => None,
    })
}

fn add(doc: &mut Value, tokens: &[String], value: Value, path: &str) -> Result<(), PatchError> {
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match resolve_mut(doc, parent).ok_or_else(|| missing("add", path))? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true).ok_or_else(|| {
                unprocessable(format!(
                    "add operation does not apply: index {last} out of bounds at {path}"
                ))
            })?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing("add", path)),
    }
}

fn remove(doc: &mut Value, tokens: &[String], path: &str) -> Result<Value, PatchError> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err(unprocessable(
            "remove operation cannot remove the whole document",
        ));
    };
    match resolve_mut(doc, parent) {
        Some(Value::Object(m)) => m.remove(last),
        Some(Value::Array(a)) => array_index(last, a.len(), false).map(|i| a.remove(i)),
        _ => None,
    }
    .ok_or_else(|| missing("remove", path))
}

fn test(doc: &Value, tokens: &[String], expected: &Value, path: &str) -> Result<(), PatchError> {
    let found = match tokens.split_last() {
        None => Some(doc),
        Some((last, parent)) => match resolve(doc, parent) {
            Some(Value::Object(m)) => m.get(last),
            Some(Value::Array(a)) => array_index(last, a.len(), false).and_then(|i| a.get(i)),
            Some(_) => None,
            None => return Err(missing("test", path)),
        },
    };
    let passed = match found {
        // An absent member counts as null, matching the apiserver's
        // json-patch library; kube-runtime's finalizer helper depends on it.
        None => expected.is_null(),
        Some(actual) => listmeta::values_equal(actual, expected),
    };
    if passed {
        Ok(())
    } else {
        Err(unprocessable(format!("testing value {path} failed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut target: Value, patch: Value) -> Value {
        strategic_merge_patch(&mut target, &patch).expect("strategic merge patch");
        target
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut t,
            &json!({"a": "z", "c": {"f": null, "n": {"x": null, "y": 1}}, "l": [3]}),
        );
        assert_eq!(
            t,
            json!({"a": "z", "c": {"d": "e", "n": {"y": 1}}, "l": [3]})
        );
        merge_patch(&mut t, &json!(["whole"]));
        assert_eq!(t, json!(["whole"]));
        let mut s = json!("scalar");
        merge_patch(&mut s, &json!({"k": 1}));
        assert_eq!(s, json!({"k": 1}));
    }

    #[test]
    fn smp_merges_containers_by_name() {
        let live = pod(json!([
            {"name": "a", "image": "a:1", "args": ["x", "y"]},
            {"name": "b", "image": "b:1"}
        ]));
        let out = smp(
            live,
            json!({"spec": {"containers": [
                {"name": "b", "image": "b:2"},
                {"name": "c", "image": "c:1", "junk": null},
                {"name": "a", "args": ["z"]}
            ]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "a", "image": "a:1", "args": ["z"]},
                {"name": "b", "image": "b:2"},
                {"name": "c", "image": "c:1"}
            ])
        );
    }

    #[test]
    fn smp_delete_directive_removes_item() {
        let live = pod(json!([{"name": "a"}, {"name": "b"}]));
        let out = smp(
            live,
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn smp_env_merges_by_name() {
        let live = pod(json!([{"name": "a", "env": [
            {"name": "X", "value": "1"}, {"name": "Y", "value": "2"}
        ]}]));
        let out = smp(
            live,
            json!({"spec": {"containers": [{"name": "a", "env": [
                {"name": "Y", "value": "3"}, {"name": "Z", "value": "4"},
                {"name": "X", "$patch": "delete"}
            ]}]}}),
        );
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}])
        );
    }

    #[test]
    fn smp_service_ports_merge_by_port_with_default_protocol() {
        let live = json!({"spec": {"ports": [
            {"port": 80, "protocol": "TCP", "targetPort": 8080},
            {"port": 53, "protocol": "UDP"}
        ]}});
        let out = smp(
            live,
            json!({"spec": {"ports": [
                {"port": 80, "targetPort": 9090},
                {"port": 53, "name": "dns-tcp"}
            ]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([
                {"port": 80, "protocol": "TCP", "targetPort": 9090},
                {"port": 53, "protocol": "UDP"},
                {"port": 53, "name": "dns-tcp"}
            ])
        );
    }

    #[test]
    fn smp_replace_directives() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
                          "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let out = smp(
            live,
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}},
                   "spec": {"containers": [{"$patch": "replace"}, {"name": "z"}]}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "z"}]));
    }

    #[test]
    fn smp_sets_atomic_lists_and_nulls() {
        let live = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}},
                          "spec": {"tolerations": [{"key": "k1"}, {"key": "k2"}]}});
        let out = smp(
            live,
            json!({"metadata": {"finalizers": ["c", "a"], "labels": {"x": null}},
                   "spec": {"tolerations": [{"key": "k3"}]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "k3"}]));
    }

    #[test]
    fn smp_primitive_delete_retain_keys_and_order() {
        let live = json!({
            "metadata": {"finalizers": ["a", "b", "c"]},
            "spec": {
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]
            }
        });
        let out = smp(
            live,
            json!({
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]},
                "spec": {
                    "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                    "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                    "containers": [{"name": "c", "image": "c:2"}]
                }
            }),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "image": "c:2"}, {"name": "a"}, {"name": "b"}])
        );
        let text = serde_json::to_string(&out).unwrap();
        assert!(!text.contains('$'), "directive leaked: {text}");
    }

    #[test]
    fn smp_rejects_malformed_patches() {
        let mut t = pod(json!([]));
        assert!(matches!(
            strategic_merge_patch(&mut t, &json!([1])),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            strategic_merge_patch(&mut t, &json!({"spec": {"containers": [{"image": "x"}]}})),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            strategic_merge_patch(&mut t, &json!({"spec": {"$patch": "explode"}})),
            Err(PatchError::BadRequest(_))
        ));
    }

    #[test]
    fn json_patch_basic_ops() {
        let mut doc = json!({"a": {"b~c": 1, "d/e": [1, 2]}, "x": "y"});
        json_patch(
            &mut doc,
            &json!([
                {"op": "add", "path": "/a/d~1e/1", "value": 9},
                {"op": "add", "path": "/a/d~1e/-", "value": 3},
                {"op": "replace", "path": "/a/b~0c", "value": 2},
                {"op": "copy", "from": "/x", "path": "/z"},
                {"op": "move", "from": "/x", "path": "/w"},
                {"op": "remove", "path": "/a/d~1e/0"},
                {"op": "test", "path": "/a/d~1e", "value": [9.0, 2, 3]}
            ]),
        )
        .expect("patch applies");
        assert_eq!(
            doc,
            json!({"a": {"b~c": 2, "d/e": [9, 2, 3]}, "z": "y", "w": "y"})
        );
    }

    #[test]
    fn json_patch_errors_leave_target_unchanged() {
        let original = json!({"a": [1, 2]});
        let cases = [
            json!([{"op": "add", "path": "/a/0", "value": 0},
                   {"op": "remove", "path": "/a/5"}]),
            json!([{"op": "add", "path": "/a/3", "value": 0}]),
            json!([{"op": "add", "path": "/a/01", "value": 0}]),
            json!([{"op": "replace", "path": "/nope", "value": 0}]),
            json!([{"op": "add", "path": "/no/such", "value": 0}]),
            json!([{"op": "move", "from": "/a", "path": "/a/0"}]),
            json!([{"op": "add", "path": "a", "value": 0}]),
        ];
        for ops in cases {
            let mut doc = original.clone();
            let err = json_patch(&mut doc, &ops).expect_err("must fail");
            assert!(
                matches!(err, PatchError::Unprocessable(_)),
                "{ops}: {err:?}"
            );
            assert_eq!(doc, original, "{ops}");
        }
    }

    #[test]
    fn json_patch_malformed_is_bad_request() {
        for ops in [
            json!({"op": "add"}),
            json!([{"path": "/a", "value": 1}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "value": 1}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "move", "path": "/a"}]),
            json!(["add"]),
        ] {
            let mut doc = json!({});
            assert!(
                matches!(json_patch(&mut doc, &ops), Err(PatchError::BadRequest(_))),
                "{ops}"
            );
        }
    }

    /// The sequences kube-runtime's `finalizer()` helper sends.
    #[test]
    fn json_patch_kube_runtime_finalizer_sequences() {
        let mut obj = json!({"metadata": {"name": "x"}});
        // First finalizer: the list is absent, so `test null` must pass.
        json_patch(
            &mut obj,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["a/f"]}
            ]),
        )
        .expect("add first finalizer");
        assert_eq!(obj["metadata"]["finalizers"], json!(["a/f"]));

        // Append when a list exists: test the whole list, then add at `-`.
        json_patch(
            &mut obj,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["a/f"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "b/f"}
            ]),
        )
        .expect("append finalizer");
        assert_eq!(obj["metadata"]["finalizers"], json!(["a/f", "b/f"]));

        // A stale test must be rejected and change nothing.
        let before = obj.clone();
        let err = json_patch(
            &mut obj,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["c/f"]}
            ]),
        )
        .expect_err("stale test");
        assert_eq!(
            err,
            PatchError::Unprocessable("testing value /metadata/finalizers failed".into())
        );
        assert_eq!(obj, before);

        // Removal: test the entry at its index, then remove it.
        json_patch(
            &mut obj,
            &json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "a/f"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ]),
        )
        .expect("remove finalizer");
        assert_eq!(obj["metadata"]["finalizers"], json!(["b/f"]));

        let err = json_patch(
            &mut obj,
            &json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "a/f"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ]),
        )
        .expect_err("index moved");
        assert_eq!(err.message(), "testing value /metadata/finalizers/0 failed");
        assert_eq!(obj["metadata"]["finalizers"], json!(["b/f"]));

        // A present null also satisfies `test null`.
        let mut nulled = json!({"metadata": {"finalizers": null}});
        json_patch(
            &mut nulled,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]),
        )
        .expect("null equals null");
    }
}
