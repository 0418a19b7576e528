//! The one metrics registry of the process, encoded by `prometheus-client` for `/metrics`.
//!
//! Every name starts with `kiln_`. What is counted where:
//! - the edge and ingest bump plain atomics (`accepted_connections`, `ingest_bytes`, …): they are
//!   on every connection and upload, and read at scrape time by [`HotCounters`];
//! - the request middleware calls [`Metrics::observe_request`] (a latency histogram by route
//!   template, method and status class, and the status-class counter);
//! - limits that shed load call [`Metrics::rejected_overload`], the in-flight byte budget
//!   moves the [`Metrics::inflight_bytes`] gauge, the panic catcher calls
//!   [`Metrics::handler_panicked`];
//! - storage figures are not pushed: a [`StorageGauges`] snapshot is taken at scrape time from
//!   the source given to [`Metrics::observe_storage`], so they are never stale and storage
//!   does not depend on this module.
//!
//! `/metrics` answers OpenMetrics text to scrapers that ask for it (`Accept:
//! application/openmetrics-text`, as Prometheus does) and the Prometheus text format 0.0.4
//! otherwise; both come from the same registry.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of the request latency buckets: health checks and small uploads
/// answer in a millisecond or less, heavy merges take seconds, the request timeout is 60 s.
const LATENCY_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The `route` label of requests no route matched (static files, 404s).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Why a request or connection was turned away to protect the process. Label values are fixed
/// here, so the `reason` label cannot grow with input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overload {
    /// The edge's connection limit (`--max-connections`): a new connection was closed.
    Connections,
    /// The budget of in-flight decompressed bytes across requests: 503 with `Retry-After`.
    InflightBytes,
    /// Free disk under the configured floor: ingest refused with 503.
    DiskFloor,
}

impl Overload {
    /// Every reason, so that each shows (at zero) before it first happens.
    pub const ALL: [Overload; 3] = [Overload::Connections, Overload::InflightBytes, Overload::DiskFloor];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            Overload::Connections => "connections",
            Overload::InflightBytes => "inflight_bytes",
            Overload::DiskFloor => "disk_floor",
        }
    }
}

/// Totals counted outside the registry, read at every scrape (see [`Metrics::sync_totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Decompressed bytes held by requests in progress.
    pub inflight_bytes: u64,
    /// Requests refused by the in-flight byte budget since start.
    pub refused_inflight: u64,
    /// Uploads refused for free disk under the floor since start.
    pub refused_disk_floor: u64,
    /// Handler panics answered 500 since start.
    pub handler_panics: u64,
}

/// Moves `counter` up to `total` (never down: a counter only grows).
fn advance(counter: &Counter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// Storage figures at one instant, read at every scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageGauges {
    /// Estimated memory held by the active and frozen heads.
    pub head_bytes: u64,
    /// Heads cut from the log and waiting to be written as blocks.
    pub frozen_heads: u64,
    /// Write-ahead log segment files on disk.
    pub wal_segments: u64,
    /// Blocks that answer queries (all writers, compacted inputs excluded).
    pub blocks: u64,
    /// Failed attempts to write a frozen head as a block, since start; `None` while the store
    /// does not count them (the metric is then left out rather than shown as zero).
    pub flush_failures: Option<u64>,
    /// Failed compaction runs since start; `None` as for `flush_failures`.
    pub compaction_failures: Option<u64>,
    /// Cluster mode: records of the shared log skipped as unreadable since start; `None`
    /// outside cluster mode.
    pub log_records_skipped: Option<u64>,
}

type StorageSource = Box<dyn Fn() -> StorageGauges + Send + Sync>;

/// Encodes the storage snapshot at scrape time.
#[derive(Default)]
struct StorageCollector {
    source: RwLock<Option<StorageSource>>,
}

impl fmt::Debug for StorageCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageCollector").finish_non_exhaustive()
    }
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}

fn encode_counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

impl Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let source = self.source.read().expect("storage source lock");
        let Some(source) = source.as_ref() else { return Ok(()) };
        let gauges = source();
        let e = &mut encoder;
        encode_gauge(
            e,
            "head",
            "Estimated memory held by the in-memory heads (active and frozen).",
            Some(&Unit::Bytes),
            gauges.head_bytes,
        )?;
        encode_gauge(e, "frozen_heads", "Heads cut and waiting to be written as blocks.", None, gauges.frozen_heads)?;
        encode_gauge(e, "wal_segments", "Write-ahead log segment files on disk.", None, gauges.wal_segments)?;
        encode_gauge(e, "blocks", "Blocks that answer queries.", None, gauges.blocks)?;
        if let Some(failures) = gauges.flush_failures {
            encode_counter(e, "flush_failures", "Failed attempts to write a frozen head as a block.", failures)?;
        }
        if let Some(failures) = gauges.compaction_failures {
            encode_counter(e, "compaction_failures", "Failed compaction runs.", failures)?;
        }
        if let Some(skipped) = gauges.log_records_skipped {
            encode_counter(
                e,
                "log_records_skipped",
                "Shared-log records skipped as unreadable (cluster mode).",
                skipped,
            )?;
        }
        Ok(())
    }
}

/// Counters bumped on every connection and upload, kept as plain atomics and encoded at
/// scrape time.
#[derive(Debug, Default)]
pub struct HotCounters {
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

impl Collector for HotCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let e = &mut encoder;
        encode_counter(e, "ingest_bytes", "Request body bytes received by ingest endpoints.", get(&self.ingest_bytes))?;
        encode_counter(e, "ingest_uploads", "Uploads stored.", get(&self.ingest_uploads))?;
        encode_counter(e, "ingest_errors", "Uploads rejected.", get(&self.ingest_errors))?;
        encode_counter(
            e,
            "ingest_duplicates",
            "Retried uploads recognised by their idempotency key and not stored again.",
            get(&self.ingest_duplicates),
        )?;
        let open = ConstGauge::new(self.open_connections.load(Ordering::Relaxed));
        open.encode(e.encode_descriptor(
            "open_connections",
            "Connections currently open.",
            None,
            open.metric_type(),
        )?)?;
        encode_counter(e, "accepted_connections", "Connections accepted.", get(&self.accepted_connections))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    // The matched route template (`/api/page-data/{name}`), never the raw path.
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// A status code's class, the `status` label value.
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// The `method` label value: the standard methods by name, anything else as `other` (a client
/// can send any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Which text format to answer a scrape with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Exposition {
    /// The format a scraper's `Accept` header asks for.
    pub fn for_accept(accept: Option<&str>) -> Exposition {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            Exposition::OpenMetrics
        } else {
            Exposition::Prometheus
        }
    }

    /// The answer's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Everything the server exposes on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Per-connection and per-upload counters, bumped directly.
    pub hot: Arc<HotCounters>,
    requests: Family<StatusLabel, Counter>,
    request_duration: Family<RequestLabels, Histogram>,
    inflight_bytes: Gauge,
    rejected_overload: Family<ReasonLabel, Counter>,
    handler_panics: Counter,
    storage: Arc<StorageCollector>,
}

impl std::ops::Deref for Metrics {
    type Target = HotCounters;

    /// `metrics.ingest_bytes` and the like, as before the registry.
    fn deref(&self) -> &HotCounters {
        &self.hot
    }
}

impl Default for Metrics {
    fn default() -> Self {
        // `register` ends each help text with a period; collectors write theirs whole.
        let mut registry = Registry::with_prefix("kiln");
        let requests = Family::<StatusLabel, Counter>::default();
        for status in ["2xx", "4xx", "5xx", "other"] {
            let _created = requests.get_or_create(&StatusLabel { status });
        }
        registry.register("http_requests", "HTTP requests answered, by status class", requests.clone());
        let request_duration = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from the request reaching the router to its response headers, by route template, method and status class",
            Unit::Seconds,
            request_duration.clone(),
        );
        let inflight_bytes = Gauge::default();
        registry.register_with_unit(
            "inflight_decompressed",
            "Decompressed request bytes held by requests in progress",
            Unit::Bytes,
            inflight_bytes.clone(),
        );
        let rejected_overload = Family::<ReasonLabel, Counter>::default();
        for reason in Overload::ALL {
            let _created = rejected_overload.get_or_create(&ReasonLabel { reason: reason.label() });
        }
        registry.register(
            "rejected_overload",
            "Requests or connections turned away to protect the process, by reason",
            rejected_overload.clone(),
        );
        let handler_panics = Counter::default();
        registry.register("http_handler_panics", "Handlers that panicked (answered 500)", handler_panics.clone());
        let hot = Arc::new(HotCounters::default());
        registry.register_collector(Box::new(hot.clone()));
        let storage = Arc::new(StorageCollector::default());
        registry.register_collector(Box::new(storage.clone()));
        Metrics {
            registry,
            hot,
            requests,
            request_duration,
            inflight_bytes,
            rejected_overload,
            handler_panics,
            storage,
        }
    }
}

impl Metrics {
    /// Counts a finished request by its status class (without timing it).
    pub fn record_status(&self, status: u16) {
        let status = StatusCode::from_u16(status).map_or("other", status_class);
        self.requests.get_or_create(&StatusLabel { status }).inc();
    }

    /// Records a request answered in `elapsed`: `route` is the matched route template
    /// (axum's `MatchedPath`; `None` when no route matched), never the request's own path,
    /// so the label's values are the router's few templates whatever clients send.
    pub fn observe_request(&self, route: Option<&str>, method: &Method, status: StatusCode, elapsed: Duration) {
        let class = status_class(status);
        self.requests.get_or_create(&StatusLabel { status: class }).inc();
        let labels = RequestLabels {
            route: route.unwrap_or(UNMATCHED_ROUTE).to_string(),
            method: method_label(method),
            status: class,
        };
        self.request_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Counts one request or connection turned away for `reason`.
    pub fn rejected_overload(&self, reason: Overload) {
        self.rejected_overload.get_or_create(&ReasonLabel { reason: reason.label() }).inc();
    }

    /// Brings totals kept as plain atomics where they happen (the in-flight budget, the panic
    /// catcher, the store's disk floor) into the registry at scrape time, so that the hot
    /// paths never touch it: the gauge takes the current value, counters advance to the total.
    pub fn sync_totals(&self, totals: Totals) {
        self.inflight_bytes.set(i64::try_from(totals.inflight_bytes).unwrap_or(i64::MAX));
        advance(&self.handler_panics, totals.handler_panics);
        for (reason, total) in
            [(Overload::InflightBytes, totals.refused_inflight), (Overload::DiskFloor, totals.refused_disk_floor)]
        {
            advance(&self.rejected_overload.get_or_create(&ReasonLabel { reason: reason.label() }), total);
        }
    }

    /// Reads storage figures from `source` at every scrape (replacing any earlier source).
    pub fn observe_storage(&self, source: impl Fn() -> StorageGauges + Send + Sync + 'static) {
        *self.storage.source.write().expect("storage source lock") = Some(Box::new(source));
    }

    /// The exposition text in `format`.
    pub fn render(&self, format: Exposition) -> String {
        let mut out = String::new();
        let encoded = match format {
            Exposition::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry),
            Exposition::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &self.registry),
        };
        // Writing to a String cannot fail; an error would be an encoder bug, worth a log line
        // rather than a failed scrape.
        if let Err(e) = encoded {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_names_keep_their_exposition() {
        let metrics = Metrics::default();
        metrics.ingest_uploads.fetch_add(3, Ordering::Relaxed);
        metrics.open_connections.fetch_add(2, Ordering::Relaxed);
        metrics.record_status(204);
        let text = metrics.render(Exposition::Prometheus);
        for line in [
            "# HELP kiln_http_requests_total HTTP requests answered, by status class.",
            "# TYPE kiln_http_requests_total counter",
            "kiln_http_requests_total{status=\"2xx\"} 1",
            "kiln_http_requests_total{status=\"other\"} 0",
            "# HELP kiln_ingest_uploads_total Uploads stored.",
            "kiln_ingest_uploads_total 3",
            "kiln_ingest_bytes_total 0",
            "kiln_ingest_errors_total 0",
            "kiln_ingest_duplicates_total 0",
            "# TYPE kiln_open_connections gauge",
            "kiln_open_connections 2",
            "kiln_accepted_connections_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn routes_are_templates_and_methods_are_bounded() {
        let metrics = Metrics::default();
        let custom = Method::from_bytes(b"BREW").unwrap();
        metrics.observe_request(
            Some("/api/page-data/{name}"),
            &custom,
            StatusCode::NOT_FOUND,
            Duration::from_millis(3),
        );
        metrics.observe_request(None, &Method::GET, StatusCode::OK, Duration::from_millis(70));
        let text = metrics.render(Exposition::Prometheus);
        let bucket = "kiln_http_request_duration_seconds_bucket{route=\"/api/page-data/{name}\",method=\"other\",status=\"4xx\",le=\"0.005\"} 1";
        assert!(text.contains(bucket), "{text}");
        let unmatched = "kiln_http_request_duration_seconds_count{route=\"unmatched\",method=\"GET\",status=\"2xx\"} 1";
        assert!(text.contains(unmatched), "{text}");
    }

    #[test]
    fn overload_reasons_show_before_they_happen() {
        let metrics = Metrics::default();
        metrics.rejected_overload(Overload::InflightBytes);
        let text = metrics.render(Exposition::OpenMetrics);
        assert!(text.contains("kiln_rejected_overload_total{reason=\"inflight_bytes\"} 1"), "{text}");
        assert!(text.contains("kiln_rejected_overload_total{reason=\"disk_floor\"} 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn storage_is_read_at_scrape_time_and_unknown_failures_are_left_out() {
        let metrics = Metrics::default();
        assert!(!metrics.render(Exposition::Prometheus).contains("kiln_wal_segments"));
        let segments = Arc::new(AtomicU64::new(1));
        let read = segments.clone();
        metrics.observe_storage(move || StorageGauges {
            head_bytes: 4096,
            wal_segments: read.load(Ordering::Relaxed),
            compaction_failures: Some(2),
            ..StorageGauges::default()
        });
        segments.store(5, Ordering::Relaxed);
        let text = metrics.render(Exposition::Prometheus);
        assert!(text.lines().any(|l| l == "kiln_wal_segments 5"), "{text}");
        assert!(text.lines().any(|l| l == "kiln_head_bytes 4096"), "{text}");
        assert!(text.lines().any(|l| l == "kiln_compaction_failures_total 2"), "{text}");
        assert!(!text.contains("kiln_flush_failures"), "{text}");
    }
}
