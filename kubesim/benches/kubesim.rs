//! kubesim benchmark: prints figures, asserts nothing about speed.
//!
//! Runs the real `kubesim` binary as a separate process (so its resident memory is its own) and drives it over
//! HTTP with kube-rs: creates, full and paginated lists, and watch fan-out to many concurrent watchers.
//! Sizes: `KUBESIM_BENCH_OBJECTS` (default 50000), `KUBESIM_BENCH_WATCHERS` (default 1000),
//! `KUBESIM_BENCH_EVENTS` (default 200). Run with `cargo bench -p kubesim`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, Config};
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size of a process in MiB, from /proc.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn cm(name: String) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "kubesim", "shard": "a"}},
        "data": {"payload": "x".repeat(200)}
    }))
    .expect("configmap")
}

#[tokio::main]
async fn main() {
    let objects = env_or("KUBESIM_BENCH_OBJECTS", 50_000);
    let watchers = env_or("KUBESIM_BENCH_WATCHERS", 1_000);
    let events = env_or("KUBESIM_BENCH_EVENTS", 200);

    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["--listen", "127.0.0.1:0", "--history", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubesim binary");
    let pid = child.id();
    let mut url = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("kubesim prints its URL");
    let url = url.trim().to_string();
    let client = Client::try_from(Config::new(url.parse().expect("url"))).expect("client");
    println!("kubesim benchmark: {objects} objects, {watchers} watchers, {events} fan-out events");
    println!("  rss at start                {:>10.1} MiB", rss_mib(pid));

    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "bench"}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");

    let t = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(format!("cm-{i:06}")))
                    .await
            }
        })
        .buffer_unordered(64)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("creates");
    let el = t.elapsed();
    println!(
        "  create                      {:>10.0} objects/s  ({objects} in {:.2}s, 64 in flight)",
        objects as f64 / el.as_secs_f64(),
        el.as_secs_f64()
    );
    println!("  rss with {objects} objects   {:>10.1} MiB", rss_mib(pid));

    let t = Instant::now();
    let all = api.list(&ListParams::default()).await.expect("list");
    let el = t.elapsed();
    assert_eq!(all.items.len(), objects, "every object stored");
    println!(
        "  list (one page)             {:>10.0} ms       ({:.0} objects/s)",
        el.as_secs_f64() * 1000.0,
        objects as f64 / el.as_secs_f64()
    );
    drop(all);

    let t = Instant::now();
    let mut pages = 0;
    let mut seen = 0;
    let mut cont: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(c) = &cont {
            lp = lp.continue_token(c);
        }
        let page = api.list(&lp).await.expect("page");
        pages += 1;
        seen += page.items.len();
        cont = page.metadata.continue_.filter(|c| !c.is_empty());
        if cont.is_none() {
            break;
        }
    }
    assert_eq!(seen, objects);
    let el = t.elapsed();
    println!(
        "  list (limit=500)            {:>10.0} ms       ({pages} pages)",
        el.as_secs_f64() * 1000.0
    );

    let t = Instant::now();
    let sel = api
        .list(&ListParams::default().labels("shard in (b,c)"))
        .await
        .expect("selector list");
    println!(
        "  list (selector, 0 matches)  {:>10.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    assert!(sel.items.is_empty());

    // Watch fan-out: every watcher on its own connection, all starting at the same resourceVersion.
    let rv = api
        .list(&ListParams::default().limit(1))
        .await
        .expect("rv")
        .metadata
        .resource_version
        .expect("list rv");
    let t = Instant::now();
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let c = Client::try_from(Config::new(url.parse().expect("url"))).expect("client");
        let w: Api<ConfigMap> = Api::namespaced(c, "bench");
        streams.push(
            w.watch(&WatchParams::default().labels("bench=fanout"), &rv)
                .await
                .expect("watch")
                .boxed(),
        );
    }
    println!(
        "  open {watchers} watches        {:>10.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "  rss with {watchers} watchers   {:>10.1} MiB",
        rss_mib(pid)
    );
    let waiters: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut n = 0;
                while n < events {
                    match tokio::time::timeout(Duration::from_secs(120), s.next()).await {
                        Ok(Some(Ok(WatchEvent::Added(_)))) => n += 1,
                        Ok(Some(Ok(_))) => {}
                        other => panic!("watch ended early: {other:?}"),
                    }
                }
                Instant::now()
            })
        })
        .collect();
    let t = Instant::now();
    for i in 0..events {
        let mut c = cm(format!("fan-{i:05}"));
        c.metadata.labels = Some([("bench".to_string(), "fanout".to_string())].into());
        api.create(&PostParams::default(), &c)
            .await
            .expect("fan-out create");
    }
    let mut last = t;
    for w in waiters {
        last = last.max(w.await.expect("watcher"));
    }
    let el = last - t;
    println!(
        "  watch fan-out               {:>10.0} events/s delivered ({} events to {watchers} watchers in {:.2}s)",
        (events * watchers) as f64 / el.as_secs_f64(),
        events * watchers,
        el.as_secs_f64()
    );
    println!("  rss at end                  {:>10.1} MiB", rss_mib(pid));
    let _ = child.kill();
    let _ = child.wait();
}
