//! `kubesim --listen 127.0.0.1:PORT [--kubeconfig-out PATH]`: runs the simulator until SIGINT/SIGTERM.
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
    })
    .await?;
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
