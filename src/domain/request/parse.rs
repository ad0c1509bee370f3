//! Parsing and validating requests from JSON values and query parameters, field by field, in the order the
//! API reference lists them, so a request with several faults always gets the same answer.

use serde_json::{Map, Value};

use super::super::catalogue::{Engine, ResourceType, Size, engine_info, join_names};
use super::super::cron::CronSchedule;
use super::super::formats::{
    HttpUrl, UrlError, is_dns1035_label, is_dns1123_label, is_email, is_label_value,
};
use super::super::id::DeploymentId;

use super::*;

/// User text echoed in a message: quoted, and cut to 64 characters so that a hostile body cannot bloat
/// responses and log lines.
fn quoted(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
    }
}

// --- field access ---------------------------------------------------------------------------------------

/// The body as an object, or the one error every endpoint gives for anything else.
fn body_object(v: &Value) -> Result<&Map<String, Value>, ValidationError> {
    v.as_object()
        .ok_or_else(|| ValidationError::new("", "request body must be a JSON object"))
}

/// Refuses the alphabetically first key of `obj` not in `allowed`, naming it by its full path.
fn reject_unknown(
    obj: &Map<String, Value>,
    prefix: &str,
    allowed: &[&str],
) -> Result<(), ValidationError> {
    // Sorted explicitly: serde_json's map order depends on a cargo feature some other crate might enable.
    match obj.keys().filter(|k| !allowed.contains(&k.as_str())).min() {
        Some(k) => {
            let path = format!("{prefix}{k}");
            let message = format!("unknown field {}", quoted(&path));
            Err(ValidationError::new(path, message))
        }
        None => Ok(()),
    }
}

/// A string field that may be absent (or `null`); present strings are returned even when empty.
fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ValidationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::wrong_type(path, "a string")),
    }
}

/// A string field that must be present and non-empty.
fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, ValidationError> {
    match opt_str(obj, key, path)? {
        None | Some("") => Err(ValidationError::required(path)),
        Some(s) => Ok(s),
    }
}

fn opt_bool(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<bool>, ValidationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ValidationError::wrong_type(path, "a boolean")),
    }
}

fn opt_object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, ValidationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(ValidationError::wrong_type(path, "an object")),
    }
}

// --- per-field rules --------------------------------------------------------------------------------------

const RESOURCE_TYPE: &str = "resourceType";
const RESOURCE_NAME: &str = "resourceName";
const NAMESPACE: &str = "namespace";
const TEAM: &str = "team";
const OWNER: &str = "owner";
const CALLBACK_URL: &str = "callbackUrl";
const DEPLOYMENT_ID: &str = "deploymentId";
const SPEC: &str = "spec";

/// The fields of a `POST /v1/provision` body, in the API reference's order (the order checks run in). The HTTP
/// layer's documented schemas are tested against these lists, so the spec and the validator name the same fields.
pub const PROVISION_FIELDS: [&str; 7] = [
    RESOURCE_TYPE,
    RESOURCE_NAME,
    NAMESPACE,
    TEAM,
    OWNER,
    CALLBACK_URL,
    SPEC,
];
/// The fields of `spec`, in order.
pub const SPEC_FIELDS: [&str; 6] = [
    "engine",
    "version",
    "size",
    "highAvailability",
    "backup",
    "encryption",
];
/// The fields of `spec.backup`, in order.
pub const BACKUP_FIELDS: [&str; 3] = ["enabled", "retention", "schedule"];
/// The fields of `spec.encryption`, in order.
pub const ENCRYPTION_FIELDS: [&str; 2] = ["atRest", "inTransit"];
/// The fields of a `POST /v1/deprovision` body, in order.
pub const DEPROVISION_FIELDS: [&str; 5] = [
    DEPLOYMENT_ID,
    RESOURCE_TYPE,
    RESOURCE_NAME,
    NAMESPACE,
    CALLBACK_URL,
];
/// The fields of a resources query (`POST /v1/resources` body, `GET` parameters), in order.
pub const QUERY_FIELDS: [&str; 4] = [NAMESPACE, RESOURCE_TYPE, RESOURCE_NAME, DEPLOYMENT_ID];

/// Any of the three known types (queries may filter on types not provisioned yet).
fn resource_type_any(s: &str) -> Result<ResourceType, ValidationError> {
    s.parse().map_err(|_| {
        ValidationError::new(
            RESOURCE_TYPE,
            format!(
                "resourceType must be one of: {}",
                join_names(&ResourceType::ALL, ResourceType::as_str)
            ),
        )
    })
}

/// A type the broker can provision today.
fn resource_type_supported(s: &str) -> Result<ResourceType, ValidationError> {
    let t = resource_type_any(s)?;
    if t.is_supported() {
        Ok(t)
    } else {
        Err(ValidationError::new(
            RESOURCE_TYPE,
            format!(
                "resourceType {:?} is not supported yet (supported: {})",
                t.as_str(),
                join_names(&ResourceType::SUPPORTED, ResourceType::as_str)
            ),
        ))
    }
}

fn resource_name(s: &str) -> Result<String, ValidationError> {
    // RFC 1035, not just 1123: the client Service is named after the resource, and Service names must start
    // with a letter.
    if is_dns1035_label(s, MAX_RESOURCE_NAME_LEN) {
        Ok(s.to_string())
    } else {
        Err(ValidationError::new(
            RESOURCE_NAME,
            format!(
                "resourceName must be a lowercase RFC 1035 label (a-z, 0-9, '-', starting with a letter and \
                 ending with a letter or digit) of at most {MAX_RESOURCE_NAME_LEN} characters"
            ),
        ))
    }
}

fn namespace(s: &str) -> Result<String, ValidationError> {
    if is_dns1123_label(s, MAX_NAMESPACE_LEN) {
        Ok(s.to_string())
    } else {
        Err(ValidationError::new(
            NAMESPACE,
            format!(
                "namespace must be a lowercase RFC 1123 label (a-z, 0-9, '-', starting and ending with a \
                 letter or digit) of at most {MAX_NAMESPACE_LEN} characters"
            ),
        ))
    }
}

fn team(s: &str) -> Result<String, ValidationError> {
    // The team becomes a label value on every object, so it must be a valid one.
    if is_label_value(s) {
        Ok(s.to_string())
    } else {
        Err(ValidationError::new(
            TEAM,
            "team must be at most 63 characters of a-z, A-Z, 0-9, '-', '_' and '.', starting and ending \
             with a letter or digit",
        ))
    }
}

fn owner(s: &str) -> Result<String, ValidationError> {
    if is_email(s) {
        Ok(s.to_string())
    } else {
        Err(ValidationError::new(
            OWNER,
            "owner must be an email address",
        ))
    }
}

fn callback_url(s: &str) -> Result<String, ValidationError> {
    if s.len() > MAX_CALLBACK_URL_LEN {
        return Err(ValidationError::new(
            CALLBACK_URL,
            format!("callbackUrl must be at most {MAX_CALLBACK_URL_LEN} characters"),
        ));
    }
    match HttpUrl::parse(s) {
        Ok(_) => Ok(s.to_string()),
        Err(UrlError::Invalid) => Err(ValidationError::new(
            CALLBACK_URL,
            "callbackUrl must be an absolute http(s) URL",
        )),
        Err(UrlError::Credentials) => Err(ValidationError::new(
            CALLBACK_URL,
            "callbackUrl must not contain credentials (user:password@)",
        )),
    }
}

fn deployment_id(field: &str, s: &str) -> Result<DeploymentId, ValidationError> {
    DeploymentId::parse(s).ok_or_else(|| {
        ValidationError::new(
            field,
            format!("{field} must look like deploy-<32 hex characters>"),
        )
    })
}

fn engine(s: &str) -> Result<Engine, ValidationError> {
    s.parse().map_err(|_| {
        ValidationError::new(
            "spec.engine",
            format!(
                "spec.engine must be one of: {}",
                join_names(&Engine::ALL, Engine::as_str)
            ),
        )
    })
}

fn version(engine: Engine, s: &str) -> Result<String, ValidationError> {
    let info = engine_info(engine);
    match info.version(s) {
        Some(v) => Ok(v.version.to_string()),
        None => Err(ValidationError::new(
            "spec.version",
            format!(
                "spec.version {} is not supported for {engine} (supported: {})",
                quoted(s),
                info.versions_list()
            ),
        )),
    }
}

fn size(s: &str) -> Result<Size, ValidationError> {
    s.parse().map_err(|_| {
        ValidationError::new(
            "spec.size",
            format!(
                "spec.size must be one of: {}",
                join_names(&Size::ALL, Size::as_str)
            ),
        )
    })
}

fn retention(s: &str) -> Result<RetentionPeriod, ValidationError> {
    const FIELD: &str = "spec.backup.retention";
    RetentionPeriod::parse(s).map_err(|e| {
        let message = match e {
            RetentionError::Malformed => {
                "spec.backup.retention must be a duration such as 7d or 36h"
            }
            RetentionError::Zero => "spec.backup.retention must be longer than zero",
            RetentionError::TooLong => "spec.backup.retention must be at most 3650d",
        };
        ValidationError::new(FIELD, message)
    })
}

fn schedule(s: &str) -> Result<CronSchedule, ValidationError> {
    CronSchedule::parse(s).ok_or_else(|| {
        ValidationError::new(
            "spec.backup.schedule",
            "spec.backup.schedule must be a 5-field cron expression such as \"0 2 * * *\"",
        )
    })
}

// --- whole requests ---------------------------------------------------------------------------------------

/// Validates a `POST /v1/provision` body.
pub fn parse_provision(v: &Value) -> Result<ProvisionRequest, ValidationError> {
    let body = body_object(v)?;

    // Unknown fields first, outermost first, so a typo is reported as a typo rather than as the missing
    // field it was meant to be.
    reject_unknown(body, "", &PROVISION_FIELDS)?;
    if let Some(Value::Object(spec)) = body.get(SPEC) {
        reject_unknown(spec, "spec.", &SPEC_FIELDS)?;
        if let Some(Value::Object(b)) = spec.get("backup") {
            reject_unknown(b, "spec.backup.", &BACKUP_FIELDS)?;
        }
        if let Some(Value::Object(e)) = spec.get("encryption") {
            reject_unknown(e, "spec.encryption.", &ENCRYPTION_FIELDS)?;
        }
    }

    let resource_type = resource_type_supported(req_str(body, RESOURCE_TYPE, RESOURCE_TYPE)?)?;
    let resource_name = resource_name(req_str(body, RESOURCE_NAME, RESOURCE_NAME)?)?;
    let namespace = namespace(req_str(body, NAMESPACE, NAMESPACE)?)?;
    let team = team(req_str(body, TEAM, TEAM)?)?;
    let owner = owner(req_str(body, OWNER, OWNER)?)?;
    let callback_url = callback_url(req_str(body, CALLBACK_URL, CALLBACK_URL)?)?;
    let spec = opt_object(body, SPEC, SPEC)?.ok_or_else(|| ValidationError::required(SPEC))?;
    let spec = parse_spec(spec)?;

    Ok(ProvisionRequest {
        resource_type,
        resource_name,
        namespace,
        team,
        owner,
        callback_url,
        spec,
    })
}

fn parse_spec(spec: &Map<String, Value>) -> Result<DesiredSpec, ValidationError> {
    let engine = engine(req_str(spec, "engine", "spec.engine")?)?;
    let version = version(engine, req_str(spec, "version", "spec.version")?)?;
    let size = size(req_str(spec, "size", "spec.size")?)?;
    let high_availability =
        opt_bool(spec, "highAvailability", "spec.highAvailability")?.unwrap_or(false);

    let backup = match opt_object(spec, "backup", "spec.backup")? {
        None => Backup::default(),
        Some(b) => {
            // Required rather than defaulted: `{"retention": "30d"}` alone is ambiguous, and guessing wrong
            // either loses data or costs money.
            let enabled = opt_bool(b, "enabled", "spec.backup.enabled")?
                .ok_or_else(|| ValidationError::required("spec.backup.enabled"))?;
            let retention = opt_str(b, "retention", "spec.backup.retention")?
                .map(retention)
                .transpose()?;
            let schedule = opt_str(b, "schedule", "spec.backup.schedule")?
                .map(schedule)
                .transpose()?;
            if enabled {
                Backup {
                    enabled,
                    retention: Some(retention.unwrap_or_else(RetentionPeriod::default_backup)),
                    schedule: Some(schedule.unwrap_or_else(CronSchedule::default_backup)),
                }
            } else {
                // Kept as given: a team may switch backups off for a while and on again with its settings.
                Backup {
                    enabled,
                    retention,
                    schedule,
                }
            }
        }
    };

    let encryption = match opt_object(spec, "encryption", "spec.encryption")? {
        None => Encryption::default(),
        Some(e) => Encryption {
            at_rest: opt_bool(e, "atRest", "spec.encryption.atRest")?.unwrap_or(false),
            in_transit: opt_bool(e, "inTransit", "spec.encryption.inTransit")?.unwrap_or(false),
        },
    };

    Ok(DesiredSpec {
        engine,
        version,
        size,
        high_availability,
        backup,
        encryption,
    })
}

/// Validates a `POST /v1/deprovision` body.
pub fn parse_deprovision(v: &Value) -> Result<DeprovisionRequest, ValidationError> {
    let body = body_object(v)?;
    reject_unknown(body, "", &DEPROVISION_FIELDS)?;
    let deployment_id = deployment_id(DEPLOYMENT_ID, req_str(body, DEPLOYMENT_ID, DEPLOYMENT_ID)?)?;
    let resource_type = resource_type_supported(req_str(body, RESOURCE_TYPE, RESOURCE_TYPE)?)?;
    let resource_name = resource_name(req_str(body, RESOURCE_NAME, RESOURCE_NAME)?)?;
    let namespace = namespace(req_str(body, NAMESPACE, NAMESPACE)?)?;
    let callback_url = opt_str(body, CALLBACK_URL, CALLBACK_URL)?
        .map(callback_url)
        .transpose()?;
    Ok(DeprovisionRequest {
        deployment_id,
        resource_type,
        resource_name,
        namespace,
        callback_url,
    })
}

/// Validates the `GET /v1/resources` query parameters.
///
/// An empty optional parameter (`?resourceName=`) counts as absent, as HTML forms and many clients send
/// them; an empty `namespace` is missing. `resourceType` may be any known type, `cache` and `topic` included:
/// filtering on them is a fair question that currently has an empty answer.
pub fn parse_resources_query(
    namespace: Option<&str>,
    resource_type: Option<&str>,
    resource_name: Option<&str>,
    deployment_id: Option<&str>,
) -> Result<ResourcesQuery, ValidationError> {
    let namespace =
        self::namespace(present(namespace).ok_or_else(|| ValidationError::required(NAMESPACE))?)?;
    let resource_type = present(resource_type).map(resource_type_any).transpose()?;
    let resource_name = present(resource_name)
        .map(self::resource_name)
        .transpose()?;
    let deployment_id = present(deployment_id)
        .map(|s| self::deployment_id(DEPLOYMENT_ID, s))
        .transpose()?;
    Ok(ResourcesQuery {
        namespace,
        resource_type,
        resource_name,
        deployment_id,
    })
}

/// An optional parameter, with empty meaning absent.
fn present(p: Option<&str>) -> Option<&str> {
    p.filter(|s| !s.is_empty())
}

/// Validates a `POST /v1/resources` body: the same fields and rules as the query parameters, as JSON strings
/// (or `null`).
pub fn parse_resources_query_body(v: &Value) -> Result<ResourcesQuery, ValidationError> {
    let body = body_object(v)?;
    reject_unknown(body, "", &QUERY_FIELDS)?;
    let namespace = opt_str(body, NAMESPACE, NAMESPACE)?;
    let resource_type = opt_str(body, RESOURCE_TYPE, RESOURCE_TYPE)?;
    let resource_name = opt_str(body, RESOURCE_NAME, RESOURCE_NAME)?;
    let deployment_id = opt_str(body, DEPLOYMENT_ID, DEPLOYMENT_ID)?;
    parse_resources_query(namespace, resource_type, resource_name, deployment_id)
}

/// Validates the `id` parameter of `GET /v1/status`.
pub fn parse_status_id(id: Option<&str>) -> Result<DeploymentId, ValidationError> {
    match id {
        None | Some("") => Err(ValidationError::required("id")),
        Some(s) => deployment_id("id", s),
    }
}

/// A warning for the 202 message when the requested version is end-of-life upstream, e.g. `warning:
/// postgresql 12 is end-of-life upstream and receives no security fixes; consider 16`. The request is still
/// accepted: teams sometimes must match an existing fleet, and the warning is on the record.
pub fn eol_warning(spec: &DesiredSpec) -> Option<String> {
    let v = spec.version_info()?;
    v.end_of_life.then(|| {
        format!(
            "warning: {} {} is end-of-life upstream and receives no security fixes; consider {}",
            spec.engine,
            v.version,
            spec.engine_info().recommended_version().version
        )
    })
}
