//! Documented strings: a string on the wire whose rule the spec shows and the domain enforces.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

use crate::domain::{
    Health as HealthValue, MAX_CALLBACK_URL_LEN, MAX_NAMESPACE_LEN, MAX_RESOURCE_NAME_LEN, Phase,
    ResourceType, Size,
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
        &crate::http::errors::ERROR_CODES,
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
