//! Start-up and shutdown: connect to the cluster (or start the embedded one for `--dev`), start the caches,
//! serve the API and the metrics port, and drain on the first SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{EndpointExt, Route, Server, get, handler};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Args;
use crate::http;
use crate::k8s::{self, Cluster};
use crate::usecases::Broker;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running broker.
pub struct Running {
    /// Where the REST API listens.
    pub api_addr: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// With `--dev`: the embedded cluster.
    pub dev_cluster: Option<kubesim::KubeSim>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    supervisor: ractor::ActorRef<crate::actors::SupervisorMsg>,
}

impl Running {
    /// With `--dev`: the embedded cluster's kubeconfig.
    pub fn dev_kubeconfig(&self) -> Option<String> {
        self.dev_cluster.as_ref().map(|s| s.kubeconfig())
    }

    /// Stops accepting, lets in-flight requests finish, then stops the embedded cluster.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // Deployment actors stop with their supervisor; everything they owe is in the cluster already.
        let _ = self
            .supervisor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        if let Some(sim) = self.dev_cluster {
            sim.shutdown().await;
        }
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<(impl Acceptor, SocketAddr)> {
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    Ok((acceptor, local))
}

/// Starts everything and returns once both ports accept connections.
pub async fn start(args: Args) -> anyhow::Result<Running> {
    let handle = crate::metrics::install();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut dev_cluster = None;
    let (client, create_namespaces, encrypted_sc) = if args.dev {
        tracing::warn!(
            "DEVELOPMENT MODE: serving WITHOUT AUTHENTICATION against an embedded simulated cluster (kubesim); never expose this"
        );
        let dev =
            k8s::dev::start(args.dev_cluster_listen, args.dev_kubeconfig_out.as_deref()).await?;
        tracing::info!(url = %dev.sim.url(), "embedded cluster started");
        if let Some(p) = &args.dev_kubeconfig_out {
            tracing::info!(
                "use it with: KUBECONFIG={} kubectl get managedresources -A",
                p.display()
            );
        }
        let client = dev.client.clone();
        dev_cluster = Some(dev.sim);
        (
            client,
            true,
            Some(
                args.encrypted_storage_class
                    .clone()
                    .unwrap_or_else(|| k8s::dev::DEV_ENCRYPTED_STORAGE_CLASS.to_string()),
            ),
        )
    } else {
        (
            Cluster::connect(args.kubeconfig.as_deref()).await?,
            args.create_namespaces,
            // An empty value means "none", so that the setting can be switched off through the environment.
            args.encrypted_storage_class
                .clone()
                .filter(|s| !s.is_empty()),
        )
    };
    // The CRD first, so that the record watch finds its resource from the start.
    if args.dev || args.install_crd {
        Cluster::install_crd(&client).await?;
        tracing::info!("ManagedResource CRD installed");
    }
    let api_server: Option<poem::http::Uri> = match &dev_cluster {
        Some(sim) => Some(sim.url().to_string()),
        None => Cluster::api_server(args.kubeconfig.as_deref()).await,
    }
    .and_then(|u| u.parse().ok());
    let cluster = Cluster::start(client, create_namespaces);
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
            allow_loopback: args.callback_allow_loopback || args.dev,
            refused_sockets: refused_sockets(&args, api_server.as_ref()),
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
    let supervisor = crate::actors::start(lifecycle).await?;
    let usage = Arc::new(k8s::usage::UsageCache::default());
    tokio::spawn(k8s::usage::run(Arc::downgrade(&cluster), usage.clone()));
    let state = Arc::new(Broker {
        usage,
        cluster,
        encrypted_storage_class: encrypted_sc,
        callbacks: callbacks.urls,
        prices: args.prices(),
    });

    let (tx, rx) = watch::channel(false);
    let (api_acc, api_addr) = bind(args.listen).await?;
    let (metrics_acc, metrics_addr) = bind(args.metrics_listen).await?;
    let app = http::app(state, args.max_body_bytes);
    let mut stop = rx.clone();
    let api_task = tokio::spawn(async move {
        Server::new_with_acceptor(api_acc)
            .run_with_graceful_shutdown(
                app,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
                Some(DRAIN_TIMEOUT),
            )
            .await
    });
    let mut stop = rx.clone();
    let metrics_app = Route::new()
        .at("/metrics", get(metrics_endpoint))
        .data(handle);
    let metrics_task = tokio::spawn(async move {
        Server::new_with_acceptor(metrics_acc)
            .run_with_graceful_shutdown(
                metrics_app,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
                Some(DRAIN_TIMEOUT),
            )
            .await
    });
    tracing::info!(%api_addr, %metrics_addr, "kidp-broker serving");
    Ok(Running {
        api_addr,
        metrics_addr,
        dev_cluster,
        shutdown: tx,
        tasks: vec![api_task, metrics_task],
        supervisor,
    })
}

/// Sockets no callback may reach: the broker's own listeners and the Kubernetes API server.
fn refused_sockets(args: &Args, api_server: Option<&poem::http::Uri>) -> Vec<SocketAddr> {
    let mut refused = vec![args.listen, args.metrics_listen];
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
