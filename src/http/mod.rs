//! The REST surface: poem-openapi operations, the error body, body limits, request metrics, Swagger UI and the
//! spec. It never calls Kubernetes directly and knows nothing of how objects are rendered.

pub mod api;
pub mod audit;
mod auth;
mod body;
pub(crate) mod conn;
mod errors;
pub(crate) mod limits;
mod spec;
pub mod tls;
mod types;

use std::sync::Arc;
use std::time::Instant;

use poem::endpoint::make_sync;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Route, get};
use poem_openapi::OpenApiService;
use tracing::Instrument;

pub use self::api::{BrokerApi, VERSION};
use self::audit::AuditLog;
use self::body::BodyLimit;
use self::limits::{RequestGuard, RequestLimits};
use crate::usecases::Broker;

/// The routes the API serves with their methods: bounded metric labels, and the `Allow` header of a 405.
const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("/health", "GET, HEAD"),
    ("/readiness", "GET, HEAD"),
    ("/v1/provision", "POST"),
    ("/v1/deprovision", "POST"),
    ("/v1/status", "GET, HEAD"),
    ("/v1/resources", "GET, HEAD, POST"),
    ("/openapi.json", "GET, HEAD"),
    ("/openapi.yaml", "GET, HEAD"),
    ("/docs", "GET, HEAD"),
];

/// The one place that builds the OpenAPI service: the server and `kidp-broker openapi` both use it.
pub fn openapi_service(state: Option<Arc<Broker>>) -> OpenApiService<BrokerApi, ()> {
    OpenApiService::new(BrokerApi { state }, "KIDP Deployment Broker", VERSION)
        .description(
            "Provisions and deprovisions resources (databases: postgresql, mysql, mongodb, redis) in Kubernetes \
             namespaces, answers 202 at once, reports every phase by callback, and tells what is really running.",
        )
        // Relative, so Swagger UI's "Try it out" and generated clients talk to whichever host and port served
        // the document.
        .server("/")
}

/// The OpenAPI document as JSON (what `openapi/openapi.json` holds and `/openapi.json` serves).
pub fn spec_json() -> String {
    spec_json_for(true)
}

/// The OpenAPI document as YAML (what `openapi/openapi.yaml` holds and `/openapi.yaml` serves).
pub fn spec_yaml() -> String {
    spec_yaml_for(true)
}

/// The document as JSON; `authenticated` says whether the `/v1/` operations require a bearer token. A broker
/// serving without authentication (`--dev`, `--insecure-no-auth`) serves a document that says so, so that
/// clients and fuzzers that read it do not expect a 401 it never sends.
fn spec_json_for(authenticated: bool) -> String {
    let doc = spec::refine(&openapi_service(None).spec(), authenticated);
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes") + "\n"
}

fn spec_yaml_for(authenticated: bool) -> String {
    let doc = spec::refine(&openapi_service(None).spec(), authenticated);
    serde_yaml::to_string(&doc).expect("a JSON value serializes as YAML")
}

/// The route template of a path (bounded metric labels).
fn endpoint_label(path: &str) -> &'static str {
    KNOWN_ROUTES
        .iter()
        .find(|(r, _)| *r == path)
        .map_or("unmatched", |(r, _)| *r)
}

/// The whole HTTP application.
pub fn app(
    state: Arc<Broker>,
    max_body_bytes: usize,
    audit_log: Arc<AuditLog>,
    limits: RequestLimits,
    peers: Arc<tls::PeerCertificates>,
) -> impl Endpoint {
    let access = state.access.clone();
    let authenticated = access.disabled_by().is_none();
    let guard = RequestGuard::new(limits);
    let admit = guard.clone();
    let api = openapi_service(Some(state));
    let json = spec_json_for(authenticated);
    let yaml = spec_yaml_for(authenticated);
    // Swagger UI shows the refined document, not poem-openapi's raw one.
    let ui = api.swagger_ui_html().replace(&api.spec(), &json);
    Route::new()
        .at(
            "/openapi.json",
            // `get` also answers HEAD; every other method gets 405 (with `Allow`, below).
            get(make_sync(move |_| {
                json.clone()
                    .with_content_type("application/json")
                    .into_response()
            })),
        )
        .at(
            "/openapi.yaml",
            get(make_sync(move |_| {
                yaml.clone()
                    .with_content_type("application/yaml")
                    .into_response()
            })),
        )
        .at(
            "/docs",
            get(make_sync(move |_| {
                poem::web::Html(ui.clone()).into_response()
            })),
        )
        .nest("/", api)
        .data(BodyLimit(max_body_bytes))
        // Before routing and body parsing, so that a refused request costs next to nothing.
        .around(move |ep, req| {
            let guard = admit.clone();
            async move {
                let endpoint = endpoint_label(req.uri().path());
                match guard.admit(req, endpoint) {
                    Ok(req) => ep.call(req).await.map(IntoResponse::into_response),
                    Err(refusal) => Ok(refusal),
                }
            }
        })
        .around(move |ep, req| auth::authenticate(ep, req, access.clone(), peers.clone()))
        .catch_all_error(|err| async move { errors::render_any_error(err) })
        .around(move |ep, mut req| {
            let audit_log = audit_log.clone();
            async move {
                let started = Instant::now();
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let known = KNOWN_ROUTES.iter().find(|(r, _)| *r == path);
                let endpoint = known.map(|(r, _)| *r).unwrap_or("unmatched");
                let id = audit::request_id(&req);
                let action = audit::action(&method, &path);
                let named = match action {
                    Some(_) => audit::peek_body(&mut req, max_body_bytes)
                        .await
                        .map(|b| audit::Named::from_body(&b)),
                    None => None,
                };
                let source_ip = audit::source_ip(&req);
                let span = tracing::info_span!("request", request_id = %id);
                let mut resp = async {
                    match ep.call(req).await {
                        Ok(r) => r.into_response(),
                        Err(e) => errors::render_any_error(e),
                    }
                }
                .instrument(span.clone())
                .await;
                if resp.status() == StatusCode::METHOD_NOT_ALLOWED
                    && let Some((_, allow)) = known
                {
                    resp.headers_mut().insert(
                        poem::http::header::ALLOW,
                        poem::http::HeaderValue::from_static(allow),
                    );
                }
                audit::echo(&mut resp, &id);
                let status = resp.status().as_u16();
                let refused = status >= 400;
                let (error, deployment_id) = if refused || action.is_some() {
                    let f = audit::response_field(&mut resp, &["error", "deploymentId"]).await;
                    (f[0].clone(), f[1].clone())
                } else {
                    (None, None)
                };
                if let Some(code) = &error {
                    crate::metrics::http_refusal(endpoint, errors::known_code(code));
                }
                if let Some(action) = action {
                    let named = named.unwrap_or(audit::Named::from_body(b""));
                    crate::metrics::mutation(action, named.type_label(), status);
                    audit_log.write(&audit::AuditRecord {
                        time: crate::k8s::now(),
                        request_id: id.clone(),
                        subject: resp
                            .extensions()
                            .get::<audit::AuditSubject>()
                            .map(|s| s.0.clone()),
                        source_ip,
                        action,
                        namespace: named.namespace,
                        resource_type: named.resource_type,
                        resource_name: named.resource_name,
                        team: named.team,
                        deployment_id: deployment_id.or(named.deployment_id),
                        result: status,
                        error,
                    });
                }
                crate::metrics::http_request(endpoint, &method, started.elapsed());
                if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
                    span.in_scope(|| tracing::error!(%method, %path, "request failed with 500"));
                }
                Ok(resp)
            }
        })
        // Outermost: the body is under its read deadline before any layer reads it.
        .around(move |ep, mut req| {
            guard.deadline_body(&mut req);
            async move { ep.call(req).await }
        })
}
