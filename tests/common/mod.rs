//! Test harness: a real kubesim over HTTP, the real broker against it, and an HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kidp_broker::config::Args;

/// The token the broker of a test that does not configure authentication accepts for everything.
pub const TEST_TOKEN: &str = "kidp-test-token";

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

    /// The Prometheus exposition text of the metrics port.
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(self.metrics_url())
            .send()
            .await
            .expect("metrics");
        r.text().await.expect("metrics text")
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

    /// A request with `Authorization: Bearer <token>` when `token` is given: the status, the headers and the
    /// JSON body.
    pub async fn send_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.expect("request");
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        (code, headers, resp.json().await.expect("JSON body"))
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
    start_against(sim, extra).await
}

/// kubesim with fast pods (for lifecycle tests) and the broker against it.
pub async fn start_fast(extra: &[&str]) -> Env {
    let sim = kubesim::start(kubesim::Options {
        ready_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .expect("kubesim starts");
    let mut args = vec![
        "--failure-grace-seconds",
        "1",
        "--callback-initial-backoff-ms",
        "50",
        "--resync-seconds",
        "1",
    ];
    args.extend_from_slice(extra);
    start_against(sim, &args).await
}

/// The broker against an already running kubesim (callbacks to loopback allowed: the receivers listen there).
pub async fn start_against(sim: kubesim::KubeSim, extra: &[&str]) -> Env {
    start_against_with(sim, extra, true).await
}

/// kubesim and a broker with the production callback egress policy (loopback refused).
pub async fn start_strict_egress(extra: &[&str]) -> Env {
    let sim = start_sim("127.0.0.1:0".parse().unwrap()).await;
    start_against_with(sim, extra, false).await
}

/// The broker against an already running kubesim; `loopback_callbacks` allows callbacks to loopback.
pub async fn start_against_with(
    sim: kubesim::KubeSim,
    extra: &[&str],
    loopback_callbacks: bool,
) -> Env {
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
    if loopback_callbacks {
        argv.push("--callback-allow-loopback".into());
    }
    // The tests fire far more than 100 requests a minute from one address; tests/limits.rs sets its own limit
    // (a later flag wins).
    if !extra.contains(&"--rate-limit-per-minute") {
        argv.extend(["--rate-limit-per-minute".to_string(), "0".to_string()]);
    }
    if !extra.contains(&"--encrypted-storage-class") {
        argv.extend([
            "--encrypted-storage-class".to_string(),
            "kidp-encrypted".to_string(),
        ]);
    }
    // Tests about something other than authentication run as production does, authenticated, with one token
    // that may do everything ([`TEST_TOKEN`]), which `Env::http` sends on every request. Tests about
    // authentication configure it themselves and get a client that sends no token.
    let configures_auth = extra.iter().any(|a| {
        a.starts_with("--auth-") || *a == "--insecure-no-auth" || a.starts_with("--dev-token")
    });
    let mut headers = reqwest::header::HeaderMap::new();
    if !configures_auth {
        let tokens = dir.join("tokens.yaml");
        std::fs::write(
            &tokens,
            format!(
                "tokens: [{{subject: tests, token: {TEST_TOKEN}, namespaces: ['*'], actions: [provision, deprovision, read]}}]\n"
            ),
        )
        .unwrap();
        argv.extend([
            "--auth-token-file".to_string(),
            tokens.display().to_string(),
        ]);
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {TEST_TOKEN}").parse().unwrap(),
        );
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    let args = Args::parse_from(argv);
    let broker = kidp_broker::start(args).await.expect("broker starts");
    let kube = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
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

/// The intent records of a namespace, read untyped as a client outside the broker would.
pub fn records(env: &Env, namespace: &str) -> kube::Api<kube::api::DynamicObject> {
    kube::Api::namespaced_with(
        env.kube.clone(),
        namespace,
        &kube::api::ApiResource {
            group: "kidp.io".into(),
            version: "v1alpha1".into(),
            api_version: "kidp.io/v1alpha1".into(),
            kind: "ManagedResource".into(),
            plural: "managedresources".into(),
        },
    )
}

/// Polls until `f` gives `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    // The condition is checked on a fixed cadence until it holds or the deadline passes.
    let mut poll = tokio::time::interval(Duration::from_millis(25));
    loop {
        poll.tick().await;
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out waiting for {what}");
        }
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

/// One callback the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: serde_json::Value,
    pub event_id: String,
    pub attempt: u32,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub raw: Vec<u8>,
    pub at: std::time::Instant,
    /// The status the receiver answered with.
    pub answered: u16,
}

/// A real HTTP server standing in for the manager's callback endpoint.
pub struct Receiver {
    pub url: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    /// While non-zero, answer 503 and count down.
    pub fail_next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use poem::listener::{Acceptor, Listener};
        use std::sync::atomic::Ordering;
        let received: std::sync::Arc<std::sync::Mutex<Vec<Received>>> = Default::default();
        let fail_next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let (r, f) = (received.clone(), fail_next.clone());
        let app = poem::endpoint::make(move |req: poem::Request| {
            let (r, f) = (r.clone(), f.clone());
            async move {
                let header = |n: &str| req.header(n).map(str::to_string);
                let event_id = header("x-kidp-event-id").unwrap_or_default();
                let attempt = header("x-kidp-delivery-attempt")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0);
                let signature = header("x-kidp-signature");
                let timestamp = header("x-kidp-timestamp");
                let raw = req.into_body().into_vec().await.unwrap_or_default();
                let failing = f
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let answered = if failing { 503 } else { 204 };
                r.lock().unwrap().push(Received {
                    body: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
                    event_id,
                    attempt,
                    signature,
                    timestamp,
                    raw,
                    at: std::time::Instant::now(),
                    answered,
                });
                poem::Response::builder()
                    .status(poem::http::StatusCode::from_u16(answered).unwrap())
                    .finish()
            }
        });
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        Receiver {
            url: format!("http://{addr}/v1/callback"),
            received,
            fail_next,
        }
    }

    /// Delivered (2xx-answered) callbacks for one deployment, in arrival order.
    pub fn delivered(&self, deployment_id: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.answered < 300 && r.body["deploymentId"] == deployment_id)
            .cloned()
            .collect()
    }

    /// Phases delivered for one deployment, in order, de-duplicated by event id as a manager would.
    pub fn phases(&self, deployment_id: &str) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.delivered(deployment_id)
            .iter()
            .filter(|r| seen.insert(r.event_id.clone()))
            .map(|r| r.body["phase"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Every attempt (any answer) for one deployment.
    pub fn attempts(&self, deployment_id: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body["deploymentId"] == deployment_id)
            .cloned()
            .collect()
    }
}

/// A provision request for `engine` with this name, size and callback URL.
pub fn provision(
    name: &str,
    namespace: &str,
    engine: &str,
    version: &str,
    size: &str,
    callback: &str,
) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "database",
        "resourceName": name,
        "namespace": namespace,
        "team": "platform-team",
        "owner": "user@example.com",
        "callbackUrl": callback,
        "spec": {"engine": engine, "version": version, "size": size}
    })
}
