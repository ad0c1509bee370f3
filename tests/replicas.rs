//! Several broker processes against one kubesim, black-box: the real binary, started and killed as a
//! Deployment's pods would be. Every replica accepts; a deployment's actor runs on exactly one replica at a time
//! (the replicas' own logs of acquiring and giving up shards, on one clock, never overlap for a shard); a
//! SIGKILLed replica's work is resumed by the others; a replica cut off from the API server stops acting before
//! another takes over; and every deployment's callbacks arrive in order, repeated only as a retried delivery of
//! the same event.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Receiver, eventually, provision};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kidp_broker::sharding::{SHARDS, shard_of};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

/// Each shard's intervals (start, end) of running its actors on one replica.
type Holdings = BTreeMap<u32, Vec<(jiff::Timestamp, jiff::Timestamp)>>;

const LONG: Duration = Duration::from_secs(120);
const NAMESPACES: usize = 20;
const PROVISIONS: usize = 100;

/// One broker process.
struct Replica {
    id: String,
    child: Child,
    log: PathBuf,
    api: String,
    /// When the test SIGKILLed it.
    killed_at: Option<jiff::Timestamp>,
}

impl Replica {
    fn start(id: &str, kubeconfig: &std::path::Path, dir: &std::path::Path) -> Replica {
        let log = dir.join(format!("{id}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kidp-broker"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--kubeconfig",
                &kubeconfig.display().to_string(),
                "--create-namespaces",
                "--install-crd",
                "--callback-allow-loopback",
                "--insecure-no-auth",
                "--rate-limit-per-minute",
                "0",
                "--replica-id",
                id,
                // Short leases, so that a failover takes seconds: others take over 6 s after the last renewal,
                // a holder stops acting 3 s after it.
                "--lease-duration-seconds",
                "6",
                "--lease-renew-deadline-seconds",
                "3",
                "--lease-retry-seconds",
                "1",
                "--resync-seconds",
                "1",
                "--callback-initial-backoff-ms",
                "50",
                "--failure-grace-seconds",
                "60",
                "--namespace-concurrency",
                "2",
                "--log-format",
                "json",
            ])
            .env("RUST_LOG", "info,kube=warn,tower=warn,hyper=warn")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("the broker binary starts");
        Replica {
            id: id.to_string(),
            child,
            log,
            api: String::new(),
            killed_at: None,
        }
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for the "serving" line and reads the API address from it.
    async fn serving(&mut self) {
        let addr = eventually(&format!("{} serving", self.id), LONG, || async {
            self.lines().iter().find_map(|l| {
                (l["fields"]["message"] == "kidp-broker serving")
                    .then(|| l["fields"]["api_addr"].as_str().map(str::to_string))
                    .flatten()
            })
        })
        .await;
        self.api = format!("http://{addr}");
    }

    fn sigkill(&mut self) {
        self.killed_at = Some(jiff::Timestamp::now());
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn sigterm(&mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exits cleanly on SIGTERM", self.id);
    }

    /// Every interval (start, end) during which this replica ran a shard's actors, from its own log; a shard
    /// still held at the end runs until the kill, or until now.
    fn holdings(&self) -> Holdings {
        let mut open: HashMap<u32, jiff::Timestamp> = HashMap::new();
        let mut done: Holdings = BTreeMap::new();
        for l in self.lines() {
            let Some(shard) = l["fields"]["shard"].as_u64().map(|s| s as u32) else {
                continue;
            };
            let Some(t) = l["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            else {
                continue;
            };
            match l["fields"]["message"].as_str() {
                Some("shard acquired") => {
                    assert!(
                        open.insert(shard, t).is_none(),
                        "{} acquired shard {shard} twice without giving it up",
                        self.id
                    );
                }
                Some("shard given up") => {
                    let start = open.remove(&shard).unwrap_or_else(|| {
                        panic!("{} gave up shard {shard} it never had", self.id)
                    });
                    done.entry(shard).or_default().push((start, t));
                }
                _ => {}
            }
        }
        let end = self.killed_at.unwrap_or_else(jiff::Timestamp::now);
        for (shard, start) in open {
            done.entry(shard).or_default().push((start, end));
        }
        done
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// No two replicas ever ran one shard's actors at once.
fn assert_exclusive(replicas: &[Replica]) {
    let all: Vec<(String, Holdings)> = replicas
        .iter()
        .map(|r| (r.id.clone(), r.holdings()))
        .collect();
    for shard in 0..SHARDS {
        let mut spans: Vec<(jiff::Timestamp, jiff::Timestamp, &str)> = all
            .iter()
            .flat_map(|(id, h)| {
                h.get(&shard)
                    .into_iter()
                    .flatten()
                    .map(move |(a, b)| (*a, *b, id.as_str()))
            })
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "shard {shard} ran on {} until {} and on {} from {}",
                w[0].2,
                w[0].1,
                w[1].2,
                w[1].0
            );
        }
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    match http.get(url).send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = http.post(url).json(body).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// The shards each replica says it holds (`None` for one that does not answer).
async fn shards(http: &reqwest::Client, r: &Replica) -> Option<BTreeSet<u32>> {
    let (code, body) = get(http, &format!("{}/readiness", r.api)).await;
    if code == 0 {
        return None;
    }
    Some(
        body["shards"]
            .as_array()?
            .iter()
            .filter_map(|s| s.as_u64().map(|s| s as u32))
            .collect(),
    )
}

/// Waits until the live replicas hold every shard between them, each its fair share.
async fn balanced(http: &reqwest::Client, live: &[&Replica]) {
    let fair = SHARDS.div_ceil(live.len() as u32) as usize;
    eventually("shards balanced", LONG, || async {
        let mut union = BTreeSet::new();
        for r in live {
            let s = shards(http, r).await?;
            if s.is_empty() || s.len() > fair {
                return None;
            }
            union.extend(s);
        }
        (union.len() == SHARDS as usize).then_some(())
    })
    .await;
}

fn namespace(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

/// Every deployment's delivered phases, collapsed where a delivery was repeated, are exactly `want`; and a
/// repeated phase is always the same event.
fn assert_callbacks(rx: &Receiver, ids: &[String], want: &[&str]) {
    for id in ids {
        let delivered = rx.delivered(id);
        let mut events: HashMap<String, String> = HashMap::new();
        let mut seq: Vec<String> = vec![];
        for d in &delivered {
            let phase = d.body["phase"].as_str().unwrap_or_default().to_string();
            if let Some(before) = events.insert(phase.clone(), d.event_id.clone()) {
                assert_eq!(
                    before, d.event_id,
                    "{id}: phase {phase} sent twice as two different events"
                );
            }
            if seq.last() != Some(&phase) {
                seq.push(phase);
            }
        }
        assert_eq!(seq, want, "{id}: callbacks out of order or missing");
    }
}

struct Cluster {
    sim: kubesim::KubeSim,
    /// The test's client for the replicas' APIs.
    http: reqwest::Client,
    kube: kube::Client,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

async fn cluster(ready_delay: Duration) -> Cluster {
    let sim = kubesim::start(kubesim::Options {
        ready_delay,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("kidp-replicas-{}", sim.addr().port()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig()).unwrap();
    let kube = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    Cluster {
        sim,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        kube,
        kubeconfig,
        dir,
    }
}

async fn start_replicas(c: &Cluster, ids: &[&str]) -> Vec<Replica> {
    let mut replicas: Vec<Replica> = ids
        .iter()
        .map(|id| Replica::start(id, &c.kubeconfig, &c.dir))
        .collect();
    for r in &mut replicas {
        r.serving().await;
    }
    replicas
}

/// Accepts `PROVISIONS` provisions over `NAMESPACES` namespaces, round-robin over the replicas (every one
/// accepts).
async fn provision_all(
    http: &reqwest::Client,
    replicas: &[&Replica],
    rx: &Receiver,
) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..PROVISIONS {
        let (engine, version) = if i % 2 == 0 {
            ("redis", "7.2")
        } else {
            ("postgresql", "15")
        };
        let body = provision(
            &format!("db-{i}"),
            &namespace(i),
            engine,
            version,
            "small",
            &rx.url,
        );
        let r = replicas[i % replicas.len()];
        let (code, out) = post(http, &format!("{}/v1/provision", r.api), &body).await;
        assert_eq!(code, 202, "{} accepts: {out}", r.id);
        ids.push(out["deploymentId"].as_str().unwrap().to_string());
    }
    ids
}

async fn deprovision_all(
    http: &reqwest::Client,
    replicas: &[&Replica],
    rx: &Receiver,
    ids: &[String],
) {
    for (i, id) in ids.iter().enumerate() {
        let body = json!({"deploymentId": id, "resourceType": "database", "resourceName": format!("db-{i}"),
                          "namespace": namespace(i), "callbackUrl": rx.url});
        let r = replicas[i % replicas.len()];
        let (code, out) = post(http, &format!("{}/v1/deprovision", r.api), &body).await;
        assert_eq!(code, 202, "{} accepts the deprovision: {out}", r.id);
    }
}

fn phase_reached(rx: &Receiver, ids: &[String], phase: &str) -> usize {
    ids.iter()
        .filter(|id| rx.phases(id).iter().any(|p| p == phase))
        .count()
}

async fn all_reach(rx: &Receiver, ids: &[String], phase: &str) {
    eventually(&format!("every deployment {phase}"), LONG, || async {
        (phase_reached(rx, ids, phase) == ids.len()).then_some(())
    })
    .await;
}

async fn nothing_left(kube: &kube::Client) {
    let sts: Api<StatefulSet> = Api::all(kube.clone());
    eventually("no StatefulSet left", LONG, || async {
        sts.list(&ListParams::default())
            .await
            .ok()
            .filter(|l| l.items.is_empty())
            .map(|_| ())
    })
    .await;
}

/// The replica whose shards hold the most deployments not yet Ready.
async fn busiest<'r>(
    http: &reqwest::Client,
    replicas: &'r mut [Replica],
    rx: &Receiver,
    ids: &[String],
) -> &'r mut Replica {
    let mut best = (0, 0usize);
    for (n, r) in replicas.iter().enumerate() {
        let held = shards(http, r).await.unwrap_or_default();
        let pending = ids
            .iter()
            .enumerate()
            .filter(|(i, id)| {
                held.contains(&shard_of(&namespace(*i)))
                    && !rx.phases(id).iter().any(|p| p == "Ready")
            })
            .count();
        if pending > best.1 {
            best = (n, pending);
        }
    }
    assert!(
        best.1 > 0,
        "some work is still in flight when the replica is killed"
    );
    &mut replicas[best.0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_work_and_a_sigkilled_ones_is_resumed() {
    let c = cluster(Duration::from_millis(1500)).await;
    let http = c.http.clone();
    let rx = Receiver::start().await;
    let mut replicas = start_replicas(&c, &["r-a", "r-b"]).await;
    balanced(&http, &replicas.iter().collect::<Vec<_>>()).await;

    let ids = provision_all(&http, &replicas.iter().collect::<Vec<_>>(), &rx).await;
    // Both replicas run deployments: each has told at least one Ready.
    eventually("a few deployments Ready", LONG, || async {
        (phase_reached(&rx, &ids, "Ready") >= 10).then_some(())
    })
    .await;
    let victim = busiest(&http, &mut replicas, &rx, &ids).await;
    let victim_id = victim.id.clone();
    victim.sigkill();
    let survivor: Vec<&Replica> = replicas.iter().filter(|r| r.id != victim_id).collect();
    // The survivor takes every shard once the dead one's Leases expire, and finishes the work.
    balanced(&http, &survivor).await;
    all_reach(&rx, &ids, "Ready").await;

    deprovision_all(&http, &survivor, &rx, &ids).await;
    all_reach(&rx, &ids, "Deleted").await;
    nothing_left(&c.kube).await;
    assert_callbacks(&rx, &ids, &["Provisioning", "Ready", "Deleting", "Deleted"]);
    assert_exclusive(&replicas);

    // A clean stop hands the Leases back at once (no holder, nothing to wait out).
    let survivor_id = survivor[0].id.clone();
    for r in replicas.iter_mut().filter(|r| r.id == survivor_id) {
        r.sigterm();
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(c.kube.clone(), "kidp-system");
    for l in leases.list(&ListParams::default()).await.unwrap().items {
        let name = l.metadata.name.clone().unwrap_or_default();
        if name.starts_with("kidp-broker-shard-") {
            assert_eq!(
                l.spec.and_then(|s| s.holder_identity),
                None,
                "{name} handed back"
            );
        } else {
            assert_eq!(
                name,
                format!("kidp-broker-replica-{victim_id}"),
                "only the killed replica's own Lease is left"
            );
        }
    }
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_and_one_cut_off_from_the_api_server_stops_before_another_takes_over() {
    let c = cluster(Duration::from_millis(1000)).await;
    let http = c.http.clone();
    let rx = Receiver::start().await;
    let replicas = start_replicas(&c, &["r-a", "r-b", "r-c"]).await;
    let all: Vec<&Replica> = replicas.iter().collect();
    balanced(&http, &all).await;

    let ids = provision_all(&http, &all, &rx).await;
    eventually("a few deployments Ready", LONG, || async {
        (phase_reached(&rx, &ids, "Ready") >= 10).then_some(())
    })
    .await;
    let held_by_c = shards(&http, &replicas[2]).await.unwrap();
    assert!(!held_by_c.is_empty());

    // Cut r-c off: every request it makes fails as if the API server were unreachable.
    let cms: Api<ConfigMap> = Api::namespaced(c.kube.clone(), "kube-system");
    let faults: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "kubesim-faults"},
        "data": {"apiErrorRate": "1", "apiErrorCodes": "503", "apiUserAgentMatch": r"\(replica r-c\)"}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &faults).await.unwrap();
    // It stops acting and says it is not ready; the others take its shards and finish the work.
    eventually("r-c gives up every shard", LONG, || async {
        shards(&http, &replicas[2])
            .await
            .filter(BTreeSet::is_empty)
            .map(|_| ())
    })
    .await;
    let (code, body) = get(&http, &format!("{}/readiness", replicas[2].api)).await;
    assert_eq!(code, 503, "a cut-off replica is not ready: {body}");
    balanced(&http, &all[..2]).await;
    all_reach(&rx, &ids, "Ready").await;
    let fenced = replicas[2]
        .lines()
        .iter()
        .filter(|l| l["fields"]["message"] == "shard given up" && l["fields"]["why"] == "fenced")
        .count();
    assert_eq!(fenced, held_by_c.len(), "r-c fenced every shard it held");

    // Healed, it rejoins and gets its share back.
    cms.delete("kubesim-faults", &Default::default())
        .await
        .unwrap();
    balanced(&http, &all).await;
    deprovision_all(&http, &all, &rx, &ids).await;
    all_reach(&rx, &ids, "Deleted").await;
    nothing_left(&c.kube).await;
    assert_callbacks(&rx, &ids, &["Provisioning", "Ready", "Deleting", "Deleted"]);
    assert_exclusive(&replicas);
    drop(replicas);
    c.sim.shutdown().await;
}
