//! Backups: a PVC `<name>-backup` and a CronJob `<name>-backup` that, on the deployment's schedule, runs
//! the engine's own dump tool against the primary, writes a timestamped file to the PVC and prunes the
//! files older than the retention.
//!
//! Logical dumps from the official image, not volume snapshots: they need no CSI snapshot support, restore
//! across versions, and each file is complete or absent (written to `.partial`, renamed when done).

use serde_json::{Value, json};

use super::{COMPONENT_BACKUP, Dump, IMAGE_USER, Plan, TLS_DIR, backup_name, tls_secret_name};
use crate::domain::backup_gib_estimate;

/// Where the backup PVC is mounted in the Job's pod.
const BACKUP_DIR: &str = "/backup";

/// A run missed by more than this (the controller was down, the cluster was upgraded) is skipped rather
/// than started hours late, when it would collide with the day's traffic.
const STARTING_DEADLINE_SECONDS: u32 = 3600;

/// A failed dump is retried twice (a primary restarting, a network blip), then the Job fails and stays in
/// the history for inspection.
const BACKOFF_LIMIT: u32 = 2;

/// How many finished Jobs of each outcome are kept, for their logs.
const HISTORY_LIMIT: u32 = 3;

/// `<name>-backup`: sized by the cost model's estimate, so what is billed is what is provisioned.
pub(super) fn volume_claim(plan: &Plan) -> Value {
    let gib = backup_gib_estimate(
        plan.size.storage_gib,
        &plan.spec.backup.effective_retention(),
    )
    .max(1);
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": plan.metadata(&backup_name(plan.name)),
        "spec": plan.claim_spec(gib),
    })
}

/// The Job's script: dump, publish atomically, prune. Bash for `pipefail` (a failed dump piped into gzip
/// must fail the Job) and for process substitution (passwords handed over without touching argv).
fn script(plan: &Plan, dump: &Dump) -> String {
    let minutes = plan.spec.backup.effective_retention().hours() * 60;
    format!(
        "set -euo pipefail\n\
         stamp=\"$(date -u +%Y%m%dT%H%M%SZ)\"\n\
         file=\"{dir}/{name}-${{stamp}}.{ext}\"\n\
         partial=\"${{file}}.partial\"\n\
         echo \"dumping {host} to $file\"\n\
         {command}\n\
         mv \"$partial\" \"$file\"\n\
         echo \"wrote $file\"\n\
         # Keep the retention period; leftovers of failed runs (.partial) age out the same way.\n\
         find {dir} -maxdepth 1 -type f -name '{name}-*' -mmin +{minutes} -print -delete\n",
        dir = BACKUP_DIR,
        name = plan.name,
        ext = dump.extension,
        host = plan.primary_host(),
        command = dump.command,
    )
}

/// `<name>-backup`: one dump at a time (`Forbid`), in UTC so the schedule means the same on every cluster.
pub(super) fn cron_job(plan: &Plan, dump: &Dump) -> Value {
    let labels = plan.pod_labels(COMPONENT_BACKUP);
    let mut mounts = vec![json!({"name": "backup", "mountPath": BACKUP_DIR})];
    let mut volumes = vec![json!({
        "name": "backup",
        "persistentVolumeClaim": {"claimName": backup_name(plan.name)},
    })];
    if plan.tls {
        // Only the CA: the dump is a client and verifies the server.
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
        volumes.push(json!({
            "name": "tls",
            "secret": {
                "secretName": tls_secret_name(plan.name),
                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                "defaultMode": 0o444,
            },
        }));
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": plan.metadata(&backup_name(plan.name)),
        "spec": {
            "schedule": plan.spec.backup.effective_schedule().as_str(),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": HISTORY_LIMIT,
            "failedJobsHistoryLimit": HISTORY_LIMIT,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": BACKOFF_LIMIT,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "restartPolicy": "Never",
                            "enableServiceLinks": false,
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsUser": IMAGE_USER,
                                "runAsGroup": IMAGE_USER,
                                "runAsNonRoot": true,
                                "fsGroup": IMAGE_USER,
                                "fsGroupChangePolicy": "OnRootMismatch",
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [{
                                "name": "backup",
                                "image": plan.image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["bash", "-c", script(plan, dump)],
                                "env": dump.env,
                                "volumeMounts": mounts,
                                // Dump tools stream; the memory limit guards the node against a runaway
                                // one without reserving the database's size for a nightly minute of work.
                                "resources": {
                                    "requests": {"cpu": "250m", "memory": "256Mi"},
                                    "limits": {"memory": "1Gi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }],
                            "volumes": volumes,
                        },
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::{COMPONENT_DATABASE, COMPONENT_LABEL};
    use crate::domain::{Engine, RetentionPeriod, backup_gib_estimate};

    #[test]
    fn backup_runs_on_the_schedule_one_at_a_time_and_prunes_to_the_retention() {
        let objs = render_spec(&full_spec(Engine::Postgresql, "16"));
        let cj = find(&objs, "CronJob", "orders-backup");
        assert_eq!(cj["spec"]["schedule"], "30 3 * * *");
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
        let s = backup_script(&objs);
        // 36h = 2160 minutes.
        assert!(
            s.contains(
                "find /backup -maxdepth 1 -type f -name 'orders-*' -mmin +2160 -print -delete"
            ),
            "{s}"
        );
        assert!(s.contains("file=\"/backup/orders-${stamp}.sql.gz\""), "{s}");
        assert!(s.contains("mv \"$partial\" \"$file\""));
        let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "orders-backup"
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0]["mountPath"],
            "/backup"
        );
    }

    #[test]
    fn defaults_apply_when_schedule_and_retention_were_omitted() {
        let mut s = spec(Engine::Redis, "7.2");
        s.backup.enabled = true;
        let objs = render_spec(&s);
        let cj = find(&objs, "CronJob", "orders-backup");
        assert_eq!(cj["spec"]["schedule"], "0 2 * * *");
        // 7d = 10080 minutes.
        assert!(backup_script(&objs).contains("-mmin +10080"));
        let pvc = find(&objs, "PersistentVolumeClaim", "orders-backup");
        let want = backup_gib_estimate(50, &RetentionPeriod::parse("7d").unwrap());
        assert_eq!(
            pvc["spec"]["resources"]["requests"]["storage"],
            format!("{want}Gi")
        );
        assert!(pvc["spec"].get("storageClassName").is_none());
    }

    #[test]
    fn the_backup_pvc_is_sized_by_the_estimate_and_never_empty() {
        let objs = render_spec(&full_spec(Engine::Mysql, "8.4"));
        let pvc = find(&objs, "PersistentVolumeClaim", "orders-backup");
        // medium = 50Gi, 36h: ceil(50 × 36 / 168) = 11.
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "11Gi");
        let mut s = spec(Engine::Redis, "7.2");
        s.size = crate::domain::Size::Small;
        s.backup.enabled = true;
        s.backup.retention = Some(RetentionPeriod::parse("1h").unwrap());
        let objs = render_spec(&s);
        let pvc = find(&objs, "PersistentVolumeClaim", "orders-backup");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    }

    #[test]
    fn backup_pods_are_never_selected_as_database_pods() {
        let objs = render_spec(&full_spec(Engine::Mongodb, "7.0"));
        let cj = find(&objs, "CronJob", "orders-backup");
        let labels = &cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            labels["kidp.io/deployment-id"],
            "deploy-0123456789abcdef0123456789abcdef"
        );
        assert_eq!(labels[COMPONENT_LABEL], "backup");
        let selector = &find(&objs, "Service", "orders")["spec"]["selector"];
        assert_eq!(selector[COMPONENT_LABEL], COMPONENT_DATABASE);
    }

    #[test]
    fn the_backup_connects_to_pod_0_with_the_credentials_from_the_secret() {
        let objs = render_spec(&full_spec(Engine::Redis, "7.2"));
        let s = backup_script(&objs);
        assert!(
            s.contains("orders-0.orders-headless.team-a.svc.cluster.local"),
            "{s}"
        );
        let cj = find(&objs, "CronJob", "orders-backup");
        let c = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        assert!(c["env"].as_array().unwrap().iter().any(|e| {
            e["valueFrom"]["secretKeyRef"]["name"] == "orders-credentials"
                && e["valueFrom"]["secretKeyRef"]["key"] == "password"
        }));
        // With TLS, the CA (and only the CA) is mounted where the engines' clients look for it.
        let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        let tls = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "tls")
            .unwrap();
        assert_eq!(
            tls["secret"]["items"],
            serde_json::json!([{"key": "ca.crt", "path": "ca.crt"}])
        );
    }
}
