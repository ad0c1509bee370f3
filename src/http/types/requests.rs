//! The request bodies: provision, deprovision and the resources query.

use std::borrow::Cow;

use poem_openapi::Object;
use poem_openapi::registry::{MetaDiscriminatorObject, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

use crate::domain::Engine;

use super::text::*;

// --- request bodies -------------------------------------------------------------------------------------

/// Backup settings.
#[derive(Object, Debug, Clone)]
#[oai(rename = "BackupSpec", rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupDoc {
    /// Whether a backup CronJob runs (required whenever `backup` is given).
    pub enabled: bool,
    /// A duration such as `7d` or `36h`, at most `3650d` (default `7d`).
    #[oai(skip_serializing_if_is_none)]
    pub retention: OrNull<Text<RetentionRule>>,
    /// A 5-field cron expression (default `0 2 * * *`).
    #[oai(skip_serializing_if_is_none)]
    pub schedule: OrNull<Text<ScheduleRule>>,
}

/// Encryption settings.
#[derive(Object, Debug, Clone)]
#[oai(
    rename = "EncryptionSpec",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct EncryptionDoc {
    /// Volumes on an encrypting StorageClass (the broker must be configured with one).
    #[oai(skip_serializing_if_is_none)]
    pub at_rest: OrNull<bool>,
    /// TLS between clients and the database.
    #[oai(skip_serializing_if_is_none)]
    pub in_transit: OrNull<bool>,
}

/// The engine-independent part of a spec: every engine variant of [`ResourceSpecDoc`] has these fields
/// after `engine` and `version`. Never a component of its own (nothing refers to it by name).
#[derive(Object, Debug, Clone)]
#[oai(rename = "SpecSettings", rename_all = "camelCase", deny_unknown_fields)]
pub struct SpecSettingsDoc {
    pub size: Text<SizeRule>,
    /// Run three replicas (a primary and two replicas) instead of one.
    #[oai(skip_serializing_if_is_none)]
    pub high_availability: OrNull<bool>,
    #[oai(skip_serializing_if_is_none)]
    pub backup: OrNull<BackupDoc>,
    #[oai(skip_serializing_if_is_none)]
    pub encryption: OrNull<EncryptionDoc>,
}

/// What to provision. In the spec it is a `oneOf` with a discriminator on `engine` and one complete object per
/// engine of the catalogue (`PostgresqlSpec`, `MysqlSpec`, …), each listing exactly that engine's versions, so
/// a generated client can neither omit `size` nor pair mysql with version 15.
#[derive(Debug, Clone)]
pub struct ResourceSpecDoc {
    /// Which variant: the engine.
    pub engine: Engine,
    /// One of the engine's versions in the catalogue.
    pub version: String,
    /// Size and the optional settings, the same for every engine.
    pub settings: SpecSettingsDoc,
}

const ENGINE: &str = "engine";
const VERSION: &str = "version";

/// The component name of an engine's variant: `PostgresqlSpec`.
pub(crate) fn engine_variant_name(e: Engine) -> String {
    let name = e.as_str();
    let mut first = name.chars();
    let head: String = first
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .collect();
    format!("{head}{}Spec", first.as_str())
}

fn engine_variant(registry: &mut Registry, e: Engine) -> MetaSchema {
    let settings = registry.create_fake_schema::<SpecSettingsDoc>();
    let info = e.info();
    let mut properties = vec![
        (
            ENGINE,
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                enum_items: vec![Value::from(e.as_str())],
                example: Some(Value::from(e.as_str())),
                ..MetaSchema::new("string")
            })),
        ),
        (
            VERSION,
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some("One of the engine's supported versions."),
                enum_items: info
                    .versions
                    .iter()
                    .map(|v| Value::from(v.version))
                    .collect(),
                example: Some(Value::from(info.recommended_version().version)),
                ..MetaSchema::new("string")
            })),
        ),
    ];
    properties.extend(settings.properties);
    let mut required = vec![ENGINE, VERSION];
    required.extend(settings.required);
    MetaSchema {
        title: Some(engine_variant_name(e)),
        description: Some(
            "The spec of one engine: its versions, a size and the optional settings.",
        ),
        required,
        properties,
        ..MetaSchema::new("object")
    }
}

impl Type for ResourceSpecDoc {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "ResourceSpec".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |registry| {
            let mut one_of = Vec::new();
            let mut mapping = Vec::new();
            for e in Engine::ALL {
                let name = engine_variant_name(e);
                let variant = engine_variant(registry, e);
                registry.schemas.insert(name.clone(), variant);
                mapping.push((
                    e.as_str().to_string(),
                    format!("#/components/schemas/{name}"),
                ));
                one_of.push(MetaSchemaRef::Reference(name));
            }
            MetaSchema {
                description: Some(
                    "What to provision: one object per engine, told apart by `engine`.",
                ),
                one_of,
                discriminator: Some(MetaDiscriminatorObject {
                    property_name: ENGINE,
                    mapping,
                }),
                ..MetaSchema::ANY
            }
        });
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for ResourceSpecDoc {
    /// Structural only (the shape the schema describes); the domain's parser is what validates a request.
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let Some(Value::Object(mut obj)) = value else {
            return Err(ParseError::expected_type(Value::Null));
        };
        let engine = match obj.remove(ENGINE) {
            Some(Value::String(s)) => s.parse().map_err(ParseError::custom)?,
            _ => return Err(ParseError::custom("engine is required")),
        };
        let version = match obj.remove(VERSION) {
            Some(Value::String(s)) => s,
            _ => return Err(ParseError::custom("version is required")),
        };
        let settings = SpecSettingsDoc::parse_from_json(Some(Value::Object(obj)))
            .map_err(ParseError::propagate)?;
        Ok(ResourceSpecDoc {
            engine,
            version,
            settings,
        })
    }
}

impl ToJSON for ResourceSpecDoc {
    fn to_json(&self) -> Option<Value> {
        let mut out = serde_json::Map::new();
        out.insert(ENGINE.into(), Value::from(self.engine.as_str()));
        out.insert(VERSION.into(), Value::from(self.version.as_str()));
        if let Some(Value::Object(rest)) = self.settings.to_json() {
            out.extend(rest);
        }
        Some(Value::Object(out))
    }
}

/// `POST /v1/provision` body.
#[derive(Object, Debug, Clone)]
#[oai(
    rename = "ProvisionRequest",
    rename_all = "camelCase",
    deny_unknown_fields,
    example
)]
pub struct ProvisionRequestDoc {
    pub resource_type: Text<SupportedResourceTypeRule>,
    /// Lowercase RFC 1035 label (starts with a letter), at most 40 characters.
    pub resource_name: Text<ResourceNameRule>,
    /// Kubernetes namespace (RFC 1123 label); it must exist.
    pub namespace: Text<NamespaceRule>,
    /// The owning team; becomes a label value on every object.
    pub team: Text<TeamRule>,
    /// An email address.
    pub owner: Text<EmailRule>,
    /// Absolute http(s) URL that receives phase callbacks.
    pub callback_url: Text<HttpUrlRule>,
    pub spec: ResourceSpecDoc,
}

impl Example for ProvisionRequestDoc {
    fn example() -> Self {
        ProvisionRequestDoc {
            resource_type: "database".into(),
            resource_name: "postgres-app-db".into(),
            namespace: "team-platform".into(),
            team: "platform-team".into(),
            owner: "user@example.com".into(),
            callback_url: "http://manager:9090/v1/callback".into(),
            spec: ResourceSpecDoc {
                engine: Engine::Postgresql,
                version: "15".into(),
                settings: SpecSettingsDoc {
                    size: "medium".into(),
                    high_availability: OrNull(Some(true)),
                    backup: OrNull(Some(BackupDoc {
                        enabled: true,
                        retention: OrNull(Some("7d".into())),
                        schedule: OrNull(None),
                    })),
                    encryption: OrNull(Some(EncryptionDoc {
                        at_rest: OrNull(Some(true)),
                        in_transit: OrNull(Some(true)),
                    })),
                },
            },
        }
    }
}

/// `POST /v1/deprovision` body.
#[derive(Object, Debug, Clone)]
#[oai(
    rename = "DeprovisionRequest",
    rename_all = "camelCase",
    deny_unknown_fields,
    example
)]
pub struct DeprovisionRequestDoc {
    /// `deploy-` followed by 32 lowercase hex characters.
    pub deployment_id: Text<DeploymentIdRule>,
    pub resource_type: Text<SupportedResourceTypeRule>,
    pub resource_name: Text<ResourceNameRule>,
    pub namespace: Text<NamespaceRule>,
    /// Where the Deleting/Deleted callbacks go; the provision callback URL when absent.
    #[oai(skip_serializing_if_is_none)]
    pub callback_url: OrNull<Text<HttpUrlRule>>,
}

impl Example for DeprovisionRequestDoc {
    fn example() -> Self {
        DeprovisionRequestDoc {
            deployment_id: "deploy-fc8fc917314e2b8b698427458cd35342".into(),
            resource_type: "database".into(),
            resource_name: "postgres-app-db".into(),
            namespace: "team-platform".into(),
            callback_url: OrNull(Some("http://manager:9090/v1/callback".into())),
        }
    }
}

/// `POST /v1/resources` body.
#[derive(Object, Debug, Clone)]
#[oai(
    rename = "ResourcesQuery",
    rename_all = "camelCase",
    deny_unknown_fields,
    example
)]
pub struct ResourcesQueryDoc {
    pub namespace: Text<NamespaceRule>,
    /// database, cache or topic; empty means any.
    #[oai(skip_serializing_if_is_none)]
    pub resource_type: OrNull<Text<OrEmpty<ResourceTypeRule>>>,
    /// Empty means any.
    #[oai(skip_serializing_if_is_none)]
    pub resource_name: OrNull<Text<OrEmpty<ResourceNameRule>>>,
    /// Empty means any.
    #[oai(skip_serializing_if_is_none)]
    pub deployment_id: OrNull<Text<OrEmpty<DeploymentIdRule>>>,
}

impl Example for ResourcesQueryDoc {
    fn example() -> Self {
        ResourcesQueryDoc {
            namespace: "team-platform".into(),
            resource_type: OrNull(Some("database".into())),
            resource_name: OrNull(Some("postgres-app-db".into())),
            deployment_id: OrNull(None),
        }
    }
}
