//! `kubesim --listen 127.0.0.1:PORT [--kubeconfig-out PATH] [--data-file PATH] [--token-file PATH]
//! [--authorization always-allow|rbac]`: runs the simulator until SIGINT/SIGTERM.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// A Kubernetes API server simulator for tests and local development.
#[derive(Parser, Debug)]
#[command(name = "kubesim", version)]
struct Args {
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
    let args = Args::parse();
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
