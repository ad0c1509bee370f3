//! The HTTP face of kubesim: URL routing, query and body parsing, content negotiation (JSON, Table,
//! PartialObjectMetadata, aggregated discovery) and the verbs, over hyper's HTTP/1.1 server.
//!
//! It never changes objects itself: every write goes through [`crate::store`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Authorization;
use crate::apierror::{ApiError, ApiResult};
use crate::authn::{self, Authenticator, Impersonation, UserInfo};
use crate::discovery;
use crate::faults::FaultCache;
use crate::fieldmanager::Scope;
use crate::meta;
use crate::rbac::{self, Attributes, Decision};
use crate::registry::{Backend, ResourceDef};
use crate::reviews::{self, ReviewPolicy};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{DeleteOpts, DeleteOutcome, PatchBody, Propagation, Store, WriteOpts};
use crate::table;
use crate::watch::{self, WatchRequest};

/// The response body type: whole documents and watch streams alike.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// The largest request body accepted; upstream's limit is 3 MiB.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// How many paginated list snapshots are kept for `continue` tokens (for `Options::continue_ttl` each).
const SNAPSHOT_SLOTS: usize = 256;

/// A consistent list result being paged through with `continue`.
struct Snapshot {
    rv: u64,
    items: Arc<Vec<Arc<Value>>>,
    created: Instant,
}

/// Shared by every request.
pub(crate) struct Ctx {
    pub store: Arc<Store>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub bookmark_interval: Duration,
    snapshots: Mutex<HashMap<String, Snapshot>>,
    /// API faults from the `kubesim-faults` ConfigMap, parsed once per version of it.
    faults: FaultCache,
    /// The token file: static users, and the rules SubjectAccessReviews (and, under RBAC, requests) fall back on.
    reviews: ReviewPolicy,
    /// The admin token and issued ServiceAccount tokens.
    authn: Authenticator,
    authorization: Authorization,
    /// How long a paginated list's snapshot serves its continue tokens.
    pub continue_ttl: Duration,
    /// The container runtime (`--kubelet containers`): its containers' logs answer `pods/log`.
    pub runtime: Option<Arc<crate::realpods::Runtime>>,
    /// Where authorization decisions are recorded (`Options::audit`).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
}

impl Ctx {
    pub(crate) fn new(
        store: Arc<Store>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        bookmark_interval: Duration,
    ) -> Self {
        Ctx {
            store,
            shutdown,
            bookmark_interval,
            snapshots: Mutex::new(HashMap::new()),
            faults: FaultCache::default(),
            reviews: ReviewPolicy::default(),
            authn: Authenticator::new(String::new()),
            authorization: Authorization::AlwaysAllow,
            continue_ttl: Duration::from_secs(300),
            runtime: None,
            audit: None,
        }
    }

    /// Answers reviews from `policy` instead of denying them all.
    pub(crate) fn with_reviews(mut self, policy: ReviewPolicy) -> Self {
        self.reviews = policy;
        self
    }

    pub(crate) fn with_auth(mut self, authn: Authenticator, authorization: Authorization) -> Self {
        self.authn = authn;
        self.authorization = authorization;
        self
    }

    /// Who a token stands for: the admin, a ServiceAccount token, or a token-file user.
    fn token_user(&self, token: &str) -> Option<UserInfo> {
        self.authn
            .authenticate_token(&self.store, token, |t| self.reviews.identity(t))
    }

    /// The caller of a request: its bearer token's user (401 for an unknown token) or `system:anonymous`, then
    /// whoever `Impersonate-*` headers name, if the caller may impersonate them.
    fn authenticate(&self, headers: &http::HeaderMap) -> ApiResult<UserInfo> {
        let user = match authn::bearer(headers) {
            Some(t) => self.token_user(t).ok_or_else(ApiError::unauthorized)?,
            None => UserInfo::anonymous(),
        };
        let Some(imp) = Impersonation::from_headers(headers)? else {
            return Ok(user);
        };
        let (checks, as_user) = imp.checks_and_user();
        for c in checks {
            let a = Attributes {
                verb: "impersonate".into(),
                resource_request: true,
                api_group: c.group.into(),
                resource: c.resource.into(),
                subresource: c.subresource,
                namespace: c.namespace,
                name: c.name,
                ..Default::default()
            };
            let d = self.decide(&user, &a);
            if !d.allowed {
                return Err(a.forbidden(&user.username, &d.reason));
            }
        }
        Ok(as_user)
    }

    /// The authorizer chain: everything under AlwaysAllow; under RBAC, RBAC then the token file's rules.
    pub(crate) fn decide(&self, user: &UserInfo, a: &Attributes) -> Decision {
        match self.authorization {
            Authorization::AlwaysAllow => Decision {
                allowed: true,
                reason: String::new(),
            },
            Authorization::Rbac => {
                let d = rbac::authorize(&self.store.lock(), user, a);
                if d.allowed {
                    return d;
                }
                let f = self.reviews.decide(&user.username, &user.groups, a);
                if f.allowed { f } else { d }
            }
        }
    }
}

/// The name an exact `metadata.name=` term of the field selector asks for (upstream's `RequiresExactMatch`).
fn field_selector_name(q: &Query) -> Option<String> {
    FieldSelector::parse(q.get("fieldSelector")?)
        .ok()?
        .exact("metadata.name")
        .map(str::to_string)
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// A JSON response from bytes already serialized.
fn json_bytes(code: u16, body: Vec<u8>, content_type: &str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

/// Whether the client asks for protobuf first (`application/vnd.kubernetes.protobuf`, not as a Table).
fn wants_protobuf(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .map(|c| c.replace(' ', ""))
        .is_some_and(|c| {
            c == crate::protobuf::MEDIA_TYPE
                || (c.starts_with(crate::protobuf::MEDIA_TYPE) && !c.contains("as="))
        })
}

/// An object for a response: in the protobuf envelope when the client asks for it first and the kind has a
/// schema, in JSON otherwise.
fn object_response(accept: &str, code: u16, v: &Value) -> Response<Body> {
    if wants_protobuf(accept)
        && let Some(bytes) = crate::protobuf::encode(v)
    {
        return json_bytes(code, bytes, crate::protobuf::MEDIA_TYPE);
    }
    json_response(code, v)
}

/// A JSON response; like upstream's encoder, the document ends with a newline.
pub(crate) fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    json_bytes(code, body, "application/json")
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_bytes(
        e.code,
        crate::apierror::status_bytes(&e.to_status()),
        "application/json",
    );
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Query parameters; kube-rs sends `?&k=v` and form-encodes spaces as `+`, both handled by form_urlencoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> ApiResult<bool> {
        match self.get(k) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "invalid boolean value {v:?} for parameter {k}"
            ))),
        }
    }
}

/// How the client wants objects rendered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Rendering {
    Full,
    Table,
    Metadata,
}

fn rendering(accept: &str) -> Rendering {
    // The Accept header lists preferences in order; take the first clause we can serve.
    for clause in accept.split(',') {
        let c = clause.replace(' ', "");
        if c.contains("as=Table") && c.contains("g=meta.k8s.io") {
            return Rendering::Table;
        }
        if c.contains("as=PartialObjectMetadata") {
            return Rendering::Metadata;
        }
        if c.starts_with("application/json") || c.starts_with("*/*") || c.is_empty() {
            return Rendering::Full;
        }
    }
    Rendering::Full
}

/// The object as served at `version` (CRDs serve several versions of one stored object).
pub(crate) fn present<'a>(o: &'a Arc<Value>, def: &ResourceDef, version: &str) -> Cow<'a, Value> {
    if version == def.storage_version() {
        Cow::Borrowed(&**o)
    } else {
        let mut v = (**o).clone();
        v["apiVersion"] = json!(def.api_version(version));
        Cow::Owned(v)
    }
}

pub(crate) fn partial_metadata(o: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Renders one object for a response.
fn render_one(o: &Arc<Value>, def: &ResourceDef, version: &str, r: Rendering, q: &Query) -> Value {
    match r {
        Rendering::Full => present(o, def, version).into_owned(),
        Rendering::Metadata => partial_metadata(o),
        Rendering::Table => {
            let obj = present(o, def, version);
            table::table(
                &def.kind,
                &def.group,
                &[&*obj],
                def.printer_columns.as_deref(),
                q.get("includeObject").unwrap_or("Metadata"),
                json!({"resourceVersion": meta::str_field(o, "resourceVersion")}),
                jiff::Timestamp::now(),
            )
        }
    }
}

/// The routed target of a resource URL.
pub(crate) struct Target {
    pub def: Arc<ResourceDef>,
    pub version: String,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

fn decode(seg: &str) -> String {
    percent_decode(seg)
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 3 <= b.len()
            && let Some(h) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|x| u8::from_str_radix(x, 16).ok())
        {
            out.push(h);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The target of a resource URL, and the faults ConfigMap as it is now (read under the same lock, so that the
/// fault hook costs no extra acquisition of the store's lock).
fn route_resource(
    ctx: &Ctx,
    group: &str,
    version: &str,
    rest: &[&str],
    path: &str,
) -> ApiResult<(Target, Option<Arc<Value>>)> {
    let g = ctx.store.lock();
    let reg = &g.registry;
    let (ns, plural, name, sub, extra) = if rest.len() >= 3
        && rest[0] == "namespaces"
        && reg
            .lookup(group, version, rest[2])
            .is_some_and(|d| d.namespaced)
    {
        (
            Some(decode(rest[1])),
            rest[2],
            rest.get(3).map(|s| decode(s)),
            rest.get(4).map(|s| s.to_string()),
            rest.len() > 5,
        )
    } else {
        (
            None,
            rest[0],
            rest.get(1).map(|s| decode(s)),
            rest.get(2).map(|s| s.to_string()),
            rest.len() > 3,
        )
    };
    let def = reg
        .lookup(group, version, plural)
        .ok_or_else(|| ApiError::no_route(path))?;
    if extra || (ns.is_some() && !def.namespaced) {
        return Err(ApiError::no_route(path));
    }
    if let Some(s) = &sub
        && !def.subresources().iter().any(|(name, _, _)| name == s)
    {
        return Err(ApiError::no_route(path));
    }
    let target = Target {
        def,
        version: version.to_string(),
        ns,
        name,
        sub,
    };
    Ok((target, ctx.faults.configmap(&g)))
}

/// Entry point for every request.
pub(crate) async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match route(&ctx, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    Ok(resp)
}

async fn route(ctx: &Arc<Ctx>, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let path = req.uri().path().to_string();
    let q = Query::parse(req.uri().query());
    let user = ctx.authenticate(req.headers())?;
    if ctx.authorization != Authorization::AlwaysAllow {
        let attrs = Attributes::from_request(
            req.method().as_str(),
            &path,
            q.flag("watch").unwrap_or(false),
            field_selector_name(&q).as_deref(),
        );
        let d = ctx.decide(&user, &attrs);
        if let Some(log) = &ctx.audit {
            log.record(&user, &attrs, d.allowed);
        }
        if !d.allowed {
            return Err(attrs.forbidden(&user.username, &d.reason));
        }
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get_only = |m: &Method| -> ApiResult<()> {
        if m == Method::GET || m == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    match segs.as_slice() {
        [] => {
            get_only(req.method())?;
            Ok(json_response(
                200,
                &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]}),
            ))
        }
        ["version"] => {
            get_only(req.method())?;
            Ok(json_response(200, &discovery::version()))
        }
        ["healthz"] | ["livez"] | ["readyz"] => {
            let mut r = Response::new(full("ok"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(r)
        }
        ["api"] => {
            get_only(req.method())?;
            if discovery::wants_aggregated(&accept) {
                let g = ctx.store.lock();
                let body = serde_json::to_vec(&discovery::aggregated(&g.registry, true))
                    .unwrap_or_default();
                Ok(json_bytes(200, body, discovery::AGGREGATED_CT))
            } else {
                Ok(json_response(200, &discovery::core_versions()))
            }
        }
        ["apis"] => {
            get_only(req.method())?;
            let g = ctx.store.lock();
            if discovery::wants_aggregated(&accept) {
                let body = serde_json::to_vec(&discovery::aggregated(&g.registry, false))
                    .unwrap_or_default();
                Ok(json_bytes(200, body, discovery::AGGREGATED_CT))
            } else {
                Ok(json_response(200, &discovery::group_list(&g.registry)))
            }
        }
        ["api", v] => {
            get_only(req.method())?;
            let g = ctx.store.lock();
            discovery::resource_list(&g.registry, "", v)
                .map(|b| json_response(200, &b))
                .ok_or_else(|| ApiError::no_route(&path))
        }
        ["apis", grp] => {
            get_only(req.method())?;
            let g = ctx.store.lock();
            discovery::group(&g.registry, grp)
                .map(|b| json_response(200, &b))
                .ok_or_else(|| ApiError::no_route(&path))
        }
        ["apis", grp, v] => {
            get_only(req.method())?;
            let g = ctx.store.lock();
            discovery::resource_list(&g.registry, grp, v)
                .map(|b| json_response(200, &b))
                .ok_or_else(|| ApiError::no_route(&path))
        }
        ["openapi", "v3"] => {
            let g = ctx.store.lock();
            Ok(json_response(200, &discovery::openapi_root(&g.registry)))
        }
        ["openapi", "v3", "api", v] => {
            // A copy of the registry (shared definitions), so that building a document's schemas (the first time
            // for a group version, from k8s-openapi) does not hold the store's lock.
            let registry = ctx.store.lock().registry.clone();
            discovery::openapi_group_version(&registry, "", v)
                .map(|b| json_response(200, &b))
                .ok_or_else(|| ApiError::no_route(&path))
        }
        ["openapi", "v3", "apis", grp, v] => {
            // A copy of the registry (shared definitions), so that building a document's schemas (the first time
            // for a group version, from k8s-openapi) does not hold the store's lock.
            let registry = ctx.store.lock().registry.clone();
            discovery::openapi_group_version(&registry, grp, v)
                .map(|b| json_response(200, &b))
                .ok_or_else(|| ApiError::no_route(&path))
        }
        ["api", v, rest @ ..] => {
            let (t, faults) = route_resource(ctx, "", v, rest, &path)?;
            serve_resource(ctx, req, t, q, &accept, faults, &user).await
        }
        ["apis", grp, v, rest @ ..] => {
            let (t, faults) = route_resource(ctx, grp, v, rest, &path)?;
            serve_resource(ctx, req, t, q, &accept, faults, &user).await
        }
        _ => Err(ApiError::no_route(&path)),
    }
}

/// A resource request: injected API faults first (they stand in for an apiserver in trouble), then the store or the
/// module that computes the resource.
async fn serve_resource(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    t: Target,
    q: Query,
    accept: &str,
    faults_configmap: Option<Arc<Value>>,
    user: &UserInfo,
) -> ApiResult<Response<Body>> {
    let agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let plan = ctx
        .faults
        .plan(faults_configmap, &t, req.method(), &q, &agent);
    if let Some(p) = &plan {
        if !p.delay.is_zero() {
            tokio::time::sleep(p.delay).await;
        }
        if let Some(e) = &p.error {
            return Err(e.clone());
        }
    }
    let resp = match t.def.backend {
        Backend::Store => resource(ctx, req, t, q, accept).await?,
        Backend::PodMetrics | Backend::NodeMetrics => {
            crate::metrics_api::handle(ctx, req.method(), &t, &q, rendering(accept))?
        }
        Backend::Review => {
            if req.method() != Method::POST || t.name.is_some() {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
            let ct = content_type(&req);
            let body = read_body(req).await?;
            let doc = object_body(&ct, &body)?;
            json_response(201, &review(ctx, &t, user, &doc)?)
        }
    };
    Ok(match plan.and_then(|p| p.watch_cut) {
        Some(after) => end_body_after(resp, after),
        None => resp,
    })
}

/// Answers a created review: who a token is, whether a user (or the caller) may do something, what the caller
/// may do in a namespace, or who the caller is.
fn review(ctx: &Ctx, t: &Target, user: &UserInfo, doc: &Value) -> ApiResult<Value> {
    let def = &t.def;
    let spec = reviews::spec_of(def, doc)?;
    let status = match def.kind.as_str() {
        "TokenReview" => {
            let token = reviews::review_token(&spec)?;
            reviews::token_review_status(ctx.token_user(token), &spec)
        }
        "SelfSubjectReview" => json!({"userInfo": user.to_json()}),
        "SelfSubjectAccessReview" => {
            let a = reviews::review_attributes(def, &spec)?;
            reviews::access_status(&ctx.decide(user, &a))
        }
        "SelfSubjectRulesReview" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            match ctx.authorization {
                Authorization::AlwaysAllow => json!({
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": false,
                }),
                Authorization::Rbac => rbac::rules_review(&ctx.store.lock(), user, ns),
            }
        }
        _ => {
            let who = reviews::review_subject(def, &spec)?;
            let mut a = reviews::review_attributes(def, &spec)?;
            if def.kind == "LocalSubjectAccessReview" {
                let ns = t.ns.clone().unwrap_or_default();
                if !a.resource_request {
                    return Err(ApiError::invalid(
                        &def.kind,
                        &def.group,
                        "",
                        &[(
                            "spec.nonResourceAttributes".into(),
                            "FieldValueInvalid",
                            "Invalid value: \"\": disallowed on this kind of request".into(),
                        )],
                    ));
                }
                if a.namespace.is_empty() {
                    a.namespace = ns;
                } else if a.namespace != ns {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
            }
            let d = match ctx.authorization {
                Authorization::Rbac => ctx.decide(&who, &a),
                Authorization::AlwaysAllow => ctx.reviews.decide(&who.username, &who.groups, &a),
            };
            reviews::access_status(&d)
        }
    };
    Ok(reviews::answer(def, doc, status))
}

/// Ends a (watch) response body after `after`, without the final bookmark a server timeout sends: the client sees
/// the stream stop mid-flight. Dropping the inner body closes the watch's channel, which stops its task.
fn end_body_after(resp: Response<Body>, after: Duration) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let frames = futures::StreamExt::take_until(
        http_body_util::BodyStream::new(body),
        tokio::time::sleep(after),
    );
    Response::from_parts(parts, StreamBody::new(frames).boxed())
}

async fn read_body(req: Request<Incoming>) -> ApiResult<Bytes> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError {
                    code: 413,
                    reason: "RequestEntityTooLarge",
                    message: "Request entity too large: limit is 3145728".into(),
                    details: None,
                    retry_after: None,
                    continue_token: None,
                })
            } else {
                Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )))
            }
        }
    }
}

/// Media types a create or replace body may come in.
fn is_object_media_type(ct: &str) -> bool {
    matches!(
        ct,
        "application/json" | "application/yaml" | "" | crate::protobuf::MEDIA_TYPE
    )
}

/// The object of a create or replace body: JSON, YAML or the protobuf envelope.
fn object_body(ct: &str, body: &[u8]) -> ApiResult<Value> {
    match ct {
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(body),
        _ if is_object_media_type(ct) => parse_doc(body, true),
        _ => Err(ApiError::unsupported_media_type(ct)),
    }
}

fn parse_doc(bytes: &[u8], yaml_ok: bool) -> ApiResult<Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(je) if yaml_ok => serde_yaml::from_slice::<Value>(bytes).map_err(|ye| {
            ApiError::bad_request(format!("error decoding YAML: {ye} (as JSON: {je})"))
        }),
        Err(je) => Err(ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: {je}"
        ))),
    }
}

fn content_type(req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn user_agent_manager(req: &Request<Incoming>) -> String {
    // Upstream's default field manager is the User-Agent up to its first '/'.
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let m = ua.split('/').next().unwrap_or("unknown");
    m.chars().take(128).collect()
}

fn write_opts(q: &Query, req: &Request<Incoming>, is_apply: bool) -> ApiResult<WriteOpts> {
    let mut dry_run = false;
    for v in q.all("dryRun") {
        match v {
            "All" => dry_run = true,
            "" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dryRun value {other:?}: only \"All\" is supported"
                )));
            }
        }
    }
    let force = q.flag("force")?;
    if force && !is_apply {
        return Err(ApiError::unprocessable(
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    if let Some(fv) = q.get("fieldValidation")
        && !matches!(fv, "" | "Ignore" | "Warn" | "Strict")
    {
        return Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {fv:?}"
        )));
    }
    let manager = match q.get("fieldManager") {
        Some(m) if !m.is_empty() => {
            if m.len() > 128 {
                return Err(ApiError::unprocessable(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be longer than 128",
                ));
            }
            m.to_string()
        }
        _ if is_apply => {
            return Err(ApiError::unprocessable(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        _ => user_agent_manager(req),
    };
    Ok(WriteOpts {
        dry_run,
        manager,
        force,
    })
}

fn delete_opts(q: &Query, body: &[u8]) -> ApiResult<DeleteOpts> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let policy = b
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").map(str::to_string));
    let mut propagation = match policy.as_deref() {
        None | Some("") => None,
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(p) => {
            return Err(ApiError::unprocessable(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    let orphan = b
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| q.get("orphanDependents").map(|v| v == "true"));
    if let Some(o) = orphan {
        if propagation.is_some() {
            return Err(ApiError::unprocessable(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: orphanDependents and propagationPolicy cannot be both set",
            ));
        }
        propagation = Some(if o {
            Propagation::Orphan
        } else {
            Propagation::Background
        });
    }
    let grace = b
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| q.get("gracePeriodSeconds").and_then(|v| v.parse().ok()));
    let dry_run = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"))
        || q.all("dryRun").any(|v| v == "All");
    Ok(DeleteOpts {
        propagation,
        grace_seconds: grace,
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
    })
}

fn status_success(def: &ResourceDef, o: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": meta::name(o), "group": def.group, "kind": def.plural, "uid": meta::uid(o)}
    })
}

/// Stores whose DELETE returns the deleted object rather than a Status (upstream `ReturnDeletedObject`).
/// Whether a DELETE that removed the object answers with it rather than a `Status` (upstream's
/// `ReturnDeletedObject` stores).
fn returns_deleted_object(def: &ResourceDef) -> bool {
    (def.group.is_empty()
        && matches!(
            def.plural.as_str(),
            "pods"
                | "serviceaccounts"
                | "services"
                | "persistentvolumeclaims"
                | "persistentvolumes"
                | "resourcequotas"
        ))
        || (def.group == "storage.k8s.io" && def.plural == "storageclasses")
        || def.from_crd
}

async fn resource(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    t: Target,
    q: Query,
    accept: &str,
) -> ApiResult<Response<Body>> {
    let render = rendering(accept);
    let method = req.method().clone();
    let ns = t.ns.clone().unwrap_or_default();
    match (&method, t.name.as_deref(), t.sub.as_deref()) {
        (&Method::GET, None, _) => {
            if q.flag("watch")? {
                let wr = WatchRequest::from_query(&q, &t, render)?;
                Ok(watch::serve(ctx.clone(), wr))
            } else {
                list(ctx, &t, &q, render, wants_protobuf(accept))
            }
        }
        (&Method::POST, Some(name), Some("token")) => {
            let ct = content_type(&req);
            let body = read_body(req).await?;
            let doc = object_body(&ct, &body)?;
            let out = ctx.authn.issue(&ctx.store.lock(), &ns, name, doc)?;
            Ok(json_response(201, &out))
        }
        (&Method::POST, None, _) => {
            let ct = content_type(&req);
            let opts = write_opts(&q, &req, false)?;
            let body = read_body(req).await?;
            let doc = object_body(&ct, &body)?;
            let obj = ctx
                .store
                .write(|g| g.create(&t.def, t.ns.as_deref(), doc, &opts))?;
            Ok(object_response(
                accept,
                201,
                &render_one(&obj, &t.def, &t.version, render, &q),
            ))
        }
        (&Method::DELETE, None, _) => {
            let body = read_body(req).await?;
            let d = delete_opts(&q, &body)?;
            let (ls, fs) = selectors(&q)?;
            let items = ctx.store.write(|g| {
                let mut out = vec![];
                for o in g.list(&t.def, t.ns.as_deref()) {
                    if !ls.matches(o.pointer("/metadata/labels").and_then(Value::as_object))
                        || !fs.matches(&o)
                    {
                        continue;
                    }
                    match g.delete(&t.def, meta::namespace(&o), meta::name(&o), &d) {
                        Ok(DeleteOutcome::Gone(x)) | Ok(DeleteOutcome::Pending(x)) => out.push(x),
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
                let rv = g.rv;
                Ok((out, rv))
            })?;
            let (items, rv) = items;
            let items: Vec<Value> = items
                .iter()
                .map(|o| present(o, &t.def, &t.version).into_owned())
                .collect();
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", t.def.kind),
                    "apiVersion": t.def.api_version(&t.version),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
            ))
        }
        (_, None, _) => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
        (_, Some(_), Some("scale")) => crate::scale::handle(ctx, req, &t, &q).await,
        (&Method::GET, Some(name), Some("log")) => {
            let pod = ctx.store.lock().get(&t.def, &ns, name)?;
            let flag = |k: &str| q.get(k) == Some("true");
            let tail = match q.get("tailLines") {
                None | Some("") => None,
                Some(n) => Some(
                    n.parse::<usize>()
                        .map_err(|_| ApiError::bad_request(format!("invalid tailLines {n:?}")))?,
                ),
            };
            let text = crate::podlog::log(
                &pod,
                q.get("container"),
                flag("previous"),
                flag("timestamps"),
                tail,
                ctx.runtime.as_deref(),
            )?;
            if !flag("follow") || flag("previous") {
                return Ok(json_bytes(200, text.into_bytes(), "text/plain"));
            }
            let follow = crate::podlog::Follow {
                pod,
                container: q.get("container").map(str::to_string),
                timestamps: flag("timestamps"),
                runtime: ctx.runtime.clone(),
            };
            let (tx, rx) = mpsc::channel(16);
            let _ = tx.try_send(Bytes::from(text));
            tokio::spawn(follow.run(ctx.store.clone(), ctx.shutdown.clone(), tx));
            let mut r = Response::new(streaming_body(rx));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(r)
        }
        (_, Some(_), Some("log")) => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
        (&Method::GET, Some(name), _) => {
            let obj = ctx.store.lock().get(&t.def, &ns, name)?;
            Ok(object_response(
                accept,
                200,
                &render_one(&obj, &t.def, &t.version, render, &q),
            ))
        }
        (&Method::PUT, Some(name), sub) => {
            let ct = content_type(&req);
            let opts = write_opts(&q, &req, false)?;
            let scope = if sub == Some("status") {
                Scope::Status
            } else {
                Scope::Main
            };
            let body = read_body(req).await?;
            let doc = object_body(&ct, &body)?;
            let obj = ctx
                .store
                .write(|g| g.replace(&t.def, &ns, name, doc, scope, &opts))?;
            Ok(object_response(
                accept,
                200,
                &render_one(&obj, &t.def, &t.version, render, &q),
            ))
        }
        (&Method::PATCH, Some(name), sub) => {
            let ct = content_type(&req);
            let is_apply = ct == "application/apply-patch+yaml";
            let opts = write_opts(&q, &req, is_apply)?;
            let scope = if sub == Some("status") {
                Scope::Status
            } else {
                Scope::Main
            };
            let body = read_body(req).await?;
            let pb = patch_body(&ct, &body)?;
            if t.def.from_crd && matches!(pb, PatchBody::Strategic(_)) {
                // Custom resources have no patch strategy metadata, so upstream refuses the patch type.
                return Err(ApiError::unsupported_patch_for_custom_resource());
            }
            let (obj, created) = ctx
                .store
                .write(|g| g.patch(&t.def, &ns, name, pb, scope, &opts))?;
            let code = if created { 201 } else { 200 };
            Ok(json_response(
                code,
                &render_one(&obj, &t.def, &t.version, render, &q),
            ))
        }
        (&Method::DELETE, Some(name), None) => {
            let body = read_body(req).await?;
            let d = delete_opts(&q, &body)?;
            let out = ctx.store.write(|g| g.delete(&t.def, &ns, name, &d))?;
            Ok(match out {
                DeleteOutcome::Gone(o) if !returns_deleted_object(&t.def) => json_bytes(
                    200,
                    crate::apierror::status_bytes(&status_success(&t.def, &o)),
                    "application/json",
                ),
                DeleteOutcome::Gone(o) | DeleteOutcome::Pending(o) => {
                    object_response(accept, 200, &present(&o, &t.def, &t.version))
                }
            })
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

pub(crate) fn patch_body(ct: &str, body: &[u8]) -> ApiResult<PatchBody> {
    Ok(match ct {
        "application/apply-patch+yaml" => PatchBody::Apply(parse_doc(body, true)?),
        "application/merge-patch+json" => PatchBody::Merge(parse_doc(body, false)?),
        "application/strategic-merge-patch+json" => PatchBody::Strategic(parse_doc(body, false)?),
        "application/json-patch+json" => PatchBody::Json(parse_doc(body, false)?),
        other => return Err(ApiError::unsupported_media_type(other)),
    })
}

pub(crate) fn selectors(q: &Query) -> ApiResult<(LabelSelector, FieldSelector)> {
    let ls = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fs = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
    Ok((ls, fs))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    /// The snapshot paged through; empty in a token that resumes an expired list from the current state.
    id: String,
    off: usize,
    /// The key (namespace, name) of the last item served: where an inconsistent continuation resumes.
    #[serde(default)]
    after: Option<(String, String)>,
}

/// Upstream's answer to a continue token whose consistent snapshot is gone (etcd compacted it).
const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn encode_token(tok: &ContinueToken) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(tok).unwrap_or_default())
}

fn list(
    ctx: &Arc<Ctx>,
    t: &Target,
    q: &Query,
    render: Rendering,
    protobuf: bool,
) -> ApiResult<Response<Body>> {
    let (ls, fs) = selectors(q)?;
    let limit: usize = match q.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
    };
    let rv_param = q.get("resourceVersion").unwrap_or("");
    let rv_match = q.get("resourceVersionMatch").unwrap_or("");
    let cont = q.get("continue").unwrap_or("");
    if !rv_match.is_empty() && rv_param.is_empty() {
        return Err(ApiError::unprocessable(
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if !matches!(rv_match, "" | "Exact" | "NotOlderThan") {
        return Err(ApiError::unprocessable(format!(
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"{rv_match}\""
        )));
    }
    if !cont.is_empty() && !rv_param.is_empty() && rv_param != "0" {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    let current = |after: Option<&(String, String)>| {
        let g = ctx.store.lock();
        let items: Vec<Arc<Value>> = g
            .list(&t.def, t.ns.as_deref())
            .into_iter()
            .filter(|o| {
                after.is_none_or(|(ns, name)| {
                    (meta::namespace(o), meta::name(o)) > (ns.as_str(), name.as_str())
                }) && ls.matches(o.pointer("/metadata/labels").and_then(Value::as_object))
                    && fs.matches(o)
            })
            .collect();
        (g.rv, Arc::new(items))
    };
    let tok = if cont.is_empty() {
        None
    } else {
        Some(decode_token(cont)?)
    };
    let (rv, items, offset) = match &tok {
        Some(tok) if !tok.id.is_empty() => {
            let mut snaps = ctx.snapshots.lock().unwrap_or_else(|p| p.into_inner());
            let live = snaps
                .get(&tok.id)
                .filter(|s| s.rv == tok.rv && s.created.elapsed() <= ctx.continue_ttl);
            let Some(s) = live else {
                snaps.remove(&tok.id);
                let mut e = ApiError::expired(CONTINUE_EXPIRED);
                e.continue_token = Some(encode_token(&ContinueToken {
                    rv: 0,
                    id: String::new(),
                    off: 0,
                    after: tok.after.clone(),
                }));
                return Err(e);
            };
            (tok.rv, s.items.clone(), tok.off)
        }
        // An inconsistent continuation: the current state, after the last key served.
        Some(tok) => {
            let (rv, items) = current(tok.after.as_ref());
            (rv, items, 0)
        }
        None => {
            if !rv_param.is_empty() && rv_param != "0" {
                let g = ctx.store.lock();
                let want: u64 = rv_param.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}"))
                })?;
                if rv_match == "Exact" && want < g.rv {
                    // History is kept as a change log, not as snapshots, so only the current state can be listed.
                    return Err(ApiError::expired(format!(
                        "too old resource version: {want} ({})",
                        g.rv
                    )));
                }
                if want > g.rv {
                    return Err(ApiError::timeout(format!(
                        "Too large resource version: {want}, current: {}",
                        g.rv
                    )));
                }
            }
            let (rv, items) = current(None);
            (rv, items, 0)
        }
    };
    let end = if limit > 0 {
        (offset + limit).min(items.len())
    } else {
        items.len()
    };
    let page = &items[offset.min(items.len())..end];
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if end < items.len() {
        let id = match tok.as_ref().filter(|t| !t.id.is_empty()) {
            Some(t) => t.id.clone(),
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let mut snaps = ctx.snapshots.lock().unwrap_or_else(|p| p.into_inner());
                snaps.retain(|_, s| s.created.elapsed() < ctx.continue_ttl);
                if snaps.len() >= SNAPSHOT_SLOTS
                    && let Some(oldest) = snaps
                        .iter()
                        .min_by_key(|(_, s)| s.created)
                        .map(|(k, _)| k.clone())
                {
                    snaps.remove(&oldest);
                }
                snaps.insert(
                    id.clone(),
                    Snapshot {
                        rv,
                        items: items.clone(),
                        created: Instant::now(),
                    },
                );
                id
            }
        };
        let after = page
            .last()
            .map(|o| (meta::namespace(o).to_string(), meta::name(o).to_string()));
        list_meta["continue"] = json!(encode_token(&ContinueToken {
            rv,
            id,
            off: end,
            after,
        }));
        if ls.is_empty() && fs.is_empty() {
            list_meta["remainingItemCount"] = json!(items.len() - end);
        }
    } else if let Some(tok) = tok.as_ref().filter(|t| !t.id.is_empty()) {
        ctx.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tok.id);
    }
    match render {
        Rendering::Table => {
            let objs: Vec<Cow<Value>> = page
                .iter()
                .map(|o| present(o, &t.def, &t.version))
                .collect();
            let refs: Vec<&Value> = objs.iter().map(|c| &**c).collect();
            let tbl = table::table(
                &t.def.kind,
                &t.def.group,
                &refs,
                t.def.printer_columns.as_deref(),
                q.get("includeObject").unwrap_or("Metadata"),
                list_meta,
                jiff::Timestamp::now(),
            );
            Ok(json_response(200, &tbl))
        }
        Rendering::Metadata => {
            let items: Vec<Value> = page.iter().map(|o| partial_metadata(o)).collect();
            Ok(json_response(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "items": items}),
            ))
        }
        Rendering::Full
            if protobuf
                && crate::protobuf::has_schema(
                    &t.def.api_version(&t.version),
                    &format!("{}List", t.def.kind),
                ) =>
        {
            let list = json!({
                "kind": format!("{}List", t.def.kind),
                "apiVersion": t.def.api_version(&t.version),
                "metadata": list_meta,
                "items": page.iter().map(|o| present(o, &t.def, &t.version).into_owned()).collect::<Vec<_>>(),
            });
            Ok(object_response(crate::protobuf::MEDIA_TYPE, 200, &list))
        }
        Rendering::Full => {
            // Serialized item by item: a 50,000-object list is never built as one Value.
            let mut buf = Vec::with_capacity(64 + page.len() * 512);
            buf.extend_from_slice(b"{\"kind\":");
            serde_json::to_writer(&mut buf, &format!("{}List", t.def.kind)).ok();
            buf.extend_from_slice(b",\"apiVersion\":");
            serde_json::to_writer(&mut buf, &t.def.api_version(&t.version)).ok();
            buf.extend_from_slice(b",\"metadata\":");
            serde_json::to_writer(&mut buf, &list_meta).ok();
            buf.extend_from_slice(b",\"items\":[");
            for (i, o) in page.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                serde_json::to_writer(&mut buf, &*present(o, &t.def, &t.version)).ok();
            }
            buf.extend_from_slice(b"]}");
            Ok(json_bytes(200, buf, "application/json"))
        }
    }
}

fn decode_token(s: &str) -> ApiResult<ContinueToken> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| ApiError::bad_request("invalid continue token"))?;
    serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("invalid continue token"))
}

/// A streaming body fed by a channel; dropping the receiver (client gone) ends the sender's loop.
pub(crate) fn streaming_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    StreamBody::new(stream).boxed()
}

pub(crate) fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut r = Response::new(streaming_body(rx));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_handles_kube_rs_shapes() {
        let q = Query::parse(Some(
            "&watch=true&labelSelector=env+in+%28a%2Cb%29&timeoutSeconds=290",
        ));
        assert_eq!(q.get("watch"), Some("true"));
        assert_eq!(q.get("labelSelector"), Some("env in (a,b)"));
        assert_eq!(q.get("timeoutSeconds"), Some("290"));
        let q = Query::parse(Some(""));
        assert_eq!(q.get("watch"), None);
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(
            rendering(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Rendering::Table
        );
        assert_eq!(
            rendering("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Rendering::Metadata
        );
        assert_eq!(rendering(""), Rendering::Full);
        assert_eq!(rendering("application/json, */*"), Rendering::Full);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("system%3Anode"), "system:node");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
