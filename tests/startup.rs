//! Start-up failures a platform team meets first: a port already taken must be named in the error.

mod common;

use std::net::TcpListener;

use clap::Parser;
use kidp_broker::config::Args;

/// Starts the broker against a running kubesim with these ports and returns its start-up error.
async fn start_error(listen: &str, metrics_listen: &str) -> String {
    let sim = common::start_sim("127.0.0.1:0".parse().unwrap()).await;
    let kubeconfig = std::env::temp_dir().join(format!(
        "kidp-broker-startup-{}.kubeconfig",
        sim.addr().port()
    ));
    std::fs::write(&kubeconfig, sim.kubeconfig()).unwrap();
    let args = Args::parse_from([
        "kidp-broker",
        "--listen",
        listen,
        "--metrics-listen",
        metrics_listen,
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--install-crd",
    ]);
    let result = kidp_broker::start(args).await;
    let message = match result {
        Ok(running) => {
            running.shutdown().await;
            panic!("the broker started although a port was taken");
        }
        // With the cause chain, as `main` prints it.
        Err(e) => format!("{e:#}"),
    };
    sim.shutdown().await;
    message
}

#[tokio::test]
async fn taken_api_port_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let message = start_error(&addr, "127.0.0.1:0").await;
    assert!(
        message.starts_with(&format!("cannot listen on {addr} (REST API): ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("in use"), "{message}");
}

#[tokio::test]
async fn taken_metrics_port_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let message = start_error("127.0.0.1:0", &addr).await;
    assert!(
        message.starts_with(&format!("cannot listen on {addr} (metrics): ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("in use"), "{message}");
}
