//! Test harness: a real kubesim over HTTP, the real broker against it, and an HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kidp_broker::config::Args;

pub struct Env {
    pub sim: Option<kubesim::KubeSim>,
    pub sim_addr: SocketAddr,
    pub broker: kidp_broker::Running,
    pub http: reqwest::Client,
    pub kube: kube::Client,
    pub kubeconfig: PathBuf,
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.broker.api_addr, path)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.broker.metrics_addr)
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let code = r.status().as_u16();
        (code, r.json().await.expect("JSON body"))
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(self.url(path)).send().await.expect("request");
        let code = r.status().as_u16();
        (code, r.json().await.expect("JSON body"))
    }

    pub async fn stop(self) {
        self.broker.shutdown().await;
        if let Some(s) = self.sim {
            s.shutdown().await;
        }
    }
}

pub async fn start_sim(addr: SocketAddr) -> kubesim::KubeSim {
    kubesim::start(kubesim::Options {
        listen: addr,
        ..Default::default()
    })
    .await
    .expect("kubesim starts")
}

/// kubesim on a free port and the broker against it (namespaces created on demand, CRD installed).
pub async fn start(extra: &[&str]) -> Env {
    let sim = start_sim("127.0.0.1:0".parse().unwrap()).await;
    let sim_addr = sim.addr();
    let dir = std::env::temp_dir().join(format!("kidp-broker-test-{}", sim_addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig()).unwrap();
    let mut argv = vec![
        "kidp-broker".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--create-namespaces".into(),
        "--install-crd".into(),
    ];
    if !extra.contains(&"--encrypted-storage-class") {
        argv.extend([
            "--encrypted-storage-class".to_string(),
            "kidp-encrypted".to_string(),
        ]);
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    let args = Args::parse_from(argv);
    let broker = kidp_broker::start(args).await.expect("broker starts");
    let kube = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let env = Env {
        sim: Some(sim),
        sim_addr,
        broker,
        http,
        kube,
        kubeconfig,
    };
    eventually("broker ready", Duration::from_secs(20), || async {
        let (code, _) = env.get("/readiness").await;
        (code == 200).then_some(())
    })
    .await;
    env
}

/// Polls until `f` gives `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The seed's provision example.
pub fn seed_provision() -> serde_json::Value {
    serde_json::json!({
        "resourceType": "database",
        "resourceName": "postgres-app-db",
        "namespace": "team-platform",
        "team": "platform-team",
        "owner": "user@example.com",
        "callbackUrl": "http://manager:9090/v1/callback",
        "spec": {
            "engine": "postgresql",
            "version": "15",
            "size": "medium",
            "highAvailability": true,
            "backup": {"enabled": true, "retention": "7d"},
            "encryption": {"atRest": true, "inTransit": true}
        }
    })
}
