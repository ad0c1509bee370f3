//! Authentication at the door: every `/v1/` request needs a subject before it reaches an operation. The
//! middleware reads the `Authorization: Bearer` token and the connection's verified client certificate (if
//! any), asks [`Access`] who they belong to, and either puts the
//! [`Subject`] into the request for the operation's [`Caller`] extractor or answers 401 itself. Everything else
//! (`/health`, `/readiness`, the spec, `/docs`; the metrics port is another server) stays open.
//!
//! Decides who, never what: whether the subject may act is the use case's question.

use std::sync::Arc;

use poem::error::ResponseError as _;
use poem::http::HeaderValue;
use poem::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use poem::{Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response};

use super::errors::Problem;
use super::tls::PeerCertificates;
use crate::auth::{Access, AuthError, Subject};

/// The challenge of every 401 (RFC 6750); `error="invalid_token"` when a token was presented but refused.
pub const CHALLENGE: &str = "Bearer realm=\"kidp-broker\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"kidp-broker\", error=\"invalid_token\"";

/// Whether a path is behind authentication: the API proper.
fn protected(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive); `None` for no
/// header or another scheme.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A 401 in the error body, with the challenge.
pub fn unauthorized(err: &AuthError) -> Response {
    let mut resp = Problem::unauthorized(err.to_string()).as_response();
    let challenge = match err {
        AuthError::Invalid => CHALLENGE_INVALID,
        _ => CHALLENGE,
    };
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

/// The middleware: authenticates `/v1/` requests, passes the rest through.
pub async fn authenticate<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    access: Arc<Access>,
    peers: Arc<PeerCertificates>,
) -> poem::Result<Response> {
    if !protected(req.uri().path()) {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let certificate = peers.get(req.remote_addr());
    match access
        .authenticate(bearer(&req), certificate.as_deref())
        .await
    {
        Ok(subject) => {
            let who = super::audit::AuditSubject(subject.to_string());
            // The rate limit (inside this layer) is kept per authenticated subject, else per address (an open
            // broker's callers are all "anonymous" and must not share one budget).
            if access.disabled_by().is_none() {
                req.extensions_mut()
                    .insert(super::limits::RateSubject(subject.to_string()));
            }
            req.extensions_mut().insert(subject);
            let mut resp = match ep.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => super::errors::render_any_error(e),
            };
            // The audit record (written outside this layer) names who asked.
            resp.extensions_mut().insert(who);
            Ok(resp)
        }
        Err(AuthError::Unavailable(e)) => Ok(Problem::from(e).as_response()),
        Err(e) => {
            // Refused before anyone is known: the audit record names the request, not a subject.
            tracing::info!(
                outcome = "unauthorized",
                method = %req.method(),
                path = %req.uri().path(),
                remote = %req.remote_addr(),
                reason = %e,
                "request refused"
            );
            Ok(unauthorized(&e))
        }
    }
}

/// The authenticated caller of an operation, as the middleware found it.
pub struct Caller(pub Subject);

impl<'a> FromRequest<'a> for Caller {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        // Only reachable without a subject if an operation were served outside `/v1/`: refuse, never guess.
        req.extensions()
            .get::<Subject>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                poem::Error::from_response(unauthorized(&AuthError::Missing(
                    "an authenticated caller is",
                )))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request {
        Request::builder().header(AUTHORIZATION, value).finish()
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(&with_auth("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with_auth("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with_auth("Basic YWxhZGRpbjpvcGVu")), None);
        assert_eq!(bearer(&with_auth("Bearer")), None);
        assert_eq!(bearer(&with_auth("Bearer   ")), None);
        assert_eq!(bearer(&Request::builder().finish()), None);
    }

    #[test]
    fn only_the_api_is_protected() {
        assert!(protected("/v1/provision"));
        assert!(protected("/v1/unknown"));
        assert!(protected("/v1"));
        for open in [
            "/health",
            "/readiness",
            "/openapi.json",
            "/openapi.yaml",
            "/docs",
            "/v1x",
        ] {
            assert!(!protected(open), "{open}");
        }
    }
}
