//! Server-side apply and `metadata.managedFields`.
//!
//! This module owns field ownership: which manager owns which field of an
//! object, the merge an apply performs, the conflicts it reports and the
//! pruning of fields an applier stopped sending. It follows the model of the
//! apiserver's structured-merge-diff updater, with the schema replaced by
//! [`crate::listmeta`].
//!
//! Field sets are kept as sets of paths whose elements are spelled exactly
//! as FieldsV1 spells them (`f:name`, `k:{"name":"c"}`, `v:"x"`), so
//! encoding and decoding managedFields is a change of shape only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::listmeta::{self, ListKind};

/// Which part of an object a write goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource: `status` is neither written nor owned.
    Main,
    /// The `/status` subresource: only `status` is written and owned.
    Status,
    /// The `/scale` subresource: a write of the main resource (its replicas), recorded with `subresource: scale`.
    Scale,
}

impl Scope {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Main => None,
            Scope::Status => Some("status"),
            Scope::Scale => Some("scale"),
        }
    }
}

/// One field that an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The manager that currently owns the field.
    pub manager: String,
    /// The apiVersion recorded in that manager's managedFields entry.
    pub api_version: String,
    /// The field, rendered like the apiserver does: `.spec.replicas`,
    /// `.spec.containers[name="c"].image`.
    pub field: String,
    /// The owning entry's operation, `Apply` or `Update`.
    pub operation: String,
    /// The owning entry's subresource, if it was written through one.
    pub subresource: Option<String>,
    /// The owning entry's timestamp.
    pub time: Option<String>,
}

impl Conflict {
    /// The manager as the apiserver names it in conflict messages: Update
    /// managers carry their apiVersion and time, Apply managers only a name.
    fn describe_manager(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
            if let Some(time) = &self.time {
                out.push_str(&format!(" at {time}"));
            }
        }
        out
    }
}

/// A rejected apply: the fields it would have taken from other managers.
/// Maps to 409 `Conflict` with one `FieldManagerConflict` cause per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApplyError {
    /// Every conflicting field, grouped by owning manager.
    pub conflicts: Vec<Conflict>,
}

impl ApplyError {
    /// The Status `message`, worded as the apiserver words it.
    pub(crate) fn message(&self) -> String {
        if let [only] = self.conflicts.as_slice() {
            return format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.describe_manager(),
                only.field
            );
        }
        let mut by_manager: BTreeMap<ManagerId<'_>, (String, Vec<&str>)> = BTreeMap::new();
        for c in &self.conflicts {
            by_manager
                .entry((&c.manager, &c.operation, c.subresource.as_deref()))
                .or_insert_with(|| (c.describe_manager(), Vec::new()))
                .1
                .push(&c.field);
        }
        let mut lines = Vec::new();
        for (described, fields) in by_manager.values() {
            lines.push(format!("conflicts with {described}:"));
            lines.extend(fields.iter().map(|f| format!("- {f}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.conflicts.len(),
            lines.join("\n")
        )
    }

    /// The Status `details.causes` list.
    pub(crate) fn causes(&self) -> Vec<Value> {
        self.conflicts
            .iter()
            .map(|c| {
                serde_json::json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", c.describe_manager()),
                    "field": c.field,
                })
            })
            .collect()
    }
}

/// (manager, operation, subresource): what tells managedFields entries apart.
type ManagerId<'a> = (&'a str, &'a str, Option<&'a str>);

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApplyError {}

/// A field path whose elements are FieldsV1 keys (`f:…`, `k:…`, `v:…`).
type FieldPath = Vec<String>;
/// A set of owned fields; members only, prefixes are implied.
type FieldSet = BTreeSet<FieldPath>;

/// Metadata that is identity or server bookkeeping, never owned by anyone.
const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

/// Server-side apply.
///
/// `live` is the current object (`None` = create). `applied` is the request
/// body (already parsed; must not contain `metadata.managedFields` — the
/// caller checks). Returns the new full object with
/// `metadata.managedFields` updated. Fields applied are set and owned by
/// `manager` (operation Apply); a field owned by another manager whose value
/// would change is a conflict unless `force` (then ownership moves); an
/// unchanged value becomes shared; fields this manager applied last time but
/// omits now are removed unless another manager owns them.
pub(crate) fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    scope: Scope,
    api_version: &str,
    now: &str,
) -> Result<Value, ApplyError> {
    let subresource = scope.subresource();
    let mut entries = live.map(stored_entries).unwrap_or_default();
    let base = match (live, scope) {
        (Some(obj), _) => without_managed_fields(obj),
        (None, Scope::Main | Scope::Scale) => Value::Object(Map::new()),
        // A status apply cannot create; keep the identity so the result is
        // at least a well-formed object.
        (None, Scope::Status) => in_scope_config(applied, Scope::Main),
    };
    let config = in_scope_config(applied, scope);

    let mut merged = base.clone();
    merge_config(&mut merged, &config, &mut Vec::new());

    let changes = compare(&flatten(&base, scope), &flatten(&merged, scope));
    let mine = find_entry(&entries, manager, APPLY, subresource);

    let conflicts: Vec<Conflict> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .flat_map(|(_, e)| {
            e.fields
                .intersection(&changes.changed)
                .map(move |path| e.conflict(path))
        })
        .collect();
    if !force && !conflicts.is_empty() {
        return Err(ApplyError { conflicts });
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != mine {
            e.fields
                .retain(|p| !changes.changed.contains(p) && !changes.removed.contains(p));
        }
    }

    let applied_fields: FieldSet = flatten(&config, scope).into_keys().collect();
    let (mine, previously_applied) = match mine {
        Some(i) => (i, std::mem::replace(&mut entries[i].fields, applied_fields)),
        None => {
            entries.push(Entry::new(manager, APPLY, subresource, applied_fields));
            (entries.len() - 1, FieldSet::new())
        }
    };

    let owned: FieldSet = entries
        .iter()
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    prune(&mut merged, &previously_applied, &owned);
    drop_config_nulls(&mut merged, &config, &mut Vec::new());

    // Like the apiserver, a no-op apply keeps the entry's timestamp.
    let entry = &mut entries[mine];
    if entry.time.is_none() || !listmeta::values_equal(&merged, &base) {
        entry.time = Some(now.to_string());
    }
    entry.api_version = Some(api_version.to_string());

    entries.retain(|e| !e.fields.is_empty());
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Records a non-apply write (create, PUT, merge/strategic/JSON patch) by
/// `manager` as an `Update`: fields that changed between `old` and `new`
/// become owned by `manager` and are taken from every other entry. Never
/// conflicts. Rewrites `new`'s `metadata.managedFields`, starting from the
/// entries `new` carries when they are a non-empty, well-formed list (a PUT
/// that sends them back) and from `old`'s otherwise.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: Scope,
    api_version: &str,
    now: &str,
) {
    let subresource = scope.subresource();
    let mut entries = match request_entries(new) {
        Some(entries) if !entries.is_empty() => entries,
        _ => old.map(stored_entries).unwrap_or_default(),
    };
    let empty = Value::Object(Map::new());
    let changes = compare(&flatten(old.unwrap_or(&empty), scope), &flatten(new, scope));
    let mine = find_entry(&entries, manager, UPDATE, subresource);

    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) == mine {
            e.fields.retain(|p| !changes.removed.contains(p));
        } else {
            e.fields
                .retain(|p| !changes.changed.contains(p) && !changes.removed.contains(p));
        }
    }
    if !changes.changed.is_empty() {
        // Only a write that actually took fields refreshes the entry, as
        // upstream does; a no-op PUT leaves the timestamp alone.
        let i = mine.unwrap_or_else(|| {
            entries.push(Entry::new(manager, UPDATE, subresource, FieldSet::new()));
            entries.len() - 1
        });
        let entry = &mut entries[i];
        entry.fields.extend(changes.changed);
        entry.api_version = Some(api_version.to_string());
        entry.time = Some(now.to_string());
    }

    entries.retain(|e| !e.fields.is_empty());
    write_entries(new, &entries);
}

// ---------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: Option<String>,
    time: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn new(manager: &str, operation: &str, subresource: Option<&str>, fields: FieldSet) -> Self {
        Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            subresource: subresource.map(str::to_string),
            api_version: None,
            time: None,
            fields,
        }
    }

    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn conflict(&self, path: &FieldPath) -> Conflict {
        Conflict {
            manager: self.manager.clone(),
            api_version: self.api_version.clone().unwrap_or_default(),
            field: render_path(path),
            operation: self.operation.clone(),
            subresource: self.subresource.clone(),
            time: self.time.clone(),
        }
    }

    fn parse(raw: &Value) -> Option<Entry> {
        let text = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_string);
        let operation = text("operation").filter(|op| op == APPLY || op == UPDATE)?;
        if text("fieldsType").is_some_and(|t| t != "FieldsV1") {
            return None;
        }
        let mut fields = FieldSet::new();
        match raw.get("fieldsV1") {
            Some(Value::Object(tree)) => decode_fields(tree, &mut Vec::new(), &mut fields),
            None | Some(Value::Null) => {}
            Some(_) => return None,
        }
        Some(Entry {
            manager: text("manager").unwrap_or_default(),
            operation,
            subresource: text("subresource").filter(|s| !s.is_empty()),
            api_version: text("apiVersion"),
            time: text("time"),
            fields,
        })
    }

    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("manager".into(), Value::String(self.manager.clone()));
        out.insert("operation".into(), Value::String(self.operation.clone()));
        if let Some(v) = &self.api_version {
            out.insert("apiVersion".into(), Value::String(v.clone()));
        }
        if let Some(t) = &self.time {
            out.insert("time".into(), Value::String(t.clone()));
        }
        out.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        out.insert("fieldsV1".into(), encode_fields(&self.fields));
        if let Some(s) = &self.subresource {
            out.insert("subresource".into(), Value::String(s.clone()));
        }
        Value::Object(out)
    }
}

fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

/// Entries stored on an object we wrote ourselves; anything unreadable is
/// dropped rather than failing the write.
fn stored_entries(obj: &Value) -> Vec<Entry> {
    managed_fields(obj)
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Entry::parse).collect())
        .unwrap_or_default()
}

/// Entries sent in a request body, only if every one of them is valid.
fn request_entries(obj: &Value) -> Option<Vec<Entry>> {
    managed_fields(obj)?
        .as_array()?
        .iter()
        .map(Entry::parse)
        .collect()
}

fn find_entry(
    entries: &[Entry],
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
) -> Option<usize> {
    entries
        .iter()
        .position(|e| e.is(manager, operation, subresource))
}

fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let Value::Object(root) = obj else {
        return;
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        let list = entries.iter().map(Entry::to_json).collect();
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.remove("managedFields");
    }
    out
}

/// The part of an apply body a write through `scope` may merge.
fn in_scope_config(applied: &Value, scope: Scope) -> Value {
    match scope {
        Scope::Main | Scope::Scale => {
            let mut config = without_managed_fields(applied);
            if let Value::Object(root) = &mut config {
                root.remove("status");
            }
            config
        }
        Scope::Status => {
            let mut root = Map::new();
            if let Some(status) = applied.get("status") {
                root.insert("status".into(), status.clone());
            }
            Value::Object(root)
        }
    }
}

// ---------------------------------------------------------------------------
// FieldsV1 encoding
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Trie {
    member: bool,
    children: BTreeMap<String, Trie>,
}

impl Trie {
    fn to_json(&self) -> Value {
        let mut out: Map<String, Value> = self
            .children
            .iter()
            .map(|(k, child)| (k.clone(), child.to_json()))
            .collect();
        // "." marks a node that is owned itself as well as having owned
        // children; a bare `{}` already means "owned".
        if self.member && !out.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        Value::Object(out)
    }
}

fn encode_fields(fields: &FieldSet) -> Value {
    let mut root = Trie::default();
    for path in fields {
        let mut node = &mut root;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node.member = true;
    }
    root.to_json()
}

fn decode_fields(tree: &Map<String, Value>, path: &mut FieldPath, out: &mut FieldSet) {
    for (key, child) in tree {
        if key == "." {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            continue;
        }
        path.push(key.clone());
        match child {
            Value::Object(sub) if !sub.is_empty() => decode_fields(sub, path, out),
            _ => {
                out.insert(path.clone());
            }
        }
        path.pop();
    }
}

/// Renders a path the way the apiserver prints it in conflicts.
fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            match serde_json::from_str::<Map<String, Value>>(key) {
                Ok(fields) => {
                    let parts: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push_str(&format!("[{}]", parts.join(",")));
                }
                Err(_) => out.push_str(&format!("[{key}]")),
            }
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else {
            out.push_str(&format!("[{element}]"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Field sets of objects
// ---------------------------------------------------------------------------

/// Every owned-able path of an object: leaves map to their value, list items
/// to `None` (an item's identity is its key, it has no value to compare).
type Flat<'a> = BTreeMap<FieldPath, Option<&'a Value>>;

fn flatten(obj: &Value, scope: Scope) -> Flat<'_> {
    let mut out = Flat::new();
    let Value::Object(root) = obj else {
        return out;
    };
    let mut path = Vec::new();
    let mut names = Vec::new();
    for (key, value) in root {
        let in_scope = match scope {
            Scope::Main | Scope::Scale => !matches!(key.as_str(), "apiVersion" | "kind" | "status"),
            Scope::Status => key == "status",
        };
        if !in_scope {
            continue;
        }
        path.push(format!("f:{key}"));
        names.push(key.clone());
        match value {
            Value::Object(meta) if key == "metadata" => {
                for (field, v) in meta {
                    if UNTRACKED_METADATA.contains(&field.as_str()) {
                        continue;
                    }
                    path.push(format!("f:{field}"));
                    names.push(field.clone());
                    flatten_value(v, &mut path, &mut names, &mut out);
                    names.pop();
                    path.pop();
                }
            }
            _ => flatten_value(value, &mut path, &mut names, &mut out),
        }
        names.pop();
        path.pop();
    }
    out
}

fn flatten_value<'a>(
    value: &'a Value,
    path: &mut FieldPath,
    names: &mut Vec<String>,
    out: &mut Flat<'a>,
) {
    match value {
        Value::Object(fields) if !fields.is_empty() => flatten_fields(fields, path, names, out),
        Value::Array(items) => match effective_kind(names, items, &[]) {
            ListKind::Atomic => {
                out.insert(path.clone(), Some(value));
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone(), None);
                    path.pop();
                }
            }
            ListKind::Map(keys) => {
                for item in items {
                    let Some(key) = listmeta::item_key(item, keys) else {
                        continue;
                    };
                    path.push(format!("k:{}", Value::Object(key)));
                    out.insert(path.clone(), None);
                    if let Value::Object(fields) = item {
                        flatten_fields(fields, path, names, out);
                    }
                    path.pop();
                }
            }
        },
        // Scalars, nulls and empty objects are owned whole: upstream makes an
        // empty map a member so that applying `{}` still claims the field.
        _ => {
            out.insert(path.clone(), Some(value));
        }
    }
}

fn flatten_fields<'a>(
    fields: &'a Map<String, Value>,
    path: &mut FieldPath,
    names: &mut Vec<String>,
    out: &mut Flat<'a>,
) {
    for (name, child) in fields {
        path.push(format!("f:{name}"));
        names.push(name.clone());
        flatten_value(child, path, names, out);
        names.pop();
        path.pop();
    }
}

/// The list kind for these items. An associative list with an item that
/// has no key cannot be merged by key, so it degrades to atomic.
fn effective_kind(names: &[String], items: &[Value], more: &[Value]) -> ListKind {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match listmeta::list_kind(&refs) {
        ListKind::Map(keys)
            if items
                .iter()
                .chain(more)
                .any(|i| listmeta::item_key(i, keys).is_none()) =>
        {
            ListKind::Atomic
        }
        kind => kind,
    }
}

struct Changes {
    /// Paths added or whose value changed.
    changed: FieldSet,
    /// Paths that disappeared.
    removed: FieldSet,
}

fn compare(old: &Flat<'_>, new: &Flat<'_>) -> Changes {
    let changed = new
        .iter()
        .filter(|(path, now)| match (old.get(*path), now) {
            (None, _) => true,
            (Some(Some(before)), Some(after)) => !listmeta::values_equal(before, after),
            (Some(before), after) => before.is_some() != after.is_some(),
        })
        .map(|(path, _)| path.clone())
        .collect();
    let removed = old
        .keys()
        .filter(|path| !new.contains_key(*path))
        .cloned()
        .collect();
    Changes { changed, removed }
}

// ---------------------------------------------------------------------------
// Merge and prune
// ---------------------------------------------------------------------------

/// The apply merge: maps merge, associative lists merge by key (live order,
/// new items appended), set lists union, everything else is replaced.
fn merge_config(live: &mut Value, config: &Value, names: &mut Vec<String>) {
    match (&mut *live, config) {
        (Value::Object(fields), Value::Object(wanted)) => {
            for (name, value) in wanted {
                match fields.get_mut(name) {
                    Some(slot) => {
                        names.push(name.clone());
                        merge_config(slot, value, names);
                        names.pop();
                    }
                    None => {
                        fields.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(wanted)) => match effective_kind(names, items, wanted) {
            ListKind::Atomic => *live = config.clone(),
            ListKind::Set => {
                for value in wanted {
                    if !items.iter().any(|v| listmeta::values_equal(v, value)) {
                        items.push(value.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                for item in wanted {
                    let existing = listmeta::item_key(item, keys)
                        .and_then(|key| items.iter().position(|v| listmeta::item_matches(v, &key)));
                    match existing {
                        Some(i) => merge_config(&mut items[i], item, names),
                        None => items.push(item.clone()),
                    }
                }
            }
        },
        _ => *live = config.clone(),
    }
}

/// An explicit `null` in an apply body is merged (so it can conflict and be
/// owned) but, as with typed objects upstream, not stored.
fn drop_config_nulls(obj: &mut Value, config: &Value, names: &mut Vec<String>) {
    match (obj, config) {
        (Value::Object(fields), Value::Object(wanted)) => {
            for (name, value) in wanted {
                if value.is_null() {
                    fields.remove(name);
                } else if let Some(child) = fields.get_mut(name) {
                    names.push(name.clone());
                    drop_config_nulls(child, value, names);
                    names.pop();
                }
            }
        }
        (Value::Array(items), Value::Array(wanted)) => {
            if let ListKind::Map(keys) = effective_kind(names, items, wanted) {
                for item in wanted {
                    let Some(key) = listmeta::item_key(item, keys) else {
                        continue;
                    };
                    if let Some(live) = items.iter_mut().find(|v| listmeta::item_matches(v, &key)) {
                        drop_config_nulls(live, item, names);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Removes what the applier owned last time, no longer applies, and nobody
/// else owns (at or below the path). Maps and lists emptied by a removal go
/// too.
fn prune(obj: &mut Value, previously_applied: &FieldSet, owned: &FieldSet) {
    let mut removed: Option<&FieldPath> = None;
    for path in previously_applied {
        // The set is sorted, so a removed path's descendants follow it
        // directly and went with it.
        if removed.is_some_and(|r| path.starts_with(r)) {
            continue;
        }
        let still_owned = owned
            .range(path.clone()..)
            .next()
            .is_some_and(|o| o.starts_with(path));
        if !still_owned {
            remove_path(obj, path, true);
            removed = Some(path);
        }
    }
}

fn remove_path(node: &mut Value, path: &[String], at_root: bool) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match node {
        Value::Object(fields) => {
            let Some(name) = first.strip_prefix("f:") else {
                return false;
            };
            if rest.is_empty() {
                return fields.remove(name).is_some();
            }
            let Some(child) = fields.get_mut(name) else {
                return false;
            };
            let removed = remove_path(child, rest, false);
            // Emptied maps and lists disappear, as nil ones do upstream; an
            // object always keeps its metadata.
            let keep = at_root && name == "metadata";
            if removed && !keep && is_empty_container(child) {
                fields.remove(name);
            }
            removed
        }
        Value::Array(items) => {
            let Some(i) = find_item(items, first) else {
                return false;
            };
            if rest.is_empty() {
                items.remove(i);
                true
            } else {
                remove_path(&mut items[i], rest, false)
            }
        }
        _ => false,
    }
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Finds the list item a `k:` or `v:` path element names.
fn find_item(items: &[Value], element: &str) -> Option<usize> {
    if let Some(key) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        items.iter().position(|v| listmeta::item_matches(v, &key))
    } else if let Some(value) = element.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        items.iter().position(|v| listmeta::values_equal(v, &value))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2025-01-01T00:00:00Z";
    const T1: &str = "2025-01-01T00:01:00Z";
    const T2: &str = "2025-01-01T00:02:00Z";

    fn deploy(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn apply_ok(live: Option<&Value>, body: &Value, manager: &str, now: &str) -> Value {
        apply(live, body, manager, false, Scope::Main, "apps/v1", now).expect("apply succeeds")
    }

    fn entries(obj: &Value) -> &Vec<Value> {
        obj["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields present")
    }

    fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
        entries(obj)
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
    }

    fn strip_managed(obj: &Value) -> Value {
        without_managed_fields(obj)
    }

    #[test]
    fn apply_create_records_one_apply_entry() {
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "c", "image": "nginx"}]}}}});
        let out = apply_ok(None, &body, "kubectl", T0);
        assert_eq!(strip_managed(&out), body);
        assert_eq!(
            entries(&out),
            &vec![json!({
                "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                "time": T0, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                             "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {
                                 "f:containers": {"k:{\"name\":\"c\"}": {
                                     ".": {}, "f:image": {}, "f:name": {}}}}}}}
            })]
        );
    }

    #[test]
    fn reapplying_the_same_config_changes_nothing() {
        let body = deploy(json!({"replicas": 2}));
        let first = apply_ok(None, &body, "kubectl", T0);
        let second = apply_ok(Some(&first), &body, "kubectl", T1);
        assert_eq!(first, second);
    }

    #[test]
    fn managers_applying_different_fields_coexist() {
        let a = apply_ok(None, &deploy(json!({"replicas": 2})), "a", T0);
        let b_body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"team": "x"}}});
        let b = apply_ok(Some(&a), &b_body, "b", T1);
        assert_eq!(b["spec"]["replicas"], 2);
        assert_eq!(b["metadata"]["labels"], json!({"team": "x"}));
        assert_eq!(entries(&b).len(), 2);
        assert_eq!(
            entry(&b, "b", "Apply").unwrap()["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:team": {}}}})
        );
        // Re-applying A's own config does not disturb B's label.
        let again = apply_ok(Some(&b), &deploy(json!({"replicas": 3})), "a", T2);
        assert_eq!(again["metadata"]["labels"], json!({"team": "x"}));
        assert_eq!(again["spec"]["replicas"], 3);
    }

    #[test]
    fn conflicting_apply_is_rejected_with_the_field() {
        let a = apply_ok(None, &deploy(json!({"replicas": 1})), "a", T0);
        let err = apply(
            Some(&a),
            &deploy(json!({"replicas": 2})),
            "b",
            false,
            Scope::Main,
            "apps/v1",
            T1,
        )
        .expect_err("conflict");
        assert_eq!(err.conflicts.len(), 1);
        let c = &err.conflicts[0];
        assert_eq!(
            (c.manager.as_str(), c.api_version.as_str(), c.field.as_str()),
            ("a", "apps/v1", ".spec.replicas")
        );
        assert_eq!(
            err.message(),
            "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
        );
        assert_eq!(
            err.causes(),
            vec![json!({"reason": "FieldManagerConflict",
                        "message": "conflict with \"a\"", "field": ".spec.replicas"})]
        );
    }

    #[test]
    fn force_moves_ownership() {
        let a = apply_ok(
            None,
            &deploy(json!({"replicas": 1, "paused": false})),
            "a",
            T0,
        );
        let b = apply(
            Some(&a),
            &deploy(json!({"replicas": 2})),
            "b",
            true,
            Scope::Main,
            "apps/v1",
            T1,
        )
        .expect("forced apply");
        assert_eq!(b["spec"]["replicas"], 2);
        assert_eq!(
            entry(&b, "a", "Apply").unwrap()["fieldsV1"],
            json!({"f:spec": {"f:paused": {}}})
        );
        // Now A is the one that conflicts.
        let err = apply(
            Some(&b),
            &deploy(json!({"replicas": 1, "paused": false})),
            "a",
            false,
            Scope::Main,
            "apps/v1",
            T2,
        )
        .expect_err("a no longer owns replicas");
        assert_eq!(err.conflicts[0].manager, "b");
    }

    #[test]
    fn same_value_is_shared_and_survives_one_owner_leaving() {
        let a = apply_ok(None, &deploy(json!({"replicas": 1})), "a", T0);
        let b = apply_ok(Some(&a), &deploy(json!({"replicas": 1})), "b", T1);
        for m in ["a", "b"] {
            assert_eq!(
                entry(&b, m, "Apply").unwrap()["fieldsV1"],
                json!({"f:spec": {"f:replicas": {}}}),
                "{m}"
            );
        }
        // A stops applying replicas; B still owns it, so it stays.
        let a2 = apply_ok(Some(&b), &deploy(json!({"paused": true})), "a", T2);
        assert_eq!(a2["spec"]["replicas"], 1);
        assert_eq!(a2["spec"]["paused"], true);
    }

    #[test]
    fn omitted_fields_are_removed() {
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "c", "image": "i"}, {"name": "d", "image": "j"}]}}}});
        let first = apply_ok(None, &body, "a", T0);
        let smaller = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let second = apply_ok(Some(&first), &smaller, "a", T1);
        assert_eq!(strip_managed(&second), smaller);
        // Dropping every label removes the emptied map as well.
        let bare = deploy(json!({"template": {"spec": {"containers": [
            {"name": "c", "image": "i"}]}}}));
        let third = apply_ok(Some(&second), &bare, "a", T2);
        assert_eq!(strip_managed(&third), bare);
    }

    #[test]
    fn containers_merge_by_name_across_managers() {
        let a = apply_ok(
            None,
            &deploy(json!({"template": {"spec": {"containers": [
                {"name": "c", "image": "c:1"}]}}})),
            "a",
            T0,
        );
        let b = apply_ok(
            Some(&a),
            &deploy(json!({"template": {"spec": {"containers": [
                {"name": "d", "image": "d:1"}]}}})),
            "b",
            T1,
        );
        assert_eq!(
            b["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "c:1"}, {"name": "d", "image": "d:1"}])
        );
        let err = apply(
            Some(&b),
            &deploy(json!({"template": {"spec": {"containers": [
                {"name": "c", "image": "c:2"}]}}})),
            "b",
            false,
            Scope::Main,
            "apps/v1",
            T2,
        )
        .expect_err("image of c belongs to a");
        assert_eq!(
            err.conflicts
                .iter()
                .map(|c| c.field.as_str())
                .collect::<Vec<_>>(),
            vec![".spec.template.spec.containers[name=\"c\"].image"]
        );
    }

    #[test]
    fn update_takes_ownership_so_a_later_apply_conflicts() {
        let a = apply_ok(None, &deploy(json!({"replicas": 1})), "a", T0);
        let mut scaled = a.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&a), &mut scaled, "b", Scope::Main, "apps/v1", T1);
        assert!(
            entry(&scaled, "a", "Apply").is_none(),
            "a lost its only field"
        );
        assert_eq!(
            entry(&scaled, "b", "Update").unwrap()["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );

        let err = apply(
            Some(&scaled),
            &deploy(json!({"replicas": 1})),
            "a",
            false,
            Scope::Main,
            "apps/v1",
            T2,
        )
        .expect_err("b owns replicas now");
        assert_eq!(
            err.message(),
            format!(
                "Apply failed with 1 conflict: conflict with \"b\" using apps/v1 at {T1}: .spec.replicas"
            )
        );
        // Applying the value B set is not a conflict; ownership is shared.
        let shared = apply_ok(Some(&scaled), &deploy(json!({"replicas": 5})), "a", T2);
        assert!(entry(&shared, "a", "Apply").is_some());
        assert!(entry(&shared, "b", "Update").is_some());
    }

    #[test]
    fn record_update_on_create_owns_everything_but_status_and_identity() {
        let mut created = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": "1",
                         "finalizers": ["x/y"]},
            "spec": {"containers": [{"name": "c", "image": "i",
                     "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Pending"}});
        record_update(None, &mut created, "kubectl-create", Scope::Main, "v1", T0);
        let e = entry(&created, "kubectl-create", "Update").unwrap();
        assert_eq!(e["time"], T0);
        assert!(e.get("subresource").is_none());
        assert_eq!(
            e["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {"v:\"x/y\"": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                       ".": {}, "f:image": {}, "f:name": {},
                       "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                           ".": {}, "f:containerPort": {}}}}}}})
        );
    }

    #[test]
    fn record_update_without_changes_keeps_entries() {
        let mut obj = deploy(json!({"replicas": 1}));
        record_update(None, &mut obj, "m", Scope::Main, "apps/v1", T0);
        let mut same = obj.clone();
        record_update(Some(&obj), &mut same, "m", Scope::Main, "apps/v1", T1);
        assert_eq!(same, obj);
        let mut other = obj.clone();
        record_update(Some(&obj), &mut other, "n", Scope::Main, "apps/v1", T1);
        assert_eq!(
            entries(&other).len(),
            1,
            "no entry for a manager that took nothing"
        );
    }

    #[test]
    fn status_scope_owns_only_status() {
        let live = apply_ok(None, &deploy(json!({"replicas": 1})), "a", T0);
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 9}, "status": {"readyReplicas": 1}});
        let out = apply(
            Some(&live),
            &body,
            "ctrl",
            false,
            Scope::Status,
            "apps/v1",
            T1,
        )
        .expect("status apply");
        assert_eq!(out["spec"]["replicas"], 1, "status writes ignore spec");
        assert_eq!(out["status"], json!({"readyReplicas": 1}));
        let e = entry(&out, "ctrl", "Apply").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(e["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));

        // A main-resource write that carries a different status neither
        // changes ownership of status nor conflicts over it.
        let main = apply_ok(Some(&out), &deploy(json!({"replicas": 1})), "a", T2);
        assert_eq!(main["status"], json!({"readyReplicas": 1}));

        let mut updated = out.clone();
        updated["spec"]["replicas"] = json!(4);
        updated["status"]["readyReplicas"] = json!(2);
        record_update(
            Some(&out),
            &mut updated,
            "kubelet",
            Scope::Status,
            "apps/v1",
            T2,
        );
        let e = entry(&updated, "kubelet", "Update").unwrap();
        assert_eq!(e["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));
        assert_eq!(e["subresource"], "status");
        assert!(entry(&updated, "ctrl", "Apply").is_none());
        assert!(
            entry(&updated, "a", "Apply").is_some(),
            "spec ownership untouched"
        );
    }

    #[test]
    fn sets_and_multi_key_lists() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "finalizers": ["a"]},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let first = apply(None, &svc, "a", false, Scope::Main, "v1", T0).unwrap();
        let other = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "finalizers": ["b"]},
            "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}});
        let second = apply(Some(&first), &other, "b", false, Scope::Main, "v1", T1).unwrap();
        assert_eq!(second["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            second["spec"]["ports"],
            json!([{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}])
        );
        let err = apply(
            Some(&second),
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                    "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 9}]}}),
            "b",
            false,
            Scope::Main,
            "v1",
            T2,
        )
        .expect_err("targetPort of port 80 is a's");
        assert_eq!(
            err.conflicts[0].field,
            ".spec.ports[port=80,protocol=\"TCP\"].targetPort"
        );
        // B dropping its finalizer removes only that value.
        let third = apply(
            Some(&second),
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                    "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}}),
            "b",
            false,
            Scope::Main,
            "v1",
            T2,
        )
        .unwrap();
        assert_eq!(third["metadata"]["finalizers"], json!(["a"]));
    }

    #[test]
    fn multiple_conflicts_are_grouped_by_manager() {
        let a = apply_ok(
            None,
            &deploy(json!({"replicas": 1, "paused": false})),
            "a",
            T0,
        );
        let err = apply(
            Some(&a),
            &deploy(json!({"replicas": 2, "paused": true})),
            "b",
            false,
            Scope::Main,
            "apps/v1",
            T1,
        )
        .expect_err("two conflicts");
        assert_eq!(
            err.message(),
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.paused\n- .spec.replicas"
        );
        assert_eq!(err.causes().len(), 2);
    }

    #[test]
    fn explicit_null_is_owned_but_not_stored() {
        let a = apply_ok(
            None,
            &deploy(json!({"replicas": 1, "paused": true})),
            "a",
            T0,
        );
        let out = apply_ok(
            Some(&a),
            &deploy(json!({"replicas": 1, "paused": null})),
            "a",
            T1,
        );
        assert!(out["spec"].get("paused").is_none());
        assert_eq!(
            entry(&out, "a", "Apply").unwrap()["fieldsV1"],
            json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})
        );
    }

    #[test]
    fn put_with_managed_fields_starts_from_the_request() {
        let a = apply_ok(None, &deploy(json!({"replicas": 1})), "a", T0);
        let mut put = a.clone();
        put["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Update",
            "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
        record_update(
            Some(&a),
            &mut put,
            "kubectl-edit",
            Scope::Main,
            "apps/v1",
            T1,
        );
        assert_eq!(entries(&put).len(), 1);
        assert_eq!(entries(&put)[0]["manager"], "x");

        // An invalid list falls back to the stored entries.
        let mut bad = a.clone();
        bad["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
        record_update(
            Some(&a),
            &mut bad,
            "kubectl-edit",
            Scope::Main,
            "apps/v1",
            T1,
        );
        assert_eq!(entries(&bad)[0]["manager"], "a");
    }

    #[test]
    fn pruning_collapses_emptied_maps_but_not_metadata() {
        let cm = |data: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "annotations": {"a": "1"}}, "data": data})
        };
        let first = apply(
            None,
            &cm(json!({"k": "v"})),
            "a",
            false,
            Scope::Main,
            "v1",
            T0,
        )
        .unwrap();
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let second = apply(Some(&first), &body, "a", false, Scope::Main, "v1", T1).unwrap();
        assert_eq!(
            strip_managed(&second),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
        );
        assert!(
            second["metadata"].get("managedFields").is_none(),
            "an entry with no fields is dropped"
        );
    }

    #[test]
    fn fields_v1_round_trips() {
        let tree = json!({"f:metadata": {"f:finalizers": {".": {}, "v:\"a\"": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}}},
                       "f:replicas": {}}});
        let mut set = FieldSet::new();
        decode_fields(tree.as_object().unwrap(), &mut Vec::new(), &mut set);
        assert_eq!(set.len(), 5);
        assert_eq!(encode_fields(&set), tree);
    }
}
