//! Authorization: what a request asks to do (upstream's `RequestInfo`), the RBAC authorizer over the stored
//! Role/ClusterRole/RoleBinding/ClusterRoleBinding objects, the forbidden answer in upstream's wording, and the
//! bootstrap roles every cluster starts with.
//!
//! The rules follow `plugin/pkg/auth/authorizer/rbac`: ClusterRoleBindings first, then the RoleBindings of the
//! request's namespace; a binding applies to a user by name, to a group the user is in, or to a ServiceAccount
//! (`system:serviceaccount:<ns>:<name>`, the binding's namespace when the subject names none). A rule allows a
//! resource request when its verbs, apiGroups, resources (`*`, `plural`, `plural/sub`, `*/sub`) and resourceNames
//! (none = every name) all match, and a non-resource request when its verbs and nonResourceURLs (`*`, exact, or a
//! `prefix*`) match. ClusterRoles with an `aggregationRule` get their rules from the aggregation controller
//! (`controllers::rbac`), as upstream's.

use serde_json::{Value, json};

use crate::apierror::ApiError;
use crate::authn::UserInfo;
use crate::selector;
use crate::server::percent_decode;
use crate::store::Inner;

pub(crate) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What a request asks to do, parsed from its method, path and query alone (before routing), as upstream's
/// `RequestInfoFactory` does: a forbidden user gets 403 even for a resource that does not exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    /// The URL path, for non-resource requests.
    pub path: String,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

impl Attributes {
    /// Parses a request. `watch` is the `watch` query flag; `field_name` the name an exact
    /// `metadata.name=` field selector asks for (a list or watch of one object is authorized by its name).
    pub(crate) fn from_request(
        method: &str,
        path: &str,
        watch: bool,
        field_name: Option<&str>,
    ) -> Self {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let non_resource = || Attributes {
            verb: method.to_ascii_lowercase(),
            path: path.to_string(),
            ..Default::default()
        };
        if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
            return non_resource();
        }
        let mut rest = &parts[1..];
        let mut a = Attributes {
            resource_request: true,
            path: path.to_string(),
            ..Default::default()
        };
        if parts[0] == "apis" {
            if rest.len() < 3 {
                return non_resource();
            }
            a.api_group = rest[0].to_string();
            rest = &rest[1..];
        }
        a.api_version = rest[0].to_string();
        rest = &rest[1..];
        a.verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_string();
        if rest.first() == Some(&"namespaces")
            && let Some(ns) = rest.get(1)
        {
            a.namespace = percent_decode(ns);
            // `/namespaces/{ns}/status` and `/finalize` are subresources of the namespace itself.
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        if let Some(r) = rest.first() {
            a.resource = r.to_string();
        }
        if let Some(n) = rest.get(1) {
            a.name = percent_decode(n);
        }
        if let Some(s) = rest.get(2) {
            a.subresource = s.to_string();
        }
        if a.name.is_empty() && a.verb == "get" {
            a.verb = if watch { "watch" } else { "list" }.into();
            if let Some(n) = field_name.filter(|n| !n.is_empty() && !n.contains('/')) {
                a.name = n.to_string();
            }
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }

    /// The attributes of a SubjectAccessReview's `resourceAttributes` or `nonResourceAttributes`.
    pub(crate) fn from_review(spec: &Value) -> Option<Self> {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        match (
            spec.get("resourceAttributes"),
            spec.get("nonResourceAttributes"),
        ) {
            (Some(r), None) => Some(Attributes {
                verb: s(r, "verb"),
                resource_request: true,
                path: String::new(),
                api_group: s(r, "group"),
                api_version: s(r, "version"),
                namespace: s(r, "namespace"),
                resource: s(r, "resource"),
                subresource: s(r, "subresource"),
                name: s(r, "name"),
            }),
            (None, Some(n)) => Some(Attributes {
                verb: s(n, "verb"),
                path: s(n, "path"),
                ..Default::default()
            }),
            _ => None,
        }
    }

    /// `resource` or `resource/subresource`.
    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// The 403 upstream's `responsewriters.Forbidden` writes: `<resource>[.<group>] ["<name>"] is forbidden: User
    /// "<user>" cannot <verb> resource "<resource>[/<sub>]" in API group "<group>" in the namespace "<ns>"` (or
    /// `at the cluster scope`, or `cannot <verb> path "<path>"`), with `: <reason>` when the authorizer gave one.
    pub(crate) fn forbidden(&self, user: &str, reason: &str) -> ApiError {
        let what = if !self.resource_request {
            format!("User {user:?} cannot {} path {:?}", self.verb, self.path)
        } else if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
                self.verb,
                self.combined_resource(),
                self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
                self.verb,
                self.combined_resource(),
                self.api_group,
                self.namespace
            )
        };
        let what = if reason.is_empty() {
            what
        } else {
            format!("{what}: {reason}")
        };
        let qualified = if self.api_group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.api_group)
        };
        let message = if !self.resource_request || qualified.is_empty() {
            format!("forbidden: {what}")
        } else if self.name.is_empty() {
            format!("{qualified} is forbidden: {what}")
        } else {
            format!("{qualified} {:?} is forbidden: {what}", self.name)
        };
        let mut details = json!({"kind": self.resource});
        if !self.name.is_empty() {
            details["name"] = json!(self.name);
        }
        if !self.api_group.is_empty() {
            details["group"] = json!(self.api_group);
        }
        let mut e = ApiError::forbidden(message);
        if self.resource_request {
            e = e.with_details(details);
        }
        e
    }
}

/// An authorizer's answer: allowed or not, and why (upstream's reason strings).
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// One binding that applies to the user, and the rules its role grants (or why they could not be read).
struct Grant<'a> {
    /// `ClusterRoleBinding "name"` or `RoleBinding "name/ns"`.
    binding: String,
    role_ref: String,
    subject: String,
    rules: Result<Vec<&'a Value>, String>,
}

fn str_of<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

fn applies_to(user: &UserInfo, subject: &Value, binding_ns: &str) -> bool {
    let name = str_of(subject, "/name");
    match str_of(subject, "/kind") {
        "User" => user.username == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = match str_of(subject, "/namespace") {
                "" => binding_ns,
                ns => ns,
            };
            !ns.is_empty() && user.username == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let kind = str_of(subject, "/kind");
    let name = str_of(subject, "/name");
    if kind == "ServiceAccount" {
        let ns = match str_of(subject, "/namespace") {
            "" => binding_ns,
            ns => ns,
        };
        format!("{kind} {:?}", format!("{name}/{ns}"))
    } else {
        format!("{kind} {name:?}")
    }
}

/// Every binding that applies to `user` for a request in `namespace` (`""`: cluster scope only), in the order
/// upstream visits them.
fn grants<'a>(g: &'a Inner, user: &UserInfo, namespace: &'a str) -> Vec<Grant<'a>> {
    let crbs = g.def(RBAC_GROUP, "clusterrolebindings");
    let rbs = g.def(RBAC_GROUP, "rolebindings");
    let cluster_roles = g.def(RBAC_GROUP, "clusterroles");
    let roles = g.def(RBAC_GROUP, "roles");
    let role_rules = |kind: &str, ns: &str, name: &str| -> Result<Vec<&'a Value>, String> {
        let (def, ns) = match kind {
            "ClusterRole" => (&cluster_roles, ""),
            "Role" => (&roles, ns),
            other => return Err(format!("unknown roleRef kind {other:?}")),
        };
        let res = def.key();
        let o = g
            .find(&res, &(ns.to_string(), name.to_string()))
            .ok_or_else(|| format!("{}.{RBAC_GROUP} {name:?} not found", def.singular))?;
        Ok(o.get("rules")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default())
    };
    let mut out = vec![];
    let mut visit = |b: &'a Value, kind: &str, ns: &str| {
        let Some(subjects) = b.get("subjects").and_then(Value::as_array) else {
            return;
        };
        let Some(s) = subjects.iter().find(|s| applies_to(user, s, ns)) else {
            return;
        };
        let name = str_of(b, "/metadata/name");
        let rk = str_of(b, "/roleRef/kind");
        let rn = str_of(b, "/roleRef/name");
        out.push(Grant {
            binding: if ns.is_empty() {
                format!("{kind} {name:?}")
            } else {
                format!("{kind} {:?}", format!("{name}/{ns}"))
            },
            role_ref: format!("{rk} {rn:?}"),
            subject: describe_subject(s, ns),
            rules: role_rules(rk, ns, rn),
        });
    };
    for b in g.iter(&crbs, None) {
        visit(b, "ClusterRoleBinding", "");
    }
    if !namespace.is_empty() {
        for b in g.iter(&rbs, Some(namespace)) {
            visit(b, "RoleBinding", namespace);
        }
    }
    out
}

fn list_has(rule: &Value, field: &str, want: &str) -> bool {
    rule.get(field).and_then(Value::as_array).is_some_and(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .any(|v| v == "*" || v == want)
    })
}

fn resource_matches(rule: &Value, a: &Attributes) -> bool {
    let combined = a.combined_resource();
    rule.get("resources")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter().filter_map(Value::as_str).any(|r| {
                r == "*"
                    || r == combined
                    || (!a.subresource.is_empty()
                        && r.strip_prefix("*/") == Some(a.subresource.as_str()))
            })
        })
}

fn name_matches(rule: &Value, name: &str) -> bool {
    match rule.get("resourceNames").and_then(Value::as_array) {
        None => true,
        Some(names) if names.is_empty() => true,
        Some(names) => names.iter().any(|n| n.as_str() == Some(name)),
    }
}

fn url_matches(rule: &Value, path: &str) -> bool {
    rule.get("nonResourceURLs")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter().filter_map(Value::as_str).any(|u| {
                u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
            })
        })
}

/// Whether one PolicyRule allows the request (upstream's `RuleAllows`).
pub(crate) fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !list_has(rule, "verbs", &a.verb) {
        return false;
    }
    if a.resource_request {
        list_has(rule, "apiGroups", &a.api_group)
            && resource_matches(rule, a)
            && name_matches(rule, &a.name)
    } else {
        url_matches(rule, &a.path)
    }
}

/// The RBAC decision for `user` doing `a`. A denial's reason names bindings whose roles could not be read.
pub(crate) fn authorize(g: &Inner, user: &UserInfo, a: &Attributes) -> Decision {
    let ns = if a.resource_request {
        a.namespace.as_str()
    } else {
        ""
    };
    let mut errors = vec![];
    for grant in grants(g, user, ns) {
        match &grant.rules {
            Ok(rules) => {
                if rules.iter().any(|r| rule_allows(r, a)) {
                    return Decision {
                        allowed: true,
                        reason: format!(
                            "RBAC: allowed by {} of {} to {}",
                            grant.binding, grant.role_ref, grant.subject
                        ),
                    };
                }
            }
            Err(e) => errors.push(e.clone()),
        }
    }
    Decision {
        allowed: false,
        reason: match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        },
    }
}

/// What `user` may do in `namespace`, as a SelfSubjectRulesReview status: every rule of every applying binding,
/// split into resource and non-resource rules, with `evaluationError` naming roles that could not be read.
pub(crate) fn rules_review(g: &Inner, user: &UserInfo, namespace: &str) -> Value {
    let mut resource_rules = vec![];
    let mut non_resource_rules = vec![];
    let mut errors = vec![];
    for grant in grants(g, user, namespace) {
        match grant.rules {
            Ok(rules) => {
                for r in rules {
                    let verbs = r.get("verbs").cloned().unwrap_or(json!([]));
                    if let Some(urls) = r.get("nonResourceURLs").filter(|u| is_nonempty(u)) {
                        non_resource_rules.push(json!({"verbs": verbs, "nonResourceURLs": urls}));
                    }
                    if r.get("resources").is_some_and(is_nonempty) {
                        let mut rr = json!({"verbs": verbs});
                        for k in ["apiGroups", "resources", "resourceNames"] {
                            if let Some(v) = r.get(k).filter(|v| is_nonempty(v)) {
                                rr[k] = v.clone();
                            }
                        }
                        resource_rules.push(rr);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}

fn is_nonempty(v: &Value) -> bool {
    v.as_array().is_some_and(|a| !a.is_empty())
}

/// The rules of a ClusterRole with an `aggregationRule`: those of every other ClusterRole whose labels match one
/// of its `clusterRoleSelectors`, in name order, each rule once.
pub(crate) fn aggregated_rules(g: &Inner, role: &Value) -> Option<Vec<Value>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)?;
    let matchers: Vec<_> = selectors
        .iter()
        .filter_map(|s| selector::from_label_selector_object(s).ok())
        .filter(|s| !s.is_empty())
        .collect();
    let own = str_of(role, "/metadata/name");
    let mut rules: Vec<Value> = vec![];
    for other in g.list(&g.def(RBAC_GROUP, "clusterroles"), None) {
        if str_of(&other, "/metadata/name") == own {
            continue;
        }
        let labels = other.pointer("/metadata/labels").and_then(Value::as_object);
        if !matchers.iter().any(|m| m.matches(labels)) {
            continue;
        }
        for r in other
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
    }
    Some(rules)
}

/// The bootstrap ClusterRoles and ClusterRoleBindings of upstream's `bootstrappolicy` that clients and people rely
/// on: `cluster-admin` for `system:masters`; `system:discovery`, `system:basic-user` (the self reviews) and
/// `system:public-info-viewer` (health and version); and the user-facing `admin`, `edit` and `view`, aggregated
/// from `system:aggregate-to-*` roles whose rules are a shortened form of upstream's.
pub(crate) fn bootstrap_objects() -> Vec<(&'static str, Value)> {
    let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let annotations = json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
    let role = |name: &str, extra_labels: Value, rules: Value| {
        let mut l = labels.clone();
        if let (Some(l), Some(e)) = (l.as_object_mut(), extra_labels.as_object()) {
            l.extend(e.clone());
        }
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": l, "annotations": annotations}, "rules": rules})
    };
    let aggregate = |name: &str, label: &str| {
        let mut r = role(name, json!({}), json!([]));
        r["aggregationRule"] = json!({"clusterRoleSelectors": [
            {"matchLabels": {format!("rbac.authorization.k8s.io/{label}"): "true"}}]});
        r
    };
    let binding = |name: &str, role: &str, subjects: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": subjects})
    };
    let group = |g: &str| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g});
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    let view_rules = json!([
        {"apiGroups": [""], "resources": ["configmaps", "endpoints", "persistentvolumeclaims",
            "persistentvolumeclaims/status", "pods", "pods/log", "pods/status", "replicationcontrollers",
            "replicationcontrollers/scale", "replicationcontrollers/status", "serviceaccounts", "services",
            "services/status", "bindings", "events", "limitranges", "namespaces/status", "resourcequotas",
            "resourcequotas/status", "namespaces"], "verbs": read},
        {"apiGroups": ["apps"], "resources": ["controllerrevisions", "daemonsets", "daemonsets/status",
            "deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
            "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"], "verbs": read},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers",
            "horizontalpodautoscalers/status"], "verbs": read},
        {"apiGroups": ["batch"], "resources": ["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            "verbs": read},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"],
            "verbs": read},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingresses/status", "networkpolicies"],
            "verbs": read},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": read},
    ]);
    let edit_rules = json!([
        {"apiGroups": [""], "resources": ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy",
            "secrets", "services/proxy"], "verbs": read},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
        {"apiGroups": [""], "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy",
            "pods/eviction", "configmaps", "endpoints", "events", "persistentvolumeclaims",
            "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
            "services/proxy"], "verbs": write},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments", "deployments/rollback",
            "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"],
            "verbs": write},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": write},
        {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": write},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": write},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": write},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": write},
    ]);
    let admin_rules = json!([
        {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
        {"apiGroups": [RBAC_GROUP], "resources": ["rolebindings", "roles"],
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
    ]);
    vec![
        (
            "clusterroles",
            role(
                "cluster-admin",
                json!({}),
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:discovery",
                json!({}),
                json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                    "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:basic-user",
                json!({}),
                json!([{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                    {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                    "verbs": ["create"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:public-info-viewer",
                json!({}),
                json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
            ),
        ),
        ("clusterroles", aggregate("admin", "aggregate-to-admin")),
        ("clusterroles", aggregate("edit", "aggregate-to-edit")),
        ("clusterroles", aggregate("view", "aggregate-to-view")),
        (
            "clusterroles",
            role(
                "system:aggregate-to-admin",
                json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
                admin_rules,
            ),
        ),
        (
            "clusterroles",
            role(
                "system:aggregate-to-edit",
                json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true",
                    "rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
                edit_rules,
            ),
        ),
        (
            "clusterroles",
            role(
                "system:aggregate-to-view",
                json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true",
                    "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                    "rbac.authorization.k8s.io/aggregate-to-view": "true"}),
                view_rules,
            ),
        ),
        (
            "clusterrolebindings",
            binding(
                "cluster-admin",
                "cluster-admin",
                json!([group("system:masters")]),
            ),
        ),
        (
            "clusterrolebindings",
            binding(
                "system:discovery",
                "system:discovery",
                json!([group("system:authenticated")]),
            ),
        ),
        (
            "clusterrolebindings",
            binding(
                "system:basic-user",
                "system:basic-user",
                json!([group("system:authenticated")]),
            ),
        ),
        (
            "clusterrolebindings",
            binding(
                "system:public-info-viewer",
                "system:public-info-viewer",
                json!([
                    group("system:authenticated"),
                    group("system:unauthenticated")
                ]),
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: &str, path: &str) -> Attributes {
        Attributes::from_request(method, path, false, None)
    }

    #[test]
    fn request_info_as_upstream_parses_it() {
        let a = attrs("GET", "/api/v1/namespaces/team/pods");
        assert_eq!(
            (
                a.verb.as_str(),
                a.namespace.as_str(),
                a.resource.as_str(),
                a.name.as_str()
            ),
            ("list", "team", "pods", "")
        );
        let a = attrs("PUT", "/apis/apps/v1/namespaces/team/statefulsets/db/scale");
        assert_eq!(
            (
                a.verb.as_str(),
                a.api_group.as_str(),
                a.resource.as_str(),
                a.name.as_str(),
                a.subresource.as_str()
            ),
            ("update", "apps", "statefulsets", "db", "scale")
        );
        let a = attrs("GET", "/api/v1/namespaces/team");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "team", "team")
        );
        let a = attrs("PUT", "/api/v1/namespaces/team/finalize");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.subresource.as_str()),
            ("namespaces", "team", "finalize")
        );
        assert_eq!(
            attrs("DELETE", "/api/v1/namespaces/x/pods").verb,
            "deletecollection"
        );
        assert!(
            Attributes::from_request("GET", "/api/v1/pods", true, None).verb == "watch"
                && Attributes::from_request("GET", "/api/v1/pods", true, None)
                    .namespace
                    .is_empty()
        );
        let one = Attributes::from_request("GET", "/api/v1/namespaces/a/pods", true, Some("p"));
        assert_eq!((one.verb.as_str(), one.name.as_str()), ("watch", "p"));
        for p in [
            "/api",
            "/api/v1",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/healthz",
        ] {
            let a = attrs("GET", p);
            assert!(!a.resource_request, "{p}");
            assert_eq!(a.verb, "get");
            assert_eq!(a.path, p);
        }
    }

    #[test]
    fn rules_match_resources_subresources_names_and_urls() {
        let a = attrs("PATCH", "/apis/apps/v1/namespaces/t/statefulsets/db/scale");
        let rule = |r: Value| rule_allows(&r, &a);
        assert!(rule(
            json!({"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["statefulsets/scale"]})
        ));
        assert!(rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/scale"]})
        ));
        assert!(!rule(
            json!({"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["statefulsets"]})
        ));
        assert!(!rule(
            json!({"verbs": ["patch"], "apiGroups": [""], "resources": ["statefulsets/scale"]})
        ));
        assert!(rule(
            json!({"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["*"], "resourceNames": ["db"]})
        ));
        assert!(!rule(
            json!({"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["*"], "resourceNames": ["other"]})
        ));
        let list = attrs("GET", "/apis/apps/v1/namespaces/t/statefulsets");
        assert!(
            !rule_allows(
                &json!({"verbs": ["list"], "apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": ["db"]}),
                &list
            ),
            "a named rule does not allow a list"
        );
        let h = attrs("GET", "/healthz/etcd");
        assert!(rule_allows(
            &json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/*"]}),
            &h
        ));
        assert!(!rule_allows(
            &json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}),
            &h
        ));
        assert!(
            !rule_allows(
                &json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}),
                &h
            ),
            "resource rules never allow paths"
        );
    }

    #[test]
    fn forbidden_messages_in_upstream_wording() {
        let e = attrs("GET", "/api/v1/namespaces/team/pods").forbidden("bob", "");
        assert_eq!(
            e.message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"team\""
        );
        let e = attrs("PUT", "/apis/apps/v1/namespaces/t/statefulsets/db/scale")
            .forbidden("system:serviceaccount:t:ci", "");
        assert_eq!(
            e.message,
            "statefulsets.apps \"db\" is forbidden: User \"system:serviceaccount:t:ci\" cannot update resource \"statefulsets/scale\" in API group \"apps\" in the namespace \"t\""
        );
        let e = attrs("GET", "/api/v1/nodes").forbidden(
            "bob",
            "RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found",
        );
        assert_eq!(
            e.message,
            "nodes is forbidden: User \"bob\" cannot list resource \"nodes\" in API group \"\" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found"
        );
        let e = attrs("GET", "/version").forbidden("system:anonymous", "");
        assert_eq!(
            e.message,
            "forbidden: User \"system:anonymous\" cannot get path \"/version\""
        );
    }
}
