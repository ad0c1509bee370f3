//! Generated secrets: database passwords, the TLS CA and server certificate, and the MongoDB keyfile.
//!
//! The generators draw from a CSPRNG and read the clock; the caller runs them once per deployment and
//! keeps the result in the cluster, so re-rendering never rotates a secret under a running database.

use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use sha2::Sha256;

use super::TlsMaterial;

/// 32 alphanumeric characters carry about 190 bits: far beyond guessing, and short enough for any
/// engine's password field.
const PASSWORD_LEN: usize = 32;

/// How long generated certificates are valid. A year keeps a leaked key's value short-lived without
/// making expiry a monthly event; renewal means generating new material.
const CERT_VALID_DAYS: i64 = 365;

/// A new random password: [`PASSWORD_LEN`] characters from `[A-Za-z0-9]`, drawn from the thread-local
/// CSPRNG (`rand::rng()`, ChaCha-based and reseeded from the OS).
///
/// Alphanumeric only so it is safe unescaped in URIs, shell scripts, SQL string literals and config
/// files, which is how the engines' start scripts use it.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// A new self-signed CA and a server certificate signed by it, valid for one year from today (from
/// yesterday, to tolerate clock skew), with ECDSA P-256 keys.
///
/// The SANs are the given names (a name that parses as an IP address becomes an IP SAN) plus `localhost`
/// and `127.0.0.1`, which the in-pod probes and scripts use. The server certificate allows client
/// authentication as well, because MongoDB replica-set members present it to each other. The CA's key
/// is dropped: nothing else is ever signed by it.
pub fn generate_tls(service_names: &[String]) -> Result<TlsMaterial, String> {
    let first = service_names
        .first()
        .ok_or("a certificate needs at least one name")?;
    let mut names: Vec<String> = service_names.to_vec();
    for loopback in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == loopback) {
            names.push(loopback.to_string());
        }
    }
    let ((y0, m0, d0), (y1, m1, d1)) = validity()?;
    let (not_before, not_after) = (date_time_ymd(y0, m0, d0), date_time_ymd(y1, m1, d1));
    let err = |what: &str, e: rcgen::Error| format!("generating the {what}: {e}");

    let ca_key = KeyPair::generate().map_err(|e| err("CA key", e))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(
        DnType::CommonName,
        common_name(&format!("kidp-broker CA for {first}")),
    );
    ca.distinguished_name
        .push(DnType::OrganizationName, "kidp-broker");
    // Path length 0: this CA signs servers, never another CA.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| err("CA", e))?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(|e| err("server key", e))?;
    let mut server = CertificateParams::new(names).map_err(|e| err("server certificate", e))?;
    server.distinguished_name = rcgen::DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, common_name(first));
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // OpenSSL-based clients build the chain faster, and more reliably, with the authority key id.
    server.use_authority_key_identifier_extension = true;
    server.not_before = not_before;
    server.not_after = not_after;
    let server_cert = server
        .signed_by(&key, &issuer)
        .map_err(|e| err("server certificate", e))?;

    Ok(TlsMaterial {
        ca_crt: ca_cert.pem(),
        tls_crt: server_cert.pem(),
        tls_key: key.serialize_pem(),
    })
}

/// X.509 caps a common name at 64 characters; DNS names are ASCII, so cutting bytes is safe.
fn common_name(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A calendar day as `date_time_ymd` takes it.
type Ymd = (i32, u8, u8);

/// From yesterday to yesterday plus [`CERT_VALID_DAYS`] (used at midnight UTC).
fn validity() -> Result<(Ymd, Ymd), String> {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let start = today
        .checked_sub(jiff::Span::new().days(1))
        .map_err(|e| e.to_string())?;
    let end = start
        .checked_add(jiff::Span::new().days(CERT_VALID_DAYS))
        .map_err(|e| e.to_string())?;
    let ymd = |d: jiff::civil::Date| -> Result<Ymd, String> {
        let month = u8::try_from(d.month()).map_err(|e| e.to_string())?;
        let day = u8::try_from(d.day()).map_err(|e| e.to_string())?;
        Ok((i32::from(d.year()), month, day))
    };
    Ok((ymd(start)?, ymd(end)?))
}

/// The MongoDB replica-set keyfile: 64 hex characters derived from the deployment's password.
///
/// Derived rather than drawn so that rendering stays a pure function of its inputs and re-applying never
/// changes the keyfile under running members. Anyone who can read the password already has root on the
/// database, so the keyfile protects nothing more by being independent of it.
pub(super) fn mongodb_keyfile(password: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(password.as_bytes())
        .expect("HMAC accepts a key of any length");
    mac.update(b"kidp-broker mongodb replica-set keyfile v1");
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::RootCertStore;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

    use super::*;

    /// The names the deployment actor asks for: the client Service in every short form and the pods
    /// through the headless Service's wildcard. (Loopback `generate_tls` adds by itself.)
    fn tls_dns_names(name: &str, ns: &str, domain: &str) -> Vec<String> {
        vec![
            name.to_string(),
            format!("{name}.{ns}"),
            format!("{name}.{ns}.svc"),
            crate::k8s::render::endpoint(name, ns, domain),
            format!("*.{name}-headless.{ns}.svc.{domain}"),
        ]
    }

    #[test]
    fn passwords_are_32_alphanumerics_and_never_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let p = generate_password();
            assert_eq!(p.len(), 32);
            assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()), "{p}");
            assert!(seen.insert(p));
        }
        // Every class of character turns up across many draws: the alphabet is the full 62.
        let all: String = seen.into_iter().collect();
        assert!(all.bytes().any(|b| b.is_ascii_uppercase()));
        assert!(all.bytes().any(|b| b.is_ascii_lowercase()));
        assert!(all.bytes().any(|b| b.is_ascii_digit()));
    }

    #[test]
    fn the_keyfile_is_stable_per_password_and_valid_for_mongodb() {
        let a = mongodb_keyfile("one");
        assert_eq!(a, mongodb_keyfile("one"));
        assert_ne!(a, mongodb_keyfile("two"));
        // MongoDB wants 6 to 1024 characters of the base64 alphabet.
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    fn verifier(ca_pem: &str) -> Arc<WebPkiServerVerifier> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM parses"))
            .expect("CA is a valid trust anchor");
        WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap()
    }

    /// The certificate is checked the way a TLS client checks it (rustls/webpki): chain to the CA,
    /// signature, validity window, and the name asked for.
    #[test]
    fn the_server_certificate_chains_to_the_ca_for_every_name_and_only_those() {
        let names = tls_dns_names("orders", "team-a", "cluster.local");
        let tls = generate_tls(&names[..4]).unwrap();
        assert!(tls.ca_crt.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(tls.tls_crt.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(tls.tls_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        PrivateKeyDer::from_pem_slice(tls.tls_key.as_bytes()).expect("key PEM parses");
        let leaf = CertificateDer::from_pem_slice(tls.tls_crt.as_bytes()).unwrap();
        let v = verifier(&tls.ca_crt);
        let check = |name: &str, at: UnixTime| {
            v.verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                at,
            )
        };
        let now = UnixTime::now();
        for name in [
            "orders",
            "orders.team-a",
            "orders.team-a.svc",
            "orders.team-a.svc.cluster.local",
            "localhost",
            "127.0.0.1",
        ] {
            check(name, now).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(check("orders-0.orders-headless.team-a.svc.cluster.local", now).is_err());
        assert!(check("other.team-a.svc.cluster.local", now).is_err());

        // About a year: valid in 360 days, expired in 370.
        let later = |days: u64| {
            UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + days * 86_400))
        };
        check("orders", later(360)).unwrap();
        assert!(check("orders", later(370)).is_err());
    }

    #[test]
    fn the_pod_wildcard_covers_every_replica() {
        let names = tls_dns_names("orders", "team-a", "cluster.local");
        let tls = generate_tls(&names).unwrap();
        let leaf = CertificateDer::from_pem_slice(tls.tls_crt.as_bytes()).unwrap();
        let v = verifier(&tls.ca_crt);
        for pod in 0..3 {
            let name = format!("orders-{pod}.orders-headless.team-a.svc.cluster.local");
            v.verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(name.clone()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn each_generation_is_a_new_ca_and_key() {
        let names = vec!["orders".to_string()];
        let a = generate_tls(&names).unwrap();
        let b = generate_tls(&names).unwrap();
        assert_ne!(a.ca_crt, b.ca_crt);
        assert_ne!(a.tls_key, b.tls_key);
        // A certificate of one generation does not verify under the other's CA.
        let leaf = CertificateDer::from_pem_slice(a.tls_crt.as_bytes()).unwrap();
        let name = ServerName::try_from("orders".to_string()).unwrap();
        assert!(
            verifier(&b.ca_crt)
                .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn no_names_is_an_error() {
        assert!(generate_tls(&[]).is_err());
    }
}
