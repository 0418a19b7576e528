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
//!   (an hour) are merged into one (in cluster mode, one per partition). The rule that keeps several writers safe on one bucket:
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
//!
//! - cluster mode (`--cluster`): the log is a shared, replicated stream instead of local
//!   segments; every server follows it into the same head, and one server at a time cuts
//!   each partition's blocks (see `follow`, and [`cluster`] for the interface to the log).
//!
//! Files: `types` (series, uploads, errors and what reads answer), `maintenance` (cutting the
//! head, publishing, loading and deleting blocks), `compaction` (compaction, cleanup of
//! unpublished objects, retention), `block` (the block format), `wal`, `backend`, `counts`,
//! `disk`, `documents` (small per-tenant documents beside the blocks), `follow` (cluster mode),
//! `cluster` (the shared log's interface and its NATS implementation); the store itself, its
//! head and its dedupe claims stay here.

mod backend;
pub mod block;
pub mod cluster;
mod compaction;
mod counts;
pub mod disk;
mod documents;
#[cfg(test)]
mod engine_tests;
mod follow;
mod maintenance;
#[cfg(test)]
mod tests;
mod types;
mod wal;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Notify;

pub use backend::{Backend, S3Options};
use block::{BlockIndex, BlockMeta, Chunk, CorruptBlock, SeriesEntry};
pub use counts::ReadPlan;
pub use disk::DiskFloor;
pub use documents::DocumentVersion;
pub use types::{
    Aggregation, AppInfo, Appended, HeadChunk, KeyedUploads, ProfileMeta, RawChunk, Selected, SeriesKey, StorageError,
    StorageStats, Upload,
};
pub use wal::WalError;

use compaction::{apply_retention, compact};
use maintenance::{cut_when_due, flush, maintain, refresh_blocks, replay_frozen};

/// The tenant of requests without an `X-Scope-OrgID` header (and of data stored before
/// tenancy existed).
pub use kiln_model::tenant::DEFAULT_TENANT;

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
    /// Cluster mode: the shared log instead of the local write-ahead log.
    pub cluster: Option<cluster::LogConfig>,
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
            cluster: None,
        }
    }
}

/// What the store holds in memory between block cuts: per series, the uploads over one
/// stack tree, as a block's chunk holds them. A query over the head merges it like a block's
/// chunk, and a cut encodes it without rebuilding anything.
#[derive(Default)]
struct Head {
    series: HashMap<SeriesKey, HeadSeries>,
    /// Idempotency keys of the uploads in this head; they go into its block's meta.
    keys: Vec<(String, i64)>,
    /// Memory held, for `--head-max-bytes`.
    bytes: u64,
    /// Clock time of the first upload since the last cut.
    first_at: Option<i64>,
}

/// One series in the head.
#[derive(Default)]
struct HeadSeries {
    chunk: block::ChunkBuilder,
    /// Earliest `from` and latest `until` of its uploads.
    min_time: i64,
    max_time: i64,
}

impl HeadSeries {
    fn uploads(&self) -> &[block::ChunkUpload] {
        &self.chunk.chunk().uploads
    }

    fn overlaps(&self, from: i64, until: i64) -> bool {
        overlaps(from, until, self.min_time, self.max_time)
            && self.uploads().iter().any(|u| overlaps(from, until, u.from, u.until))
    }

    fn summary(&self) -> SeriesSummary {
        SeriesSummary { uploads: self.uploads().len() as u64, min_time: self.min_time, max_time: self.max_time }
    }
}

impl Head {
    fn insert(&mut self, upload: Upload, now: i64) {
        self.first_at.get_or_insert(now);
        let (from, until) = (upload.meta.from, upload.meta.until);
        let series = match self.series.get_mut(&upload.meta.series) {
            Some(series) => series,
            None => {
                self.bytes += 256;
                let fresh = HeadSeries { min_time: from, max_time: until, ..HeadSeries::default() };
                self.series.entry(upload.meta.series.clone()).or_insert(fresh)
            }
        };
        series.min_time = series.min_time.min(from);
        series.max_time = series.max_time.max(until);
        self.bytes += series.chunk.add(&upload);
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Every series' chunk, shared.
    fn chunks(&self) -> Vec<(SeriesKey, Arc<Chunk>)> {
        self.series.iter().map(|(key, series)| (key.clone(), series.chunk.snapshot())).collect()
    }

    /// What listings and query planning need once the uploads themselves are gone.
    fn summary(&self) -> HashMap<SeriesKey, SeriesSummary> {
        self.series.iter().map(|(key, series)| (key.clone(), series.summary())).collect()
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
    /// Cluster mode: the partition whose head this is (`sealed` is its freeze marker).
    partition: Option<u64>,
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
    /// Cluster mode: the active head of each partition (the shared log's uploads are cut per
    /// partition; `active` stays empty). Empty otherwise.
    partitions: Vec<Head>,
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
    /// Cluster mode: the last shared-log record applied to the head (`None` otherwise).
    cluster_applied: Option<u64>,
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
        std::iter::once(&self.active).chain(&self.partitions).chain(self.frozen.iter().filter_map(|f| f.in_memory()))
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
        self.frozen.push_back(Arc::new(Frozen { first_segment, sealed, partition: None, data }));
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
    /// Cluster mode: the shared log and this server's place in it.
    cluster: Option<follow::Cluster>,
}

/// Failures and refusals since start, for `/metrics`.
#[derive(Default)]
struct Counters {
    flush_failures: AtomicU64,
    compaction_failures: AtomicU64,
    low_disk_refusals: AtomicU64,
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
        let server_id = writer_id(&dir)?;
        // In cluster mode every server holds the same head and one lease holder at a time
        // writes each partition's, so the blocks have one writer: the cluster.
        let writer = if config.cluster.is_some() { follow::CLUSTER_WRITER.to_string() } else { server_id.clone() };
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
        if config.cluster.is_some() && pending.iter().any(|&(_, bytes)| bytes > 0) {
            // Its own log's uploads would be published as the cluster's, at sequences that
            // mean nothing in the shared log.
            return Err(StorageError::Config(format!(
                "{} holds uploads of a single server not yet in a block: start it once without --cluster to publish them, or use another --data-dir",
                dir.display()
            )));
        }
        let clock = config.clock.clone();
        replay_frozen(&wal_dir, &pending, config.head_max_bytes, &mut state.write().expect("state lock"), clock())?;
        state.write().expect("state lock").active_first_segment = last + 1;
        let cluster = match &config.cluster {
            Some(log_config) => {
                let log = cluster::nats::NatsLog::connect(log_config).await.map_err(StorageError::Log)?;
                let mut state = state.write().expect("state lock");
                let cuts = follow::cuts_in_blocks(&state);
                state.partitions = (0..cluster::PARTITIONS).map(|_| Head::default()).collect();
                let cluster = follow::Cluster::new(Arc::new(log), server_id.clone(), cuts);
                let resume_after = *cluster.applied.borrow();
                state.cluster_applied = Some(resume_after);
                tracing::info!(resume_after, server = %server_id, "following the shared log");
                Some(cluster)
            }
            None => None,
        };
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
            cluster,
        });
        let mut background = if inner.config.background {
            vec![
                tokio::spawn(cut_when_due(inner.clone())).abort_handle(),
                tokio::spawn(maintain(inner.clone())).abort_handle(),
            ]
        } else {
            Vec::new()
        };
        if let Some(log_config) = &inner.config.cluster {
            // Following the log is what makes uploads visible: it runs even without the
            // other background work.
            background.push(tokio::spawn(follow::follow(inner.clone())).abort_handle());
            background.push(tokio::spawn(follow::hold_leases(inner.clone(), log_config.lease_ttl)).abort_handle());
        }
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
            if let Some(cluster) = &self.inner.cluster {
                // The shared log deduplicates keys across servers; the claims above only
                // spare it a concurrent retry on this server.
                let stored = groups.len();
                let duplicates = follow::append(&self.inner, cluster, groups, now).await?;
                drop(claims);
                appended.stored += stored - duplicates;
                appended.duplicates += duplicates;
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

    /// Why this server cannot take uploads now (cluster mode: the shared log is unreachable
    /// or cannot be read), for `/readyz`.
    pub fn unready(&self) -> Option<String> {
        self.inner.cluster.as_ref().and_then(|c| c.unready())
    }

    /// At shutdown, in cluster mode: gives up the leases this server holds, so that other
    /// servers take them at once instead of when they expire.
    pub async fn leave(&self) {
        if let Some(cluster) = &self.inner.cluster {
            cluster.leave().await;
        }
    }

    /// Whether this store is in cluster mode (on a shared log).
    pub fn is_clustered(&self) -> bool {
        self.inner.cluster.is_some()
    }

    /// Records of the shared log skipped as unreadable (cluster mode; zero otherwise).
    pub fn log_records_skipped(&self) -> u64 {
        self.inner.cluster.as_ref().map_or(0, |c| c.skipped.load(Ordering::Relaxed))
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
        let mut found = Vec::new();
        for head in selected.head {
            let uploads = head.chunk.canonical().into_uploads(&head.key);
            found
                .extend(uploads.into_iter().filter(|u| overlaps(from, until, u.meta.from, u.meta.until)).map(Arc::new));
        }
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
                    for (key, series) in &head.series {
                        if series.overlaps(from, until) && keep(key) {
                            selected.head.push(HeadChunk { key: key.clone(), chunk: series.chunk.snapshot() });
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
            let read = tokio::task::spawn_blocking(move || -> Result<Vec<HeadChunk>, WalError> {
                let mut found = Head::default();
                for (first, sealed, wanted) in on_disk {
                    let record = wal::read_sealed(&dir, first, sealed)?;
                    for upload in record.uploads {
                        if wanted.contains(&upload.meta.series) && overlaps(upload.meta.from, upload.meta.until) {
                            found.insert(upload, 0);
                        }
                    }
                }
                Ok(found.chunks().into_iter().map(|(key, chunk)| HeadChunk { key, chunk }).collect())
            });
            let found = read.await.map_err(|_| WalError::Stopped)??;
            let unpublished = {
                let state = self.inner.state.read().expect("state lock");
                sealed.iter().all(|s| state.frozen.iter().any(|f| f.sealed == *s))
            };
            if unpublished {
                selected.head.extend(found);
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
        self.series_between(i64::MIN, i64::MAX)
    }

    /// Every series key with uploads overlapping `[from, until]` (by the time span each
    /// series has in the head, a frozen head or a block: no data is read).
    pub fn series_between(&self, from: i64, until: i64) -> Vec<SeriesKey> {
        let state = self.inner.state.read().expect("state lock");
        let mut keys: HashSet<&SeriesKey> = HashSet::new();
        let within = |lo: i64, hi: i64| overlaps(from, until, lo, hi);
        for head in state.heads() {
            keys.extend(head.series.iter().filter(|(_, s)| within(s.min_time, s.max_time)).map(|(k, _)| k));
        }
        for (_, series) in state.on_disk() {
            keys.extend(series.iter().filter(|(_, s)| within(s.min_time, s.max_time)).map(|(k, _)| k));
        }
        for block in state.visible() {
            if within(block.meta.min_time, block.meta.max_time) {
                keys.extend(block.index.series.iter().filter(|e| within(e.min_time, e.max_time)).map(|e| &e.key));
            }
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
            for (key, series) in &head.series {
                add(key, series.uploads().len() as u64, series.max_time);
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
