//! The error body of every failure, `{"error","message","code"}`, and the documented error responses.
//!
//! [`Problem`] is what handlers and extractors produce; each operation's response enum converts from it, and
//! [`render_any_error`] turns every other failure (unknown route, wrong method, poem's own parse errors) into the
//! same body, so no client ever sees poem's plain-text defaults.

use poem::error::ResponseError;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object};

use super::types::{ErrorCodeRule, Text};
use crate::domain::ValidationError;
use crate::k8s::K8sError;
use crate::usecases::Refusal;

/// Every `error` code the broker sends, documented as the error body's enum. [`Problem::new`] checks (in
/// debug builds, so in every test) that no other code is ever sent.
pub const ERROR_CODES: [&str; 15] = [
    "validation_failed",
    "invalid_request",
    "unauthorized",
    "forbidden",
    "quota_exceeded",
    "resource_not_found",
    "resource_conflict",
    "payload_too_large",
    "kubernetes_error",
    "route_not_found",
    "method_not_allowed",
    "internal_error",
    "rate_limited",
    "uri_too_long",
    "headers_too_large",
];

/// The error body.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
#[oai(example)]
pub struct ErrorBody {
    // No doc comment: a description beside the enum's `$ref` would wrap it in `allOf`; `ErrorCode` says it.
    pub error: Text<ErrorCodeRule>,
    /// A human-readable description naming the offending field where there is one.
    pub message: String,
    /// The HTTP status code.
    pub code: u16,
}

impl Example for ErrorBody {
    fn example() -> Self {
        ErrorBody {
            error: "validation_failed".into(),
            message: "resourceName is required".into(),
            code: 400,
        }
    }
}

/// The documented example body of an error response with `status`: what the broker really answers then, in
/// the same words, so each documented response shows its own case.
pub fn example_for_status(status: u16) -> Option<ErrorBody> {
    let id = "deploy-fc8fc917314e2b8b698427458cd35342";
    let p = match status {
        400 => Problem::validation("resourceName is required"),
        401 => Problem::unauthorized("an Authorization: Bearer token is required"),
        403 => Problem::forbidden("subject dashboard may not provision in namespace team-platform"),
        404 => Problem::not_found(format!("deployment {id} not found")),
        409 => Problem::conflict(format!(
            "database/postgres-app-db already exists in namespace team-platform with a different spec (deployment {id})"
        )),
        413 => Problem::payload_too_large(65536),
        429 => Problem::rate_limited(100, 1),
        503 => Problem::kubernetes("kubernetes API not accessible: connection refused"),
        _ => return None,
    };
    Some(p.body())
}

/// A failure to report to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}: {message}")]
pub struct Problem {
    pub status: u16,
    pub error: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(status: u16, error: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            ERROR_CODES.contains(&error),
            "error code {error:?} is not in ERROR_CODES"
        );
        Problem {
            status,
            error,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "validation_failed", message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "resource_not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "resource_conflict", message)
    }

    pub fn kubernetes(message: impl Into<String>) -> Self {
        Self::new(503, "kubernetes_error", message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// Over the per-client rate limit; `retry_after` is what the `Retry-After` header says.
    pub fn rate_limited(per_minute: u32, retry_after: u64) -> Self {
        Self::new(
            429,
            "rate_limited",
            format!(
                "rate limit of {per_minute} requests per minute exceeded; retry after {retry_after} s"
            ),
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.error.into(),
            message: self.message.clone(),
            code: self.status,
        }
    }
}

/// A response's error code as a bounded metric label: one of [`ERROR_CODES`], else `other`.
pub fn known_code(code: &str) -> &'static str {
    ERROR_CODES
        .iter()
        .copied()
        .find(|c| *c == code)
        .unwrap_or("other")
}

impl From<ValidationError> for Problem {
    fn from(e: ValidationError) -> Self {
        Problem::validation(e.message)
    }
}

impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(m) => Problem::validation(m),
            Refusal::NotFound(m) => Problem::not_found(m),
            Refusal::Forbidden(m) => Problem::forbidden(m),
            Refusal::Conflict(m) => Problem::conflict(m),
            Refusal::NotReady(m) => Problem::kubernetes(m),
            Refusal::QuotaExceeded(m) => Problem::new(403, "quota_exceeded", m),
            Refusal::Cluster(e) => e.into(),
        }
    }
}

impl From<K8sError> for Problem {
    fn from(e: K8sError) -> Self {
        // Only safe text: the API server's message for an unreachable cluster, a generic line otherwise.
        match &e {
            K8sError::Timeout { .. } | K8sError::Unavailable(_) => {
                Problem::kubernetes(e.to_string())
            }
            K8sError::NotFound(s) | K8sError::Rejected(s) => {
                tracing::error!(code = s.code, reason = %s.reason, detail = %s.message, "unexpected Kubernetes API error");
                Problem::kubernetes(format!(
                    "the Kubernetes API refused the request ({} {})",
                    s.code, s.reason
                ))
            }
            K8sError::NotOurs { .. } => Problem::conflict(e.to_string()),
            K8sError::Unsupported(what) => {
                tracing::error!(%what, "unsupported object");
                Problem::new(500, "internal_error", "internal error")
            }
            K8sError::Other(err) => {
                tracing::error!(error = %err, "Kubernetes client error");
                Problem::kubernetes("error communicating with the Kubernetes API")
            }
        }
    }
}

impl ResponseError for Problem {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn as_response(&self) -> Response {
        let mut r = Json(self.body()).into_response();
        r.set_status(self.status());
        r
    }
}

/// Errors of `POST /v1/provision`.
#[derive(ApiResponse, Debug)]
pub enum ProvisionError {
    /// The request failed validation (`validation_failed`) or is malformed (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid bearer token (`WWW-Authenticate: Bearer`).
    #[oai(status = 401)]
    Unauthorized(
        Json<ErrorBody>,
        /// The authentication challenge: `Bearer realm="kidp-broker"`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The subject may not do this in the namespace, the namespace is reserved, or the team's Team does not
    /// allow it (`forbidden`); or it would exceed the Team's limits (`quota_exceeded`, with the numbers).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// A resource of that type and name exists in the namespace with a different spec, or is being deleted.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than the configured limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Over the per-client rate limit (`rate_limited`); the `Retry-After` header says after how many seconds
    /// to retry.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// The Kubernetes API cannot be reached; nothing was accepted.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// Errors of `POST /v1/deprovision`.
#[derive(ApiResponse, Debug)]
pub enum DeprovisionError {
    /// The request failed validation, is malformed, or names a resource other than the deployment's.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid bearer token (`WWW-Authenticate: Bearer`).
    #[oai(status = 401)]
    Unauthorized(
        Json<ErrorBody>,
        /// The authentication challenge: `Bearer realm="kidp-broker"`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The subject may not do this in the namespace, or the namespace is reserved (`forbidden`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No deployment has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The record changed while the request was being stored; retry.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than the configured limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Over the per-client rate limit (`rate_limited`); the `Retry-After` header says after how many seconds
    /// to retry.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// The Kubernetes API cannot be reached; nothing was accepted.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// Errors of the read endpoints.
#[derive(ApiResponse, Debug)]
pub enum QueryError {
    /// A parameter is missing or invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid bearer token (`WWW-Authenticate: Bearer`).
    #[oai(status = 401)]
    Unauthorized(
        Json<ErrorBody>,
        /// The authentication challenge: `Bearer realm="kidp-broker"`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The subject may not read in the namespace (`forbidden`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No deployment has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Over the per-client rate limit (`rate_limited`); the `Retry-After` header says after how many seconds
    /// to retry.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// The broker's view of the cluster is not available yet.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// Errors of `POST /v1/resources` (a body, so also 413).
#[derive(ApiResponse, Debug)]
pub enum QueryBodyError {
    /// A field is missing or invalid, or the body is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid bearer token (`WWW-Authenticate: Bearer`).
    #[oai(status = 401)]
    Unauthorized(
        Json<ErrorBody>,
        /// The authentication challenge: `Bearer realm="kidp-broker"`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The subject may not read in the namespace (`forbidden`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The body is larger than the configured limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Over the per-client rate limit (`rate_limited`); the `Retry-After` header says after how many seconds
    /// to retry.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// The broker's view of the cluster is not available yet.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// `From<Problem>` for an operation's error enum: each listed status maps to its variant, anything else to the
/// `otherwise` variant.
macro_rules! from_problem {
    ($ty:ident, otherwise $fallback:ident, { $($status:pat => $variant:ident,)* }) => {
        impl From<Problem> for $ty {
            fn from(p: Problem) -> Self {
                let b = Json(p.body());
                match p.status {
                    401 => $ty::Unauthorized(b, super::auth::CHALLENGE.to_string()),
                    403 => $ty::Forbidden(b),
                    $($status => $ty::$variant(b),)*
                    _ => $ty::$fallback(b),
                }
            }
        }
    };
}

from_problem!(ProvisionError, otherwise BadRequest, {
    409 => Conflict,
    413 => PayloadTooLarge,
    429 => TooManyRequests,
    500 | 503 => Unavailable,
});
from_problem!(DeprovisionError, otherwise BadRequest, {
    404 => NotFound,
    409 => Conflict,
    413 => PayloadTooLarge,
    429 => TooManyRequests,
    500 | 503 => Unavailable,
});
from_problem!(QueryError, otherwise BadRequest, {
    404 => NotFound,
    429 => TooManyRequests,
    500 | 503 => Unavailable,
});
from_problem!(QueryBodyError, otherwise BadRequest, {
    413 => PayloadTooLarge,
    429 => TooManyRequests,
    500 | 503 => Unavailable,
});

/// Converts any error that reached the top of the route tree into the error body.
pub fn render_any_error(err: poem::Error) -> Response {
    if err.is_from_response() || err.is::<Problem>() {
        return err.into_response();
    }
    let status = err.status();
    let problem = if let Some(p) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
        if p.reason.contains("expects an input value") {
            Problem::validation(format!("{} is required", p.name))
        } else {
            Problem::validation(format!("{}: {}", p.name, p.reason))
        }
    } else if err.is::<poem_openapi::error::ContentTypeError>() {
        Problem::invalid_request("Content-Type must be application/json")
    } else if err.is::<poem_openapi::error::ParseRequestPayloadError>() {
        Problem::invalid_request(err.to_string())
    } else {
        match status.as_u16() {
            404 => Problem::new(
                404,
                "route_not_found",
                "no such endpoint; see /openapi.json",
            ),
            405 => Problem::new(
                405,
                "method_not_allowed",
                "this endpoint does not support the request method",
            ),
            413 => Problem::new(413, "payload_too_large", "the request body is too large"),
            s if s < 500 => Problem::new(s, "invalid_request", err.to_string()),
            s => {
                tracing::error!(error = %err, status = s, "unhandled error");
                Problem::new(500, "internal_error", "internal error")
            }
        }
    };
    problem.as_response()
}
