//! Prometheus metrics, kept as plain atomics and written in the text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters and gauges the server exposes on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests_2xx: AtomicU64,
    requests_4xx: AtomicU64,
    requests_5xx: AtomicU64,
    requests_other: AtomicU64,
    /// Request body bytes received by ingest endpoints (before decompression).
    pub ingest_bytes: AtomicU64,
    /// Uploads stored.
    pub ingest_uploads: AtomicU64,
    /// Uploads rejected.
    pub ingest_errors: AtomicU64,
    /// Retried uploads recognised by their idempotency key and not stored again.
    pub ingest_duplicates: AtomicU64,
    /// Connections currently open.
    pub open_connections: AtomicI64,
    /// Connections accepted since start.
    pub accepted_connections: AtomicU64,
}

impl Metrics {
    /// Counts a finished request by its status class.
    pub fn record_status(&self, status: u16) {
        let counter = match status {
            200..=299 => &self.requests_2xx,
            400..=499 => &self.requests_4xx,
            500..=599 => &self.requests_5xx,
            _ => &self.requests_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP kiln_http_requests_total HTTP requests answered, by status class.\n");
        out.push_str("# TYPE kiln_http_requests_total counter\n");
        for (class, counter) in [
            ("2xx", &self.requests_2xx),
            ("4xx", &self.requests_4xx),
            ("5xx", &self.requests_5xx),
            ("other", &self.requests_other),
        ] {
            let _ = writeln!(out, "kiln_http_requests_total{{status=\"{class}\"}} {}", get(counter));
        }
        let simple: [(&str, &str, &str, String); 6] = [
            (
                "kiln_ingest_bytes_total",
                "counter",
                "Request body bytes received by ingest endpoints.",
                get(&self.ingest_bytes).to_string(),
            ),
            ("kiln_ingest_uploads_total", "counter", "Uploads stored.", get(&self.ingest_uploads).to_string()),
            ("kiln_ingest_errors_total", "counter", "Uploads rejected.", get(&self.ingest_errors).to_string()),
            (
                "kiln_ingest_duplicates_total",
                "counter",
                "Retried uploads recognised by their idempotency key and not stored again.",
                get(&self.ingest_duplicates).to_string(),
            ),
            (
                "kiln_open_connections",
                "gauge",
                "Connections currently open.",
                self.open_connections.load(Ordering::Relaxed).to_string(),
            ),
            (
                "kiln_accepted_connections_total",
                "counter",
                "Connections accepted.",
                get(&self.accepted_connections).to_string(),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}
