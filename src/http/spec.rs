//! Constraints the generated OpenAPI document cannot express through poem-openapi's derives, added to the
//! JSON before it is served and committed: closed request objects (`additionalProperties: false`), name and id
//! patterns, and which versions each engine accepts.
//!
//! Patterns are never stricter than the domain's validation (anything a pattern refuses, the broker refuses
//! too); some rules (cron ranges, email and URL syntax) stay looser here and are enforced with a 400 that names
//! the field.

use serde_json::{Value, json};

use crate::domain::{Engine, MAX_CALLBACK_URL_LEN, MAX_NAMESPACE_LEN, MAX_RESOURCE_NAME_LEN};

const RESOURCE_NAME: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
const NAMESPACE: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const TEAM: &str = "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
const EMAIL: &str = "^[^@\\s]+@[^@\\s]+$";
const HTTP_URL: &str = "^[hH][tT][tT][pP][sS]?://[^\\s]+$";
const DEPLOYMENT_ID: &str = "^deploy-[0-9a-f]{32}$";
const RETENTION: &str = "^[0-9]+[hdw]$";

fn name_schema() -> Value {
    json!({"type": "string", "pattern": RESOURCE_NAME, "minLength": 1, "maxLength": MAX_RESOURCE_NAME_LEN})
}

fn namespace_schema() -> Value {
    json!({"type": "string", "pattern": NAMESPACE, "minLength": 1, "maxLength": MAX_NAMESPACE_LEN})
}

fn deployment_id_schema() -> Value {
    json!({"type": "string", "pattern": DEPLOYMENT_ID})
}

fn url_schema() -> Value {
    json!({"type": "string", "pattern": HTTP_URL, "maxLength": MAX_CALLBACK_URL_LEN})
}

/// The schema of an optional query field where an empty value counts as absent.
fn or_empty(mut s: Value) -> Value {
    if let Some(p) = s["pattern"].as_str() {
        let inner = p.trim_start_matches('^').trim_end_matches('$');
        s["pattern"] = json!(format!("^({inner})?$"));
    }
    if let Some(e) = s.get_mut("enum").and_then(Value::as_array_mut) {
        e.insert(0, json!(""));
    }
    if let Some(m) = s.as_object_mut() {
        m.remove("minLength");
    }
    s
}

/// Merges `extra` into the property `prop` of `schema`, keeping its description.
fn constrain(schema: &mut Value, prop: &str, extra: Value) {
    let Some(p) = schema.pointer_mut(&format!("/properties/{prop}")) else {
        return;
    };
    let description = p.get("description").cloned();
    *p = extra;
    if let Some(d) = description {
        p["description"] = d;
    }
}

/// Adds the constraints to a poem-openapi generated document.
pub fn refine(raw: &str) -> Value {
    let mut doc: Value = serde_json::from_str(raw).expect("poem-openapi emits valid JSON");
    let database_only = json!({"type": "string", "enum": ["database"], "description": "Only `database` is provisioned today; `cache` and `topic` answer 400."});
    {
        let schemas = &mut doc["components"]["schemas"];
        for closed in [
            "ProvisionRequest",
            "ResourceSpec",
            "BackupSpec",
            "EncryptionSpec",
            "DeprovisionRequest",
            "ResourcesQuery",
        ] {
            schemas[closed]["additionalProperties"] = json!(false);
        }

        let p = &mut schemas["ProvisionRequest"];
        constrain(p, "resourceType", database_only.clone());
        constrain(p, "resourceName", name_schema());
        constrain(p, "namespace", namespace_schema());
        constrain(
            p,
            "team",
            json!({"type": "string", "pattern": TEAM, "minLength": 1, "maxLength": 63}),
        );
        constrain(
            p,
            "owner",
            json!({"type": "string", "pattern": EMAIL, "maxLength": 254}),
        );
        constrain(p, "callbackUrl", url_schema());

        // Which versions each engine accepts: one branch per engine of the catalogue.
        let branches: Vec<Value> = Engine::ALL
            .iter()
            .map(|e| {
                let versions: Vec<&str> = e.info().versions.iter().map(|v| v.version).collect();
                json!({"properties": {"engine": {"enum": [e.as_str()]}, "version": {"type": "string", "enum": versions}}})
            })
            .collect();
        schemas["ResourceSpec"]["oneOf"] = json!(branches);

        let b = &mut schemas["BackupSpec"];
        constrain(
            b,
            "retention",
            json!({"type": "string", "pattern": RETENTION}),
        );
        constrain(b, "schedule", json!({"type": "string", "minLength": 1}));

        let d = &mut schemas["DeprovisionRequest"];
        constrain(d, "deploymentId", deployment_id_schema());
        constrain(d, "resourceType", database_only);
        constrain(d, "resourceName", name_schema());
        constrain(d, "namespace", namespace_schema());
        constrain(d, "callbackUrl", url_schema());

        let q = &mut schemas["ResourcesQuery"];
        constrain(
            q,
            "resourceType",
            or_empty(json!({"type": "string", "enum": ["database", "cache", "topic"]})),
        );
        constrain(q, "namespace", namespace_schema());
        constrain(q, "resourceName", or_empty(name_schema()));
        constrain(q, "deploymentId", or_empty(deployment_id_schema()));
    }
    // Optional request fields may be sent as null (treated as absent), as many clients do.
    for name in [
        "ProvisionRequest",
        "ResourceSpec",
        "BackupSpec",
        "EncryptionSpec",
        "DeprovisionRequest",
        "ResourcesQuery",
    ] {
        let schema = &mut doc["components"]["schemas"][name];
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(props) = schema["properties"].as_object_mut() {
            for (k, p) in props.iter_mut() {
                if required.contains(k) {
                    continue;
                }
                if let Some(r) = p.get("$ref").cloned() {
                    let description = p.get("description").cloned();
                    *p = json!({"allOf": [{"$ref": r}], "nullable": true});
                    if let Some(d) = description {
                        p["description"] = d;
                    }
                } else {
                    p["nullable"] = json!(true);
                    if let Some(e) = p.get_mut("enum").and_then(Value::as_array_mut) {
                        e.push(Value::Null);
                    }
                }
            }
        }
    }
    for (path, method) in [("/v1/status", "get"), ("/v1/resources", "get")] {
        if let Some(params) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}/parameters",
                path.replace('/', "~1")
            ))
            .and_then(Value::as_array_mut)
        {
            for param in params {
                let schema = match param["name"].as_str() {
                    Some("id") => deployment_id_schema(),
                    Some("namespace") => namespace_schema(),
                    Some("deploymentId") => or_empty(deployment_id_schema()),
                    Some("resourceName") => or_empty(name_schema()),
                    Some("resourceType") => {
                        or_empty(json!({"type": "string", "enum": ["database", "cache", "topic"]}))
                    }
                    _ => continue,
                };
                param["schema"] = schema;
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_agree_with_the_domain_on_examples() {
        let doc = refine(&crate::http::openapi_service(None).spec());
        let spec = &doc["components"]["schemas"]["ResourceSpec"]["oneOf"];
        assert_eq!(spec.as_array().unwrap().len(), 4);
        assert_eq!(
            spec[0]["properties"]["version"]["enum"],
            json!(["12", "13", "14", "15", "16"])
        );
        assert_eq!(
            doc["components"]["schemas"]["ProvisionRequest"]["additionalProperties"],
            json!(false)
        );
        let params = doc["paths"]["/v1/status"]["get"]["parameters"]
            .as_array()
            .unwrap();
        assert_eq!(params[0]["schema"]["pattern"], DEPLOYMENT_ID);
    }
}
