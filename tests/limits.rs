//! Rate limits, connection limits and HTTP-layer refusals, black-box: the real broker on kubesim, driven over
//! HTTP and raw TCP.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A deployment id no deployment has: the status lookup answers 404, which is cheap and not a 429.
const UNKNOWN: &str = "/v1/status?id=deploy-00000000000000000000000000000000";

/// Status, `Retry-After` and body of a GET with optional `X-Forwarded-For`.
async fn get_as(env: &common::Env, path: &str, xff: Option<&str>) -> (u16, Option<u64>, Value) {
    let mut req = env.http.get(env.url(path));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    let r = req.send().await.expect("request");
    let code = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("whole seconds"));
    (code, retry, r.json().await.expect("JSON body"))
}

fn assert_error(code: u16, body: &Value, want: u16, error: &str) {
    assert_eq!(code, want, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["code"], want, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_answers_429_until_retry_after() {
    // One request a second, two at once.
    let env = open_broker(&["--rate-limit-per-minute", "60", "--rate-limit-burst", "2"]).await;
    for _ in 0..2 {
        let (code, _, body) = get_as(&env, UNKNOWN, None).await;
        assert_eq!(code, 404, "{body}");
    }
    let (code, retry, body) = get_as(&env, UNKNOWN, None).await;
    assert_error(code, &body, 429, "rate_limited");
    assert_eq!(
        body["message"],
        format!(
            "rate limit of 60 requests per minute exceeded; retry after {} s",
            retry.unwrap()
        )
    );
    let retry = retry.expect("Retry-After");
    assert!((1..=2).contains(&retry), "{retry}");
    // Probes and documentation are not limited.
    for path in ["/health", "/readiness", "/openapi.json"] {
        let r = env.http.get(env.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Waiting as long as Retry-After says is enough: admitted again within it (plus scheduling slack).
    common::eventually(
        "admitted again after Retry-After",
        Duration::from_secs(retry) + Duration::from_millis(500),
        || async {
            let (code, _, _) = get_as(&env, UNKNOWN, None).await;
            (code == 404).then_some(())
        },
    )
    .await;
    let metrics = env.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("broker_rate_limited_total{endpoint=\"/v1/status\"}")),
        "{metrics}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_has_its_own_budget() {
    let env = open_broker(&[
        "--rate-limit-per-minute",
        "1",
        "--rate-limit-burst",
        "1",
        "--trusted-proxies",
        "10.0.0.0/8,127.0.0.1/32",
    ])
    .await;
    let (code, _, _) = get_as(&env, UNKNOWN, Some("198.51.100.1")).await;
    assert_eq!(code, 404);
    let (code, retry, body) = get_as(&env, UNKNOWN, Some("198.51.100.1")).await;
    assert_error(code, &body, 429, "rate_limited");
    assert!(retry.unwrap() >= 1);
    // Another client behind the same proxy, and the proxy itself, are not held back.
    let (code, _, _) = get_as(&env, UNKNOWN, Some("198.51.100.2")).await;
    assert_eq!(code, 404);
    let (code, _, _) = get_as(&env, UNKNOWN, None).await;
    assert_eq!(code, 404);
    // The client cannot escape by writing an address of its own to the left: the hop the proxy saw counts.
    let (code, _, body) = get_as(&env, UNKNOWN, Some("203.0.113.50, 198.51.100.1")).await;
    assert_error(code, &body, 429, "rate_limited");
    // Nor by putting a trusted address on the right (10.0.0.9 is a proxy hop; 198.51.100.1 is left of it).
    let (code, _, body) = get_as(&env, UNKNOWN, Some("198.51.100.1, 10.0.0.9")).await;
    assert_error(code, &body, 429, "rate_limited");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let env = open_broker(&["--rate-limit-per-minute", "1", "--rate-limit-burst", "1"]).await;
    let (code, _, _) = get_as(&env, UNKNOWN, Some("198.51.100.1")).await;
    assert_eq!(code, 404);
    // A different claimed client, the same peer: the same budget.
    let (code, _, body) = get_as(&env, UNKNOWN, Some("198.51.100.2")).await;
    assert_error(code, &body, 429, "rate_limited");
    env.stop().await;
}

/// Reads until the peer closes; the bytes read, or `None` when it is still open after `patience`.
async fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_closed_after_the_header_timeout() {
    let env = open_broker(&["--header-read-timeout-seconds", "1"]).await;
    // No line end, ever; and a client that connects and says nothing.
    let mut partial = TcpStream::connect(env.broker.api_addr).await.unwrap();
    partial.write_all(b"GET /health HTTP/1.1").await.unwrap();
    let mut silent = TcpStream::connect(env.broker.api_addr).await.unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut partial, Duration::from_secs(5))
        .await
        .expect("closed by the broker");
    assert!(got.is_empty(), "no answer, just closed: {got:?}");
    let got = read_until_closed(&mut silent, Duration::from_secs(5))
        .await
        .expect("closed by the broker");
    assert!(got.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "not before the timeout: {waited:?}"
    );
    // A complete request on a fresh connection is answered, and the connection stays usable.
    let r = env.http.get(env.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_cut_at_the_header_timeout_and_idle_keep_alive_at_its_own() {
    let env = open_broker(&[
        "--header-read-timeout-seconds",
        "1",
        "--keep-alive-timeout-seconds",
        "2",
    ])
    .await;
    // A byte every 200 ms is activity, but the head is never complete: closed at the header timeout.
    let mut slow = TcpStream::connect(env.broker.api_addr).await.unwrap();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let closed_after = loop {
        tick.tick().await;
        if slow.write_all(b"X").await.is_err() {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still open");
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            break started.elapsed();
        }
    };
    assert!(
        closed_after >= Duration::from_millis(900),
        "{closed_after:?}"
    );
    // A kept-alive connection: answered, then closed once it has idled for the keep-alive timeout, which is
    // longer than the header timeout.
    let mut kept = TcpStream::connect(env.broker.api_addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: broker\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    let rest = read_until_closed(&mut kept, Duration::from_secs(6))
        .await
        .expect("closed after the keep-alive timeout");
    assert!(
        rest.is_empty() || rest.ends_with(b"}"),
        "only the rest of the answer"
    );
    let idled = answered.elapsed();
    assert!(idled >= Duration::from_millis(1800), "{idled:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_lock_out_health() {
    const IDLE: usize = 2000;
    const MAX: usize = 512;
    let env = open_broker(&["--max-connections", &MAX.to_string()]).await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(env.broker.api_addr).await.unwrap());
    }
    // A probe on a new connection, as a kubelet would send it.
    let probe = reqwest::Client::new();
    let started = Instant::now();
    let r = probe
        .get(env.url("/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("/health answers");
    let latency = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(
        latency < Duration::from_secs(2),
        "/health took {latency:?} with {IDLE} idle connections"
    );
    // The broker holds at most MAX connections: the longest-waiting ones were closed to make room, the newest
    // are still open.
    let closed: Vec<bool> = futures::future::join_all(idle.iter_mut().map(|s| async {
        read_until_closed(s, Duration::from_millis(1500))
            .await
            .is_some()
    }))
    .await;
    let n_closed = closed.iter().filter(|c| **c).count();
    assert!(
        n_closed >= IDLE - MAX,
        "{n_closed} of {IDLE} idle connections closed"
    );
    assert!(
        closed[IDLE - 100..].iter().all(|c| !c),
        "the newest idle connections are kept"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_new_ones_are_closed_until_one_frees() {
    const MAX: usize = 8;
    let env = open_broker(&[
        "--max-connections",
        &MAX.to_string(),
        "--body-read-timeout-seconds",
        "2",
    ])
    .await;
    let addr = env.broker.api_addr;
    // Requests that announce a body and never send it. `100 Continue` proves the broker is reading the body,
    // so each connection is busy, not waiting.
    let mut busy = Vec::new();
    for _ in 0..MAX {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /v1/provision HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("100 Continue in time")
            .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 100"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        busy.push(s);
    }
    // Every slot busy: a new connection is closed without an answer.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: broker\r\n\r\n")
        .await;
    let got = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("closed at once");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // The withheld bodies time out with the error body, which frees the slots.
    for s in &mut busy {
        let got = read_until_closed(s, Duration::from_secs(10))
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("\"invalid_request\""), "{text}");
        assert!(text.contains("did not arrive within 2 s"), "{text}");
    }
    let r = env.http.get(env.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_and_docs_allow_only_get_and_head() {
    let env = open_broker(&[]).await;
    for (method, path) in [
        ("PUT", "/openapi.json"),
        ("DELETE", "/openapi.json"),
        ("POST", "/openapi.yaml"),
        ("TRACE", "/docs"),
        ("PUT", "/docs"),
    ] {
        let r = env
            .http
            .request(method.parse().unwrap(), env.url(path))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        assert_eq!(
            r.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some("GET, HEAD"),
            "{method} {path}"
        );
        let body: Value = r.json().await.expect("JSON body");
        assert_error(code, &body, 405, "method_not_allowed");
    }
    for path in ["/openapi.json", "/openapi.yaml", "/docs"] {
        let head = env.http.head(env.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        let get = env.http.get(env.url(path)).send().await.unwrap();
        assert_eq!(get.status(), 200, "GET {path}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_targets_and_headers_get_the_error_body() {
    let env = open_broker(&["--max-uri-bytes", "1024", "--max-header-bytes", "4096"]).await;
    let long = format!("/v1/status?id={}", "a".repeat(1100));
    let r = env.http.get(env.url(&long)).send().await.unwrap();
    let code = r.status().as_u16();
    assert_error(code, &r.json().await.unwrap(), 414, "uri_too_long");
    let r = env
        .http
        .get(env.url("/health"))
        .header("x-padding", "p".repeat(5000))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    assert_error(code, &r.json().await.unwrap(), 431, "headers_too_large");
    // Within the limits, the same requests are served.
    let r = env
        .http
        .get(env.url("/health"))
        .header("x-padding", "p".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.stop().await;
}

/// A broker without authentication, so that every client is keyed (and refused) by its address as these tests
/// expect; with authentication on, the key is the subject instead (unit-tested in src/http/limits.rs).
async fn open_broker(extra: &[&str]) -> common::Env {
    let mut args = vec!["--insecure-no-auth"];
    args.extend_from_slice(extra);
    common::start(&args).await
}
