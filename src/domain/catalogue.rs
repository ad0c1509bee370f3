//! The engine catalogue: resource types, engines and their versions, official images, ports, connection
//! defaults, and the size table.
//!
//! Everything here is `'static` data and pure lookups, so the validator, the renderer, drift and cost all read
//! one table and can never disagree about what "postgresql 15, medium" means.

use std::fmt::{self, Write as _};

/// The error of every `FromStr` in the domain: the text named no known variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being parsed, e.g. `engine`.
    pub what: &'static str,
    /// The text that was given.
    pub given: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.given)
    }
}

impl std::error::Error for UnknownName {}

/// Joins names as `a, b, c` for "one of" messages.
pub(crate) fn join_names<T: Copy>(items: &[T], name: impl Fn(T) -> &'static str) -> String {
    items
        .iter()
        .map(|&i| name(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Implements `as_str`-based `Display`, `FromStr`, and string serde for a fieldless enum with an `ALL` array,
/// so that the wire spelling of each variant is written exactly once (in its `as_str`). The caller must have
/// `UnknownName` in scope; everything else is spelled out in full.
macro_rules! named_enum {
    ($ty:ident, $what:literal) => {
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName {
                        what: $what,
                        given: s.to_string(),
                    })
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use named_enum;

/// A kind of resource the manager can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// A database of one of the [`Engine`]s; the only type provisioned today.
    Database,
    /// A cache (Redis, Memcached); announced by the API, not built yet.
    Cache,
    /// A message topic (Kafka, RabbitMQ, NATS); announced by the API, not built yet.
    Topic,
}

impl ResourceType {
    /// Every resource type, in the order the API lists them.
    pub const ALL: [ResourceType; 3] = [Self::Database, Self::Cache, Self::Topic];
    /// The resource types the broker can provision today.
    pub const SUPPORTED: [ResourceType; 1] = [Self::Database];

    /// The wire name: `database`, `cache` or `topic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Cache => "cache",
            Self::Topic => "topic",
        }
    }

    /// Whether the broker can provision this type today.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }
}

named_enum!(ResourceType, "resource type");

/// A database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// PostgreSQL, official image `postgres`.
    Postgresql,
    /// MySQL, official image `mysql`.
    Mysql,
    /// MongoDB, official image `mongo`.
    Mongodb,
    /// Redis, official image `redis`.
    Redis,
}

impl Engine {
    /// Every engine, in the order the API lists them.
    pub const ALL: [Engine; 4] = [Self::Postgresql, Self::Mysql, Self::Mongodb, Self::Redis];

    /// The wire name: `postgresql`, `mysql`, `mongodb` or `redis`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgresql => "postgresql",
            Self::Mysql => "mysql",
            Self::Mongodb => "mongodb",
            Self::Redis => "redis",
        }
    }

    /// This engine's catalogue entry.
    pub fn info(self) -> &'static EngineInfo {
        engine_info(self)
    }
}

named_enum!(Engine, "engine");

/// A t-shirt size: CPU and memory per replica from the API reference, storage per replica chosen by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// Development/testing: 1 CPU, 2Gi memory, 10Gi storage.
    Small,
    /// Production: 2 CPU, 4Gi memory, 50Gi storage.
    Medium,
    /// High-load: 4 CPU, 8Gi memory, 100Gi storage.
    Large,
    /// Enterprise: 8 CPU, 16Gi memory, 250Gi storage.
    Xlarge,
}

/// What one replica of a [`Size`] gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SizeSpec {
    /// CPU request and limit, in millicores.
    pub cpu_millis: u32,
    /// Memory request and limit, in MiB.
    pub memory_mib: u32,
    /// Volume size, in GiB.
    pub storage_gib: u32,
}

impl Size {
    /// Every size, smallest first.
    pub const ALL: [Size; 4] = [Self::Small, Self::Medium, Self::Large, Self::Xlarge];

    /// The wire name: `small`, `medium`, `large` or `xlarge`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
            Self::Xlarge => "xlarge",
        }
    }

    /// The resources of one replica.
    ///
    /// CPU and memory are the API reference's. It says nothing about storage, so the volume sizes are ours:
    /// roughly the working set a database of that class holds (10Gi for a test database, 50Gi for a typical
    /// service database, then 100Gi and 250Gi), growing a little faster than memory because data outgrows
    /// cache. They are what the StatefulSet's volumeClaimTemplate asks for and what cost is computed from.
    pub fn spec(self) -> SizeSpec {
        let (cpu_millis, memory_mib, storage_gib) = match self {
            Self::Small => (1000, 2 * 1024, 10),
            Self::Medium => (2000, 4 * 1024, 50),
            Self::Large => (4000, 8 * 1024, 100),
            Self::Xlarge => (8000, 16 * 1024, 250),
        };
        SizeSpec {
            cpu_millis,
            memory_mib,
            storage_gib,
        }
    }

    /// The CPU as a Kubernetes quantity, in the canonical form the API server writes back (`"1"`, not
    /// `"1000m"`), so that what we apply compares equal to what we later read.
    pub fn cpu_quantity(self) -> String {
        cpu_quantity(self.spec().cpu_millis)
    }

    /// The memory as a Kubernetes quantity (`"2Gi"`, …).
    pub fn memory_quantity(self) -> String {
        memory_quantity(self.spec().memory_mib)
    }

    /// The volume size as a Kubernetes quantity (`"10Gi"`, …).
    pub fn storage_quantity(self) -> String {
        format!("{}Gi", self.spec().storage_gib)
    }
}

named_enum!(Size, "size");

/// Millicores as a canonical Kubernetes CPU quantity: whole cores without a suffix, otherwise `m`.
pub fn cpu_quantity(millis: u32) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// MiB as a canonical Kubernetes memory quantity: `Gi` when whole, otherwise `Mi`.
pub fn memory_quantity(mib: u32) -> String {
    if mib.is_multiple_of(1024) && mib != 0 {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// One version of an engine the broker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionInfo {
    /// The version as requested on the wire (`"15"`, `"8.0"`).
    pub version: &'static str,
    /// The official image's tag for it.
    pub image_tag: &'static str,
    /// Upstream no longer maintains this version; it still runs but gets no security fixes.
    pub end_of_life: bool,
}

/// Everything the broker knows about one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineInfo {
    /// Which engine this describes.
    pub engine: Engine,
    /// The official image's repository on Docker Hub (`postgres`, `mysql`, `mongo`, `redis`).
    pub image_repository: &'static str,
    /// The port the engine listens on and the Services expose.
    pub port: u16,
    /// The versions offered, oldest first.
    pub versions: &'static [VersionInfo],
    /// The database the credentials Secret names and the URI points at.
    pub default_database: &'static str,
    /// The user the credentials Secret names.
    pub default_username: &'static str,
    /// The scheme of the connection URI in the credentials Secret.
    pub uri_scheme: &'static str,
}

const fn v(version: &'static str, end_of_life: bool) -> VersionInfo {
    // The official images tag each of our versions by exactly its number, so tag = version.
    VersionInfo {
        version,
        image_tag: version,
        end_of_life,
    }
}

// The end-of-life flags follow the docker-library "supported tags" snapshot in engines.md: a version whose tag
// upstream has dropped from its supported list still pulls but receives no patches.
static CATALOGUE: [EngineInfo; 4] = [
    EngineInfo {
        engine: Engine::Postgresql,
        image_repository: "postgres",
        port: 5432,
        versions: &[
            v("12", true),
            v("13", true),
            v("14", false),
            v("15", false),
            v("16", false),
        ],
        // A dedicated application database and role, not the `postgres` superuser's defaults, so clients do
        // not grow a dependency on superuser names.
        default_database: "app",
        default_username: "app",
        uri_scheme: "postgresql",
    },
    EngineInfo {
        engine: Engine::Mysql,
        image_repository: "mysql",
        port: 3306,
        versions: &[v("5.7", true), v("8.0", true), v("8.4", false)],
        // MYSQL_DATABASE/MYSQL_USER create exactly this pair at first start.
        default_database: "app",
        default_username: "app",
        uri_scheme: "mysql",
    },
    EngineInfo {
        engine: Engine::Mongodb,
        image_repository: "mongo",
        port: 27017,
        versions: &[v("5.0", true), v("6.0", true), v("7.0", false)],
        // The image creates the user in `admin`; the URI therefore carries authSource=admin.
        default_database: "app",
        default_username: "app",
        uri_scheme: "mongodb",
    },
    EngineInfo {
        engine: Engine::Redis,
        image_repository: "redis",
        port: 6379,
        versions: &[v("6.2", false), v("7.0", true), v("7.2", false)],
        // Redis has no named databases or users by default: `requirepass` protects the built-in `default`
        // user, and logical database 0 is where clients land.
        default_database: "0",
        default_username: "default",
        uri_scheme: "redis",
    },
];

/// The catalogue entry of an engine.
pub fn engine_info(e: Engine) -> &'static EngineInfo {
    match e {
        Engine::Postgresql => &CATALOGUE[0],
        Engine::Mysql => &CATALOGUE[1],
        Engine::Mongodb => &CATALOGUE[2],
        Engine::Redis => &CATALOGUE[3],
    }
}

impl EngineInfo {
    /// The offered version spelled exactly `v`, if any.
    pub fn version(&self, v: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|i| i.version == v)
    }

    /// The full image reference for a version: `postgres:15`, or `<registry>/postgres:15` when a private
    /// registry (or registry plus path prefix) mirrors the official images. A trailing `/` on the registry is
    /// tolerated, and an empty one means Docker Hub.
    pub fn image(&self, registry: Option<&str>, v: &VersionInfo) -> String {
        match registry
            .map(|r| r.trim_end_matches('/'))
            .filter(|r| !r.is_empty())
        {
            Some(r) => format!("{r}/{}:{}", self.image_repository, v.image_tag),
            None => format!("{}:{}", self.image_repository, v.image_tag),
        }
    }

    /// The offered versions as `12, 13, 14` for messages.
    pub fn versions_list(&self) -> String {
        self.versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The newest offered version that upstream still maintains: what an end-of-life warning recommends.
    pub fn recommended_version(&self) -> &VersionInfo {
        self.versions
            .iter()
            .rev()
            .find(|v| !v.end_of_life)
            // Every engine in the catalogue has a maintained version; the test `every_engine_has_a_maintained_version`
            // keeps it so, and the last version is still a sane answer if that ever regresses.
            .or(self.versions.last())
            .expect("the catalogue lists at least one version per engine")
    }

    /// The connection URI stored in the credentials Secret, for a client reaching `host` with `password`.
    ///
    /// User and password are percent-encoded so any generated password is safe. With `tls`, the URI asks the
    /// client for TLS in each engine's own idiom, because a client that silently connects in plaintext to a
    /// TLS-only server fails with a confusing error.
    pub fn connection_uri(&self, host: &str, password: &str, tls: bool) -> String {
        let user = percent_encode_userinfo(self.default_username);
        let pass = percent_encode_userinfo(password);
        // `rediss` is the scheme Redis clients use for TLS; the others ask for it in the query.
        let scheme = if tls && self.engine == Engine::Redis {
            "rediss"
        } else {
            self.uri_scheme
        };
        let query = match (self.engine, tls) {
            (Engine::Postgresql, true) => "?sslmode=require",
            // The MySQL Shell / Connector URI spelling.
            (Engine::Mysql, true) => "?ssl-mode=REQUIRED",
            // The official image creates the user in `admin`, so clients must authenticate there.
            (Engine::Mongodb, false) => "?authSource=admin",
            (Engine::Mongodb, true) => "?authSource=admin&tls=true",
            _ => "",
        };
        format!(
            "{scheme}://{user}:{pass}@{host}:{port}/{db}{query}",
            port = self.port,
            db = self.default_database
        )
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, which is always safe inside userinfo.
fn percent_encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_display_and_serde() {
        for t in ResourceType::ALL {
            assert_eq!(t.as_str().parse::<ResourceType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for e in Engine::ALL {
            assert_eq!(e.as_str().parse::<Engine>(), Ok(e));
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Engine>(&json).unwrap(), e);
        }
        for s in Size::ALL {
            assert_eq!(s.as_str().parse::<Size>(), Ok(s));
            assert_eq!(
                serde_json::from_value::<Size>(s.as_str().into()).unwrap(),
                s
            );
        }
    }

    #[test]
    fn wire_names_are_the_seed_spellings() {
        assert_eq!(
            join_names(&ResourceType::ALL, ResourceType::as_str),
            "database, cache, topic"
        );
        assert_eq!(
            join_names(&Engine::ALL, Engine::as_str),
            "postgresql, mysql, mongodb, redis"
        );
        assert_eq!(
            join_names(&Size::ALL, Size::as_str),
            "small, medium, large, xlarge"
        );
    }

    #[test]
    fn from_str_is_case_sensitive_and_names_the_failure() {
        let err = "Postgresql".parse::<Engine>().unwrap_err();
        assert_eq!(err.to_string(), r#"unknown engine "Postgresql""#);
        assert!("XLARGE".parse::<Size>().is_err());
        assert!(serde_json::from_value::<Engine>("oracle".into()).is_err());
    }

    #[test]
    fn only_database_is_supported() {
        assert!(ResourceType::Database.is_supported());
        assert!(!ResourceType::Cache.is_supported());
        assert!(!ResourceType::Topic.is_supported());
    }

    #[test]
    fn size_table_matches_the_api_reference() {
        let table: Vec<_> = Size::ALL
            .iter()
            .map(|s| (s.cpu_quantity(), s.memory_quantity(), s.storage_quantity()))
            .collect();
        let expect = [
            ("1", "2Gi", "10Gi"),
            ("2", "4Gi", "50Gi"),
            ("4", "8Gi", "100Gi"),
            ("8", "16Gi", "250Gi"),
        ];
        for (got, want) in table.iter().zip(expect) {
            assert_eq!((got.0.as_str(), got.1.as_str(), got.2.as_str()), want);
        }
        assert_eq!(
            Size::Medium.spec(),
            SizeSpec {
                cpu_millis: 2000,
                memory_mib: 4096,
                storage_gib: 50
            }
        );
    }

    #[test]
    fn quantities_use_canonical_forms() {
        assert_eq!(cpu_quantity(1500), "1500m");
        assert_eq!(cpu_quantity(3000), "3");
        assert_eq!(memory_quantity(512), "512Mi");
        assert_eq!(memory_quantity(3072), "3Gi");
        assert_eq!(memory_quantity(0), "0Mi");
    }

    #[test]
    fn versions_are_exactly_the_seeds() {
        let lists: Vec<String> = Engine::ALL
            .iter()
            .map(|e| e.info().versions_list())
            .collect();
        assert_eq!(
            lists,
            [
                "12, 13, 14, 15, 16",
                "5.7, 8.0, 8.4",
                "5.0, 6.0, 7.0",
                "6.2, 7.0, 7.2"
            ]
        );
    }

    #[test]
    fn end_of_life_flags_follow_the_supported_tags() {
        let eol: Vec<String> = Engine::ALL
            .iter()
            .flat_map(|e| {
                e.info()
                    .versions
                    .iter()
                    .filter(|v| v.end_of_life)
                    .map(move |v| format!("{e} {}", v.version))
            })
            .collect();
        assert_eq!(
            eol,
            [
                "postgresql 12",
                "postgresql 13",
                "mysql 5.7",
                "mysql 8.0",
                "mongodb 5.0",
                "mongodb 6.0",
                "redis 7.0"
            ]
        );
    }

    #[test]
    fn every_engine_has_a_maintained_version() {
        let rec: Vec<&str> = Engine::ALL
            .iter()
            .map(|e| e.info().recommended_version().version)
            .collect();
        assert_eq!(rec, ["16", "8.4", "7.0", "7.2"]);
    }

    #[test]
    fn catalogue_entries_are_indexed_by_their_engine() {
        for e in Engine::ALL {
            assert_eq!(engine_info(e).engine, e);
        }
        let ports: Vec<u16> = Engine::ALL.iter().map(|e| e.info().port).collect();
        assert_eq!(ports, [5432, 3306, 27017, 6379]);
        let repos: Vec<&str> = Engine::ALL
            .iter()
            .map(|e| e.info().image_repository)
            .collect();
        assert_eq!(repos, ["postgres", "mysql", "mongo", "redis"]);
    }

    #[test]
    fn version_lookup_is_exact() {
        let pg = engine_info(Engine::Postgresql);
        assert_eq!(pg.version("15").map(|v| v.image_tag), Some("15"));
        assert!(pg.version("15.2").is_none());
        assert!(pg.version("11").is_none());
        assert!(engine_info(Engine::Mysql).version("8").is_none());
    }

    #[test]
    fn images_are_official_or_mirrored() {
        let pg = engine_info(Engine::Postgresql);
        let v15 = pg.version("15").unwrap();
        assert_eq!(pg.image(None, v15), "postgres:15");
        assert_eq!(pg.image(Some(""), v15), "postgres:15");
        assert_eq!(
            pg.image(Some("registry.example.com:5000/mirror/"), v15),
            "registry.example.com:5000/mirror/postgres:15"
        );
        let mongo = engine_info(Engine::Mongodb);
        assert_eq!(
            mongo.image(Some("ghcr.io/acme"), mongo.version("7.0").unwrap()),
            "ghcr.io/acme/mongo:7.0"
        );
    }

    #[test]
    fn connection_uris_follow_each_engines_idiom() {
        let host = "db.team.svc.cluster.local";
        assert_eq!(
            engine_info(Engine::Postgresql).connection_uri(host, "p@ss/w:rd", false),
            "postgresql://app:p%40ss%2Fw%3Ard@db.team.svc.cluster.local:5432/app"
        );
        assert_eq!(
            engine_info(Engine::Postgresql).connection_uri(host, "pw", true),
            "postgresql://app:pw@db.team.svc.cluster.local:5432/app?sslmode=require"
        );
        assert_eq!(
            engine_info(Engine::Mysql).connection_uri(host, "pw", true),
            "mysql://app:pw@db.team.svc.cluster.local:3306/app?ssl-mode=REQUIRED"
        );
        assert_eq!(
            engine_info(Engine::Mongodb).connection_uri(host, "pw", false),
            "mongodb://app:pw@db.team.svc.cluster.local:27017/app?authSource=admin"
        );
        assert_eq!(
            engine_info(Engine::Redis).connection_uri(host, "pw", false),
            "redis://default:pw@db.team.svc.cluster.local:6379/0"
        );
        assert_eq!(
            engine_info(Engine::Redis).connection_uri(host, "pw", true),
            "rediss://default:pw@db.team.svc.cluster.local:6379/0"
        );
    }
}
