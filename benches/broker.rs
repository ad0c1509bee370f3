//! Broker benchmark: prints figures, asserts nothing about speed.
//!
//! Runs the broker as its own process (so its resident memory is its own) against kubesim and a callback
//! receiver in this process, provisions deployments in waves and reports: Kubernetes API requests and wall time
//! per provision, broker memory after each wave, TCP connections from the broker to the API server, and the
//! latency from a StatefulSet becoming Ready in kubesim to the Ready callback arriving (p50/p99).
//! Sizes: `KIDP_BENCH_WAVES` (default "1000,10000": cumulative deployment counts), `KIDP_BENCH_NAMESPACES`
//! (default 100). Run with `cargo bench --bench broker`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::watcher;
use serde_json::json;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Established TCP connections to `port` on loopback (the broker is kubesim's only other client here).
fn connections_to(port: u16) -> usize {
    let hex = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[2].ends_with(&hex) && cols[3] == "01"
        })
        .count()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn kube_requests(http: &reqwest::Client, metrics: &str) -> f64 {
    let text = http
        .get(metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("broker_kubernetes_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let waves: Vec<usize> = std::env::var("KIDP_BENCH_WAVES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let namespaces: usize = std::env::var("KIDP_BENCH_NAMESPACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);

    // kubesim in this process (its memory is not the broker's); the broker runs as its own process.
    let sim = kubesim::start(kubesim::Options {
        ready_delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .expect("kubesim");
    let sim_port = sim.addr().port();
    let sim_url = sim.url();
    let dir = std::env::temp_dir().join(format!("kidp-bench-{sim_port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, kubesim::kubeconfig_for(&sim_url)).unwrap();

    // The callback receiver.
    let received: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let rx = received.clone();
    let cb_port = free_port();
    let app = poem::endpoint::make(move |req: poem::Request| {
        let rx = rx.clone();
        async move {
            let body: serde_json::Value =
                serde_json::from_slice(&req.into_body().into_vec().await.unwrap_or_default())
                    .unwrap_or_default();
            if body["phase"] == "Ready"
                && let Some(id) = body["deploymentId"].as_str()
            {
                rx.lock()
                    .unwrap()
                    .entry(id.to_string())
                    .or_insert_with(Instant::now);
            }
            poem::http::StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(
        poem::Server::new(poem::listener::TcpListener::bind(format!(
            "127.0.0.1:{cb_port}"
        )))
        .run(app),
    );

    // The broker, as its own process.
    let api_port = free_port();
    let metrics_port = free_port();
    let broker = Command::new(env!("CARGO_BIN_EXE_kidp-broker"))
        .args([
            "--listen",
            &format!("127.0.0.1:{api_port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--create-namespaces",
            "--install-crd",
            // Measures the lifecycle, not authentication, rate limiting or the callback egress policy (its
            // receiver listens on loopback).
            "--insecure-no-auth",
            "--rate-limit-per-minute",
            "0",
            "--callback-allow-loopback",
            "--resync-seconds",
            "30",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker binary");
    let broker_pid = broker.id();
    let _procs = Procs(vec![broker]);
    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{api_port}");
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    while http
        .get(format!("{api}/readiness"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "broker ready within 60s");
        poll.tick().await;
    }
    println!(
        "broker benchmark: waves {waves:?} across {namespaces} namespaces (kubesim ready delay 50ms)"
    );
    println!(
        "  broker rss at start          {:>10.1} MiB",
        rss_mib(broker_pid)
    );

    // Our own watch of StatefulSets, to time "Ready in kubesim".
    let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let client = kube::Client::try_from(kube::Config::new(sim_url.parse().unwrap())).unwrap();
    let ra = ready_at.clone();
    let sts: kube::Api<StatefulSet> = kube::Api::all(client);
    tokio::spawn(async move {
        let stream = watcher(
            sts,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=kidp-broker"),
        );
        futures::pin_mut!(stream);
        while let Some(Ok(ev)) = stream.next().await {
            if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = ev {
                let want = s.spec.replicas.unwrap_or(1);
                let ready = s
                    .status
                    .as_ref()
                    .and_then(|st| st.ready_replicas)
                    .unwrap_or(0);
                if ready >= want
                    && let Some(id) = s
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kidp.io/deployment-id"))
                {
                    ra.lock()
                        .unwrap()
                        .entry(id.clone())
                        .or_insert_with(Instant::now);
                }
            }
        }
    });

    let mut done = 0;
    for target in waves {
        let n = target.saturating_sub(done);
        let before = kube_requests(&http, &metrics).await;
        let t = Instant::now();
        let answers: Vec<(String, u32)> = futures::stream::iter(done..target)
            .map(|i| {
                let http = http.clone();
                let api = api.clone();
                async move {
                    let body = json!({
                        "resourceType": "database",
                        "resourceName": format!("db-{i:05}"),
                        "namespace": format!("bench-{:03}", i % namespaces),
                        "team": "bench",
                        "owner": "bench@example.com",
                        "callbackUrl": format!("http://127.0.0.1:{cb_port}/cb"),
                        "spec": {"engine": "redis", "version": "7.2", "size": "small"}
                    });
                    // A manager retries a 503 (the API server was too slow to store the request); count them.
                    let mut retries = 0u32;
                    loop {
                        let r = http
                            .post(format!("{api}/v1/provision"))
                            .json(&body)
                            .send()
                            .await
                            .unwrap();
                        let code = r.status().as_u16();
                        let v: serde_json::Value = r.json().await.unwrap();
                        if code == 202 {
                            break (
                                v["deploymentId"].as_str().expect("an id").to_string(),
                                retries,
                            );
                        }
                        assert!(code == 503 && retries < 20, "provision refused: {code} {v}");
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(retries))).await;
                    }
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let accepted = t.elapsed();
        let retried: u32 = answers.iter().map(|(_, r)| r).sum();
        let ids: Vec<String> = answers.into_iter().map(|(id, _)| id).collect();
        let deadline = Instant::now() + Duration::from_secs(1800);
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            let got = received.lock().unwrap().len();
            if got >= target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "all Ready callbacks within 30 minutes ({got}/{target})"
            );
            poll.tick().await;
        }
        let wall = t.elapsed();
        let after = kube_requests(&http, &metrics).await;
        let lat: Vec<f64> = {
            let rx = received.lock().unwrap();
            let ra = ready_at.lock().unwrap();
            let mut v: Vec<f64> = ids
                .iter()
                .filter_map(|id| {
                    Some(
                        rx.get(id)?
                            .saturating_duration_since(*ra.get(id)?)
                            .as_secs_f64()
                            * 1000.0,
                    )
                })
                .collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v
        };
        done = target;
        println!("  wave to {target} deployments ({n} new)");
        println!(
            "    accept                    {:>10.0} provisions/s ({n} in {:.2}s, 32 in flight, {retried} retries after 503)",
            n as f64 / accepted.as_secs_f64(),
            accepted.as_secs_f64()
        );
        println!(
            "    all Ready + called back   {:>10.2} s     ({:.2} ms wall per provision)",
            wall.as_secs_f64(),
            wall.as_secs_f64() * 1000.0 / n as f64
        );
        println!(
            "    kubernetes API requests   {:>10.1} per provision ({:.0} in all)",
            (after - before) / n as f64,
            after - before
        );
        println!(
            "    Ready → callback latency  {:>10.1} ms p50, {:.1} ms p99 ({} samples)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.len()
        );
        println!(
            "    broker rss                {:>10.1} MiB",
            rss_mib(broker_pid)
        );
        println!(
            "    broker→kubesim TCP conns  {:>10}",
            connections_to(sim_port)
        );
    }
}
