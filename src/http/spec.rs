//! The two things poem-openapi's schema model cannot say, added to the generated JSON before it is served and
//! committed; everything else comes from the types in `types.rs`.
//!
//! - Closed request objects: `additionalProperties: false` on every object schema a request body uses
//!   (poem-openapi's `additionalProperties` is a schema, never `false`), as the domain refuses unknown fields.
//! - Each documented error response's own example body (poem-openapi has examples per schema, not per
//!   response, and every error response shares the one error body schema).
//! - The `Retry-After` header of every 429 response (poem-openapi documents headers only on response variants
//!   that carry a value for them, and the 429 is sent by the rate limiter, never by an operation).
//! - Names for enum values that are not identifiers (`x-enum-varnames`, read by openapi-python-client and
//!   openapi-generator): version `15` becomes `V15` in a generated client rather than `VALUE_3`, a name that
//!   changes meaning whenever the catalogue adds a version.
//! - The bearer security scheme and its requirement on the `/v1/` operations (left out of the document a broker
//!   serving without authentication serves).

use std::collections::BTreeSet;

use poem_openapi::types::ToJSON;
use serde_json::{Value, json};

use super::errors::example_for_status;

/// The name of the error body schema, as poem-openapi registers it.
const ERROR_BODY_REF: &str = "#/components/schemas/ErrorBody";

/// The name of the bearer token security scheme.
const BEARER_SCHEME: &str = "bearerAuth";

/// Adds what poem-openapi cannot express to a generated document; with `authenticated`, the `/v1/` operations
/// require the bearer scheme.
pub fn refine(raw: &str, authenticated: bool) -> Value {
    let mut doc: Value = serde_json::from_str(raw).expect("poem-openapi emits valid JSON");
    close_request_objects(&mut doc);
    add_error_examples(&mut doc);
    name_enum_values(&mut doc["components"]["schemas"]);
    add_security(&mut doc, authenticated);
    doc
}

/// The bearer scheme, and `security` on every `/v1/` operation when authentication is on. Done here rather
/// than with poem-openapi's `SecurityScheme` extractor: that extractor answers a missing token itself, with
/// poem's plain-text 401 instead of the error body, and cannot be switched off for `--dev`.
fn add_security(doc: &mut Value, authenticated: bool) {
    doc["components"]["securitySchemes"][BEARER_SCHEME] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "A token from the broker's token file (--auth-token-file), or a Kubernetes token checked \
                        with a TokenReview (--auth-kubernetes).",
    });
    if !authenticated {
        return;
    }
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for (path, methods) in paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for op in methods
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            let mut requirement = serde_json::Map::new();
            requirement.insert(BEARER_SCHEME.into(), json!([]));
            op["security"] = json!([requirement]);
        }
    }
}

/// `x-enum-varnames` for every string enum with a value that does not start with a letter (`15`, `8.0`):
/// `V` + the value with `.` as `_`. Enums with an empty or null value (the "empty means any" query fields) are
/// left alone: those values have no sensible name.
fn name_enum_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(values)) = m.get("enum") {
                let texts: Option<Vec<&str>> = values.iter().map(Value::as_str).collect();
                if let Some(texts) = texts
                    && texts.iter().all(|t| !t.is_empty())
                    && texts
                        .iter()
                        .any(|t| !t.starts_with(|c: char| c.is_ascii_alphabetic()))
                {
                    let names: Vec<String> = texts
                        .iter()
                        .map(|t| format!("V{}", t.replace('.', "_")))
                        .collect();
                    m.insert("x-enum-varnames".into(), json!(names));
                }
            }
            m.values_mut().for_each(name_enum_values);
        }
        Value::Array(items) => items.iter_mut().for_each(name_enum_values),
        _ => {}
    }
}

/// The component names a schema refers to, directly or through `properties`, `items`, `allOf`, `oneOf`,
/// `anyOf` (the discriminator mapping names the same components as `oneOf`).
fn collect_refs(schema: &Value, out: &mut Vec<String>) {
    let Value::Object(m) = schema else {
        return;
    };
    if let Some(r) = m.get("$ref").and_then(Value::as_str)
        && let Some(name) = r.strip_prefix("#/components/schemas/")
    {
        out.push(name.to_string());
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        props.values().for_each(|p| collect_refs(p, out));
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(items)) = m.get(key) {
            items.iter().for_each(|p| collect_refs(p, out));
        }
    }
    if let Some(items) = m.get("items") {
        collect_refs(items, out);
    }
}

fn close_request_objects(doc: &mut Value) {
    let mut pending = Vec::new();
    if let Some(Value::Object(paths)) = doc.get("paths") {
        for op in paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|m| m.values())
        {
            if let Some(Value::Object(content)) = op.pointer("/requestBody/content") {
                for media in content.values() {
                    collect_refs(&media["schema"], &mut pending);
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let schema = &mut doc["components"]["schemas"][&name];
        collect_refs(schema, &mut pending);
        // Only objects that list their properties: closing a `oneOf` wrapper would refuse every variant.
        if schema.get("properties").is_some() {
            schema["additionalProperties"] = json!(false);
        }
    }
}

fn add_error_examples(doc: &mut Value) {
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|m| m.values_mut())
    {
        let Some(Value::Object(responses)) = op.get_mut("responses") else {
            continue;
        };
        for (status, resp) in responses.iter_mut() {
            if status == "429" {
                resp["headers"] = json!({"Retry-After": {
                    "description": "Whole seconds after which the request will be admitted again.",
                    "required": true,
                    "schema": {"type": "integer", "minimum": 1},
                }});
            }
            let Some(body) = status.parse().ok().and_then(example_for_status) else {
                continue;
            };
            let Some(Value::Object(content)) = resp.get_mut("content") else {
                continue;
            };
            for media in content.values_mut() {
                if media.pointer("/schema/$ref").and_then(Value::as_str) == Some(ERROR_BODY_REF) {
                    media["example"] = body.to_json().unwrap_or_default();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{self, Engine, Size};
    use crate::http::types::engine_variant_name;

    fn doc() -> Value {
        refine(&crate::http::openapi_service(None).spec(), true)
    }

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        let s = &doc["components"]["schemas"][name];
        assert!(s.is_object(), "schema {name} exists");
        s
    }

    fn property_names(schema: &Value) -> Vec<&str> {
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// The names in `fields`, sorted (the JSON map is ordered by key, the domain's lists by the reference).
    fn sorted<'a>(fields: &[&'a str]) -> Vec<&'a str> {
        let mut v = fields.to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn request_schemas_name_exactly_the_domains_fields() {
        let doc = doc();
        for (name, fields) in [
            ("ProvisionRequest", &domain::PROVISION_FIELDS[..]),
            ("BackupSpec", &domain::BACKUP_FIELDS[..]),
            ("EncryptionSpec", &domain::ENCRYPTION_FIELDS[..]),
            ("DeprovisionRequest", &domain::DEPROVISION_FIELDS[..]),
            ("ResourcesQuery", &domain::QUERY_FIELDS[..]),
        ] {
            assert_eq!(property_names(schema(&doc, name)), sorted(fields), "{name}");
        }
        for e in Engine::ALL {
            let variant = schema(&doc, &engine_variant_name(e));
            assert_eq!(property_names(variant), sorted(&domain::SPEC_FIELDS), "{e}");
        }
        let params: Vec<&str> = doc["paths"]["/v1/resources"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(params, domain::QUERY_FIELDS);
    }

    #[test]
    fn every_engine_variant_is_complete_closed_and_lists_the_catalogues_versions() {
        let doc = doc();
        let spec = schema(&doc, "ResourceSpec");
        assert!(
            spec.get("properties").is_none() && spec.get("additionalProperties").is_none(),
            "the oneOf wrapper holds no partial object: {spec}"
        );
        assert_eq!(spec["discriminator"]["propertyName"], "engine");
        let one_of = spec["oneOf"].as_array().unwrap();
        assert_eq!(one_of.len(), Engine::ALL.len());
        for (e, r) in Engine::ALL.iter().zip(one_of) {
            let name = engine_variant_name(*e);
            let target = format!("#/components/schemas/{name}");
            assert_eq!(r["$ref"], target.as_str());
            assert_eq!(
                spec["discriminator"]["mapping"][e.as_str()],
                target.as_str()
            );
            let v = schema(&doc, &name);
            assert_eq!(v["type"], "object");
            assert_eq!(v["additionalProperties"], false, "{name} is closed");
            assert_eq!(
                v["required"],
                json!(["engine", "version", "size"]),
                "{name}"
            );
            assert_eq!(v["properties"]["engine"]["enum"], json!([e.as_str()]));
            let versions: Vec<&str> = e.info().versions.iter().map(|v| v.version).collect();
            assert_eq!(
                v["properties"]["version"]["enum"],
                json!(versions),
                "{name}"
            );
            let names: Vec<String> = versions
                .iter()
                .map(|v| format!("V{}", v.replace('.', "_")))
                .collect();
            assert_eq!(
                v["properties"]["version"]["x-enum-varnames"],
                json!(names),
                "{name}"
            );
            assert_eq!(v["properties"]["size"]["$ref"], "#/components/schemas/Size");
            for optional in ["highAvailability", "backup", "encryption"] {
                assert_eq!(
                    v["properties"][optional]["nullable"], true,
                    "{name}.{optional}"
                );
            }
        }
        let sizes: Vec<&str> = Size::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(schema(&doc, "Size")["enum"], json!(sizes));
    }

    #[test]
    fn request_objects_are_closed_and_response_objects_are_not() {
        let doc = doc();
        for name in [
            "ProvisionRequest",
            "BackupSpec",
            "EncryptionSpec",
            "DeprovisionRequest",
            "ResourcesQuery",
        ] {
            assert_eq!(schema(&doc, name)["additionalProperties"], false, "{name}");
        }
        for name in ["ResourceState", "ErrorBody", "DeploymentStatus"] {
            assert!(
                schema(&doc, name).get("additionalProperties").is_none(),
                "{name}: clients must tolerate new response fields"
            );
        }
    }

    #[test]
    fn the_documented_examples_are_requests_the_domain_accepts() {
        let doc = doc();
        domain::parse_provision(&schema(&doc, "ProvisionRequest")["example"]).unwrap();
        domain::parse_deprovision(&schema(&doc, "DeprovisionRequest")["example"]).unwrap();
        domain::parse_resources_query_body(&schema(&doc, "ResourcesQuery")["example"]).unwrap();
    }

    /// Whether the schema's `pattern` and lengths accept `s`.
    fn schema_accepts(schema: &Value, s: &str) -> bool {
        let chars = s.chars().count() as u64;
        schema["pattern"]
            .as_str()
            .is_none_or(|p| regex::Regex::new(p).unwrap().is_match(s))
            && schema["minLength"].as_u64().is_none_or(|m| chars >= m)
            && schema["maxLength"].as_u64().is_none_or(|m| chars <= m)
    }

    #[test]
    fn patterns_are_never_stricter_than_the_domain() {
        let doc = doc();
        let p = &schema(&doc, "ProvisionRequest")["properties"];
        let b = &schema(&doc, "BackupSpec")["properties"];
        let d = &schema(&doc, "DeprovisionRequest")["properties"];
        let long_name = "a".repeat(domain::MAX_RESOURCE_NAME_LEN);
        let too_long_name = "a".repeat(domain::MAX_RESOURCE_NAME_LEN + 1);
        let long_ns = "n".repeat(domain::MAX_NAMESPACE_LEN);
        let names = [
            "a",
            "db",
            "postgres-app-db",
            "a1",
            "a-b-c",
            "A",
            "1db",
            "db-",
            "-db",
            "a_b",
            "",
            &long_name,
            &too_long_name,
        ];
        // For each field: the schema, the domain's verdict, and texts to try. Where the domain accepts, the
        // schema must too; for names, namespaces, teams and ids they agree exactly.
        let check =
            |schema: &Value, exact: bool, domain_ok: &dyn Fn(&str) -> bool, texts: &[&str]| {
                for t in texts {
                    let (d, s) = (domain_ok(t), schema_accepts(schema, t));
                    if d {
                        assert!(
                            s,
                            "the schema refuses {t:?}, which the domain accepts: {schema}"
                        );
                    }
                    if exact {
                        assert_eq!(d, s, "{t:?}: {schema}");
                    }
                }
            };
        let name_ok = |s: &str| domain::is_dns1035_label(s, domain::MAX_RESOURCE_NAME_LEN);
        check(&p["resourceName"], true, &name_ok, &names);
        check(&d["resourceName"], true, &name_ok, &names);
        let ns_ok = |s: &str| domain::is_dns1123_label(s, domain::MAX_NAMESPACE_LEN);
        check(
            &p["namespace"],
            true,
            &ns_ok,
            &[&names[..], &["1db", &long_ns]].concat(),
        );
        let team_ok = |s: &str| domain::is_label_value(s) && !s.is_empty();
        check(
            &p["team"],
            true,
            &team_ok,
            &[
                "platform-team",
                "Team_A.b",
                "a",
                "-a",
                "a-",
                "a b",
                "",
                &"t".repeat(63),
                &"t".repeat(64),
            ],
        );
        check(
            &p["owner"],
            false,
            &domain::is_email,
            &["user@example.com", "a.b+c@d.example", "nope", "@x", "a@"],
        );
        let url_ok =
            |s: &str| s.len() <= domain::MAX_CALLBACK_URL_LEN && domain::HttpUrl::parse(s).is_ok();
        check(
            &p["callbackUrl"],
            false,
            &url_ok,
            &[
                "http://manager:9090/v1/callback",
                "HTTPS://x.example/cb",
                "http://127.0.0.1:8/x",
                "ftp://x",
                "manager:9090",
            ],
        );
        let id_ok = |s: &str| domain::DeploymentId::parse(s).is_some();
        check(
            &d["deploymentId"],
            true,
            &id_ok,
            &[
                "deploy-fc8fc917314e2b8b698427458cd35342",
                "deploy-abc123",
                "deploy-FC8FC917314E2B8B698427458CD35342",
                "",
            ],
        );
        let retention_ok = |s: &str| domain::RetentionPeriod::parse(s).is_ok();
        check(
            &b["retention"],
            false,
            &retention_ok,
            &["7d", "36h", "2w", "0d", "7", "7 d", "3651d"],
        );
        let schedule_ok = |s: &str| domain::CronSchedule::parse(s).is_some();
        check(
            &b["schedule"],
            false,
            &schedule_ok,
            &["0 2 * * *", "30 1 * * SUN", ""],
        );
        // Optional query fields: empty means absent to the domain, so the schema allows it.
        let q = &schema(&doc, "ResourcesQuery")["properties"];
        for field in ["resourceName", "deploymentId"] {
            assert!(schema_accepts(&q[field], ""), "{field}");
        }
        assert_eq!(q["resourceType"]["enum"][0], "");
    }

    #[test]
    fn each_error_response_shows_its_own_example() {
        let doc = doc();
        let mut seen = BTreeSet::new();
        for (path, methods) in doc["paths"].as_object().unwrap() {
            for (method, op) in methods.as_object().unwrap() {
                for (status, resp) in op["responses"].as_object().unwrap() {
                    let Some(media) = resp["content"].as_object().and_then(|c| c.values().next())
                    else {
                        continue;
                    };
                    if media["schema"]["$ref"] != ERROR_BODY_REF {
                        continue;
                    }
                    let ex = &media["example"];
                    let code: u64 = status.parse().unwrap();
                    assert_eq!(ex["code"], code, "{method} {path} {status}: {ex}");
                    let want = match code {
                        400 => "validation_failed",
                        401 => "unauthorized",
                        403 => "forbidden",
                        404 => "resource_not_found",
                        409 => "resource_conflict",
                        413 => "payload_too_large",
                        429 => "rate_limited",
                        503 => "kubernetes_error",
                        _ => panic!("{method} {path} documents {status}"),
                    };
                    assert_eq!(ex["error"], want, "{method} {path} {status}");
                    assert!(ex["message"].as_str().is_some_and(|m| !m.is_empty()));
                    if code == 429 {
                        assert_eq!(
                            resp["headers"]["Retry-After"]["schema"]["type"], "integer",
                            "{method} {path}"
                        );
                    }
                    seen.insert(code);
                }
            }
        }
        assert_eq!(
            seen,
            BTreeSet::from([400, 401, 403, 404, 409, 413, 429, 503])
        );
        let codes: Vec<&str> = super::super::errors::ERROR_CODES.to_vec();
        assert_eq!(schema(&doc, "ErrorCode")["enum"], json!(codes));
        assert_eq!(
            schema(&doc, "ErrorBody")["properties"]["error"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
    }

    #[test]
    fn every_api_operation_requires_the_bearer_scheme_unless_authentication_is_off() {
        let raw = crate::http::openapi_service(None).spec();
        for authenticated in [true, false] {
            let doc = refine(&raw, authenticated);
            assert_eq!(
                doc["components"]["securitySchemes"][BEARER_SCHEME]["scheme"],
                "bearer"
            );
            for (path, methods) in doc["paths"].as_object().unwrap() {
                for (method, op) in methods.as_object().unwrap() {
                    let api = path.starts_with("/v1/");
                    if api && authenticated {
                        assert_eq!(
                            op["security"],
                            json!([{"bearerAuth": []}]),
                            "{method} {path}"
                        );
                        for status in ["401", "403"] {
                            assert!(
                                op["responses"][status].is_object(),
                                "{method} {path} {status}"
                            );
                        }
                        // poem-openapi spells header names in capitals; HTTP header names ignore case.
                        let headers = op["responses"]["401"]["headers"].as_object().unwrap();
                        assert!(
                            headers
                                .keys()
                                .any(|h| h.eq_ignore_ascii_case("www-authenticate")),
                            "{method} {path}"
                        );
                    } else {
                        assert!(op.get("security").is_none(), "{method} {path}");
                    }
                }
            }
        }
    }

    #[test]
    fn response_enums_and_timestamps_are_typed() {
        let doc = doc();
        let phases: Vec<&str> = domain::Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(schema(&doc, "Phase")["enum"], json!(phases));
        let health: Vec<&str> = domain::Health::ALL.iter().map(|h| h.as_str()).collect();
        assert_eq!(schema(&doc, "HealthStatus")["enum"], json!(health));
        let phase_ref = json!("#/components/schemas/Phase");
        assert_eq!(
            schema(&doc, "DeploymentStatus")["properties"]["phase"]["$ref"],
            phase_ref
        );
        let state = &schema(&doc, "ResourceState")["properties"];
        assert_eq!(state["phase"]["$ref"], phase_ref);
        assert_eq!(
            state["healthStatus"]["$ref"],
            "#/components/schemas/HealthStatus"
        );
        for (name, field) in [
            ("Health", "time"),
            ("DeploymentStatus", "lastUpdated"),
            ("ResourceState", "lastChecked"),
        ] {
            assert_eq!(
                schema(&doc, name)["properties"][field]["format"],
                "date-time",
                "{name}.{field}"
            );
        }
    }
}
