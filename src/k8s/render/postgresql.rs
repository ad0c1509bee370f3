//! PostgreSQL from the official `postgres` image.
//!
//! - The image's entrypoint initialises the cluster from `POSTGRES_USER`/`POSTGRES_PASSWORD`/`POSTGRES_DB`
//!   (all from the credentials Secret); we add `-c` settings on its command line.
//! - Authentication is ours: the setup container writes a `pg_hba.conf` (passed as `hba_file`) that trusts
//!   only the local socket and wants a password over TCP (`hostssl` only, with TLS), replication included.
//! - Replicas (pods 1 and 2) are streaming standbys: on first start the setup container copies pod 0 with
//!   `pg_basebackup -R`, which also writes `standby.signal` and `primary_conninfo`. No failover: a standby
//!   stays a standby until someone promotes it.
//! - Probes: `pg_isready` over TCP, as Bitnami does; it needs no password. With HA a standby is ready only
//!   while its WAL receiver streams from the primary (`pg_stat_wal_receiver`, over the trusted local
//!   socket): `pg_isready` alone calls a standby ready that cannot reach the primary at all (a wrong TLS
//!   setup did exactly that on real pods), and its reads would go stale unnoticed.
//! - `/dev/shm` is a memory-backed emptyDir: the container runtime's default 64MB is too small for
//!   parallel queries' dynamic shared memory.
//! - Backups: `pg_dumpall` (roles and every database) through gzip.

use serde_json::json;

use super::{CA_FILE, CERT_FILE, Dump, EngineParts, KEY_FILE, Plan, Probes, exec, exec_sh};

/// Where the setup container writes the authentication rules.
const HBA_FILE: &str = "/etc/kidp/pg_hba.conf";

/// The data directory layout, which changed in the image for PostgreSQL 18: returns the volume's mount
/// path and `PGDATA`. Up to 17 the data lives in a subdirectory of the mount, because a fresh volume's
/// root may hold `lost+found` and `initdb` refuses a non-empty directory.
fn data_layout(major: u32) -> (String, String) {
    if major >= 18 {
        (
            "/var/lib/postgresql".to_string(),
            format!("/var/lib/postgresql/{major}/docker"),
        )
    } else {
        (
            "/var/lib/postgresql/data".to_string(),
            "/var/lib/postgresql/data/pgdata".to_string(),
        )
    }
}

/// The password method: SCRAM from 14, when it became the default password encryption; before that the
/// image stores md5 hashes, which a `scram-sha-256` rule would refuse.
fn auth_method(major: u32) -> &'static str {
    if major >= 14 { "scram-sha-256" } else { "md5" }
}

fn hba(plan: &Plan, major: u32) -> String {
    let host = if plan.tls { "hostssl" } else { "host" };
    let method = auth_method(major);
    format!(
        "cat > {HBA_FILE} <<'EOF'\n\
         # Written by kidp-broker's setup container.\n\
         # The local socket is trusted, as in the image's default: its own initialisation uses it.\n\
         local all all trust\n\
         # Over TCP, a password{tls_note}; replication connections the same.\n\
         {host} all all all {method}\n\
         {host} replication all all {method}\n\
         EOF\n",
        tls_note = if plan.tls { " and TLS" } else { "" },
    )
}

/// Pods 1.. copy pod 0 before their first start. Only when the data directory holds no cluster: a
/// restarted standby resumes streaming from where it was.
fn replica_bootstrap(plan: &Plan) -> String {
    let tls = if plan.tls {
        format!("  export PGSSLMODE=verify-full PGSSLROOTCERT={CA_FILE}\n")
    } else {
        String::new()
    };
    format!(
        "ordinal=\"${{POD_NAME##*-}}\"\n\
         if [ \"$ordinal\" != 0 ] && [ ! -s \"$PGDATA/PG_VERSION\" ]; then\n\
         \x20 primary={primary}\n\
         {tls}\
         \x20 echo \"$POD_NAME: waiting for the primary $primary\"\n\
         \x20 until pg_isready -q -h \"$primary\" -p {port}; do sleep 2; done\n\
         \x20 echo \"$POD_NAME: copying the primary with pg_basebackup\"\n\
         \x20 # A directory without PG_VERSION is a copy that failed half-way: start it again.\n\
         \x20 rm -rf \"$PGDATA\"\n\
         \x20 mkdir -p \"$PGDATA\"\n\
         \x20 chmod 0700 \"$PGDATA\"\n\
         \x20 PGPASSWORD=\"$POSTGRES_PASSWORD\" pg_basebackup -h \"$primary\" -p {port} -U \"$POSTGRES_USER\" \
         -D \"$PGDATA\" -X stream -R -c fast\n\
         fi\n",
        primary = plan.primary_host(),
        port = plan.port(),
    )
}

/// The readiness check of an HA member: `pg_isready`, and on a standby (ordinal > 0) a WAL receiver that is
/// streaming.
fn standby_streaming(isready: &serde_json::Value, port: &str) -> String {
    let isready: Vec<&str> = isready["exec"]["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .collect();
    format!(
        "{} -q || exit 1
         [ \"${{POD_NAME##*-}}\" = 0 ] && exit 0
         streaming=\"$(psql -h /var/run/postgresql -p {port} -U \"$POSTGRES_USER\" -d postgres -tAc          \"select count(*) from pg_stat_wal_receiver where status = 'streaming'\")\"
         [ \"$streaming\" = 1 ] || {{ echo \"not streaming from the primary\"; exit 1; }}
",
        isready.join(" ")
    )
}

/// The engine's parts of the StatefulSet.
pub(super) fn parts(plan: &Plan) -> EngineParts {
    let (major, _) = plan.version();
    let (mount, pgdata) = data_layout(major);
    let env = vec![
        plan.secret_env("POSTGRES_USER", "username"),
        plan.secret_env("POSTGRES_PASSWORD", "password"),
        plan.secret_env("POSTGRES_DB", "database"),
        json!({"name": "PGDATA", "value": pgdata}),
    ];

    let mut args: Vec<String> = vec!["postgres".into()];
    let mut set = |setting: String| {
        args.push("-c".into());
        args.push(setting);
    };
    set(format!("hba_file={HBA_FILE}"));
    // A quarter of memory, the usual starting point; the default 128MB wastes a large pod.
    set(format!("shared_buffers={}MB", plan.size.memory_mib / 4));
    if plan.tls {
        set("ssl=on".into());
        set(format!("ssl_cert_file={CERT_FILE}"));
        set(format!("ssl_key_file={KEY_FILE}"));
    }
    if plan.ha {
        // Keep enough WAL for a standby that was briefly away to catch up without a new base backup.
        // Not a replication slot: a slot of a standby that never returns would keep WAL without bound.
        if major >= 13 {
            set("wal_keep_size=1GB".into());
        } else {
            set("wal_keep_segments=64".into());
        }
    }

    let mut setup = hba(plan, major);
    let mut setup_mounts = Vec::new();
    if plan.ha {
        setup.push_str(&replica_bootstrap(plan));
        setup_mounts.push(json!({"name": "data", "mountPath": mount}));
    }

    let c = plan.ctx.credentials;
    let port = plan.port().to_string();
    let dbname = format!("dbname={}", c.database);
    let isready = exec(&[
        "pg_isready",
        "-U",
        &c.username,
        "-d",
        &dbname,
        "-h",
        "127.0.0.1",
        "-p",
        &port,
    ]);
    let ready = if plan.ha {
        exec_sh(&standby_streaming(&isready, &port))
    } else {
        isready.clone()
    };
    // Writing pg_hba.conf needs nothing; the base backup needs PGDATA and the login.
    let setup_env = if plan.ha { env.clone() } else { Vec::new() };

    EngineParts {
        env,
        command: None,
        args,
        data_mount_path: mount,
        data_sub_path: None,
        mounts: vec![json!({"name": "dshm", "mountPath": "/dev/shm"})],
        // No sizeLimit: tmpfs pages are charged to the container's memory limit, which bounds them.
        volumes: vec![json!({"name": "dshm", "emptyDir": {"medium": "Memory"}})],
        setup: Some(setup),
        setup_mounts,
        setup_env,
        probes: Probes {
            alive: isready,
            ready,
            timeout_seconds: 5,
        },
        // Kubernetes stops with SIGTERM, PostgreSQL's "smart" shutdown, which waits for every client to
        // disconnect; connection pools never do, and the kill at the end of the grace period forces
        // crash recovery. A fast shutdown rolls back open transactions and checkpoints.
        pre_stop: Some(exec_sh(
            "gosu postgres pg_ctl stop -D \"$PGDATA\" -m fast -w -t 50",
        )),
        secrets: Vec::new(),
    }
}

/// `pg_dumpall` of pod 0: every database and the roles, as plain SQL, gzipped.
pub(super) fn dump(plan: &Plan) -> Dump {
    let mut env = vec![
        plan.secret_env("PGUSER", "username"),
        plan.secret_env("PGPASSWORD", "password"),
    ];
    if plan.tls {
        env.push(json!({"name": "PGSSLMODE", "value": "verify-full"}));
        env.push(json!({"name": "PGSSLROOTCERT", "value": CA_FILE}));
    }
    Dump {
        env,
        command: format!(
            "pg_dumpall -h {} -p {} --clean --if-exists | gzip > \"$partial\"",
            plan.primary_host(),
            plan.port()
        ),
        extension: "sql.gz",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::*;
    use crate::domain::Engine;

    fn pg(version: &str, ha: bool, tls: bool) -> Vec<serde_json::Value> {
        let mut s = spec(Engine::Postgresql, version);
        s.high_availability = ha;
        s.encryption.in_transit = tls;
        render_spec(&s)
    }

    #[test]
    fn a_standby_is_ready_only_while_it_streams_from_the_primary() {
        let objs = pg("15", true, true);
        let c = db(&objs);
        let ready = script(&c["readinessProbe"]["exec"]["command"]);
        assert!(
            ready
                .starts_with("pg_isready -U app -d dbname=app -h 127.0.0.1 -p 5432 -q || exit 1\n"),
            "{ready}"
        );
        assert!(
            ready.contains("[ \"${POD_NAME##*-}\" = 0 ] && exit 0"),
            "{ready}"
        );
        assert!(
            ready.contains("from pg_stat_wal_receiver where status = 'streaming'"),
            "{ready}"
        );
        // Liveness stays pg_isready: a standby that lost its primary must not be restarted for it.
        let alive = script(&c["livenessProbe"]["exec"]["command"]);
        assert!(!alive.contains("pg_stat_wal_receiver"), "{alive}");
        // Without HA there is no standby to check.
        let single = pg("15", false, false);
        assert!(
            !script(&db(&single)["readinessProbe"]["exec"]["command"]).contains("wal_receiver")
        );
    }

    #[test]
    fn runs_the_official_image_with_password_from_the_secret_and_shm() {
        let objs = pg("16", false, false);
        let c = db(&objs);
        assert_eq!(c["image"], "postgres:16");
        assert_eq!(c["ports"][0]["containerPort"], 5432);
        let env = c["env"].as_array().unwrap();
        assert!(env.contains(&json!({"name": "POSTGRES_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "orders-credentials", "key": "password"}}})));
        assert!(
            env.contains(&json!({"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}))
        );
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "dshm", "mountPath": "/dev/shm"}))
        );
        let vols = sts(&objs)["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .clone();
        assert!(vols.contains(&json!({"name": "dshm", "emptyDir": {"medium": "Memory"}})));
        assert_eq!(
            c["readinessProbe"]["exec"]["command"],
            json!([
                "pg_isready",
                "-U",
                "app",
                "-d",
                "dbname=app",
                "-h",
                "127.0.0.1",
                "-p",
                "5432"
            ])
        );
        let args = script(&c["args"]);
        assert!(
            args.starts_with("postgres -c hba_file=/etc/kidp/pg_hba.conf"),
            "{args}"
        );
        assert!(args.contains("shared_buffers=1024MB"), "{args}");
        assert!(!args.contains("ssl=on"));
        let pre_stop = script(&c["lifecycle"]["preStop"]["exec"]["command"]);
        assert!(pre_stop.contains("pg_ctl stop") && pre_stop.contains("-m fast"));
        let hba = script(&setup(&objs).unwrap()["command"]);
        assert!(hba.contains("host all all all scram-sha-256"), "{hba}");
        assert!(!hba.contains("pg_basebackup"));
    }

    #[test]
    fn tls_turns_on_ssl_with_the_copied_key_and_requires_it_over_tcp() {
        let objs = pg("15", false, true);
        let args = script(&db(&objs)["args"]);
        assert!(
            args.contains("-c ssl=on -c ssl_cert_file=/etc/kidp/tls/tls.crt -c ssl_key_file=/etc/kidp/tls/tls.key"),
            "{args}"
        );
        let setup = script(&setup(&objs).unwrap()["command"]);
        assert!(
            setup.contains("hostssl all all all scram-sha-256"),
            "{setup}"
        );
        assert!(setup.contains("hostssl replication all all"), "{setup}");
        assert!(!setup.contains("\nhost all"), "{setup}");
    }

    #[test]
    fn replicas_stream_from_pod_0_after_a_base_backup() {
        let objs = pg("16", true, true);
        let setup_c = setup(&objs).unwrap();
        let s = script(&setup_c["command"]);
        assert!(
            s.contains("primary=orders-0.orders-headless.team-a.svc.cluster.local"),
            "{s}"
        );
        assert!(
            s.contains("[ \"$ordinal\" != 0 ] && [ ! -s \"$PGDATA/PG_VERSION\" ]"),
            "{s}"
        );
        assert!(
            s.contains("PGPASSWORD=\"$POSTGRES_PASSWORD\" pg_basebackup -h \"$primary\" -p 5432 -U \"$POSTGRES_USER\" -D \"$PGDATA\" -X stream -R"),
            "{s}"
        );
        assert!(
            s.contains("PGSSLMODE=verify-full PGSSLROOTCERT=/etc/kidp/tls/ca.crt"),
            "{s}"
        );
        // The copy lands on the data volume, where the database container then finds it.
        assert!(
            setup_c["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "data", "mountPath": "/var/lib/postgresql/data"}))
        );
        assert!(script(&db(&objs)["args"]).contains("-c wal_keep_size=1GB"));
    }

    #[test]
    fn older_and_newer_majors_get_their_own_settings() {
        let objs = pg("12", true, false);
        assert!(script(&db(&objs)["args"]).contains("wal_keep_segments=64"));
        assert!(script(&setup(&objs).unwrap()["command"]).contains("host all all all md5"));

        let objs = render_spec(&spec(Engine::Postgresql, "18"));
        let env = db(&objs)["env"].as_array().unwrap().clone();
        assert!(env.contains(&json!({"name": "PGDATA", "value": "/var/lib/postgresql/18/docker"})));
        assert!(
            db(&objs)["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "data", "mountPath": "/var/lib/postgresql"}))
        );
    }

    #[test]
    fn the_backup_is_a_gzipped_pg_dumpall_of_pod_0() {
        let objs = render_spec(&full_spec(Engine::Postgresql, "16"));
        let s = backup_script(&objs);
        assert!(
            s.contains("pg_dumpall -h orders-0.orders-headless.team-a.svc.cluster.local -p 5432 --clean --if-exists | gzip > \"$partial\""),
            "{s}"
        );
        let cj = find(&objs, "CronJob", "orders-backup");
        let env = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .clone();
        assert!(env.contains(&json!({"name": "PGSSLMODE", "value": "verify-full"})));
        assert!(
            env.iter().any(|e| e["name"] == "PGPASSWORD"
                && e["valueFrom"]["secretKeyRef"]["key"] == "password")
        );
    }
}
