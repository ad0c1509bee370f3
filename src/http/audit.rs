//! Request ids and the audit trail. Every request gets an id (`X-Request-Id`, accepted when well-formed, else
//! generated), echoed in the response and carried by every log line of the request. Every mutating request —
//! accepted or refused, including bodies refused before a handler runs — leaves one JSON audit record on the
//! log target `audit`, and with `--audit-log PATH` also as a line appended to that file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use poem::http::HeaderValue;
use poem::{Body, Request, Response};
use serde::Serialize;
use serde_json::Value;

use crate::domain::ResourceType;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest request id taken from a client; longer ones (or odd characters) are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Who made the request, when authentication says so (a response extension the auth layer sets).
#[derive(Clone, Debug)]
pub struct AuditSubject(pub String);

/// The client's id if it is safe to echo and log, else a fresh one.
pub fn request_id(req: &Request) -> String {
    req.header(REQUEST_ID)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Echoes the request id.
pub fn echo(resp: &mut Response, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
}

/// The mutating operations, by route.
pub fn action(method: &str, path: &str) -> Option<&'static str> {
    match (method, path) {
        ("POST", "/v1/provision") => Some("provision"),
        ("POST", "/v1/deprovision") => Some("deprovision"),
        _ => None,
    }
}

/// One audit record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub time: String,
    pub request_id: String,
    pub subject: Option<String>,
    pub source_ip: Option<String>,
    pub action: &'static str,
    pub namespace: Option<String>,
    pub resource_type: Option<String>,
    pub resource_name: Option<String>,
    pub team: Option<String>,
    pub deployment_id: Option<String>,
    /// The HTTP status answered.
    pub result: u16,
    /// The error code of a refusal.
    pub error: Option<String>,
}

/// Where audit records go besides the log.
#[derive(Default)]
pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    /// Appends to `path` (created if missing).
    pub fn open(path: Option<&Path>) -> std::io::Result<AuditLog> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
            None => None,
        };
        Ok(AuditLog { file })
    }

    /// Logs the record on the `audit` target and appends it to the file.
    pub fn write(&self, rec: &AuditRecord) {
        let line = serde_json::to_string(rec).unwrap_or_default();
        tracing::info!(target: "audit", request_id = %rec.request_id, action = rec.action, result = rec.result, record = %line, "audit");
        if let Some(f) = &self.file {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            // One write per line so concurrent records never interleave within a line.
            if let Err(e) = f.write_all(format!("{line}\n").as_bytes()) {
                tracing::error!(error = %e, "cannot append to the audit log");
            }
        }
    }
}

/// The fields an audit record names, read leniently from a request body (it may be invalid: that is why
/// it is being refused).
pub struct Named {
    pub namespace: Option<String>,
    pub resource_type: Option<String>,
    pub resource_name: Option<String>,
    pub team: Option<String>,
    pub deployment_id: Option<String>,
}

/// Longest value echoed from a body into an audit record.
const MAX_FIELD: usize = 128;

impl Named {
    pub fn from_body(body: &[u8]) -> Named {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(|s| s.chars().take(MAX_FIELD).collect())
        };
        Named {
            namespace: field("namespace"),
            resource_type: field("resourceType"),
            resource_name: field("resourceName"),
            team: field("team"),
            deployment_id: field("deploymentId"),
        }
    }

    /// The resource type as a bounded metric label.
    pub fn type_label(&self) -> &'static str {
        self.resource_type
            .as_deref()
            .and_then(|t| t.parse::<ResourceType>().ok())
            .map(ResourceType::as_str)
            .unwrap_or("unknown")
    }
}

/// Takes the request body (at most `limit` bytes) so it can be read here and by the handler; `None` when it is
/// larger, in which case the handler's own limit answers 413.
pub async fn peek_body(req: &mut Request, limit: usize) -> Option<Vec<u8>> {
    let body = req.take_body();
    match body.into_bytes_limit(limit).await {
        Ok(b) => {
            let b = b.to_vec();
            req.set_body(Body::from(b.clone()));
            Some(b)
        }
        Err(poem::error::ReadBodyError::Io(e)) => {
            // Unreadable (e.g. not sent within the body read deadline): the handler meets the same error.
            let e = std::io::Error::new(e.kind(), e.to_string());
            req.set_body(Body::from_bytes_stream(futures::stream::once(async move {
                Err::<Vec<u8>, _>(e)
            })));
            None
        }
        Err(_) => {
            // Too large: hand the handler something it refuses in the same words.
            req.set_body(Body::from(vec![b' '; limit + 1]));
            None
        }
    }
}

/// Reads a JSON response body's field, leaving the body in place.
pub async fn response_field(resp: &mut Response, fields: &[&str]) -> Vec<Option<String>> {
    let body = resp.take_body();
    let bytes = body.into_bytes().await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    resp.set_body(Body::from(bytes));
    fields
        .iter()
        .map(|f| v.get(*f).and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The peer's address for the record.
pub fn source_ip(req: &Request) -> Option<String> {
    req.remote_addr()
        .as_socket_addr()
        .map(|a: &SocketAddr| a.ip().to_string())
}
