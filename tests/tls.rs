//! HTTPS and client certificates (mutual TLS) on the REST API, black-box: the real broker on kubesim, spoken to
//! by a rustls client with and without certificates, as a manager in a mesh or behind cert-manager would.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kidp_broker::config::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

/// A CA that signs the test's certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and its key (PEM) for `cn` with `sans`, for a server or a client.
    fn issue(&self, cn: &str, sans: Vec<SanType>, server: bool) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server(&self) -> (String, String) {
        self.issue(
            "kidp-broker",
            vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
            ],
            true,
        )
    }

    fn client(&self, cn: &str) -> (String, String) {
        self.issue(cn, Vec::new(), false)
    }
}

/// An HTTPS client trusting `ca_pem`, presenting `identity` (certificate and key PEM) when given.
fn client(ca_pem: &str, identity: Option<&(String, String)>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

const TOKENS: &str = r#"
tokens:
  - subject: manager
    namespaces: ["team-*"]
    actions: [provision, deprovision, read]
  - subject: "spiffe://kidp.test/ns/platform/sa/reader"
    namespaces: ["*"]
    actions: [read]
  - subject: dashboard
    token: "dashboard-token"
    namespaces: ["*"]
    actions: [read]
"#;

struct Tls {
    dir: PathBuf,
    ca: Ca,
    broker: kidp_broker::Running,
    sim: kubesim::KubeSim,
}

impl Tls {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.broker.api_addr.port())
    }

    async fn stop(self) {
        self.broker.shutdown().await;
        self.sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

/// kubesim and a broker serving HTTPS with client certificates from a fresh CA.
async fn start(test: &str, extra: &[&str]) -> Tls {
    let dir = std::env::temp_dir().join(format!("kidp-tls-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("kidp test CA");
    let (cert, key) = ca.server();
    let sim = common::start_sim("127.0.0.1:0".parse().unwrap()).await;
    let mut argv: Vec<String> = [
        "kidp-broker",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--create-namespaces",
        "--install-crd",
        "--rate-limit-per-minute",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend([
        "--kubeconfig".into(),
        write(&dir, "kubeconfig", &sim.kubeconfig()),
        "--tls-cert-file".into(),
        write(&dir, "tls.crt", &cert),
        "--tls-key-file".into(),
        write(&dir, "tls.key", &key),
        "--tls-client-ca-file".into(),
        write(&dir, "client-ca.crt", &ca.pem),
        "--auth-token-file".into(),
        write(&dir, "tokens.yaml", TOKENS),
        "--audit-log".into(),
        dir.join("audit.jsonl").display().to_string(),
    ]);
    argv.extend(extra.iter().map(|s| s.to_string()));
    let broker = kidp_broker::start(Args::parse_from(argv))
        .await
        .expect("broker starts");
    let tls = Tls {
        dir,
        ca,
        broker,
        sim,
    };
    let probe = client(&tls.ca.pem, None);
    common::eventually("broker ready over HTTPS", Duration::from_secs(20), || {
        let probe = probe.clone();
        let url = tls.url("/readiness");
        async move {
            let r = probe.get(url).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    tls
}

fn provision(namespace: &str, name: &str) -> Value {
    common::provision(
        name,
        namespace,
        "redis",
        "7.2",
        "small",
        "http://manager:9090/v1/callback",
    )
}

async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.expect("request");
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    (code, headers, resp.json().await.expect("JSON body"))
}

#[tokio::test]
async fn client_certificates_authenticate_and_their_subjects_are_authorized_by_the_token_file() {
    let env = start("mtls", &[]).await;
    let manager = client(&env.ca.pem, Some(&env.ca.client("manager")));

    // The manager's certificate provisions where its entry allows, and reads back.
    let (code, _, body) = send(
        manager
            .post(env.url("/v1/provision"))
            .json(&provision("team-a", "cache")),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let id = body["deploymentId"].as_str().unwrap().to_string();
    let (code, _, body) = send(manager.get(env.url(&format!("/v1/status?id={id}")))).await;
    assert_eq!(code, 200, "{body}");

    // Outside its namespaces: authenticated, so 403 naming the subject, namespace and action.
    let (code, _, body) = send(
        manager
            .post(env.url("/v1/provision"))
            .json(&provision("finance", "cache")),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert_eq!(
        body["message"],
        "subject manager may not provision in namespace finance"
    );

    // A URI SAN (a SPIFFE ID) is the subject when an entry names it, before the CN.
    let (cert, key) = env.ca.issue(
        "reader-cn",
        vec![SanType::URI(
            "spiffe://kidp.test/ns/platform/sa/reader"
                .try_into()
                .unwrap(),
        )],
        false,
    );
    let reader = client(&env.ca.pem, Some(&(cert, key)));
    let (code, _, body) = send(reader.get(env.url("/v1/resources?namespace=team-a"))).await;
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = send(
        reader
            .post(env.url("/v1/provision"))
            .json(&provision("team-a", "other")),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "subject spiffe://kidp.test/ns/platform/sa/reader may not provision in namespace team-a"
    );

    // A certificate of the right CA whose subject no entry names is authenticated and granted nothing.
    let stranger = client(&env.ca.pem, Some(&env.ca.client("stranger")));
    let (code, _, body) = send(stranger.get(env.url("/v1/resources?namespace=team-a"))).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "subject stranger may not read in namespace team-a"
    );

    // The audit record names the certificate's subject.
    let audit = std::fs::read_to_string(env.dir.join("audit.jsonl")).unwrap();
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["subject"] == "manager" && r["deploymentId"] == id.as_str()),
        "{audit}"
    );
    assert!(
        records.iter().any(
            |r| r["subject"] == "spiffe://kidp.test/ns/platform/sa/reader"
                && r["error"] == "forbidden"
        ),
        "{audit}"
    );
    env.stop().await;
}

#[tokio::test]
async fn without_a_certificate_probes_answer_and_the_api_wants_a_token() {
    let env = start("no-cert", &[]).await;
    let anonymous = client(&env.ca.pem, None);

    // kubelet's HTTPS probes present no certificate.
    let (code, _, _) = send(anonymous.get(env.url("/health"))).await;
    assert_eq!(code, 200);

    let (code, headers, body) =
        send(anonymous.get(env.url("/v1/resources?namespace=team-a"))).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(
        body["message"],
        "a client certificate or an Authorization: Bearer token is required"
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    // A bearer token still works over TLS, with its own entry's grants.
    let (code, _, body) = send(
        anonymous
            .get(env.url("/v1/resources?namespace=team-a"))
            .bearer_auth("dashboard-token"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = send(
        anonymous
            .post(env.url("/v1/provision"))
            .bearer_auth("dashboard-token")
            .json(&provision("team-a", "cache")),
    )
    .await;
    assert_eq!(code, 403, "{body}");

    // A token, when presented, decides even over a certificate: a bad one is refused.
    let manager = client(&env.ca.pem, Some(&env.ca.client("manager")));
    let (code, _, body) = send(
        manager
            .get(env.url("/v1/resources?namespace=team-a"))
            .bearer_auth("not-a-token"),
    )
    .await;
    assert_eq!(code, 401, "{body}");
    env.stop().await;
}

#[tokio::test]
async fn certificates_of_another_ca_plain_http_and_silent_handshakes_are_refused() {
    let env = start("refused", &["--header-read-timeout-seconds", "1"]).await;

    // A client certificate from a CA the broker does not trust ends the handshake: no request is served.
    let rogue = Ca::new("rogue CA");
    let imposter = client(&env.ca.pem, Some(&rogue.client("manager")));
    let refused = imposter
        .get(env.url("/v1/resources?namespace=team-a"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    let metrics = reqwest::get(format!("http://{}/metrics", env.broker.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("broker_connections_closed_total")
                && l.contains("reason=\"tls_handshake_failed\"")),
        "{metrics}"
    );

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let refused = plain
        .get(format!("http://{}/health", env.broker.api_addr))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // A client that connects and never starts its handshake is closed by the header-read timeout.
    let mut silent = tokio::net::TcpStream::connect(env.broker.api_addr)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("closed within the timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Through all that the broker kept serving.
    let manager = client(&env.ca.pem, Some(&env.ca.client("manager")));
    let (code, _, _) = send(manager.get(env.url("/health"))).await;
    assert_eq!(code, 200);
    env.stop().await;
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let env = start("rotate", &[]).await;
    let next = Ca::new("next CA");
    let (cert, key) = next.server();
    // Key first, then certificate: a reload in between sees a mismatched pair, logs it and keeps serving the
    // old certificate; the next look after the certificate lands picks up the pair.
    std::fs::write(env.dir.join("tls.key"), key).unwrap();
    std::fs::write(env.dir.join("tls.crt"), cert).unwrap();
    let fresh = || client(&next.pem, None);
    common::eventually(
        "the new certificate served",
        Duration::from_secs(20),
        || {
            let http = fresh();
            let url = env.url("/health");
            async move {
                let r = http.get(url).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
    // And a client that trusts only the old CA no longer connects.
    let old = client(&env.ca.pem, None);
    assert!(old.get(env.url("/health")).send().await.is_err());
    env.stop().await;
}

#[tokio::test]
async fn a_client_ca_without_a_token_file_or_unreadable_files_stop_the_start() {
    let dir = std::env::temp_dir().join(format!("kidp-tls-{}-start", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("kidp test CA");
    let (cert, key) = ca.server();
    let cert = write(&dir, "tls.crt", &cert);
    let key = write(&dir, "tls.key", &key);
    let ca_file = write(&dir, "ca.crt", &ca.pem);
    // clap refuses a client CA without a token file.
    let parsed = Args::try_parse_from([
        "kidp-broker",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-client-ca-file",
        &ca_file,
        "--insecure-no-auth",
    ]);
    let err = parsed.unwrap_err().to_string();
    assert!(err.contains("--auth-token-file"), "{err}");
    // A certificate without its key too.
    let err = Args::try_parse_from(["kidp-broker", "--tls-cert-file", &cert])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--tls-key-file"), "{err}");

    // A key that is not the certificate's: the broker does not start, and says which files.
    let (_, other_key) = ca.server();
    let other_key = write(&dir, "other.key", &other_key);
    let sim = common::start_sim("127.0.0.1:0".parse().unwrap()).await;
    let kubeconfig = write(&dir, "kubeconfig", &sim.kubeconfig());
    for (cert, key, want) in [
        (
            cert.as_str(),
            other_key.as_str(),
            "are not a certificate and its key",
        ),
        (key.as_str(), key.as_str(), "holds no PEM certificate"),
        (
            "/nonexistent/tls.crt",
            key.as_str(),
            "cannot read certificates from /nonexistent/tls.crt",
        ),
    ] {
        let args = Args::parse_from([
            "kidp-broker",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--kubeconfig",
            &kubeconfig,
            "--insecure-no-auth",
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
        ]);
        let err = match kidp_broker::start(args).await {
            Ok(running) => {
                running.shutdown().await;
                panic!("started with {cert} and {key}");
            }
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(want), "{err}");
    }
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
