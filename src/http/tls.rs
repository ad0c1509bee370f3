//! HTTPS on the REST API port (`--tls-cert-file`, `--tls-key-file`) and client certificates
//! (`--tls-client-ca-file`, mutual TLS).
//!
//! [`ApiAcceptor`] sits under the connection limits ([`super::conn::GuardedAcceptor`]), so a client that opens a
//! connection and never finishes its handshake is closed by the header-read timeout like any other that says
//! nothing. The handshake runs on the connection's own task, at its first read, never in the accept loop.
//!
//! A client certificate is verified during the handshake against the client CAs; one that does not verify ends
//! the handshake. A connection without one is served, because kubelet's HTTPS probes present none and
//! `/health` must answer them; requests to `/v1/` without a certificate then need a bearer token. The names of a
//! verified certificate (URI SANs, then CNs) are kept in [`PeerCertificates`] under the connection's remote
//! address for as long as the connection is open, which is where the authentication middleware finds them:
//! poem hands a request its remote address but nothing else of the connection.
//!
//! The certificate, key and CA files are read again when they change (checked at most every
//! [`RELOAD_POLL`], at an accept), so that cert-manager's rotation needs no restart; files that do not load are
//! logged and the previous configuration stays in force.

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::Context as _;
use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// How often, at most, the files are read to see whether they changed.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The files of the TLS configuration.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CAs that issue client certificates; none: no client certificates are asked for.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The files from the flags; `None` when the API is served over plain HTTP.
    pub fn from_args(args: &crate::config::Args) -> Option<TlsFiles> {
        let nonempty = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        Some(TlsFiles {
            cert: nonempty(&args.tls_cert_file)?,
            key: nonempty(&args.tls_key_file)?,
            client_ca: nonempty(&args.tls_client_ca_file),
        })
    }

    /// The files' bytes, to see when they change.
    fn read(&self) -> io::Result<Vec<u8>> {
        let mut all = std::fs::read(&self.cert)?;
        all.extend(std::fs::read(&self.key)?);
        if let Some(ca) = &self.client_ca {
            all.extend(std::fs::read(ca)?);
        }
        Ok(all)
    }

    /// The server configuration the files describe; the error names the file and what is wrong.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read certificates from {}", self.cert.display()))?;
        anyhow::ensure!(
            !chain.is_empty(),
            "{} holds no PEM certificate",
            self.cert.display()
        );
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("cannot read a private key from {}", self.key.display()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(ca)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .with_context(|| format!("cannot read certificates from {}", ca.display()))?;
                for cert in certs {
                    roots
                        .add(cert)
                        .with_context(|| format!("a CA certificate in {}", ca.display()))?;
                }
                anyhow::ensure!(
                    !roots.is_empty(),
                    "{} holds no CA certificate",
                    ca.display()
                );
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        // Probes present no certificate; /v1/ then asks for a token (see the module doc).
                        .allow_unauthenticated()
                        .build()
                        .with_context(|| format!("client CAs {}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).with_context(|| {
            format!(
                "{} and {} are not a certificate and its key",
                self.cert.display(),
                self.key.display()
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// A client certificate's names, shared by its connection's requests.
type Names = Arc<[String]>;

/// The names of the verified client certificates of the open connections, by remote address, with the id of
/// the connection that registered them.
#[derive(Default)]
pub struct PeerCertificates {
    // A std mutex: held for one map operation, never across an await.
    open: Mutex<HashMap<SocketAddr, (u64, Names)>>,
    next_id: AtomicU64,
}

impl PeerCertificates {
    /// The certificate names of the connection from `remote`, if it presented a certificate.
    pub fn get(&self, remote: &RemoteAddr) -> Option<Names> {
        let addr = remote.as_socket_addr()?;
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(addr).map(|(_, names)| names.clone())
    }

    fn register(self: &Arc<Self>, addr: SocketAddr, names: Names) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, (id, names));
        Registration {
            peers: self.clone(),
            addr,
            id,
        }
    }
}

/// A connection's entry in [`PeerCertificates`], removed when the connection is dropped. The entry is only
/// removed if it is still this connection's, so a later connection from the same address keeps its own.
pub struct Registration {
    peers: Arc<PeerCertificates>,
    addr: SocketAddr,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.get(&self.addr).is_some_and(|(id, _)| *id == self.id) {
            open.remove(&self.addr);
        }
    }
}

/// The names a client certificate is known by: its URI SANs (SPIFFE IDs, for one), then its subject CNs.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name {
                names.push(uri.to_string());
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            names.push(cn.to_string());
        }
    }
    names.retain(|n| !n.trim().is_empty());
    names
}

/// The TLS configuration in force and when its files were last looked at.
struct Reloading {
    files: TlsFiles,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Vec<u8>,
    checked: Instant,
}

impl Reloading {
    fn current(&mut self) -> tokio_rustls::TlsAcceptor {
        if self.checked.elapsed() >= RELOAD_POLL {
            self.checked = Instant::now();
            self.reload();
        }
        self.acceptor.clone()
    }

    fn reload(&mut self) {
        let raw = match self.files.read() {
            Ok(raw) => raw,
            Err(e) => {
                // Logged once per change, not every poll: an empty "seen" marks it.
                if !self.seen.is_empty() {
                    tracing::error!(error = %e, "cannot read the TLS files; keeping the previous certificate");
                    self.seen.clear();
                }
                return;
            }
        };
        if raw == self.seen {
            return;
        }
        match self.files.server_config() {
            Ok(config) => {
                self.acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "the TLS files do not load; keeping the previous certificate"
            ),
        }
        self.seen = raw;
    }
}

/// The REST API's acceptor: plain HTTP, or TLS when configured.
pub struct ApiAcceptor<A> {
    inner: A,
    tls: Option<(Reloading, Arc<PeerCertificates>)>,
}

impl<A: Acceptor> ApiAcceptor<A> {
    /// Plain HTTP over `inner`.
    pub fn plain(inner: A) -> Self {
        ApiAcceptor { inner, tls: None }
    }

    /// TLS over `inner`; certificates of connections are registered in `peers`. Fails when the files do not
    /// load, so a misconfigured broker does not start.
    pub fn tls(inner: A, files: TlsFiles, peers: Arc<PeerCertificates>) -> anyhow::Result<Self> {
        let seen = files.read().unwrap_or_default();
        let config = files.server_config()?;
        Ok(ApiAcceptor {
            inner,
            tls: Some((
                Reloading {
                    files,
                    acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                    seen,
                    checked: Instant::now(),
                },
                peers,
            )),
        })
    }
}

impl<A: Acceptor> Acceptor for ApiAcceptor<A> {
    type Io = ApiIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let Some((config, peers)) = &mut self.tls else {
            return Ok((ApiIo::Plain(io), local, remote, scheme));
        };
        let handshake = Box::new(config.current().accept(io));
        let io = ApiIo::Handshaking {
            handshake,
            remote: remote.as_socket_addr().copied(),
            peers: peers.clone(),
        };
        Ok((io, local, remote, Scheme::HTTPS))
    }
}

/// A connection of the REST API.
pub enum ApiIo<T> {
    Plain(T),
    /// A TLS connection whose handshake has not finished.
    Handshaking {
        handshake: Box<tokio_rustls::Accept<T>>,
        remote: Option<SocketAddr>,
        peers: Arc<PeerCertificates>,
    },
    Tls {
        stream: Box<TlsStream<T>>,
        /// The connection's certificate names in [`PeerCertificates`], when it presented a certificate.
        _registration: Option<Registration>,
    },
    /// The handshake failed; the connection is closed.
    Failed,
}

impl<T: AsyncRead + AsyncWrite + Unpin> ApiIo<T> {
    /// Drives the handshake to its end; ready at once when there is none (left).
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ApiIo::Handshaking {
            handshake,
            remote,
            peers,
        } = self
        else {
            return Poll::Ready(match self {
                ApiIo::Failed => Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the TLS handshake failed",
                )),
                _ => Ok(()),
            });
        };
        match ready!(Pin::new(handshake.as_mut()).poll(cx)) {
            Ok(stream) => {
                let names = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| certificate_names(leaf.as_ref()));
                let registration = match (names, *remote) {
                    (Some(names), Some(addr)) => Some(peers.register(addr, names.into())),
                    _ => None,
                };
                *self = ApiIo::Tls {
                    stream: Box::new(stream),
                    _registration: registration,
                };
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                crate::metrics::connection_closed("api", "tls_handshake_failed");
                tracing::debug!(error = %e, "TLS handshake failed");
                *self = ApiIo::Failed;
                Poll::Ready(Err(e))
            }
        }
    }
}

/// A stream to read and write, TLS or not.
trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for S {}

impl<T: AsyncRead + AsyncWrite + Unpin> ApiIo<T> {
    /// The stream to read and write once the handshake (if any) is over.
    fn poll_stream(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Pin<&mut dyn Stream>>> {
        ready!(self.poll_handshake(cx))?;
        Poll::Ready(match self {
            ApiIo::Plain(io) => Ok(Pin::new(io as &mut dyn Stream)),
            ApiIo::Tls { stream, .. } => Ok(Pin::new(stream.as_mut() as &mut dyn Stream)),
            ApiIo::Handshaking { .. } | ApiIo::Failed => Err(io::ErrorKind::NotConnected.into()),
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ApiIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.get_mut().poll_stream(cx))?.poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ApiIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.get_mut().poll_stream(cx))?.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.get_mut().poll_stream(cx))?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ApiIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            ApiIo::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_shutdown(cx),
            // Nothing was said over the connection: nothing to close but the socket, which dropping does.
            ApiIo::Handshaking { .. } | ApiIo::Failed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(cn: Option<&str>, uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_is_known_by_its_uri_sans_then_its_cn() {
        assert_eq!(
            certificate_names(&cert_with(Some("manager"), &[])),
            ["manager"]
        );
        assert_eq!(
            certificate_names(&cert_with(
                Some("manager"),
                &["spiffe://kidp/ns/platform/sa/manager"]
            )),
            ["spiffe://kidp/ns/platform/sa/manager", "manager"]
        );
        assert!(certificate_names(&cert_with(None, &[])).is_empty());
        assert!(certificate_names(b"not a certificate").is_empty());
    }

    #[test]
    fn a_connection_entry_goes_with_the_connection_and_only_its_own() {
        let peers = Arc::new(PeerCertificates::default());
        let addr: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let remote = RemoteAddr(addr.into());
        let first = peers.register(addr, vec!["a".to_string()].into());
        assert_eq!(peers.get(&remote).as_deref(), Some(&["a".to_string()][..]));
        // A new connection from the same address (the old one's drop still to come) replaces it ...
        let second = peers.register(addr, vec!["b".to_string()].into());
        drop(first);
        // ... and the old one's drop leaves the new entry alone.
        assert_eq!(peers.get(&remote).as_deref(), Some(&["b".to_string()][..]));
        drop(second);
        assert!(peers.get(&remote).is_none());
        assert!(peers.open.lock().unwrap().is_empty());
    }
}
