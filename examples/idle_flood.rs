//! Idle-connection flood: prints figures, asserts nothing about speed.
//!
//! Starts kubesim and the broker in this process (default limits, rate limiting off), then opens
//! `KIDP_FLOOD_CONNECTIONS` (default 19,000: under the 20,000 open files this machine allows one process, which
//! holds both ends here) idle TCP connections to the API port, probing `/health` on a new connection every 100 ms
//! throughout, and reports the probes' latency, how many of the idle connections the broker kept, and the
//! process's resident memory before, during and after (client and server share it, so it is an upper bound for
//! the broker). Run with `cargo run --example idle_flood` (the figures in the README are from that debug build).

use std::time::{Duration, Instant};

use clap::Parser as _;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn summary(mut ms: Vec<f64>) -> String {
    if ms.is_empty() {
        return "no probes".into();
    }
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!(
        "{} probes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms.len(),
        p(0.5),
        p(0.99),
        ms[ms.len() - 1]
    )
}

/// Probes `/health` on a new connection every 100 ms until `stop` or `max` probes; latencies in ms (failures
/// as infinity).
async fn probe(
    url: String,
    stop: tokio_util::sync::CancellationToken,
    max: Option<usize>,
) -> Vec<f64> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !stop.is_cancelled() && max.is_none_or(|m| out.len() < m) {
        tick.tick().await;
        // A new client per probe: a kubelet probe opens a new connection every time.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let started = Instant::now();
        let ok = matches!(client.get(&url).send().await, Ok(r) if r.status() == 200);
        out.push(if ok {
            started.elapsed().as_secs_f64() * 1000.0
        } else {
            f64::INFINITY
        });
    }
    out
}

/// The broker's `broker_open_connections{listener="api"}`.
async fn open_api_connections(metrics_url: &str) -> Option<f64> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with("broker_open_connections") && l.contains("listener=\"api\""))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("KIDP_FLOOD_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19_000);
    let sim = kubesim::start(kubesim::Options::default()).await?;
    let dir = std::env::temp_dir().join(format!("kidp-idle-flood-{}", sim.addr().port()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig())?;
    let args = kidp_broker::config::Args::parse_from([
        "kidp-broker",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--create-namespaces",
        "--insecure-no-auth",
        "--install-crd",
        "--rate-limit-per-minute",
        "0",
    ]);
    let broker = kidp_broker::start(args).await?;
    let addr = broker.api_addr;
    let url = format!("http://{addr}/health");
    println!("idle-connection flood: {n} connections to {addr}, default connection limits");
    println!("  rss before                 {:7.1} MiB", rss_mib());

    let stop = tokio_util::sync::CancellationToken::new();
    let prober = tokio::spawn(probe(url.clone(), stop.clone(), None));
    let started = Instant::now();
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(addr).await {
            Ok(s) => idle.push(s),
            Err(e) => {
                println!("  connect failed after {} connections: {e}", idle.len());
                break;
            }
        }
    }
    println!(
        "  opened {} connections in {:.1} s",
        idle.len(),
        started.elapsed().as_secs_f64()
    );
    println!("  rss with them open         {:7.1} MiB", rss_mib());
    stop.cancel();
    println!("  /health during the flood   {}", summary(prober.await?));
    let settled = probe(
        url.clone(),
        tokio_util::sync::CancellationToken::new(),
        Some(20),
    )
    .await;
    println!("  /health with them open     {}", summary(settled));
    let kept = futures::future::join_all(idle.iter_mut().map(|s| async {
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut b))
            .await
            .is_err()
    }))
    .await
    .into_iter()
    .filter(|open| *open)
    .count();
    println!("  still open at the broker   {kept} of {}", idle.len());
    drop(idle);
    // Measure again once the broker has seen every close (its gauge of open API connections is back near 0).
    let metrics = format!("http://{}/metrics", broker.metrics_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_api_connections(&metrics).await.is_none_or(|n| n > 1.0) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("  rss after closing them     {:7.1} MiB", rss_mib());
    broker.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
