//! The REST surface: poem-openapi operations, the error body, body limits, request metrics, Swagger UI and the
//! spec. It never calls Kubernetes directly and knows nothing of how objects are rendered.

pub mod api;
mod body;
pub(crate) mod conn;
mod errors;
pub(crate) mod limits;
mod spec;
mod types;

use std::sync::Arc;
use std::time::Instant;

use poem::endpoint::make_sync;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Route, get};
use poem_openapi::OpenApiService;

pub use self::api::{BrokerApi, VERSION};
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
    let doc = spec::refine(&openapi_service(None).spec());
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes") + "\n"
}

/// The OpenAPI document as YAML (what `openapi/openapi.yaml` holds and `/openapi.yaml` serves).
pub fn spec_yaml() -> String {
    let doc = spec::refine(&openapi_service(None).spec());
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
pub fn app(state: Arc<Broker>, max_body_bytes: usize, limits: RequestLimits) -> impl Endpoint {
    let guard = RequestGuard::new(limits);
    let api = openapi_service(Some(state));
    let json = spec_json();
    let yaml = spec_yaml();
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
            let guard = guard.clone();
            async move {
                let endpoint = endpoint_label(req.uri().path());
                match guard.admit(req, endpoint) {
                    Ok(req) => ep.call(req).await.map(IntoResponse::into_response),
                    Err(refusal) => Ok(refusal),
                }
            }
        })
        .catch_all_error(|err| async move { errors::render_any_error(err) })
        .around(|ep, req| async move {
            let started = Instant::now();
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let known = KNOWN_ROUTES.iter().find(|(r, _)| *r == path);
            let endpoint = known.map(|(r, _)| *r).unwrap_or("unmatched");
            let mut resp = match ep.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => errors::render_any_error(e),
            };
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED
                && let Some((_, allow)) = known
            {
                resp.headers_mut().insert(
                    poem::http::header::ALLOW,
                    poem::http::HeaderValue::from_static(allow),
                );
            }
            crate::metrics::http_request(endpoint, &method, started.elapsed());
            if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(%method, %path, "request failed with 500");
            }
            Ok(resp)
        })
}
