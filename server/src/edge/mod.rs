//! The edge: Kiln's own accept loop on hyper-util (HTTP/1.1 and h2c on one port), a cap on
//! open connections, connection timeouts, and a graceful drain on shutdown.
//!
//! Kiln's rule for kept-alive connections: the client is always the side that closes an idle
//! connection. Agents upload every 10 s (Node every 60 s) on one connection and their pools drop
//! idle connections after 90 s (Go, reqwest) or the advertised `Keep-Alive` time minus a margin
//! (Node). A server that closes first races the next upload: its FIN crosses the request, the
//! client gets a reset and the profile is lost. So the idle limit is long (120 s), it is
//! advertised on every HTTP/1.1 response as `Keep-Alive: timeout=<idle − 5 s>`, and it runs
//! only between requests. Hyper's own `header_read_timeout` would also run on idle connections,
//! so it is off; [`conn`] keeps the header and body deadlines to the time a request is
//! actually arriving.

mod conn;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::metrics::{Metrics, Overload};
pub use conn::ReadLimits;
use conn::{ConnState, TrackedIo};
use service::EdgeService;
pub use service::keep_alive_value;

/// Connection settings.
#[derive(Debug, Clone, Copy)]
pub struct EdgeConfig {
    /// Connections served at once; more are closed at accept with a log line. Default 10 000.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests. Default 30 s.
    pub drain_timeout: Duration,
    /// How long a connection may sit between requests before Kiln closes it. Default 120 s:
    /// longer than the 90 s after which Go and reqwest pools drop idle connections, so they
    /// close first; HTTP/1.1 responses advertise 5 s less for clients that ask (Node).
    pub idle_timeout: Duration,
    /// HTTP/1: from the first byte of a request until its headers are in. Default 10 s.
    pub header_read_timeout: Duration,
    /// HTTP/1: the longest wait for the next piece of a request body. Default 30 s.
    pub body_read_timeout: Duration,
    /// The longest a request may take, from its headers to the response headers; slower
    /// requests are answered 503 with `Retry-After`, and their work is cancelled. Default 120 s.
    pub request_timeout: Duration,
    /// HTTP/2: how often an idle-looking connection is pinged. Default 30 s.
    pub h2_keep_alive_interval: Duration,
    /// HTTP/2: how long a ping may go unanswered before the connection is closed. Default 20 s.
    pub h2_keep_alive_timeout: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            h2_keep_alive_interval: Duration::from_secs(30),
            h2_keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// Counts an open connection for as long as it lives, even if its task is aborted.
struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, closes idle
/// connections and waits (at most the drain timeout) for the others to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    metrics: Arc<Metrics>,
    config: EdgeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper timer on HTTP/1: its header_read_timeout would also run between requests and
    // close kept-alive connections under the client. `conn` enforces it instead.
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.h2_keep_alive_interval)
        .keep_alive_timeout(config.h2_keep_alive_timeout);
    let limits =
        ReadLimits { header_read_timeout: config.header_read_timeout, body_read_timeout: config.body_read_timeout };
    let keep_alive = keep_alive_value(config.idle_timeout);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut refused_since_last_log = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.rejected_overload(Overload::Connections);
            refused_since_last_log += 1;
            if refused_since_last_log == 1 || refused_since_last_log.is_power_of_two() {
                tracing::warn!(max_connections = config.max_connections, refused = refused_since_last_log, %peer, "connection limit reached; closing new connection");
            }
            continue;
        };
        refused_since_last_log = 0;
        let _ = stream.set_nodelay(true);
        metrics.accepted_connections.fetch_add(1, Ordering::Relaxed);
        metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection(metrics.clone());
        let state = ConnState::new(config.idle_timeout);
        let io = TokioIo::new(TrackedIo::new(stream, state.clone(), limits));
        let service = EdgeService {
            router: router.clone(),
            conn: state.clone(),
            keep_alive: keep_alive.clone(),
            request_timeout: config.request_timeout,
        };
        let connection = builder.serve_connection_with_upgrades(io, service).into_owned();
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let mut closing = false;
            let result = loop {
                tokio::select! {
                    result = connection.as_mut() => break result,
                    // Nothing polls the socket between the idle check and this call, so a
                    // request cannot start in between.
                    () = state.idle_expired(), if !closing => {
                        tracing::debug!(%peer, "idle timeout; closing the connection");
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = async { let _ = stopping.wait_for(|stop| *stop).await; }, if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(open);
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; closing idle ones and draining the rest");
    let _ = stop.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    match tokio::time::timeout(config.drain_timeout, drain).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(timeout = ?config.drain_timeout, "drain timeout; closing remaining connections");
            connections.shutdown().await;
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
