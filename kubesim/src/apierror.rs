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
    /// `metadata.continue` of the Status: the token that resumes an expired paginated list inconsistently.
    pub continue_token: Option<String>,
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
            continue_token: None,
        }
    }

    pub(crate) fn with_details(mut self, d: Value) -> Self {
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

    /// 401 as upstream's authentication filter sends it for a token it does not know.
    pub(crate) fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
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
        let metadata = match &self.continue_token {
            Some(c) => json!({"continue": c}),
            None => json!({}),
        };
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": metadata,
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

/// A `Status` object serialized as upstream's encoder writes it: fields in the Go struct's order (`kind`,
/// `apiVersion`, `metadata`, `status`, `message`, `reason`, `details`, `code`), empty optional fields left out
/// (`"group"` is absent for the core group), and a trailing newline.
pub(crate) fn status_bytes(v: &Value) -> Vec<u8> {
    fn ordered(
        out: &mut String,
        v: &Value,
        keys: &[&str],
        nested: &dyn Fn(&str, &Value, &mut String),
    ) {
        out.push('{');
        let mut first = true;
        for k in keys {
            let Some(x) = v.get(*k) else { continue };
            let empty = x.is_null()
                || x.as_str().is_some_and(str::is_empty)
                || x.as_array().is_some_and(Vec::is_empty)
                || (x.as_i64() == Some(0) && *k != "code");
            if empty && *k != "metadata" && *k != "details" {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&Value::from(*k).to_string());
            out.push(':');
            nested(k, x, out);
        }
        out.push('}');
    }
    fn cause(_: &str, x: &Value, out: &mut String) {
        out.push_str(&x.to_string());
    }
    fn details(k: &str, x: &Value, out: &mut String) {
        if k == "causes" {
            out.push('[');
            for (i, c) in x.as_array().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ordered(out, c, &["reason", "message", "field"], &cause);
            }
            out.push(']');
        } else {
            out.push_str(&x.to_string());
        }
    }
    fn top(k: &str, x: &Value, out: &mut String) {
        if k == "details" {
            ordered(
                out,
                x,
                &[
                    "name",
                    "group",
                    "kind",
                    "uid",
                    "causes",
                    "retryAfterSeconds",
                ],
                &details,
            );
        } else {
            out.push_str(&x.to_string());
        }
    }
    let mut out = String::new();
    ordered(
        &mut out,
        v,
        &[
            "kind",
            "apiVersion",
            "metadata",
            "status",
            "message",
            "reason",
            "details",
            "code",
        ],
        &top,
    );
    out.push('\n');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_keep_upstreams_field_order_and_omit_empty_fields() {
        let e = ApiError::new(404, "NotFound", "pods \"x\" not found")
            .with_details(json!({"name": "x", "group": "", "kind": "pods"}));
        assert_eq!(
            String::from_utf8(status_bytes(&e.to_status())).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
        );
        let invalid = ApiError::invalid(
            "Deployment",
            "apps",
            "web",
            &[(
                "spec.selector".into(),
                "FieldValueInvalid",
                "Invalid value: 1".into(),
            )],
        );
        let body = String::from_utf8(status_bytes(&invalid.to_status())).unwrap();
        assert!(
            body.contains("\"details\":{\"name\":\"web\",\"group\":\"apps\",\"kind\":\"Deployment\",\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"Invalid value: 1\",\"field\":\"spec.selector\"}]},\"code\":422}"),
            "{body}"
        );
        let gone = ApiError::no_route("/api/v1/nope");
        assert!(
            String::from_utf8(status_bytes(&gone.to_status()))
                .unwrap()
                .contains("\"details\":{},\"code\":404}")
        );
    }
}
