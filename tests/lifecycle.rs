//! The deployment lifecycle end to end: the real broker on kubesim (with its controllers and kubelet) over
//! HTTP, with a real HTTP callback receiver.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Env, Receiver, eventually, provision};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

async fn accept(env: &Env, body: &Value) -> String {
    let (code, resp) = env.post("/v1/provision", body).await;
    assert_eq!(code, 202, "{resp}");
    resp["deploymentId"].as_str().unwrap().to_string()
}

async fn phase_of(env: &Env, id: &str) -> String {
    let (_, st) = env.get(&format!("/v1/status?id={id}")).await;
    st["phase"].as_str().unwrap_or("").to_string()
}

async fn wait_phases(rx: &Receiver, id: &str, want: &[&str]) {
    eventually(&format!("callbacks {want:?} for {id}"), LONG, || async {
        let got = rx.phases(id);
        (got.len() >= want.len()).then_some(got)
    })
    .await;
    let got = rx.phases(id);
    assert_eq!(&got[..want.len()], want, "callbacks arrive in order");
}

fn labels(id: &str) -> ListParams {
    ListParams::default().labels(&format!("kidp.io/deployment-id={id}"))
}

#[tokio::test]
async fn every_engine_reaches_ready_with_callbacks_and_credentials() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    let mut pg = provision("orders-db", "team-a", "postgresql", "15", "medium", &rx.url);
    pg["spec"]["highAvailability"] = json!(true);
    pg["spec"]["backup"] = json!({"enabled": true, "retention": "7d", "schedule": "0 3 * * *"});
    pg["spec"]["encryption"] = json!({"atRest": true, "inTransit": true});
    let cases = [
        (pg, "postgresql", 5432, 3),
        (
            provision("shop-mysql", "team-a", "mysql", "8.4", "small", &rx.url),
            "mysql",
            3306,
            1,
        ),
        (
            provision("events-mongo", "team-a", "mongodb", "7.0", "large", &rx.url),
            "mongodb",
            27017,
            1,
        ),
        (
            provision("cache-redis", "team-a", "redis", "7.2", "xlarge", &rx.url),
            "redis",
            6379,
            1,
        ),
    ];
    let mut ids = vec![];
    for (body, _, _, _) in &cases {
        ids.push(accept(&env, body).await);
    }
    let secrets: Api<Secret> = Api::namespaced(env.kube.clone(), "team-a");
    let sts_api: Api<StatefulSet> = Api::namespaced(env.kube.clone(), "team-a");
    for ((body, engine, port, replicas), id) in cases.iter().zip(&ids) {
        let name = body["resourceName"].as_str().unwrap();
        wait_phases(&rx, id, &["Provisioning", "Ready"]).await;
        let ready = rx
            .delivered(id)
            .into_iter()
            .find(|r| r.body["phase"] == "Ready")
            .unwrap();
        let b = &ready.body;
        assert_eq!(b["deploymentId"], *id);
        assert_eq!(b["resourceType"], "database");
        assert_eq!(b["resourceName"], name);
        assert_eq!(b["namespace"], "team-a");
        assert_eq!(b["endpoint"], format!("{name}.team-a.svc.cluster.local"));
        assert_eq!(b["port"], *port);
        assert_eq!(b["connectionSecret"], format!("{name}-credentials"));
        assert_eq!(b["additionalMetadata"]["engine"], *engine);
        assert_eq!(b["additionalMetadata"]["version"], body["spec"]["version"]);
        assert!(b["estimatedMonthlyCost"].as_f64().unwrap() > 0.0);
        assert!(b["time"].as_str().unwrap().ends_with('Z'));
        assert!(b["message"].as_str().is_some());
        assert!(ready.event_id.starts_with("evt-"));

        let secret = secrets.get(&format!("{name}-credentials")).await.unwrap();
        let data = secret.data.unwrap();
        let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
        keys.retain(|k| *k != "ca.crt");
        assert_eq!(
            keys,
            vec!["database", "host", "password", "port", "uri", "username"]
        );
        assert_eq!(
            String::from_utf8(data["port"].0.clone()).unwrap(),
            port.to_string()
        );
        assert!(data["password"].0.len() >= 16);
        assert_eq!(
            data.contains_key("ca.crt"),
            *engine == "postgresql",
            "ca.crt only with TLS"
        );

        let sts = sts_api.get(name).await.unwrap();
        assert_eq!(sts.spec.replicas, Some(*replicas));
        assert_eq!(phase_of(&env, id).await, "Ready");

        let (_, res) = env
            .get(&format!(
                "/v1/resources?namespace=team-a&resourceName={name}"
            ))
            .await;
        let r = &res["resources"][0];
        assert_eq!(r["phase"], "Ready");
        assert_eq!(r["healthStatus"], "Healthy");
        assert_eq!(r["driftDetected"], false, "{r}");
        assert_eq!(r["actualSpec"]["version"], body["spec"]["version"]);
        assert_eq!(r["actualSpec"]["size"], body["spec"]["size"]);
        assert_eq!(r["endpoint"], format!("{name}.team-a.svc.cluster.local"));
        assert_eq!(
            r["estimatedMonthlyCost"], b["estimatedMonthlyCost"],
            "the callback and the state report the same cost"
        );
    }
    // HA, backup and TLS objects for postgres.
    let pdb: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.kube.clone(),
        "team-a",
        &kube::api::ApiResource::erase::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(&()),
    );
    assert!(pdb.get("orders-db").await.is_ok());
    let cj: Api<k8s_openapi::api::batch::v1::CronJob> = Api::namespaced(env.kube.clone(), "team-a");
    assert_eq!(
        cj.get("orders-db-backup").await.unwrap().spec.schedule,
        "0 3 * * *"
    );
    assert!(secrets.get("orders-db-tls").await.is_ok());
    env.stop().await;
}

#[tokio::test]
async fn namespace_throttle_keeps_ten_provisioning_in_fifo_order() {
    let rx = Receiver::start().await;
    // Pods take a second, so that a queue forms while the 25 requests arrive.
    let sim = kubesim::start(kubesim::Options {
        ready_delay: Duration::from_millis(1000),
        ..Default::default()
    })
    .await
    .unwrap();
    let env = common::start_against(
        sim,
        &[
            "--callback-initial-backoff-ms",
            "50",
            "--resync-seconds",
            "1",
        ],
    )
    .await;
    let sts: Api<StatefulSet> = Api::namespaced(env.kube.clone(), "busy");
    // Watch what kubesim sees: StatefulSets created but not yet ready.
    let watch_api = sts.clone();
    let observer = tokio::spawn(async move {
        use futures::StreamExt;
        let mut created: Vec<String> = vec![];
        let mut unready: std::collections::BTreeSet<String> = Default::default();
        let mut max = 0;
        let stream = kube::runtime::watcher(watch_api, kube::runtime::watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let Ok(kube::runtime::watcher::Event::Apply(s)) = ev else {
                continue;
            };
            let name = s.metadata.name.clone().unwrap();
            if !created.contains(&name) {
                created.push(name.clone());
            }
            let ready = s
                .status
                .as_ref()
                .and_then(|st| st.ready_replicas)
                .unwrap_or(0)
                >= 1;
            if ready {
                unready.remove(&name);
            } else {
                unready.insert(name);
            }
            max = max.max(unready.len());
            if created.len() == 25 && unready.is_empty() {
                return (created, max);
            }
        }
        (created, max)
    });
    let mut ids = vec![];
    for i in 0..25 {
        ids.push(
            accept(
                &env,
                &provision(
                    &format!("db-{i:02}"),
                    "busy",
                    "redis",
                    "7.2",
                    "small",
                    &rx.url,
                ),
            )
            .await,
        );
    }
    // Someone is told they are queued, with their position.
    let queued = eventually("a queued status", LONG, || async {
        for id in &ids {
            let (_, st) = env.get(&format!("/v1/status?id={id}")).await;
            let m = st["message"].as_str().unwrap_or("").to_string();
            if m.starts_with("Queued: position") {
                return Some(m);
            }
        }
        None
    })
    .await;
    assert!(
        queued.contains("in namespace busy (at most 10 provision at once)"),
        "{queued}"
    );
    let (created, max) = tokio::time::timeout(LONG, observer).await.unwrap().unwrap();
    assert!(max <= 10, "kubesim saw {max} provisioning at once");
    // Permits are granted in acceptance order. Deployments granted in the same instant (several permits returned
    // together on a busy machine) apply concurrently, so their StatefulSets may appear in any order among
    // themselves: allow a displacement of a few positions, never a late request overtaking a whole wave.
    assert_eq!(created.len(), 25);
    let mut first_wave: Vec<String> = created[..10].to_vec();
    first_wave.sort();
    let want: Vec<String> = (0..10).map(|i| format!("db-{i:02}")).collect();
    assert_eq!(
        first_wave, want,
        "the first ten accepted start first: {created:?}"
    );
    for (pos, name) in created.iter().enumerate() {
        let k: usize = name[3..].parse().unwrap();
        assert!(
            pos.abs_diff(k) <= 2,
            "{name} started at position {pos}: {created:?}"
        );
    }
    for id in &ids {
        wait_phases(&rx, id, &["Provisioning", "Ready"]).await;
    }
    env.stop().await;
}

async fn set_faults(env: &Env, data: BTreeMap<&str, &str>) {
    let cms: Api<ConfigMap> = Api::namespaced(env.kube.clone(), "kube-system");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubesim-faults"}, "data": data});
    cms.patch(
        "kubesim-faults",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn image_pull_and_crash_loop_faults_fail_the_deployment() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    set_faults(
        &env,
        BTreeMap::from([
            ("imagePullFailure", "^faulty/pull-db-.*"),
            ("crashLoop", "^faulty/crash-db-.*"),
        ]),
    )
    .await;
    let pull = accept(
        &env,
        &provision("pull-db", "faulty", "postgresql", "16", "small", &rx.url),
    )
    .await;
    let crash = accept(
        &env,
        &provision("crash-db", "faulty", "mysql", "8.4", "small", &rx.url),
    )
    .await;
    wait_phases(&rx, &pull, &["Provisioning", "Failed"]).await;
    wait_phases(&rx, &crash, &["Provisioning", "Failed"]).await;
    let failed = |id: &str| {
        rx.delivered(id)
            .into_iter()
            .find(|r| r.body["phase"] == "Failed")
            .unwrap()
            .body["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let m = failed(&pull);
    assert!(
        m.contains("pull-db-0") && (m.contains("ImagePullBackOff") || m.contains("ErrImagePull")),
        "{m}"
    );
    let m = failed(&crash);
    assert!(
        m.contains("crash-db-0") && m.contains("CrashLoopBackOff"),
        "{m}"
    );
    let (_, st) = env.get(&format!("/v1/status?id={pull}")).await;
    assert_eq!(st["phase"], "Failed");
    env.stop().await;
}

#[tokio::test]
async fn scaling_a_managed_statefulset_is_reported_as_drift() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    let id = accept(
        &env,
        &provision("drifty", "team-d", "postgresql", "15", "small", &rx.url),
    )
    .await;
    wait_phases(&rx, &id, &["Provisioning", "Ready"]).await;
    let before = drift_counter(&env).await;
    let sts: Api<StatefulSet> = Api::namespaced(env.kube.clone(), "team-d");
    sts.patch_scale(
        "drifty",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let r = eventually("drift reported", LONG, || async {
        let (_, res) = env
            .get("/v1/resources?namespace=team-d&resourceName=drifty")
            .await;
        let r = res["resources"][0].clone();
        (r["driftDetected"] == true).then_some(r)
    })
    .await;
    let details: Vec<&str> = r["driftDetails"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        details,
        vec!["Replica mismatch: desired=1, actual=2"],
        "{r}"
    );
    eventually("drift counter moved", LONG, || async {
        (drift_counter(&env).await > before).then_some(())
    })
    .await;
    env.stop().await;
}

async fn drift_counter(env: &Env) -> f64 {
    let m = env.metrics().await;
    m.lines()
        .filter(|l| {
            l.starts_with("broker_drift_detected_total{") && l.contains("namespace=\"team-d\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn deprovision_removes_everything_and_reports_deleted() {
    let rx = Receiver::start().await;
    let env = common::start_fast(&[]).await;
    let mut body = provision("gone-db", "team-g", "postgresql", "15", "small", &rx.url);
    body["spec"]["backup"] = json!({"enabled": true});
    let id = accept(&env, &body).await;
    wait_phases(&rx, &id, &["Provisioning", "Ready"]).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.kube.clone(), "team-g");
    assert!(
        !pvcs.list(&labels(&id)).await.unwrap().items.is_empty(),
        "volumes exist before"
    );
    let (code, _) = env
        .post(
            "/v1/deprovision",
            &json!({"deploymentId": id, "resourceType": "database", "resourceName": "gone-db", "namespace": "team-g", "callbackUrl": rx.url}),
        )
        .await;
    assert_eq!(code, 202);
    wait_phases(&rx, &id, &["Provisioning", "Ready", "Deleting", "Deleted"]).await;
    eventually("record gone", LONG, || async {
        let (code, _) = env.get(&format!("/v1/status?id={id}")).await;
        (code == 404).then_some(())
    })
    .await;
    let ns = "team-g";
    assert!(
        pvcs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "PVCs gone"
    );
    let pods: Api<Pod> = Api::namespaced(env.kube.clone(), ns);
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "pods gone"
    );
    let svcs: Api<Service> = Api::namespaced(env.kube.clone(), ns);
    assert!(
        svcs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "services gone"
    );
    let secrets: Api<Secret> = Api::namespaced(env.kube.clone(), ns);
    assert!(
        secrets.list(&labels(&id)).await.unwrap().items.is_empty(),
        "secrets gone"
    );
    let sts: Api<StatefulSet> = Api::namespaced(env.kube.clone(), ns);
    assert!(
        sts.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    env.stop().await;
}

#[tokio::test]
async fn a_restarted_broker_finishes_the_work_and_owes_no_callback() {
    let rx = Receiver::start().await;
    // Slow pods, so the first broker stops mid-provisioning.
    let sim = kubesim::start(kubesim::Options {
        ready_delay: Duration::from_millis(1500),
        ..Default::default()
    })
    .await
    .unwrap();
    let url = sim.url();
    let fast = [
        "--failure-grace-seconds",
        "30",
        "--callback-initial-backoff-ms",
        "50",
        "--resync-seconds",
        "1",
    ];
    let env = common::start_against(sim, &fast).await;
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(
            accept(
                &env,
                &provision(
                    &format!("r-{i}"),
                    "team-r",
                    "redis",
                    "7.2",
                    "small",
                    &rx.url,
                ),
            )
            .await,
        );
    }
    eventually("work started", LONG, || async {
        (!rx.phases(&ids[0]).is_empty()).then_some(())
    })
    .await;
    // Stop the broker, keep kubesim.
    let Env { sim, broker, .. } = env;
    broker.shutdown().await;
    let sim = sim.unwrap();
    assert_eq!(sim.url(), url);
    let env = common::start_against(sim, &fast).await;
    for id in &ids {
        wait_phases(&rx, id, &["Provisioning", "Ready"]).await;
        assert_eq!(phase_of(&env, id).await, "Ready");
    }
    let sts: Api<StatefulSet> = Api::namespaced(env.kube.clone(), "team-r");
    assert_eq!(
        sts.list(&ListParams::default()).await.unwrap().items.len(),
        6,
        "no duplicate workloads"
    );
    let svcs: Api<Service> = Api::namespaced(env.kube.clone(), "team-r");
    assert_eq!(
        svcs.list(&ListParams::default()).await.unwrap().items.len(),
        12,
        "client + headless each"
    );
    // Each phase was delivered, and the record says so.
    let records = common::records(&env, "team-r");
    eventually("lastNotifiedPhase persisted", LONG, || async {
        let all = records.list(&ListParams::default()).await.ok()?;
        all.items
            .iter()
            .all(|r| r.data["status"]["lastNotifiedPhase"] == "Ready")
            .then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test]
async fn callbacks_retry_with_growing_intervals_until_delivered_in_order() {
    let rx = Receiver::start().await;
    rx.fail_next.store(5, std::sync::atomic::Ordering::SeqCst);
    let env = common::start_fast(&["--callback-signing-secret", "s3cret"]).await;
    let id = accept(
        &env,
        &provision("flaky", "team-f", "redis", "7.2", "small", &rx.url),
    )
    .await;
    wait_phases(&rx, &id, &["Provisioning", "Ready"]).await;
    let attempts = rx.attempts(&id);
    let provisioning: Vec<_> = attempts
        .iter()
        .filter(|a| a.body["phase"] == "Provisioning")
        .collect();
    assert_eq!(provisioning.len(), 6, "five 503s, then delivered");
    let numbers: Vec<u32> = provisioning.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6]);
    assert!(
        provisioning
            .iter()
            .all(|a| a.event_id == provisioning[0].event_id),
        "same event id on every attempt"
    );
    let gaps: Vec<Duration> = provisioning.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[3] > gaps[0], "intervals grow: {gaps:?}");
    assert!(gaps[4] > gaps[1], "intervals grow: {gaps:?}");
    // Ready was not sent before Provisioning was delivered.
    let first_ready = attempts
        .iter()
        .position(|a| a.body["phase"] == "Ready")
        .unwrap();
    let last_prov = attempts
        .iter()
        .rposition(|a| a.body["phase"] == "Provisioning")
        .unwrap();
    assert!(first_ready > last_prov);
    // Signed: sha256=HMAC(secret, "<timestamp>.<body>").
    let r = &rx.delivered(&id)[0];
    let ts = r.timestamp.clone().unwrap();
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.raw);
    assert_eq!(
        r.signature.clone().unwrap(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    env.stop().await;
}

#[tokio::test]
async fn a_deprovision_to_an_unreachable_manager_still_finishes_after_the_delivery_lifetime() {
    let env = common::start_fast(&["--callback-delivery-lifetime-seconds", "2"]).await;
    // Nothing listens on port 9 here: every attempt is refused, like the reference's `http://manager:9090`.
    let dead = "http://127.0.0.1:9/v1/callback";
    let id = accept(
        &env,
        &provision("lonely", "team-u", "redis", "7.2", "small", dead),
    )
    .await;
    eventually("Ready", LONG, || async {
        (phase_of(&env, &id).await == "Ready").then_some(())
    })
    .await;
    let (code, resp) = env
        .post(
            "/v1/deprovision",
            &json!({"deploymentId": id, "resourceType": "database", "resourceName": "lonely", "namespace": "team-u", "callbackUrl": dead}),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    eventually(
        "record gone despite undeliverable callbacks",
        LONG,
        || async {
            let (code, _) = env.get(&format!("/v1/status?id={id}")).await;
            (code == 404).then_some(())
        },
    )
    .await;
    let m = env.metrics().await;
    let abandoned: f64 = m
        .lines()
        .filter(|l| l.starts_with("broker_callbacks_total{") && l.contains("result=\"abandoned\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        abandoned >= 4.0,
        "Provisioning, Ready, Deleting and Deleted abandoned:\n{m}"
    );
    env.stop().await;
}
