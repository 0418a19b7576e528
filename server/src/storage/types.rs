//! The store's data types: series, uploads and what the store answers with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kiln_model::FlatTree;
use kiln_model::tenant::DEFAULT_TENANT;
use serde::{Deserialize, Serialize};

use super::block::{Chunk, CorruptBlock, SeriesEntry};
use super::wal::WalError;

fn default_tenant() -> String {
    DEFAULT_TENANT.to_string()
}

fn is_default_tenant(tenant: &str) -> bool {
    tenant == DEFAULT_TENANT
}

/// A series: one tenant's profiles of one application, of one type, with one label set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Whose data it is. Tenants never see each other's series. Left out of the stored form
    /// for the default tenant, so logs and blocks written before tenancy read as its data.
    #[serde(default = "default_tenant", skip_serializing_if = "is_default_tenant")]
    pub tenant: String,
    /// Application name.
    pub app: String,
    /// Profile type (`cpu`, `alloc_space`, …).
    pub profile_type: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    /// A series of the default tenant (ingest moves it to the request's tenant).
    pub fn new(app: impl Into<String>, profile_type: impl Into<String>, labels: BTreeMap<String, String>) -> Self {
        SeriesKey { tenant: default_tenant(), app: app.into(), profile_type: profile_type.into(), labels }
    }
}

/// How values of a series combine across uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Add uploads (CPU, allocations).
    #[default]
    Sum,
    /// Average uploads (in-use memory, goroutines).
    Average,
}

/// Everything about an upload except its samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileMeta {
    /// The series it belongs to.
    pub series: SeriesKey,
    /// Unix seconds of the start of the profiled window.
    pub from: i64,
    /// Unix seconds of its end.
    pub until: i64,
    /// Sample unit (`samples`, `nanoseconds`, `bytes`, `objects`).
    pub units: String,
    /// Samples per second for sampled profiles.
    pub sample_rate: u32,
    /// The agent that sent it.
    pub spy_name: String,
    /// How it combines with other uploads.
    pub aggregation: Aggregation,
}

/// A parsed upload: what ingest hands to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Series, time range and units.
    pub meta: ProfileMeta,
    /// The samples, as a call tree.
    pub tree: FlatTree,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The log could not be written or synced.
    #[error("write-ahead log: {0}")]
    Wal(#[from] WalError),
    /// The object store (file system or bucket) refused.
    #[error("block storage: {0}")]
    Objects(#[from] object_store::Error),
    /// Block bytes failed their checks.
    #[error("{0}")]
    Corrupt(#[from] CorruptBlock),
    /// Cluster mode: the shared log is unreachable or refused: nothing was stored.
    #[error("shared log: {0}")]
    Log(super::cluster::LogError),
    /// Cluster mode: one upload is larger than a record of the shared log may be.
    #[error("{0}")]
    TooLarge(String),
    /// The store could not be set up as configured.
    #[error("{0}")]
    Config(String),
    /// The data directory's free space is below `--min-free-disk`: uploads are refused
    /// until it is freed (published blocks free their log segments).
    #[error(
        "the server is low on disk space ({} free, its floor is {}); uploads are refused until space is freed, retry later",
        kiln_model::units::format_bytes(*free),
        kiln_model::units::format_bytes(*floor)
    )]
    LowDisk {
        /// Free bytes.
        free: u64,
        /// The floor, in bytes.
        floor: u64,
    },
}

/// Uploads sent under one idempotency key: all of them are stored, or (for a key already
/// seen) none.
#[derive(Debug, Clone)]
pub struct KeyedUploads {
    /// The client's key, qualified by tenant (`tenant/key`); `None` always stores.
    pub key: Option<String>,
    /// What the request carried under it.
    pub uploads: Vec<Upload>,
}

/// What [`Store::append_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Groups stored now.
    pub stored: usize,
    /// Groups skipped because their key was already stored within the window.
    pub duplicates: usize,
}

/// A snapshot of the store's state, for `/metrics` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorageStats {
    /// Rough bytes of uploads held in memory (the active head and in-memory frozen heads).
    pub head_bytes: u64,
    /// Heads cut and waiting to be published as blocks.
    pub frozen_heads: u64,
    /// Of those, the ones held only in the write-ahead log (not in memory).
    pub frozen_heads_on_disk: u64,
    /// Write-ahead log segments on disk.
    pub wal_segments: u64,
    /// Their total size.
    pub wal_bytes: u64,
    /// Visible blocks.
    pub blocks: u64,
    /// Attempts to publish frozen heads that failed (each is retried).
    pub flush_failures: u64,
    /// Compaction (or its cleanup) runs that failed.
    pub compaction_failures: u64,
    /// Appends refused because free disk space was below the floor.
    pub low_disk_refusals: u64,
}

/// What [`Store::select_chunks`] found.
#[derive(Default)]
pub struct Selected {
    /// Head series with uploads in the range, each as a chunk of all its head uploads (to
    /// be filtered by time, like a block's).
    pub head: Vec<HeadChunk>,
    /// Block chunks of the selected series that overlap the range, as stored.
    pub chunks: Vec<RawChunk>,
}

/// One series' uploads in the head, over one stack tree (not in canonical order).
pub struct HeadChunk {
    /// The series.
    pub key: SeriesKey,
    /// Its uploads, shared with the head.
    pub chunk: Arc<Chunk>,
}

/// One series' chunk of one block, as fetched.
pub struct RawChunk {
    /// The block's id, for logs.
    pub block: String,
    /// Its writer, for logs.
    pub writer: String,
    /// Where the chunk is and what it holds.
    pub entry: SeriesEntry,
    /// The compressed bytes.
    pub bytes: bytes::Bytes,
}

impl RawChunk {
    /// Logs that the chunk is damaged and left out of the answer.
    pub fn warn(&self, error: &CorruptBlock) {
        tracing::warn!(block = %self.block, writer = %self.writer, series = ?self.entry.key, error = %error, "skipping a damaged chunk");
    }
}

/// Per-application facts for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// Application name.
    pub name: String,
    /// Profile types seen.
    pub profile_types: BTreeSet<String>,
    /// Label names seen.
    pub label_names: BTreeSet<String>,
    /// Newest `until` of any upload.
    pub last_seen: i64,
    /// Number of uploads.
    pub uploads: u64,
}
