//! The token file (`--token-file`) and the anonymous policy (`anonymous:` in that file, `--anonymous-allow`), and
//! the bodies of the token and access reviews.
//!
//! Owns the token-file format, its rules and their matching (the second authorizer under RBAC, the only one for
//! SubjectAccessReviews under always-allow), and how reviews are read and answered; who is asking comes from
//! `authn`, what RBAC allows from `rbac`. Nothing is stored: every review is computed and returned, as the
//! apiserver does. Without a token file no static token is known and the file's rules deny everything, except
//! what the anonymous policy grants to `system:anonymous`.
//!
//! The format (YAML or JSON):
//!
//! ```yaml
//! tokens:
//!   - token: alice-token
//!     user: alice
//!     uid: "1001"                 # optional
//!     groups: [platform]          # optional; system:authenticated is always added
//!     rules:                      # what alice may do
//!       - namespaces: ["team-*"]  # glob patterns (* and ?); omitted = every namespace and cluster scope
//!         verbs: [get, list, create]
//!         resources: [statefulsets, pods/status]
//!         groups: [apps, ""]      # API groups; "" is the core group
//! groups:                         # rules for members of a group
//!   platform: {rules: [{verbs: [get, list]}]}
//! anonymous:                      # rules for system:anonymous and system:unauthenticated
//!   rules: [{verbs: [get], nonResourceURLs: ["/healthz"]}]
//! ```
//!
//! In a rule an omitted list matches everything and an empty list matches nothing. A rule with
//! `nonResourceURLs` applies only to non-resource requests, one without only to resource requests.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::apierror::{ApiError, ApiResult};
use crate::authn::{ANONYMOUS_USER, UNAUTHENTICATED_GROUP, UserInfo};
use crate::rbac::{Attributes, Decision};
use crate::registry::ResourceDef;

/// One access rule of the token file. `None` matches anything.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    verbs: Option<Vec<String>>,
    /// `plural` or `plural/subresource`, as globs.
    resources: Option<Vec<String>>,
    /// API groups, `""` for core.
    groups: Option<Vec<String>>,
    /// Namespace globs; cluster-scoped requests have the namespace `""`, which only `*` matches.
    namespaces: Option<Vec<String>>,
    /// Object name globs.
    names: Option<Vec<String>>,
    #[serde(rename = "nonResourceURLs")]
    non_resource_urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    groups: BTreeMap<String, RulesEntry>,
    #[serde(default)]
    anonymous: Option<RulesEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    user: String,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    extra: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesEntry {
    #[serde(default)]
    rules: Vec<Rule>,
}

/// The loaded policy: tokens, and rules by user, by group and for anonymous requests.
#[derive(Debug, Default)]
pub(crate) struct ReviewPolicy {
    /// Named in review reasons so that a denial says where to look.
    source: String,
    tokens: HashMap<String, UserInfo>,
    user_rules: HashMap<String, Vec<Rule>>,
    group_rules: HashMap<String, Vec<Rule>>,
    anonymous_rules: Vec<Rule>,
}

impl ReviewPolicy {
    /// Reads the token file (when given) and adds the `--anonymous-allow` rules. Errors name the problem.
    pub(crate) fn load(
        token_file: Option<&Path>,
        anonymous_allow: &[String],
    ) -> Result<Self, String> {
        let mut p = ReviewPolicy {
            source: "kubesim (no token file)".into(),
            ..Default::default()
        };
        if let Some(path) = token_file {
            let raw = std::fs::read(path)
                .map_err(|e| format!("reading token file {}: {e}", path.display()))?;
            let f: TokenFile = serde_yaml::from_slice(&raw)
                .map_err(|e| format!("token file {}: {e}", path.display()))?;
            p.source = format!("kubesim token file {}", path.display());
            for t in f.tokens {
                if t.token.is_empty() || t.user.is_empty() {
                    return Err(format!(
                        "token file {}: every token needs a non-empty token and user",
                        path.display()
                    ));
                }
                p.user_rules
                    .entry(t.user.clone())
                    .or_default()
                    .extend(t.rules);
                let id = UserInfo {
                    username: t.user,
                    uid: t.uid,
                    groups: t.groups,
                    extra: t.extra,
                };
                if p.tokens.insert(t.token, id).is_some() {
                    return Err(format!(
                        "token file {}: a token is listed twice",
                        path.display()
                    ));
                }
            }
            for (g, e) in f.groups {
                p.group_rules.entry(g).or_default().extend(e.rules);
            }
            p.anonymous_rules = f.anonymous.unwrap_or_default().rules;
        }
        for spec in anonymous_allow {
            p.anonymous_rules.push(parse_rule_spec(spec)?);
        }
        Ok(p)
    }

    /// The user of a token-file token (without `system:authenticated`, which the authenticator adds).
    pub(crate) fn identity(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }

    /// Whether the token file's rules (or the anonymous policy) allow `user` with `groups` to do `a`.
    pub(crate) fn decide(&self, user: &str, groups: &[String], a: &Attributes) -> Decision {
        // Who the rules come from, in the order a reason names them.
        let mut holders: Vec<(String, &[Rule])> = vec![];
        if let Some(r) = self.user_rules.get(user) {
            holders.push((format!("user {user:?}"), r));
        }
        for g in groups {
            if let Some(r) = self.group_rules.get(g) {
                holders.push((format!("group {g:?}"), r));
            }
        }
        if user == ANONYMOUS_USER || groups.iter().any(|g| g == UNAUTHENTICATED_GROUP) {
            holders.push(("the anonymous policy".into(), &self.anonymous_rules));
        }
        for (who, rules) in &holders {
            if let Some(i) = rules.iter().position(|r| allowed_by(a, r)) {
                return Decision {
                    allowed: true,
                    reason: format!(
                        "{}: rule {} of {who} allows {}",
                        self.source,
                        i + 1,
                        describe(a)
                    ),
                };
            }
        }
        let subject = if user.is_empty() {
            format!("groups {groups:?}")
        } else {
            format!("user {user:?}")
        };
        Decision {
            allowed: false,
            reason: format!(
                "{}: no rule allows {subject} to {}",
                self.source,
                describe(a)
            ),
        }
    }
}

/// The status of a TokenReview for `user` (`None`: the token is unknown).
pub(crate) fn token_review_status(user: Option<UserInfo>, spec: &Value) -> Value {
    let mut status = match user {
        Some(u) => json!({"authenticated": true, "user": u.to_json()}),
        None => json!({"authenticated": false, "user": {}}),
    };
    if let Some(a) = spec.get("audiences").filter(|a| a.is_array()) {
        status["audiences"] = a.clone();
    }
    status
}

/// A review's answer: the request echoed with `status` filled in, as the apiserver returns it.
pub(crate) fn answer(def: &ResourceDef, body: &Value, status: Value) -> Value {
    let mut metadata = body.get("metadata").cloned().unwrap_or(json!({}));
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["creationTimestamp"] = Value::Null;
    let mut out = json!({
        "kind": def.kind,
        "apiVersion": def.api_version(def.storage_version()),
        "metadata": metadata,
        "status": status,
    });
    if def.kind != "SelfSubjectReview" {
        out["spec"] = body.get("spec").cloned().unwrap_or(json!({}));
    }
    out
}

/// Checks a review body and returns its spec.
pub(crate) fn spec_of(def: &ResourceDef, body: &Value) -> ApiResult<Value> {
    check_type(def, body)?;
    Ok(body.get("spec").cloned().unwrap_or(json!({})))
}

/// The token of a TokenReview spec.
pub(crate) fn review_token(spec: &Value) -> ApiResult<&str> {
    match spec.get("token").and_then(Value::as_str).unwrap_or("") {
        "" => Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        )),
        t => Ok(t),
    }
}

/// The attributes an access review asks about; 422 unless exactly one kind of attributes is given.
pub(crate) fn review_attributes(def: &ResourceDef, spec: &Value) -> ApiResult<Attributes> {
    Attributes::from_review(spec).ok_or_else(|| {
        ApiError::invalid(
            &def.kind,
            &def.group,
            "",
            &[(
                "spec.resourceAttributes".into(),
                "FieldValueInvalid",
                "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
            )],
        )
    })
}

/// The user a SubjectAccessReview asks about; 422 when it names neither a user nor a group.
pub(crate) fn review_subject(def: &ResourceDef, spec: &Value) -> ApiResult<UserInfo> {
    let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if user.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            &def.kind,
            &def.group,
            "",
            &[(
                "spec.user".into(),
                "FieldValueInvalid",
                "Invalid value: \"\": at least one of user or group must be specified".into(),
            )],
        ));
    }
    let extra = spec
        .get("extra")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    Ok(UserInfo {
        username: user.to_string(),
        uid: spec.get("uid").and_then(Value::as_str).map(str::to_string),
        groups,
        extra,
    })
}

/// An access review's status from a decision; `denied` is never set (RBAC only allows or has no opinion).
pub(crate) fn access_status(d: &Decision) -> Value {
    let mut s = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        s["reason"] = json!(d.reason);
    }
    s
}

fn allowed_by(a: &Attributes, r: &Rule) -> bool {
    let any = |list: &Option<Vec<String>>, v: &str| {
        list.as_ref()
            .is_none_or(|l| l.iter().any(|p| p == "*" || glob(p, v)))
    };
    if a.resource_request {
        let res = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        r.non_resource_urls.is_none()
            && any(&r.verbs, &a.verb)
            // Groups are names, not patterns: "" must match the core group exactly.
            && r.groups.as_ref().is_none_or(|l| l.iter().any(|g| g == "*" || *g == a.api_group))
            && any(&r.resources, &res)
            && any(&r.namespaces, &a.namespace)
            && any(&r.names, &a.name)
    } else {
        r.non_resource_urls
            .as_ref()
            .is_some_and(|l| l.iter().any(|p| glob(p, &a.path)))
            && any(&r.verbs, &a.verb)
    }
}

fn describe(a: &Attributes) -> String {
    if !a.resource_request {
        return format!("{} {}", a.verb, a.path);
    }
    let mut s = format!("{} {}", a.verb, a.resource);
    if !a.api_group.is_empty() {
        s = format!("{s}.{}", a.api_group);
    }
    if !a.subresource.is_empty() {
        s = format!("{s}/{}", a.subresource);
    }
    if !a.name.is_empty() {
        s = format!("{s} {:?}", a.name);
    }
    if a.namespace.is_empty() {
        format!("{s} (cluster scope)")
    } else {
        format!("{s} in namespace {:?}", a.namespace)
    }
}

fn check_type(def: &ResourceDef, body: &Value) -> ApiResult<()> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON or YAML object",
        ));
    }
    let expected = def.api_version(def.storage_version());
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
        && av != expected
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({expected})"
        )));
    }
    if let Some(k) = body.get("kind").and_then(Value::as_str)
        && k != def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            def.kind
        )));
    }
    Ok(())
}

/// `--anonymous-allow` syntax: `key=a,b;key=c` with keys verbs, resources, groups, namespaces, names and
/// nonResourceURLs (an omitted key matches everything); `*` alone allows every resource request.
fn parse_rule_spec(spec: &str) -> Result<Rule, String> {
    let mut r = Rule::default();
    let spec = spec.trim();
    if spec == "*" {
        return Ok(r);
    }
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("--anonymous-allow {spec:?}: {part:?} is not key=value"))?;
        let list = Some(v.split(',').map(|s| s.trim().to_string()).collect());
        match k.trim() {
            "verbs" => r.verbs = list,
            "resources" => r.resources = list,
            "groups" => r.groups = list,
            "namespaces" => r.namespaces = list,
            "names" => r.names = list,
            "nonResourceURLs" => r.non_resource_urls = list,
            other => {
                return Err(format!(
                    "--anonymous-allow {spec:?}: unknown key {other:?} (verbs, resources, groups, namespaces, names, nonResourceURLs)"
                ));
            }
        }
    }
    Ok(r)
}

/// Shell-style matching: `*` any run of characters, `?` exactly one.
fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    // Where the last `*` was and how much of `s` it has swallowed, to backtrack to.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn def(group: &str, plural: &str) -> ResourceDef {
        let r = Registry::with_builtins();
        (**r.get(&(group.into(), plural.into())).unwrap()).clone()
    }

    fn policy(yaml: &str) -> ReviewPolicy {
        let dir = std::env::temp_dir().join(format!("kubesim-reviews-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.yaml");
        std::fs::write(&path, yaml).unwrap();
        let p = ReviewPolicy::load(Some(&path), &[]).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        p
    }

    fn sar(p: &ReviewPolicy, spec: Value) -> bool {
        let d = def("authorization.k8s.io", "subjectaccessreviews");
        let who = review_subject(&d, &spec).unwrap();
        let a = review_attributes(&d, &spec).unwrap();
        p.decide(&who.username, &who.groups, &a).allowed
    }

    #[test]
    fn globs() {
        assert!(glob("team-*", "team-a"));
        assert!(glob("team-*", "team-"));
        assert!(!glob("team-*", "teams"));
        assert!(glob("*-prod", "db-prod"));
        assert!(glob("a?c*", "abcdef"));
        assert!(glob("*", ""));
        assert!(!glob("team-*", ""));
        assert!(glob("*a*b", "xxaxxab"));
    }

    #[test]
    fn rules_match_verbs_resources_groups_namespaces() {
        let p = policy(
            "tokens:\n- token: t\n  user: alice\n  rules:\n  - namespaces: ['team-*']\n    verbs: [get, create]\n    resources: [statefulsets]\n    groups: [apps]\n",
        );
        let ra = |ns: &str, verb: &str, group: &str, res: &str| json!({"user": "alice", "resourceAttributes": {"namespace": ns, "verb": verb, "group": group, "resource": res}});
        assert!(sar(&p, ra("team-a", "create", "apps", "statefulsets")));
        assert!(!sar(&p, ra("other", "create", "apps", "statefulsets")));
        assert!(!sar(&p, ra("team-a", "delete", "apps", "statefulsets")));
        assert!(!sar(&p, ra("team-a", "create", "", "statefulsets")));
        assert!(
            !sar(&p, ra("", "create", "apps", "statefulsets")),
            "cluster scope is not team-*"
        );
        assert!(!sar(
            &p,
            json!({"user": "bob", "resourceAttributes": {"namespace": "team-a", "verb": "get", "group": "apps", "resource": "statefulsets"}})
        ));
    }

    #[test]
    fn anonymous_spec_and_non_resource_urls() {
        let r = parse_rule_spec("verbs=get,list; resources=pods; groups=").unwrap();
        assert_eq!(r.verbs, Some(vec!["get".into(), "list".into()]));
        assert_eq!(r.groups, Some(vec!["".into()]));
        assert!(parse_rule_spec("colour=blue").is_err());
        let p = ReviewPolicy::load(None, &["verbs=get;nonResourceURLs=/healthz".into()]).unwrap();
        assert!(sar(
            &p,
            json!({"user": "system:anonymous", "nonResourceAttributes": {"path": "/healthz", "verb": "get"}})
        ));
        assert!(!sar(
            &p,
            json!({"user": "system:anonymous", "resourceAttributes": {"verb": "get", "resource": "pods"}})
        ));
        assert!(!sar(
            &p,
            json!({"user": "alice", "nonResourceAttributes": {"path": "/healthz", "verb": "get"}})
        ));
    }
}
