//! Rendering: a desired spec in, the complete Kubernetes objects of one deployment out.
//!
//! This module owns the shape of everything the broker puts in a namespace for a deployment: the
//! credentials Secret, the TLS and keyfile Secrets, the client and headless Services, the StatefulSet, the
//! PodDisruptionBudget and the backup PVC and CronJob. Each object is a `serde_json::Value` ready for
//! server-side apply, carrying the deployment's labels and a controller owner reference to the intent record
//! so that deleting the record deletes it.
//!
//! Everything here is pure: rendering does no I/O, reads no clock and draws no randomness, so the same spec
//! and context always give the same objects and re-applying them is a no-op. The two generators
//! ([`generate_password`], [`generate_tls`]) are the exception by nature; the caller runs them once and
//! keeps their output in the cluster.
//!
//! The engines run from their official images without an operator, as `../shared/engines.md` describes
//! peers doing it. One file per engine (`postgresql`, `mysql`, `mongodb`, `redis`) says how that engine
//! starts, is probed, replicates and is dumped; `workload` assembles the StatefulSet around it and `backup`
//! the CronJob.
//!
//! **High availability means replicas, not automatic failover.** Pod 0 is the primary; pods 1 and 2
//! replicate from it (streaming replication, GTID replication, a replica set, `replicaof`), and the client
//! Service sends every connection to pod 0. When pod 0 is down the Service has no endpoint until Kubernetes
//! restarts it; nothing promotes a replica. (MongoDB's replica set does elect a new primary by itself, and
//! drivers that discover the set follow it; clients pinned to the Service do not.)

mod backup;
mod mongodb;
mod mysql;
mod postgresql;
mod redis;
mod secrets;
mod workload;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde_json::{Value, json};

use crate::domain::{DesiredSpec, Engine, EngineInfo, SizeSpec, is_label_value};
use crate::k8s::record::{common_labels, labels};

pub use secrets::{generate_password, generate_tls};

/// The object that owns every rendered object: the deployment's intent record.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// `kidp.io/v1alpha1`.
    pub api_version: &'a str,
    /// `ManagedResource`.
    pub kind: &'a str,
    /// The record's object name.
    pub name: &'a str,
    /// The record's uid: an owner reference without the right uid is ignored by the garbage collector.
    pub uid: &'a str,
}

/// The database credentials of one deployment, kept in the `<name>-credentials` Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user clients log in as (the engine's catalogue default).
    pub username: String,
    /// A strong random password, from [`generate_password`]; alphanumeric so it is safe in URIs and shells.
    pub password: String,
    /// The database clients use (the engine's catalogue default).
    pub database: String,
}

/// A CA certificate and a server certificate and key signed by it, all PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The CA certificate clients trust (also copied into the credentials Secret as `ca.crt`).
    pub ca_crt: String,
    /// The server certificate.
    pub tls_crt: String,
    /// The server's private key (PKCS#8).
    pub tls_key: String,
}

/// Everything rendering needs besides the desired spec.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The intent record every object is owned by.
    pub owner: Owner<'a>,
    /// Where the objects live.
    pub namespace: &'a str,
    /// The deployment id, for the `kidp.io/deployment-id` label.
    pub deployment_id: &'a str,
    /// The resource type, for the `kidp.io/resource-type` label.
    pub resource_type: &'a str,
    /// The resource name: the name of the StatefulSet and client Service, and the prefix of every other.
    pub resource_name: &'a str,
    /// The owning team, added as the `kidp.io/team` label when it is a valid label value.
    pub team: &'a str,
    /// A registry (or registry plus path) mirroring the official images; `None` pulls from Docker Hub.
    pub image_registry: Option<&'a str>,
    /// The StorageClass of every volume: the encrypting class when `encryption.atRest`, else `None` for
    /// the cluster default.
    pub storage_class: Option<&'a str>,
    /// The credentials to publish and configure.
    pub credentials: &'a Credentials,
    /// The TLS material when `encryption.inTransit`.
    pub tls: Option<&'a TlsMaterial>,
    /// The cluster's DNS domain, normally `cluster.local`.
    pub cluster_domain: &'a str,
}

/// The name of the container that runs the database in every StatefulSet pod (always the first container).
pub const DATABASE_CONTAINER: &str = "database";

/// The label that tells the database pods from the backup pods of one deployment. Both carry the
/// deployment's labels, so every workload selector (Services, PDB, StatefulSet, anti-affinity) adds this
/// one, or a running backup Job would receive client traffic.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// [`COMPONENT_LABEL`] of the StatefulSet's pods.
pub const COMPONENT_DATABASE: &str = "database";
/// [`COMPONENT_LABEL`] of the backup Jobs' pods.
pub const COMPONENT_BACKUP: &str = "backup";

/// The label the StatefulSet controller puts on each pod with its own name; the HA client Service selects
/// pod 0 by it.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// The uid and gid of the unprivileged user in all four official images (`postgres`, `mysql`, `mongodb`,
/// `redis` are each created as 999), used for `fsGroup` and for the containers we run without root.
pub(crate) const IMAGE_USER: u32 = 999;

/// Where the setup init container leaves files for the database (an emptyDir).
pub(crate) const CONFIG_DIR: &str = "/etc/kidp";
/// Where TLS files are, in every container that uses them: copies with strict modes in the database pods,
/// the Secret's `ca.crt` in the backup pods.
pub(crate) const TLS_DIR: &str = "/etc/kidp/tls";
/// The CA certificate inside [`TLS_DIR`].
pub(crate) const CA_FILE: &str = "/etc/kidp/tls/ca.crt";
/// The server certificate inside [`TLS_DIR`].
pub(crate) const CERT_FILE: &str = "/etc/kidp/tls/tls.crt";
/// The server key inside [`TLS_DIR`].
pub(crate) const KEY_FILE: &str = "/etc/kidp/tls/tls.key";

/// The name of the Secret holding the connection details: `<name>-credentials`.
pub fn credentials_secret_name(resource_name: &str) -> String {
    format!("{resource_name}-credentials")
}

/// The name of the Secret holding the CA, certificate and key: `<name>-tls`.
pub fn tls_secret_name(resource_name: &str) -> String {
    format!("{resource_name}-tls")
}

/// The name of the headless Service that gives each pod a stable DNS name: `<name>-headless`.
pub fn headless_service_name(resource_name: &str) -> String {
    format!("{resource_name}-headless")
}

/// The name of the backup PVC and CronJob: `<name>-backup`.
pub fn backup_name(resource_name: &str) -> String {
    format!("{resource_name}-backup")
}

/// Every (kind, name) a deployment called `resource_name` may own, whatever its spec: what is rendered with
/// every option on, plus the pods and volume claims of its StatefulSet. Two deployments of one namespace must
/// not share any of these, and none may exist under another owner when a deployment is applied.
pub fn derived_names(resource_name: &str) -> Vec<(&'static str, String)> {
    let n = resource_name;
    let mut names = vec![
        ("StatefulSet", n.to_string()),
        ("Service", n.to_string()),
        ("Service", headless_service_name(n)),
        ("Secret", credentials_secret_name(n)),
        ("Secret", tls_secret_name(n)),
        ("Secret", mongodb::keyfile_secret_name(n)),
        ("PodDisruptionBudget", n.to_string()),
        ("CronJob", backup_name(n)),
        ("PersistentVolumeClaim", backup_name(n)),
    ];
    for i in 0..crate::domain::HA_REPLICAS {
        names.push(("Pod", format!("{n}-{i}")));
        names.push(("PersistentVolumeClaim", format!("data-{n}-{i}")));
    }
    names
}

/// The client Service's DNS name: `<name>.<namespace>.svc.<cluster_domain>`.
pub fn endpoint(resource_name: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("{resource_name}.{namespace}.svc.{cluster_domain}")
}

/// The DNS name of one pod through the headless Service: `<name>-<ordinal>.<name>-headless.<ns>.svc.<domain>`.
///
/// Fully qualified so that it resolves the same from any namespace and matches the certificate's wildcard.
pub fn pod_host(
    resource_name: &str,
    ordinal: u32,
    namespace: &str,
    cluster_domain: &str,
) -> String {
    format!(
        "{resource_name}-{ordinal}.{}.{namespace}.svc.{cluster_domain}",
        headless_service_name(resource_name)
    )
}

/// Every object of one deployment, in apply order: Secrets, Services, the StatefulSet, the
/// PodDisruptionBudget (with high availability) and the backup PVC and CronJob (with backup enabled).
///
/// The order matters on a first apply: the pods reference the Secrets, and the StatefulSet names the
/// headless Service.
pub fn render(spec: &DesiredSpec, ctx: &RenderContext) -> Vec<Value> {
    let plan = Plan::new(spec, ctx);
    let parts = match spec.engine {
        Engine::Postgresql => postgresql::parts(&plan),
        Engine::Mysql => mysql::parts(&plan),
        Engine::Mongodb => mongodb::parts(&plan),
        Engine::Redis => redis::parts(&plan),
    };
    let mut out = vec![credentials_secret(&plan)];
    if let Some(tls) = ctx.tls {
        out.push(tls_secret(&plan, tls));
    }
    out.extend(parts.secrets.iter().cloned());
    out.push(headless_service(&plan));
    out.push(client_service(&plan));
    out.push(workload::stateful_set(&plan, &parts));
    if plan.ha {
        out.push(pod_disruption_budget(&plan));
    }
    if spec.backup.enabled {
        let dump = match spec.engine {
            Engine::Postgresql => postgresql::dump(&plan),
            Engine::Mysql => mysql::dump(&plan),
            Engine::Mongodb => mongodb::dump(&plan),
            Engine::Redis => redis::dump(&plan),
        };
        out.push(backup::volume_claim(&plan));
        out.push(backup::cron_job(&plan, &dump));
    }
    out
}

/// One deployment's facts, worked out once and shared by every part of rendering.
pub(crate) struct Plan<'a> {
    pub spec: &'a DesiredSpec,
    pub ctx: &'a RenderContext<'a>,
    pub info: &'static EngineInfo,
    /// The resource name.
    pub name: &'a str,
    /// Whether this runs replicas.
    pub ha: bool,
    /// Whether the engine serves TLS.
    pub tls: bool,
    /// The engine image, with the registry override.
    pub image: String,
    /// The resources of each replica.
    pub size: SizeSpec,
}

impl<'a> Plan<'a> {
    fn new(spec: &'a DesiredSpec, ctx: &'a RenderContext<'a>) -> Plan<'a> {
        let info = spec.engine_info();
        Plan {
            spec,
            ctx,
            info,
            name: ctx.resource_name,
            ha: spec.high_availability,
            tls: ctx.tls.is_some(),
            image: image(info, ctx.image_registry, spec),
            size: spec.size_spec(),
        }
    }

    /// The primary's DNS name (pod 0 through the headless Service).
    pub fn primary_host(&self) -> String {
        self.pod_host(0)
    }

    /// One pod's DNS name.
    pub fn pod_host(&self, ordinal: u32) -> String {
        pod_host(
            self.name,
            ordinal,
            self.ctx.namespace,
            self.ctx.cluster_domain,
        )
    }

    /// The engine's port.
    pub fn port(&self) -> u16 {
        self.info.port
    }

    /// The (major, minor) of the requested version; `(0, 0)` parts when they are not numbers, which every
    /// caller treats as "the oldest".
    pub fn version(&self) -> (u32, u32) {
        let mut it = self
            .spec
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// An env var taken from a key of the credentials Secret: how every password reaches a container.
    pub fn secret_env(&self, var: &str, key: &str) -> Value {
        json!({
            "name": var,
            "valueFrom": {"secretKeyRef": {"name": credentials_secret_name(self.name), "key": key}}
        })
    }

    /// The labels of every object of this deployment.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let c = self.ctx;
        let mut l = common_labels(
            c.deployment_id,
            c.resource_type,
            c.resource_name,
            self.spec.engine.as_str(),
        );
        // The record carries the team only when it is a valid label value; the children do the same.
        if is_label_value(c.team) {
            l.insert(labels::TEAM.to_string(), c.team.to_string());
        }
        l
    }

    /// The labels of a pod: the deployment's plus its component.
    pub fn pod_labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut l = self.labels();
        l.insert(COMPONENT_LABEL.to_string(), component.to_string());
        l
    }

    /// The selector of the database pods: stable for the life of the StatefulSet (a selector is immutable).
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::INSTANCE.to_string(), self.name.to_string()),
            (
                labels::DEPLOYMENT_ID.to_string(),
                self.ctx.deployment_id.to_string(),
            ),
            (COMPONENT_LABEL.to_string(), COMPONENT_DATABASE.to_string()),
        ])
    }

    /// The metadata of a top-level object: name, namespace, labels and the controller owner reference.
    pub fn metadata(&self, name: &str) -> Value {
        let o = self.ctx.owner;
        json!({
            "name": name,
            "namespace": self.ctx.namespace,
            "labels": self.labels(),
            "ownerReferences": [{
                "apiVersion": o.api_version,
                "kind": o.kind,
                "name": o.name,
                "uid": o.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        })
    }

    /// A volume claim spec of `gib` GiB on the configured StorageClass (the cluster default when none).
    pub fn claim_spec(&self, gib: u32) -> Value {
        let mut spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": format!("{gib}Gi")}},
        });
        if let Some(class) = self.ctx.storage_class {
            spec["storageClassName"] = json!(class);
        }
        spec
    }
}

/// The image of the requested version. A version the catalogue no longer lists (an old record) still
/// renders: the official images tag each version by its number.
fn image(info: &EngineInfo, registry: Option<&str>, spec: &DesiredSpec) -> String {
    match spec.version_info() {
        Some(v) => info.image(registry, v),
        None => {
            let base = format!("{}:{}", info.image_repository, spec.version);
            match registry
                .map(|r| r.trim_end_matches('/'))
                .filter(|r| !r.is_empty())
            {
                Some(r) => format!("{r}/{base}"),
                None => base,
            }
        }
    }
}

/// What an engine contributes to its StatefulSet and Secrets; [`workload`] supplies everything common.
pub(crate) struct EngineParts {
    /// The database container's env beyond `POD_NAME` (secrets only by reference).
    pub env: Vec<Value>,
    /// The database container's command when the image's entrypoint needs a wrapper (a shell script that
    /// picks per-pod flags and `exec`s the image's own entrypoint).
    pub command: Option<Vec<String>>,
    /// The database container's args.
    pub args: Vec<String>,
    /// Where the data volume is mounted, and the sub-path of the volume mounted there.
    pub data_mount_path: String,
    pub data_sub_path: Option<&'static str>,
    /// More mounts of the database container (and the volumes behind them).
    pub mounts: Vec<Value>,
    pub volumes: Vec<Value>,
    /// The engine's part of the setup init container's script, run as [`IMAGE_USER`] before the database.
    pub setup: Option<String>,
    /// The setup container's mounts beyond the config dir and the TLS Secret.
    pub setup_mounts: Vec<Value>,
    /// The setup container's env beyond `POD_NAME`: only what its script uses, so Secrets reach no
    /// container that does not need them.
    pub setup_env: Vec<Value>,
    /// Probe handlers and their timeout.
    pub probes: Probes,
    /// The preStop handler, when SIGTERM alone does not stop the engine promptly.
    pub pre_stop: Option<Value>,
    /// Extra Secrets (the MongoDB keyfile).
    pub secrets: Vec<Value>,
}

/// The probe handlers of an engine.
pub(crate) struct Probes {
    /// Up at all: the startup and liveness probes.
    pub alive: Value,
    /// Able to serve: the readiness probe.
    pub ready: Value,
    /// Seconds before one probe run counts as failed.
    pub timeout_seconds: u32,
}

/// How an engine's backup Job takes a dump.
pub(crate) struct Dump {
    /// Env of the backup container (secrets by reference).
    pub env: Vec<Value>,
    /// Bash that writes one dump of the primary to the file named by `$partial`.
    pub command: String,
    /// The dump file's extension.
    pub extension: &'static str,
}

/// An `exec` probe handler.
pub(crate) fn exec(command: &[&str]) -> Value {
    json!({"exec": {"command": command}})
}

/// An `exec` probe handler running a shell line (for pipes and env expansion).
pub(crate) fn exec_sh(line: &str) -> Value {
    json!({"exec": {"command": ["sh", "-c", line]}})
}

/// A Secret with base64 `data`.
fn secret(plan: &Plan, name: &str, type_: &str, data: BTreeMap<&str, &[u8]>) -> Value {
    let data: BTreeMap<&str, ByteString> = data
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.to_vec())))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": plan.metadata(name),
        "type": type_,
        "data": data,
    })
}

/// `<name>-credentials`: the same keys for every engine, so a client reads any database the same way.
fn credentials_secret(plan: &Plan) -> Value {
    let c = plan.ctx.credentials;
    let host = endpoint(plan.name, plan.ctx.namespace, plan.ctx.cluster_domain);
    let port = plan.port().to_string();
    let uri = plan.info.connection_uri(&host, &c.password, plan.tls);
    let mut data: BTreeMap<&str, &[u8]> = BTreeMap::from([
        ("host", host.as_bytes()),
        ("port", port.as_bytes()),
        ("database", c.database.as_bytes()),
        ("username", c.username.as_bytes()),
        ("password", c.password.as_bytes()),
        ("uri", uri.as_bytes()),
    ]);
    if let Some(tls) = plan.ctx.tls {
        data.insert("ca.crt", tls.ca_crt.as_bytes());
    }
    secret(plan, &credentials_secret_name(plan.name), "Opaque", data)
}

/// `<name>-tls`: the standard TLS Secret type, plus the CA (as cert-manager writes it).
fn tls_secret(plan: &Plan, tls: &TlsMaterial) -> Value {
    let data: BTreeMap<&str, &[u8]> = BTreeMap::from([
        ("ca.crt", tls.ca_crt.as_bytes()),
        ("tls.crt", tls.tls_crt.as_bytes()),
        ("tls.key", tls.tls_key.as_bytes()),
    ]);
    secret(plan, &tls_secret_name(plan.name), "kubernetes.io/tls", data)
}

/// The engine's one port, named after the engine so Services can target it by name.
fn service_ports(plan: &Plan) -> Value {
    json!([{
        "name": plan.spec.engine.as_str(),
        "port": plan.port(),
        "targetPort": plan.spec.engine.as_str(),
        "protocol": "TCP",
    }])
}

/// `<name>-headless`: stable per-pod DNS for replication and backups. Not-ready pods are published too,
/// because a replica must resolve the primary (and MongoDB each member) before any of them is ready.
fn headless_service(plan: &Plan) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": plan.metadata(&headless_service_name(plan.name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": plan.selector(),
            "ports": service_ports(plan),
        },
    })
}

/// `<name>`: what clients connect to. With replicas it selects only pod 0, the one that takes writes.
fn client_service(plan: &Plan) -> Value {
    let mut selector = plan.selector();
    if plan.ha {
        selector.insert(POD_NAME_LABEL.to_string(), format!("{}-0", plan.name));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": plan.metadata(plan.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": service_ports(plan),
        },
    })
}

/// `<name>`: voluntary disruptions (node drains) take at most one replica at a time.
fn pod_disruption_budget(plan: &Plan) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": plan.metadata(plan.name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": plan.selector()},
        },
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Specs and contexts for the tests of every rendering file.

    use super::*;
    use crate::domain::{Backup, CronSchedule, Encryption, RetentionPeriod, Size};

    pub const PASSWORD: &str = "S3cretPassw0rdS3cretPassw0rdAbCd";

    pub fn spec(engine: Engine, version: &str) -> DesiredSpec {
        DesiredSpec {
            engine,
            version: version.to_string(),
            size: Size::Medium,
            high_availability: false,
            backup: Backup::default(),
            encryption: Encryption::default(),
        }
    }

    pub fn full_spec(engine: Engine, version: &str) -> DesiredSpec {
        DesiredSpec {
            high_availability: true,
            backup: Backup {
                enabled: true,
                retention: Some(RetentionPeriod::parse("36h").unwrap()),
                schedule: Some(CronSchedule::parse("30 3 * * *").unwrap()),
            },
            encryption: Encryption {
                at_rest: true,
                in_transit: true,
            },
            ..spec(engine, version)
        }
    }

    pub fn credentials(engine: Engine) -> Credentials {
        let info = engine.info();
        Credentials {
            username: info.default_username.to_string(),
            password: PASSWORD.to_string(),
            database: info.default_database.to_string(),
        }
    }

    pub fn tls() -> TlsMaterial {
        TlsMaterial {
            ca_crt: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into(),
            tls_crt: "-----BEGIN CERTIFICATE-----\nSERVER\n-----END CERTIFICATE-----\n".into(),
            tls_key: "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n".into(),
        }
    }

    pub fn ctx<'a>(
        creds: &'a Credentials,
        tls: Option<&'a TlsMaterial>,
        storage_class: Option<&'a str>,
    ) -> RenderContext<'a> {
        RenderContext {
            owner: Owner {
                api_version: "kidp.io/v1alpha1",
                kind: "ManagedResource",
                name: "orders.database",
                uid: "6f1c1f9e-2b7a-4c38-9d64-0c2f4b8a9e11",
            },
            namespace: "team-a",
            deployment_id: "deploy-0123456789abcdef0123456789abcdef",
            resource_type: "database",
            resource_name: "orders",
            team: "payments",
            image_registry: None,
            storage_class,
            credentials: creds,
            tls,
            cluster_domain: "cluster.local",
        }
    }

    /// Renders with TLS and the encrypting class exactly when the spec asks for them.
    pub fn render_spec(spec: &DesiredSpec) -> Vec<Value> {
        let creds = credentials(spec.engine);
        let tls = tls();
        let ctx = ctx(
            &creds,
            spec.encryption.in_transit.then_some(&tls),
            spec.encryption.at_rest.then_some("encrypted-ssd"),
        );
        render(spec, &ctx)
    }

    pub fn find<'v>(objs: &'v [Value], kind: &str, name: &str) -> &'v Value {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {objs:#?}"))
    }

    pub fn sts(objs: &[Value]) -> &Value {
        find(objs, "StatefulSet", "orders")
    }

    /// The database container of a rendered StatefulSet.
    pub fn db(objs: &[Value]) -> &Value {
        let c = &sts(objs)["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["name"], DATABASE_CONTAINER);
        c
    }

    /// The setup init container, if any.
    pub fn setup(objs: &[Value]) -> Option<&Value> {
        sts(objs)["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "setup"))
    }

    /// The script of a `sh -c` / `bash -c` command, or the joined words of any other command.
    pub fn script(command: &Value) -> String {
        let words: Vec<&str> = command
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match words.as_slice() {
            ["sh" | "bash", "-c", s, ..] => s.to_string(),
            other => other.join(" "),
        }
    }

    /// Everything the database container runs at start: its command script and args, joined.
    pub fn start_line(objs: &[Value]) -> String {
        let c = db(objs);
        format!("{} {}", script(&c["command"]), script(&c["args"]))
    }

    /// The decoded `data` of a Secret.
    pub fn secret_data(secret: &Value) -> BTreeMap<String, String> {
        let data: BTreeMap<String, ByteString> =
            serde_json::from_value(secret["data"].clone()).unwrap();
        data.into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect()
    }

    /// The one-line shell command of the backup container.
    pub fn backup_script(objs: &[Value]) -> String {
        let cj = find(objs, "CronJob", "orders-backup");
        script(&cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn derived_names_cover_everything_rendered() {
        for engine in Engine::ALL {
            let version = engine.info().versions[0].version;
            let names = derived_names("orders");
            for obj in fixtures::render_spec(&fixtures::full_spec(engine, version)) {
                let (kind, name) = (
                    obj["kind"].as_str().unwrap(),
                    obj["metadata"]["name"].as_str().unwrap(),
                );
                assert!(
                    names.iter().any(|(k, n)| *k == kind && n == name),
                    "{engine}: {kind} {name} is rendered but not among the derived names"
                );
            }
        }
    }

    use super::fixtures::*;
    use super::*;
    use crate::domain::{HA_REPLICAS, Size};

    const VERSIONS: [(Engine, &str); 4] = [
        (Engine::Postgresql, "16"),
        (Engine::Mysql, "8.4"),
        (Engine::Mongodb, "7.0"),
        (Engine::Redis, "7.2"),
    ];

    fn kinds(objs: &[Value]) -> Vec<String> {
        objs.iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn names_and_endpoint() {
        assert_eq!(credentials_secret_name("orders"), "orders-credentials");
        assert_eq!(tls_secret_name("orders"), "orders-tls");
        assert_eq!(headless_service_name("orders"), "orders-headless");
        assert_eq!(backup_name("orders"), "orders-backup");
        assert_eq!(
            endpoint("orders", "team-a", "cluster.local"),
            "orders.team-a.svc.cluster.local"
        );
        assert_eq!(
            pod_host("orders", 2, "team-a", "cluster.local"),
            "orders-2.orders-headless.team-a.svc.cluster.local"
        );
    }

    #[test]
    fn a_plain_deployment_is_secret_services_and_statefulset_in_apply_order() {
        let objs = render_spec(&spec(Engine::Postgresql, "16"));
        assert_eq!(
            kinds(&objs),
            [
                "Secret/orders-credentials",
                "Service/orders-headless",
                "Service/orders",
                "StatefulSet/orders"
            ]
        );
    }

    #[test]
    fn a_full_deployment_adds_tls_pdb_and_backup_in_apply_order() {
        let objs = render_spec(&full_spec(Engine::Mongodb, "7.0"));
        assert_eq!(
            kinds(&objs),
            [
                "Secret/orders-credentials",
                "Secret/orders-tls",
                "Secret/orders-keyfile",
                "Service/orders-headless",
                "Service/orders",
                "StatefulSet/orders",
                "PodDisruptionBudget/orders",
                "PersistentVolumeClaim/orders-backup",
                "CronJob/orders-backup"
            ]
        );
        let objs = render_spec(&full_spec(Engine::Redis, "7.2"));
        assert_eq!(
            objs.len(),
            8,
            "no keyfile outside MongoDB: {:?}",
            kinds(&objs)
        );
    }

    #[test]
    fn every_engine_renders_its_official_image_port_resources_claim_and_retention() {
        for (engine, version) in VERSIONS {
            for size in Size::ALL {
                let s = DesiredSpec {
                    size,
                    ..spec(engine, version)
                };
                let objs = render_spec(&s);
                let sts = sts(&objs);
                let c = db(&objs);
                let info = engine.info();
                assert_eq!(c["image"], format!("{}:{version}", info.image_repository));
                assert_eq!(c["ports"][0]["containerPort"], info.port);
                assert_eq!(c["ports"][0]["name"], engine.as_str());
                let res = json!({"cpu": size.cpu_quantity(), "memory": size.memory_quantity()});
                assert_eq!(c["resources"]["requests"], res, "{engine}");
                assert_eq!(c["resources"]["limits"], res, "{engine}");
                assert_eq!(sts["spec"]["replicas"], 1);
                assert_eq!(sts["spec"]["serviceName"], "orders-headless");
                assert_eq!(
                    sts["spec"]["persistentVolumeClaimRetentionPolicy"],
                    json!({"whenDeleted": "Delete", "whenScaled": "Delete"})
                );
                let vct = &sts["spec"]["volumeClaimTemplates"][0];
                assert_eq!(vct["metadata"]["name"], "data");
                assert_eq!(
                    vct["spec"]["resources"]["requests"]["storage"],
                    size.storage_quantity()
                );
                assert!(vct["spec"].get("storageClassName").is_none());
                assert!(
                    c["volumeMounts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["name"] == "data"),
                    "{engine} mounts its data volume"
                );
                for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    assert!(c[probe]["exec"]["command"].is_array(), "{engine} {probe}");
                }
            }
        }
    }

    #[test]
    fn probes_use_each_engines_own_client() {
        let tools = [
            (Engine::Postgresql, "pg_isready"),
            (Engine::Mysql, "mysqladmin ping"),
            (Engine::Mongodb, "db.adminCommand('ping')"),
            (Engine::Redis, "redis-cli"),
        ];
        for ((engine, version), (_, tool)) in VERSIONS.into_iter().zip(tools) {
            let objs = render_spec(&spec(engine, version));
            let c = db(&objs);
            let liveness = script(&c["livenessProbe"]["exec"]["command"]);
            assert!(liveness.contains(tool), "{engine}: {liveness}");
            let readiness = script(&c["readinessProbe"]["exec"]["command"]);
            assert!(!readiness.is_empty());
            assert_eq!(
                c["startupProbe"]["exec"], c["livenessProbe"]["exec"],
                "{engine}: startup waits for what liveness checks"
            );
        }
    }

    #[test]
    fn every_object_and_pod_template_carries_the_labels_and_every_object_the_owner() {
        for (engine, version) in VERSIONS {
            let objs = render_spec(&full_spec(engine, version));
            for o in &objs {
                let m = &o["metadata"];
                assert_eq!(m["namespace"], "team-a");
                let l = &m["labels"];
                assert_eq!(l["app.kubernetes.io/managed-by"], "kidp-broker");
                assert_eq!(l["app.kubernetes.io/name"], engine.as_str());
                assert_eq!(l["app.kubernetes.io/instance"], "orders");
                assert_eq!(
                    l["kidp.io/deployment-id"],
                    "deploy-0123456789abcdef0123456789abcdef"
                );
                assert_eq!(l["kidp.io/resource-type"], "database");
                assert_eq!(l["kidp.io/team"], "payments");
                assert_eq!(
                    m["ownerReferences"],
                    json!([{
                        "apiVersion": "kidp.io/v1alpha1",
                        "kind": "ManagedResource",
                        "name": "orders.database",
                        "uid": "6f1c1f9e-2b7a-4c38-9d64-0c2f4b8a9e11",
                        "controller": true,
                        "blockOwnerDeletion": true
                    }]),
                    "{}",
                    o["kind"]
                );
            }
            let sts = sts(&objs);
            let pod = &sts["spec"]["template"]["metadata"]["labels"];
            for (k, v) in sts["metadata"]["labels"].as_object().unwrap() {
                assert_eq!(&pod[k], v, "pod template label {k}");
            }
            assert_eq!(pod[COMPONENT_LABEL], COMPONENT_DATABASE);
            let vct = &sts["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"];
            assert_eq!(vct["kidp.io/deployment-id"], pod["kidp.io/deployment-id"]);
        }
    }

    #[test]
    fn a_team_that_is_not_a_label_value_is_left_out() {
        let creds = credentials(Engine::Redis);
        let mut c = ctx(&creds, None, None);
        c.team = "Payments & Billing";
        let objs = render(&spec(Engine::Redis, "7.2"), &c);
        assert!(objs[0]["metadata"]["labels"].get("kidp.io/team").is_none());
    }

    #[test]
    fn selectors_are_instance_deployment_and_component() {
        let objs = render_spec(&spec(Engine::Mysql, "8.4"));
        let want = json!({
            "app.kubernetes.io/instance": "orders",
            "kidp.io/deployment-id": "deploy-0123456789abcdef0123456789abcdef",
            "app.kubernetes.io/component": "database"
        });
        assert_eq!(sts(&objs)["spec"]["selector"]["matchLabels"], want);
        assert_eq!(find(&objs, "Service", "orders")["spec"]["selector"], want);
        assert_eq!(
            find(&objs, "Service", "orders-headless")["spec"]["selector"],
            want
        );
        // The pods match the selector.
        let pod = &sts(&objs)["spec"]["template"]["metadata"]["labels"];
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&pod[k], v);
        }
    }

    #[test]
    fn services_expose_the_engine_port_and_the_headless_one_publishes_unready_pods() {
        for (engine, version) in VERSIONS {
            let objs = render_spec(&spec(engine, version));
            let port = json!([{
                "name": engine.as_str(),
                "port": engine.info().port,
                "targetPort": engine.as_str(),
                "protocol": "TCP"
            }]);
            let client = find(&objs, "Service", "orders");
            assert_eq!(client["spec"]["ports"], port);
            assert_eq!(client["spec"]["type"], "ClusterIP");
            let headless = find(&objs, "Service", "orders-headless");
            assert_eq!(headless["spec"]["ports"], port);
            assert_eq!(headless["spec"]["clusterIP"], "None");
            assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
        }
    }

    #[test]
    fn high_availability_runs_replicas_spread_over_nodes_behind_a_pdb_and_a_primary_service() {
        for (engine, version) in VERSIONS {
            let s = DesiredSpec {
                high_availability: true,
                ..spec(engine, version)
            };
            let objs = render_spec(&s);
            let sts = sts(&objs);
            assert_eq!(sts["spec"]["replicas"], HA_REPLICAS);
            let anti = &sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                [0];
            assert_eq!(
                anti["podAffinityTerm"]["topologyKey"],
                "kubernetes.io/hostname"
            );
            assert_eq!(
                anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
                sts["spec"]["selector"]["matchLabels"]
            );
            let pdb = find(&objs, "PodDisruptionBudget", "orders");
            assert_eq!(pdb["spec"]["maxUnavailable"], 1);
            assert_eq!(
                pdb["spec"]["selector"]["matchLabels"],
                sts["spec"]["selector"]["matchLabels"]
            );
            let client = find(&objs, "Service", "orders");
            assert_eq!(
                client["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
                "orders-0"
            );
            let headless = find(&objs, "Service", "orders-headless");
            assert!(
                headless["spec"]["selector"]
                    .get("statefulset.kubernetes.io/pod-name")
                    .is_none()
            );
        }
        // Without HA: one replica, no PDB, no anti-affinity, the Service selects every database pod.
        let objs = render_spec(&spec(Engine::Redis, "7.2"));
        assert!(objs.iter().all(|o| o["kind"] != "PodDisruptionBudget"));
        assert!(
            sts(&objs)["spec"]["template"]["spec"]
                .get("affinity")
                .is_none()
        );
        assert!(
            find(&objs, "Service", "orders")["spec"]["selector"]
                .get("statefulset.kubernetes.io/pod-name")
                .is_none()
        );
    }

    #[test]
    fn the_credentials_secret_has_exactly_the_uniform_keys_and_a_working_uri() {
        let uris = [
            "postgresql://app:S3cretPassw0rdS3cretPassw0rdAbCd@orders.team-a.svc.cluster.local:5432/app",
            "mysql://app:S3cretPassw0rdS3cretPassw0rdAbCd@orders.team-a.svc.cluster.local:3306/app",
            "mongodb://app:S3cretPassw0rdS3cretPassw0rdAbCd@orders.team-a.svc.cluster.local:27017/app?authSource=admin",
            "redis://default:S3cretPassw0rdS3cretPassw0rdAbCd@orders.team-a.svc.cluster.local:6379/0",
        ];
        for ((engine, version), uri) in VERSIONS.into_iter().zip(uris) {
            let objs = render_spec(&spec(engine, version));
            let s = find(&objs, "Secret", "orders-credentials");
            assert_eq!(s["type"], "Opaque");
            let data = secret_data(s);
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["database", "host", "password", "port", "uri", "username"]
            );
            let info = engine.info();
            assert_eq!(data["host"], "orders.team-a.svc.cluster.local");
            assert_eq!(data["port"], info.port.to_string());
            assert_eq!(data["database"], info.default_database);
            assert_eq!(data["username"], info.default_username);
            assert_eq!(data["password"], PASSWORD);
            assert_eq!(data["uri"], uri);
        }
    }

    #[test]
    fn tls_adds_a_tls_secret_and_the_ca_to_the_credentials() {
        for (engine, version) in VERSIONS {
            let s = DesiredSpec {
                encryption: crate::domain::Encryption {
                    at_rest: false,
                    in_transit: true,
                },
                ..spec(engine, version)
            };
            let objs = render_spec(&s);
            let creds = secret_data(find(&objs, "Secret", "orders-credentials"));
            assert_eq!(creds["ca.crt"], tls().ca_crt);
            assert_eq!(
                creds["uri"],
                engine
                    .info()
                    .connection_uri("orders.team-a.svc.cluster.local", PASSWORD, true)
            );
            let t = find(&objs, "Secret", "orders-tls");
            assert_eq!(t["type"], "kubernetes.io/tls");
            let data = secret_data(t);
            assert_eq!(data["ca.crt"], tls().ca_crt);
            assert_eq!(data["tls.crt"], tls().tls_crt);
            assert_eq!(data["tls.key"], tls().tls_key);
            // The setup container copies the Secret into place with strict modes; the database reads the copy.
            let setup = setup(&objs).unwrap_or_else(|| panic!("{engine} has a setup container"));
            let copy = script(&setup["command"]);
            assert!(
                copy.contains("/var/run/kidp/tls/tls.key"),
                "{engine}: {copy}"
            );
            assert!(
                copy.contains("chmod 0600 /etc/kidp/tls/tls.key"),
                "{engine}"
            );
            let vols = &sts(&objs)["spec"]["template"]["spec"]["volumes"];
            assert!(
                vols.as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v["secret"]["secretName"] == "orders-tls"),
                "{engine}"
            );
            assert!(
                db(&objs)["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["mountPath"] == CONFIG_DIR),
                "{engine}"
            );
        }
    }

    #[test]
    fn encryption_at_rest_puts_every_volume_on_the_encrypting_class() {
        let objs = render_spec(&full_spec(Engine::Postgresql, "16"));
        let vct = &sts(&objs)["spec"]["volumeClaimTemplates"][0];
        assert_eq!(vct["spec"]["storageClassName"], "encrypted-ssd");
        let pvc = find(&objs, "PersistentVolumeClaim", "orders-backup");
        assert_eq!(pvc["spec"]["storageClassName"], "encrypted-ssd");
    }

    #[test]
    fn the_image_registry_override_applies_to_every_container() {
        for (engine, version) in VERSIONS {
            let creds = credentials(engine);
            let tls = tls();
            let mut c = ctx(&creds, Some(&tls), None);
            c.image_registry = Some("registry.example.com/mirror/");
            let objs = render(&full_spec(engine, version), &c);
            let want = format!(
                "registry.example.com/mirror/{}:{version}",
                engine.info().image_repository
            );
            let mut images = Vec::new();
            let pod = &sts(&objs)["spec"]["template"]["spec"];
            for list in ["initContainers", "containers"] {
                for c in pod[list].as_array().into_iter().flatten() {
                    images.push(c["image"].clone());
                }
            }
            let cj = find(&objs, "CronJob", "orders-backup");
            images.push(
                cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
                    .clone(),
            );
            assert!(images.len() >= 3);
            assert!(images.iter().all(|i| *i == want), "{engine}: {images:?}");
        }
    }

    #[test]
    fn a_version_no_longer_in_the_catalogue_still_renders_its_tag() {
        let objs = render_spec(&spec(Engine::Postgresql, "11"));
        assert_eq!(db(&objs)["image"], "postgres:11");
        let creds = credentials(Engine::Postgresql);
        let mut c = ctx(&creds, None, None);
        c.image_registry = Some("mirror.local");
        let objs = render(&spec(Engine::Postgresql, "11"), &c);
        assert_eq!(db(&objs)["image"], "mirror.local/postgres:11");
    }

    #[test]
    fn the_password_never_appears_outside_the_credentials_secret() {
        for (engine, version) in VERSIONS {
            let objs = render_spec(&full_spec(engine, version));
            let encoded = serde_json::to_string(&ByteString(PASSWORD.as_bytes().to_vec())).unwrap();
            let encoded = encoded.trim_matches('"');
            for o in objs
                .iter()
                .filter(|o| o["metadata"]["name"] != "orders-credentials")
            {
                let text = o.to_string();
                assert!(!text.contains(PASSWORD), "{engine}: {}", o["kind"]);
                assert!(!text.contains(encoded), "{engine}: {}", o["kind"]);
            }
        }
    }

    #[test]
    fn every_secret_reference_names_a_key_of_the_credentials_secret() {
        fn refs(v: &Value, out: &mut Vec<(String, String)>) {
            match v {
                Value::Object(m) => {
                    if let Some(r) = m.get("secretKeyRef") {
                        out.push((
                            r["name"].as_str().unwrap().to_string(),
                            r["key"].as_str().unwrap().to_string(),
                        ));
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        for (engine, version) in VERSIONS {
            let objs = render_spec(&full_spec(engine, version));
            let keys = secret_data(find(&objs, "Secret", "orders-credentials"));
            let mut found = Vec::new();
            objs.iter().for_each(|o| refs(o, &mut found));
            assert!(found.len() >= 2, "{engine}");
            for (name, key) in found {
                assert_eq!(name, "orders-credentials");
                assert!(keys.contains_key(&key), "{engine}: {key}");
            }
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        for (engine, version) in VERSIONS {
            let s = full_spec(engine, version);
            assert_eq!(render_spec(&s), render_spec(&s));
        }
    }

    /// Every object read into its typed Kubernetes struct and written back is unchanged: a misspelt or
    /// misplaced field would be dropped by the typed model and show up here.
    #[test]
    fn every_object_round_trips_through_its_typed_kubernetes_model() {
        use k8s_openapi::api::apps::v1::StatefulSet;
        use k8s_openapi::api::batch::v1::CronJob;
        use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
        use k8s_openapi::api::policy::v1::PodDisruptionBudget;

        fn check<T: serde::de::DeserializeOwned + serde::Serialize>(o: &Value) {
            let typed: T =
                serde_json::from_value(o.clone()).unwrap_or_else(|e| panic!("{}: {e}", o["kind"]));
            let mut back = serde_json::to_value(&typed).unwrap();
            // The typed model writes apiVersion and kind into every embedded PersistentVolumeClaim.
            if let Some(claims) = back.pointer_mut("/spec/volumeClaimTemplates") {
                for c in claims.as_array_mut().unwrap() {
                    let c = c.as_object_mut().unwrap();
                    c.remove("apiVersion");
                    c.remove("kind");
                }
            }
            assert_eq!(&back, o, "{} changed in a typed round trip", o["kind"]);
        }
        for (engine, version) in VERSIONS {
            for s in [spec(engine, version), full_spec(engine, version)] {
                for o in render_spec(&s) {
                    match o["kind"].as_str().unwrap() {
                        "Secret" => check::<Secret>(&o),
                        "Service" => check::<Service>(&o),
                        "StatefulSet" => check::<StatefulSet>(&o),
                        "PodDisruptionBudget" => check::<PodDisruptionBudget>(&o),
                        "PersistentVolumeClaim" => check::<PersistentVolumeClaim>(&o),
                        "CronJob" => check::<CronJob>(&o),
                        other => panic!("unexpected kind {other}"),
                    }
                }
            }
        }
    }

    /// Every shell script the pods run parses (`dash -n` for `sh`, `bash -n` for `bash`): a quoting slip
    /// would otherwise surface only as a crash-looping pod.
    #[test]
    fn every_rendered_shell_script_parses() {
        fn commands<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
            match v {
                Value::Object(m) => {
                    if let Some(c) = m.get("command") {
                        out.push(c);
                    }
                    m.values().for_each(|x| commands(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| commands(x, out)),
                _ => {}
            }
        }
        let mut checked = 0;
        for (engine, version) in VERSIONS
            .into_iter()
            .chain([(Engine::Mysql, "5.7"), (Engine::Postgresql, "12")])
        {
            for s in [spec(engine, version), full_spec(engine, version)] {
                let objs = render_spec(&s);
                let mut found = Vec::new();
                objs.iter().for_each(|o| commands(o, &mut found));
                for c in found {
                    let words: Vec<&str> = c
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    let shell = match words.as_slice() {
                        ["sh", "-c", ..] => "dash",
                        ["bash", "-c", ..] => "bash",
                        _ => continue,
                    };
                    let out = match std::process::Command::new(shell)
                        .args(["-n", "-c", words[2]])
                        .output()
                    {
                        Ok(o) => o,
                        Err(e) => {
                            eprintln!("skipping the syntax check: no {shell} ({e})");
                            return;
                        }
                    };
                    assert!(
                        out.status.success(),
                        "{engine} {shell} script does not parse: {}\n{}",
                        String::from_utf8_lossy(&out.stderr),
                        words[2]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "only {checked} scripts checked");
    }
}
