//! A JSON request body that is documented by a poem-openapi schema but parsed and validated by the domain, so
//! that every error names the field in the broker's own words ("resourceName is required") instead of a
//! generic deserializer message.

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::errors::Problem;

/// The body size limit in force, put into request data by the router.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A request body type: its documented schema and its validating parser.
pub trait ValidatedBody: Sized + Send {
    /// The poem-openapi type that documents the body.
    type Schema: Type;
    /// Parses and validates an already-decoded JSON document.
    fn validate(v: &serde_json::Value) -> Result<Self, Problem>;
}

/// The extractor: `application/json`, at most [`BodyLimit`] bytes, then [`ValidatedBody::validate`].
pub struct ValidJson<T>(pub T);

const CONTENT_TYPE: &str = "application/json";

fn is_json(ct: &str) -> bool {
    let main = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    main == "application/json" || (main.starts_with("application/") && main.ends_with("+json"))
}

impl<'a, T: ValidatedBody> ApiExtractor<'a> for ValidJson<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::Schema::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: CONTENT_TYPE,
                schema: <T::Schema as Type>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(ct) if is_json(ct) => {}
            Some(ct) => {
                return Err(Problem::invalid_request(format!(
                    "Content-Type must be application/json, got {ct:?}"
                ))
                .into());
            }
            None => {
                return Err(
                    Problem::invalid_request("Content-Type must be application/json").into(),
                );
            }
        }
        let limit = request
            .data::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit(64 * 1024))
            .0;
        let bytes = body
            .take()
            .map_err(|_| Problem::invalid_request("the request body was already read"))?
            .into_bytes_limit(limit)
            .await
            .map_err(|e| match e {
                poem::error::ReadBodyError::PayloadTooLarge => Problem::payload_too_large(limit),
                other => Problem::invalid_request(format!("reading the request body: {other}")),
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Problem::invalid_request(
                "the request body is empty; a JSON object is required",
            )
            .into());
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::invalid_request(format!("the request body is not valid JSON: {e}"))
        })?;
        Ok(ValidJson(T::validate(&v)?))
    }
}
