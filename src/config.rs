//! Command-line and environment configuration: every flag has a `KIDP_…` environment variable and a default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// KIDP Deployment Broker: provisions databases in Kubernetes namespaces and reports back by callback.
#[derive(Parser, Debug, Clone)]
#[command(name = "kidp-broker", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address of the REST API.
    #[arg(long, env = "KIDP_LISTEN", default_value = "0.0.0.0:8082")]
    pub listen: SocketAddr,

    /// Address of the Prometheus metrics endpoint (`/metrics`).
    #[arg(long, env = "KIDP_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,

    /// Kubeconfig file; when absent: KUBECONFIG, ~/.kube/config, then the in-cluster service account.
    #[arg(long, env = "KIDP_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Create a request's namespace when it does not exist (otherwise such a request gets 400).
    #[arg(long, env = "KIDP_CREATE_NAMESPACES", default_value_t = false)]
    pub create_namespaces: bool,

    /// Apply the ManagedResource CRD at start (needs RBAC on customresourcedefinitions).
    #[arg(long, env = "KIDP_INSTALL_CRD", default_value_t = false)]
    pub install_crd: bool,

    /// Log format.
    #[arg(long, env = "KIDP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Development mode: start an embedded Kubernetes API simulator (kubesim), install the CRD, create
    /// namespaces on first use and serve WITHOUT authentication.
    // Only in builds with the `dev` feature: a production build has no such flag, so no environment variable
    // or stray argument can switch authentication off there.
    #[cfg(feature = "dev")]
    #[arg(long, env = "KIDP_DEV", default_value_t = false)]
    pub dev: bool,

    /// With --dev: where the embedded cluster listens.
    #[cfg(feature = "dev")]
    #[arg(long, env = "KIDP_DEV_CLUSTER_LISTEN", default_value = "127.0.0.1:0")]
    pub dev_cluster_listen: SocketAddr,

    /// With --dev: write the embedded cluster's kubeconfig here (for kubectl).
    #[cfg(feature = "dev")]
    #[arg(long, env = "KIDP_DEV_KUBECONFIG_OUT")]
    pub dev_kubeconfig_out: Option<PathBuf>,

    /// With --dev: run the embedded cluster's pods as real containers under runc (kubesim's container kubelet)
    /// on the images of `kubesim images build`. Needs root and runc; see the README.
    #[cfg(feature = "dev")]
    #[arg(
        long,
        env = "KIDP_DEV_REAL_PODS",
        default_value_t = false,
        requires = "dev"
    )]
    pub dev_real_pods: bool,

    /// With --dev-real-pods: where `kubesim images build --out` put the images.
    #[cfg(feature = "dev")]
    #[arg(
        long,
        env = "KIDP_DEV_IMAGE_DIR",
        default_value = "/var/cache/kubesim/images"
    )]
    pub dev_image_dir: PathBuf,

    /// With --dev-real-pods: where the pods' volumes, containers and logs live.
    #[cfg(feature = "dev")]
    #[arg(long, env = "KIDP_DEV_KUBELET_DIR", default_value = "/var/lib/kubesim")]
    pub dev_kubelet_dir: PathBuf,

    /// With --dev: require `Authorization: Bearer <this>` (subject `dev`, every namespace and action), so that
    /// the authentication path can be tried locally.
    #[cfg(feature = "dev")]
    #[arg(long, env = "KIDP_DEV_TOKEN", hide_env_values = true, requires = "dev")]
    pub dev_token: Option<String>,

    /// Bearer tokens, their subjects and grants (YAML; see the README); re-read when it changes.
    #[arg(long, env = "KIDP_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Authenticate bearer tokens with a Kubernetes TokenReview and authorize each request with a
    /// SubjectAccessReview on `managedresources.kidp.io` in the target namespace.
    #[arg(long, env = "KIDP_AUTH_KUBERNETES", default_value_t = false)]
    pub auth_kubernetes: bool,

    /// With --auth-kubernetes: audiences the token must be valid for, comma-separated (the API server's when
    /// absent).
    #[arg(long, env = "KIDP_AUTH_AUDIENCE", value_delimiter = ',')]
    pub auth_audience: Vec<String>,

    /// Serve the API WITHOUT authentication (every caller may do everything); logged at start and shown by
    /// /readiness. Needed when no authentication is configured, so that an open broker is always deliberate.
    #[arg(long, env = "KIDP_INSECURE_NO_AUTH", default_value_t = false)]
    pub insecure_no_auth: bool,

    /// Serve the REST API over HTTPS with this certificate chain (PEM; re-read when it changes).
    #[arg(long, env = "KIDP_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// The private key of --tls-cert-file (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "KIDP_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Authenticate callers by client certificate (mutual TLS) issued by these CAs (PEM). The subject is the
    /// certificate's URI SAN or CN, granted by the --auth-token-file entry of that subject. Health probes
    /// need no certificate; /v1/ needs one or a bearer token.
    #[arg(
        long,
        env = "KIDP_TLS_CLIENT_CA_FILE",
        requires = "tls_cert_file",
        requires = "auth_token_file"
    )]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Namespaces the broker may provision into and deprovision from, comma-separated globs; any when empty.
    #[arg(long, env = "KIDP_ALLOWED_NAMESPACES", value_delimiter = ',')]
    pub allowed_namespaces: Vec<String>,

    /// Namespaces the broker never provisions into or deprovisions from, comma-separated globs; wins over
    /// --allowed-namespaces. A value replaces the default (an empty value denies none).
    #[arg(
        long,
        env = "KIDP_DENIED_NAMESPACES",
        value_delimiter = ',',
        default_value = crate::auth::namespaces::DEFAULT_DENIED
    )]
    pub denied_namespaces: Vec<String>,

    /// A StorageClass that encrypts volumes at rest; requests with `encryption.atRest: true` are refused
    /// when none is configured. The embedded development cluster installs and uses `kidp-encrypted`.
    #[arg(long, env = "KIDP_ENCRYPTED_STORAGE_CLASS")]
    pub encrypted_storage_class: Option<String>,

    /// Refuse provisions whose team has no cluster-scoped `Team` resource (403); without it such teams are
    /// unlimited.
    #[arg(long, env = "KIDP_REQUIRE_TEAM", default_value_t = false)]
    pub require_team: bool,

    /// Append every audit record (one per provision or deprovision, accepted or refused) to this file as JSON
    /// lines, besides logging it on the `audit` target.
    #[arg(long, env = "KIDP_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "KIDP_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Requests per minute per client (authenticated subject, else IP address) on the /v1 API; 0 disables.
    #[arg(long, env = "KIDP_RATE_LIMIT_PER_MINUTE", default_value_t = 100)]
    pub rate_limit_per_minute: u32,

    /// Requests a client may make at once before the per-minute rate applies (at least 1).
    // 20: a manager reconciling a team's deployments after a restart sends a short burst of status reads; a
    // burst as large as the minute's budget would let a flood through at full speed twice a minute.
    #[arg(long, env = "KIDP_RATE_LIMIT_BURST", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,

    /// Proxies (comma-separated CIDRs) whose X-Forwarded-For names the client; from any other peer it is ignored.
    #[arg(long, env = "KIDP_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Connections open at once on the REST API port; when full, the longest-idle connection makes room.
    // 512: far more than a manager and a few operators need, and with the broker's own sockets (watches,
    // callbacks) still inside the common soft limit of 1024 open files.
    #[arg(long, env = "KIDP_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    /// Seconds a client has to send a complete request head (from connecting, or from its first byte on a
    /// kept-alive connection).
    #[arg(long, env = "KIDP_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_seconds: u64,

    /// Seconds a kept-alive connection may stay idle between requests.
    // 60: as long as common load balancers keep idle connections, shorter than reqwest's 90 s pool timeout.
    #[arg(long, env = "KIDP_KEEP_ALIVE_TIMEOUT_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_alive_timeout_seconds: u64,

    /// Seconds a client has to send the whole request body once its headers have arrived.
    #[arg(long, env = "KIDP_BODY_READ_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_seconds: u64,

    /// Longest request target (path and query) accepted, in bytes; longer gets 414.
    #[arg(long, env = "KIDP_MAX_URI_BYTES", default_value_t = 8 * 1024)]
    pub max_uri_bytes: usize,

    /// Largest total size of the request headers (names and values) accepted, in bytes; larger gets 431.
    #[arg(long, env = "KIDP_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Deployments provisioning at once per namespace; the rest wait in FIFO order.
    #[arg(long, env = "KIDP_NAMESPACE_CONCURRENCY", default_value_t = 10)]
    pub namespace_concurrency: usize,

    /// Seconds a deployment may take from the start of provisioning to Ready before it is Failed.
    #[arg(long, env = "KIDP_PROVISION_TIMEOUT_SECONDS", default_value_t = 600)]
    pub provision_timeout_seconds: u64,

    /// Seconds a pod may stay in ErrImagePull/ImagePullBackOff/CrashLoopBackOff before the deployment is Failed.
    #[arg(long, env = "KIDP_FAILURE_GRACE_SECONDS", default_value_t = 120)]
    pub failure_grace_seconds: u64,

    /// Secret for HMAC-SHA256 callback signatures (X-KIDP-Timestamp, X-KIDP-Signature); unsigned when absent.
    #[arg(long, env = "KIDP_CALLBACK_SIGNING_SECRET", hide_env_values = true)]
    pub callback_signing_secret: Option<String>,

    /// First retry delay of a failed callback, in milliseconds (doubling, with jitter).
    #[arg(long, env = "KIDP_CALLBACK_INITIAL_BACKOFF_MS", default_value_t = 1000)]
    pub callback_initial_backoff_ms: u64,

    /// Longest delay between callback retries, in seconds.
    #[arg(long, env = "KIDP_CALLBACK_MAX_BACKOFF_SECONDS", default_value_t = 300)]
    pub callback_max_backoff_seconds: u64,

    /// How long one callback is retried, from its first attempt, before it is abandoned (logged and counted
    /// as `result="abandoned"`) and the deployment moves on. An hour rides out a manager's restart or a short
    /// outage; past that the manager reconciles from `/v1/status`, and a deprovision must not wait forever.
    #[arg(
        long,
        env = "KIDP_CALLBACK_DELIVERY_LIFETIME_SECONDS",
        default_value_t = 3600
    )]
    pub callback_delivery_lifetime_seconds: u64,

    /// Hosts callbacks may be sent to, comma-separated, `*` wildcards allowed; any host when empty.
    #[arg(long, env = "KIDP_CALLBACK_ALLOWED_HOSTS", value_delimiter = ',')]
    pub callback_allowed_hosts: Vec<String>,

    /// Allow callbacks to loopback addresses (127.0.0.0/8, ::1); refused by default, allowed by `--dev` so that
    /// a local receiver works. The broker's own ports and its Kubernetes API are refused either way.
    #[arg(long, env = "KIDP_CALLBACK_ALLOW_LOOPBACK", default_value_t = false)]
    pub callback_allow_loopback: bool,

    /// Allow callbacks to link-local addresses (cloud metadata services); refused by default.
    #[arg(long, env = "KIDP_CALLBACK_ALLOW_LINK_LOCAL", default_value_t = false)]
    pub callback_allow_link_local: bool,

    /// Registry prefix for engine images (e.g. `registry.internal/library`); Docker Hub's official images when absent.
    #[arg(long, env = "KIDP_IMAGE_REGISTRY")]
    pub image_registry: Option<String>,

    /// The cluster's DNS domain, for endpoints (`<name>.<namespace>.svc.<domain>`).
    #[arg(long, env = "KIDP_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Price of one vCPU for a month (default 18.00).
    #[arg(long, env = "KIDP_PRICE_VCPU_MONTH")]
    pub price_vcpu_month: Option<f64>,

    /// Price of one GiB of memory for a month (default 2.50).
    #[arg(long, env = "KIDP_PRICE_MEMORY_GIB_MONTH")]
    pub price_memory_gib_month: Option<f64>,

    /// Price of one GiB of volume storage for a month (default 0.10).
    #[arg(long, env = "KIDP_PRICE_STORAGE_GIB_MONTH")]
    pub price_storage_gib_month: Option<f64>,

    /// Price of one GiB of backup storage for a month (default 0.05).
    #[arg(long, env = "KIDP_PRICE_BACKUP_GIB_MONTH")]
    pub price_backup_gib_month: Option<f64>,

    /// Seconds between re-evaluations of each deployment without an event.
    #[arg(long, env = "KIDP_RESYNC_SECONDS", default_value_t = 15)]
    pub resync_seconds: u64,

    /// This replica's identity in the shard Leases (lowercase letters, digits, `-` and `.`); defaults to the
    /// pod name (POD_NAME), else the host name. Must be unique among the replicas.
    #[arg(long, env = "KIDP_REPLICA_ID", value_parser = parse_replica_id)]
    pub replica_id: Option<String>,

    /// Namespace of the shard Leases; defaults to the pod's namespace (POD_NAMESPACE, else the in-cluster
    /// service account's), else `kidp-system`.
    #[arg(long, env = "KIDP_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a shard Lease stays valid without renewal (another replica takes over after this).
    #[arg(long, env = "KIDP_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Seconds a replica keeps acting for a shard without a successful renewal before it stops (fencing).
    #[arg(long, env = "KIDP_LEASE_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    pub lease_renew_deadline_seconds: u64,

    /// Seconds between lease renewals and looks for free shards.
    #[arg(long, env = "KIDP_LEASE_RETRY_SECONDS", default_value_t = 2)]
    pub lease_retry_seconds: u64,
}

/// The longest replica id: a label value.
const MAX_REPLICA_ID: usize = 63;

fn is_replica_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_REPLICA_ID
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn parse_replica_id(s: &str) -> Result<String, String> {
    if is_replica_id(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a replica id: 1 to {MAX_REPLICA_ID} lowercase letters, digits, '-' or '.', \
             starting and ending with a letter or digit"
        ))
    }
}

/// A name from the environment made into a replica id (lowercased, other characters replaced by `-`).
fn sanitize_replica_id(raw: &str) -> Option<String> {
    let s: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let s = &s[..s.len().min(MAX_REPLICA_ID)];
    let s = s.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    is_replica_id(s).then(|| s.to_string())
}

impl Args {
    /// This replica's id: `--replica-id`, else the pod name, else the host name.
    pub fn replica(&self) -> String {
        if let Some(id) = &self.replica_id {
            return id.clone();
        }
        std::env::var("POD_NAME")
            .ok()
            .and_then(|n| sanitize_replica_id(&n))
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .and_then(|n| sanitize_replica_id(&n))
            })
            .unwrap_or_else(|| "kidp-broker".to_string())
    }

    /// The shard Leases' settings.
    pub fn lease_settings(&self) -> crate::actors::shards::LeaseSettings {
        let namespace = self
            .lease_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| "kidp-system".to_string());
        crate::actors::shards::LeaseSettings {
            namespace,
            duration: Duration::from_secs(self.lease_duration_seconds),
            renew_deadline: Duration::from_secs(self.lease_renew_deadline_seconds),
            retry: Duration::from_secs(self.lease_retry_seconds),
        }
    }

    /// The lifecycle's timings from the flags.
    pub fn lifecycle_settings(&self) -> crate::actors::LifecycleSettings {
        crate::actors::LifecycleSettings {
            provision_timeout: Duration::from_secs(self.provision_timeout_seconds),
            failure_grace: Duration::from_secs(self.failure_grace_seconds),
            callback_initial_backoff: Duration::from_millis(
                self.callback_initial_backoff_ms.max(1),
            ),
            callback_max_backoff: Duration::from_secs(self.callback_max_backoff_seconds.max(1)),
            delivery_lifetime: Duration::from_secs(self.callback_delivery_lifetime_seconds),
            ..Default::default()
        }
    }

    /// The price table: the defaults with any configured overrides.
    pub fn prices(&self) -> crate::domain::PriceTable {
        let d = crate::domain::PriceTable::default();
        crate::domain::PriceTable {
            vcpu_month: self.price_vcpu_month.unwrap_or(d.vcpu_month),
            memory_gib_month: self.price_memory_gib_month.unwrap_or(d.memory_gib_month),
            storage_gib_month: self.price_storage_gib_month.unwrap_or(d.storage_gib_month),
            backup_gib_month: self.price_backup_gib_month.unwrap_or(d.backup_gib_month),
        }
    }
}

/// Subcommands that print artefacts instead of serving.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Print the ManagedResource CRD as YAML (`kidp-broker crd | kubectl apply --server-side -f -`).
    Crd,
    /// Write the OpenAPI spec to `openapi/openapi.json` and `openapi/openapi.yaml` (or DIR).
    Openapi {
        /// Output directory.
        #[arg(default_value = "openapi")]
        dir: PathBuf,
    },
}

/// How log lines are written.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_are_checked_and_host_names_made_into_ones() {
        assert!(parse_replica_id("kidp-broker-7d9f-abc12").is_ok());
        assert!(parse_replica_id("Broker_1").is_err());
        assert!(parse_replica_id("-a").is_err());
        assert!(parse_replica_id("").is_err());
        assert!(parse_replica_id(&"a".repeat(64)).is_err());
        assert_eq!(
            sanitize_replica_id("Build_Host.example\n").as_deref(),
            Some("build-host.example")
        );
        assert_eq!(sanitize_replica_id("__").as_deref(), None);
        let long = format!("{}-", "b".repeat(62));
        assert_eq!(
            sanitize_replica_id(&format!("{long}x")).as_deref(),
            Some(&"b".repeat(62)[..])
        );
    }
}
