//! Per-connection request tracking and the read deadlines enforced on the socket.
//!
//! [`ConnState`] knows whether a request is in progress. The socket wrapper [`TrackedIo`]
//! moves it from idle to "reading headers" on the first byte, the service wrapper moves it on
//! to "in flight" when hyper hands over a request, and back to idle once the response body is
//! done. The idle limit itself is enforced by the connection task through hyper's graceful
//! shutdown (see [`ConnState::idle_expired`]); the header and body limits are enforced here, on
//! reads, because only the socket sees a client that has stopped sending.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// What every HTTP/2 connection starts with; anything else is HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Sent to a client whose request headers did not arrive in time. Written straight to the
/// socket because hyper has no response to send for an I/O error.
const REQUEST_TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Which protocol the connection speaks, as far as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Fewer bytes than the HTTP/2 preface seen so far, all matching it.
    Sniffing,
    Http1,
    Http2,
    /// Handed over by a `101 Switching Protocols`: no longer HTTP, so no deadlines here.
    Upgraded,
}

#[derive(Debug)]
struct Inner {
    protocol: Protocol,
    /// Bytes of the HTTP/2 preface matched so far.
    preface_matched: usize,
    /// HTTP/1: when the first byte of a request arrived, until hyper hands the request over.
    head_started: Option<Instant>,
    /// Requests handed to the service whose response body is not finished yet.
    in_flight: usize,
    /// HTTP/1: the in-flight request's body has not been read to its end.
    body_pending: bool,
    /// When the connection last became idle (or was accepted).
    idle_since: Instant,
}

impl Inner {
    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.head_started.is_none()
    }
}

/// The request state of one connection, shared by its socket, its service and its task.
#[derive(Debug)]
pub struct ConnState {
    inner: Mutex<Inner>,
    /// Woken whenever the connection becomes idle, so the idle watcher can start counting.
    became_idle: Notify,
    idle_timeout: Duration,
}

/// Which read deadline is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadLimit {
    Headers,
    Body,
}

impl ConnState {
    /// A fresh connection: idle since now.
    pub fn new(idle_timeout: Duration) -> Arc<Self> {
        Arc::new(ConnState {
            inner: Mutex::new(Inner {
                protocol: Protocol::Sniffing,
                preface_matched: 0,
                head_started: None,
                in_flight: 0,
                body_pending: false,
                idle_since: Instant::now(),
            }),
            became_idle: Notify::new(),
            idle_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain counters behind; keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived from the client.
    fn on_read(&self, bytes: &[u8]) {
        let mut inner = self.lock();
        if inner.protocol == Protocol::Sniffing {
            let start = inner.preface_matched;
            let take = bytes.len().min(H2_PREFACE.len() - start);
            if bytes[..take] == H2_PREFACE[start..start + take] {
                inner.preface_matched += take;
                if inner.preface_matched == H2_PREFACE.len() {
                    inner.protocol = Protocol::Http2;
                    // The preface is not a request: HTTP/2 has no header deadline here.
                    inner.head_started = None;
                    return;
                }
            } else {
                inner.protocol = Protocol::Http1;
            }
        }
        if matches!(inner.protocol, Protocol::Sniffing | Protocol::Http1) && inner.is_idle() {
            inner.head_started = Some(Instant::now());
        }
    }

    /// Hyper handed a request to the service; `body_done` when it has no body left to read.
    pub(crate) fn on_request(&self, body_done: bool) {
        let mut inner = self.lock();
        inner.head_started = None;
        inner.in_flight += 1;
        inner.body_pending = !body_done;
    }

    /// The connection switched protocols; its bytes are no longer requests.
    pub(crate) fn on_upgrade(&self) {
        let mut inner = self.lock();
        inner.protocol = Protocol::Upgraded;
        inner.head_started = None;
        inner.body_pending = false;
    }

    /// The in-flight request's body was read to its end (or dropped).
    pub(crate) fn on_request_body_done(&self) {
        self.lock().body_pending = false;
    }

    /// A response body finished (or the request was abandoned).
    pub(crate) fn on_response_done(&self) {
        let mut inner = self.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        if inner.in_flight == 0 {
            inner.body_pending = false;
            if inner.is_idle() {
                inner.idle_since = Instant::now();
                drop(inner);
                self.became_idle.notify_waiters();
            }
        }
    }

    /// When the idle limit runs out, if the connection is idle now.
    fn idle_deadline(&self) -> Option<Instant> {
        let inner = self.lock();
        inner.is_idle().then(|| inner.idle_since + self.idle_timeout)
    }

    /// Resolves once the connection has been idle for the idle timeout. The caller must then
    /// close the connection without polling any I/O in between, so no request can slip in.
    pub async fn idle_expired(&self) {
        loop {
            let became_idle = self.became_idle.notified();
            match self.idle_deadline() {
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {
                            // Still idle and not busy in between (that would move the deadline).
                            if self.idle_deadline() == Some(deadline) {
                                return;
                            }
                        }
                        () = became_idle => {}
                    }
                }
                None => became_idle.await,
            }
        }
    }
}

/// Read deadlines for one connection.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// From the first byte of a request until hyper has parsed its headers.
    pub header_read_timeout: Duration,
    /// The longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
}

/// A socket that reports its reads to [`ConnState`] and fails reads that wait too long.
#[derive(Debug)]
pub struct TrackedIo<S> {
    inner: S,
    state: Arc<ConnState>,
    limits: ReadLimits,
    /// HTTP/1 body reads: when the current wait for data began.
    body_wait_started: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
}

impl<S> TrackedIo<S> {
    /// Wraps `inner`, reporting to `state`.
    pub fn new(inner: S, state: Arc<ConnState>, limits: ReadLimits) -> Self {
        TrackedIo { inner, state, limits, body_wait_started: None, timer: None, timed_out: false }
    }

    /// The deadline for the read now waiting, if one applies.
    fn read_deadline(&mut self) -> Option<(Instant, ReadLimit)> {
        let inner = self.state.lock();
        if matches!(inner.protocol, Protocol::Http2 | Protocol::Upgraded) {
            return None;
        }
        if let Some(started) = inner.head_started {
            return Some((started + self.limits.header_read_timeout, ReadLimit::Headers));
        }
        if inner.in_flight > 0 && inner.body_pending {
            let started = *self.body_wait_started.get_or_insert_with(Instant::now);
            return Some((started + self.limits.body_read_timeout, ReadLimit::Body));
        }
        None
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    this.state.on_read(read);
                    this.body_wait_started = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((deadline, limit)) = this.read_deadline() else {
                    this.body_wait_started = None;
                    return Poll::Pending;
                };
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.timed_out = true;
                if limit == ReadLimit::Headers {
                    // Best effort: a client that is not reading either just sees the close.
                    let _ = Pin::new(&mut this.inner).poll_write(cx, REQUEST_TIMEOUT_RESPONSE);
                }
                tracing::debug!(?limit, "read timeout; closing the connection");
                let message = match limit {
                    ReadLimit::Headers => "request headers not received in time",
                    ReadLimit::Body => "request body stalled",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, message)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<ConnState> {
        ConnState::new(Duration::from_secs(120))
    }

    #[test]
    fn the_first_byte_of_an_http1_request_starts_the_header_clock() {
        let conn = state();
        conn.on_read(b"P");
        assert_eq!(conn.lock().protocol, Protocol::Sniffing, "PRI and POST share a first letter");
        assert!(conn.lock().head_started.is_some());
        conn.on_read(b"OST / HTTP/1.1\r\n");
        assert_eq!(conn.lock().protocol, Protocol::Http1);
        assert!(conn.idle_deadline().is_none());
        conn.on_request(false);
        assert!(conn.lock().head_started.is_none());
        assert!(conn.lock().body_pending);
        conn.on_read(b"body");
        assert!(conn.lock().head_started.is_none(), "body bytes are not a new request");
        conn.on_request_body_done();
        conn.on_response_done();
        assert!(conn.idle_deadline().is_some());
    }

    #[tokio::test]
    async fn the_http2_preface_is_not_a_request() {
        let conn = state();
        conn.on_read(&H2_PREFACE[..5]);
        conn.on_read(&H2_PREFACE[5..]);
        assert_eq!(conn.lock().protocol, Protocol::Http2);
        assert!(conn.lock().head_started.is_none());
        assert!(conn.idle_deadline().is_some(), "an HTTP/2 connection without streams is idle");
        conn.on_read(b"\0\0\0\x04\0\0\0\0\0");
        assert!(conn.idle_deadline().is_some(), "frames other than requests keep it idle");
        conn.on_request(false);
        conn.on_request(true);
        conn.on_response_done();
        assert!(conn.idle_deadline().is_none(), "one stream still open");
        conn.on_response_done();
        assert!(conn.idle_deadline().is_some());
    }

    #[test]
    fn an_upgraded_connection_has_no_request_deadlines() {
        let conn = state();
        conn.on_read(b"GET /ws HTTP/1.1\r\n\r\n");
        conn.on_request(true);
        conn.on_upgrade();
        conn.on_response_done();
        conn.on_read(b"\x81\x05hello");
        assert!(conn.lock().head_started.is_none(), "upgraded bytes are not a request");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_expiry_waits_for_a_full_idle_period_after_the_last_response() {
        let conn = ConnState::new(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(8)).await;
        conn.on_read(b"GET");
        conn.on_request(true);
        let expired = tokio::spawn({
            let conn = conn.clone();
            async move {
                conn.idle_expired().await;
                Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!expired.is_finished(), "never idle while a request is in flight");
        let idle_from = Instant::now();
        conn.on_response_done();
        let at = expired.await.expect("watcher ran");
        assert_eq!(at - idle_from, Duration::from_secs(10));
    }
}
