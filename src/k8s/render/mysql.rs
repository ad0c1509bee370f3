//! MySQL from the official `mysql` image.
//!
//! - The image's entrypoint initialises the server from `MYSQL_ROOT_PASSWORD`, `MYSQL_USER`,
//!   `MYSQL_PASSWORD` and `MYSQL_DATABASE` (all from the credentials Secret). root shares the deployment's
//!   password: replication and backups need its privileges, and whoever reads the Secret could already do
//!   anything the application user can.
//! - A small start script picks per-pod flags (`server-id` = 100 + ordinal, as the Kubernetes MySQL example
//!   does) and `exec`s the image's entrypoint. Binary logging with GTIDs is always on, so turning on high
//!   availability later finds a binlog to replicate from.
//! - Replicas (pods 1 and 2) replicate asynchronously from pod 0 with GTID auto-positioning. A replica's
//!   first start skips creating the application user, database and time zones (they arrive through the
//!   primary's binlog), and an init script points it at pod 0 (`CHANGE REPLICATION SOURCE TO` … `START
//!   REPLICA` from 8.4, `CHANGE MASTER TO` … `START SLAVE` before, whose statements 8.4 removed). That
//!   replays the primary's binlog from its beginning, so it needs the primary's binlogs to still hold its
//!   whole history (30 days by default); cloning a long-lived primary (CLONE plugin, xtrabackup) is not
//!   done. Replicas run `read_only`. No failover.
//! - Probes: `mysqladmin ping` over TCP (the image's temporary initialisation server listens on no TCP
//!   port, so this succeeds only once the real server is up). It exits 0 even when access is denied, so
//!   it needs no password.
//! - Backups: `mysqldump --all-databases --single-transaction` through gzip.

use serde_json::json;

use super::{CA_FILE, CERT_FILE, Dump, EngineParts, KEY_FILE, Plan, Probes, exec};

/// Where the image looks for first-start scripts.
const INITDB_DIR: &str = "/docker-entrypoint-initdb.d";

/// Whether this version speaks the replication statements of 8.4 (the old ones were removed there).
fn new_replication_syntax(version: (u32, u32)) -> bool {
    version >= (8, 4)
}

/// The statements that point a new replica at pod 0. Sourced by the image's entrypoint, so
/// `docker_process_sql` (its own helper, connected as root) runs them and `$MYSQL_ROOT_PASSWORD` expands
/// only then: the password is never written to disk.
fn replica_sql(plan: &Plan) -> String {
    let new = new_replication_syntax(plan.version());
    let (change, p, start) = if new {
        ("CHANGE REPLICATION SOURCE TO", "SOURCE", "START REPLICA")
    } else {
        ("CHANGE MASTER TO", "MASTER", "START SLAVE")
    };
    // Always over TLS: every MySQL since 5.7 generates a certificate if none is given, and 8.x's
    // caching_sha2_password refuses a replica's first login in plaintext. With our CA, also verified.
    let mut options = vec![
        format!("{p}_HOST='{}'", plan.primary_host()),
        format!("{p}_PORT={}", plan.port()),
        format!("{p}_USER='root'"),
        format!("{p}_PASSWORD='${{MYSQL_ROOT_PASSWORD}}'"),
        format!("{p}_AUTO_POSITION=1"),
        format!("{p}_SSL=1"),
    ];
    if plan.tls {
        options.push(format!("{p}_SSL_CA='{CA_FILE}'"));
        options.push(format!("{p}_SSL_VERIFY_SERVER_CERT=1"));
    }
    format!("{change} {};\n{start};\n", options.join(", "))
}

/// Writes the replica's init script (pods 1.. only; pod 0 initialises as a plain server).
fn replica_setup(plan: &Plan) -> String {
    format!(
        "ordinal=\"${{POD_NAME##*-}}\"\n\
         if [ \"$ordinal\" != 0 ]; then\n\
         cat > {INITDB_DIR}/50-kidp-replica.sh <<'EOF'\n\
         # Written by kidp-broker: sourced by the entrypoint on this replica's first start.\n\
         docker_process_sql <<EOSQL\n\
         {sql}\
         EOSQL\n\
         EOF\n\
         fi\n",
        sql = replica_sql(plan),
    )
}

/// The start script: per-pod flags, then the image's entrypoint.
fn start_script(plan: &Plan) -> String {
    let mut flags = vec![
        "--server-id=\"$((100 + ordinal))\"".to_string(),
        "--log-bin=mysql-bin".to_string(),
        "--gtid-mode=ON".to_string(),
        "--enforce-gtid-consistency=ON".to_string(),
        // Half the memory: InnoDB's cache is most of MySQL's footprint, and the rest (per-connection
        // buffers) must fit under a limit that kills rather than swaps.
        format!("--innodb-buffer-pool-size={}M", plan.size.memory_mib / 2),
    ];
    if plan.tls {
        flags.push(format!("--ssl-ca={CA_FILE}"));
        flags.push(format!("--ssl-cert={CERT_FILE}"));
        flags.push(format!("--ssl-key={KEY_FILE}"));
        flags.push("--require-secure-transport=ON".to_string());
    }
    let replica = if plan.ha {
        "if [ \"$ordinal\" != 0 ]; then\n\
         \x20 # A replica: its users and schema come from the primary's binlog, not from its own first start.\n\
         \x20 unset MYSQL_USER MYSQL_PASSWORD MYSQL_DATABASE\n\
         \x20 export MYSQL_INITDB_SKIP_TZINFO=1\n\
         \x20 set -- \"$@\" --read-only=ON\n\
         fi\n"
    } else {
        ""
    };
    format!(
        "set -eu\n\
         ordinal=\"${{POD_NAME##*-}}\"\n\
         set -- mysqld {flags}\n\
         {replica}\
         exec docker-entrypoint.sh \"$@\"\n",
        flags = flags.join(" "),
    )
}

/// The engine's parts of the StatefulSet.
pub(super) fn parts(plan: &Plan) -> EngineParts {
    let env = vec![
        plan.secret_env("MYSQL_ROOT_PASSWORD", "password"),
        plan.secret_env("MYSQL_USER", "username"),
        plan.secret_env("MYSQL_PASSWORD", "password"),
        plan.secret_env("MYSQL_DATABASE", "database"),
    ];
    let port = plan.port().to_string();
    let ping = exec(&[
        "mysqladmin",
        "ping",
        "-h",
        "127.0.0.1",
        "-P",
        &port,
        "--silent",
    ]);
    let (setup, mounts, volumes) = if plan.ha {
        let initdb = json!({"name": "initdb", "mountPath": INITDB_DIR});
        (
            Some(replica_setup(plan)),
            vec![initdb],
            vec![json!({"name": "initdb", "emptyDir": {}})],
        )
    } else {
        (None, Vec::new(), Vec::new())
    };
    EngineParts {
        env,
        command: Some(vec!["sh".into(), "-c".into(), start_script(plan)]),
        args: Vec::new(),
        data_mount_path: "/var/lib/mysql".to_string(),
        // A sub-directory, as in the Kubernetes example: a fresh volume's `lost+found` makes
        // `mysqld --initialize` refuse the data directory.
        data_sub_path: Some("mysql"),
        mounts: mounts.clone(),
        volumes,
        setup,
        setup_mounts: mounts,
        // The replica's init script reads the root password only when the entrypoint sources it.
        setup_env: Vec::new(),
        probes: Probes {
            alive: ping.clone(),
            ready: ping,
            timeout_seconds: 5,
        },
        // mysqld shuts down cleanly on SIGTERM.
        pre_stop: None,
        secrets: Vec::new(),
    }
}

/// `mysqldump` of pod 0: every database in one consistent snapshot, with routines and events, gzipped.
pub(super) fn dump(plan: &Plan) -> Dump {
    let tls = if plan.tls {
        format!(" --ssl-mode=VERIFY_IDENTITY --ssl-ca={CA_FILE}")
    } else {
        String::new()
    };
    Dump {
        env: vec![plan.secret_env("DB_PASSWORD", "password")],
        command: format!(
            // The password goes in an option file on a pipe, never on the command line. Without GTID
            // statements (`--set-gtid-purged=OFF`): a restore into the primary then gets new GTIDs and
            // reaches its replicas like any other write.
            "mysqldump --defaults-extra-file=<(printf '[client]\\nuser=root\\npassword=%s\\n' \"$DB_PASSWORD\") \
             -h {host} -P {port}{tls} --all-databases --single-transaction --routines --events \
             --set-gtid-purged=OFF | gzip > \"$partial\"",
            host = plan.primary_host(),
            port = plan.port(),
        ),
        extension: "sql.gz",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::*;
    use crate::domain::Engine;

    fn my(version: &str, ha: bool, tls: bool) -> Vec<serde_json::Value> {
        let mut s = spec(Engine::Mysql, version);
        s.high_availability = ha;
        s.encryption.in_transit = tls;
        render_spec(&s)
    }

    #[test]
    fn runs_the_official_image_through_its_entrypoint_with_gtids() {
        let objs = my("8.4", false, false);
        let c = db(&objs);
        assert_eq!(c["image"], "mysql:8.4");
        assert_eq!(c["ports"][0]["containerPort"], 3306);
        let start = start_line(&objs);
        assert!(start.contains("set -- mysqld --server-id=\"$((100 + ordinal))\" --log-bin=mysql-bin --gtid-mode=ON --enforce-gtid-consistency=ON"), "{start}");
        assert!(start.contains("--innodb-buffer-pool-size=2048M"), "{start}");
        assert!(
            start
                .trim_end()
                .ends_with("exec docker-entrypoint.sh \"$@\""),
            "{start}"
        );
        assert!(!start.contains("--read-only"));
        assert_eq!(
            c["livenessProbe"]["exec"]["command"],
            json!([
                "mysqladmin",
                "ping",
                "-h",
                "127.0.0.1",
                "-P",
                "3306",
                "--silent"
            ])
        );
        assert!(
            c["volumeMounts"].as_array().unwrap().contains(
                &json!({"name": "data", "mountPath": "/var/lib/mysql", "subPath": "mysql"})
            )
        );
        let env = c["env"].as_array().unwrap();
        assert!(env.contains(&json!({"name": "MYSQL_ROOT_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "orders-credentials", "key": "password"}}})));
        assert!(setup(&objs).is_none());
    }

    #[test]
    fn tls_configures_the_server_and_requires_secure_transport() {
        let start = start_line(&my("8.0", false, true));
        assert!(start.contains(
            "--ssl-ca=/etc/kidp/tls/ca.crt --ssl-cert=/etc/kidp/tls/tls.crt --ssl-key=/etc/kidp/tls/tls.key --require-secure-transport=ON"
        ), "{start}");
    }

    #[test]
    fn replicas_on_8_4_use_the_new_replication_statements() {
        let objs = my("8.4", true, true);
        let setup_c = setup(&objs).unwrap();
        let s = script(&setup_c["command"]);
        assert!(s.contains(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='orders-0.orders-headless.team-a.svc.cluster.local', SOURCE_PORT=3306, SOURCE_USER='root', SOURCE_PASSWORD='${MYSQL_ROOT_PASSWORD}', SOURCE_AUTO_POSITION=1, SOURCE_SSL=1, SOURCE_SSL_CA='/etc/kidp/tls/ca.crt', SOURCE_SSL_VERIFY_SERVER_CERT=1;\nSTART REPLICA;"
        ), "{s}");
        assert!(!s.contains("MASTER"));
        assert!(s.contains("cat > /docker-entrypoint-initdb.d/50-kidp-replica.sh <<'EOF'"));
        // The init script is shared with the database container through an emptyDir.
        let initdb = json!({"name": "initdb", "mountPath": "/docker-entrypoint-initdb.d"});
        assert!(
            setup_c["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&initdb)
        );
        assert!(
            db(&objs)["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&initdb)
        );
        let start = start_line(&objs);
        assert!(
            start.contains("unset MYSQL_USER MYSQL_PASSWORD MYSQL_DATABASE"),
            "{start}"
        );
        assert!(start.contains("set -- \"$@\" --read-only=ON"), "{start}");
    }

    #[test]
    fn replicas_before_8_4_use_the_old_replication_statements() {
        for version in ["5.7", "8.0"] {
            let objs = my(version, true, false);
            let s = script(&setup(&objs).unwrap()["command"]);
            assert!(s.contains(
                "CHANGE MASTER TO MASTER_HOST='orders-0.orders-headless.team-a.svc.cluster.local', MASTER_PORT=3306, MASTER_USER='root', MASTER_PASSWORD='${MYSQL_ROOT_PASSWORD}', MASTER_AUTO_POSITION=1, MASTER_SSL=1;\nSTART SLAVE;"
            ), "{version}: {s}");
            assert!(!s.contains("REPLICA"), "{version}");
        }
    }

    #[test]
    fn the_backup_is_a_consistent_gzipped_mysqldump_of_pod_0() {
        let objs = render_spec(&full_spec(Engine::Mysql, "8.4"));
        let s = backup_script(&objs);
        assert!(
            s.contains("mysqldump --defaults-extra-file=<(printf"),
            "{s}"
        );
        assert!(s.contains("-h orders-0.orders-headless.team-a.svc.cluster.local -P 3306 --ssl-mode=VERIFY_IDENTITY --ssl-ca=/etc/kidp/tls/ca.crt --all-databases --single-transaction"), "{s}");
        assert!(s.contains("| gzip > \"$partial\""), "{s}");
    }
}
