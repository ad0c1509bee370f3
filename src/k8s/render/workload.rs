//! The StatefulSet: what every engine's pods share (labels, security context, resources, probes timing,
//! the data volume claim, the setup init container, anti-affinity), around what the engine contributes.

use serde_json::{Value, json};

use super::{
    COMPONENT_DATABASE, CONFIG_DIR, DATABASE_CONTAINER, EngineParts, IMAGE_USER, Plan, Probes,
    headless_service_name, tls_secret_name,
};
use crate::domain::{cpu_quantity, memory_quantity};

/// Where the setup container finds the TLS Secret, before copying it into [`super::TLS_DIR`].
pub(super) const TLS_SOURCE_DIR: &str = "/var/run/kidp/tls";

/// Time to shut down cleanly: databases flush and checkpoint on SIGTERM, and a kill mid-checkpoint means
/// crash recovery on the next start. Kubernetes' default of 30s is short for a busy primary.
const TERMINATION_GRACE_SECONDS: u32 = 60;

/// How long the startup probe allows before the liveness probe takes over: first start runs the image's
/// initialisation (initdb, mysqld --initialize) and a restart after a crash runs recovery. Ten minutes,
/// the provisioning timeout: a first start slower than that has failed the deployment anyway, and
/// restarting a recovering database sooner would only start its recovery over.
const STARTUP_FAILURES: u32 = 60;
const PROBE_PERIOD_SECONDS: u32 = 10;
/// Liveness restarts after a minute of failures (Bitnami's threshold), so a long query or a brief stall
/// under load does not kill the database.
const LIVENESS_FAILURES: u32 = 6;
/// Readiness drops a pod from the Service after 30s of failures.
const READINESS_FAILURES: u32 = 3;

/// The StatefulSet `<name>`.
pub(super) fn stateful_set(plan: &Plan, parts: &EngineParts) -> Value {
    let mut pod_spec = json!({
        // A namespace may hold hundreds of Services; their env vars are noise to a database, and some
        // collide with the images' own (`POSTGRES_PORT` for a Service named `postgres`).
        "enableServiceLinks": false,
        // The databases never talk to the Kubernetes API.
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            // Volumes group-owned by the images' user, so its unprivileged containers can write them;
            // only re-walked when the root is wrong, because a recursive chown of a large volume delays
            // every start.
            "fsGroup": IMAGE_USER,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [database_container(plan, parts)],
        "volumes": volumes(plan, parts),
    });
    if let Some(setup) = setup_container(plan, parts) {
        pod_spec["initContainers"] = json!([setup]);
    }
    if plan.ha {
        pod_spec["affinity"] = json!({
            "podAntiAffinity": {
                // Preferred, not required: a cluster with fewer nodes than replicas still runs them all.
                "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": plan.selector()},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }],
            },
        });
    }
    // Labelled like everything else, so the PVCs it creates are found by the deployment's label selector.
    let claim = json!({
        "metadata": {"name": "data", "labels": plan.labels()},
        "spec": plan.claim_spec(plan.size.storage_gib),
    });
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": plan.metadata(plan.name),
        "spec": {
            "serviceName": headless_service_name(plan.name),
            "replicas": plan.spec.replicas(),
            // Ordered: each replica bootstraps from pod 0, which must be up first.
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": plan.selector()},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
            "template": {
                "metadata": {"labels": plan.pod_labels(COMPONENT_DATABASE)},
                "spec": pod_spec,
            },
            "volumeClaimTemplates": [claim],
        },
    })
}

/// Requests equal to limits: the pod gets the Guaranteed QoS class, so it is the last to be evicted, and
/// what is billed is what is reserved.
pub(super) fn resources(plan: &Plan) -> Value {
    let r = json!({
        "cpu": cpu_quantity(plan.size.cpu_millis),
        "memory": memory_quantity(plan.size.memory_mib),
    });
    json!({"requests": r, "limits": r})
}

fn probes(c: &mut Value, p: &Probes) {
    let probe = |handler: &Value, failures: u32| {
        let mut v = handler.clone();
        v["periodSeconds"] = json!(PROBE_PERIOD_SECONDS);
        v["timeoutSeconds"] = json!(p.timeout_seconds);
        v["failureThreshold"] = json!(failures);
        v
    };
    c["startupProbe"] = probe(&p.alive, STARTUP_FAILURES);
    c["livenessProbe"] = probe(&p.alive, LIVENESS_FAILURES);
    c["readinessProbe"] = probe(&p.ready, READINESS_FAILURES);
}

fn data_mount(parts: &EngineParts) -> Value {
    let mut m = json!({"name": "data", "mountPath": parts.data_mount_path});
    if let Some(sub) = parts.data_sub_path {
        m["subPath"] = json!(sub);
    }
    m
}

fn database_container(plan: &Plan, parts: &EngineParts) -> Value {
    let mut env = vec![pod_name_env()];
    env.extend(parts.env.iter().cloned());
    let mut mounts = vec![data_mount(parts)];
    if has_setup(plan, parts) {
        mounts.push(json!({"name": "kidp", "mountPath": CONFIG_DIR, "readOnly": true}));
    }
    mounts.extend(parts.mounts.iter().cloned());
    let mut c = json!({
        "name": DATABASE_CONTAINER,
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": [{
            "name": plan.spec.engine.as_str(),
            "containerPort": plan.port(),
            "protocol": "TCP",
        }],
        "resources": resources(plan),
        "volumeMounts": mounts,
        // The images start as root to fix volume ownership, then drop to their own user with gosu, which
        // needs no privilege escalation.
        "securityContext": {"allowPrivilegeEscalation": false},
    });
    if let Some(cmd) = &parts.command {
        c["command"] = json!(cmd);
    }
    if !parts.args.is_empty() {
        c["args"] = json!(parts.args);
    }
    probes(&mut c, &parts.probes);
    if let Some(pre_stop) = &parts.pre_stop {
        c["lifecycle"] = json!({"preStop": pre_stop});
    }
    c
}

/// `POD_NAME`: every script derives the pod's ordinal, and so its role, from it.
fn pod_name_env() -> Value {
    json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
}

fn has_setup(plan: &Plan, parts: &EngineParts) -> bool {
    plan.tls || parts.setup.is_some()
}

/// The `setup` init container: as the image's unprivileged user, it copies Secrets into an emptyDir with
/// the owner and modes the engines insist on (a Secret volume's files are root-owned and group-readable,
/// which PostgreSQL refuses for a key and MongoDB for a keyfile), then runs the engine's own preparation.
fn setup_container(plan: &Plan, parts: &EngineParts) -> Option<Value> {
    if !has_setup(plan, parts) {
        return None;
    }
    let mut script = String::from("set -eu\numask 077\n");
    let mut mounts = vec![json!({"name": "kidp", "mountPath": CONFIG_DIR})];
    if plan.tls {
        script.push_str(&format!(
            "mkdir -p {tls}\n\
             cp {src}/ca.crt {src}/tls.crt {src}/tls.key {tls}/\n\
             chmod 0600 {tls}/tls.key\n",
            tls = super::TLS_DIR,
            src = TLS_SOURCE_DIR,
        ));
        mounts.push(json!({"name": "tls", "mountPath": TLS_SOURCE_DIR, "readOnly": true}));
    }
    if let Some(engine) = &parts.setup {
        script.push_str(engine);
    }
    mounts.extend(parts.setup_mounts.iter().cloned());
    let mut env = vec![pod_name_env()];
    env.extend(parts.setup_env.iter().cloned());
    Some(json!({
        "name": "setup",
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "env": env,
        // Init containers count towards the pod's resources only as their maximum, so giving this one
        // the database's keeps the pod in the Guaranteed class at no cost.
        "resources": resources(plan),
        "volumeMounts": mounts,
        "securityContext": {
            "runAsUser": IMAGE_USER,
            "runAsGroup": IMAGE_USER,
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        },
    }))
}

fn volumes(plan: &Plan, parts: &EngineParts) -> Value {
    let mut v = Vec::new();
    if has_setup(plan, parts) {
        v.push(json!({"name": "kidp", "emptyDir": {}}));
    }
    if plan.tls {
        v.push(json!({
            "name": "tls",
            // Group-readable for the setup container (group = fsGroup); it makes the strict copies.
            "secret": {"secretName": tls_secret_name(plan.name), "defaultMode": 0o440},
        }));
    }
    v.extend(parts.volumes.iter().cloned());
    json!(v)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::domain::Engine;

    #[test]
    fn pods_run_hardened_and_guaranteed() {
        let objs = render_spec(&full_spec(Engine::Postgresql, "16"));
        let pod = &sts(&objs)["spec"]["template"]["spec"];
        assert_eq!(pod["enableServiceLinks"], false);
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["fsGroup"], 999);
        let setup = setup(&objs).unwrap();
        assert_eq!(setup["securityContext"]["runAsUser"], 999);
        assert_eq!(setup["securityContext"]["runAsNonRoot"], true);
        assert_eq!(setup["resources"], db(&objs)["resources"]);
        assert_eq!(
            db(&objs)["securityContext"]["allowPrivilegeEscalation"],
            false
        );
    }

    #[test]
    fn probes_get_timing_suited_to_their_role() {
        let objs = render_spec(&spec(Engine::Redis, "7.2"));
        let c = db(&objs);
        assert_eq!(c["startupProbe"]["failureThreshold"], 60);
        assert_eq!(c["livenessProbe"]["failureThreshold"], 6);
        assert_eq!(c["readinessProbe"]["failureThreshold"], 3);
        for p in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert_eq!(c[p]["periodSeconds"], 10);
        }
    }

    #[test]
    fn the_setup_container_gets_the_credentials_only_when_its_script_uses_them() {
        let names = |objs: &[serde_json::Value]| -> Vec<String> {
            setup(objs).unwrap()["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        for engine in [Engine::Mysql, Engine::Mongodb, Engine::Redis] {
            let version = engine.info().recommended_version().version;
            assert_eq!(
                names(&render_spec(&full_spec(engine, version))),
                ["POD_NAME"]
            );
        }
        // PostgreSQL replicas log in to the primary for their base backup.
        let pg = names(&render_spec(&full_spec(Engine::Postgresql, "16")));
        assert!(pg.contains(&"POSTGRES_PASSWORD".to_string()), "{pg:?}");
    }

    #[test]
    fn without_tls_or_engine_preparation_there_is_no_setup_container() {
        let objs = render_spec(&spec(Engine::Redis, "7.2"));
        assert!(setup(&objs).is_none());
        let vols = sts(&objs)["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .clone();
        assert!(
            vols.iter()
                .all(|v| v["name"] != "kidp" && v["name"] != "tls")
        );
    }
}
