//! kubectl against kubesim: the commands a person uses on a cluster, asserted on kubectl's own output.
//!
//! kubectl ships with the machine image (a dispatcher that runs the client matching the server's minor version);
//! these tests fail, not skip, when it is missing.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Kubectl {
    kubeconfig: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(sim: &kubesim::KubeSim) -> Self {
        let dir = std::env::temp_dir().join(format!("kubesim-kubectl-{}", sim.addr().port()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("config");
        std::fs::write(&kubeconfig, sim.kubeconfig()).unwrap();
        Kubectl { kubeconfig }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.kubeconfig.parent().unwrap())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("kubectl is installed");
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut si = child.stdin.take().unwrap();
            si.write_all(input.as_bytes()).await.unwrap();
        }
        drop(child.stdin.take());
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finishes within 60s")
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(args, stdin).await;
        assert_eq!(
            o.code, 0,
            "kubectl {args:?} failed: {}{}",
            o.stdout, o.stderr
        );
        o.stdout
    }
}

const STS: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: demo
spec:
  serviceName: web
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
"#;

#[tokio::test]
async fn kubectl_get_apply_describe_patch_scale() {
    let s = common::start().await;
    let k = Kubectl::new(&s.sim);

    let version = k.ok(&["version"], None).await;
    assert!(version.contains("Server Version: v1.33"), "{version}");

    let ns = k.ok(&["get", "namespaces"], None).await;
    let header: Vec<&str> = ns.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "STATUS", "AGE"]);
    assert!(
        ns.lines()
            .any(|l| l.starts_with("default") && l.contains("Active")),
        "{ns}"
    );

    k.ok(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n"),
    )
    .await;
    let applied = k
        .ok(&["apply", "--server-side", "-f", "-"], Some(STS))
        .await;
    assert_eq!(applied.trim(), "statefulset.apps/web serverside-applied");
    // Applying the same file again is a no-op and says so the same way.
    let again = k
        .ok(&["apply", "--server-side", "-f", "-"], Some(STS))
        .await;
    assert_eq!(again.trim(), "statefulset.apps/web serverside-applied");

    let table = k.ok(&["get", "statefulsets", "-n", "demo"], None).await;
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        vec!["NAME", "READY", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], &["web", "0/2"]);

    let yaml = k
        .ok(&["get", "sts", "web", "-n", "demo", "-o", "yaml"], None)
        .await;
    assert!(yaml.contains("kind: StatefulSet"), "{yaml}");
    assert!(
        yaml.contains("podManagementPolicy: OrderedReady"),
        "defaults are visible: {yaml}"
    );
    assert!(yaml.contains("resourceVersion:"), "{yaml}");

    let described = k
        .ok(&["describe", "statefulset", "web", "-n", "demo"], None)
        .await;
    assert!(described.contains("Name:               web"), "{described}");
    assert!(
        described.contains("Replicas:           2 desired"),
        "{described}"
    );
    assert!(
        described.contains("Image:         nginx:1.27"),
        "{described}"
    );

    let p = k
        .ok(
            &[
                "patch",
                "sts",
                "web",
                "-n",
                "demo",
                "-p",
                r#"{"metadata":{"labels":{"tier":"db"}}}"#,
            ],
            None,
        )
        .await;
    assert_eq!(p.trim(), "statefulset.apps/web patched");
    k.ok(
        &[
            "patch",
            "sts",
            "web",
            "-n",
            "demo",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
        ],
        None,
    )
    .await;
    let jp = k
        .ok(
            &[
                "get",
                "sts",
                "web",
                "-n",
                "demo",
                "-o",
                "jsonpath={.spec.replicas} {.metadata.labels.tier}",
            ],
            None,
        )
        .await;
    assert_eq!(jp, "3 db");

    let scaled = k
        .ok(&["scale", "sts", "web", "-n", "demo", "--replicas=1"], None)
        .await;
    assert_eq!(scaled.trim(), "statefulset.apps/web scaled");
    let jp = k
        .ok(
            &[
                "get",
                "sts",
                "web",
                "-n",
                "demo",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
            None,
        )
        .await;
    assert_eq!(jp, "1");

    let missing = k
        .run(&["get", "configmap", "nope", "-n", "demo"], None)
        .await;
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr.trim(),
        "Error from server (NotFound): configmaps \"nope\" not found"
    );

    let resources = k.ok(&["api-resources"], None).await;
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("statefulsets") && l.contains("sts") && l.contains("apps/v1")),
        "{resources}"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn kubectl_delete_waits_until_the_object_is_gone() {
    let s = common::start().await;
    let k = Kubectl::new(&s.sim);
    k.ok(
        &["apply", "--server-side", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: default\n  finalizers: [example.com/hold]\ndata:\n  a: b\n"),
    )
    .await;
    let mut child = k
        .cmd(&["delete", "configmap", "held", "--timeout=60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    common::eventually("deletion started", Duration::from_secs(10), || async {
        api.get("held")
            .await
            .ok()?
            .metadata
            .deletion_timestamp
            .map(|_| ())
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "kubectl delete waits while the finalizer holds the object"
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kubectl delete returns once the object is gone")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap \"held\" deleted"
    );
    assert!(api.get_opt("held").await.unwrap().is_none());
    s.sim.shutdown().await;
}

#[tokio::test]
async fn kubectl_get_watch_sees_changes() {
    let s = common::start().await;
    let k = Kubectl::new(&s.sim);
    let mut child = k
        .cmd(&["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "watched"}, "data": {"a": "1"}}))
            .unwrap();
    // The watch may start after the create: either way kubectl prints the object as ADDED.
    api.create(&Default::default(), &cm).await.unwrap();
    let mut seen = vec![];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut patched = false;
    while seen.len() < 2 {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("kubectl prints the events within 30s")
            .unwrap()
            .expect("kubectl keeps the stream open");
        let cols: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if cols.first().map(String::as_str) == Some("EVENT") {
            continue;
        }
        if cols.get(1).map(String::as_str) == Some("watched") {
            seen.push(cols[0].clone());
            if !patched {
                api.patch(
                    "watched",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"b": "2"}})),
                )
                .await
                .unwrap();
                patched = true;
            }
        }
    }
    assert_eq!(seen, vec!["ADDED", "MODIFIED"]);
    child.kill().await.unwrap();
    s.sim.shutdown().await;
}

#[tokio::test]
async fn kubectl_top_pod_prints_usage() {
    use k8s_openapi::api::core::v1::Pod;
    let s = common::start().await;
    let k = Kubectl::new(&s.sim);
    // `kubectl create namespace` sends protobuf, which kubesim does not speak; a manifest goes as JSON.
    k.ok(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: top-demo\n"),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "top-demo");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "db-0"},
        "spec": {"containers": [{"name": "db", "image": "postgres:16",
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}
    }))
    .unwrap();
    pods.create(&Default::default(), &pod).await.unwrap();
    // Running as a kubelet would report it (harmless when kubesim's own kubelet does the same).
    pods.patch_status(
        "db-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let metrics: Api<kube::api::DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        "top-demo",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
            "pods",
        ),
    );
    common::eventually(
        "metrics for the Running pod",
        Duration::from_secs(10),
        || {
            let metrics = metrics.clone();
            async move { metrics.get("db-0").await.ok() }
        },
    )
    .await;

    let out = k.ok(&["top", "pod", "-n", "top-demo"], None).await;
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        vec!["NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "db-0", "{out}");
    // 20–60 % of 500m and of 512Mi, as kubectl rounds them (millicores, MiB).
    let millis: u64 = row[1].strip_suffix('m').unwrap().parse().unwrap();
    assert!((100..=300).contains(&millis), "{out}");
    let mib: u64 = row[2].strip_suffix("Mi").unwrap().parse().unwrap();
    assert!((102..=308).contains(&mib), "{out}");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn kubectl_rollout_status_waits_for_a_statefulset() {
    let s = common::start_with(kubesim::Options {
        ready_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let k = Kubectl::new(&s.sim);
    k.ok(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n"),
    )
    .await;
    k.ok(&["apply", "--server-side", "-f", "-"], Some(STS))
        .await;
    let out = k
        .run(
            &[
                "rollout",
                "status",
                "statefulset/web",
                "-n",
                "demo",
                "--timeout=60s",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("partitioned roll out complete")
            || out.stdout.contains("roll out complete"),
        "{}",
        out.stdout
    );
    let ready = k
        .ok(
            &[
                "get",
                "sts",
                "web",
                "-n",
                "demo",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
            None,
        )
        .await;
    assert_eq!(ready, "2");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn kubectl_auth_whoami_can_i_and_service_account_tokens_under_rbac() {
    // kubectl sends credentials only over TLS, so RBAC is tried as a user would run it: --tls --authorization rbac.
    let s = common::start_with(kubesim::Options {
        authorization: kubesim::Authorization::Rbac,
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(s.sim.url().starts_with("https://"));
    let k = Kubectl::new(&s.sim);
    let me = k.ok(&["auth", "whoami"], None).await;
    assert!(
        me.contains("kubesim-admin") && me.contains("system:masters"),
        "{me}"
    );
    assert_eq!(
        k.ok(&["auth", "can-i", "delete", "nodes"], None)
            .await
            .trim(),
        "yes"
    );
    k.ok(&["create", "namespace", "team"], None).await;
    k.ok(&["create", "serviceaccount", "ci", "-n", "team"], None)
        .await;
    let token = k.ok(&["create", "token", "ci", "-n", "team"], None).await;
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let as_ci = |args: &[&str]| {
        let mut v = vec![format!("--token={token}")];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    let run = |args: Vec<String>| {
        let k = &k;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            k.run(&refs, None).await
        }
    };
    let who = run(as_ci(&["auth", "whoami"])).await;
    assert_eq!(who.code, 0, "{}", who.stderr);
    assert!(who.stdout.contains("system:serviceaccount:team:ci"));
    assert!(who.stdout.contains("system:serviceaccounts:team"));

    // No: the answer and the exit code; and the real request is refused in upstream's words.
    let no = run(as_ci(&["auth", "can-i", "list", "pods", "-n", "team"])).await;
    assert_eq!((no.code, no.stdout.trim()), (1, "no"));
    let denied = run(as_ci(&["get", "pods", "-n", "team"])).await;
    assert_ne!(denied.code, 0);
    assert!(
        denied.stderr.contains(
            "Error from server (Forbidden): pods is forbidden: User \"system:serviceaccount:team:ci\" cannot list resource \"pods\" in API group \"\" in the namespace \"team\""
        ),
        "{}",
        denied.stderr
    );

    // Yes, once bound to view; view still does not delete.
    k.ok(
        &[
            "create",
            "rolebinding",
            "ci-view",
            "--clusterrole=view",
            "--serviceaccount=team:ci",
            "-n",
            "team",
        ],
        None,
    )
    .await;
    let yes = run(as_ci(&["auth", "can-i", "list", "pods", "-n", "team"])).await;
    assert_eq!((yes.code, yes.stdout.trim()), (0, "yes"));
    let listed = run(as_ci(&["get", "pods", "-n", "team"])).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let impersonated = k
        .run(
            &[
                "auth",
                "can-i",
                "delete",
                "pods",
                "-n",
                "team",
                "--as=system:serviceaccount:team:ci",
            ],
            None,
        )
        .await;
    assert_eq!((impersonated.code, impersonated.stdout.trim()), (1, "no"));
    let rules = run(as_ci(&["auth", "can-i", "--list", "-n", "team"])).await;
    assert!(
        rules
            .stdout
            .lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{}",
        rules.stdout
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn kubectl_explain_and_the_storage_printers() {
    let s = common::start().await;
    let k = Kubectl::new(&s.sim);
    let explain = k.ok(&["explain", "deployment.spec.strategy"], None).await;
    for want in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "rollingUpdate\t<RollingUpdateDeployment>",
        "type\t<string>",
    ] {
        assert!(explain.contains(want), "{want:?} in:\n{explain}");
    }
    let image = k.ok(&["explain", "pod.spec.containers.image"], None).await;
    assert!(image.contains("Container image name."), "{image}");
    let recursive = k
        .ok(&["explain", "statefulset.spec", "--recursive"], None)
        .await;
    assert!(
        recursive.contains("volumeClaimTemplates") && recursive.contains("podManagementPolicy"),
        "{recursive}"
    );
    let missing = k.run(&["explain", "deployment.spec.nonsense"], None).await;
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("nonsense"), "{}", missing.stderr);

    // StorageClasses and PersistentVolumes print upstream's columns.
    k.ok(
        &["apply", "-f", "-"],
        Some(
            r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubesim.io/hostpath
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-1}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: fast
  hostPath: {path: /tmp/pv-1}
"#,
        ),
    )
    .await;
    let sc = k.ok(&["get", "sc"], None).await;
    let mut lines = sc.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let fast: Vec<&str> = sc
        .lines()
        .find(|l| l.starts_with("fast"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        &fast[..6],
        [
            "fast",
            "(default)",
            "kubesim.io/hostpath",
            "Delete",
            "WaitForFirstConsumer",
            "true"
        ]
    );
    let pv = k.ok(&["get", "pv"], None).await;
    let header: Vec<&str> = pv.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "RECLAIM",
            "POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    let row: Vec<&str> = pv.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["pv-1", "5Gi", "RWO,ROX", "Retain"]);
    assert!(row.contains(&"fast") && row.contains(&"<unset>"), "{row:?}");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn kubectl_generators_send_protobuf_and_are_understood() {
    let s = common::start().await;
    let k = Kubectl::new(&s.sim);

    // The first thing a newcomer types.
    let out = k.ok(&["create", "namespace", "demo"], None).await;
    assert_eq!(out.trim(), "namespace/demo created");
    let ns = k
        .ok(&["get", "namespace", "demo", "-o", "json"], None)
        .await;
    let ns: serde_json::Value = serde_json::from_str(&ns).unwrap();
    assert_eq!(ns["status"]["phase"], "Active");

    let out = k
        .ok(
            &[
                "create",
                "configmap",
                "settings",
                "-n",
                "demo",
                "--from-literal=mode=fast",
                "--from-literal=level=3",
            ],
            None,
        )
        .await;
    assert_eq!(out.trim(), "configmap/settings created");
    let cm: serde_json::Value = serde_json::from_str(
        &k.ok(&["get", "cm", "settings", "-n", "demo", "-o", "json"], None)
            .await,
    )
    .unwrap();
    assert_eq!(
        cm["data"],
        serde_json::json!({"mode": "fast", "level": "3"})
    );
    // Go's zero values on the wire are not stored as values.
    assert!(cm["metadata"].get("generateName").is_none(), "{cm}");
    assert!(cm["metadata"]["creationTimestamp"].is_string(), "{cm}");

    let out = k
        .ok(
            &[
                "create",
                "secret",
                "generic",
                "creds",
                "-n",
                "demo",
                "--from-literal=password=s3cret",
            ],
            None,
        )
        .await;
    assert_eq!(out.trim(), "secret/creds created");
    let secret: serde_json::Value = serde_json::from_str(
        &k.ok(
            &["get", "secret", "creds", "-n", "demo", "-o", "json"],
            None,
        )
        .await,
    )
    .unwrap();
    assert_eq!(secret["data"]["password"], "czNjcmV0");
    assert_eq!(secret["type"], "Opaque");

    let out = k
        .ok(
            &[
                "create",
                "deployment",
                "web",
                "-n",
                "demo",
                "--image=nginx:1.27",
                "--replicas=2",
                "--port=80",
            ],
            None,
        )
        .await;
    assert_eq!(out.trim(), "deployment.apps/web created");
    let d: serde_json::Value = serde_json::from_str(
        &k.ok(
            &["get", "deployment", "web", "-n", "demo", "-o", "json"],
            None,
        )
        .await,
    )
    .unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );

    let out = k
        .ok(
            &[
                "run",
                "shell",
                "-n",
                "demo",
                "--image=busybox:1.36",
                "--",
                "sleep",
                "3600",
            ],
            None,
        )
        .await;
    assert_eq!(out.trim(), "pod/shell created");
    let p: serde_json::Value = serde_json::from_str(
        &k.ok(&["get", "pod", "shell", "-n", "demo", "-o", "json"], None)
            .await,
    )
    .unwrap();
    assert_eq!(
        p["spec"]["containers"][0]["args"],
        serde_json::json!(["sleep", "3600"])
    );
    assert_eq!(p["metadata"]["labels"]["run"], "shell");

    // The pods of the deployment come up as usual.
    common::eventually(
        "the deployment's pods ready",
        std::time::Duration::from_secs(20),
        || {
            let k = &k;
            async move {
                let d = k
                    .ok(
                        &["get", "deployment", "web", "-n", "demo", "-o", "json"],
                        None,
                    )
                    .await;
                let d: serde_json::Value = serde_json::from_str(&d).ok()?;
                (d["status"]["readyReplicas"] == 2).then_some(())
            }
        },
    )
    .await;

    // What happened, as kubectl tells it: Events from the scheduler, the kubelet and the controllers.
    common::eventually(
        "the shell pod started",
        std::time::Duration::from_secs(20),
        || {
            let k = &k;
            async move {
                let p = k
                    .ok(&["get", "pod", "shell", "-n", "demo", "-o", "json"], None)
                    .await;
                let p: serde_json::Value = serde_json::from_str(&p).ok()?;
                (p["status"]["phase"] == "Running").then_some(())
            }
        },
    )
    .await;
    let events = k.ok(&["events", "-n", "demo"], None).await;
    for want in [
        "Scheduled",
        "Successfully assigned demo/shell to kubesim-node",
        "Pulling",
        "Started container shell",
        "ScalingReplicaSet",
        "SuccessfulCreate",
    ] {
        assert!(events.contains(want), "{want} missing from:\n{events}");
    }
    let described = k
        .ok(&["describe", "pod", "shell", "-n", "demo"], None)
        .await;
    let tail = described
        .split("Events:")
        .nth(1)
        .expect("an Events section");
    assert!(
        tail.contains("Scheduled") && tail.contains("Created container: shell"),
        "{described}"
    );
    let modern = k
        .ok(
            &["get", "events.events.k8s.io", "-n", "demo", "-o", "json"],
            None,
        )
        .await;
    assert!(
        modern.contains("\"reportingController\": \"kubelet\""),
        "{modern}"
    );

    // And what the container said.
    let logs = k.ok(&["logs", "shell", "-n", "demo"], None).await;
    assert_eq!(
        logs,
        "kubesim: container shell started (image docker.io/library/busybox:1.36)\nkubesim: container shell is ready\n"
    );
    let stamped = k
        .ok(
            &["logs", "shell", "-n", "demo", "--timestamps", "--tail=1"],
            None,
        )
        .await;
    assert!(
        stamped.ends_with("Z kubesim: container shell is ready\n"),
        "{stamped}"
    );
}

#[tokio::test]
async fn kubectl_rollout_history_and_undo_reuse_the_old_replicaset() {
    let s = common::start().await;
    let k = Kubectl::new(&s.sim);
    k.ok(&["create", "deployment", "web", "--image=nginx:1.27"], None)
        .await;
    k.ok(
        &[
            "annotate",
            "deployment",
            "web",
            "kubernetes.io/change-cause=first release",
        ],
        None,
    )
    .await;
    let rs_count = || async {
        let out = k.ok(&["get", "rs", "-o", "name"], None).await;
        out.lines()
            .filter(|l| l.starts_with("replicaset.apps/web-"))
            .count()
    };
    common::eventually(
        "the first change-cause on its ReplicaSet",
        Duration::from_secs(10),
        || async {
            let h = k.ok(&["rollout", "history", "deployment/web"], None).await;
            h.contains("first release").then_some(())
        },
    )
    .await;
    k.ok(
        &["set", "image", "deployment/web", "nginx=nginx:1.28"],
        None,
    )
    .await;
    k.ok(
        &[
            "annotate",
            "--overwrite",
            "deployment",
            "web",
            "kubernetes.io/change-cause=second release",
        ],
        None,
    )
    .await;
    let history = common::eventually("two revisions", Duration::from_secs(10), || async {
        let h = k.ok(&["rollout", "history", "deployment/web"], None).await;
        (h.contains("second release") && h.contains("first release")).then_some(h)
    })
    .await;
    let rows: Vec<&str> = history
        .lines()
        .filter(|l| l.starts_with(['1', '2']))
        .collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!(rs_count().await, 2);

    // Undo goes back to revision 1's template, so its ReplicaSet is reused as revision 3: no third one.
    let out = k.ok(&["rollout", "undo", "deployment/web"], None).await;
    assert_eq!(out.trim(), "deployment.apps/web rolled back");
    common::eventually(
        "revision 3 is the first template",
        Duration::from_secs(10),
        || async {
            let h = k.ok(&["rollout", "history", "deployment/web"], None).await;
            let third = h.lines().find(|l| l.starts_with('3'))?.to_string();
            third.contains("first release").then_some(())
        },
    )
    .await;
    assert_eq!(rs_count().await, 2);
    let image = k
        .ok(
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
            None,
        )
        .await;
    assert_eq!(image, "nginx:1.27");
}

/// `kubectl create job --from=cronjob/…` reads the CronJob as protobuf and sends the Job back as protobuf: the
/// fields of Go-embedded structs (a Secret reference's name, a volume's source, a probe's handler) must survive
/// both ways, or the Job's pods lose their Secrets and volumes.
#[tokio::test]
async fn kubectl_create_job_from_a_cronjob_keeps_embedded_fields() {
    let s = common::start().await;
    let k = Kubectl::new(&s.sim);
    k.ok(&["create", "namespace", "demo"], None).await;
    let cronjob = r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: backup, namespace: demo}
spec:
  schedule: "0 2 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: dump
            image: postgres:15
            command: ["pg_dumpall"]
            env:
            - name: PGPASSWORD
              valueFrom: {secretKeyRef: {name: creds, key: password}}
            envFrom: [{configMapRef: {name: settings}}]
            readinessProbe: {exec: {command: ["true"]}}
            volumeMounts: [{name: out, mountPath: /backup}, {name: tls, mountPath: /tls}]
          volumes:
          - {name: out, persistentVolumeClaim: {claimName: backups}}
          - {name: tls, secret: {secretName: db-tls, defaultMode: 292}}
"#;
    k.ok(&["apply", "-f", "-"], Some(cronjob)).await;
    let out = k
        .ok(
            &[
                "create",
                "job",
                "now",
                "--from=cronjob/backup",
                "-n",
                "demo",
            ],
            None,
        )
        .await;
    assert_eq!(out.trim(), "job.batch/now created");
    let job: serde_json::Value = serde_json::from_str(
        &k.ok(&["get", "job", "now", "-n", "demo", "-o", "json"], None)
            .await,
    )
    .unwrap();
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["env"][0]["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "creds", "key": "password"})
    );
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], "settings");
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        serde_json::json!(["true"])
    );
    assert_eq!(
        pod["volumes"],
        serde_json::json!([
            {"name": "out", "persistentVolumeClaim": {"claimName": "backups"}},
            {"name": "tls", "secret": {"secretName": "db-tls", "defaultMode": 292}}
        ])
    );
    let text = job.to_string();
    for go_name in ["localObjectReference", "volumeSource", "\"handler\""] {
        assert!(!text.contains(go_name), "{go_name} in {text}");
    }
}
