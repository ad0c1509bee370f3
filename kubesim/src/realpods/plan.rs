//! What a real pod needs, read from the store under its lock when the kubelet admits the pod: each container's
//! image, command, environment (values, `$(VAR)` references, fieldRefs, resourceFieldRefs, ConfigMap and Secret
//! keys, `envFrom`), mounts, user, limits, probes and preStop hook; and each volume's content (ConfigMap, Secret,
//! projected and downward API files with their modes; emptyDir; the claim's directory).
//!
//! Like a kubelet, a missing ConfigMap or Secret that is not `optional` stops the pod from starting
//! (`CreateContainerConfigError`, retried). ConfigMap and Secret volumes are written once when the pod starts
//! (a kubelet refreshes them about every minute: not simulated).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::controllers::{int_at, str_at};
use crate::images::{Manifest, Resolved};
use crate::meta;
use crate::store::Inner;

/// A probe's action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Exec(Vec<String>),
    Tcp { port: u16 },
    Http { port: u16, path: String },
}

/// A probe with upstream's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct MountPlan {
    pub volume: String,
    pub path: String,
    pub sub_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub image_dir: PathBuf,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<MountPlan>,
    pub working_dir: Option<String>,
    /// (uid, gid) when the security context names them.
    pub run_as: (Option<u32>, Option<u32>),
    pub memory_limit: Option<i64>,
    pub cpu_limit_millis: Option<i64>,
    pub startup: Option<Probe>,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    pub pre_stop: Option<Action>,
}

/// One file of a ConfigMap, Secret, projected or downward API volume.
#[derive(Debug, Clone)]
pub(crate) struct File {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum VolumePlan {
    EmptyDir {
        memory: bool,
    },
    Files(Vec<File>),
    /// A PersistentVolumeClaim's directory on the host (by claim uid), kept until the claim is deleted.
    Claim(PathBuf),
    HostPath(PathBuf),
}

#[derive(Debug, Clone)]
pub(crate) struct PodPlan {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `None` for `hostNetwork` pods.
    pub ip: Option<String>,
    pub hostname: String,
    pub subdomain: String,
    pub init: Vec<ContainerPlan>,
    pub containers: Vec<ContainerPlan>,
    pub volumes: BTreeMap<String, VolumePlan>,
    pub restart_policy: String,
    pub grace: Duration,
    pub fs_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
}

/// Why a pod cannot start (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// An image reference that is not in the manifest: `ErrImagePull` with this message.
    Image(String),
    /// A missing ConfigMap/Secret/claim: `CreateContainerConfigError` with this message, retried.
    Config(String),
}

/// Whether the pod is the container runtime's: no image of it stays simulated (MongoDB, Kafka: then the whole pod
/// does). An unknown image still makes it the runtime's, which reports `ErrImagePull`.
pub(crate) fn images_are_real(manifest: &Manifest, dir: &Path, pod: &Value) -> bool {
    containers(pod).iter().all(|(_, c)| {
        !matches!(
            manifest.resolve(dir, str_at(c, "/image")),
            Resolved::Simulated
        )
    })
}

fn containers(pod: &Value) -> Vec<(bool, &Value)> {
    let list = |k: &str| {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    list("initContainers")
        .map(|c| (true, c))
        .chain(list("containers").map(|c| (false, c)))
        .collect()
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect()
    })
}

fn u32_at(v: &Value, path: &str) -> Option<u32> {
    v.pointer(path)
        .and_then(Value::as_i64)
        .and_then(|n| u32::try_from(n).ok())
}

/// `$(VAR)` references expanded from `vars`, `$$(VAR)` kept as `$(VAR)`; unknown references stay as written.
pub(crate) fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

struct Reader<'a> {
    g: &'a Inner,
    ns: &'a str,
}

impl Reader<'_> {
    fn object(&self, plural: &str, name: &str) -> Option<std::sync::Arc<Value>> {
        let def = self.g.def("", plural);
        self.g.get(&def, self.ns, name).ok()
    }

    /// The data of a ConfigMap (`configmaps`) or Secret (`secrets`, decoded), or why not.
    fn data(&self, plural: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let kind = if plural == "secrets" {
            "secret"
        } else {
            "configmap"
        };
        let o = self
            .object(plural, name)
            .ok_or_else(|| format!("{kind} \"{name}\" not found"))?;
        let mut out = BTreeMap::new();
        if let Some(d) = o.get("data").and_then(Value::as_object) {
            for (k, v) in d {
                let s = v.as_str().unwrap_or_default();
                let bytes = if plural == "secrets" {
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .unwrap_or_default()
                } else {
                    s.as_bytes().to_vec()
                };
                out.insert(k.clone(), bytes);
            }
        }
        if let Some(d) = o.get("binaryData").and_then(Value::as_object) {
            for (k, v) in d {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or_default())
                    .unwrap_or_default();
                out.insert(k.clone(), bytes);
            }
        }
        Ok(out)
    }
}

/// A downward API field of the pod (`metadata.name`, `metadata.labels['app']`, `status.podIP`, …).
fn field(pod: &Value, ip: &str, path: &str) -> Result<String, String> {
    let sub = |prefix: &str| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        let map = if prefix == "metadata.labels" {
            "labels"
        } else {
            "annotations"
        };
        Some(str_at(pod, &format!("/metadata/{map}/{}", key.replace('/', "~1"))).to_string())
    };
    let map_text = |map: &str| -> String {
        pod.pointer(&format!("/metadata/{map}"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}=\"{}\"\n", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => meta::name(pod).to_string(),
        "metadata.namespace" => meta::namespace(pod).to_string(),
        "metadata.uid" => meta::uid(pod).to_string(),
        "metadata.labels" => map_text("labels"),
        "metadata.annotations" => map_text("annotations"),
        "spec.nodeName" => str_at(pod, "/spec/nodeName").to_string(),
        "spec.serviceAccountName" => str_at(pod, "/spec/serviceAccountName").to_string(),
        "status.podIP" | "status.podIPs" => ip.to_string(),
        "status.hostIP" | "status.hostIPs" => super::HOST_IP.to_string(),
        p if p.starts_with("metadata.labels[") => sub("metadata.labels").unwrap_or_default(),
        p if p.starts_with("metadata.annotations[") => {
            sub("metadata.annotations").unwrap_or_default()
        }
        other => return Err(format!("unsupported fieldPath {other:?}")),
    })
}

/// A resourceFieldRef's value: the container's limit (or request), divided by the divisor (default 1), rounded up.
fn resource_field(containers: &[&Value], default_container: &Value, r: &Value) -> String {
    let c = match str_at(r, "/containerName") {
        "" => default_container,
        name => containers
            .iter()
            .find(|c| str_at(c, "/name") == name)
            .copied()
            .unwrap_or(default_container),
    };
    let resource = str_at(r, "/resource");
    let (kind, what) = resource.split_once('.').unwrap_or(("limits", resource));
    let q = str_at(c, &format!("/resources/{kind}/{what}"));
    let value = crate::metrics_api::parse_quantity(q).unwrap_or(0.0);
    let divisor = crate::metrics_api::parse_quantity(match str_at(r, "/divisor") {
        "" => "1",
        d => d,
    })
    .filter(|d| *d > 0.0)
    .unwrap_or(1.0);
    format!("{}", (value / divisor).ceil() as i64)
}

fn probe(c: &Value, key: &str, ports: &BTreeMap<String, u16>) -> Option<Probe> {
    let p = c.get(key)?;
    let action = action(p, ports)?;
    let secs = |k: &str, d: i64| Duration::from_secs(int_at(p, &format!("/{k}"), d).max(0) as u64);
    Some(Probe {
        action,
        initial_delay: secs("initialDelaySeconds", 0),
        period: secs("periodSeconds", 10).max(Duration::from_secs(1)),
        timeout: secs("timeoutSeconds", 1).max(Duration::from_secs(1)),
        success_threshold: int_at(p, "/successThreshold", 1).max(1) as u32,
        failure_threshold: int_at(p, "/failureThreshold", 3).max(1) as u32,
    })
}

fn action(p: &Value, ports: &BTreeMap<String, u16>) -> Option<Action> {
    let port = |v: Option<&Value>| -> Option<u16> {
        match v? {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.parse().ok().or_else(|| ports.get(s).copied()),
            _ => None,
        }
    };
    if let Some(cmd) = strings(p.pointer("/exec/command")) {
        return Some(Action::Exec(cmd));
    }
    if let Some(t) = p.get("tcpSocket") {
        return Some(Action::Tcp {
            port: port(t.get("port"))?,
        });
    }
    if let Some(h) = p.get("httpGet") {
        return Some(Action::Http {
            port: port(h.get("port"))?,
            path: match str_at(h, "/path") {
                "" => "/".into(),
                p => p.to_string(),
            },
        });
    }
    None
}

/// The plan of `pod` with address `ip` (`None` with `hostNetwork`). `claims` is the directory claims live under.
pub(crate) fn plan(
    g: &Inner,
    pod: &Value,
    ip: Option<String>,
    manifest: &Manifest,
    image_dir: &Path,
    claims: &Path,
) -> Result<PodPlan, Blocked> {
    let ns = meta::namespace(pod);
    let r = Reader { g, ns };
    let pod_ip = ip.clone().unwrap_or_else(|| super::HOST_IP.to_string());
    let all: Vec<&Value> = containers(pod).into_iter().map(|(_, c)| c).collect();
    let pod_sc = pod.pointer("/spec/securityContext");
    let mut init = vec![];
    let mut regular = vec![];
    for (is_init, c) in containers(pod) {
        let image = str_at(c, "/image").to_string();
        let image_dir = match manifest.resolve(image_dir, &image) {
            Resolved::Local(d) => d,
            Resolved::Simulated => {
                return Err(Blocked::Image(format!(
                    "image {image:?} has no local build and stays simulated"
                )));
            }
            Resolved::Unknown(m) => return Err(Blocked::Image(m)),
        };
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut env: Vec<(String, String)> = vec![];
        let set = |vars: &mut BTreeMap<String, String>,
                   env: &mut Vec<(String, String)>,
                   k: String,
                   v: String| {
            vars.insert(k.clone(), v.clone());
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        };
        for from in c
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let prefix = str_at(from, "/prefix");
            let (plural, src) = match (from.get("configMapRef"), from.get("secretRef")) {
                (Some(s), _) => ("configmaps", s),
                (_, Some(s)) => ("secrets", s),
                _ => continue,
            };
            let optional = src.get("optional").and_then(Value::as_bool) == Some(true);
            match r.data(plural, str_at(src, "/name")) {
                Ok(d) => {
                    for (k, v) in d {
                        set(
                            &mut vars,
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                Err(_) if optional => {}
                Err(e) => return Err(Blocked::Config(e)),
            }
        }
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            let name = str_at(e, "/name").to_string();
            let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
                expand(v, &vars)
            } else if let Some(f) = e.pointer("/valueFrom/fieldRef") {
                field(pod, &pod_ip, str_at(f, "/fieldPath")).map_err(Blocked::Config)?
            } else if let Some(rf) = e.pointer("/valueFrom/resourceFieldRef") {
                resource_field(&all, c, rf)
            } else if let Some((plural, k)) = e
                .pointer("/valueFrom/secretKeyRef")
                .map(|k| ("secrets", k))
                .or_else(|| {
                    e.pointer("/valueFrom/configMapKeyRef")
                        .map(|k| ("configmaps", k))
                })
            {
                let optional = k.get("optional").and_then(Value::as_bool) == Some(true);
                let key = str_at(k, "/key");
                let got = r.data(plural, str_at(k, "/name")).and_then(|d| {
                    d.get(key).cloned().ok_or_else(|| {
                        format!(
                            "couldn't find key {key} in {} {ns}/{}",
                            if plural == "secrets" {
                                "Secret"
                            } else {
                                "ConfigMap"
                            },
                            str_at(k, "/name")
                        )
                    })
                });
                match got {
                    Ok(v) => String::from_utf8_lossy(&v).into_owned(),
                    Err(_) if optional => continue,
                    Err(e) => return Err(Blocked::Config(e)),
                }
            } else {
                String::new()
            };
            set(&mut vars, &mut env, name, value);
        }
        let command =
            strings(c.get("command")).map(|v| v.iter().map(|s| expand(s, &vars)).collect());
        let args = strings(c.get("args")).map(|v| v.iter().map(|s| expand(s, &vars)).collect());
        let mounts = c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|m| MountPlan {
                volume: str_at(m, "/name").to_string(),
                path: str_at(m, "/mountPath").to_string(),
                sub_path: expand(
                    match str_at(m, "/subPath") {
                        "" => str_at(m, "/subPathExpr"),
                        s => s,
                    },
                    &vars,
                ),
                read_only: m.get("readOnly").and_then(Value::as_bool) == Some(true),
            })
            .collect();
        let ports: BTreeMap<String, u16> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    str_at(p, "/name").to_string(),
                    u16::try_from(p.get("containerPort")?.as_u64()?).ok()?,
                ))
            })
            .collect();
        let sc = c.get("securityContext");
        let id = |k: &str| {
            sc.and_then(|s| u32_at(s, &format!("/{k}")))
                .or_else(|| pod_sc.and_then(|s| u32_at(s, &format!("/{k}"))))
        };
        let limit = |what: &str| {
            crate::metrics_api::parse_quantity(str_at(c, &format!("/resources/limits/{what}")))
        };
        let plan = ContainerPlan {
            name: str_at(c, "/name").to_string(),
            image,
            image_dir,
            command,
            args,
            env,
            mounts,
            working_dir: Some(str_at(c, "/workingDir").to_string()).filter(|w| !w.is_empty()),
            run_as: (id("runAsUser"), id("runAsGroup")),
            memory_limit: limit("memory").map(|b| b as i64).filter(|b| *b > 0),
            cpu_limit_millis: limit("cpu")
                .map(|c| (c * 1000.0).ceil() as i64)
                .filter(|m| *m > 0),
            startup: probe(c, "startupProbe", &ports),
            liveness: probe(c, "livenessProbe", &ports),
            readiness: probe(c, "readinessProbe", &ports),
            pre_stop: c
                .pointer("/lifecycle/preStop")
                .and_then(|h| action(h, &ports)),
        };
        if is_init {
            init.push(plan);
        } else {
            regular.push(plan);
        }
    }
    let mut volumes = BTreeMap::new();
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = str_at(v, "/name").to_string();
        let plan = if let Some(e) = v.get("emptyDir") {
            VolumePlan::EmptyDir {
                memory: str_at(e, "/medium") == "Memory",
            }
        } else if let Some(c) = v.get("persistentVolumeClaim") {
            let claim = str_at(c, "/claimName");
            let pvc = r.object("persistentvolumeclaims", claim).ok_or_else(|| {
                Blocked::Config(format!("persistentvolumeclaim \"{claim}\" not found"))
            })?;
            VolumePlan::Claim(claims.join(meta::uid(&pvc)))
        } else if let Some(h) = v.get("hostPath") {
            VolumePlan::HostPath(PathBuf::from(str_at(h, "/path")))
        } else {
            VolumePlan::Files(files(&r, pod, &pod_ip, v)?)
        };
        volumes.insert(name, plan);
    }
    let hostname = match str_at(pod, "/spec/hostname") {
        "" => meta::name(pod).chars().take(63).collect(),
        h => h.to_string(),
    };
    Ok(PodPlan {
        uid: meta::uid(pod).to_string(),
        namespace: ns.to_string(),
        name: meta::name(pod).to_string(),
        ip,
        hostname,
        subdomain: str_at(pod, "/spec/subdomain").to_string(),
        init,
        containers: regular,
        volumes,
        restart_policy: match str_at(pod, "/spec/restartPolicy") {
            "" => "Always".into(),
            p => p.to_string(),
        },
        grace: Duration::from_secs(
            int_at(pod, "/spec/terminationGracePeriodSeconds", 30).max(0) as u64,
        ),
        fs_group: pod_sc.and_then(|s| u32_at(s, "/fsGroup")),
        supplemental_groups: pod_sc
            .and_then(|s| s.get("supplementalGroups"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_u64().and_then(|g| u32::try_from(g).ok()))
            .collect(),
    })
}

/// The files of a ConfigMap, Secret, projected or downward API volume, with `items`, `defaultMode` and `mode`.
fn files(r: &Reader, pod: &Value, ip: &str, v: &Value) -> Result<Vec<File>, Blocked> {
    let mut out = vec![];
    let source = |src: &Value, plural: &str, name_key: &str, default_mode: u32| {
        let mut out = vec![];
        let name = str_at(src, &format!("/{name_key}"));
        let optional = src.get("optional").and_then(Value::as_bool) == Some(true);
        let data = match r.data(plural, name) {
            Ok(d) => d,
            Err(_) if optional => return Ok(out),
            Err(e) => return Err(Blocked::Config(e)),
        };
        let mode = u32_at(src, "/defaultMode").unwrap_or(default_mode);
        match src.get("items").and_then(Value::as_array) {
            Some(items) => {
                for it in items {
                    let key = str_at(it, "/key");
                    let Some(d) = data.get(key) else {
                        if optional {
                            continue;
                        }
                        return Err(Blocked::Config(format!(
                            "configmap references non-existent config key: {key}"
                        )));
                    };
                    out.push(File {
                        path: str_at(it, "/path").to_string(),
                        data: d.clone(),
                        mode: u32_at(it, "/mode").unwrap_or(mode),
                    });
                }
            }
            None => {
                for (k, d) in data {
                    out.push(File {
                        path: k,
                        data: d,
                        mode,
                    });
                }
            }
        }
        Ok::<Vec<File>, Blocked>(out)
    };
    const DEFAULT_MODE: u32 = 0o644;
    if let Some(s) = v.get("configMap") {
        out.extend(source(s, "configmaps", "name", DEFAULT_MODE)?);
    } else if let Some(s) = v.get("secret") {
        out.extend(source(s, "secrets", "secretName", DEFAULT_MODE)?);
    } else if let Some(d) = v.get("downwardAPI") {
        let mode = u32_at(d, "/defaultMode").unwrap_or(DEFAULT_MODE);
        downward(pod, ip, d, mode, &mut out)?;
    } else if let Some(p) = v.get("projected") {
        let mode = u32_at(p, "/defaultMode").unwrap_or(DEFAULT_MODE);
        for s in p
            .get("sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let with_mode = |mut src: Value, plural: &str| {
                if src.get("defaultMode").is_none() {
                    src["defaultMode"] = mode.into();
                }
                source(&src, plural, "name", mode)
            };
            if let Some(c) = s.get("configMap") {
                out.extend(with_mode(c.clone(), "configmaps")?);
            } else if let Some(c) = s.get("secret") {
                out.extend(with_mode(c.clone(), "secrets")?);
            } else if let Some(d) = s.get("downwardAPI") {
                downward(pod, ip, d, mode, &mut out)?;
            }
            // serviceAccountToken and clusterTrustBundle sources are not written (no API access from pods).
        }
    }
    Ok(out)
}

fn downward(
    pod: &Value,
    ip: &str,
    d: &Value,
    mode: u32,
    out: &mut Vec<File>,
) -> Result<(), Blocked> {
    for it in d
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value = if let Some(f) = it.get("fieldRef") {
            field(pod, ip, str_at(f, "/fieldPath")).map_err(Blocked::Config)?
        } else if let Some(rf) = it.get("resourceFieldRef") {
            let all: Vec<&Value> = containers(pod).into_iter().map(|(_, c)| c).collect();
            match all.first() {
                Some(first) => resource_field(&all, first, rf),
                None => String::new(),
            }
        } else {
            continue;
        };
        out.push(File {
            path: str_at(it, "/path").to_string(),
            data: value.into_bytes(),
            mode: u32_at(it, "/mode").unwrap_or(mode),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_as_upstream_s() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
        assert_eq!(expand("no refs", &vars), "no refs");
    }

    #[test]
    fn downward_fields_read_the_pod() {
        let pod = serde_json::json!({"metadata": {"name": "db-0", "namespace": "t", "uid": "u",
            "labels": {"app.kubernetes.io/name": "db"}}});
        assert_eq!(field(&pod, "10.244.0.9", "metadata.name").unwrap(), "db-0");
        assert_eq!(
            field(&pod, "10.244.0.9", "status.podIP").unwrap(),
            "10.244.0.9"
        );
        assert_eq!(
            field(&pod, "", "metadata.labels['app.kubernetes.io/name']").unwrap(),
            "db"
        );
        assert!(field(&pod, "", "spec.nope").is_err());
    }

    #[test]
    fn probes_take_upstream_defaults_and_named_ports() {
        let c = serde_json::json!({"readinessProbe": {"tcpSocket": {"port": "pg"}},
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 2, "failureThreshold": 6}});
        let ports = BTreeMap::from([("pg".to_string(), 5432u16)]);
        let r = probe(&c, "readinessProbe", &ports).unwrap();
        assert_eq!(r.action, Action::Tcp { port: 5432 });
        assert_eq!(
            (r.period, r.timeout),
            (Duration::from_secs(10), Duration::from_secs(1))
        );
        assert_eq!((r.success_threshold, r.failure_threshold), (1, 3));
        let l = probe(&c, "livenessProbe", &ports).unwrap();
        assert_eq!(l.action, Action::Exec(vec!["true".into()]));
        assert_eq!((l.period, l.failure_threshold), (Duration::from_secs(2), 6));
        assert!(probe(&c, "startupProbe", &ports).is_none());
    }
}
