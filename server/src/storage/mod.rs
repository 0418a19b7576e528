//! Storage: where parsed uploads go and merged trees come from.
//!
//! The narrow interface is [`Store::append`] (parsed profiles in, durable before it returns)
//! and [`Store::select`] (the stored profiles of the series a query picks, in a time range).
//! One engine, two places for blocks: the local file system under the data directory, or an
//! S3-compatible bucket, both through `object_store`.
//!
//! - [`wal`]: every upload is framed, checksummed and appended to a log segment, and the file
//!   is fsynced before the append is acknowledged. Concurrent uploads share one fsync (group
//!   commit: one writer thread drains every queued upload, writes them, syncs once). The log
//!   always stays on local disk: an acknowledgement needs a local fsync, not a network
//!   round trip.
//! - the head: every acknowledged upload not yet in a block, in memory, grouped by series.
//!   At start, the log segments no block covers come back as frozen heads (below), so a
//!   restart (or a `kill -9`) loses nothing that was acknowledged.
//! - [`block`]: every `--block-duration`, or when the head outgrows `--head-max-bytes`, the
//!   log rotates to a new segment and the head is frozen; then (in another task, so cutting
//!   never waits for the object store) it is written as one data object (series table,
//!   per-series compressed chunks, checksummed footer) and then one small meta JSON object.
//!   The meta is published last: its presence is the block's existence (object PUTs are
//!   atomic). Only then are the frozen head dropped and its log segments deleted. Each meta
//!   records the newest log segment it covers, so a crash between publishing and deleting
//!   replays nothing twice.
//! - outages: while blocks cannot be published, frozen heads pile up. Only
//!   [`FROZEN_IN_MEMORY`] of them stay in memory; the others keep just a per-series summary
//!   and are read back from their log segments to be published (and by queries meanwhile),
//!   so memory stays flat and the disk is the buffer. Uploads are refused (503) only when
//!   free disk falls below `--min-free-disk` ([`disk`]).
//! - reads: queries merge the head with the blocks whose time range overlaps theirs, fetching
//!   only the selected series' chunks with ranged GETs. Every block's meta and index (the
//!   series table) are listed and cached, and the listing is refreshed every
//!   `--block-refresh`, so several Kiln servers on one bucket see each other's blocks
//!   (though not each other's heads, until they are cut).
//!   Series are picked by testing the cached series tables against the query's matchers,
//!   not through a (label, value) → series postings index. Why: the tables are in memory
//!   anyway; a query's cost is dominated by reading and merging chunks (milliseconds per
//!   series), while testing one key is a few string compares (nanoseconds), and regular
//!   expression matchers (`=~`, `!~`) would scan every value of the label even with postings.
//!   A postings index pays off only with hundreds of thousands of series per block, which
//!   per-series chunks would make costly first.
//! - compaction: level-0 blocks of one writer starting in one finished `--compaction-window`
//!   (an hour) are merged into one. The rule that keeps several writers safe on one bucket:
//!   **a writer compacts and deletes only its own blocks** (they live under
//!   `blocks/<writer id>/`; the id is made once per data directory and kept in `writer-id`),
//!   so no two writers race on one object. A compacted meta lists the blocks it replaces and
//!   readers hide those at once, so nobody counts data twice while the old objects are being
//!   deleted, or if the writer dies before deleting them (it finishes at its next compaction).
//! - retention: each writer deletes its own blocks whose newest data is older than
//!   `--retention`, and drops such uploads from its head. Blocks of a writer that is gone
//!   for good are left to the operator.
//!
//! - tenants: the tenant is part of every [`SeriesKey`] (and of its series id), so tenants
//!   share the log, heads and blocks but never a series; every read filters by tenant.
//! - idempotency: [`Store::append_once`] takes uploads grouped under optional keys. A key is
//!   written in the same log record as its uploads, so it becomes known exactly when they
//!   become durable; it moves with its head into the block's meta, and with the block into a
//!   compacted one while inside `--dedupe-window`. A restart learns keys from the log and
//!   the metas, and a server sharing the bucket learns them from the metas it lists. (Why not
//!   a separate key file: it could not be made atomic with the upload's record.)
//!
//! Damage is skipped, never fatal: a torn log tail fails its checksum and is cut off; a
//! block whose meta, footer, index or chunk fails its checks is logged and left out.

mod backend;
pub mod block;
mod counts;
pub mod disk;
mod wal;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kiln_model::FlatTree;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use backend::{Backend, S3Options};
use block::{BlockIndex, BlockMeta, CorruptBlock, SeriesEntry};
pub use counts::ReadPlan;
pub use disk::DiskFloor;
pub use wal::WalError;

/// The tenant of requests without an `X-Scope-OrgID` header (and of data stored before
/// tenancy existed).
pub use kiln_model::tenant::DEFAULT_TENANT;

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

/// Unix seconds, as the store sees them; tests pass a clock they move by hand.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How the store is set up.
#[derive(Clone)]
pub struct StoreConfig {
    /// Write-ahead log, writer id and (for the local backend) blocks.
    pub data_dir: PathBuf,
    /// Where blocks go.
    pub backend: Backend,
    /// S3 connection settings (for [`Backend::S3`]).
    pub s3: S3Options,
    /// The head is cut into a block this long after its first upload.
    pub block_duration: Duration,
    /// The head is also cut as soon as it holds this many bytes.
    pub head_max_bytes: u64,
    /// Blocks whose newest data is older are deleted; zero keeps everything.
    pub retention: Duration,
    /// How often the block listing is refreshed (and compaction and retention run).
    pub refresh_interval: Duration,
    /// Level-0 blocks starting in one window of this length are compacted together.
    pub compaction_window: Duration,
    /// The current time.
    pub clock: Clock,
    /// Run the background flush / refresh / compaction / retention task (tests call the
    /// steps themselves).
    pub background: bool,
    /// A retried upload whose idempotency key was seen this recently is not stored again.
    pub dedupe_window: Duration,
    /// Uploads are refused while the data directory's file system has less free space.
    pub min_free_disk: DiskFloor,
}

impl StoreConfig {
    /// The defaults, with blocks in `data_dir`.
    pub fn new(data_dir: &Path) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.to_path_buf(),
            backend: Backend::Local,
            s3: S3Options::default(),
            block_duration: Duration::from_secs(600),
            head_max_bytes: 64 << 20,
            retention: Duration::from_secs(30 * 86_400),
            refresh_interval: Duration::from_secs(5),
            compaction_window: Duration::from_secs(3600),
            clock: Arc::new(crate::timespec::now_unix),
            background: true,
            dedupe_window: Duration::from_secs(3600),
            min_free_disk: DiskFloor::default(),
        }
    }
}

#[derive(Default)]
struct Head {
    series: HashMap<SeriesKey, Vec<Arc<Upload>>>,
    /// Idempotency keys of the uploads in this head; they go into its block's meta.
    keys: Vec<(String, i64)>,
    /// Rough memory held, for `--head-max-bytes`.
    bytes: u64,
    /// Clock time of the first upload since the last cut.
    first_at: Option<i64>,
}

impl Head {
    fn insert(&mut self, upload: Upload, now: i64) {
        let tree = &upload.tree;
        self.bytes += 128 + tree.len() as u64 * 24 + tree.names.iter().map(|n| n.len() as u64 + 24).sum::<u64>();
        self.first_at.get_or_insert(now);
        self.series.entry(upload.meta.series.clone()).or_default().push(Arc::new(upload));
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn uploads(&self) -> impl Iterator<Item = &Arc<Upload>> {
        self.series.values().flatten()
    }

    /// What listings and query planning need once the uploads themselves are gone.
    fn summary(&self) -> HashMap<SeriesKey, SeriesSummary> {
        self.series
            .iter()
            .map(|(key, uploads)| {
                let summary = SeriesSummary {
                    uploads: uploads.len() as u64,
                    min_time: uploads.iter().map(|u| u.meta.from).min().unwrap_or(i64::MAX),
                    max_time: uploads.iter().map(|u| u.meta.until).max().unwrap_or(i64::MIN),
                };
                (key.clone(), summary)
            })
            .collect()
    }
}

/// One series of a frozen head that is no longer in memory.
#[derive(Debug, Clone, Copy)]
struct SeriesSummary {
    uploads: u64,
    /// Earliest `from` and latest `until` of its uploads.
    min_time: i64,
    max_time: i64,
}

/// How many frozen heads stay in memory. More pile up only while blocks cannot be
/// published (the object store is unreachable); those beyond this are dropped from memory
/// and read back from their log segments when their turn to be published comes (and by
/// queries meanwhile), so memory stays flat however long the outage lasts: the disk is the
/// buffer. Two: the one being published and the next.
const FROZEN_IN_MEMORY: usize = 2;

/// A head cut for a block and not yet published. Its uploads are in log segments
/// `first_segment..=sealed`, which are deleted only once its block is published.
struct Frozen {
    first_segment: u64,
    sealed: u64,
    data: FrozenData,
}

enum FrozenData {
    /// The uploads, in memory.
    InMemory(Head),
    /// Only a summary per series; the uploads are read back from the log segments.
    OnDisk(HashMap<SeriesKey, SeriesSummary>),
}

impl Frozen {
    fn in_memory(&self) -> Option<&Head> {
        match &self.data {
            FrozenData::InMemory(head) => Some(head),
            FrozenData::OnDisk(_) => None,
        }
    }
}

/// A published block as a reader knows it.
struct LoadedBlock {
    meta: BlockMeta,
    data: ObjectPath,
    index: BlockIndex,
    /// When this process learned of it: a listing that started earlier may not show it yet,
    /// and must not make it vanish.
    known_since: Instant,
}

#[derive(Default)]
struct State {
    active: Head,
    /// The first log segment holding uploads of the active head.
    active_first_segment: u64,
    /// Oldest first; written to blocks in this order.
    frozen: VecDeque<Arc<Frozen>>,
    /// By meta object path.
    blocks: BTreeMap<String, Arc<LoadedBlock>>,
    /// Meta paths found damaged, so that they are logged once and not refetched.
    broken: HashSet<String>,
    /// Idempotency keys seen within the window (from the log, the head and block metas),
    /// with the time each was first seen.
    seen: HashMap<String, i64>,
    /// Keys whose upload is being written right now. A concurrent retry waits for the
    /// outcome (the sender is dropped when the writer finishes) instead of racing it.
    claims: HashMap<String, tokio::sync::watch::Receiver<()>>,
}

impl State {
    /// Blocks that answer queries: everything but what a compacted block replaces.
    fn visible(&self) -> impl Iterator<Item = &Arc<LoadedBlock>> {
        let replaced: HashSet<(&str, &str)> = self
            .blocks
            .values()
            .flat_map(|b| b.meta.compacted_from.iter().map(|id| (b.meta.writer.as_str(), id.as_str())))
            .collect();
        self.blocks.values().filter(move |b| !replaced.contains(&(b.meta.writer.as_str(), b.meta.id.as_str())))
    }

    /// The heads whose uploads are in memory.
    fn heads(&self) -> impl Iterator<Item = &Head> {
        std::iter::once(&self.active).chain(self.frozen.iter().filter_map(|f| f.in_memory()))
    }

    /// The frozen heads whose uploads are only on disk, with their series.
    fn on_disk(&self) -> impl Iterator<Item = (&Frozen, &HashMap<SeriesKey, SeriesSummary>)> {
        self.frozen.iter().filter_map(|f| match &f.data {
            FrozenData::OnDisk(series) => Some((&**f, series)),
            FrozenData::InMemory(_) => None,
        })
    }

    /// Freezes `head` (its uploads in segments `first_segment..=sealed`): in memory while
    /// fewer than [`FROZEN_IN_MEMORY`] frozen heads are, else as a summary. Returns the
    /// uploads to drop (outside the lock).
    fn freeze(&mut self, head: Head, first_segment: u64, sealed: u64) -> Option<Head> {
        let in_memory = self.frozen.iter().filter(|f| f.in_memory().is_some()).count();
        let (data, dropped) = if in_memory < FROZEN_IN_MEMORY {
            (FrozenData::InMemory(head), None)
        } else {
            tracing::info!(
                first_segment,
                sealed,
                bytes = head.bytes,
                waiting = self.frozen.len() + 1,
                "blocks are not being published; keeping this head only in the write-ahead log until they are"
            );
            (FrozenData::OnDisk(head.summary()), Some(head))
        };
        self.frozen.push_back(Arc::new(Frozen { first_segment, sealed, data }));
        dropped
    }

    /// Makes a durable record visible: its uploads in the head, its keys known.
    fn apply(&mut self, record: wal::Record, now: i64) {
        for upload in record.uploads {
            self.active.insert(upload, now);
        }
        for (key, seen_at) in record.keys {
            self.remember(key.clone(), seen_at);
            self.active.keys.push((key, seen_at));
        }
    }

    fn remember(&mut self, key: String, seen_at: i64) {
        let first = self.seen.entry(key).or_insert(seen_at);
        *first = (*first).min(seen_at);
    }
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

/// The keys one append is writing; dropping it (after the write, or when the request is
/// abandoned) releases them and wakes whoever waits on them.
struct Claims {
    state: Arc<RwLock<State>>,
    keys: Vec<String>,
    senders: Vec<tokio::sync::watch::Sender<()>>,
}

impl Drop for Claims {
    fn drop(&mut self) {
        if !self.keys.is_empty() {
            let mut state = self.state.write().expect("state lock");
            for key in &self.keys {
                state.claims.remove(key);
            }
        }
        // Waiters wake when the senders go, after the claims are gone and the keys (if the
        // write succeeded) are in `seen`.
        self.senders.clear();
    }
}

struct Inner {
    config: StoreConfig,
    writer: String,
    objects: Arc<dyn ObjectStore>,
    state: Arc<RwLock<State>>,
    wal: wal::WalWriter,
    wal_dir: PathBuf,
    /// One flush or compaction at a time: frozen heads are written in order.
    maintenance: tokio::sync::Mutex<()>,
    head_full: Arc<Notify>,
    /// A head was frozen: publish it.
    frozen_ready: Notify,
    counters: Counters,
}

/// Failures and refusals since start, for `/metrics`.
#[derive(Default)]
struct Counters {
    flush_failures: AtomicU64,
    compaction_failures: AtomicU64,
    low_disk_refusals: AtomicU64,
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

/// The store: write-ahead log, in-memory head and blocks.
pub struct Store {
    inner: Arc<Inner>,
    background: Vec<tokio::task::AbortHandle>,
}

impl Drop for Store {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// An upload window `[lo, hi]` overlaps the range `[from, until)` (an upload ending exactly
/// at `from` counts, as it always has).
fn overlaps(from: i64, until: i64, lo: i64, hi: i64) -> bool {
    hi >= from && lo < until
}

/// What [`Store::select_chunks`] found.
#[derive(Default)]
pub struct Selected {
    /// Head uploads in the range.
    pub head: Vec<Arc<Upload>>,
    /// Block chunks of the selected series that overlap the range, as stored.
    pub chunks: Vec<RawChunk>,
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

const BLOCKS: &str = "blocks";
const META_SUFFIX: &str = ".meta.json";

/// 64 random bits from the standard library's per-process hash seed.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

/// This data directory's writer id, made on first use and kept in `writer-id`.
fn writer_id(dir: &Path) -> Result<String, StorageError> {
    let path = dir.join("writer-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(WalError::Io(e).into()),
    }
    let id = format!("{:016x}", random_u64());
    let temp = dir.join("writer-id.tmp");
    std::fs::write(&temp, &id).and_then(|()| std::fs::rename(&temp, &path)).map_err(WalError::Io)?;
    Ok(id)
}

/// A block id: creation time in milliseconds (so ids sort by age) and 32 random bits.
fn new_block_id() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{millis:013}-{:08x}", random_u64() as u32)
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl Store {
    /// Opens (or creates) a store in `dir` with the default settings.
    pub async fn open(dir: &Path) -> Result<Store, StorageError> {
        Store::open_with(StoreConfig::new(dir)).await
    }

    /// Opens (or creates) the store: loads the block listing, replays the log segments no
    /// block covers into the head, and (with `config.background`) starts the maintenance task.
    pub async fn open_with(config: StoreConfig) -> Result<Store, StorageError> {
        let dir = config.data_dir.clone();
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(WalError::Io)?;
        let writer = writer_id(&dir)?;
        let objects = config.backend.open(&dir, &config.s3).map_err(StorageError::Config)?;
        let state = Arc::new(RwLock::new(State::default()));
        refresh_blocks(&objects, &state).await?;
        let covered = {
            let state = state.read().expect("state lock");
            state.blocks.values().filter(|b| b.meta.writer == writer).map(|b| b.meta.wal_segment).max()
        };
        // The single-file log of earlier versions becomes segment 0.
        let legacy = dir.join("wal.log");
        if legacy.exists() {
            std::fs::rename(&legacy, wal::segment_path(&wal_dir, 0)).map_err(WalError::Io)?;
        }
        let (pending, last) = wal::pending_segments(&wal_dir, covered)?;
        let clock = config.clock.clone();
        replay_frozen(&wal_dir, &pending, config.head_max_bytes, &mut state.write().expect("state lock"), clock())?;
        state.write().expect("state lock").active_first_segment = last + 1;
        let head_full = Arc::new(Notify::new());
        let (sink, notify, max_bytes, sink_clock) =
            (state.clone(), head_full.clone(), config.head_max_bytes, clock.clone());
        let rotate_state = state.clone();
        let wal = wal::WalWriter::start(
            &wal_dir,
            last + 1,
            move |record| {
                let now = sink_clock();
                let mut state = sink.write().expect("state lock");
                state.apply(record, now);
                if state.active.bytes >= max_bytes {
                    notify.notify_one();
                }
            },
            move |sealed| {
                let mut state = rotate_state.write().expect("state lock");
                let head = std::mem::take(&mut state.active);
                let first_segment = std::mem::replace(&mut state.active_first_segment, sealed + 1);
                let dropped = state.freeze(head, first_segment, sealed);
                drop(state);
                drop(dropped);
            },
        )?;
        tracing::info!(writer = %writer, backend = ?config.backend, "storage open");
        let inner = Arc::new(Inner {
            config,
            writer,
            objects,
            state,
            wal,
            wal_dir,
            maintenance: tokio::sync::Mutex::new(()),
            head_full,
            frozen_ready: Notify::new(),
            counters: Counters::default(),
        });
        let background = if inner.config.background {
            vec![
                tokio::spawn(cut_when_due(inner.clone())).abort_handle(),
                tokio::spawn(maintain(inner.clone())).abort_handle(),
            ]
        } else {
            Vec::new()
        };
        Ok(Store { inner, background })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// This store's writer id (the folder of its blocks).
    pub fn writer(&self) -> &str {
        &self.inner.writer
    }

    /// Stores uploads durably: when this returns `Ok`, they are fsynced and queryable.
    /// All of them are stored or none (they are one log record).
    pub async fn append(&self, uploads: Vec<Upload>) -> Result<(), StorageError> {
        self.append_once(vec![KeyedUploads { key: None, uploads }]).await.map(drop)
    }

    /// Stores each group durably unless its key was already stored within the dedupe window
    /// (a retry of an acknowledged upload): then it is skipped and counted as a duplicate.
    /// Every stored group is in one log record, so they are all stored or none. A retry that
    /// arrives while the first attempt is still being written waits for its outcome: if the
    /// first attempt fails (or is abandoned before writing), the retry is stored.
    pub async fn append_once(&self, groups: Vec<KeyedUploads>) -> Result<Appended, StorageError> {
        let window = self.inner.config.dedupe_window.as_secs() as i64;
        let mut groups: Vec<KeyedUploads> = groups.into_iter().filter(|g| !g.uploads.is_empty()).collect();
        let mut appended = Appended::default();
        loop {
            let now = (self.inner.config.clock)();
            let mut claims = Claims { state: self.inner.state.clone(), keys: Vec::new(), senders: Vec::new() };
            let mut busy = Vec::new();
            {
                let mut state = self.inner.state.write().expect("state lock");
                let mut claimed_now = HashSet::new();
                groups.retain(|group| {
                    let Some(key) = &group.key else { return true };
                    if state.seen.get(key).is_some_and(|&seen_at| seen_at + window > now)
                        || !claimed_now.insert(key.clone())
                    {
                        // Already stored, or repeated within this very request.
                        appended.duplicates += 1;
                        return false;
                    }
                    if let Some(writing) = state.claims.get(key) {
                        busy.push(writing.clone());
                    } else {
                        let (sender, receiver) = tokio::sync::watch::channel(());
                        state.claims.insert(key.clone(), receiver);
                        claims.keys.push(key.clone());
                        claims.senders.push(sender);
                    }
                    true
                });
            }
            if !busy.is_empty() {
                // Release ours first: two requests each holding a key the other waits for
                // must not wait forever.
                drop(claims);
                for mut writing in busy {
                    // Wakes when that writer is done, whatever its outcome.
                    let _ = writing.changed().await;
                }
                continue;
            }
            if groups.is_empty() {
                return Ok(appended);
            }
            // Checked only now: a retry of an upload already stored still answers.
            self.check_free_disk()?;
            let keys = claims.keys.iter().map(|k| (k.clone(), now)).collect();
            let stored = groups.len();
            let uploads = groups.into_iter().flat_map(|g| g.uploads).collect();
            // The write and the release of the claims run on their own task: if this request
            // is abandoned mid-write, the claims still last until the record is durable (or
            // failed), so a retry cannot slip in between.
            let inner = self.inner.clone();
            let write = tokio::spawn(async move {
                let result = inner.wal.append(wal::Record { keys, uploads }).await;
                drop(claims);
                result
            });
            write.await.map_err(|_| WalError::Stopped)??;
            appended.stored += stored;
            return Ok(appended);
        }
    }

    /// Refuses when the log's file system has less free space than `--min-free-disk`.
    fn check_free_disk(&self) -> Result<(), StorageError> {
        let floor = self.inner.config.min_free_disk;
        if floor == DiskFloor::Off {
            return Ok(());
        }
        let (free, total) = match disk::space(&self.inner.wal_dir) {
            Ok(space) => space,
            Err(e) => {
                // Not knowing is no reason to refuse: the log write itself will tell.
                tracing::warn!(error = %e, "cannot read the data directory's free space");
                return Ok(());
            }
        };
        let floor = floor.bytes(total);
        if free < floor {
            let refusals = self.inner.counters.low_disk_refusals.fetch_add(1, Ordering::Relaxed);
            if refusals.is_power_of_two() || refusals == 0 {
                tracing::warn!(
                    free,
                    floor,
                    refusals = refusals + 1,
                    "free disk space is below --min-free-disk; refusing uploads"
                );
            }
            return Err(StorageError::LowDisk { free, floor });
        }
        Ok(())
    }

    /// Every stored upload of the series that `keep` accepts whose window overlaps
    /// `[from, until)` (an upload ending exactly at `from` counts, as it always has).
    pub async fn select(
        &self,
        from: i64,
        until: i64,
        keep: impl FnMut(&SeriesKey) -> bool,
    ) -> Result<Vec<Arc<Upload>>, StorageError> {
        let selected = self.select_chunks(from, until, keep).await?;
        let mut found = selected.head;
        for chunk in selected.chunks {
            match block::decode_chunk(&chunk.entry, &chunk.bytes) {
                Ok(uploads) => found.extend(
                    uploads.into_iter().filter(|u| overlaps(from, until, u.meta.from, u.meta.until)).map(Arc::new),
                ),
                Err(e) => chunk.warn(&e),
            }
        }
        Ok(found)
    }

    /// What [`Store::select`] reads, before block chunks are decoded: the head's uploads that
    /// overlap `[from, until)` and the raw chunks of the blocks that may hold more (their
    /// uploads still to be filtered by time). Queries decode and merge chunks themselves
    /// without building a tree per upload.
    pub async fn select_chunks(
        &self,
        from: i64,
        until: i64,
        mut keep: impl FnMut(&SeriesKey) -> bool,
    ) -> Result<Selected, StorageError> {
        let overlaps = move |lo: i64, hi: i64| overlaps(from, until, lo, hi);
        let (mut selected, reads) = loop {
            let mut selected = Selected::default();
            let mut reads: Vec<(Arc<LoadedBlock>, Vec<SeriesEntry>)> = Vec::new();
            // Frozen heads held only on disk: their segments and the series wanted from them.
            let mut on_disk: Vec<(u64, u64, HashSet<SeriesKey>)> = Vec::new();
            {
                let state = self.inner.state.read().expect("state lock");
                for head in state.heads() {
                    for (key, uploads) in &head.series {
                        if keep(key) {
                            selected
                                .head
                                .extend(uploads.iter().filter(|u| overlaps(u.meta.from, u.meta.until)).cloned());
                        }
                    }
                }
                for (frozen, series) in state.on_disk() {
                    let wanted: HashSet<SeriesKey> = series
                        .iter()
                        .filter(|(key, s)| overlaps(s.min_time, s.max_time) && keep(key))
                        .map(|(key, _)| key.clone())
                        .collect();
                    if !wanted.is_empty() {
                        on_disk.push((frozen.first_segment, frozen.sealed, wanted));
                    }
                }
                for block in state.visible() {
                    if !overlaps(block.meta.min_time, block.meta.max_time) {
                        continue;
                    }
                    let entries: Vec<SeriesEntry> = block
                        .index
                        .series
                        .iter()
                        .filter(|e| overlaps(e.min_time, e.max_time) && keep(&e.key))
                        .cloned()
                        .collect();
                    if !entries.is_empty() {
                        reads.push((block.clone(), entries));
                    }
                }
            }
            if on_disk.is_empty() {
                break (selected, reads);
            }
            let sealed: Vec<u64> = on_disk.iter().map(|(_, sealed, _)| *sealed).collect();
            let dir = self.inner.wal_dir.clone();
            let read = tokio::task::spawn_blocking(move || -> Result<Vec<Upload>, WalError> {
                let mut found = Vec::new();
                for (first, sealed, wanted) in on_disk {
                    let record = wal::read_sealed(&dir, first, sealed)?;
                    found.extend(
                        record
                            .uploads
                            .into_iter()
                            .filter(|u| wanted.contains(&u.meta.series) && overlaps(u.meta.from, u.meta.until)),
                    );
                }
                Ok(found)
            });
            let found = read.await.map_err(|_| WalError::Stopped)??;
            let unpublished = {
                let state = self.inner.state.read().expect("state lock");
                sealed.iter().all(|s| state.frozen.iter().any(|f| f.sealed == *s))
            };
            if unpublished {
                selected.head.extend(found.into_iter().map(Arc::new));
                break (selected, reads);
            }
            // A head was published (and its segments deleted) while being read: its block
            // is listed now, so looking again finds every upload exactly once.
        };
        let fetches = reads.into_iter().map(|(block, entries)| async move {
            let ranges: Vec<_> = entries.iter().map(|e| e.offset..e.offset + e.len).collect();
            let chunks = self.inner.objects.get_ranges(&block.data, &ranges).await;
            (block, entries, chunks)
        });
        // A few blocks at a time: enough to hide latency, not a burst of requests per query.
        let mut fetched = futures_util::stream::iter(fetches).buffer_unordered(8);
        while let Some((block, entries, chunks)) = fetched.next().await {
            let chunks = match chunks {
                Ok(chunks) => chunks,
                Err(e) if is_not_found(&e) => {
                    // Deleted by compaction or retention since the listing; its data is in
                    // the compacted block, which the next refresh brings in.
                    tracing::debug!(block = %block.meta.id, "block vanished during a query");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for (entry, bytes) in entries.into_iter().zip(chunks) {
                selected.chunks.push(RawChunk {
                    block: block.meta.id.clone(),
                    writer: block.meta.writer.clone(),
                    entry,
                    bytes,
                });
            }
        }
        Ok(selected)
    }

    /// Every series key, in the head or in a block.
    pub fn series(&self) -> Vec<SeriesKey> {
        let state = self.inner.state.read().expect("state lock");
        let mut keys: HashSet<&SeriesKey> = HashSet::new();
        for head in state.heads() {
            keys.extend(head.series.keys());
        }
        for (_, series) in state.on_disk() {
            keys.extend(series.keys());
        }
        for block in state.visible() {
            keys.extend(block.index.series.iter().map(|e| &e.key));
        }
        keys.into_iter().cloned().collect()
    }

    /// `tenant`'s applications with their types, labels and last upload.
    pub fn apps(&self, tenant: &str) -> Vec<AppInfo> {
        let state = self.inner.state.read().expect("state lock");
        let mut apps: BTreeMap<String, AppInfo> = BTreeMap::new();
        let mut add = |key: &SeriesKey, uploads: u64, last_seen: i64| {
            if key.tenant != tenant {
                return;
            }
            let info = apps.entry(key.app.clone()).or_insert_with(|| AppInfo {
                name: key.app.clone(),
                profile_types: BTreeSet::new(),
                label_names: BTreeSet::new(),
                last_seen: i64::MIN,
                uploads: 0,
            });
            info.profile_types.insert(key.profile_type.clone());
            info.label_names.extend(key.labels.keys().cloned());
            info.uploads += uploads;
            info.last_seen = info.last_seen.max(last_seen);
        };
        for head in state.heads() {
            for (key, uploads) in &head.series {
                add(key, uploads.len() as u64, uploads.iter().map(|u| u.meta.until).max().unwrap_or(i64::MIN));
            }
        }
        for (_, series) in state.on_disk() {
            for (key, summary) in series {
                add(key, summary.uploads, summary.max_time);
            }
        }
        for block in state.visible() {
            for e in &block.index.series {
                add(&e.key, e.uploads, e.max_time);
            }
        }
        let mut list: Vec<AppInfo> = apps.into_values().collect();
        list.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.name.cmp(&b.name)));
        list
    }

    /// Number of visible blocks (for tests and logs).
    pub fn block_count(&self) -> usize {
        self.inner.state.read().expect("state lock").visible().count()
    }

    /// Memory, log and block figures and failure counts, for `/metrics`.
    pub fn stats(&self) -> StorageStats {
        let (head_bytes, frozen_heads, frozen_heads_on_disk, blocks) = {
            let state = self.inner.state.read().expect("state lock");
            (
                state.heads().map(|h| h.bytes).sum(),
                state.frozen.len() as u64,
                state.on_disk().count() as u64,
                state.visible().count() as u64,
            )
        };
        let (wal_segments, wal_bytes) = wal::usage(&self.inner.wal_dir);
        let counters = &self.inner.counters;
        StorageStats {
            head_bytes,
            frozen_heads,
            frozen_heads_on_disk,
            wal_segments,
            wal_bytes,
            blocks,
            flush_failures: counters.flush_failures.load(Ordering::Relaxed),
            compaction_failures: counters.compaction_failures.load(Ordering::Relaxed),
            low_disk_refusals: counters.low_disk_refusals.load(Ordering::Relaxed),
        }
    }

    /// Cuts the head into a block now (if it holds anything) and writes every frozen head.
    pub async fn flush(&self) -> Result<usize, StorageError> {
        flush(&self.inner).await
    }

    /// Re-lists the blocks, picking up other writers' new ones and forgetting deleted ones.
    pub async fn refresh(&self) -> Result<(), StorageError> {
        refresh_blocks(&self.inner.objects, &self.inner.state).await
    }

    /// Merges this writer's level-0 blocks per finished compaction window; returns how many
    /// blocks were written.
    pub async fn compact(&self, now: i64) -> Result<usize, StorageError> {
        compact(&self.inner, now).await
    }

    /// Deletes this writer's blocks and head uploads older than the retention; returns how
    /// many blocks were deleted.
    pub async fn apply_retention(&self, now: i64) -> Result<usize, StorageError> {
        apply_retention(&self.inner, now).await
    }
}

/// Cuts the active head into a frozen one when it is due (old or big enough). Apart from
/// publishing: cutting needs only the local log, so it goes on while the object store is
/// unreachable, and frozen heads beyond the few kept in memory leave it.
async fn cut_when_due(inner: Arc<Inner>) {
    let config = &inner.config;
    let tick = config.refresh_interval.min(Duration::from_secs(1)).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = inner.head_full.notified() => {}
        }
        let now = (config.clock)();
        let due = {
            let state = inner.state.read().expect("state lock");
            let age = state.active.first_at.map_or(0, |t| now.saturating_sub(t));
            !state.active.is_empty()
                && (state.active.bytes >= config.head_max_bytes || age >= config.block_duration.as_secs() as i64)
        };
        if due {
            match inner.wal.rotate().await {
                Ok(_) => inner.frozen_ready.notify_one(),
                Err(e) => tracing::error!(error = %e, "cutting the head failed; retrying"),
            }
        }
    }
}

/// The background task: publish frozen heads, refresh the listing, compact, expire.
async fn maintain(inner: Arc<Inner>) {
    let config = &inner.config;
    let tick = config.refresh_interval.min(Duration::from_secs(1)).max(Duration::from_millis(50));
    let mut last_refresh = Instant::now();
    // After a failed publish, wait this long before the next attempt (doubling, up to a
    // limit), so an outage is not met with a retry loop per tick.
    let mut backoff = Duration::ZERO;
    let mut retry_at = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = inner.frozen_ready.notified() => {}
        }
        let now = (config.clock)();
        let pending = !inner.state.read().expect("state lock").frozen.is_empty();
        if pending && Instant::now() >= retry_at {
            let published = {
                let _one_at_a_time = inner.maintenance.lock().await;
                publish_frozen(&inner).await
            };
            match published {
                Ok(_) => backoff = Duration::ZERO,
                Err(e) => {
                    inner.counters.flush_failures.fetch_add(1, Ordering::Relaxed);
                    backoff = (backoff * 2).clamp(tick, Duration::from_secs(30));
                    retry_at = Instant::now() + backoff;
                    let waiting = inner.state.read().expect("state lock").frozen.len();
                    tracing::error!(
                        error = %e,
                        waiting,
                        retry_in = ?backoff,
                        "publishing a block failed; its uploads stay in the write-ahead log (and queryable) and are published when the object store answers again"
                    );
                }
            }
        }
        if last_refresh.elapsed() >= config.refresh_interval {
            last_refresh = Instant::now();
            let dedupe_from = now - config.dedupe_window.as_secs() as i64;
            inner.state.write().expect("state lock").seen.retain(|_, seen_at| *seen_at > dedupe_from);
            if let Err(e) = refresh_blocks(&inner.objects, &inner.state).await {
                tracing::warn!(error = %e, "listing blocks failed");
            }
            if let Err(e) = compact(&inner, now).await {
                inner.counters.compaction_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "compaction failed");
            }
            if let Err(e) = apply_retention(&inner, now).await {
                tracing::warn!(error = %e, "retention failed");
            }
        }
    }
}

fn block_paths(writer: &str, id: &str) -> (ObjectPath, ObjectPath) {
    (
        ObjectPath::from(format!("{BLOCKS}/{writer}/{id}.data")),
        ObjectPath::from(format!("{BLOCKS}/{writer}/{id}{META_SUFFIX}")),
    )
}

/// Writes a block's data object, then its meta; returns it as loaded.
async fn publish(
    inner: &Inner,
    uploads: Vec<Arc<Upload>>,
    level: u32,
    wal_segment: u64,
    compacted_from: Vec<String>,
    idempotency_keys: Vec<(String, i64)>,
) -> Result<(String, Arc<LoadedBlock>), StorageError> {
    let (bytes, index, footer) = tokio::task::spawn_blocking(move || block::encode(uploads.iter().map(|u| &**u)))
        .await
        .map_err(|e| StorageError::Config(format!("block encoder panicked: {e}")))?;
    let id = new_block_id();
    let meta = BlockMeta {
        version: block::VERSION,
        id: id.clone(),
        writer: inner.writer.clone(),
        min_time: footer.min_time,
        max_time: footer.max_time,
        data_len: bytes.len() as u64,
        series: index.series.len() as u64,
        uploads: index.series.iter().map(|e| e.uploads).sum(),
        level,
        wal_segment,
        compacted_from,
        idempotency_keys,
    };
    let (data, meta_path) = block_paths(&inner.writer, &id);
    inner.objects.put(&data, PutPayload::from(bytes)).await?;
    let meta_json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
    inner.objects.put(&meta_path, PutPayload::from(meta_json)).await?;
    tracing::info!(block = %id, series = meta.series, uploads = meta.uploads, bytes = meta.data_len, level, "published block");
    Ok((meta_path.to_string(), Arc::new(LoadedBlock { meta, data, index, known_since: Instant::now() })))
}

async fn flush(inner: &Inner) -> Result<usize, StorageError> {
    let _one_at_a_time = inner.maintenance.lock().await;
    if !inner.state.read().expect("state lock").active.is_empty() {
        inner.wal.rotate().await?;
    }
    publish_frozen(inner).await
}

/// Publishes every frozen head, oldest first, and deletes its log segments; returns how
/// many blocks were written. The caller holds the maintenance lock. A head held only on
/// disk is read back from its segments first, one at a time.
async fn publish_frozen(inner: &Inner) -> Result<usize, StorageError> {
    let mut written = 0;
    loop {
        let Some(frozen) = inner.state.read().expect("state lock").frozen.front().cloned() else {
            return Ok(written);
        };
        let (uploads, keys): (Vec<Arc<Upload>>, _) = match &frozen.data {
            FrozenData::InMemory(head) => (head.uploads().cloned().collect(), head.keys.clone()),
            FrozenData::OnDisk(_) => {
                let (dir, first, sealed) = (inner.wal_dir.clone(), frozen.first_segment, frozen.sealed);
                let record = tokio::task::spawn_blocking(move || wal::read_sealed(&dir, first, sealed))
                    .await
                    .map_err(|_| WalError::Stopped)??;
                (record.uploads.into_iter().map(Arc::new).collect(), record.keys)
            }
        };
        let published = if uploads.is_empty() {
            None
        } else {
            Some(publish(inner, uploads, 0, frozen.sealed, Vec::new(), keys).await?)
        };
        {
            // One step for readers: the block appears and its head goes.
            let mut state = inner.state.write().expect("state lock");
            if let Some((key, block)) = published {
                state.blocks.insert(key, block);
                written += 1;
            }
            state.frozen.pop_front();
        }
        wal::delete_through(&inner.wal_dir, frozen.sealed)?;
    }
}

/// At start: the log segments no block covers become frozen heads (consecutive segments
/// grouped up to about `head_max_bytes`), published by the background task. Only the first
/// few stay in memory, so a restart after a long outage does not load the whole log.
fn replay_frozen(
    wal_dir: &Path,
    pending: &[(u64, u64)],
    head_max_bytes: u64,
    state: &mut State,
    now: i64,
) -> Result<(), WalError> {
    let mut groups: Vec<Vec<u64>> = Vec::new();
    let mut group_bytes = 0;
    for &(seq, bytes) in pending {
        match groups.last_mut() {
            Some(group) if group_bytes + bytes <= head_max_bytes.max(1) => group.push(seq),
            _ => {
                groups.push(vec![seq]);
                group_bytes = 0;
            }
        }
        group_bytes += bytes;
    }
    for group in groups {
        let (first, sealed) = (group[0], group[group.len() - 1]);
        let mut head = Head::default();
        for seq in group {
            let record = wal::replay(&wal::segment_path(wal_dir, seq))?;
            for upload in record.uploads {
                head.insert(upload, now);
            }
            for (key, seen_at) in record.keys {
                state.remember(key.clone(), seen_at);
                head.keys.push((key, seen_at));
            }
        }
        drop(state.freeze(head, first, sealed));
    }
    Ok(())
}

/// Fetches a block's meta, footer and index.
async fn load_block(objects: &Arc<dyn ObjectStore>, meta_path: &ObjectPath) -> Result<LoadedBlock, StorageError> {
    let meta_bytes = objects.get(meta_path).await?.bytes().await?;
    let meta: BlockMeta =
        serde_json::from_slice(&meta_bytes).map_err(|e| CorruptBlock(format!("meta {meta_path}: {e}")))?;
    if !block::READABLE.contains(&meta.version) {
        return Err(CorruptBlock(format!("block format version {}", meta.version)).into());
    }
    let (data, _) = block_paths(&meta.writer, &meta.id);
    if meta.data_len < (block::MAGIC.len() + block::FOOTER_LEN) as u64 {
        return Err(CorruptBlock("data object too small".into()).into());
    }
    let footer_bytes = objects.get_range(&data, meta.data_len - block::FOOTER_LEN as u64..meta.data_len).await?;
    let footer = block::decode_footer(&footer_bytes, meta.data_len)?;
    let index_bytes = objects.get_range(&data, footer.index_offset..footer.index_offset + footer.index_len).await?;
    let index = block::decode_index(&index_bytes, &footer)?;
    Ok(LoadedBlock { meta, data, index, known_since: Instant::now() })
}

async fn refresh_blocks(objects: &Arc<dyn ObjectStore>, state: &RwLock<State>) -> Result<(), StorageError> {
    let started = Instant::now();
    let prefix = ObjectPath::from(BLOCKS);
    let mut listing = objects.list(Some(&prefix));
    let mut present = HashSet::new();
    while let Some(item) = listing.next().await {
        let item = item?;
        if item.location.as_ref().ends_with(META_SUFFIX) {
            present.insert(item.location.to_string());
        }
    }
    let unknown: Vec<String> = {
        let state = state.read().expect("state lock");
        present.iter().filter(|p| !state.blocks.contains_key(*p) && !state.broken.contains(*p)).cloned().collect()
    };
    // Concurrently: a first start against a bucket may have hundreds of blocks to learn.
    let mut loads = futures_util::stream::iter(unknown.into_iter().map(|path| async move {
        let block = load_block(objects, &ObjectPath::from(path.as_str())).await;
        (path, block)
    }))
    .buffer_unordered(16);
    let mut loaded = Vec::new();
    while let Some((path, block)) = loads.next().await {
        match block {
            Ok(block) => loaded.push((path, Arc::new(block))),
            Err(StorageError::Corrupt(e)) => {
                tracing::warn!(meta = %path, error = %e, "skipping a damaged block");
                state.write().expect("state lock").broken.insert(path);
            }
            // Deleted between listing and reading.
            Err(StorageError::Objects(e)) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let mut state = state.write().expect("state lock");
    state.blocks.retain(|path, block| present.contains(path) || block.known_since >= started);
    for (_, block) in &loaded {
        for (key, seen_at) in &block.meta.idempotency_keys {
            state.remember(key.clone(), *seen_at);
        }
    }
    state.blocks.extend(loaded);
    Ok(())
}

/// Deletes a block: meta first (so it stops existing), then data.
async fn delete_block(inner: &Inner, meta_path: &str, block: &LoadedBlock) -> Result<(), StorageError> {
    for path in [ObjectPath::from(meta_path), block.data.clone()] {
        match inner.objects.delete(&path).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    inner.state.write().expect("state lock").blocks.remove(meta_path);
    Ok(())
}

async fn compact(inner: &Inner, now: i64) -> Result<usize, StorageError> {
    let _one_at_a_time = inner.maintenance.lock().await;
    let window = inner.config.compaction_window.as_secs().max(1) as i64;
    let settle = inner.config.block_duration.as_secs() as i64;
    let (replaced, groups) = {
        let state = inner.state.read().expect("state lock");
        let visible: HashSet<&str> = state.visible().map(|b| b.meta.id.as_str()).collect();
        let own = state.blocks.iter().filter(|(_, b)| b.meta.writer == inner.writer);
        let mut replaced = Vec::new();
        let mut groups: BTreeMap<i64, Vec<(String, Arc<LoadedBlock>)>> = BTreeMap::new();
        for (path, block) in own {
            if !visible.contains(block.meta.id.as_str()) {
                replaced.push((path.clone(), block.clone()));
            } else if block.meta.level == 0 {
                let start = block.meta.min_time.div_euclid(window);
                // Only finished windows: no block of it can still be on its way.
                if (start + 1) * window + settle <= now {
                    groups.entry(start).or_default().push((path.clone(), block.clone()));
                }
            }
        }
        (replaced, groups)
    };
    // Leftovers of a compaction interrupted after publishing.
    for (path, block) in &replaced {
        delete_block(inner, path, block).await?;
    }
    delete_orphans(inner).await?;
    let mut written = 0;
    for (_, group) in groups.into_iter().filter(|(_, g)| g.len() >= 2) {
        let mut uploads = Vec::new();
        let mut inputs = Vec::new();
        for (path, block) in group {
            let bytes = inner.objects.get(&block.data).await?.bytes().await?;
            match block::decode_all(&bytes) {
                Ok((_, decoded)) => {
                    uploads.extend(decoded.into_iter().map(Arc::new));
                    inputs.push((path, block));
                }
                // A damaged block stays as it is (queries skip its bad chunks); folding it
                // into a new block would make the damage permanent.
                Err(e) => tracing::warn!(block = %block.meta.id, error = %e, "not compacting a damaged block"),
            }
        }
        if inputs.len() < 2 {
            continue;
        }
        let wal_segment = inputs.iter().map(|(_, b)| b.meta.wal_segment).max().unwrap_or(0);
        let ids = inputs.iter().map(|(_, b)| b.meta.id.clone()).collect();
        // Keys still inside the window move to the compacted block, or deleting the inputs
        // would forget them.
        let dedupe_from = now - inner.config.dedupe_window.as_secs() as i64;
        let keys = inputs
            .iter()
            .flat_map(|(_, b)| b.meta.idempotency_keys.iter())
            .filter(|(_, seen_at)| *seen_at > dedupe_from)
            .cloned()
            .collect();
        let (key, block) = publish(inner, uploads, 1, wal_segment, ids, keys).await?;
        inner.state.write().expect("state lock").blocks.insert(key, block);
        written += 1;
        for (path, block) in &inputs {
            delete_block(inner, path, block).await?;
        }
    }
    Ok(written)
}

/// Data objects are written before their meta; a crash in between leaves a data object that
/// no meta names. This writer's such objects older than an hour (far longer than a publish
/// takes) are deleted. Runs under the maintenance lock, so none of them is being published.
async fn delete_orphans(inner: &Inner) -> Result<(), StorageError> {
    const ORPHAN_AGE: i64 = 3600;
    let prefix = ObjectPath::from(format!("{BLOCKS}/{}", inner.writer));
    let mut listing = inner.objects.list(Some(&prefix));
    let mut metas = HashSet::new();
    let mut data = Vec::new();
    while let Some(item) = listing.next().await {
        let item = item?;
        let name = item.location.to_string();
        if let Some(stem) = name.strip_suffix(META_SUFFIX) {
            metas.insert(stem.to_string());
        } else if let Some(stem) = name.strip_suffix(".data") {
            data.push((stem.to_string(), item.location, item.last_modified.timestamp()));
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    for (stem, location, modified) in data {
        if !metas.contains(&stem) && now - modified > ORPHAN_AGE {
            tracing::info!(object = %location, "deleting a block data object that was never published");
            match inner.objects.delete(&location).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn apply_retention(inner: &Inner, now: i64) -> Result<usize, StorageError> {
    if inner.config.retention.is_zero() {
        return Ok(0);
    }
    let cutoff = now.saturating_sub(inner.config.retention.as_secs() as i64);
    let expired: Vec<(String, Arc<LoadedBlock>)> = {
        let mut state = inner.state.write().expect("state lock");
        for uploads in state.active.series.values_mut() {
            uploads.retain(|u| u.meta.until >= cutoff);
        }
        state.active.series.retain(|_, uploads| !uploads.is_empty());
        state
            .blocks
            .iter()
            .filter(|(_, b)| b.meta.writer == inner.writer && b.meta.max_time < cutoff)
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect()
    };
    for (path, block) in &expired {
        tracing::info!(block = %block.meta.id, "deleting a block past retention");
        delete_block(inner, path, block).await?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::CallTree;

    pub(crate) fn upload(app: &str, stacks: &[(&[&str], u64)], at: i64) -> Upload {
        let mut tree = CallTree::new();
        for (frames, value) in stacks {
            tree.add_stack(frames.iter().copied(), *value);
        }
        Upload {
            meta: ProfileMeta {
                series: SeriesKey::new(app, "cpu", BTreeMap::new()),
                from: at - 10,
                until: at,
                units: "samples".into(),
                sample_rate: 100,
                spy_name: "test".into(),
                aggregation: Aggregation::Sum,
            },
            tree: tree.to_flat(),
        }
    }

    pub(crate) async fn all(store: &Store) -> Vec<Upload> {
        let mut got: Vec<Upload> =
            store.select(i64::MIN, i64::MAX, |_| true).await.unwrap().iter().map(|u| (**u).clone()).collect();
        got.sort_by(|a, b| {
            (&a.meta.series, a.meta.from, a.meta.until, kiln_model::codec::encode(&a.tree)).cmp(&(
                &b.meta.series,
                b.meta.from,
                b.meta.until,
                kiln_model::codec::encode(&b.tree),
            ))
        });
        got
    }

    #[tokio::test]
    async fn appended_uploads_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = upload("a", &[(&["main", "f"], 3)], 100);
        let second = upload("b", &[(&["main"], 2)], 200);
        {
            let store = Store::open(dir.path()).await.unwrap();
            store.append(vec![first.clone()]).await.unwrap();
            store.append(vec![second.clone()]).await.unwrap();
            assert_eq!(all(&store).await.len(), 2);
        }
        let store = Store::open(dir.path()).await.unwrap();
        let mut got: Vec<Upload> = all(&store).await;
        got.sort_by_key(|u| u.meta.until);
        assert_eq!(got, vec![first, second]);
        let apps = store.apps(DEFAULT_TENANT);
        assert_eq!(apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
    }

    #[tokio::test]
    async fn concurrent_appends_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.append(vec![upload("a", &[(&["x"], 1)], i)]).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        drop(store);
        let store = Store::open(dir.path()).await.unwrap();
        let total: u64 = all(&store).await.iter().map(|u| u.tree.total()).sum();
        assert_eq!(total, 50);
    }
}

#[cfg(test)]
mod engine_tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use kiln_model::{CallTree, folded};
    use proptest::prelude::*;

    use super::tests::{all, upload};
    use super::*;
    use crate::query::{self, Query};

    struct Clocked {
        now: Arc<AtomicI64>,
    }

    impl Clocked {
        fn new(start: i64) -> Clocked {
            Clocked { now: Arc::new(AtomicI64::new(start)) }
        }

        fn config(&self, dir: &Path) -> StoreConfig {
            let now = self.now.clone();
            StoreConfig {
                background: false,
                clock: Arc::new(move || now.load(Ordering::SeqCst)),
                block_duration: Duration::from_secs(600),
                compaction_window: Duration::from_secs(3600),
                retention: Duration::from_secs(86_400),
                ..StoreConfig::new(dir)
            }
        }
    }

    fn keyed(key: Option<&str>, upload: Upload) -> KeyedUploads {
        KeyedUploads { key: key.map(str::to_string), uploads: vec![upload] }
    }

    async fn total(store: &Store) -> u64 {
        all(store).await.iter().map(|u| u.tree.total()).sum()
    }

    #[tokio::test]
    async fn a_retried_key_counts_once_through_cuts_restarts_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clocked::new(1000);
        let retry = |key: &str, at: i64| vec![keyed(Some(key), upload("a", &[(&["x"], 5)], at))];
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        assert_eq!(store.append_once(retry("t/ingest/k1", 100)).await.unwrap(), Appended { stored: 1, duplicates: 0 });
        assert_eq!(store.append_once(retry("t/ingest/k1", 100)).await.unwrap(), Appended { stored: 0, duplicates: 1 });
        assert_eq!(total(&store).await, 5, "the retry changed nothing");
        // Another key, and uploads without a key, always count, even when identical.
        store.append_once(retry("t/ingest/k2", 200)).await.unwrap();
        store.append_once(vec![keyed(None, upload("a", &[(&["x"], 5)], 200))]).await.unwrap();
        store.append_once(vec![keyed(None, upload("a", &[(&["x"], 5)], 200))]).await.unwrap();
        assert_eq!(total(&store).await, 20);
        // One request holding the same key twice stores it once.
        let twice = [retry("t/ingest/k3", 300), retry("t/ingest/k3", 300)].concat();
        assert_eq!(store.append_once(twice).await.unwrap(), Appended { stored: 1, duplicates: 1 });

        // In a block: the key travels in the block's meta.
        store.flush().await.unwrap();
        assert_eq!(store.append_once(retry("t/ingest/k1", 100)).await.unwrap().duplicates, 1);
        // In the log only (not yet cut), then a restart: the log replays the key.
        store.append_once(retry("t/ingest/k4", 400)).await.unwrap();
        drop(store);
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        for key in ["t/ingest/k1", "t/ingest/k2", "t/ingest/k3", "t/ingest/k4"] {
            assert_eq!(store.append_once(retry(key, 100)).await.unwrap().duplicates, 1, "{key} after a restart");
        }
        assert_eq!(total(&store).await, 30);

        // Compaction replaces the blocks that carried the keys; the keys move along.
        store.flush().await.unwrap();
        store.append_once(retry("t/ingest/k5", 3000)).await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.compact(4200).await.unwrap(), 1);
        drop(store);
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        for key in ["t/ingest/k1", "t/ingest/k5"] {
            assert_eq!(store.append_once(retry(key, 100)).await.unwrap().duplicates, 1, "{key} after compaction");
        }
        assert_eq!(total(&store).await, 35);

        // Past the window a key is new again.
        clock.now.store(1000 + 3600, Ordering::SeqCst);
        assert_eq!(store.append_once(retry("t/ingest/k1", 100)).await.unwrap().stored, 1);
        assert_eq!(total(&store).await, 40);
    }

    #[tokio::test]
    async fn concurrent_retries_of_one_key_store_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_with(Clocked::new(1000).config(dir.path())).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            // Two keys, twenty attempts each, interleaved; every attempt also carries a
            // key of its own, so claims overlap across requests.
            let shared = format!("t/push/shared-{}", i % 2);
            let own = format!("t/push/own-{i}");
            tasks.push(tokio::spawn(async move {
                store
                    .append_once(vec![
                        keyed(Some(&shared), upload("a", &[(&["shared"], 7)], 100)),
                        keyed(Some(&own), upload("a", &[(&["own"], 1)], 100)),
                    ])
                    .await
            }));
        }
        let mut stored = 0;
        for task in tasks {
            stored += task.await.unwrap().unwrap().stored;
        }
        assert_eq!(stored, 42, "two shared groups and forty own ones");
        assert_eq!(total(&store).await, 2 * 7 + 40);
    }

    fn labelled(app: &str, env: &str, stacks: &[(&[&str], u64)], at: i64) -> Upload {
        let mut u = upload(app, stacks, at);
        u.meta.series.labels.insert("env".into(), env.into());
        u
    }

    /// Answers to a fixed set of queries: folded tree plus timeline, per query and range.
    async fn answers(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for text in ["a.cpu", "a.cpu{env=\"prod\"}", "a.cpu{env!=\"prod\"}", "b.cpu", "a"] {
            for (from, until) in [(i64::MIN, i64::MAX), (0, 1500), (1500, 5000), (3000, 9000)] {
                let q = Query::parse(DEFAULT_TENANT, text, from, until).unwrap();
                let m = query::merge(store, &q).await.unwrap();
                out.push(format!("{text} {from}..{until}\n{}{:?}", folded::print(&m.tree), m.timeline));
            }
        }
        let mut series = store.series();
        series.sort();
        out.push(format!("{series:?}"));
        out.push(format!("{:?}", store.apps(DEFAULT_TENANT)));
        out
    }

    fn workload() -> Vec<Upload> {
        let mut uploads = Vec::new();
        for i in 0..40i64 {
            let env = if i % 3 == 0 { "prod" } else { "dev" };
            let leaf = format!("f{}", i % 7);
            uploads.push(labelled(
                "a",
                env,
                &[(&["main", leaf.as_str()], 1 + i as u64), (&["main"], 2)],
                100 + i * 100,
            ));
            if i % 4 == 0 {
                uploads.push(upload("b", &[(&["run", "x"], 5)], 100 + i * 100));
            }
        }
        uploads
    }

    #[tokio::test]
    async fn restart_answers_identically_from_head_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clocked::new(10_000);
        let uploads = workload();
        let (first, second) = uploads.split_at(uploads.len() / 2);
        let before = {
            let store = Store::open_with(clock.config(dir.path())).await.unwrap();
            for u in first {
                store.append(vec![u.clone()]).await.unwrap();
            }
            assert_eq!(store.flush().await.unwrap(), 1);
            store.append(second.to_vec()).await.unwrap();
            assert_eq!(store.block_count(), 1);
            assert_eq!(all(&store).await.len(), uploads.len());
            answers(&store).await
        };
        // The first log segment went with the block; the second holds the head.
        assert_eq!(wal::segments(&dir.path().join("wal")).unwrap(), vec![2]);
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        assert_eq!(store.block_count(), 1);
        assert_eq!(answers(&store).await, before, "head + block after a restart");
        assert_eq!(store.flush().await.unwrap(), 1);
        assert_eq!(answers(&store).await, before, "two blocks, empty head");
        drop(store);
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        assert_eq!((store.block_count(), answers(&store).await), (2, before), "blocks only");
    }

    #[tokio::test]
    async fn a_crash_after_publishing_replays_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clocked::new(10_000);
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        store.append(workload()).await.unwrap();
        let before = answers(&store).await;
        let segment = wal::segment_path(&dir.path().join("wal"), 1);
        let kept = std::fs::read(&segment).unwrap();
        store.flush().await.unwrap();
        drop(store);
        // As if Kiln died between publishing the block and deleting the segment.
        std::fs::write(&segment, kept).unwrap();
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        assert_eq!(answers(&store).await, before);
        assert!(!segment.exists(), "the covered segment is deleted at start");
    }

    #[tokio::test]
    async fn compaction_and_retention_keep_answers() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clocked::new(0);
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        // Four blocks in the first hour, one in the second.
        for (i, part) in workload().chunks(12).enumerate() {
            store.append(part.to_vec()).await.unwrap();
            store.flush().await.unwrap();
            assert_eq!(store.block_count(), i + 1);
        }
        let metas: Vec<(i64, i64)> = {
            let state = store.inner.state.read().unwrap();
            state.blocks.values().map(|b| (b.meta.min_time, b.meta.max_time)).collect()
        };
        assert!(metas.iter().filter(|(min, _)| *min < 3600).count() >= 2, "{metas:?}");
        let before = answers(&store).await;
        assert_eq!(store.compact(3600 + 599).await.unwrap(), 0, "the hour has not settled yet");
        assert_eq!(store.compact(3600 + 600).await.unwrap(), 1);
        let after = store.block_count();
        assert!(after < metas.len(), "{after} blocks");
        assert_eq!(answers(&store).await, before, "compacted blocks answer the same");
        assert_eq!(store.compact(100_000).await.unwrap(), 0, "compacted blocks stay as they are");
        drop(store);
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        assert_eq!(answers(&store).await, before, "and after a restart");

        // Retention: a day after the compacted block's newest data, only later data remains.
        let cutoff = {
            let state = store.inner.state.read().unwrap();
            state.blocks.values().filter(|b| b.meta.level == 1).map(|b| b.meta.max_time).max().unwrap() + 1
        };
        store.append(vec![upload("a", &[(&["old"], 1)], 50)]).await.unwrap();
        assert_eq!(store.apply_retention(cutoff + 86_400).await.unwrap(), 1);
        let left = all(&store).await;
        assert!(left.iter().all(|u| u.meta.until >= cutoff), "nothing older than the cutoff");
        assert!(!left.is_empty());
        let store_dir = dir.path().join(BLOCKS).join(store.writer());
        let objects = std::fs::read_dir(store_dir).unwrap().count();
        assert_eq!(objects, store.block_count() * 2, "deleted blocks leave no objects");
        let remaining = store.block_count();
        assert_eq!(store.apply_retention(10 * 86_400).await.unwrap(), remaining);
        assert!(all(&store).await.is_empty());
    }

    #[tokio::test]
    async fn damaged_blocks_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clocked::new(10_000);
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        store.append(vec![upload("a", &[(&["main", "f"], 3)], 100)]).await.unwrap();
        store.flush().await.unwrap();
        store.append(vec![upload("b", &[(&["main", "g"], 4)], 200)]).await.unwrap();
        store.flush().await.unwrap();
        let writer = store.writer().to_string();
        drop(store);
        let blocks_dir = dir.path().join(BLOCKS).join(&writer);
        let mut data: Vec<PathBuf> = std::fs::read_dir(&blocks_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "data"))
            .collect();
        data.sort();
        // First block: a flipped byte inside its chunk. Second: cut short (a torn write).
        let mut bytes = std::fs::read(&data[0]).unwrap();
        bytes[block::MAGIC.len() + 3] ^= 0xff;
        std::fs::write(&data[0], bytes).unwrap();
        let bytes = std::fs::read(&data[1]).unwrap();
        std::fs::write(&data[1], &bytes[..bytes.len() - 10]).unwrap();
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        assert_eq!(store.block_count(), 1, "the torn block is left out");
        assert!(all(&store).await.is_empty(), "the damaged chunk is skipped");
        // New data still flows.
        store.append(vec![upload("c", &[(&["x"], 1)], 300)]).await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(all(&store).await.len(), 1);
    }

    #[tokio::test]
    async fn unpublished_data_objects_are_cleaned_up_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(Clocked::new(10_000).config(dir.path())).await.unwrap();
        store.append(vec![upload("a", &[(&["x"], 1)], 100)]).await.unwrap();
        store.flush().await.unwrap();
        let own = dir.path().join(BLOCKS).join(store.writer());
        let (old, fresh) = (own.join("0000000000001-00000000.data"), own.join("9999999999999-00000000.data"));
        std::fs::write(&old, b"torn").unwrap();
        std::fs::write(&fresh, b"being written").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        store.compact(10_000).await.unwrap();
        assert!(!old.exists(), "an old orphan goes");
        assert!(fresh.exists(), "a recent one may still get its meta");
        assert_eq!((store.block_count(), all(&store).await.len()), (1, 1), "published blocks stay");
    }

    /// Makes the local object store refuse every write (a file where the writer's block
    /// folder goes), as an unreachable bucket would; the returned path restores it.
    fn break_object_store(dir: &Path, writer: &str) -> PathBuf {
        let own = dir.join(BLOCKS).join(writer);
        let _ = std::fs::remove_dir_all(&own);
        std::fs::create_dir_all(dir.join(BLOCKS)).unwrap();
        std::fs::write(&own, b"not a folder").unwrap();
        own
    }

    #[tokio::test]
    async fn an_outage_keeps_frozen_heads_on_disk_queryable_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clocked::new(10_000);
        // Every log segment a head of its own at a restart, too.
        let config = || StoreConfig { head_max_bytes: 1, ..clock.config(dir.path()) };
        let store = Store::open_with(config()).await.unwrap();
        let blocker = break_object_store(dir.path(), store.writer());
        let heads = 7u64;
        let mut expected = Vec::new();
        for i in 0..heads as i64 {
            let key = format!("t/ingest/k{i}");
            let batch = vec![
                labelled("a", "prod", &[(&["main", "f"], 1 + i as u64)], 100 + i),
                upload("b", &[(&["x"], 2)], 200 + i),
            ];
            expected.extend(batch.iter().cloned());
            store.append_once(vec![KeyedUploads { key: Some(key), uploads: batch }]).await.unwrap();
            assert!(store.flush().await.is_err(), "publishing fails while the store is down");
            let stats = store.stats();
            assert_eq!(stats.frozen_heads, i as u64 + 1);
            assert_eq!(stats.frozen_heads_on_disk, (i as u64 + 1).saturating_sub(FROZEN_IN_MEMORY as u64), "{stats:?}");
            assert_eq!(stats.blocks, 0);
            assert_eq!(stats.wal_segments, i as u64 + 2, "every frozen head keeps its segment, plus the open one");
        }
        expected.sort_by(|a, b| (&a.meta.series, a.meta.until).cmp(&(&b.meta.series, b.meta.until)));
        let sorted = |mut got: Vec<Upload>| {
            got.sort_by(|a, b| (&a.meta.series, a.meta.until).cmp(&(&b.meta.series, b.meta.until)));
            got
        };
        // Only the first frozen heads are in memory; the others are read back for queries.
        let in_memory = {
            let state = store.inner.state.read().unwrap();
            state.heads().map(|h| h.uploads().count()).sum::<usize>()
        };
        assert_eq!(in_memory, 2 * FROZEN_IN_MEMORY);
        assert_eq!(sorted(all(&store).await), expected, "every acknowledged upload answers during the outage");
        let q = Query::parse(DEFAULT_TENANT, "a.cpu{env=\"prod\"}", 105, 200).unwrap();
        let merged = query::merge(&store, &q).await.unwrap();
        assert_eq!(folded::print(&merged.tree), "main;f 13\n", "a narrow query reads only what it selects");
        let apps = store.apps(DEFAULT_TENANT);
        assert_eq!(apps.iter().map(|a| (a.name.as_str(), a.uploads)).collect::<Vec<_>>(), [("b", heads), ("a", heads)]);
        assert_eq!(store.series().len(), 2);

        // A restart during the outage: the log comes back as frozen heads, not all in memory.
        drop(store);
        let store = Store::open_with(config()).await.unwrap();
        assert_eq!(sorted(all(&store).await), expected, "and after a restart");
        let stats = store.stats();
        assert_eq!(
            (stats.frozen_heads, stats.frozen_heads_on_disk),
            (heads + 1, heads + 1 - FROZEN_IN_MEMORY as u64),
            "{stats:?}"
        );
        let retry = KeyedUploads { key: Some("t/ingest/k3".into()), uploads: vec![upload("a", &[(&["dup"], 9)], 100)] };
        assert_eq!(store.append_once(vec![retry.clone()]).await.unwrap().duplicates, 1, "keys survive on disk");
        assert!(store.flush().await.is_err());

        // The store is back: everything is published, once, and the log is emptied.
        std::fs::remove_file(&blocker).unwrap();
        assert_eq!(store.flush().await.unwrap(), heads as usize);
        let stats = store.stats();
        assert_eq!((stats.frozen_heads, stats.wal_segments), (0, 1), "{stats:?}");
        assert_eq!(sorted(all(&store).await), expected, "exactly once, from blocks");
        assert_eq!(store.append_once(vec![retry]).await.unwrap().duplicates, 1, "keys moved into the block metas");
        drop(store);
        let store = Store::open_with(config()).await.unwrap();
        assert_eq!(sorted(all(&store).await), expected, "blocks only, after a restart");
    }

    #[tokio::test]
    async fn uploads_are_refused_below_the_disk_floor_and_retries_still_answer() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clocked::new(10_000);
        let keyed_upload = || vec![keyed(Some("t/ingest/once"), upload("a", &[(&["x"], 1)], 100))];
        let store = Store::open_with(clock.config(dir.path())).await.unwrap();
        store.append_once(keyed_upload()).await.unwrap();
        drop(store);
        let config = StoreConfig { min_free_disk: DiskFloor::Percent(100.0), ..clock.config(dir.path()) };
        let store = Store::open_with(config).await.unwrap();
        let refused = store.append(vec![upload("a", &[(&["y"], 1)], 200)]).await.unwrap_err();
        assert!(matches!(refused, StorageError::LowDisk { free, floor } if free < floor), "{refused}");
        assert!(refused.to_string().contains("low on disk space"), "{refused}");
        assert_eq!(store.append_once(keyed_upload()).await.unwrap().duplicates, 1, "an already stored retry answers");
        assert_eq!(store.stats().low_disk_refusals, 1);
        assert_eq!(all(&store).await.len(), 1, "queries still answer");
    }

    fn merged_tree(uploads: &[Upload]) -> String {
        let mut tree = CallTree::new();
        for u in uploads {
            tree.merge_flat(&u.tree);
        }
        folded::print(&tree.to_flat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// However uploads are ordered and split between blocks and the head, the merged
        /// answer is the same.
        #[test]
        fn merge_is_independent_of_order_and_placement(
            stacks in prop::collection::vec((prop::collection::vec(0usize..4, 1..4), 1u64..50), 1..12),
            order_seed in any::<u64>(),
            cuts in prop::collection::vec(any::<bool>(), 12),
        ) {
            let names = ["main", "f", "g", "h"];
            let uploads: Vec<Upload> = stacks
                .iter()
                .enumerate()
                .map(|(i, (frames, value))| {
                    let frames: Vec<&str> = frames.iter().map(|&f| names[f]).collect();
                    upload("a", &[(&frames, *value)], 1000 + i as i64)
                })
                .collect();
            let expected = merged_tree(&uploads);
            let mut shuffled = uploads.clone();
            let mut seed = order_seed | 1;
            for i in (1..shuffled.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                shuffled.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let got = runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open_with(Clocked::new(5000).config(dir.path())).await.unwrap();
                for (u, cut) in shuffled.into_iter().zip(cuts) {
                    store.append(vec![u]).await.unwrap();
                    if cut {
                        store.flush().await.unwrap();
                    }
                }
                let q = Query::parse(DEFAULT_TENANT, "a.cpu", i64::MIN, i64::MAX).unwrap();
                folded::print(&query::merge(&store, &q).await.unwrap().tree)
            });
            prop_assert_eq!(got, expected);
        }
    }
}
