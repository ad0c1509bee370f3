//! MongoDB from the official `mongo` image.
//!
//! - The image's entrypoint creates the root user from `MONGO_INITDB_ROOT_USERNAME`/`_PASSWORD` (from
//!   the credentials Secret) in `admin`, which is why the URI says `authSource=admin`, and starts `mongod`
//!   with auth.
//! - Replicas: a replica set `rs0` with internal authentication by a keyfile (Secret `<name>-keyfile`,
//!   copied by the setup container to a 0400 file, as mongod insists). Pod 0 bootstraps it: a background
//!   loop in its start script initiates the set with itself once its server answers, then adds each other
//!   pod once that one answers (one at a time, because a reconfiguration needs its new members reachable).
//!   The image's entrypoint drops `--replSet` and `--keyFile` for its first-start initialisation, so every
//!   pod creates its root user locally; the others' copies are replaced by pod 0's in their initial sync.
//!   MongoDB elects a new primary on its own when pod 0 fails; the client Service, however, still points
//!   at pod 0, so only drivers that discover the set follow the election.
//! - TLS: `requireTLS` with a combined certificate-and-key PEM built by the setup container. Clients need
//!   no certificate; members present the server certificate to each other (it allows client auth).
//! - Probes: `mongosh` (the legacy `mongo` shell where an image predates it), `ping` for liveness and
//!   "primary or secondary" for readiness; neither needs credentials.
//! - Backups: `mongodump --archive --gzip`.

use serde_json::json;

use super::secrets::mongodb_keyfile;
use super::{CA_FILE, Dump, EngineParts, Plan, Probes, TLS_DIR, exec_sh, headless_service_name};

/// The replica set's name.
const REPLICA_SET: &str = "rs0";
/// Where the setup container puts the keyfile for mongod.
const KEYFILE: &str = "/etc/kidp/keyfile";
/// Where the setup container finds the keyfile Secret.
const KEYFILE_SOURCE_DIR: &str = "/var/run/kidp/keyfile";
/// The combined certificate and key mongod's `--tlsCertificateKeyFile` wants.
const SERVER_PEM: &str = "/etc/kidp/tls/server.pem";

/// The name of the keyfile Secret: `<name>-keyfile`.
pub(super) fn keyfile_secret_name(resource_name: &str) -> String {
    format!("{resource_name}-keyfile")
}

/// The shell, whichever the image has: `mongosh` from 6.0 (and in most 5.0 images), `mongo` before.
const SHELL: &str = "\"$(command -v mongosh || command -v mongo)\"";

/// The TLS options of a shell connecting to a member (which verifies the member's name).
fn shell_tls(plan: &Plan) -> String {
    if plan.tls {
        format!(" --tls --tlsCAFile {CA_FILE}")
    } else {
        String::new()
    }
}

fn member(plan: &Plan, ordinal: u32) -> String {
    format!("{}:{}", plan.pod_host(ordinal), plan.port())
}

/// Initiates the set with pod 0 alone, unless it already is one. Written for both shells: the legacy shell
/// returns a failed command's document, mongosh throws it.
pub(super) fn initiate_js(plan: &Plan) -> String {
    format!(
        "let s; try {{ s = rs.status(); }} catch (e) {{ s = e; }} \
         if (s.codeName === \"NotYetInitialized\") {{ \
         const r = rs.initiate({{_id: \"{REPLICA_SET}\", members: [{{_id: 0, host: \"{host}\"}}]}}); \
         if (r.ok !== 1) {{ quit(1); }} \
         }} else if (s.ok !== 1) {{ quit(1); }}",
        host = member(plan, 0),
    )
}

/// Adds one member unless the configuration already has it.
pub(super) fn add_js(host: &str) -> String {
    format!(
        "const host = \"{host}\"; \
         if (!rs.conf().members.some(function (m) {{ return m.host === host; }})) {{ \
         const r = rs.add({{host: host}}); if (r.ok !== 1) {{ quit(1); }} }}"
    )
}

/// The readiness check: this member serves (a standalone server reports itself writable primary).
const READY_JS: &str =
    "const h = db.hello(); if (!(h.isWritablePrimary || h.secondary)) { quit(1); }";

/// Pod 0's replica-set bootstrap: idempotent, so it simply runs again on every start of pod 0.
fn bootstrap(plan: &Plan) -> String {
    let tls = shell_tls(plan);
    let seeds: Vec<String> = (0..plan.spec.replicas()).map(|i| member(plan, i)).collect();
    let set_uri = format!(
        "mongodb://{}/admin?replicaSet={REPLICA_SET}",
        seeds.join(",")
    );
    let mut s = format!(
        "if [ \"$ordinal\" = 0 ]; then\n\
         (\n\
         admin() {{ {SHELL} --quiet{tls} -u \"$MONGO_INITDB_ROOT_USERNAME\" -p \"$MONGO_INITDB_ROOT_PASSWORD\" \
         --authenticationDatabase admin \"$@\"; }}\n\
         echo \"kidp: initiating replica set {REPLICA_SET} once mongod is up\"\n\
         until admin --host 127.0.0.1:{port} --eval '{initiate}' >/dev/null 2>&1; do sleep 2; done\n",
        port = plan.port(),
        initiate = initiate_js(plan),
    );
    for i in 1..plan.spec.replicas() {
        let peer = member(plan, i);
        s.push_str(&format!(
            "until {SHELL} --quiet{tls} --host {peer} --eval 'db.hello()' >/dev/null 2>&1; do sleep 2; done\n\
             until admin '{set_uri}' --eval '{add}' >/dev/null 2>&1; do sleep 2; done\n\
             echo \"kidp: {peer} is a member of {REPLICA_SET}\"\n",
            add = add_js(&peer),
        ));
    }
    s.push_str(") &\nfi\n");
    s
}

fn mongod_flags(plan: &Plan) -> Vec<String> {
    // MongoDB's own default for the WiredTiger cache, computed from the container's memory rather than
    // the node's: half of (memory - 1GB), at least 256MB.
    let cache_mib = (plan.size.memory_mib.saturating_sub(1024) / 2).max(256);
    let mut f = vec![
        "mongod".to_string(),
        "--bind_ip_all".to_string(),
        "--wiredTigerCacheSizeGB".to_string(),
        format!("{:.2}", f64::from(cache_mib) / 1024.0),
    ];
    if plan.ha {
        f.extend([
            "--replSet".into(),
            REPLICA_SET.into(),
            "--keyFile".into(),
            KEYFILE.into(),
        ]);
    }
    if plan.tls {
        f.extend([
            "--tlsMode".into(),
            "requireTLS".into(),
            "--tlsCertificateKeyFile".into(),
            SERVER_PEM.into(),
            "--tlsCAFile".into(),
            CA_FILE.into(),
            // A CA file alone would make mongod demand client certificates; clients log in by password.
            "--tlsAllowConnectionsWithoutCertificates".into(),
        ]);
    }
    f
}

/// The engine's parts of the StatefulSet.
pub(super) fn parts(plan: &Plan) -> EngineParts {
    let env = vec![
        plan.secret_env("MONGO_INITDB_ROOT_USERNAME", "username"),
        plan.secret_env("MONGO_INITDB_ROOT_PASSWORD", "password"),
        plan.secret_env("MONGO_INITDB_DATABASE", "database"),
    ];
    let flags = mongod_flags(plan);
    let (command, args) = if plan.ha {
        let script = format!(
            "set -eu\n\
             ordinal=\"${{POD_NAME##*-}}\"\n\
             {bootstrap}\
             exec docker-entrypoint.sh {flags}\n",
            bootstrap = bootstrap(plan),
            flags = flags.join(" "),
        );
        (Some(vec!["sh".into(), "-c".into(), script]), Vec::new())
    } else {
        (None, flags)
    };

    let mut setup = String::new();
    let mut setup_mounts = Vec::new();
    let mut volumes = Vec::new();
    let mut secrets = Vec::new();
    if plan.tls {
        setup.push_str(&format!(
            "cat {TLS_DIR}/tls.crt {TLS_DIR}/tls.key > {SERVER_PEM}\nchmod 0600 {SERVER_PEM}\n"
        ));
    }
    if plan.ha {
        setup.push_str(&format!(
            "cp {KEYFILE_SOURCE_DIR}/keyfile {KEYFILE}\nchmod 0400 {KEYFILE}\n"
        ));
        setup_mounts
            .push(json!({"name": "keyfile", "mountPath": KEYFILE_SOURCE_DIR, "readOnly": true}));
        volumes.push(json!({
            "name": "keyfile",
            "secret": {"secretName": keyfile_secret_name(plan.name), "defaultMode": 0o440},
        }));
        let key = mongodb_keyfile(&plan.ctx.credentials.password);
        secrets.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": plan.metadata(&keyfile_secret_name(plan.name)),
            "type": "Opaque",
            "data": {"keyfile": k8s_openapi::ByteString(key.into_bytes())},
        }));
    }

    let shell = format!("{SHELL} --quiet{}", shell_tls(plan));
    // Liveness asks loopback, where the image's temporary first-start server also answers: it is alive.
    // Readiness asks the pod's own DNS name (its IP, via /etc/hosts), where that temporary server does not
    // listen, so the pod is not ready until the real server is up.
    let own_host = format!(
        "\"$POD_NAME.{}.{}.svc.{}:{}\"",
        headless_service_name(plan.name),
        plan.ctx.namespace,
        plan.ctx.cluster_domain,
        plan.port()
    );
    EngineParts {
        env,
        command,
        args,
        data_mount_path: "/data/db".to_string(),
        data_sub_path: None,
        mounts: Vec::new(),
        volumes,
        setup: (!setup.is_empty()).then_some(setup),
        setup_mounts,
        setup_env: Vec::new(),
        probes: Probes {
            alive: exec_sh(&format!(
                "{shell} --host 127.0.0.1:{} --eval \"db.adminCommand('ping')\"",
                plan.port()
            )),
            ready: exec_sh(&format!("{shell} --host {own_host} --eval '{READY_JS}'")),
            // The shell is a Node.js program: starting it alone takes a second or two.
            timeout_seconds: 10,
        },
        // mongod shuts down cleanly on SIGTERM.
        pre_stop: None,
        secrets,
    }
}

/// `mongodump` of pod 0: every database as one gzipped archive.
pub(super) fn dump(plan: &Plan) -> Dump {
    let tls = if plan.tls {
        format!(" --ssl --sslCAFile={CA_FILE}")
    } else {
        String::new()
    };
    Dump {
        env: vec![
            plan.secret_env("DB_USERNAME", "username"),
            plan.secret_env("DB_PASSWORD", "password"),
        ],
        command: format!(
            // The password goes in a config file on a pipe, never on the command line.
            "mongodump --host={host} --port={port} --username=\"$DB_USERNAME\" \
             --config=<(printf 'password: %s\\n' \"$DB_PASSWORD\") --authenticationDatabase=admin{tls} \
             --archive=\"$partial\" --gzip",
            host = plan.primary_host(),
            port = plan.port(),
        ),
        extension: "archive.gz",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::*;
    use super::super::{Plan, RenderContext};
    use super::*;
    use crate::domain::Engine;

    fn mongo(ha: bool, tls: bool) -> Vec<serde_json::Value> {
        let mut s = spec(Engine::Mongodb, "7.0");
        s.high_availability = ha;
        s.encryption.in_transit = tls;
        render_spec(&s)
    }

    #[test]
    fn a_standalone_server_runs_the_image_entrypoint_with_auth_from_the_secret() {
        let objs = mongo(false, false);
        let c = db(&objs);
        assert_eq!(c["image"], "mongo:7.0");
        assert_eq!(c["ports"][0]["containerPort"], 27017);
        assert!(c.get("command").is_none());
        assert_eq!(
            c["args"],
            json!(["mongod", "--bind_ip_all", "--wiredTigerCacheSizeGB", "1.50"])
        );
        assert!(
            c["env"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "MONGO_INITDB_ROOT_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "orders-credentials", "key": "password"}}}))
        );
        let ready = script(&c["readinessProbe"]["exec"]["command"]);
        assert!(
            ready.contains("h.isWritablePrimary || h.secondary"),
            "{ready}"
        );
        assert!(
            ready.contains("--host \"$POD_NAME.orders-headless.team-a.svc.cluster.local:27017\""),
            "{ready}"
        );
        let alive = script(&c["livenessProbe"]["exec"]["command"]);
        assert!(alive.contains("--host 127.0.0.1:27017"), "{alive}");
        assert!(setup(&objs).is_none());
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "data", "mountPath": "/data/db"}))
        );
    }

    #[test]
    fn replicas_form_rs0_with_a_keyfile_bootstrapped_from_pod_0() {
        let objs = mongo(true, false);
        let start = start_line(&objs);
        assert!(start.contains("exec docker-entrypoint.sh mongod --bind_ip_all --wiredTigerCacheSizeGB 1.50 --replSet rs0 --keyFile /etc/kidp/keyfile"), "{start}");
        assert!(start.contains("if [ \"$ordinal\" = 0 ]; then"), "{start}");
        assert!(start.contains("rs.initiate({_id: \"rs0\", members: [{_id: 0, host: \"orders-0.orders-headless.team-a.svc.cluster.local:27017\"}]})"), "{start}");
        for peer in 1..3 {
            let host = format!("orders-{peer}.orders-headless.team-a.svc.cluster.local:27017");
            assert!(
                start.contains(&format!("--host {host} --eval 'db.hello()'")),
                "{start}"
            );
            assert!(
                start.contains(&format!("const host = \"{host}\"")),
                "{start}"
            );
        }
        assert!(start.contains("mongodb://orders-0.orders-headless.team-a.svc.cluster.local:27017,orders-1.orders-headless.team-a.svc.cluster.local:27017,orders-2.orders-headless.team-a.svc.cluster.local:27017/admin?replicaSet=rs0"));

        let keyfile = find(&objs, "Secret", "orders-keyfile");
        let data = secret_data(keyfile);
        assert_eq!(data["keyfile"], mongodb_keyfile(PASSWORD));
        let setup = script(&setup(&objs).unwrap()["command"]);
        assert!(
            setup.contains(
                "cp /var/run/kidp/keyfile/keyfile /etc/kidp/keyfile\nchmod 0400 /etc/kidp/keyfile"
            ),
            "{setup}"
        );
    }

    #[test]
    fn tls_requires_tls_with_a_combined_pem_and_the_shells_verify_it() {
        let objs = mongo(true, true);
        let start = start_line(&objs);
        assert!(start.contains("--tlsMode requireTLS --tlsCertificateKeyFile /etc/kidp/tls/server.pem --tlsCAFile /etc/kidp/tls/ca.crt --tlsAllowConnectionsWithoutCertificates"), "{start}");
        let setup = script(&setup(&objs).unwrap()["command"]);
        assert!(
            setup.contains(
                "cat /etc/kidp/tls/tls.crt /etc/kidp/tls/tls.key > /etc/kidp/tls/server.pem"
            ),
            "{setup}"
        );
        let alive = script(&db(&objs)["livenessProbe"]["exec"]["command"]);
        assert!(
            alive.contains("--tls --tlsCAFile /etc/kidp/tls/ca.crt --host 127.0.0.1:27017"),
            "{alive}"
        );
    }

    #[test]
    fn the_backup_is_a_gzipped_mongodump_archive_of_pod_0() {
        let objs = render_spec(&full_spec(Engine::Mongodb, "7.0"));
        let s = backup_script(&objs);
        assert!(
            s.contains(
                "mongodump --host=orders-0.orders-headless.team-a.svc.cluster.local --port=27017"
            ),
            "{s}"
        );
        assert!(
            s.contains("--ssl --sslCAFile=/etc/kidp/tls/ca.crt --archive=\"$partial\" --gzip"),
            "{s}"
        );
        assert!(
            s.contains("file=\"/backup/orders-${stamp}.archive.gz\""),
            "{s}"
        );
    }

    /// The JavaScript the shells run parses (checked with Node.js, whose syntax both shells accept).
    #[test]
    fn the_replica_set_javascript_parses() {
        let s = full_spec(Engine::Mongodb, "7.0");
        let creds = credentials(Engine::Mongodb);
        let ctx: RenderContext = ctx(&creds, None, None);
        let plan = Plan::new(&s, &ctx);
        for js in [initiate_js(&plan), add_js("h:27017"), READY_JS.to_string()] {
            assert!(!js.contains('\''), "single-quoted in the shell: {js}");
            let out = std::process::Command::new("node")
                .args(["-e", "new Function(process.argv[1])", &js])
                .output();
            match out {
                Ok(o) => assert!(
                    o.status.success(),
                    "{js}\n{}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => {
                    eprintln!("skipping the JavaScript syntax check: no node ({e})");
                    return;
                }
            }
        }
    }
}
