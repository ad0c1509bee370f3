//! kubesim: a Kubernetes API server over real HTTP/1.1, with a real store, for tests and `kidp-broker --dev`.
//!
//! Real clients (kube-rs, kube-runtime, kubectl) talk to it as to a cluster; see `../shared/kube-wire.md` for the
//! wire contract it follows. The map of the crate:
//!
//! - [`start`] / [`KubeSim`]: run a server, get its URL and a kubeconfig, shut it down.
//! - `server`: routing, content negotiation and the verbs; `watch`: watch streams; `scale`: the scale subresource.
//! - `store`: objects, resourceVersions, the change log, garbage collection and namespace/CRD finalization.
//! - `registry`: built-in kinds and CRD-defined resources; `discovery`: discovery and OpenAPI documents.
//! - `fieldmanager`: server-side apply and managedFields; `patch`: JSON, merge and strategic merge patches;
//!   `listmeta`: which lists merge by key.
//! - `selector`: label and field selectors; `table`: `kubectl get` tables; `defaults`, `validate`: per-kind rules.
//! - `controllers`: StatefulSet, Deployment/ReplicaSet, Job, CronJob, PVC binding, PDB status, and the
//!   scheduler and kwok-like kubelet of the one node, with pod faults from `kube-system/kubesim-faults`.
//! - `authn`: bearer tokens (admin, token file, ServiceAccount tokens from TokenRequest) and impersonation;
//!   `rbac`: request attributes, the RBAC authorizer and the bootstrap roles; `reviews`: the token file and the
//!   token and access reviews;
//! - [`images`]: local engine images built from Debian packages; [`oci`]: one container of them under runc;
//!   [`realpods`]: the container kubelet (`--kubelet containers`): pods as runc containers with their own
//!   network, volumes, probes, restarts and logs, and the cluster DNS;
//! - `metrics_api`: metrics.k8s.io PodMetrics/NodeMetrics; `faults`: API faults from the `kube-system/kubesim-faults` ConfigMap; `persist`: `--data-file`.
#![forbid(unsafe_code)]

mod apierror;
mod audit;
mod authn;
mod controllers;
mod defaults;
mod discovery;
mod faults;
mod fieldmanager;
pub mod images;
mod listmeta;
mod meta;
mod metrics_api;
pub mod oci;
mod patch;
mod persist;
mod podlog;
mod protobuf;
mod rbac;
pub mod realpods;
mod registry;
mod reviews;
mod scale;
mod schemas;
mod selector;
mod server;
mod store;
mod table;
mod tls;
mod validate;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

/// How to run a kubesim server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How many changes the log keeps for watches to resume from; older resourceVersions get 410 Expired.
    pub history: usize,
    /// How often an idle watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Token file that TokenReviews and SubjectAccessReviews are answered from (format in `README`); without
    /// one every token is unknown and every access denied, except what `anonymous_allow` grants.
    pub token_file: Option<PathBuf>,
    /// Rules granted to `system:anonymous`, each as `verbs=get,list;resources=pods;namespaces=team-*` (omitted
    /// keys match everything; `*` alone allows every resource request). Added to the token file's `anonymous:`.
    pub anonymous_allow: Vec<String>,
    /// Keep the store in this file: loaded at start when it exists, written shortly after changes and at shutdown.
    pub data_file: Option<PathBuf>,
    /// How long a pod takes from admission to Running and Ready (plus up to half again as jitter).
    pub ready_delay: Duration,
    /// How long the continue tokens of a paginated list stay valid; after it they get 410 Expired with a token that
    /// resumes the list inconsistently, as upstream's do once etcd compacts (every five minutes by default).
    pub continue_ttl: Duration,
    /// How long an Event lives after it was last written (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
    /// How requests are authorized: every request allowed (the default), or by RBAC.
    pub authorization: Authorization,
    /// Serve HTTPS with kubesim's own certificate (for `localhost`, `127.0.0.1`, `::1` and the in-cluster
    /// names), signed by the CA in [`KubeSim::kubeconfig`] and in every namespace's `kube-root-ca.crt`. kubectl
    /// sends tokens only over TLS, so RBAC with kubectl needs this.
    pub tls: bool,
    /// The bearer token of the admin user (`kubesim-admin`, group `system:masters`) that [`KubeSim::kubeconfig`]
    /// carries; [`DEFAULT_ADMIN_TOKEN`] when not given, so that a kubeconfig keeps working across restarts (like
    /// the fixed CA, it is no secret: set one for a kubesim others can reach).
    pub admin_token: Option<String>,
    /// The pod CIDR (a /16) pod IPs come from; the bridge of real pods holds its first address.
    pub pod_cidr: realpods::PodCidr,
    /// Run pods as real containers (`--kubelet containers`) with this setup; `None` keeps the simulated
    /// kubelet.
    pub real_pods: Option<realpods::Config>,
    /// Record every authorization decision (who, what, allowed) for [`KubeSim::audit`]; only requests that
    /// are authorized (`authorization` other than AlwaysAllow) are decided.
    pub audit: bool,
}

pub use audit::AuditEntry;

/// The admin token when none is given.
pub const DEFAULT_ADMIN_TOKEN: &str = "kubesim-admin-token";

/// `--authorization`: how kubesim decides whether a request may proceed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Authorization {
    /// Every request that authenticates (or comes without credentials) is allowed; SubjectAccessReviews are
    /// answered from the token file's rules.
    #[default]
    AlwaysAllow,
    /// The RBAC authorizer over the stored Roles, ClusterRoles and bindings decides, then the token file's
    /// rules; SubjectAccessReviews are answered the same way.
    Rbac,
}

impl std::str::FromStr for Authorization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always-allow" | "AlwaysAllow" => Ok(Authorization::AlwaysAllow),
            "rbac" | "RBAC" => Ok(Authorization::Rbac),
            other => Err(format!(
                "unknown authorization mode {other:?} (always-allow, rbac)"
            )),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            // Enough to ride out a burst of a few thousand objects being created while a watcher reconnects,
            // like etcd's five-minute compaction window in a busy small cluster.
            history: 100_000,
            // Upstream sends bookmarks about once a minute.
            bookmark_interval: Duration::from_secs(60),
            token_file: None,
            anonymous_allow: vec![],
            data_file: None,
            // About what a small image takes to start on a warm node; short enough for an interactive --dev.
            ready_delay: Duration::from_secs(1),
            continue_ttl: Duration::from_secs(300),
            event_ttl: Duration::from_secs(3600),
            authorization: Authorization::AlwaysAllow,
            admin_token: None,
            tls: false,
            pod_cidr: realpods::PodCidr::default(),
            real_pods: None,
            audit: false,
        }
    }
}

/// A running kubesim server.
pub struct KubeSim {
    addr: SocketAddr,
    shutdown: tokio_watch::Sender<bool>,
    server: JoinHandle<()>,
    store: Arc<store::Store>,
    persister: Option<persist::Persister>,
    admin_token: String,
    tls: bool,
    runtime: Option<Arc<realpods::Runtime>>,
    audit: Option<Arc<audit::AuditLog>>,
}

/// Starts a server and returns once it accepts connections.
pub async fn start(opts: Options) -> std::io::Result<KubeSim> {
    let reviews = reviews::ReviewPolicy::load(opts.token_file.as_deref(), &opts.anonymous_allow)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let store = match &opts.data_file {
        Some(path) => persist::open(path, opts.history)?,
        None => store::Store::new(opts.history),
    };
    let listener = TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio_watch::channel(false);
    let admin_token = opts
        .admin_token
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_TOKEN.to_string());
    let real = match &opts.real_pods {
        Some(cfg) => Some(
            realpods::Runtime::start(cfg.clone(), store.clone(), rx.clone())
                .await
                .map_err(std::io::Error::other)?,
        ),
        None => None,
    };
    let runtime = real.as_ref().map(|(r, _)| r.clone());
    let mut ctx = server::Ctx::new(store.clone(), rx.clone(), opts.bookmark_interval);
    ctx.continue_ttl = opts.continue_ttl;
    ctx.runtime = runtime.clone();
    let audit_log = opts.audit.then(|| Arc::new(audit::AuditLog::default()));
    ctx.audit = audit_log.clone();
    let ctx = Arc::new(ctx.with_reviews(reviews).with_auth(
        authn::Authenticator::new(admin_token.clone()),
        opts.authorization,
    ));
    tokio::spawn(store.clone().run_gc(rx.clone()));
    controllers::spawn(store.clone(), rx.clone(), &opts, real);
    let persister = opts
        .data_file
        .clone()
        .map(|path| persist::Persister::spawn(store.clone(), path, rx.clone()));
    let acceptor = if opts.tls {
        Some(tls::acceptor().map_err(std::io::Error::other)?)
    } else {
        None
    };
    let server = tokio::spawn(serve(listener, ctx, rx, acceptor));
    Ok(KubeSim {
        addr,
        shutdown: tx,
        server,
        store,
        persister,
        admin_token,
        tls: opts.tls,
        runtime,
        audit: audit_log,
    })
}

async fn serve(
    listener: TcpListener,
    ctx: Arc<server::Ctx>,
    mut shutdown: tokio_watch::Receiver<bool>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                let svc = hyper::service::service_fn(move |req| server::handle(ctx.clone(), req));
                let watcher = graceful.watcher();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), svc)).await;
                        }
                        Some(a) => {
                            // A client that never finishes its handshake must not hold a task forever.
                            let tls = tokio::time::timeout(Duration::from_secs(10), a.accept(stream)).await;
                            let Ok(Ok(tls)) = tls else {
                                tracing::debug!("TLS handshake failed or timed out");
                                return;
                            };
                            let _ = watcher.watch(http.serve_connection(TokioIo::new(tls), svc)).await;
                        }
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Watch streams end on the same signal, so in-flight requests finish quickly; do not wait forever on a stuck peer.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

impl KubeSim {
    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:41235` (`https://` with `tls`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// A kubeconfig (YAML) pointing at this server, as the admin user (`system:masters`); with `tls`, it trusts
    /// kubesim's CA.
    pub fn kubeconfig(&self) -> String {
        let mut k = kubeconfig_with_token(&self.url(), Some(&self.admin_token));
        if self.tls {
            use base64::Engine;
            let ca = base64::engine::general_purpose::STANDARD.encode(tls::CA_PEM);
            k = k.replacen(
                "    server: ",
                &format!("    certificate-authority-data: {ca}\n    server: "),
                1,
            );
        }
        k
    }

    /// kubesim's CA certificate (PEM), which signs its serving certificate.
    pub fn ca_pem(&self) -> &'static str {
        tls::CA_PEM
    }

    /// The admin user's bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Every authorization decision so far, oldest first (empty unless started with `Options::audit`).
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.audit.as_ref().map(|a| a.entries()).unwrap_or_default()
    }

    /// Number of objects stored (for benchmarks and diagnostics).
    pub fn object_count(&self) -> usize {
        self.store.lock().object_count()
    }

    /// Stops accepting connections, ends watch streams and waits for the server to finish; with a data file,
    /// writes the final state to it.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if let Some(rt) = &self.runtime {
            // Containers stop as on a node drain, each within its grace period, capped so that a stop stays quick.
            rt.shutdown(Duration::from_secs(10)).await;
        }
        if let Some(p) = self.persister {
            p.finish(&self.store).await;
        }
    }
}

/// A kubeconfig for a kubesim at `url` without credentials (`system:anonymous`: enough when every request is
/// allowed).
pub fn kubeconfig_for(url: &str) -> String {
    kubeconfig_with_token(url, None)
}

/// A kubeconfig for a kubesim at `url` whose user sends `token`.
pub fn kubeconfig_with_token(url: &str, token: Option<&str>) -> String {
    let user = match token {
        Some(t) => format!("\n    token: {t}"),
        None => " {}".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {url}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user:{user}\npreferences: {{}}\n"
    )
}
