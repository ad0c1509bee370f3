//! The REST surface: poem-openapi operations, the error body, body limits, request metrics, Swagger UI and the
//! spec. It never calls Kubernetes directly and knows nothing of how objects are rendered.

pub mod api;
mod body;
mod errors;
mod types;

use std::sync::Arc;
use std::time::Instant;

use poem::endpoint::make_sync;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::OpenApiService;

pub use self::api::{AppState, BrokerApi, VERSION};
use self::body::BodyLimit;

/// The routes the API serves, used as bounded metric labels.
const KNOWN_ROUTES: &[&str] = &[
    "/health",
    "/readiness",
    "/v1/provision",
    "/v1/deprovision",
    "/v1/status",
    "/v1/resources",
    "/openapi.json",
    "/openapi.yaml",
];

/// The one place that builds the OpenAPI service: the server and `kidp-broker openapi` both use it.
pub fn openapi_service(state: Option<Arc<AppState>>) -> OpenApiService<BrokerApi, ()> {
    OpenApiService::new(BrokerApi { state }, "KIDP Deployment Broker", VERSION)
        .description(
            "Provisions and deprovisions resources (databases: postgresql, mysql, mongodb, redis) in Kubernetes \
             namespaces, answers 202 at once, reports every phase by callback, and tells what is really running.",
        )
        .server("http://localhost:8082")
}

/// The OpenAPI document as JSON (what `openapi/openapi.json` holds).
pub fn spec_json() -> String {
    openapi_service(None).spec()
}

/// The OpenAPI document as YAML (what `openapi/openapi.yaml` holds).
pub fn spec_yaml() -> String {
    openapi_service(None).spec_yaml()
}

/// The whole HTTP application.
pub fn app(state: Arc<AppState>, max_body_bytes: usize) -> impl Endpoint {
    let api = openapi_service(Some(state));
    let json = api.spec();
    let yaml = api.spec_yaml();
    let ui = api.swagger_ui();
    Route::new()
        .at(
            "/openapi.json",
            make_sync(move |_| {
                json.clone()
                    .with_content_type("application/json")
                    .into_response()
            }),
        )
        .at(
            "/openapi.yaml",
            make_sync(move |_| {
                yaml.clone()
                    .with_content_type("application/yaml")
                    .into_response()
            }),
        )
        .nest("/docs", ui)
        .nest("/", api)
        .data(BodyLimit(max_body_bytes))
        .catch_all_error(|err| async move { errors::render_any_error(err) })
        .around(|ep, req| async move {
            let started = Instant::now();
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let endpoint = if path.starts_with("/docs") {
                "/docs"
            } else {
                KNOWN_ROUTES
                    .iter()
                    .copied()
                    .find(|r| *r == path)
                    .unwrap_or("unmatched")
            };
            let resp = match ep.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => errors::render_any_error(e),
            };
            crate::metrics::http_request(endpoint, &method, started.elapsed());
            if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(%method, %path, "request failed with 500");
            }
            Ok(resp)
        })
}
