//! Errors as the apiserver reports them: `meta/v1 Status` objects with a code, a reason and details.
//!
//! Clients classify errors by `reason`/`code` (kube-rs `is_not_found`, `is_conflict`, …), so every failure kubesim
//! sends goes through [`ApiError`] and keeps upstream's wording.

use serde_json::{Value, json};

use crate::registry::ResourceDef;

/// One failure, rendered as a `Status` body with the matching HTTP code.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

/// Shorthand used across the crate.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

fn details(def: &ResourceDef, name: &str) -> Value {
    json!({"name": name, "group": def.group, "kind": def.plural})
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }

    pub(crate) fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", def.qualified(), name),
        )
        .with_details(details(def, name))
    }

    /// A 404 for a path that names no resource at all.
    pub(crate) fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
        .with_details(json!({}))
    }

    pub(crate) fn namespace_not_found(ns: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    pub(crate) fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", def.qualified(), name),
        )
        .with_details(details(def, name))
    }

    pub(crate) fn conflict(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                def.qualified(),
                name,
                why
            ),
        )
        .with_details(details(def, name))
    }

    pub(crate) fn modified(def: &ResourceDef, name: &str) -> Self {
        Self::conflict(
            def,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with field causes, e.g. `("metadata.name", "FieldValueInvalid", "Invalid value: ...")`.
    pub(crate) fn invalid(
        kind: &str,
        group: &str,
        name: &str,
        causes: &[(String, &'static str, String)],
    ) -> Self {
        let joined: Vec<String> = causes.iter().map(|(f, _, m)| format!("{f}: {m}")).collect();
        let message = if joined.len() == 1 {
            format!("{kind} \"{name}\" is invalid: {}", joined[0])
        } else {
            format!("{kind} \"{name}\" is invalid: [{}]", joined.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, r, m)| json!({"reason": r, "message": m, "field": f}))
            .collect();
        Self::new(422, "Invalid", message)
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    /// A 422 whose message is already complete (failed JSON-patch test, patch options).
    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// A strategic merge patch of a custom resource.
    pub(crate) fn unsupported_patch_for_custom_resource() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )
    }

    /// A protobuf body of a kind kubesim has no schema for.
    pub(crate) fn unsupported_protobuf(message: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub(crate) fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json, application/apply-patch+yaml (got {ct:?})"
            ),
        )
    }

    pub(crate) fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// 429 as the apiserver's max-in-flight filter sends it: `details.retryAfterSeconds` and a `Retry-After` header.
    pub(crate) fn too_many_requests(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(429, "TooManyRequests", message).with_retry_after(retry_after)
    }

    /// 503 with `details.retryAfterSeconds` and a `Retry-After` header (`NewServiceUnavailable` plus the header
    /// an overloaded or restarting apiserver sends).
    pub(crate) fn service_unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(503, "ServiceUnavailable", message).with_retry_after(retry_after)
    }

    /// 500 as `NewInternalError`: `Internal error occurred: <cause>`, the cause repeated in `details.causes`.
    pub(crate) fn internal(cause: impl Into<String>) -> Self {
        let cause = cause.into();
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {cause}"),
        )
        .with_details(json!({"causes": [{"message": cause}]}))
    }

    fn with_retry_after(mut self, seconds: u64) -> Self {
        let d = self.details.get_or_insert_with(|| json!({}));
        d["retryAfterSeconds"] = json!(seconds);
        self.retry_after = Some(seconds);
        self
    }

    /// The `Status` body.
    pub(crate) fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}
