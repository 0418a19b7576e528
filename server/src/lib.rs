//! The Kiln server.
//!
//! - [`edge`]: the accept loop, connection limits, graceful shutdown.
//! - [`api`]: the axum router, one error type, health and metrics.
//! - [`ingest`]: one module per wire format, all ending in [`storage::Upload`].
//! - [`storage`]: the write-ahead log and the in-memory head that queries read.
//! - [`query`]: selecting series and merging them into one call tree.
//! - [`proto`]: pprof's protocol-buffer messages, read by ingest and written by the export.
//! - [`work`]: the heavy lane for CPU work, request cancellation, the in-flight byte budget.
//! - [`cli`]: flags and environment, the `kiln` subcommands.
//! - [`upload`]: the `kiln upload` client (one kept-alive connection, retries, gzip).

#![recursion_limit = "256"]

pub mod api;
pub mod cli;
pub mod edge;
pub mod ingest;
pub mod metrics;
pub mod proto;
pub mod query;
pub mod storage;
pub mod timespec;
pub mod upload;
pub mod work;
