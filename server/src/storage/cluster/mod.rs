//! The shared log of cluster mode, behind one narrow interface.
//!
//! In cluster mode (`kiln serve --cluster nats://…`) several Kiln servers share one
//! replicated log instead of each keeping its own write-ahead log: an upload is acknowledged
//! once the log has stored it, and every server reads the log in order into the same head.
//! The store needs only what [`SharedLog`] offers: publish a record (deduplicated by an
//! idempotency key), read from a sequence number on, trim what is safely in blocks, leases
//! (create-if-absent and update-at-revision on a key-value bucket, and which are held) and key-value documents
//! (written compare-and-set, at the revision read). [`nats`] implements it on NATS JetStream; nothing outside that file knows
//! about NATS, so another log (Kafka-compatible) could be added beside it.
//!
//! Subjects: uploads go to `kiln.uploads.<partition>` (a fixed number of partitions, by a
//! hash of tenant and series), cut markers to `kiln.cuts`; one stream holds both, so every
//! server sees markers at the same place among the uploads.

pub mod nats;

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

/// How many upload subjects there are. Fixed: changing it moves series between partitions.
pub const PARTITIONS: u64 = 16;
/// The subject prefix of uploads.
pub const UPLOADS: &str = "kiln.uploads";
/// The subject of cut markers.
pub const CUTS: &str = "kiln.cuts";

/// The partition of the series with this id (see `block::series_id`): a hash of tenant and
/// series.
pub fn partition(series_id: u64) -> u64 {
    series_id % PARTITIONS
}

/// The subject of uploads of the series with this id (see `block::series_id`).
pub fn upload_subject(series_id: u64) -> String {
    format!("{UPLOADS}.{}", partition(series_id))
}

/// Log failures. Every one is transient from the store's point of view: the log is
/// unreachable or refused, and the caller retries (or answers 503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LogError(pub String);

/// What the log answered to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The record's sequence number in the log.
    pub seq: u64,
    /// The key was published before, within the log's duplicate window: nothing was stored.
    pub duplicate: bool,
}

/// One record read back from the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its sequence number (ascending, with gaps where the log was trimmed).
    pub seq: u64,
    /// The subject it was published on.
    pub subject: String,
    /// Its bytes.
    pub payload: bytes::Bytes,
}

/// A small document as read, with the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its bytes; `None` when there is none (never written, or removed).
    pub value: Option<bytes::Bytes>,
    /// What [`SharedLog::put`] expects to write it back: 0 when the key was never written.
    pub revision: u64,
}

/// Records in log order.
pub type Entries = BoxStream<'static, Result<Entry, LogError>>;

/// How a shared log is set up.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Where the log is (for NATS: `nats://host:port`, comma-separated).
    pub urls: String,
    /// A second publish with the same key within this window is reported as a duplicate.
    pub dedupe_window: Duration,
    /// Copies the log keeps (1 for a single NATS server; 3 in production).
    pub replicas: usize,
    /// A lease not renewed for this long is free again.
    pub lease_ttl: Duration,
}

/// The shared log: everything cluster mode needs from the distributed system beneath it.
pub trait SharedLog: Send + Sync {
    /// Appends `payload` on `subject`; returns after the log has stored it (and replicated
    /// it, as configured). With a `key`, a second publish of the same key within the
    /// dedupe window stores nothing and answers `duplicate`.
    fn publish(
        &self,
        subject: String,
        payload: Vec<u8>,
        key: Option<String>,
    ) -> BoxFuture<'_, Result<Published, LogError>>;

    /// Every record from sequence `from` on, in order, as long as the log is reachable.
    fn consume(&self, from: u64) -> BoxFuture<'_, Result<Entries, LogError>>;

    /// The sequence of the newest record (0 for an empty log that never held one).
    fn last_seq(&self) -> BoxFuture<'_, Result<u64, LogError>>;

    /// Deletes every record below sequence `below` (they are safely in blocks).
    fn trim_below(&self, below: u64) -> BoxFuture<'_, Result<(), LogError>>;

    /// The largest record the log accepts, in bytes.
    fn max_record_bytes(&self) -> usize;

    /// Takes the lease `name` for `holder` if it is free, or renews it if `holder` holds it
    /// at `revision`. Returns the lease's new revision, or `None` when someone else holds it
    /// (or `revision` is stale: the lease was lost).
    fn lease(&self, name: &str, holder: &str, revision: Option<u64>) -> BoxFuture<'_, Result<Option<u64>, LogError>>;

    /// Gives the lease up (if still held at `revision`).
    fn release(&self, name: &str, revision: u64) -> BoxFuture<'_, Result<(), LogError>>;

    /// The leases held now whose names start with `prefix`, with their holders.
    fn leases_held(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<(String, String)>, LogError>>;

    /// A small document by key, and its revision (to write it back only if unchanged).
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Document, LogError>>;

    /// Stores a small document under a key (`None` removes it) if the key is still at
    /// revision `expected` (0: never written). Returns `false`, storing nothing, when
    /// someone else wrote the key since: the caller reads it again and retries.
    fn put(&self, key: &str, value: Option<Vec<u8>>, expected: u64) -> BoxFuture<'_, Result<bool, LogError>>;

    /// Why the log cannot be used right now, if it cannot.
    fn unavailable(&self) -> Option<String>;
}
