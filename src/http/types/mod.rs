//! The wire types of the REST API, exactly as `broker-api.md` shows them, and the one place the OpenAPI schema
//! comes from: poem-openapi derives it from these definitions.
//!
//! Request types document the bodies; parsing and validation live in the domain, which words every message
//! (`spec.size is required`). So that the two cannot drift apart, everything a rule depends on is read from the
//! domain here rather than restated: the engines and their versions from the catalogue, sizes, resource types,
//! phases and length limits from their domain definitions, and the field lists are tested against the
//! domain's. Patterns are never stricter than the domain (whatever a pattern refuses, the broker refuses too);
//! some rules (cron ranges, email and URL syntax, the engine's version) stay looser here and are enforced with
//! a 400 that names the field. Response types are what handlers return.

mod requests;
mod responses;
mod text;

pub use self::requests::*;
pub use self::responses::*;
pub use self::text::*;

#[cfg(test)]
mod tests {
    use poem_openapi::types::{Example, ParseFromJSON, ToJSON};
    use serde_json::Value;

    use super::*;
    use crate::domain::{Engine, MAX_RESOURCE_NAME_LEN, Size};

    /// The documented types describe the shape the domain parses: the reference example goes through both,
    /// and the DTOs give back exactly what they read.
    #[test]
    fn the_reference_example_round_trips_through_the_dtos_and_parses_in_the_domain() {
        let example = ProvisionRequestDoc::example().to_json().unwrap();
        let doc = ProvisionRequestDoc::parse_from_json(Some(example.clone())).unwrap();
        assert_eq!(doc.to_json().unwrap(), example);
        let req = crate::domain::parse_provision(&example).unwrap();
        assert_eq!(
            (req.spec.engine, req.spec.version.as_str(), req.spec.size),
            (Engine::Postgresql, "15", Size::Medium)
        );
    }

    #[test]
    fn optional_fields_read_null_as_absent() {
        let spec = serde_json::json!({
            "engine": "redis", "version": "7.2", "size": "small",
            "highAvailability": null, "backup": null, "encryption": {"atRest": null}
        });
        let doc = ResourceSpecDoc::parse_from_json(Some(spec)).unwrap();
        assert_eq!(doc.engine, Engine::Redis);
        assert!(doc.settings.high_availability.0.is_none());
        assert!(doc.settings.backup.0.is_none());
        let enc = doc.settings.encryption.0.unwrap();
        assert!(enc.at_rest.0.is_none() && enc.in_transit.0.is_none());
    }

    #[test]
    fn or_empty_allows_the_empty_string_and_keeps_the_rule() {
        let s = OrEmpty::<DeploymentIdRule>::schema();
        assert_eq!(s.pattern.as_deref(), Some("^(deploy-[0-9a-f]{32})?$"));
        let s = OrEmpty::<ResourceNameRule>::schema();
        assert_eq!(s.min_length, None);
        assert_eq!(s.max_length, Some(MAX_RESOURCE_NAME_LEN));
        let s = OrEmpty::<ResourceTypeRule>::schema();
        assert_eq!(
            s.enum_items,
            ["", "database", "cache", "topic"].map(Value::from)
        );
    }

    #[test]
    fn variant_names_are_the_engines_in_pascal_case() {
        let names: Vec<String> = Engine::ALL.into_iter().map(engine_variant_name).collect();
        assert_eq!(
            names,
            ["PostgresqlSpec", "MysqlSpec", "MongodbSpec", "RedisSpec"]
        );
    }
}
