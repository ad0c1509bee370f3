//! Start-up and shutdown: bind both ports, connect to the cluster (or start the embedded one for `--dev`), start
//! the caches, serve the API and the metrics port, and drain on the first SIGTERM/SIGINT.
//!
//! There is one shutdown path, [`Running::shutdown`], and it runs in dependency order: stop accepting and drain
//! in-flight requests (they read the reflector stores), stop the actors (they consume observed events), cancel
//! and await every background task (reflectors, event pump, exporters, usage poller), and only then stop the
//! embedded cluster that all of them talk to. No task is left detached, so nothing outlives the cluster and
//! logs errors about it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{EndpointExt, Route, Server, get, handler};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Args;
use crate::http;
use crate::k8s::{self, Cluster};
use crate::usecases::Broker;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open at once on the metrics port: Prometheus scrapes over one or two.
const METRICS_MAX_CONNECTIONS: usize = 64;

/// How long the actors get to stop; they write everything they owe to the cluster as they go, so stopping
/// loses nothing and should take milliseconds.
const ACTOR_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long cancelled background tasks get to end. They stop at their next await point, so this bound is only
/// reached by a bug, and then the shutdown says so rather than hangs.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running broker.
pub struct Running {
    /// Where the REST API listens.
    pub api_addr: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// With `--dev`: the embedded cluster.
    #[cfg(feature = "dev")]
    pub dev_cluster: Option<kubesim::KubeSim>,
    /// Cancelled first: the servers stop accepting and drain.
    stop_serving: CancellationToken,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    supervisor: ractor::ActorRef<crate::actors::SupervisorMsg>,
    /// Cancelled once the actors are gone: the coordinator hands its Leases back and ends.
    stop_coordinator: CancellationToken,
    coordinator: JoinHandle<()>,
    /// Cancelled once the Leases are handed back: every background task ends.
    stop_background: CancellationToken,
    background: TaskTracker,
}

impl Running {
    /// With `--dev`: the embedded cluster's kubeconfig.
    #[cfg(feature = "dev")]
    pub fn dev_kubeconfig(&self) -> Option<String> {
        self.dev_cluster.as_ref().map(|s| s.kubeconfig())
    }

    /// Stops accepting, lets in-flight requests finish (at most [`DRAIN_TIMEOUT`]), stops the actors, cancels and
    /// awaits every background task, then stops the embedded cluster.
    pub async fn shutdown(self) {
        self.stop_serving.cancel();
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "server ended with an error"),
                Err(e) => tracing::error!(error = %e, "server task failed"),
            }
        }
        // Everything the actors owe is in the cluster already, so stopping them loses nothing. The supervisor
        // first, so that it cannot respawn deployment actors it sees stopping; ractor does not stop a stopped
        // actor's children, so they are stopped next (a no-op if the supervisor already did).
        let _ = self
            .supervisor
            .stop_and_wait(None, Some(ACTOR_STOP_TIMEOUT))
            .await;
        self.supervisor
            .stop_children_and_wait(None, Some(ACTOR_STOP_TIMEOUT))
            .await;
        // No actor acts any more, so the shards can be handed to the other replicas at once.
        self.stop_coordinator.cancel();
        if tokio::time::timeout(BACKGROUND_STOP_TIMEOUT, self.coordinator)
            .await
            .is_err()
        {
            tracing::error!("the Leases were not handed back in time; they will expire");
        }
        self.stop_background.cancel();
        self.background.close();
        if tokio::time::timeout(BACKGROUND_STOP_TIMEOUT, self.background.wait())
            .await
            .is_err()
        {
            tracing::error!(
                left = self.background.len(),
                "background tasks did not stop within {}s",
                BACKGROUND_STOP_TIMEOUT.as_secs()
            );
        }
        #[cfg(feature = "dev")]
        if let Some(sim) = self.dev_cluster {
            sim.shutdown().await;
        }
        tracing::info!("shutdown complete");
    }
}

/// Binds one port; the error names the address and what it was for, so a clash is obvious from the log.
async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(impl Acceptor, SocketAddr)> {
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    Ok((acceptor, local))
}

/// The cluster the broker works against, and what follows from where it came from.
struct Target {
    client: kube::Client,
    create_namespaces: bool,
    install_crd: bool,
    encrypted_storage_class: Option<String>,
    /// The API server's URL (callbacks never go there).
    api_server: Option<String>,
    /// Whether callbacks may go to loopback addresses (`--dev`: a local receiver).
    loopback_callbacks: bool,
    #[cfg(feature = "dev")]
    dev_cluster: Option<kubesim::KubeSim>,
}

/// Connects to the configured cluster, or with `--dev` starts the embedded one.
async fn connect(args: &Args, replica: &str) -> anyhow::Result<Target> {
    #[cfg(feature = "dev")]
    if args.dev {
        return start_dev(args).await;
    }
    Ok(Target {
        client: Cluster::connect(args.kubeconfig.as_deref(), Some(replica)).await?,
        create_namespaces: args.create_namespaces,
        install_crd: args.install_crd,
        // An empty value means "none", so that the setting can be switched off through the environment.
        encrypted_storage_class: args
            .encrypted_storage_class
            .clone()
            .filter(|s| !s.is_empty()),
        api_server: Cluster::api_server(args.kubeconfig.as_deref()).await,
        loopback_callbacks: args.callback_allow_loopback,
        #[cfg(feature = "dev")]
        dev_cluster: None,
    })
}

/// `--dev`: the embedded cluster, set up like a platform team's (CRD, namespaces on demand, encrypted storage).
#[cfg(feature = "dev")]
async fn start_dev(args: &Args) -> anyhow::Result<Target> {
    tracing::warn!(
        "DEVELOPMENT MODE: serving against an embedded simulated cluster (kubesim); never expose this"
    );
    let real_pods = args.dev_real_pods.then(|| kubesim::realpods::Config {
        image_dir: args.dev_image_dir.clone(),
        state_dir: args.dev_kubelet_dir.clone(),
        pod_cidr: kubesim::realpods::PodCidr::default(),
        domain: "cluster.local".into(),
        keep_claims: false,
    });
    let dev = k8s::dev::start(
        args.dev_cluster_listen,
        args.dev_kubeconfig_out.as_deref(),
        real_pods,
    )
    .await?;
    tracing::info!(url = %dev.sim.url(), "embedded cluster started");
    if let Some(p) = &args.dev_kubeconfig_out {
        tracing::info!(
            "use it with: KUBECONFIG={} kubectl get managedresources -A",
            p.display()
        );
    }
    Ok(Target {
        client: dev.client,
        create_namespaces: true,
        install_crd: true,
        encrypted_storage_class: Some(
            args.encrypted_storage_class
                .clone()
                .unwrap_or_else(|| k8s::dev::DEV_ENCRYPTED_STORAGE_CLASS.to_string()),
        ),
        api_server: Some(dev.sim.url().to_string()),
        loopback_callbacks: true,
        dev_cluster: Some(dev.sim),
    })
}

/// Starts everything and returns once both ports accept connections.
pub async fn start(args: Args) -> anyhow::Result<Running> {
    // The ports first: a clash is a configuration error, reported before anything starts that would need
    // stopping again.
    let (api_acc, api_addr) = bind(args.listen, "REST API").await?;
    let (metrics_acc, metrics_addr) = bind(args.metrics_listen, "metrics").await?;
    // Then authentication, before any connection: a broker that would serve without it by mistake, or with a
    // malformed token file, must not start at all.
    let mut access = crate::auth::Access::from_args(&args)?;
    // And the TLS files, for the same reason.
    let peers = Arc::new(http::tls::PeerCertificates::default());
    let tls = http::tls::TlsFiles::from_args(&args);
    let serves_tls = tls.is_some();
    let api_acc = match tls {
        Some(files) => http::tls::ApiAcceptor::tls(api_acc, files, peers.clone())?,
        None => http::tls::ApiAcceptor::plain(api_acc),
    };
    let leases = args.lease_settings();
    leases
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid lease settings: {e}"))?;
    let replica = args.replica();
    let handle = crate::metrics::install();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let target = connect(&args, &replica).await?;
    access.connect(&target.client);
    match access.disabled_by() {
        Some(flag) => tracing::warn!(
            "serving WITHOUT AUTHENTICATION ({flag}): every caller may do everything in every namespace the namespace policy allows"
        ),
        None => tracing::info!("authentication required on /v1/"),
    }
    let encrypted_sc = target.encrypted_storage_class.clone();
    // The CRD first, so that the record watch finds its resource from the start.
    if target.install_crd {
        Cluster::install_crd(&target.client).await?;
        tracing::info!("ManagedResource CRD installed");
    }
    let api_server: Option<poem::http::Uri> =
        target.api_server.as_deref().and_then(|u| u.parse().ok());
    let stop_background = CancellationToken::new();
    let background = TaskTracker::new();
    // Should start-up fail from here on, the tasks already started end with it.
    let started = stop_background.clone().drop_guard();
    let cluster = Cluster::start(
        target.client,
        target.create_namespaces,
        &background,
        &stop_background,
    );
    let callbacks = crate::actors::CallbackPolicy {
        signing_secret: args
            .callback_signing_secret
            .clone()
            .filter(|s| !s.is_empty()),
        urls: crate::domain::CallbackUrlPolicy {
            allowed_hosts: args
                .callback_allowed_hosts
                .iter()
                .filter(|h| !h.is_empty())
                .cloned()
                .collect(),
            allow_link_local: args.callback_allow_link_local,
            allow_loopback: target.loopback_callbacks,
            refused_sockets: refused_sockets(&[api_addr, metrics_addr], api_server.as_ref()),
        },
    };
    let resolver = crate::actors::callback::CheckedResolver::new(callbacks.urls.clone());
    let lifecycle = Arc::new(crate::actors::Lifecycle {
        cluster: cluster.clone(),
        http: reqwest::Client::builder()
            .user_agent(concat!("kidp-broker/", env!("CARGO_PKG_VERSION")))
            // A callback is one POST to the URL the manager gave: a redirect could send it anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(resolver.clone())
            .build()?,
        resolver,
        callbacks: callbacks.clone(),
        timing: args.lifecycle_settings(),
        namespace_concurrency: args.namespace_concurrency,
        workload: k8s::workload::WorkloadOptions {
            image_registry: args.image_registry.clone().filter(|s| !s.is_empty()),
            cluster_domain: args.cluster_domain.clone(),
            encrypted_storage_class: encrypted_sc.clone(),
        },
        prices: args.prices(),
        resync: Duration::from_secs(args.resync_seconds.max(1)),
    });
    let supervisor = crate::actors::start(lifecycle, &background, &stop_background).await?;
    tracing::info!(replica = %replica, lease_namespace = %leases.namespace, "sharing the work through Leases");
    let coordination = crate::actors::shards::Coordination::new(replica, leases.renew_deadline);
    let stop_coordinator = CancellationToken::new();
    let coordinator = tokio::spawn(
        crate::actors::shards::Coordinator::new(
            cluster.clone(),
            supervisor.clone(),
            leases,
            coordination.clone(),
        )
        .run(stop_coordinator.clone()),
    );
    // Should start-up fail from here on, the coordinator stops too.
    let coordinator_started = stop_coordinator.clone().drop_guard();
    let usage = Arc::new(k8s::usage::UsageCache::default());
    background.spawn(k8s::usage::run(
        Arc::downgrade(&cluster),
        usage.clone(),
        stop_background.clone(),
    ));
    if let Some(file) = access.token_file() {
        background.spawn(file.watch(stop_background.clone()));
    }
    let state = Arc::new(Broker {
        access: Arc::new(access),
        usage,
        cluster,
        encrypted_storage_class: encrypted_sc,
        callbacks: callbacks.urls,
        prices: args.prices(),
        require_team: args.require_team,
        team_locks: Default::default(),
        coordination,
    });

    let stop_serving = CancellationToken::new();
    let audit_log = http::audit::AuditLog::open(args.audit_log.as_deref()).with_context(|| {
        format!(
            "cannot open the audit log {}",
            args.audit_log
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        )
    })?;
    let app = http::app(
        state,
        args.max_body_bytes,
        Arc::new(audit_log),
        http::limits::RequestLimits::from_args(&args),
        peers,
    );
    let conn_limits = http::conn::ConnectionLimits::from_args(&args);
    let api_acc = http::conn::GuardedAcceptor::new(api_acc, conn_limits, "api");
    // The metrics port has the same timeouts and its own, smaller pool: a scraper needs one connection.
    let metrics_acc = http::conn::GuardedAcceptor::new(
        metrics_acc,
        http::conn::ConnectionLimits {
            max_connections: METRICS_MAX_CONNECTIONS,
            ..conn_limits
        },
        "metrics",
    );
    let stop = stop_serving.clone();
    let api_task = tokio::spawn(async move {
        Server::new_with_acceptor(api_acc)
            .run_with_graceful_shutdown(app, stop.cancelled_owned(), Some(DRAIN_TIMEOUT))
            .await
    });
    let stop = stop_serving.clone();
    let metrics_app = Route::new()
        .at("/metrics", get(metrics_endpoint))
        .data(handle);
    let metrics_task = tokio::spawn(async move {
        Server::new_with_acceptor(metrics_acc)
            .run_with_graceful_shutdown(metrics_app, stop.cancelled_owned(), Some(DRAIN_TIMEOUT))
            .await
    });
    tracing::info!(%api_addr, %metrics_addr, tls = serves_tls, "kidp-broker serving");
    started.disarm();
    coordinator_started.disarm();
    Ok(Running {
        api_addr,
        metrics_addr,
        #[cfg(feature = "dev")]
        dev_cluster: target.dev_cluster,
        stop_serving,
        servers: vec![api_task, metrics_task],
        supervisor,
        stop_coordinator,
        coordinator,
        stop_background,
        background,
    })
}

/// Sockets no callback may reach: the broker's own listeners and the Kubernetes API server.
fn refused_sockets(own: &[SocketAddr], api_server: Option<&poem::http::Uri>) -> Vec<SocketAddr> {
    let mut refused = own.to_vec();
    if let Some(api_server) = api_server
        && let Some(ip) = api_server
            .host()
            .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
    {
        let port = api_server
            .port_u16()
            .unwrap_or(if api_server.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        refused.push(SocketAddr::new(ip, port));
    }
    refused
}

#[handler]
fn metrics_endpoint(
    handle: poem::web::Data<&metrics_exporter_prometheus::PrometheusHandle>,
) -> poem::Response {
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// Serves until SIGTERM or SIGINT; a second signal aborts the drain.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let running = start(args).await?;
    wait_for_signal().await;
    tracing::info!("shutdown signal received; draining (send it again to abort)");
    tokio::select! {
        _ = running.shutdown() => {}
        _ = wait_for_signal() => tracing::warn!("second signal: aborting"),
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
