//! Shared set-up for kubesim's black-box tests: a server on a free port and a kube-rs client for it.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use kube::{Client, Config};

/// A running kubesim and a client pointed at it.
pub struct Sim {
    pub sim: kubesim::KubeSim,
    pub client: Client,
}

pub async fn start() -> Sim {
    start_with(kubesim::Options::default()).await
}

/// Starts kubesim; the client is built from its kubeconfig, as a user's would be (the admin token, and
/// kubesim's CA with `tls`).
pub async fn start_with(opts: kubesim::Options) -> Sim {
    let sim = kubesim::start(opts).await.expect("kubesim starts");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig()).expect("kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config from kubeconfig");
    let client = Client::try_from(cfg).expect("client");
    Sim { sim, client }
}

pub fn client_for(url: &str) -> Client {
    let cfg = Config::new(url.parse().expect("url"));
    Client::try_from(cfg).expect("client")
}

/// Polls `f` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    // The condition is checked on a fixed cadence until it holds or the deadline passes.
    let mut poll = tokio::time::interval(Duration::from_millis(20));
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
