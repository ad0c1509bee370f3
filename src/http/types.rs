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

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use poem_openapi::Object;
use poem_openapi::registry::{MetaDiscriminatorObject, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    Example, ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

use crate::domain::{
    Engine, Health as HealthValue, MAX_CALLBACK_URL_LEN, MAX_NAMESPACE_LEN, MAX_RESOURCE_NAME_LEN,
    Phase, ResourceType, Size,
};

// --- documented strings -------------------------------------------------------------------------------

/// How one kind of string is described in the spec.
pub trait StringSchema: 'static {
    /// The component name when the schema is shared (named enums), `None` to inline it.
    const COMPONENT: Option<&'static str> = None;
    /// The schema.
    fn schema() -> MetaSchema;
}

/// A string on the wire whose rule the spec documents (through `R`) and the domain enforces: parsing accepts
/// any string, so that a client gets the domain's message for a bad value, never poem's.
pub struct Text<R>(String, PhantomData<fn() -> R>);

impl<R> Text<R> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<R> fmt::Debug for Text<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<R> Clone for Text<R> {
    fn clone(&self) -> Self {
        Text(self.0.clone(), PhantomData)
    }
}

impl<R> PartialEq for Text<R> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<R> Eq for Text<R> {}

impl<R> From<String> for Text<R> {
    fn from(s: String) -> Self {
        Text(s, PhantomData)
    }
}

impl<R> From<&str> for Text<R> {
    fn from(s: &str) -> Self {
        Text(s.to_string(), PhantomData)
    }
}

impl<R: StringSchema> Type for Text<R> {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        R::COMPONENT.unwrap_or("string").into()
    }

    fn schema_ref() -> MetaSchemaRef {
        match R::COMPONENT {
            Some(name) => MetaSchemaRef::Reference(name.to_string()),
            None => MetaSchemaRef::Inline(Box::new(R::schema())),
        }
    }

    fn register(registry: &mut Registry) {
        if let Some(name) = R::COMPONENT {
            registry.create_schema::<Self, _>(name.to_string(), |_| R::schema());
        }
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<R: StringSchema> ParseFromJSON for Text<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Ok(s.into()),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<R: StringSchema> ParseFromParameter for Text<R> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(value.into())
    }
}

impl<R: StringSchema> ToJSON for Text<R> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

fn patterned(pattern: &str, min_length: Option<usize>, max_length: Option<usize>) -> MetaSchema {
    MetaSchema {
        pattern: Some(pattern.to_string()),
        min_length,
        max_length,
        ..MetaSchema::new("string")
    }
}

fn one_of_names<T: Copy>(
    description: &'static str,
    items: &[T],
    name: impl Fn(T) -> &'static str,
) -> MetaSchema {
    MetaSchema {
        description: Some(description),
        enum_items: items.iter().map(|&i| Value::from(name(i))).collect(),
        ..MetaSchema::new("string")
    }
}

/// Declares a [`StringSchema`] marker: `Name [as "Component"] => schema`.
macro_rules! string_schema {
    ($(#[$doc:meta])* $name:ident $(as $component:literal)? => $schema:expr) => {
        $(#[$doc])*
        pub enum $name {}

        impl StringSchema for $name {
            $(const COMPONENT: Option<&'static str> = Some($component);)?
            fn schema() -> MetaSchema {
                $schema
            }
        }
    };
}

/// `^` + RFC 1035 label + `$`: what `is_dns1035_label` accepts.
const RESOURCE_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// RFC 1123 label: what `is_dns1123_label` accepts.
const NAMESPACE_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A Kubernetes label value, non-empty: what `is_label_value` accepts.
const TEAM_PATTERN: &str = "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
/// Looser than `is_email`: one `@` with something on both sides.
const EMAIL_PATTERN: &str = "^[^@\\s]+@[^@\\s]+$";
/// Looser than `HttpUrl::parse`: an http(s) scheme and no whitespace.
const HTTP_URL_PATTERN: &str = "^[hH][tT][tT][pP][sS]?://[^\\s]+$";
/// Exactly what `DeploymentId::parse` accepts.
const DEPLOYMENT_ID_PATTERN: &str = "^deploy-[0-9a-f]{32}$";
/// Looser than `RetentionPeriod::parse` (which also refuses zero and more than ten years).
const RETENTION_PATTERN: &str = "^[0-9]+[hdw]$";

/// The longest team name: a Kubernetes label value.
const MAX_TEAM_LEN: usize = 63;
/// The longest email address SMTP allows (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

string_schema!(
    /// A resource name (RFC 1035 label).
    ResourceNameRule => patterned(RESOURCE_NAME_PATTERN, Some(1), Some(MAX_RESOURCE_NAME_LEN))
);
string_schema!(
    /// A namespace (RFC 1123 label).
    NamespaceRule => patterned(NAMESPACE_PATTERN, Some(1), Some(MAX_NAMESPACE_LEN))
);
string_schema!(
    /// A team: a label value.
    TeamRule => patterned(TEAM_PATTERN, Some(1), Some(MAX_TEAM_LEN))
);
string_schema!(
    /// An email address.
    EmailRule => patterned(EMAIL_PATTERN, None, Some(MAX_EMAIL_LEN))
);
string_schema!(
    /// An absolute http(s) URL.
    HttpUrlRule => patterned(HTTP_URL_PATTERN, None, Some(MAX_CALLBACK_URL_LEN))
);
string_schema!(
    /// A deployment id.
    DeploymentIdRule => patterned(DEPLOYMENT_ID_PATTERN, None, None)
);
string_schema!(
    /// A backup retention.
    RetentionRule => patterned(RETENTION_PATTERN, None, None)
);
string_schema!(
    /// A 5-field cron expression.
    ScheduleRule => MetaSchema { min_length: Some(1), ..MetaSchema::new("string") }
);
string_schema!(
    /// An RFC 3339 timestamp.
    DateTimeRule => MetaSchema::new_with_format("string", "date-time")
);
string_schema!(
    /// Every resource type, for queries.
    ResourceTypeRule as "ResourceType" => one_of_names(
        "Kinds of resource; only `database` is provisioned today.",
        &ResourceType::ALL,
        ResourceType::as_str,
    )
);
string_schema!(
    /// The resource types a provision or deprovision request may name.
    SupportedResourceTypeRule as "SupportedResourceType" => one_of_names(
        "The resource types provisioned today; `cache` and `topic` answer 400.",
        &ResourceType::SUPPORTED,
        ResourceType::as_str,
    )
);
string_schema!(
    /// A size.
    SizeRule as "Size" => one_of_names(
        "Sizes: small 1 CPU/2Gi, medium 2 CPU/4Gi, large 4 CPU/8Gi, xlarge 8 CPU/16Gi.",
        &Size::ALL,
        Size::as_str,
    )
);
string_schema!(
    /// A lifecycle phase.
    PhaseRule as "Phase" => one_of_names(
        "Where a deployment stands: Provisioning → Ready | Failed, Deleting → Deleted.",
        &Phase::ALL,
        Phase::as_str,
    )
);
string_schema!(
    /// The health of a deployment.
    HealthStatusRule as "HealthStatus" => one_of_names(
        "How a running deployment is doing.",
        &HealthValue::ALL,
        HealthValue::as_str,
    )
);
string_schema!(
    /// An error code of the error body.
    ErrorCodeRule as "ErrorCode" => one_of_names(
        "A stable machine-readable error code.",
        &super::errors::ERROR_CODES,
        |c| c,
    )
);

impl From<Phase> for Text<PhaseRule> {
    fn from(p: Phase) -> Self {
        p.as_str().into()
    }
}

impl From<HealthValue> for Text<HealthStatusRule> {
    fn from(h: HealthValue) -> Self {
        h.as_str().into()
    }
}

/// An optional query field where an empty value counts as absent, as the domain treats it: `R`'s schema
/// with the empty string allowed too.
pub struct OrEmpty<R>(PhantomData<fn() -> R>);

impl<R: StringSchema> StringSchema for OrEmpty<R> {
    fn schema() -> MetaSchema {
        let mut s = R::schema();
        if let Some(p) = s.pattern.take() {
            let inner = p.trim_start_matches('^').trim_end_matches('$');
            s.pattern = Some(format!("^({inner})?$"));
        }
        if !s.enum_items.is_empty() {
            s.enum_items.insert(0, Value::from(""));
        }
        s.min_length = None;
        s
    }
}

/// An optional field that may also be sent as `null` (treated as absent), as many clients do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrNull<T>(pub Option<T>);

impl<T: Type> Type for OrNull<T> {
    const IS_REQUIRED: bool = false;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("nullable_{}", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        match T::schema_ref() {
            MetaSchemaRef::Inline(mut s) => {
                s.nullable = true;
                if !s.enum_items.is_empty() {
                    s.enum_items.push(Value::Null);
                }
                MetaSchemaRef::Inline(s)
            }
            // A `$ref` cannot carry `nullable` beside it in OpenAPI 3.0; wrapping it in `allOf` can.
            r @ MetaSchemaRef::Reference(_) => MetaSchemaRef::Inline(Box::new(MetaSchema {
                all_of: vec![r],
                nullable: true,
                ..MetaSchema::ANY
            })),
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(Type::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(v) => v.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl<T: ParseFromJSON> ParseFromJSON for OrNull<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::Null => Ok(OrNull(None)),
            v => Ok(OrNull(Some(
                T::parse_from_json(Some(v)).map_err(ParseError::propagate)?,
            ))),
        }
    }
}

impl<T: ToJSON> ToJSON for OrNull<T> {
    fn to_json(&self) -> Option<Value> {
        match &self.0 {
            Some(v) => v.to_json(),
            None => Some(Value::Null),
        }
    }
}

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

// --- responses --------------------------------------------------------------------------------------------

/// 202 answer to a provision request.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", example)]
pub struct ProvisionAccepted {
    /// Always `accepted`.
    pub status: String,
    pub deployment_id: String,
    pub message: String,
}

impl Example for ProvisionAccepted {
    fn example() -> Self {
        ProvisionAccepted {
            status: "accepted".into(),
            deployment_id: "deploy-fc8fc917314e2b8b698427458cd35342".into(),
            message: "Provisioning request accepted for database/postgres-app-db".into(),
        }
    }
}

/// 202 answer to a deprovision request.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", example)]
pub struct DeprovisionAccepted {
    /// Always `accepted`.
    pub status: String,
    pub message: String,
}

impl Example for DeprovisionAccepted {
    fn example() -> Self {
        DeprovisionAccepted {
            status: "accepted".into(),
            message: "Deprovisioning request accepted for deployment deploy-fc8fc917314e2b8b698427458cd35342"
                .into(),
        }
    }
}

/// `GET /v1/status` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", example)]
pub struct DeploymentStatus {
    pub deployment_id: String,
    pub phase: Text<PhaseRule>,
    pub message: String,
    /// When the phase or message last changed (RFC 3339).
    pub last_updated: Text<DateTimeRule>,
}

impl Example for DeploymentStatus {
    fn example() -> Self {
        DeploymentStatus {
            deployment_id: "deploy-fc8fc917314e2b8b698427458cd35342".into(),
            phase: "Ready".into(),
            message: "Resource provisioned successfully".into(),
            last_updated: "2025-10-03T09:30:00Z".into(),
        }
    }
}

/// Engine, version and size.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct SpecSummary {
    pub engine: String,
    pub version: String,
    pub size: String,
}

/// What the deployment consumes right now.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ResourceUsage {
    #[oai(skip_serializing_if_is_none)]
    pub cpu_usage: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub memory_usage: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub storage_usage: Option<String>,
    pub replicas: u32,
    /// Why usage figures are missing (for example: the metrics API is not installed).
    #[oai(skip_serializing_if_is_none)]
    pub unavailable_reason: Option<String>,
}

/// The state of one managed resource. `actualSpec` is absent until the broker has observed the workload,
/// `resourceUsage` until the workload runs.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ResourceState {
    pub deployment_id: String,
    pub resource_type: String,
    pub resource_name: String,
    pub namespace: String,
    pub phase: Text<PhaseRule>,
    pub health_status: Text<HealthStatusRule>,
    pub message: String,
    /// When this answer was computed (RFC 3339).
    pub last_checked: Text<DateTimeRule>,
    #[oai(skip_serializing_if_is_none)]
    pub endpoint: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub port: Option<u16>,
    #[oai(skip_serializing_if_is_none)]
    pub connection_secret: Option<String>,
    // Absent until the broker has observed the workload. (No doc comment: a description beside the `$ref`
    // would wrap it in `allOf`, and generated clients would get a second copy of `SpecSummary`.)
    #[oai(skip_serializing_if_is_none)]
    pub actual_spec: Option<SpecSummary>,
    pub desired_spec: SpecSummary,
    pub drift_detected: bool,
    pub drift_details: Vec<String>,
    // Absent until the workload runs (no doc comment, as for `actual_spec`).
    #[oai(skip_serializing_if_is_none)]
    pub resource_usage: Option<ResourceUsage>,
    pub estimated_monthly_cost: f64,
}

/// `GET`/`POST /v1/resources` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ResourceList {
    pub resources: Vec<ResourceState>,
    pub total: u32,
    pub namespace: String,
}

/// `GET /health` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct Health {
    /// Always `healthy` while the process serves.
    pub status: String,
    pub version: String,
    /// The broker's clock (RFC 3339).
    pub time: Text<DateTimeRule>,
}

/// `GET /readiness` answer.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

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
