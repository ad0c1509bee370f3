//! Authentication, authorization and the namespace policy on the wire, black-box: the real broker on kubesim
//! over HTTP, with a token file, with Kubernetes TokenReview/SubjectAccessReview answered by kubesim, and open.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kidp_broker::config::Args;
use reqwest::Method;
use serde_json::{Value, json};

/// A directory of its own for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kidp-auth-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sha256_hex(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The issue's example file: a manager (by digest, as a platform team would write it) in `team-*`, a read-only dashboard (plain) everywhere, and an
/// admin allowed everything everywhere.
fn token_file() -> String {
    format!(
        r#"
tokens:
  - subject: manager
    sha256: "{}"
    namespaces: ["team-*"]
    actions: [provision, deprovision, read]
  - subject: dashboard
    token: "dashboard-token"
    namespaces: ["*"]
    actions: [read]
  - subject: admin
    token: "admin-token"
    namespaces: ["*"]
    actions: [provision, deprovision, read]
"#,
        sha256_hex("manager-token")
    )
}

fn provision_in(namespace: &str, name: &str) -> Value {
    common::provision(
        name,
        namespace,
        "postgresql",
        "15",
        "small",
        "http://manager:9090/v1/callback",
    )
}

fn assert_error(code: u16, body: &Value, want_code: u16, want_error: &str, want_message: &str) {
    assert_eq!(code, want_code, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(body["message"], want_message, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
}

#[tokio::test]
async fn token_file_grants_and_refusals() {
    let dir = scratch("file");
    let path = dir.join("tokens.yaml");
    std::fs::write(&path, token_file()).unwrap();
    let env = common::start(&["--auth-token-file", path.to_str().unwrap()]).await;

    // Open endpoints stay open.
    for open in ["/health", "/readiness", "/openapi.json"] {
        let (code, _, body) = env.send_as(None, Method::GET, open, None).await;
        assert_eq!(code, 200, "{open}: {body}");
    }
    let (_, _, ready) = env.send_as(None, Method::GET, "/readiness", None).await;
    assert_eq!(ready["reason"], "ok");
    let docs = env.http.get(env.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    // The served document requires the bearer scheme.
    let (_, _, spec) = env.send_as(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(
        spec["paths"]["/v1/provision"]["post"]["security"],
        json!([{"bearerAuth": []}])
    );

    let req = provision_in("team-a", "orders-db");
    // No token, a wrong token, another scheme: 401 with the challenge.
    for token in [None, Some("wrong-token")] {
        let (code, headers, body) = env
            .send_as(token, Method::POST, "/v1/provision", Some(&req))
            .await;
        let want = match token {
            None => "an Authorization: Bearer token is required",
            Some(_) => "the bearer token is not valid",
        };
        assert_error(code, &body, 401, "unauthorized", want);
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    let basic = env
        .http
        .post(env.url("/v1/provision"))
        .basic_auth("manager", Some("manager-token"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
    // Reads need a token too.
    let (code, _, body) = env
        .send_as(None, Method::GET, "/v1/resources?namespace=team-a", None)
        .await;
    assert_error(
        code,
        &body,
        401,
        "unauthorized",
        "an Authorization: Bearer token is required",
    );

    // The manager (found by digest) provisions in team-*.
    let (code, _, body) = env
        .send_as(
            Some("manager-token"),
            Method::POST,
            "/v1/provision",
            Some(&req),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let id = body["deploymentId"].as_str().unwrap().to_string();

    // ... but not elsewhere.
    let (code, _, body) = env
        .send_as(
            Some("manager-token"),
            Method::POST,
            "/v1/provision",
            Some(&provision_in("payments", "orders-db")),
        )
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "subject manager may not provision in namespace payments",
    );
    let (code, _, body) = env
        .send_as(
            Some("manager-token"),
            Method::GET,
            "/v1/resources?namespace=payments",
            None,
        )
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "subject manager may not read in namespace payments",
    );

    // The read-only dashboard reads everywhere and provisions nowhere.
    let (code, _, body) = env
        .send_as(
            Some("dashboard-token"),
            Method::POST,
            "/v1/provision",
            Some(&req),
        )
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "subject dashboard may not provision in namespace team-a",
    );
    let (code, _, body) = env
        .send_as(
            Some("dashboard-token"),
            Method::GET,
            &format!("/v1/status?id={id}"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = env
        .send_as(
            Some("dashboard-token"),
            Method::POST,
            "/v1/resources",
            Some(&json!({"namespace": "team-a"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let dep = json!({
        "deploymentId": id, "resourceType": "database", "resourceName": "orders-db", "namespace": "team-a"
    });
    let (code, _, body) = env
        .send_as(
            Some("dashboard-token"),
            Method::POST,
            "/v1/deprovision",
            Some(&dep),
        )
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "subject dashboard may not deprovision in namespace team-a",
    );
    // Unknown ids are 404 for any authenticated caller.
    let (code, _, body) = env
        .send_as(
            Some("dashboard-token"),
            Method::GET,
            "/v1/status?id=deploy-00000000000000000000000000000000",
            None,
        )
        .await;
    assert_eq!(code, 404, "{body}");

    // Reserved namespaces are refused even to a subject allowed everything.
    for ns in ["kube-system", "default"] {
        let (code, _, body) = env
            .send_as(
                Some("admin-token"),
                Method::POST,
                "/v1/provision",
                Some(&provision_in(ns, "orders-db")),
            )
            .await;
        assert_error(
            code,
            &body,
            403,
            "forbidden",
            &format!("namespace {ns} is reserved"),
        );
    }

    let (code, _, body) = env
        .send_as(
            Some("manager-token"),
            Method::POST,
            "/v1/deprovision",
            Some(&dep),
        )
        .await;
    assert_eq!(code, 202, "{body}");

    // A changed file takes effect without a restart: the dashboard's token is revoked, a new one works.
    let rotated = token_file().replace("dashboard-token", "dashboard-token-2");
    std::fs::write(&path, rotated).unwrap();
    common::eventually(
        "the rotated token file",
        Duration::from_secs(15),
        || async {
            let (old, _, _) = env
                .send_as(
                    Some("dashboard-token"),
                    Method::GET,
                    "/v1/resources?namespace=team-a",
                    None,
                )
                .await;
            let (new, _, _) = env
                .send_as(
                    Some("dashboard-token-2"),
                    Method::GET,
                    "/v1/resources?namespace=team-a",
                    None,
                )
                .await;
            (old == 401 && new == 200).then_some(())
        },
    )
    .await;

    env.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn namespace_policy_flags() {
    let dir = scratch("policy");
    let path = dir.join("tokens.yaml");
    std::fs::write(&path, token_file()).unwrap();
    // `default` opened by replacing the denied list, and only team-* and default allowed at all.
    let env = common::start(&[
        "--auth-token-file",
        path.to_str().unwrap(),
        "--denied-namespaces",
        "kube-*",
        "--allowed-namespaces",
        "team-*,default",
    ])
    .await;
    let admin = Some("admin-token");
    let post = |ns: &'static str| {
        let env = &env;
        async move {
            env.send_as(
                admin,
                Method::POST,
                "/v1/provision",
                Some(&provision_in(ns, "cache-db")),
            )
            .await
        }
    };
    let (code, _, body) = post("default").await;
    assert_eq!(code, 202, "{body}");
    let (code, _, body) = post("kube-public").await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "namespace kube-public is reserved",
    );
    let (code, _, body) = post("payments").await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "namespace payments is not one the broker may act in",
    );
    env.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// kubesim's token file: alice may work with ManagedResources in team-*, bob may do nothing.
const KUBESIM_TOKENS: &str = r#"
tokens:
  - token: alice-token
    user: alice
    groups: [platform]
    rules:
      - namespaces: ["team-*"]
        verbs: [create, delete, get, list]
        resources: [managedresources]
        groups: [kidp.io]
  - token: bob-token
    user: bob
"#;

#[tokio::test]
async fn kubernetes_token_review_and_subject_access_review() {
    let dir = scratch("kube");
    let sim_tokens = dir.join("kubesim-tokens.yaml");
    std::fs::write(&sim_tokens, KUBESIM_TOKENS).unwrap();
    let file = dir.join("tokens.yaml");
    std::fs::write(&file, token_file()).unwrap();
    let sim = kubesim::start(kubesim::Options {
        token_file: Some(sim_tokens),
        ..Default::default()
    })
    .await
    .expect("kubesim starts");
    // Both modes: a token the file knows is decided by the file, any other by the cluster.
    let env = common::start_against(
        sim,
        &[
            "--auth-kubernetes",
            "--auth-token-file",
            file.to_str().unwrap(),
        ],
    )
    .await;

    let req = provision_in("team-k", "ledger-db");
    let (code, _, body) = env
        .send_as(
            Some("alice-token"),
            Method::POST,
            "/v1/provision",
            Some(&req),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let id = body["deploymentId"].as_str().unwrap().to_string();
    let (code, _, body) = env
        .send_as(
            Some("alice-token"),
            Method::GET,
            &format!("/v1/status?id={id}"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");

    let (code, headers, body) = env
        .send_as(
            Some("nobody-token"),
            Method::POST,
            "/v1/provision",
            Some(&req),
        )
        .await;
    assert_error(
        code,
        &body,
        401,
        "unauthorized",
        "the bearer token is not valid",
    );
    assert!(headers.contains_key("www-authenticate"));

    let (code, _, body) = env
        .send_as(Some("bob-token"), Method::POST, "/v1/provision", Some(&req))
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "subject bob may not provision in namespace team-k (needs create on managedresources.kidp.io)",
    );
    let (code, _, body) = env
        .send_as(
            Some("alice-token"),
            Method::GET,
            "/v1/resources?namespace=payments",
            None,
        )
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "subject alice may not read in namespace payments (needs list on managedresources.kidp.io)",
    );
    let (code, _, body) = env
        .send_as(
            Some("alice-token"),
            Method::POST,
            "/v1/provision",
            Some(&provision_in("kube-system", "ledger-db")),
        )
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "namespace kube-system is reserved",
    );
    // The file's read-only dashboard is decided by the file, not by the cluster (which does not know it).
    let (code, _, body) = env
        .send_as(
            Some("dashboard-token"),
            Method::POST,
            "/v1/provision",
            Some(&req),
        )
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "subject dashboard may not provision in namespace team-k",
    );
    let dep = json!({
        "deploymentId": id, "resourceType": "database", "resourceName": "ledger-db", "namespace": "team-k"
    });
    let (code, _, body) = env
        .send_as(
            Some("alice-token"),
            Method::POST,
            "/v1/deprovision",
            Some(&dep),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    env.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn insecure_no_auth_is_open_and_says_so() {
    let env = common::start(&["--insecure-no-auth"]).await;
    let (code, _, body) = env.send_as(None, Method::GET, "/readiness", None).await;
    assert_eq!(code, 200);
    assert_eq!(body["ready"], true);
    assert_eq!(
        body["reason"],
        "ok (authentication disabled: --insecure-no-auth)"
    );
    let (code, _, body) = env
        .send_as(
            None,
            Method::POST,
            "/v1/provision",
            Some(&provision_in("team-open", "open-db")),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    // The namespace policy binds an open broker too.
    let (code, _, body) = env
        .send_as(
            None,
            Method::POST,
            "/v1/provision",
            Some(&provision_in("default", "open-db")),
        )
        .await;
    assert_error(
        code,
        &body,
        403,
        "forbidden",
        "namespace default is reserved",
    );
    // The served document does not claim a token is needed.
    let (_, _, spec) = env.send_as(None, Method::GET, "/openapi.json", None).await;
    assert!(
        spec["paths"]["/v1/provision"]["post"]
            .get("security")
            .is_none()
    );
    env.stop().await;
}

/// The start-up error for these flags (nothing needs a cluster: configuration is checked first).
async fn start_error(extra: &[&str]) -> String {
    let mut argv = vec![
        "kidp-broker",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(extra);
    match kidp_broker::start(Args::parse_from(argv)).await {
        Ok(running) => {
            running.shutdown().await;
            panic!("the broker started with {extra:?}");
        }
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn refuses_to_start_without_authentication_or_with_a_bad_token_file() {
    let message = start_error(&[]).await;
    assert!(
        message.starts_with(
            "no authentication configured: set --auth-token-file PATH and/or --auth-kubernetes"
        ),
        "{message}"
    );
    assert!(message.contains("--insecure-no-auth"), "{message}");

    let dir = scratch("startup");
    let path = dir.join("tokens.yaml");
    std::fs::write(
        &path,
        "tokens: [{subject: a, token: t, namespaces: ['*'], actions: [write]}]",
    )
    .unwrap();
    let message = start_error(&["--auth-token-file", path.to_str().unwrap()]).await;
    assert!(
        message.starts_with(&format!("token file {}: ", path.display())),
        "{message}"
    );
    assert!(message.contains("unknown variant `write`"), "{message}");

    let message = start_error(&["--auth-token-file", "/nonexistent/tokens.yaml"]).await;
    assert!(
        message.starts_with("cannot read token file /nonexistent/tokens.yaml"),
        "{message}"
    );

    std::fs::write(&path, token_file()).unwrap();
    let message = start_error(&[
        "--auth-token-file",
        path.to_str().unwrap(),
        "--insecure-no-auth",
    ])
    .await;
    assert!(
        message.starts_with("--insecure-no-auth contradicts"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "dev")]
#[tokio::test]
async fn dev_mode_is_open_unless_given_a_dev_token() {
    // The client is built before any broker has installed the process's TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dev = |extra: &'static [&'static str]| async move {
        let mut argv = vec![
            "kidp-broker",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        argv.extend_from_slice(extra);
        kidp_broker::start(Args::parse_from(argv))
            .await
            .expect("the dev broker starts")
    };
    let http = reqwest::Client::new();
    let ready = |addr: std::net::SocketAddr| {
        let http = http.clone();
        async move {
            common::eventually("dev broker ready", Duration::from_secs(20), || async {
                let r = http
                    .get(format!("http://{addr}/readiness"))
                    .send()
                    .await
                    .ok()?;
                (r.status().as_u16() == 200).then_some(())?;
                r.json::<Value>().await.ok()
            })
            .await
        }
    };

    let open = dev(&[]).await;
    let body = ready(open.api_addr).await;
    assert_eq!(body["reason"], "ok (authentication disabled: --dev)");
    open.shutdown().await;

    let guarded = dev(&["--dev-token", "let-me-in"]).await;
    let body = ready(guarded.api_addr).await;
    assert_eq!(body["reason"], "ok");
    let url = format!("http://{}/v1/provision", guarded.api_addr);
    let req = provision_in("team-dev", "dev-db");
    let r = http.post(&url).json(&req).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&url)
        .bearer_auth("wrong")
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&url)
        .bearer_auth("let-me-in")
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
    guarded.shutdown().await;
}
