//! Validated requests: provision, deprovision and the resources query, parsed from JSON values (or query
//! parameters) so that every message a client sees is ours and names the field in the API's camelCase.
//!
//! Order of checks, so that a request with several faults always gets the same answer: the body's shape,
//! then unknown fields (top level, `spec`, `spec.backup`, `spec.encryption`, alphabetically within each),
//! then each field in the order the API reference lists them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::catalogue::{
    Engine, EngineInfo, ResourceType, Size, SizeSpec, VersionInfo, engine_info,
};
use super::cron::CronSchedule;
use super::id::DeploymentId;

/// The longest resource name accepted.
///
/// The broker derives object names from the resource name, and the tightest limit among them is the backup
/// CronJob `<name>-backup`: the CronJob controller appends an 11-character suffix to name each Job, and Job
/// names must stay within 63 characters for the pods' `job-name` label, so CronJob names may have at most 52
/// characters, leaving 52 − 7 (`-backup`) = 45 for the name. The others are looser: the StatefulSet `<name>`
/// must leave room for its pods' `controller-revision-hash=<name>-<10 hash chars>` label value (63 − 11 = 52);
/// the Services `<name>` and `<name>-headless` are DNS labels (63 − 9 = 54); pods `<name>-<ordinal>`, PVCs
/// `data-<name>-<ordinal>` and the `<name>-credentials`/`<name>-tls` Secrets fit easily. 40 keeps five
/// characters in reserve below 45, so a future child (a longer suffix such as `-backup-pvc`) does not force a
/// breaking change on names already accepted.
pub const MAX_RESOURCE_NAME_LEN: usize = 40;

/// The longest namespace name Kubernetes allows (an RFC 1123 label).
pub const MAX_NAMESPACE_LEN: usize = 63;

/// The longest callback URL accepted; generous for any real endpoint, and bounded because it is stored in
/// the intent record and sent with every log line about a delivery.
pub const MAX_CALLBACK_URL_LEN: usize = 2048;

/// Replicas of a highly-available deployment, for every engine: a primary and two replicas is the smallest
/// set that keeps a majority (PostgreSQL/MySQL failover, a MongoDB replica set election, a Redis Sentinel
/// quorum of 2) when one member is lost.
pub const HA_REPLICAS: u32 = 3;

/// Retention used when backups are enabled without one: a week of nightly dumps, enough to notice a bad
/// deploy after a weekend.
pub const DEFAULT_BACKUP_RETENTION: &str = "7d";

/// The longest retention accepted: ten years, beyond any compliance rule we know, and bounded so cost and
/// pruning arithmetic can never overflow.
pub const MAX_RETENTION_HOURS: u64 = 3650 * 24;

/// A request that failed validation: which field, and the message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field's path in camelCase (`spec.backup.retention`), or `""` for the body as a whole.
    pub field: String,
    /// The complete, client-facing message (it names the field itself).
    pub message: String,
}

impl ValidationError {
    /// An error about `field` with a complete message.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }

    fn required(field: &str) -> Self {
        Self::new(field, format!("{field} is required"))
    }

    fn wrong_type(field: &str, what: &str) -> Self {
        Self::new(field, format!("{field} must be {what}"))
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValidationError {}

/// How long backups are kept: a positive whole number of hours (`36h`), days (`7d`) or weeks (`2w`), at most
/// [`MAX_RETENTION_HOURS`]. The original text is kept so the stored spec reads back exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RetentionPeriod {
    text: String,
    hours: u64,
}

/// Why a text is not a [`RetentionPeriod`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionError {
    /// Not `<digits><h|d|w>`.
    Malformed,
    /// Zero of any unit.
    Zero,
    /// Longer than [`MAX_RETENTION_HOURS`].
    TooLong,
}

impl RetentionPeriod {
    /// Parses `<digits>h`, `<digits>d` or `<digits>w`.
    pub fn parse(s: &str) -> Result<RetentionPeriod, RetentionError> {
        let unit_hours = match s.as_bytes().last() {
            Some(b'h') => 1,
            Some(b'd') => 24,
            Some(b'w') => 7 * 24,
            _ => return Err(RetentionError::Malformed),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(RetentionError::Malformed);
        }
        // Any count that does not fit a u64 is certainly too long.
        let count: u64 = digits.parse().map_err(|_| RetentionError::TooLong)?;
        let hours = count
            .checked_mul(unit_hours)
            .ok_or(RetentionError::TooLong)?;
        match hours {
            0 => Err(RetentionError::Zero),
            h if h > MAX_RETENTION_HOURS => Err(RetentionError::TooLong),
            hours => Ok(RetentionPeriod {
                text: s.to_string(),
                hours,
            }),
        }
    }

    /// The default retention, [`DEFAULT_BACKUP_RETENTION`].
    pub fn default_backup() -> RetentionPeriod {
        RetentionPeriod::parse(DEFAULT_BACKUP_RETENTION).expect("the default retention is valid")
    }

    /// The period in hours.
    pub fn hours(&self) -> u64 {
        self.hours
    }

    /// The period in days, fractional for hour counts (`36h` is 1.5).
    pub fn days(&self) -> f64 {
        // Exact: hours never exceed MAX_RETENTION_HOURS, far below f64's integer precision.
        self.hours as f64 / 24.0
    }

    /// The period as a std duration.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.hours * 3600)
    }

    /// The text as given (`7d`).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for RetentionPeriod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for RetentionPeriod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RetentionPeriod::parse(&s)
            .map_err(|_| serde::de::Error::custom(format!("invalid backup retention {s:?}")))
    }
}

/// Backup settings. After validation, an enabled backup always has a schedule and a retention (the defaults
/// fill in what was omitted), so two requests that mean the same backups compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// Whether a backup CronJob runs.
    #[serde(default)]
    pub enabled: bool,
    /// How long dumps are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionPeriod>,
    /// When dumps are taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<CronSchedule>,
}

impl Backup {
    /// The retention in force: the given one, else [`DEFAULT_BACKUP_RETENTION`] (for records stored without).
    pub fn effective_retention(&self) -> RetentionPeriod {
        self.retention
            .clone()
            .unwrap_or_else(RetentionPeriod::default_backup)
    }

    /// The schedule in force: the given one, else the nightly default.
    pub fn effective_schedule(&self) -> CronSchedule {
        self.schedule
            .clone()
            .unwrap_or_else(CronSchedule::default_backup)
    }
}

/// Encryption settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// Volumes on an encrypting StorageClass.
    #[serde(default)]
    pub at_rest: bool,
    /// TLS between clients and the database.
    #[serde(default)]
    pub in_transit: bool,
}

/// What the manager asked to run, normalised (defaults filled in).
///
/// Its JSON form is the API's camelCase `spec` object and is what the intent record stores; serialising and
/// deserialising gives back an equal value. Deserialising does not re-check the catalogue (a stored record
/// may name a version a later broker no longer offers) and ignores unknown fields (a record written by a
/// newer broker still reads); requests go through [`parse_provision`] instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredSpec {
    /// The engine.
    pub engine: Engine,
    /// The engine version as requested (`"15"`, `"8.0"`).
    pub version: String,
    /// The size of each replica.
    pub size: Size,
    /// Whether to run [`HA_REPLICAS`] replicas instead of one.
    #[serde(default)]
    pub high_availability: bool,
    /// Backup settings.
    #[serde(default)]
    pub backup: Backup,
    /// Encryption settings.
    #[serde(default)]
    pub encryption: Encryption,
}

impl DesiredSpec {
    /// The engine's catalogue entry.
    pub fn engine_info(&self) -> &'static EngineInfo {
        engine_info(self.engine)
    }

    /// The catalogue entry of the version, `None` when the catalogue no longer offers it.
    pub fn version_info(&self) -> Option<&'static VersionInfo> {
        self.engine_info().version(&self.version)
    }

    /// How many replicas run: [`HA_REPLICAS`] with high availability, else 1.
    pub fn replicas(&self) -> u32 {
        if self.high_availability {
            HA_REPLICAS
        } else {
            1
        }
    }

    /// The resources of one replica.
    pub fn size_spec(&self) -> SizeSpec {
        self.size.spec()
    }
}

/// A validated `POST /v1/provision` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    /// Always a supported type (today `database`).
    pub resource_type: ResourceType,
    /// An RFC 1035 label of at most [`MAX_RESOURCE_NAME_LEN`] characters.
    pub resource_name: String,
    /// The target namespace.
    pub namespace: String,
    /// The owning team; safe as a label value.
    pub team: String,
    /// The owner's email address.
    pub owner: String,
    /// Where phase callbacks go.
    pub callback_url: String,
    /// What to run.
    pub spec: DesiredSpec,
}

/// A validated `POST /v1/deprovision` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeprovisionRequest {
    /// The deployment to remove.
    pub deployment_id: DeploymentId,
    /// Must match the deployment's.
    pub resource_type: ResourceType,
    /// Must match the deployment's.
    pub resource_name: String,
    /// Must match the deployment's.
    pub namespace: String,
    /// Where the Deleting/Deleted callbacks go, when not the provision request's.
    pub callback_url: Option<String>,
}

/// A validated resources query (`GET` parameters or `POST` body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcesQuery {
    /// The namespace to list.
    pub namespace: String,
    /// Only this type.
    pub resource_type: Option<ResourceType>,
    /// Only this name.
    pub resource_name: Option<String>,
    /// Only this deployment.
    pub deployment_id: Option<DeploymentId>,
}

mod parse;

pub use self::parse::*;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use serde_json::Value;

    use super::*;

    fn seed_provision() -> Value {
        json!({
            "resourceType": "database",
            "resourceName": "postgres-app-db",
            "namespace": "team-platform",
            "team": "platform-team",
            "owner": "user@example.com",
            "callbackUrl": "http://manager:9090/v1/callback",
            "spec": {
                "engine": "postgresql",
                "version": "15",
                "size": "medium",
                "highAvailability": true,
                "backup": {"enabled": true, "retention": "7d"},
                "encryption": {"atRest": true, "inTransit": true}
            }
        })
    }

    fn seed_deprovision() -> Value {
        json!({
            "deploymentId": "deploy-fc8fc917314e2b8b698427458cd35342",
            "resourceType": "database",
            "resourceName": "postgres-app-db",
            "namespace": "team-platform",
            "callbackUrl": "http://manager:9090/v1/callback"
        })
    }

    /// Sets `path` (dot-separated) in a JSON object to `value`, or removes it when `value` is `None`.
    fn edit(mut v: Value, path: &str, value: Option<Value>) -> Value {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap();
        let mut cur = &mut v;
        for p in parts {
            cur = cur.get_mut(p).unwrap();
        }
        let obj = cur.as_object_mut().unwrap();
        match value {
            Some(x) => {
                obj.insert(last.to_string(), x);
            }
            None => {
                obj.remove(last);
            }
        }
        v
    }

    fn provision_err(v: Value) -> (String, String) {
        let e = parse_provision(&v).unwrap_err();
        (e.field, e.message)
    }

    fn provision_msg(path: &str, value: Option<Value>) -> String {
        parse_provision(&edit(seed_provision(), path, value))
            .unwrap_err()
            .message
    }

    #[test]
    fn the_seed_provision_example_parses_into_a_normalised_spec() {
        let r = parse_provision(&seed_provision()).unwrap();
        assert_eq!(r.resource_type, ResourceType::Database);
        assert_eq!(r.resource_name, "postgres-app-db");
        assert_eq!(r.namespace, "team-platform");
        assert_eq!(r.team, "platform-team");
        assert_eq!(r.owner, "user@example.com");
        assert_eq!(r.callback_url, "http://manager:9090/v1/callback");
        assert_eq!(r.spec.engine, Engine::Postgresql);
        assert_eq!(r.spec.version, "15");
        assert_eq!(r.spec.size, Size::Medium);
        assert!(r.spec.high_availability);
        assert_eq!(r.spec.replicas(), 3);
        assert!(r.spec.backup.enabled);
        assert_eq!(r.spec.backup.retention.as_ref().unwrap().hours(), 168);
        // The schedule was omitted, so the nightly default is filled in.
        assert_eq!(
            r.spec.backup.schedule.as_ref().unwrap().as_str(),
            "0 2 * * *"
        );
        assert_eq!(
            r.spec.encryption,
            Encryption {
                at_rest: true,
                in_transit: true
            }
        );
    }

    #[test]
    fn the_seed_curl_example_with_a_schedule_parses() {
        let v = json!({
            "resourceType": "database",
            "resourceName": "my-postgres",
            "namespace": "team-platform",
            "team": "platform-team",
            "owner": "alice@example.com",
            "callbackUrl": "http://manager:9090/v1/callback",
            "spec": {
                "engine": "postgresql", "version": "15", "size": "medium", "highAvailability": true,
                "backup": {"enabled": true, "retention": "7d", "schedule": "0 2 * * *"}
            }
        });
        let r = parse_provision(&v).unwrap();
        assert_eq!(r.spec.encryption, Encryption::default());
        assert_eq!(r.spec.backup.schedule.unwrap().as_str(), "0 2 * * *");
    }

    #[test]
    fn minimal_spec_gets_every_default() {
        let v = edit(
            seed_provision(),
            "spec",
            Some(json!({"engine": "redis", "version": "7.2", "size": "small"})),
        );
        let spec = parse_provision(&v).unwrap().spec;
        assert!(!spec.high_availability);
        assert_eq!(spec.replicas(), 1);
        assert_eq!(spec.backup, Backup::default());
        assert_eq!(spec.encryption, Encryption::default());
    }

    #[test]
    fn nulls_count_as_absent_for_optional_fields() {
        let v = edit(
            seed_provision(),
            "spec",
            Some(json!({"engine": "mysql", "version": "8.4", "size": "large",
                        "highAvailability": null, "backup": null, "encryption": null})),
        );
        let spec = parse_provision(&v).unwrap().spec;
        assert!(!spec.high_availability);
        assert_eq!(spec.backup, Backup::default());
    }

    #[test]
    fn disabled_backup_keeps_its_settings_and_gets_no_defaults() {
        let v = edit(
            seed_provision(),
            "spec.backup",
            Some(json!({"enabled": false, "retention": "30d"})),
        );
        let b = parse_provision(&v).unwrap().spec.backup;
        assert!(!b.enabled);
        assert_eq!(b.retention.unwrap().as_str(), "30d");
        assert_eq!(b.schedule, None);
    }

    #[test]
    fn enabled_backup_without_settings_gets_both_defaults() {
        let v = edit(
            seed_provision(),
            "spec.backup",
            Some(json!({"enabled": true})),
        );
        let b = parse_provision(&v).unwrap().spec.backup;
        assert_eq!(b.retention.unwrap().as_str(), "7d");
        assert_eq!(b.schedule.unwrap().as_str(), "0 2 * * *");
    }

    #[test]
    fn desired_spec_round_trips_through_its_stored_json_exactly() {
        let spec = parse_provision(&seed_provision()).unwrap().spec;
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            json!({
                "engine": "postgresql",
                "version": "15",
                "size": "medium",
                "highAvailability": true,
                "backup": {"enabled": true, "retention": "7d", "schedule": "0 2 * * *"},
                "encryption": {"atRest": true, "inTransit": true}
            })
        );
        let back: DesiredSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, spec);
        assert_eq!(serde_json::to_value(&back).unwrap(), json);

        // A disabled backup without settings omits them and still round-trips.
        let plain = DesiredSpec {
            engine: Engine::Mongodb,
            version: "7.0".into(),
            size: Size::Xlarge,
            high_availability: false,
            backup: Backup::default(),
            encryption: Encryption::default(),
        };
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(json["backup"], json!({"enabled": false}));
        assert_eq!(serde_json::from_value::<DesiredSpec>(json).unwrap(), plain);
    }

    #[test]
    fn stored_specs_read_leniently() {
        // An older record without the optional parts, and one with a field a newer broker added.
        let spec: DesiredSpec = serde_json::from_value(json!({
            "engine": "postgresql", "version": "11", "size": "small", "futureField": 1
        }))
        .unwrap();
        assert_eq!(spec.version, "11");
        assert_eq!(spec.version_info(), None);
        assert_eq!(spec.backup.effective_retention().as_str(), "7d");
        assert_eq!(spec.backup.effective_schedule().as_str(), "0 2 * * *");
        // But values of a known type are still checked.
        assert!(
            serde_json::from_value::<DesiredSpec>(json!({
                "engine": "postgresql", "version": "15", "size": "small",
                "backup": {"enabled": true, "schedule": "nightly"}
            }))
            .is_err()
        );
    }

    #[test]
    fn equal_meaning_compares_equal_for_idempotency() {
        let a = parse_provision(&edit(
            seed_provision(),
            "spec.backup",
            Some(json!({"enabled": true})),
        ))
        .unwrap();
        let b = parse_provision(&edit(
            seed_provision(),
            "spec.backup",
            Some(json!({"enabled": true, "retention": "7d", "schedule": "0 2 * * *"})),
        ))
        .unwrap();
        assert_eq!(a.spec, b.spec);
        let c =
            parse_provision(&edit(seed_provision(), "spec.size", Some(json!("large")))).unwrap();
        assert_ne!(a.spec, c.spec);
    }

    #[test]
    fn body_must_be_an_object() {
        for v in [json!([]), json!("x"), json!(1), json!(null), json!(true)] {
            assert_eq!(
                provision_err(v.clone()),
                ("".into(), "request body must be a JSON object".into())
            );
            assert_eq!(
                parse_deprovision(&v).unwrap_err().message,
                "request body must be a JSON object"
            );
            assert_eq!(
                parse_resources_query_body(&v).unwrap_err().message,
                "request body must be a JSON object"
            );
        }
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let cases = [
            ("foo", "foo"),
            ("spec.foo", "spec.foo"),
            ("spec.backup.keep", "spec.backup.keep"),
            ("spec.encryption.algorithm", "spec.encryption.algorithm"),
        ];
        for (path, named) in cases {
            let (field, msg) = provision_err(edit(seed_provision(), path, Some(json!(1))));
            assert_eq!(field, named);
            assert_eq!(msg, format!("unknown field \"{named}\""));
        }
    }

    #[test]
    fn unknown_fields_are_reported_before_other_faults_and_deterministically() {
        // resourceName is also missing, but the typo is what the client needs to hear about.
        let v = edit(seed_provision(), "resourceName", None);
        let v = edit(v, "resource_name", Some(json!("x")));
        let v = edit(v, "zzz", Some(json!("x")));
        assert_eq!(provision_msg_of(v), "unknown field \"resource_name\"");
        // Top level before nested.
        let v = edit(seed_provision(), "spec.aaa", Some(json!(1)));
        let v = edit(v, "zzz", Some(json!(1)));
        assert_eq!(provision_msg_of(v), "unknown field \"zzz\"");
        // Case matters: the API is camelCase.
        let v = edit(seed_provision(), "spec.highAvailability", None);
        let v = edit(v, "spec.high_availability", Some(json!(true)));
        assert_eq!(
            provision_msg_of(v),
            "unknown field \"spec.high_availability\""
        );
    }

    fn provision_msg_of(v: Value) -> String {
        parse_provision(&v).unwrap_err().message
    }

    #[test]
    fn required_fields() {
        for field in [
            "resourceType",
            "resourceName",
            "namespace",
            "team",
            "owner",
            "callbackUrl",
            "spec",
            "spec.engine",
            "spec.version",
            "spec.size",
            "spec.backup.enabled",
        ] {
            let want = format!("{field} is required");
            assert_eq!(provision_msg(field, None), want, "absent {field}");
            assert_eq!(
                provision_msg(field, Some(Value::Null)),
                want,
                "null {field}"
            );
            if field != "spec" && field != "spec.backup.enabled" {
                assert_eq!(provision_msg(field, Some(json!(""))), want, "empty {field}");
            }
        }
        assert_eq!(
            parse_provision(&edit(seed_provision(), "resourceName", None))
                .unwrap_err()
                .field,
            "resourceName"
        );
    }

    #[test]
    fn wrong_json_types() {
        let cases = [
            ("resourceType", json!(1), "resourceType must be a string"),
            (
                "resourceName",
                json!(["a"]),
                "resourceName must be a string",
            ),
            ("namespace", json!({}), "namespace must be a string"),
            ("team", json!(true), "team must be a string"),
            ("owner", json!(1.5), "owner must be a string"),
            ("callbackUrl", json!(false), "callbackUrl must be a string"),
            ("spec", json!("postgresql"), "spec must be an object"),
            ("spec.engine", json!(1), "spec.engine must be a string"),
            ("spec.version", json!(15), "spec.version must be a string"),
            ("spec.version", json!(8.0), "spec.version must be a string"),
            ("spec.size", json!(2), "spec.size must be a string"),
            (
                "spec.highAvailability",
                json!("true"),
                "spec.highAvailability must be a boolean",
            ),
            ("spec.backup", json!(true), "spec.backup must be an object"),
            (
                "spec.backup.enabled",
                json!("yes"),
                "spec.backup.enabled must be a boolean",
            ),
            (
                "spec.backup.retention",
                json!(7),
                "spec.backup.retention must be a string",
            ),
            (
                "spec.backup.schedule",
                json!(["0"]),
                "spec.backup.schedule must be a string",
            ),
            (
                "spec.encryption",
                json!([]),
                "spec.encryption must be an object",
            ),
            (
                "spec.encryption.atRest",
                json!(1),
                "spec.encryption.atRest must be a boolean",
            ),
            (
                "spec.encryption.inTransit",
                json!("no"),
                "spec.encryption.inTransit must be a boolean",
            ),
        ];
        for (path, value, want) in cases {
            let (field, msg) = provision_err(edit(seed_provision(), path, Some(value)));
            assert_eq!(msg, want);
            assert_eq!(field, path);
        }
    }

    #[test]
    fn resource_type_rules() {
        assert_eq!(
            provision_msg("resourceType", Some(json!("queue"))),
            "resourceType must be one of: database, cache, topic"
        );
        assert_eq!(
            provision_msg("resourceType", Some(json!("Database"))),
            "resourceType must be one of: database, cache, topic"
        );
        assert_eq!(
            provision_msg("resourceType", Some(json!("cache"))),
            "resourceType \"cache\" is not supported yet (supported: database)"
        );
        assert_eq!(
            provision_msg("resourceType", Some(json!("topic"))),
            "resourceType \"topic\" is not supported yet (supported: database)"
        );
    }

    const NAME_MSG: &str = "resourceName must be a lowercase RFC 1035 label (a-z, 0-9, '-', starting with a \
                            letter and ending with a letter or digit) of at most 40 characters";
    const NS_MSG: &str = "namespace must be a lowercase RFC 1123 label (a-z, 0-9, '-', starting and ending \
                          with a letter or digit) of at most 63 characters";

    #[test]
    fn resource_name_rules() {
        let forty = "a".repeat(40);
        for ok in ["a", "pg-1", forty.as_str()] {
            assert!(
                parse_provision(&edit(seed_provision(), "resourceName", Some(json!(ok)))).is_ok()
            );
        }
        for bad in [
            "a".repeat(41),
            "1db".into(),
            "-db".into(),
            "db-".into(),
            "My-DB".into(),
            "my_db".into(),
            "my.db".into(),
        ] {
            assert_eq!(
                provision_msg("resourceName", Some(json!(bad))),
                NAME_MSG,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn namespace_rules() {
        let max = "n".repeat(63);
        for ok in ["team-platform", "0team", max.as_str()] {
            assert!(parse_provision(&edit(seed_provision(), "namespace", Some(json!(ok)))).is_ok());
        }
        for bad in [
            "n".repeat(64),
            "Team".into(),
            "team_a".into(),
            "-team".into(),
        ] {
            assert_eq!(
                provision_msg("namespace", Some(json!(bad))),
                NS_MSG,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn team_rules() {
        let msg = "team must be at most 63 characters of a-z, A-Z, 0-9, '-', '_' and '.', starting and \
                   ending with a letter or digit";
        for ok in ["Platform_Team.eu-1", "x"] {
            assert!(parse_provision(&edit(seed_provision(), "team", Some(json!(ok)))).is_ok());
        }
        for bad in [
            "a".repeat(64),
            "platform team".into(),
            "-team".into(),
            "team/x".into(),
        ] {
            assert_eq!(provision_msg("team", Some(json!(bad))), msg, "{bad:?}");
        }
    }

    #[test]
    fn owner_rules() {
        for bad in ["alice", "alice@", "alice@example", "alice@@example.com"] {
            assert_eq!(
                provision_msg("owner", Some(json!(bad))),
                "owner must be an email address"
            );
        }
    }

    #[test]
    fn callback_url_rules() {
        for ok in [
            "https://manager.example.com/cb?x=1",
            "http://10.0.0.1:8080",
            "http://[::1]:9/",
        ] {
            assert!(
                parse_provision(&edit(seed_provision(), "callbackUrl", Some(json!(ok)))).is_ok()
            );
        }
        for bad in [
            "manager:9090/v1/callback",
            "ftp://manager/cb",
            "http://",
            "/v1/callback",
        ] {
            assert_eq!(
                provision_msg("callbackUrl", Some(json!(bad))),
                "callbackUrl must be an absolute http(s) URL"
            );
        }
        assert_eq!(
            provision_msg("callbackUrl", Some(json!("http://u:p@manager/cb"))),
            "callbackUrl must not contain credentials (user:password@)"
        );
        let long = format!("http://manager/{}", "a".repeat(2048));
        assert_eq!(
            provision_msg("callbackUrl", Some(json!(long))),
            "callbackUrl must be at most 2048 characters"
        );
    }

    #[test]
    fn engine_version_and_size_rules() {
        assert_eq!(
            provision_msg("spec.engine", Some(json!("oracle"))),
            "spec.engine must be one of: postgresql, mysql, mongodb, redis"
        );
        assert_eq!(
            provision_msg("spec.version", Some(json!("11"))),
            "spec.version \"11\" is not supported for postgresql (supported: 12, 13, 14, 15, 16)"
        );
        assert_eq!(
            provision_msg("spec.version", Some(json!("15.2"))),
            "spec.version \"15.2\" is not supported for postgresql (supported: 12, 13, 14, 15, 16)"
        );
        let mysql = edit(seed_provision(), "spec.engine", Some(json!("mysql")));
        assert_eq!(
            provision_msg_of(mysql),
            "spec.version \"15\" is not supported for mysql (supported: 5.7, 8.0, 8.4)"
        );
        let mongo = edit(
            edit(seed_provision(), "spec.engine", Some(json!("mongodb"))),
            "spec.version",
            Some(json!("4.4")),
        );
        assert_eq!(
            provision_msg_of(mongo),
            "spec.version \"4.4\" is not supported for mongodb (supported: 5.0, 6.0, 7.0)"
        );
        let redis = edit(seed_provision(), "spec.engine", Some(json!("redis")));
        assert_eq!(
            provision_msg_of(redis),
            "spec.version \"15\" is not supported for redis (supported: 6.2, 7.0, 7.2)"
        );
        assert_eq!(
            provision_msg("spec.size", Some(json!("huge"))),
            "spec.size must be one of: small, medium, large, xlarge"
        );
    }

    #[test]
    fn every_catalogue_combination_is_accepted() {
        for e in Engine::ALL {
            for v in e.info().versions {
                for s in Size::ALL {
                    let body = edit(
                        seed_provision(),
                        "spec",
                        Some(
                            json!({"engine": e.as_str(), "version": v.version, "size": s.as_str()}),
                        ),
                    );
                    let spec = parse_provision(&body).unwrap().spec;
                    assert_eq!(
                        (spec.engine, spec.version.as_str(), spec.size),
                        (e, v.version, s)
                    );
                }
            }
        }
    }

    #[test]
    fn retention_rules() {
        let malformed = "spec.backup.retention must be a duration such as 7d or 36h";
        for bad in [
            "", "7", "d", "7 d", "7D", "-7d", "+7d", "1.5d", "7days", "1d12h", "7m",
        ] {
            assert_eq!(
                provision_msg("spec.backup.retention", Some(json!(bad))),
                malformed,
                "{bad:?}"
            );
        }
        for zero in ["0h", "0d", "00w"] {
            assert_eq!(
                provision_msg("spec.backup.retention", Some(json!(zero))),
                "spec.backup.retention must be longer than zero"
            );
        }
        for long in ["3651d", "87601h", "522w", "99999999999999999999999d"] {
            assert_eq!(
                provision_msg("spec.backup.retention", Some(json!(long))),
                "spec.backup.retention must be at most 3650d",
                "{long:?}"
            );
        }
        for (ok, hours) in [
            ("36h", 36),
            ("7d", 168),
            ("2w", 336),
            ("3650d", 87600),
            ("87600h", 87600),
        ] {
            let v = edit(seed_provision(), "spec.backup.retention", Some(json!(ok)));
            let r = parse_provision(&v).unwrap().spec.backup.retention.unwrap();
            assert_eq!((r.as_str(), r.hours()), (ok, hours));
        }
    }

    #[test]
    fn retention_units() {
        let r = RetentionPeriod::parse("36h").unwrap();
        assert_eq!(r.days(), 1.5);
        assert_eq!(r.duration(), std::time::Duration::from_secs(36 * 3600));
        assert_eq!(r.to_string(), "36h");
        assert_eq!(RetentionPeriod::parse("x"), Err(RetentionError::Malformed));
    }

    #[test]
    fn schedule_rules() {
        let msg = "spec.backup.schedule must be a 5-field cron expression such as \"0 2 * * *\"";
        for bad in ["nightly", "0 2 * *", "61 * * * *", ""] {
            assert_eq!(
                provision_msg("spec.backup.schedule", Some(json!(bad))),
                msg,
                "{bad:?}"
            );
        }
        let v = edit(
            seed_provision(),
            "spec.backup.schedule",
            Some(json!("30 1 * * SUN")),
        );
        assert_eq!(
            parse_provision(&v)
                .unwrap()
                .spec
                .backup
                .schedule
                .unwrap()
                .as_str(),
            "30 1 * * SUN"
        );
    }

    #[test]
    fn echoed_input_is_quoted_and_bounded() {
        let long = "9".repeat(100);
        let msg = provision_msg("spec.version", Some(json!(long)));
        assert_eq!(
            msg,
            format!(
                "spec.version \"{}\"… is not supported for postgresql (supported: 12, 13, 14, 15, 16)",
                "9".repeat(64)
            )
        );
        assert_eq!(
            provision_msg("spec.version", Some(json!("1\"5"))),
            "spec.version \"1\\\"5\" is not supported for postgresql (supported: 12, 13, 14, 15, 16)"
        );
        let (field, msg) = provision_err(edit(seed_provision(), &"k".repeat(70), Some(json!(1))));
        assert_eq!(field, "k".repeat(70));
        assert_eq!(msg, format!("unknown field \"{}\"…", "k".repeat(64)));
    }

    #[test]
    fn checks_run_in_document_order() {
        // Two faults: the earlier field in the API's order is reported.
        let v = edit(seed_provision(), "owner", Some(json!("nope")));
        let v = edit(v, "resourceName", Some(json!("Bad")));
        assert_eq!(provision_err(v).0, "resourceName");
        let v = edit(seed_provision(), "spec.size", Some(json!("huge")));
        let v = edit(v, "callbackUrl", Some(json!("x")));
        assert_eq!(provision_err(v).0, "callbackUrl");
    }

    #[test]
    fn validation_error_displays_its_message() {
        let e = parse_provision(&edit(seed_provision(), "resourceName", None)).unwrap_err();
        assert_eq!(e.to_string(), "resourceName is required");
        assert_eq!(
            e,
            ValidationError::new("resourceName", "resourceName is required")
        );
    }

    #[test]
    fn the_seed_deprovision_example_parses() {
        let r = parse_deprovision(&seed_deprovision()).unwrap();
        assert_eq!(
            r.deployment_id.as_str(),
            "deploy-fc8fc917314e2b8b698427458cd35342"
        );
        assert_eq!(r.resource_type, ResourceType::Database);
        assert_eq!(r.resource_name, "postgres-app-db");
        assert_eq!(r.namespace, "team-platform");
        assert_eq!(
            r.callback_url.as_deref(),
            Some("http://manager:9090/v1/callback")
        );
        let r = parse_deprovision(&edit(seed_deprovision(), "callbackUrl", None)).unwrap();
        assert_eq!(r.callback_url, None);
    }

    #[test]
    fn deprovision_rules() {
        let msg = |path: &str, value: Option<Value>| {
            parse_deprovision(&edit(seed_deprovision(), path, value))
                .unwrap_err()
                .message
        };
        assert_eq!(msg("deploymentId", None), "deploymentId is required");
        assert_eq!(
            msg("deploymentId", Some(json!(""))),
            "deploymentId is required"
        );
        assert_eq!(
            msg("deploymentId", Some(json!(7))),
            "deploymentId must be a string"
        );
        // The seed's curl example uses this short id; it is not a well-formed one.
        assert_eq!(
            msg("deploymentId", Some(json!("deploy-abc123"))),
            "deploymentId must look like deploy-<32 hex characters>"
        );
        assert_eq!(msg("resourceType", None), "resourceType is required");
        assert_eq!(
            msg("resourceType", Some(json!("cache"))),
            "resourceType \"cache\" is not supported yet (supported: database)"
        );
        assert_eq!(msg("resourceName", Some(json!("X"))), NAME_MSG);
        assert_eq!(msg("namespace", None), "namespace is required");
        assert_eq!(msg("namespace", Some(json!("a_b"))), NS_MSG);
        assert_eq!(
            msg("callbackUrl", Some(json!("nope"))),
            "callbackUrl must be an absolute http(s) URL"
        );
        assert_eq!(
            msg("callbackUrl", Some(json!(""))),
            "callbackUrl must be an absolute http(s) URL"
        );
        assert_eq!(
            msg("callbackUrl", Some(json!(1))),
            "callbackUrl must be a string"
        );
        assert_eq!(msg("spec", Some(json!({}))), "unknown field \"spec\"");
        assert!(
            parse_deprovision(&edit(seed_deprovision(), "callbackUrl", Some(Value::Null))).is_ok()
        );
    }

    #[test]
    fn resources_query_from_parameters() {
        let q = parse_resources_query(Some("team-platform"), Some("database"), None, None).unwrap();
        assert_eq!(q.namespace, "team-platform");
        assert_eq!(q.resource_type, Some(ResourceType::Database));
        assert_eq!((q.resource_name, q.deployment_id), (None, None));

        let q = parse_resources_query(
            Some("team-platform"),
            Some(""),
            Some("my-postgres"),
            Some("deploy-fc8fc917314e2b8b698427458cd35342"),
        )
        .unwrap();
        assert_eq!(q.resource_type, None);
        assert_eq!(q.resource_name.as_deref(), Some("my-postgres"));
        assert!(q.deployment_id.is_some());

        // Filtering on a type that is not provisioned yet is allowed.
        let q = parse_resources_query(Some("ns"), Some("cache"), None, None).unwrap();
        assert_eq!(q.resource_type, Some(ResourceType::Cache));

        let err = |ns, t, n, d| parse_resources_query(ns, t, n, d).unwrap_err().message;
        assert_eq!(err(None, None, None, None), "namespace is required");
        assert_eq!(err(Some(""), None, None, None), "namespace is required");
        assert_eq!(err(Some("NS"), None, None, None), NS_MSG);
        assert_eq!(
            err(Some("ns"), Some("db"), None, None),
            "resourceType must be one of: database, cache, topic"
        );
        assert_eq!(err(Some("ns"), None, Some("Bad"), None), NAME_MSG);
        assert_eq!(
            err(Some("ns"), None, None, Some("deploy-abc123")),
            "deploymentId must look like deploy-<32 hex characters>"
        );
    }

    #[test]
    fn resources_query_from_a_body() {
        let q = parse_resources_query_body(&json!({
            "namespace": "team-platform", "resourceType": "database", "resourceName": "postgres-app-db"
        }))
        .unwrap();
        assert_eq!(q.resource_name.as_deref(), Some("postgres-app-db"));
        let err = |v: Value| parse_resources_query_body(&v).unwrap_err().message;
        assert_eq!(err(json!({})), "namespace is required");
        assert_eq!(err(json!({"namespace": 5})), "namespace must be a string");
        assert_eq!(
            err(json!({"namespace": "ns", "resourceName": true})),
            "resourceName must be a string"
        );
        assert_eq!(
            err(json!({"namespace": "ns", "phase": "Ready"})),
            "unknown field \"phase\""
        );
        assert!(
            parse_resources_query_body(&json!({"namespace": "ns", "deploymentId": null})).is_ok()
        );
    }

    #[test]
    fn status_id() {
        let id = parse_status_id(Some("deploy-fc8fc917314e2b8b698427458cd35342")).unwrap();
        assert_eq!(id.as_str(), "deploy-fc8fc917314e2b8b698427458cd35342");
        assert_eq!(parse_status_id(None).unwrap_err().message, "id is required");
        assert_eq!(
            parse_status_id(Some("")).unwrap_err().message,
            "id is required"
        );
        let e = parse_status_id(Some("deploy-abc123")).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("id", "id must look like deploy-<32 hex characters>")
        );
    }

    #[test]
    fn eol_warnings_name_the_version_and_a_maintained_one() {
        let spec = |engine: Engine, version: &str| DesiredSpec {
            engine,
            version: version.into(),
            size: Size::Small,
            high_availability: false,
            backup: Backup::default(),
            encryption: Encryption::default(),
        };
        assert_eq!(
            eol_warning(&spec(Engine::Postgresql, "12")).as_deref(),
            Some(
                "warning: postgresql 12 is end-of-life upstream and receives no security fixes; consider 16"
            )
        );
        assert_eq!(
            eol_warning(&spec(Engine::Mysql, "8.0")).as_deref(),
            Some(
                "warning: mysql 8.0 is end-of-life upstream and receives no security fixes; consider 8.4"
            )
        );
        assert_eq!(
            eol_warning(&spec(Engine::Mongodb, "5.0")).as_deref(),
            Some(
                "warning: mongodb 5.0 is end-of-life upstream and receives no security fixes; consider 7.0"
            )
        );
        assert_eq!(
            eol_warning(&spec(Engine::Redis, "7.0")).as_deref(),
            Some(
                "warning: redis 7.0 is end-of-life upstream and receives no security fixes; consider 7.2"
            )
        );
        assert_eq!(eol_warning(&spec(Engine::Postgresql, "15")), None);
        assert_eq!(eol_warning(&spec(Engine::Redis, "6.2")), None);
        // A version the catalogue does not know is not ours to judge.
        assert_eq!(eol_warning(&spec(Engine::Postgresql, "11")), None);
    }

    #[test]
    fn name_limit_leaves_room_for_every_derived_name() {
        let name = "a".repeat(MAX_RESOURCE_NAME_LEN);
        // CronJob names ≤ 52; Service names and label values ≤ 63.
        assert!(format!("{name}-backup").len() <= 52);
        assert!(format!("{name}-headless").len() <= 63);
        assert!(format!("{name}-{}", "h".repeat(10)).len() <= 63);
        assert!(format!("data-{name}-2").len() <= 63);
    }
}
