//! Redis from the official `redis` image.
//!
//! - The image has no password variable: a start script passes `--requirepass` (and `--masterauth`, for
//!   replicas) from the env the credentials Secret fills, then `exec`s the image's entrypoint. Redis
//!   rewrites its process title, so the password does not linger in `ps`.
//! - Persistence: append-only file plus Redis' default snapshots, in `/data`. `maxmemory` at three
//!   quarters of the container's memory with `noeviction`: a database must refuse writes rather than drop
//!   keys, and must stay clear of the OOM killer when a snapshot fork duplicates pages.
//! - Replicas (pods 1 and 2) start with `--replicaof` pod 0. No Sentinel, so no failover: clients keep
//!   writing to pod 0 through the Service.
//! - TLS: `--tls-port` replaces the plain port (`--port 0`), clients need no certificate, and replication
//!   runs over TLS too.
//! - Probes: `redis-cli ping` must answer `PONG` (liveness also accepts `LOADING`, a large dataset being
//!   read at start, which is no reason to restart). `REDISCLI_AUTH` carries the password.
//! - Backups: `redis-cli --rdb`, a snapshot streamed from pod 0 over the replication protocol.

use super::{CA_FILE, CERT_FILE, Dump, EngineParts, KEY_FILE, Plan, Probes, exec_sh};

/// redis-cli's TLS options (it verifies the server against our CA).
fn cli_tls(plan: &Plan) -> String {
    if plan.tls {
        format!(" --tls --cacert {CA_FILE}")
    } else {
        String::new()
    }
}

fn start_script(plan: &Plan) -> String {
    let port = plan.port();
    let maxmemory_mib = u64::from(plan.size.memory_mib) * 3 / 4;
    let mut flags = vec![
        "--dir /data".to_string(),
        "--appendonly yes".to_string(),
        format!("--maxmemory {maxmemory_mib}mb"),
        "--maxmemory-policy noeviction".to_string(),
        "--requirepass \"$REDIS_PASSWORD\"".to_string(),
        "--masterauth \"$REDIS_PASSWORD\"".to_string(),
    ];
    if plan.tls {
        flags.push(format!("--port 0 --tls-port {port}"));
        flags.push(format!(
            "--tls-cert-file {CERT_FILE} --tls-key-file {KEY_FILE} --tls-ca-cert-file {CA_FILE}"
        ));
        flags.push("--tls-auth-clients no".to_string());
        if plan.ha {
            flags.push("--tls-replication yes".to_string());
        }
    } else {
        flags.push(format!("--port {port}"));
    }
    let replica = if plan.ha {
        format!(
            "if [ \"$ordinal\" != 0 ]; then\n\
             \x20 set -- \"$@\" --replicaof {primary} {port}\n\
             fi\n",
            primary = plan.primary_host(),
        )
    } else {
        String::new()
    };
    format!(
        "set -eu\n\
         ordinal=\"${{POD_NAME##*-}}\"\n\
         set -- redis-server {flags}\n\
         {replica}\
         exec docker-entrypoint.sh \"$@\"\n",
        flags = flags.join(" "),
    )
}

/// The engine's parts of the StatefulSet.
pub(super) fn parts(plan: &Plan) -> EngineParts {
    let cli = format!(
        "redis-cli --no-auth-warning -h 127.0.0.1 -p {}{} ping",
        plan.port(),
        cli_tls(plan)
    );
    EngineParts {
        env: vec![
            plan.secret_env("REDIS_PASSWORD", "password"),
            // redis-cli reads the password from here: for the probes, and for anyone exec'ing in.
            plan.secret_env("REDISCLI_AUTH", "password"),
        ],
        command: Some(vec!["sh".into(), "-c".into(), start_script(plan)]),
        args: Vec::new(),
        data_mount_path: "/data".to_string(),
        data_sub_path: None,
        mounts: Vec::new(),
        volumes: Vec::new(),
        // The TLS copy (common to every engine) is all Redis needs before it starts.
        setup: None,
        setup_mounts: Vec::new(),
        setup_env: Vec::new(),
        probes: Probes {
            alive: exec_sh(&format!("{cli} | grep -qE '^(PONG|LOADING)'")),
            ready: exec_sh(&format!("{cli} | grep -q '^PONG'")),
            timeout_seconds: 5,
        },
        // Redis saves and exits on SIGTERM.
        pre_stop: None,
        secrets: Vec::new(),
    }
}

/// `redis-cli --rdb` from pod 0.
pub(super) fn dump(plan: &Plan) -> Dump {
    Dump {
        env: vec![plan.secret_env("REDISCLI_AUTH", "password")],
        command: format!(
            "redis-cli --no-auth-warning -h {host} -p {port}{tls} --rdb \"$partial\"",
            host = plan.primary_host(),
            port = plan.port(),
            tls = cli_tls(plan),
        ),
        extension: "rdb",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::*;
    use crate::domain::Engine;

    fn redis(ha: bool, tls: bool) -> Vec<serde_json::Value> {
        let mut s = spec(Engine::Redis, "7.2");
        s.high_availability = ha;
        s.encryption.in_transit = tls;
        render_spec(&s)
    }

    #[test]
    fn a_single_server_requires_the_password_from_the_secret() {
        let objs = redis(false, false);
        let c = db(&objs);
        assert_eq!(c["image"], "redis:7.2");
        assert_eq!(c["ports"][0]["containerPort"], 6379);
        let start = start_line(&objs);
        assert!(start.contains("set -- redis-server --dir /data --appendonly yes --maxmemory 3072mb --maxmemory-policy noeviction --requirepass \"$REDIS_PASSWORD\""), "{start}");
        assert!(start.contains("--port 6379"), "{start}");
        assert!(!start.contains("--replicaof"));
        assert!(
            c["env"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "orders-credentials", "key": "password"}}}))
        );
        let ready = script(&c["readinessProbe"]["exec"]["command"]);
        assert_eq!(
            ready,
            "redis-cli --no-auth-warning -h 127.0.0.1 -p 6379 ping | grep -q '^PONG'"
        );
    }

    #[test]
    fn replicas_follow_pod_0() {
        let start = start_line(&redis(true, false));
        assert!(start.contains("if [ \"$ordinal\" != 0 ]; then\n  set -- \"$@\" --replicaof orders-0.orders-headless.team-a.svc.cluster.local 6379\nfi"), "{start}");
        assert!(start.contains("--masterauth \"$REDIS_PASSWORD\""));
    }

    #[test]
    fn tls_replaces_the_plain_port_and_covers_replication() {
        let objs = redis(true, true);
        let start = start_line(&objs);
        assert!(start.contains("--port 0 --tls-port 6379 --tls-cert-file /etc/kidp/tls/tls.crt --tls-key-file /etc/kidp/tls/tls.key --tls-ca-cert-file /etc/kidp/tls/ca.crt --tls-auth-clients no --tls-replication yes"), "{start}");
        let alive = script(&db(&objs)["livenessProbe"]["exec"]["command"]);
        assert!(
            alive.contains("--tls --cacert /etc/kidp/tls/ca.crt ping"),
            "{alive}"
        );
    }

    #[test]
    fn the_backup_streams_an_rdb_from_pod_0() {
        let objs = render_spec(&full_spec(Engine::Redis, "7.2"));
        let s = backup_script(&objs);
        assert!(s.contains("redis-cli --no-auth-warning -h orders-0.orders-headless.team-a.svc.cluster.local -p 6379 --tls --cacert /etc/kidp/tls/ca.crt --rdb \"$partial\""), "{s}");
        assert!(s.contains(".rdb\""), "{s}");
    }
}
