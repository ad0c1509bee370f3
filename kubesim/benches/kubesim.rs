//! kubesim benchmark: prints figures, asserts nothing about speed.
//!
//! Runs the real `kubesim` binary as a separate process (so its resident memory is its own) and drives it over
//! HTTP with kube-rs, in two phases:
//! 1. the API server: creates, full and paginated lists, and watch fan-out to many concurrent watchers.
//!    Sizes: `KUBESIM_BENCH_OBJECTS` (default 50000), `KUBESIM_BENCH_WATCHERS` (default 1000),
//!    `KUBESIM_BENCH_EVENTS` (default 200).
//! 2. the controllers and kubelet, in a fresh kubesim process: `KUBESIM_BENCH_STATEFULSETS` (default 2000)
//!    StatefulSets of 3 replicas with a volumeClaimTemplate, brought to readyReplicas=3; ready delay
//!    `KUBESIM_BENCH_READY_DELAY` (default `1s`, kubesim's own default).
//!
//! Run with `cargo bench -p kubesim`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod,
};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
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
    proc_status_mib(pid, "VmRSS:")
}

/// A size line (`VmRSS:`, `VmHWM:`, ...) of /proc/PID/status in MiB.
fn proc_status_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
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

/// The kubesim process, killed when dropped, so that a panicking phase does not leave it running.
struct Kubesim(Child);

impl Drop for Kubesim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the kubesim binary with `args` on a free port; returns the process, its pid, its URL and a client.
fn spawn_kubesim(args: &[&str]) -> (Kubesim, u32, String, Client) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
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
    (Kubesim(child), pid, url, client)
}

#[tokio::main]
async fn main() {
    api_server_phase().await;
    statefulset_phase().await;
}

/// Phase 1: the API server alone.
async fn api_server_phase() {
    let objects = env_or("KUBESIM_BENCH_OBJECTS", 50_000);
    let watchers = env_or("KUBESIM_BENCH_WATCHERS", 1_000);
    let events = env_or("KUBESIM_BENCH_EVENTS", 200);

    let (kubesim, pid, url, client) = spawn_kubesim(&["--history", "200000"]);
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
    println!(
        "  {:<28}{:>10.1} MiB",
        format!("rss with {objects} objects"),
        rss_mib(pid)
    );

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
        "  {:<28}{:>10.0} ms",
        format!("open {watchers} watches"),
        t.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "  {:<28}{:>10.1} MiB",
        format!("rss with {watchers} watchers"),
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
    drop(kubesim);
}

fn statefulset(name: String) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "kubesim"}},
        "spec": {
            "serviceName": name,
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "db",
                    "image": "postgres:16",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .expect("statefulset")
}

/// Phase 2: StatefulSets brought to Ready by the controllers and the kubelet.
///
/// Runs in a fresh kubesim process, after phase 1's has been stopped, so that its memory and object counts are
/// those of the workloads alone and not of phase 1's ConfigMaps and watchers. The sets keep the default
/// `podManagementPolicy: OrderedReady`, as a database operator's would: each set's pods start one after another,
/// so no set can be Ready sooner than three ready delays (1 s plus up to 0.5 s of jitter each with the default),
/// while the sets themselves progress side by side.
async fn statefulset_phase() {
    let sets = env_or("KUBESIM_BENCH_STATEFULSETS", 2_000);
    let ready_delay =
        std::env::var("KUBESIM_BENCH_READY_DELAY").unwrap_or_else(|_| "1s".to_string());
    // A benchmark, not a test: give up waiting after this long and report how far it got.
    let deadline = Duration::from_secs(600);

    let (kubesim, pid, _url, client) = spawn_kubesim(&["--ready-delay", &ready_delay]);
    println!(
        "kubesim benchmark: {sets} StatefulSets x 3 replicas ({} pods, 1 claim each), OrderedReady, ready delay {ready_delay}, fresh process",
        sets * 3
    );
    println!("  rss at start                {:>10.1} MiB", rss_mib(pid));

    let ns = "bench-sts";
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);

    // Readiness is followed with a watcher (list, then watch; it relists by itself after a 410), started before the
    // first create so that no transition is missed. It stops once every set is ready, or at the deadline.
    let ready_at = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut ready: HashMap<String, bool> = HashMap::with_capacity(sets);
            let mut n_ready = 0;
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            let until = tokio::time::Instant::now() + deadline;
            while n_ready < sets {
                let set = match tokio::time::timeout_at(until, stream.next()).await {
                    Ok(Some(Ok(set))) => set,
                    Ok(Some(Err(_))) => continue,
                    Ok(None) | Err(_) => return Err(n_ready),
                };
                let is_ready = set
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0)
                    == 3;
                let was_ready = ready
                    .insert(set.metadata.name.unwrap_or_default(), is_ready)
                    .unwrap_or(false);
                match (was_ready, is_ready) {
                    (false, true) => n_ready += 1,
                    (true, false) => n_ready -= 1,
                    _ => {}
                }
            }
            Ok(Instant::now())
        })
    };

    let t = Instant::now();
    futures::stream::iter(0..sets)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &statefulset(format!("db-{i:05}")))
                    .await
            }
        })
        .buffer_unordered(64)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("statefulset creates");
    let el = t.elapsed();
    println!(
        "  create statefulsets         {:>10.0} sets/s     ({sets} in {:.2}s, 64 in flight)",
        sets as f64 / el.as_secs_f64(),
        el.as_secs_f64()
    );

    match ready_at.await.expect("readiness watcher") {
        Ok(at) => {
            let el = at - t;
            println!(
                "  all readyReplicas=3         {:>10.2} s        ({:.0} pods ready/s, from the first create)",
                el.as_secs_f64(),
                (sets * 3) as f64 / el.as_secs_f64()
            );
        }
        Err(n) => println!(
            "  all readyReplicas=3         gave up after {}s: {n} of {sets} sets ready",
            deadline.as_secs()
        ),
    }

    let lp = ListParams::default();
    let n_sets = api.list(&lp).await.expect("sets").items.len();
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("pods");
    let running = pods
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("claims");
    let bound = claims
        .items
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .count();
    let volumes = Api::<PersistentVolume>::all(client.clone())
        .list(&lp)
        .await
        .expect("volumes")
        .items
        .len();
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("revisions")
        .items
        .len();
    let total = n_sets + pods.items.len() + claims.items.len() + volumes + revisions;
    println!(
        "  objects stored              {:>10}          ({n_sets} sets, {} pods ({running} Running), {} claims ({bound} Bound), {volumes} volumes, {revisions} revisions)",
        total,
        pods.items.len(),
        claims.items.len()
    );
    // Every write bumps the one global resourceVersion, so the last one counts the writes it took.
    let writes = pods.metadata.resource_version.clone().unwrap_or_default();
    println!("  writes (resourceVersion)    {writes:>10}");
    drop((pods, claims));
    println!("  rss at end                  {:>10.1} MiB", rss_mib(pid));
    println!(
        "  rss peak                    {:>10.1} MiB",
        proc_status_mib(pid, "VmHWM:")
    );
    drop(kubesim);
}
