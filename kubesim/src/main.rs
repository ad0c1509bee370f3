//! `kubesim --listen 127.0.0.1:PORT [--kubeconfig-out PATH] [--data-file PATH] [--token-file PATH]
//! [--authorization always-allow|rbac]`: runs the simulator until SIGINT/SIGTERM.
//!
//! `kubesim images build --out DIR [ENGINE…]` builds local engine images; `kubesim images run` runs one container
//! of them under runc; `kubesim host-check` says what real containers need of this host.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A Kubernetes API server simulator for tests and local development.
#[derive(Parser, Debug)]
#[command(name = "kubesim", version)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: Serve,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Local container images of the engines Debian packages.
    #[command(subcommand)]
    Images(ImagesCmd),
    /// Checks what real containers need of this host (root, runc, overlayfs, cgroups, ip, iptables).
    HostCheck,
}

#[derive(Subcommand, Debug)]
enum ImagesCmd {
    /// Builds (or reuses) the images of ENGINEs (all when none is named) under --out, with a manifest.
    Build {
        #[arg(long)]
        out: PathBuf,
        /// The Debian mirror for debootstrap and apt.
        #[arg(long, default_value = kubesim::images::DEFAULT_MIRROR)]
        mirror: String,
        engines: Vec<String>,
    },
    /// Runs one container of a local image in the foreground (host network) until it exits or a signal stops it.
    Run {
        #[arg(long)]
        image_dir: PathBuf,
        /// The container's name (its runc id).
        #[arg(long, default_value = "kubesim-run")]
        name: String,
        /// `KEY=VALUE`, repeatable.
        #[arg(long = "env")]
        env: Vec<String>,
        /// `HOST_DIR:CONTAINER_PATH[:ro]`, repeatable.
        #[arg(long = "volume")]
        volumes: Vec<String>,
        /// A memory limit in bytes.
        #[arg(long)]
        memory: Option<i64>,
        /// Where the bundle and the log go.
        #[arg(long, default_value = "/run/kubesim/containers")]
        state_dir: PathBuf,
        /// The image reference, e.g. postgres:15.
        image: String,
        /// Replaces the image's default command (as a pod's `args`).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct Serve {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "KUBESIM_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at this server here.
    #[arg(long, env = "KUBESIM_KUBECONFIG_OUT")]
    kubeconfig_out: Option<PathBuf>,
    /// Changes kept for watches to resume from; older resourceVersions get 410 Expired.
    #[arg(long, env = "KUBESIM_HISTORY", default_value_t = 100_000)]
    history: usize,
    /// Seconds between BOOKMARK events on idle watches that allow them.
    #[arg(long, env = "KUBESIM_BOOKMARK_INTERVAL", default_value_t = 60)]
    bookmark_interval: u64,
    /// Keep the store in this file across restarts (loaded at start, written after changes and at shutdown).
    #[arg(long, env = "KUBESIM_DATA_FILE")]
    data_file: Option<PathBuf>,
    /// Token file answering TokenReview and SubjectAccessReview; without it every review is denied.
    #[arg(long, env = "KUBESIM_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A rule granted to system:anonymous, e.g. 'verbs=get,list;resources=pods;namespaces=team-*'; repeatable.
    #[arg(long)]
    anonymous_allow: Vec<String>,
    /// How requests are authorized: always-allow, or rbac (the stored Roles and bindings decide; the
    /// kubeconfig written by --kubeconfig-out carries the admin token, whose user is in system:masters).
    #[arg(long, env = "KUBESIM_AUTHORIZATION", default_value = "always-allow")]
    authorization: kubesim::Authorization,
    /// How long continue tokens of paginated lists stay valid, e.g. 5m or 30s (then 410 Expired, as after an
    /// etcd compaction).
    #[arg(long, env = "KUBESIM_CONTINUE_TTL", default_value = "5m", value_parser = parse_delay)]
    continue_ttl: Duration,
    /// How long Events live after they were last written, e.g. 60m or 3600s.
    #[arg(long, env = "KUBESIM_EVENT_TTL", default_value = "60m", value_parser = parse_delay)]
    event_ttl: Duration,
    /// Serve HTTPS with kubesim's own certificate; the kubeconfig written trusts its CA. kubectl sends tokens
    /// only over TLS, so use this with --authorization rbac.
    #[arg(long, env = "KUBESIM_TLS")]
    tls: bool,
    /// The admin user's bearer token (default: kubesim-admin-token, which is no secret).
    #[arg(long, env = "KUBESIM_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// How long pods take to become Running and Ready, e.g. 1s or 200ms (jitter of up to half again is added).
    #[arg(long, env = "KUBESIM_READY_DELAY", default_value = "1s", value_parser = parse_delay)]
    ready_delay: Duration,
    /// How pods run: `simulated` (kwok-like, the default) or `containers` (real containers under runc on the
    /// images of `kubesim images build`; needs root and runc: see `kubesim host-check`).
    #[arg(long, env = "KUBESIM_KUBELET", default_value = "simulated", value_parser = ["simulated", "containers"])]
    kubelet: String,
    /// With --kubelet containers: where `kubesim images build --out` put the images.
    #[arg(
        long,
        env = "KUBESIM_IMAGE_DIR",
        default_value = "/var/cache/kubesim/images"
    )]
    image_dir: PathBuf,
    /// With --kubelet containers: where pods' volumes, containers and logs and the claims' data live.
    #[arg(long, env = "KUBESIM_KUBELET_DIR", default_value = "/var/lib/kubesim")]
    kubelet_dir: PathBuf,
    /// The pod CIDR (a /16) pod IPs come from; with --kubelet containers its first address is the bridge's,
    /// the pods' gateway and their DNS server.
    #[arg(long, env = "KUBESIM_POD_CIDR", default_value = "10.244.0.0/16")]
    pod_cidr: kubesim::realpods::PodCidr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kubesim=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Args { cmd, serve: args } = Args::parse();
    match cmd {
        Some(Cmd::HostCheck) => return host_check().await,
        Some(Cmd::Images(c)) => return images(c).await,
        None => {}
    }
    let keep_claims = args.data_file.is_some();
    let sim = kubesim::start(kubesim::Options {
        listen: args.listen,
        history: args.history,
        bookmark_interval: Duration::from_secs(args.bookmark_interval.max(1)),
        token_file: args.token_file,
        anonymous_allow: args.anonymous_allow,
        data_file: args.data_file,
        ready_delay: args.ready_delay,
        authorization: args.authorization,
        admin_token: args.admin_token,
        tls: args.tls,
        continue_ttl: args.continue_ttl,
        event_ttl: args.event_ttl,
        pod_cidr: args.pod_cidr,
        real_pods: (args.kubelet == "containers").then(|| kubesim::realpods::Config {
            image_dir: args.image_dir.clone(),
            state_dir: args.kubelet_dir.clone(),
            pod_cidr: args.pod_cidr,
            domain: "cluster.local".into(),
            keep_claims,
        }),
        audit: false,
    })
    .await?;
    if args.authorization == kubesim::Authorization::Rbac && !args.tls {
        eprintln!(
            "note: kubectl sends credentials only over TLS; without --tls it is system:anonymous here"
        );
    }
    if let Some(p) = &args.kubeconfig_out {
        std::fs::write(p, sim.kubeconfig())?;
        eprintln!("kubeconfig written to {}", p.display());
    }
    println!("{}", sim.url());
    wait_for_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn host_check() -> anyhow::Result<()> {
    let checks = kubesim::oci::host_check().await;
    for c in &checks {
        println!(
            "{:<10} {:<4} {}",
            c.name,
            if c.ok { "ok" } else { "FAIL" },
            c.detail
        );
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    if !failed.is_empty() {
        eprintln!(
            "this host cannot run real containers: {} missing",
            failed.join(", ")
        );
        std::process::exit(1);
    }
    Ok(())
}

async fn images(c: ImagesCmd) -> anyhow::Result<()> {
    match c {
        ImagesCmd::Build {
            out,
            mirror,
            engines,
        } => {
            let started = std::time::Instant::now();
            let m = tokio::task::spawn_blocking(move || {
                kubesim::images::build(&out, &engines, &mirror, &mut |line| {
                    eprintln!("images: {line}")
                })
            })
            .await?
            .map_err(anyhow::Error::msg)?;
            eprintln!(
                "images: {} references in the manifest, built in {:.1}s",
                m.images.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        ImagesCmd::Run {
            image_dir,
            name,
            env,
            volumes,
            memory,
            state_dir,
            image,
            args,
        } => {
            let manifest =
                kubesim::images::Manifest::load(&image_dir).map_err(anyhow::Error::msg)?;
            let dir = match manifest.resolve(&image_dir, &image) {
                kubesim::images::Resolved::Local(d) => d,
                kubesim::images::Resolved::Simulated => {
                    anyhow::bail!("{image} has no local image: pods of it stay simulated")
                }
                kubesim::images::Resolved::Unknown(m) => anyhow::bail!(m),
            };
            let env = env
                .iter()
                .map(|e| {
                    e.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| anyhow::anyhow!("--env {e:?} is not KEY=VALUE"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mounts = volumes
                .iter()
                .map(|v| {
                    let parts: Vec<&str> = v.split(':').collect();
                    match parts.as_slice() {
                        [src, dst] | [src, dst, "rw"] => Ok((src, dst, false)),
                        [src, dst, "ro"] => Ok((src, dst, true)),
                        _ => Err(anyhow::anyhow!("--volume {v:?} is not HOST:PATH[:ro]")),
                    }
                    .map(|(src, dst, ro)| kubesim::oci::Mount {
                        source: PathBuf::from(src),
                        destination: dst.to_string(),
                        readonly: ro,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            std::fs::create_dir_all(&state_dir)?;
            let spec = kubesim::oci::RunSpec {
                id: name.clone(),
                image_dir: dir,
                state_dir,
                args: (!args.is_empty()).then_some(args),
                env,
                mounts,
                hostname: name,
                memory_limit_bytes: memory,
                ..Default::default()
            };
            let mut running = kubesim::oci::start(&spec)
                .await
                .map_err(anyhow::Error::msg)?;
            eprintln!(
                "images: {} started; its output goes to {}",
                running.id,
                running.log.display()
            );
            let code = tokio::select! {
                code = running.wait() => {
                    running.remove().await;
                    code
                }
                _ = wait_for_signal() => running.stop(Duration::from_secs(10)).await,
            };
            eprintln!("images: {} exited with code {code}", spec.id);
            std::process::exit(code);
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `250ms`, `1.5s` or a bare number of seconds.
fn parse_delay(v: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else {
        (v.strip_suffix('s').unwrap_or(v), 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n >= 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!("{v:?} is not a duration such as 250ms, 1.5s or 5m")),
    }
}
