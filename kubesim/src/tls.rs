//! kubesim's serving certificate for `--tls`: a fixed CA and a server certificate for `localhost`, `127.0.0.1`,
//! `::1`, `10.96.0.1` and the in-cluster names of the `kubernetes` Service, valid until 2036.
//!
//! The private key is in this repository on purpose: kubesim is a simulator, and a fixed CA lets a kubeconfig
//! written once keep working across restarts. Nothing it signs may be trusted outside a test. (Regenerate with
//! openssl: an EC P-256 CA `CN=kubesim-ca`, and a server certificate with those subject alternative names.)

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// The CA, as published in `kube-root-ca.crt` and in the kubeconfig.
pub(crate) const CA_PEM: &str = include_str!("tls/ca.crt");
const SERVER_CERT_PEM: &str = include_str!("tls/server.crt");
const SERVER_KEY_PEM: &str = include_str!("tls/server.key");

/// The TLS acceptor over the fixed certificate, speaking HTTP/1.1.
pub(crate) fn acceptor() -> Result<TlsAcceptor, String> {
    let chain = vec![
        CertificateDer::from_pem_slice(SERVER_CERT_PEM.as_bytes())
            .map_err(|e| format!("serving certificate: {e}"))?,
        CertificateDer::from_pem_slice(CA_PEM.as_bytes()).map_err(|e| format!("CA: {e}"))?,
    ];
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY_PEM.as_bytes())
        .map_err(|e| format!("serving key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
