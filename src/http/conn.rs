//! Connection hardening below HTTP: a cap on open connections and deadlines for clients that connect and then
//! say nothing, or say it very slowly. poem 3.1's server exposes neither a header-read timeout (hyper's needs a
//! timer poem does not set) nor a connection limit, so [`GuardedAcceptor`] wraps the listener's acceptor and
//! every connection's stream.
//!
//! A connection is *waiting* when no request is in progress: just accepted, or its last response written. A
//! waiting connection must deliver a complete request head within the header-read timeout of being accepted
//! (or of its first byte, on a kept-alive connection), and a kept-alive connection that sends nothing is closed
//! after the keep-alive timeout. When every slot is taken, a new connection replaces the connection that has
//! been waiting longest; one with a request in progress is never cut, and only when all are busy is the new
//! connection closed unanswered. So a flood of idle connections cannot lock out a probe of `/health`.
//!
//! The stream wrapper only watches bytes go by (the end of a request head, the start of a response); it never
//! changes them.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a new connection waits for the slot of the waiting connection it displaced. That connection closes
/// as soon as its task next polls it, so this is only reached when the runtime is overloaded; the new
/// connection is then closed rather than stalling the accept loop.
const DISPLACE_WAIT: Duration = Duration::from_millis(200);

/// Pause after an accept error other than a connection reset before the peer finished connecting: out of file
/// descriptors, an accept retried at once fails again at once and spins a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The start of the HTTP/2 connection preface (prior knowledge, `h2c`).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// A complete request head must arrive within this long.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request is closed after this long.
    pub keep_alive_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits of the REST API port from the command line.
    pub fn from_args(args: &crate::config::Args) -> Self {
        ConnectionLimits {
            max_connections: args.max_connections.max(1),
            header_read_timeout: Duration::from_secs(args.header_read_timeout_seconds.max(1)),
            keep_alive_timeout: Duration::from_secs(args.keep_alive_timeout_seconds.max(1)),
        }
    }
}

/// The open connections of one listener: the slots, and the waiting connections in the order they started
/// waiting (the oldest is displaced first).
struct Slots {
    permits: Arc<Semaphore>,
    waiting: Mutex<BTreeMap<u64, CancellationToken>>,
    next_id: AtomicU64,
    listener: &'static str,
}

impl Slots {
    fn start_waiting(&self, displace: &CancellationToken) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.waiting
            .lock()
            .expect("never poisoned: no code panics while holding it")
            .insert(id, displace.clone());
        id
    }

    fn stop_waiting(&self, id: u64) {
        self.waiting
            .lock()
            .expect("never poisoned: no code panics while holding it")
            .remove(&id);
    }

    /// Tells the connection that has waited longest to close; false when every connection is busy.
    fn displace_oldest(&self) -> bool {
        let oldest = self
            .waiting
            .lock()
            .expect("never poisoned: no code panics while holding it")
            .pop_first();
        match oldest {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// An acceptor that enforces [`ConnectionLimits`] on the connections of `inner`.
pub struct GuardedAcceptor<A> {
    inner: A,
    limits: ConnectionLimits,
    slots: Arc<Slots>,
}

impl<A: Acceptor> GuardedAcceptor<A> {
    /// Wraps `inner`; `listener` names it in metrics (`api`, `metrics`).
    pub fn new(inner: A, limits: ConnectionLimits, listener: &'static str) -> Self {
        GuardedAcceptor {
            inner,
            limits,
            slots: Arc::new(Slots {
                permits: Arc::new(Semaphore::new(limits.max_connections)),
                waiting: Mutex::default(),
                next_id: AtomicU64::new(0),
                listener,
            }),
        }
    }
}

impl Slots {
    /// A slot for a new connection: a free one, else the one of the longest-waiting connection.
    async fn take(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if !self.displace_oldest() {
            return None;
        }
        crate::metrics::connection_closed(self.listener, "displaced");
        tokio::time::timeout(DISPLACE_WAIT, self.permits.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = GuardedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let (io, local, remote, scheme) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) if is_peer_error(&e) => continue,
                Err(e) => {
                    // poem's accept loop drops errors and calls again at once; pausing here is what keeps
                    // fd exhaustion from turning into a busy loop.
                    tracing::warn!(error = %e, listener = self.slots.listener, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let slots = self.slots.clone();
            let Some(permit) = slots.take().await else {
                crate::metrics::connection_closed(self.slots.listener, "over_limit");
                drop(io);
                continue;
            };
            return Ok((
                GuardedIo::new(io, permit, self.slots.clone(), self.limits),
                local,
                remote,
                scheme,
            ));
        }
    }
}

/// Errors that concern one half-open connection, not the listener.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress; `started` once a byte of the next request head has arrived.
    Waiting { started: bool, head: HeadEnd },
    /// A request head has arrived and its response has not started.
    Serving,
    /// HTTP/2: many requests share the connection, so it is timed only by inactivity.
    Http2,
}

/// Finds the blank line that ends a request head (`\r\n\r\n`, or `\n\n`, which HTTP/1 parsers accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum HeadEnd {
    /// Nothing but line breaks so far (parsers skip blank lines before the request line).
    #[default]
    Empty,
    /// Inside a line.
    Text,
    /// Just after a line break.
    LineEnd,
    /// After a line break and a `\r`.
    LineEndCr,
}

impl HeadEnd {
    /// Feeds one byte; true when it completes the head.
    fn push(&mut self, b: u8) -> bool {
        let (next, done) = match (*self, b) {
            (HeadEnd::Empty, b'\r' | b'\n') => (HeadEnd::Empty, false),
            (HeadEnd::LineEnd | HeadEnd::LineEndCr, b'\n') => (HeadEnd::Empty, true),
            (HeadEnd::LineEnd, b'\r') => (HeadEnd::LineEndCr, false),
            (_, b'\n') => (HeadEnd::LineEnd, false),
            _ => (HeadEnd::Text, false),
        };
        *self = next;
        done
    }
}

/// A connection's stream under [`ConnectionLimits`]; it holds the connection's slot until dropped.
pub struct GuardedIo<T> {
    inner: T,
    limits: ConnectionLimits,
    slots: Arc<Slots>,
    _slot: OwnedSemaphorePermit,
    phase: Phase,
    /// The id under which the connection is listed as waiting.
    waiting_id: Option<u64>,
    /// Bytes of the HTTP/2 preface matched so far, `None` once it cannot be HTTP/2.
    preface: Option<usize>,
    displace: CancellationToken,
    displaced: Pin<Box<WaitForCancellationFutureOwned>>,
    deadline: Pin<Box<Sleep>>,
    /// Set once the stream has failed for a limit; it stays failed.
    closed: Option<io::ErrorKind>,
}

impl<T> GuardedIo<T> {
    fn new(
        inner: T,
        slot: OwnedSemaphorePermit,
        slots: Arc<Slots>,
        limits: ConnectionLimits,
    ) -> Self {
        crate::metrics::connection_opened(slots.listener);
        let displace = CancellationToken::new();
        let waiting_id = Some(slots.start_waiting(&displace));
        GuardedIo {
            inner,
            limits,
            _slot: slot,
            phase: Phase::Waiting {
                started: true,
                head: HeadEnd::default(),
            },
            waiting_id,
            preface: Some(0),
            displaced: Box::pin(displace.clone().cancelled_owned()),
            displace,
            // A new connection has the header-read timeout for everything: saying nothing counts too.
            deadline: Box::pin(tokio::time::sleep(limits.header_read_timeout)),
            slots,
            closed: None,
        }
    }

    fn stop_waiting(&mut self) {
        if let Some(id) = self.waiting_id.take() {
            self.slots.stop_waiting(id);
        }
    }

    /// Watches bytes the client sent.
    fn on_read(&mut self, bytes: &[u8]) {
        if let Some(matched) = self.preface {
            let n = bytes.len().min(H2_PREFACE.len() - matched);
            if bytes[..n] != H2_PREFACE[matched..matched + n] {
                self.preface = None;
            } else if matched + n == H2_PREFACE.len() {
                self.preface = None;
                self.stop_waiting();
                self.phase = Phase::Http2;
            } else {
                self.preface = Some(matched + n);
            }
        }
        match &mut self.phase {
            Phase::Http2 => {
                let next = Instant::now() + self.limits.keep_alive_timeout;
                self.deadline.as_mut().reset(next);
            }
            Phase::Serving => {}
            Phase::Waiting { started, head } => {
                if !*started {
                    *started = true;
                    let next = Instant::now() + self.limits.header_read_timeout;
                    self.deadline.as_mut().reset(next);
                }
                if bytes.iter().any(|b| head.push(*b)) && self.preface.is_none() {
                    self.stop_waiting();
                    self.phase = Phase::Serving;
                }
            }
        }
    }

    /// Watches bytes the server sends: the start of a final response ends the request.
    fn on_write(&mut self, bytes: &[u8]) {
        match self.phase {
            Phase::Http2 => {
                let next = Instant::now() + self.limits.keep_alive_timeout;
                self.deadline.as_mut().reset(next);
            }
            // `100 Continue` is sent before the body is read: the request is still in progress.
            Phase::Serving if !is_informational(bytes) => {
                self.phase = Phase::Waiting {
                    started: false,
                    head: HeadEnd::default(),
                };
                self.waiting_id = Some(self.slots.start_waiting(&self.displace));
                let next = Instant::now() + self.limits.keep_alive_timeout;
                self.deadline.as_mut().reset(next);
            }
            Phase::Serving | Phase::Waiting { .. } => {}
        }
    }

    /// Whether a limit closes the stream now; registers for wake-up otherwise.
    fn check_limits(&mut self, cx: &mut Context<'_>) -> Option<io::ErrorKind> {
        if let Some(kind) = self.closed {
            return Some(kind);
        }
        let reason = match self.phase {
            Phase::Serving => return None,
            Phase::Waiting { started, .. } => {
                if self.displace.is_cancelled() || self.displaced.as_mut().poll(cx).is_ready() {
                    // Counted by the acceptor that displaced it.
                    self.closed = Some(io::ErrorKind::ConnectionAborted);
                    return self.closed;
                }
                if started {
                    "header_timeout"
                } else {
                    "keep_alive_timeout"
                }
            }
            Phase::Http2 => "idle_timeout",
        };
        if self.deadline.as_mut().poll(cx).is_ready() {
            crate::metrics::connection_closed(self.slots.listener, reason);
            self.closed = Some(io::ErrorKind::TimedOut);
        }
        self.closed
    }
}

fn is_informational(response_start: &[u8]) -> bool {
    response_start.starts_with(b"HTTP/1.1 1") || response_start.starts_with(b"HTTP/1.0 1")
}

impl<T> Drop for GuardedIo<T> {
    fn drop(&mut self) {
        self.stop_waiting();
        crate::metrics::connection_dropped(self.slots.listener);
    }
}

fn limit_error(kind: io::ErrorKind) -> io::Error {
    io::Error::new(kind, "connection closed by the broker's connection limits")
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(kind) = this.check_limits(cx) {
            return Poll::Ready(Err(limit_error(kind)));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let filled = &buf.filled()[before..];
            if !filled.is_empty() {
                this.on_read(filled);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            this.on_write(&buf[..n]);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_ends_at(bytes: &[u8]) -> Option<usize> {
        let mut h = HeadEnd::default();
        bytes.iter().position(|b| h.push(*b)).map(|i| i + 1)
    }

    #[test]
    fn finds_the_end_of_a_request_head() {
        assert_eq!(
            head_ends_at(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n{}"),
            Some(27)
        );
        assert_eq!(head_ends_at(b"GET / HTTP/1.1\nHost: x\n\n"), Some(24));
        assert_eq!(head_ends_at(b"GET / HTTP/1.1"), None);
        assert_eq!(head_ends_at(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        // Blank lines before the request line are skipped by parsers, so they end nothing.
        assert_eq!(head_ends_at(b"\r\n\r\n\n\n"), None);
        assert_eq!(head_ends_at(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Some(22));
    }

    #[test]
    fn informational_responses_do_not_end_a_request() {
        assert!(is_informational(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(!is_informational(b"HTTP/1.1 200 OK\r\n"));
        assert!(!is_informational(b"HTTP/1.1 429 Too Many Requests\r\n"));
    }
}
