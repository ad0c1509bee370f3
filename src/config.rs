//! Command-line and environment configuration: every flag has a `KIDP_…` environment variable and a default.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    #[arg(long, env = "KIDP_DEV", default_value_t = false)]
    pub dev: bool,

    /// With --dev: where the embedded cluster listens.
    #[arg(long, env = "KIDP_DEV_CLUSTER_LISTEN", default_value = "127.0.0.1:0")]
    pub dev_cluster_listen: SocketAddr,

    /// With --dev: write the embedded cluster's kubeconfig here (for kubectl).
    #[arg(long, env = "KIDP_DEV_KUBECONFIG_OUT")]
    pub dev_kubeconfig_out: Option<PathBuf>,

    /// A StorageClass that encrypts volumes at rest; requests with `encryption.atRest: true` are refused
    /// when none is configured. `--dev` installs and uses `kidp-encrypted`.
    #[arg(long, env = "KIDP_ENCRYPTED_STORAGE_CLASS")]
    pub encrypted_storage_class: Option<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "KIDP_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
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
