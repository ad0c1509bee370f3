//! Where callbacks may go, end to end: every spelling of a refused address is refused at accept, a name that
//! resolves to a refused address is refused at delivery, and a redirect is never followed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Env, Receiver, eventually, provision};
use poem::listener::{Acceptor, Listener};

const LONG: Duration = Duration::from_secs(60);

fn counter(metrics: &str, result: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("broker_callbacks_total{") && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn ready(env: &Env, id: &str) {
    eventually("Ready", LONG, || async {
        let (_, st) = env.get(&format!("/v1/status?id={id}")).await;
        (st["phase"] == "Ready").then_some(())
    })
    .await;
}

#[tokio::test]
async fn refused_addresses_in_every_spelling_at_accept_and_at_delivery() {
    let env = common::start_strict_egress(&[]).await;
    let metrics_port = env.broker.metrics_addr.port();
    let api_port = env.broker.api_addr.port();
    let sim_port = env.sim_addr.port();
    let refused = [
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://169.254.169.254./latest".into(),
        "http://0xa9fea9fe/".into(),
        "http://0251.0376.0251.0376/".into(),
        "http://169.254.43518/".into(),
        "http://[::ffff:169.254.169.254]/".into(),
        "http://[::ffff:a9fe:a9fe]/".into(),
        "http://[::169.254.169.254]/".into(),
        "http://[64:ff9b::a9fe:a9fe]/".into(),
        "http://[fd00:ec2::254]/".into(),
        "http://100.100.100.200/".into(),
        "http://[fe80::1]/".into(),
        "http://0.0.0.0/".into(),
        "http://127.0.0.1:8080/cb".into(),
        "http://[::1]:8080/cb".into(),
        "http://2130706433:8080/cb".into(),
        format!("http://127.0.0.1:{metrics_port}/metrics"),
        format!("http://127.0.0.1:{api_port}/v1/provision"),
        format!("http://127.0.0.1:{sim_port}/api/v1/namespaces"),
    ];
    for url in &refused {
        let body = provision("ssrf", "team-egress", "redis", "7.2", "small", url);
        let (code, resp) = env.post("/v1/provision", &body).await;
        assert_eq!(code, 400, "{url}: {resp}");
        assert_eq!(resp["error"], "validation_failed", "{url}: {resp}");
        assert!(
            resp["message"].as_str().unwrap().starts_with("callbackUrl"),
            "{url}: {resp}"
        );
    }
    // A name passes the accept check, but it resolves to loopback: refused at delivery, never sent.
    let rx = Receiver::start().await;
    let port = rx
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let by_name = format!("http://localhost:{port}/v1/callback");
    let (code, resp) = env
        .post(
            "/v1/provision",
            &provision("by-name", "team-egress", "redis", "7.2", "small", &by_name),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    let id = resp["deploymentId"].as_str().unwrap().to_string();
    ready(&env, &id).await;
    eventually("refusals counted", LONG, || async {
        (counter(&env.metrics().await, "rejected") >= 2.0).then_some(())
    })
    .await;
    assert!(
        rx.received.lock().unwrap().is_empty(),
        "nothing reached the loopback receiver"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_redirecting_receiver_is_not_followed() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    // A receiver that redirects every callback to the real one.
    let hits = Arc::new(AtomicUsize::new(0));
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let (target, h) = (rx.url.clone(), hits.clone());
    let app = poem::endpoint::make(move |_req: poem::Request| {
        let (target, h) = (target.clone(), h.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            poem::Response::builder()
                .status(poem::http::StatusCode::TEMPORARY_REDIRECT)
                .header("Location", target)
                .finish()
        }
    });
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    let redirector = format!("http://{addr}/v1/callback");
    let (code, resp) = env
        .post(
            "/v1/provision",
            &provision(
                "redirected",
                "team-redirect",
                "redis",
                "7.2",
                "small",
                &redirector,
            ),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    let id = resp["deploymentId"].as_str().unwrap().to_string();
    ready(&env, &id).await;
    eventually(
        "Provisioning and Ready attempted once each",
        LONG,
        || async { (hits.load(Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a 3xx ends the callback: no retries"
    );
    assert!(
        rx.received.lock().unwrap().is_empty(),
        "the redirect target got nothing"
    );
    env.stop().await;
}
