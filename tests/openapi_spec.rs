//! The committed OpenAPI spec is what the code generates; regenerate with `cargo run -- openapi`.

#[test]
fn committed_spec_is_current() {
    let root = env!("CARGO_MANIFEST_DIR");
    for (file, generated) in [
        ("openapi/openapi.json", kidp_broker::openapi_json()),
        ("openapi/openapi.yaml", kidp_broker::openapi_yaml()),
    ] {
        let committed = std::fs::read_to_string(format!("{root}/{file}"))
            .unwrap_or_else(|e| panic!("{file} missing ({e}); run `cargo run -- openapi`"));
        assert!(
            committed == generated,
            "{file} is stale; run `cargo run -- openapi` and commit the result"
        );
    }
}

#[test]
fn every_operation_is_documented() {
    let spec: serde_json::Value = serde_json::from_str(&kidp_broker::openapi_json()).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    let mut ops = 0;
    for (path, methods) in paths {
        for (method, op) in methods.as_object().unwrap() {
            ops += 1;
            assert!(
                op["operationId"].is_string(),
                "{method} {path} has an operationId"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has a tag"
            );
            let responses = op["responses"].as_object().unwrap();
            if path.starts_with("/v1/") {
                assert!(
                    responses.contains_key("400"),
                    "{method} {path} documents 400"
                );
                assert!(
                    responses.contains_key("503"),
                    "{method} {path} documents 503"
                );
                for status in ["401", "403"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} documents {status}"
                    );
                }
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"bearerAuth": []}]),
                    "{method} {path} requires the bearer scheme"
                );
                assert!(
                    responses["429"]["headers"]["Retry-After"].is_object(),
                    "{method} {path} documents 429 with Retry-After"
                );
            }
        }
    }
    assert_eq!(
        ops, 7,
        "health, readiness, provision, deprovision, status, resources (GET and POST)"
    );
    let example = &spec["components"]["schemas"]["ProvisionRequest"]["example"];
    assert_eq!(example["resourceName"], "postgres-app-db");
}
