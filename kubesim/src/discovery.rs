//! Discovery documents: `/version`, legacy and aggregated (`apidiscovery.k8s.io/v2`) `/api` and `/apis`, per
//! group-version resource lists, and the minimal `/openapi/v3` that `kubectl apply --server-side` needs.
//!
//! Everything here is derived from the [`Registry`] at request time, so a CRD shows up the moment it is created.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceDef};

/// The Kubernetes version kubesim reports; kubectl's dispatcher picks its client binary from the minor.
pub(crate) const MAJOR: &str = "1";
pub(crate) const MINOR: &str = "33";
pub(crate) const GIT_VERSION: &str = "v1.33.0-kubesim";

/// The content type of aggregated discovery; kubectl ignores an aggregated body served as plain JSON.
pub(crate) const AGGREGATED_CT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub(crate) fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// Whether the Accept header asks for aggregated discovery (v2 or v2beta1).
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList") && accept.contains("g=apidiscovery.k8s.io")
}

fn group_version(group: &str, v: &str) -> String {
    if group.is_empty() {
        v.to_string()
    } else {
        format!("{group}/{v}")
    }
}

/// `GET /api` (legacy).
pub(crate) fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]
    })
}

fn api_group(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(name, v), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(json!({})),
    })
}

/// `GET /apis` (legacy).
pub(crate) fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| api_group(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub(crate) fn group(reg: &Registry, name: &str) -> Option<Value> {
    let groups = reg.groups();
    let vs = groups.get(name)?;
    let mut g = api_group(name, vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub(crate) fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = vec![];
    for d in reg.in_group_version(group, version) {
        resources.push(json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": d.verbs,
            "shortNames": d.short_names,
            "categories": d.categories,
        }));
        for (sub, kind, verbs) in d.subresources() {
            let mut r = json!({
                "name": format!("{}/{}", d.plural, sub),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": kind.map_or(d.kind.as_str(), |k| k.2),
                "verbs": verbs,
            });
            if let Some((g, v, _)) = kind {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    if resources.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    }))
}

fn aggregated_resource(d: &ResourceDef, version: &str) -> Value {
    let subs: Vec<Value> = d
        .subresources()
        .into_iter()
        .map(|(s, kind, verbs)| {
            let kind = match kind {
                Some((g, v, k)) => json!({"group": g, "version": v, "kind": k}),
                None => json!({"group": d.group, "version": version, "kind": d.kind}),
            };
            json!({"subresource": s, "responseKind": kind, "verbs": verbs})
        })
        .collect();
    json!({
        "resource": d.plural,
        "responseKind": {"group": d.group, "version": version, "kind": d.kind},
        "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": d.singular,
        "verbs": d.verbs,
        "shortNames": d.short_names,
        "categories": d.categories,
        "subresources": subs,
    })
}

/// Aggregated discovery: `/api` (`core == true`) or `/apis`.
pub(crate) fn aggregated(reg: &Registry, core: bool) -> Value {
    let mut items = vec![];
    for (g, vs) in reg.groups() {
        if g.is_empty() != core {
            continue;
        }
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| {
                let resources: Vec<Value> = reg
                    .in_group_version(&g, v)
                    .map(|d| aggregated_resource(d, v))
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        let metadata = if core {
            json!({"creationTimestamp": null})
        } else {
            json!({"name": g, "creationTimestamp": null})
        };
        items.push(json!({"metadata": metadata, "versions": versions}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `GET /openapi/v3`: one path per served group version.
pub(crate) fn openapi_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let p = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let url = format!("/openapi/v3/{p}?hash={}", reg_hash(reg, &g, &v));
            paths.insert(p, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// A stable hash of a group version's resources, so clients re-fetch a document when a CRD changes it.
fn reg_hash(reg: &Registry, group: &str, version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for d in reg.in_group_version(group, version) {
        d.plural.hash(&mut h);
        d.kind.hash(&mut h);
        d.namespaced.hash(&mut h);
    }
    format!("{:016X}", h.finish())
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/{g}/{v}`: PATCH operations carrying
/// `x-kubernetes-group-version-kind` and a `fieldValidation` parameter, which is what kubectl's query-parameter
/// verifier looks for before it lets the server validate fields. Built-in kinds have upstream's schemas
/// (`schemas`), which `kubectl explain` walks; custom resources' are open (`x-kubernetes-preserve-unknown-fields`).
pub(crate) fn openapi_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let params = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "force", "in": "query", "schema": {"type": "boolean"}}
    ]);
    let builtin_kinds: Vec<String> = reg
        .in_group_version(group, version)
        .filter(|d| !d.from_crd)
        .map(|d| d.kind.clone())
        .collect();
    let (builtin, builtin_names) = crate::schemas::builtin_schemas(group, version, &builtin_kinds);
    schemas.extend(builtin);
    let mut any = false;
    for d in reg.in_group_version(group, version) {
        any = true;
        let gvk = json!({"group": d.group, "version": version, "kind": d.kind});
        let base = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", d.plural)
        } else {
            format!("{prefix}/{}", d.plural)
        };
        let known = (!d.from_crd)
            .then(|| builtin_names.get(&d.kind).cloned())
            .flatten();
        let schema_name = known.clone().unwrap_or_else(|| {
            format!(
                "{}.{}.{}",
                if d.group.is_empty() { "core" } else { &d.group },
                version,
                d.kind
            )
        });
        let op = json!({
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-action": "patch",
            "parameters": params,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema_name}")}}}}}
        });
        let mut create = op.clone();
        create["x-kubernetes-action"] = json!("post");
        if d.verbs.contains(&"create") {
            paths.insert(base.clone(), json!({"post": create}));
        }
        // Read-only and create-only resources (metrics, reviews) advertise no writes to existing objects.
        if d.verbs.contains(&"patch") {
            paths.insert(
                format!("{base}/{{name}}"),
                json!({"patch": op.clone(), "put": op.clone()}),
            );
        }
        if d.status {
            paths.insert(
                format!("{base}/{{name}}/status"),
                json!({"patch": op.clone(), "put": op}),
            );
        }
        if known.is_none() {
            schemas.insert(
                schema_name,
                json!({
                    "type": "object",
                    "x-kubernetes-group-version-kind": [gvk],
                    "x-kubernetes-preserve-unknown-fields": true
                }),
            );
        }
    }
    if !any {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubesim)", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}
