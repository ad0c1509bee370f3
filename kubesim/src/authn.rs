//! Authentication: who a request comes from. A bearer token is the admin token of the kubeconfig kubesim writes,
//! a token of the `--token-file`, or a ServiceAccount token issued through the TokenRequest subresource
//! (`POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`, what `kubectl create token` calls); a request
//! without one is `system:anonymous`; an unknown token gets 401. `Impersonate-User`/`-Group`/`-Uid` headers
//! (`kubectl --as`) switch to another identity when the caller may `impersonate` it.
//!
//! ServiceAccount tokens are JWTs in form (header, upstream's claims, an opaque third part) so that tools which
//! decode them see what they expect, but kubesim checks them by lookup, not signature: a token is valid while it
//! has not expired, its ServiceAccount still exists with the same uid, and the object it is bound to (a Pod or
//! Secret, when `boundObjectRef` names one) still exists. Issued tokens live in memory: a restart forgets them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::apierror::{ApiError, ApiResult};
use crate::meta;
use crate::store::{Inner, Store};

/// The user the admin token stands for; `system:masters` is bound to `cluster-admin`.
pub(crate) const ADMIN_USER: &str = "kubesim-admin";
pub(crate) const MASTERS_GROUP: &str = "system:masters";
pub(crate) const ANONYMOUS_USER: &str = "system:anonymous";
pub(crate) const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub(crate) const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The issuer and default audience of ServiceAccount tokens, as a cluster with default flags has them.
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Upstream's default and bounds for `spec.expirationSeconds`.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
/// Issued tokens kept at most; the oldest expired ones go first, then the oldest.
const MAX_ISSUED: usize = 100_000;

/// Who a request or a review is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UserInfo {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub(crate) fn anonymous() -> Self {
        UserInfo {
            username: ANONYMOUS_USER.into(),
            groups: vec![UNAUTHENTICATED_GROUP.into()],
            ..Default::default()
        }
    }

    /// Adds `system:authenticated` (and the ServiceAccount groups for a ServiceAccount user), as the
    /// apiserver's authenticators do.
    pub(crate) fn authenticated(mut self) -> Self {
        if let Some(ns) = service_account_namespace(&self.username) {
            for g in [
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ] {
                if !self.groups.contains(&g) {
                    self.groups.push(g);
                }
            }
        }
        if !self.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.into());
        }
        self
    }

    /// The `userInfo` of TokenReview and SelfSubjectReview statuses.
    pub(crate) fn to_json(&self) -> Value {
        let mut u = json!({"username": self.username, "groups": self.groups});
        if let Some(uid) = &self.uid {
            u["uid"] = json!(uid);
        }
        if !self.extra.is_empty() {
            u["extra"] = json!(self.extra);
        }
        u
    }
}

/// `system:serviceaccount:<ns>:<name>` → `<ns>`.
fn service_account_namespace(user: &str) -> Option<&str> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty()).then_some(ns)
}

/// A ServiceAccount token kubesim issued.
#[derive(Debug, Clone)]
struct Issued {
    namespace: String,
    name: String,
    sa_uid: String,
    /// `(resource plural, name, uid)` of the bound Pod or Secret.
    bound: Option<(String, String, String)>,
    expires: jiff::Timestamp,
    jti: String,
}

/// The admin token and the ServiceAccount tokens issued so far.
#[derive(Debug)]
pub(crate) struct Authenticator {
    admin_token: String,
    issued: Mutex<HashMap<String, Issued>>,
}

impl Authenticator {
    pub(crate) fn new(admin_token: String) -> Self {
        Authenticator {
            admin_token,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Who `token` stands for, if anyone: the admin, an issued ServiceAccount token still valid, or (through
    /// `static_token`) a token of the token file.
    pub(crate) fn authenticate_token(
        &self,
        store: &Store,
        token: &str,
        static_token: impl FnOnce(&str) -> Option<UserInfo>,
    ) -> Option<UserInfo> {
        if token.is_empty() {
            return None;
        }
        if token == self.admin_token {
            return Some(
                UserInfo {
                    username: ADMIN_USER.into(),
                    groups: vec![MASTERS_GROUP.into()],
                    ..Default::default()
                }
                .authenticated(),
            );
        }
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        match issued {
            // Only a ServiceAccount token needs the store (its ServiceAccount and bound object must still exist).
            Some(t) => self.service_account_user(&store.lock(), &t),
            None => static_token(token).map(UserInfo::authenticated),
        }
    }

    fn service_account_user(&self, g: &Inner, t: &Issued) -> Option<UserInfo> {
        if jiff::Timestamp::now() >= t.expires {
            return None;
        }
        let sa = g
            .get(&g.def("", "serviceaccounts"), &t.namespace, &t.name)
            .ok()?;
        if meta::uid(&sa) != t.sa_uid || sa.pointer("/metadata/deletionTimestamp").is_some() {
            return None;
        }
        let mut extra = BTreeMap::new();
        if let Some((plural, name, uid)) = &t.bound {
            let o = g.get(&g.def("", plural), &t.namespace, name).ok()?;
            if meta::uid(&o) != uid {
                return None;
            }
            let key = if plural == "pods" { "pod" } else { "secret" };
            extra.insert(
                format!("authentication.kubernetes.io/{key}-name"),
                vec![name.clone()],
            );
            extra.insert(
                format!("authentication.kubernetes.io/{key}-uid"),
                vec![uid.clone()],
            );
        }
        extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={}", t.jti)],
        );
        Some(
            UserInfo {
                username: format!("system:serviceaccount:{}:{}", t.namespace, t.name),
                uid: Some(t.sa_uid.clone()),
                groups: vec![],
                extra,
            }
            .authenticated(),
        )
    }

    /// Answers a TokenRequest for the ServiceAccount `ns/name`: validates the spec as upstream does, issues a
    /// token and returns the TokenRequest with its status.
    pub(crate) fn issue(&self, g: &Inner, ns: &str, name: &str, body: Value) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a TokenRequest object",
            ));
        }
        if let Some(k) = body.get("kind").and_then(Value::as_str)
            && k != "TokenRequest"
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind (TokenRequest)"
            )));
        }
        let sa_def = g.def("", "serviceaccounts");
        let sa = g.get(&sa_def, ns, name)?;
        let spec = body.get("spec").cloned().unwrap_or(json!({}));
        let invalid = |field: &str, value: String, why: &str| {
            ApiError::invalid(
                "TokenRequest",
                "authentication.k8s.io",
                name,
                &[(
                    field.to_string(),
                    "FieldValueInvalid",
                    format!("Invalid value: {value}: {why}"),
                )],
            )
        };
        let expiration = spec
            .get("expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_EXPIRATION);
        if expiration < MIN_EXPIRATION {
            return Err(invalid(
                "spec.expirationSeconds",
                expiration.to_string(),
                "may not specify a duration less than 10 minutes",
            ));
        }
        if expiration > MAX_EXPIRATION {
            return Err(invalid(
                "spec.expirationSeconds",
                expiration.to_string(),
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
        let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => vec![ISSUER.to_string()],
        };
        let bound = match spec.get("boundObjectRef").filter(|b| b.is_object()) {
            None => None,
            Some(b) => {
                let kind = b.get("kind").and_then(Value::as_str).unwrap_or("");
                let plural = match kind {
                    "Pod" => "pods",
                    "Secret" => "secrets",
                    _ => {
                        return Err(invalid(
                            "spec.boundObjectRef.kind",
                            format!("{kind:?}"),
                            "must be one of Pod, Secret",
                        ));
                    }
                };
                let bname = b.get("name").and_then(Value::as_str).unwrap_or("");
                let o = g.get(&g.def("", plural), ns, bname)?;
                if let Some(want) = b.get("uid").and_then(Value::as_str)
                    && want != meta::uid(&o)
                {
                    return Err(ApiError::conflict(
                        &g.def("", plural),
                        bname,
                        &format!(
                            "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                        ),
                    ));
                }
                Some((
                    plural.to_string(),
                    bname.to_string(),
                    meta::uid(&o).to_string(),
                ))
            }
        };
        let now = jiff::Timestamp::now();
        let expires = now + jiff::SignedDuration::from_secs(expiration);
        let jti = uuid::Uuid::new_v4().to_string();
        let sa_uid = meta::uid(&sa).to_string();
        let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": sa_uid}});
        if let Some((plural, bname, buid)) = &bound {
            let key = if plural == "pods" { "pod" } else { "secret" };
            k8s[key] = json!({"name": bname, "uid": buid});
        }
        let claims = json!({
            "aud": audiences, "exp": expires.as_second(), "iat": now.as_second(), "iss": ISSUER,
            "jti": jti, "kubernetes.io": k8s, "nbf": now.as_second(),
            "sub": format!("system:serviceaccount:{ns}:{name}"),
        });
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"kubesim"}"#),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default()),
            URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
        );
        {
            let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
            if issued.len() >= MAX_ISSUED {
                issued.retain(|_, t| t.expires > now);
            }
            if issued.len() >= MAX_ISSUED
                && let Some(oldest) = issued
                    .iter()
                    .min_by_key(|(_, t)| t.expires)
                    .map(|(k, _)| k.clone())
            {
                issued.remove(&oldest);
            }
            issued.insert(
                token.clone(),
                Issued {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    sa_uid,
                    bound,
                    expires,
                    jti,
                },
            );
        }
        let mut out_spec = spec;
        out_spec["audiences"] = json!(audiences);
        out_spec["expirationSeconds"] = json!(expiration);
        if out_spec.get("boundObjectRef").is_none() {
            out_spec["boundObjectRef"] = Value::Null;
        }
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": Value::Null},
            "spec": out_spec,
            "status": {"token": token, "expirationTimestamp": meta::format_time(expires)},
        }))
    }
}

/// What `Impersonate-*` headers ask for: a user, groups, a uid and extra values.
#[derive(Debug, Default)]
pub(crate) struct Impersonation {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    pub(crate) fn from_headers(h: &http::HeaderMap) -> ApiResult<Option<Self>> {
        let mut imp = Impersonation::default();
        let mut any = false;
        for (k, v) in h {
            let k = k.as_str();
            let Ok(v) = v.to_str() else { continue };
            if k == "impersonate-user" {
                imp.user = Some(v.to_string());
            } else if k == "impersonate-group" {
                imp.groups.push(v.to_string());
            } else if k == "impersonate-uid" {
                imp.uid = Some(v.to_string());
            } else if let Some(key) = k.strip_prefix("impersonate-extra-") {
                imp.extra
                    .entry(crate::server::percent_decode(key))
                    .or_default()
                    .push(v.to_string());
            } else {
                continue;
            }
            any = true;
        }
        if !any {
            return Ok(None);
        }
        if imp.user.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::internal(
                "requested [] without impersonating a user",
            ));
        }
        Ok(Some(imp))
    }

    /// The checks the caller must pass, as `(resource, subresource, namespace, name)` of the `impersonate` verb
    /// (in `authentication.k8s.io` for uids and extras, the core group otherwise; upstream's
    /// `WithImpersonation`), and the identity that results.
    pub(crate) fn checks_and_user(&self) -> (Vec<ImpersonationCheck>, UserInfo) {
        let user = self.user.clone().unwrap_or_default();
        let mut checks = vec![];
        match service_account_namespace(&user) {
            Some(ns) => {
                let name = user.rsplit(':').next().unwrap_or("").to_string();
                checks.push(check("", "serviceaccounts", "", ns, &name));
            }
            None => checks.push(check("", "users", "", "", &user)),
        }
        for g in &self.groups {
            checks.push(check("", "groups", "", "", g));
        }
        if let Some(uid) = &self.uid {
            checks.push(check("authentication.k8s.io", "uids", "", "", uid));
        }
        for (k, vs) in &self.extra {
            for v in vs {
                checks.push(check("authentication.k8s.io", "userextras", k, "", v));
            }
        }
        let info = UserInfo {
            username: user.clone(),
            uid: self.uid.clone(),
            groups: self.groups.clone(),
            extra: self.extra.clone(),
        };
        let info = if user == ANONYMOUS_USER {
            info
        } else {
            info.authenticated()
        };
        (checks, info)
    }
}

/// One `impersonate` permission an impersonating caller needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImpersonationCheck {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

fn check(
    group: &'static str,
    resource: &'static str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> ImpersonationCheck {
    ImpersonationCheck {
        group,
        resource,
        subresource: subresource.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The bearer token of an `Authorization` header, if there is one.
pub(crate) fn bearer(h: &http::HeaderMap) -> Option<&str> {
    let v = h.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
