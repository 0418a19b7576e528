//! Cluster mode: the store on a [`SharedLog`] instead of its own write-ahead log.
//!
//! - **Ingest:** an upload, decoded once by the server that took it, is published as a log
//!   record in the write-ahead log's own record encoding, on its series' partition subject,
//!   its idempotency key as the log's dedupe key. It is acknowledged after the log's
//!   acknowledgement (and once this server has read it back, so its own queries see it).
//! - **Following:** every server reads the log in order and applies each record to its
//!   heads, one per partition (a hash of tenant and series): a record may hold series of
//!   several partitions (one request's profiles), and each goes to its own partition's head.
//!   So every server holds the same heads.
//! - **Cuts:** each partition is cut by one server at a time, the holder of its lease
//!   `cutter.<partition>`. When the partition's head is due, the holder publishes a *freeze*
//!   marker naming the partition; every server, reading the marker at the same place among
//!   the uploads, freezes that partition's head there, so all frozen heads hold exactly the
//!   partition's uploads before the marker. The holder writes the block (named by the
//!   marker's sequence, so a second writer after a lease change writes the same object; its
//!   meta records the partition and that sequence, the partition's *cut*), then publishes a
//!   *published* marker; every server swaps that frozen head for the block in one step. A
//!   server that lists the block before reading the marker does the same swap then.
//! - **Leases:** every server keeps a presence key (`member.<server>`) in the leases bucket,
//!   renewed like a lease; the live keys are the members. A server takes free partition
//!   leases while it holds fewer than its share (partitions / members, rounded up), and gives
//!   up what it holds beyond its share, so a server that starts gets some. One more lease,
//!   `maintenance`, lets its holder compact and expire the cluster's blocks. No membership
//!   code beyond that: the bucket's expiry is the failure detector.
//! - A server starting resumes each partition at its newest cut recorded in the blocks' metas:
//!   it reads the log from the oldest of those, and applies a partition's uploads only above
//!   its own cut.
//! - **Trimming:** the log is trimmed below the oldest, over partitions, of each partition's
//!   cut before its newest (a lagging reader still finds what it has not read). A partition
//!   that gets no uploads is cut empty now and then (a freeze marker with nothing before it,
//!   no block), so that it does not hold the trim point back.
//! - **Uploads larger than a record** of the log are written to the bucket first (under
//!   `uploads/cluster/`), and the log carries a *reference* to that object in their place;
//!   every server reads the object when it reads the reference. The object is deleted once
//!   the log is trimmed below its reference (nobody reads that record again), by the
//!   servers that trim.

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cluster::{CUTS, Entry, PARTITIONS, SharedLog, partition, upload_subject};
use super::maintenance::load_block;
use super::*;

/// The lease of one partition's cuts: this prefix and the partition.
const CUTTER_LEASE: &str = "cutter.";
/// The lease that lets one server compact and expire the cluster's blocks.
const MAINTENANCE_LEASE: &str = "maintenance";
/// A server's presence key: this prefix and its id.
const MEMBER: &str = "member.";
/// The writer folder of the cluster's blocks: one for all servers.
pub(super) const CLUSTER_WRITER: &str = "cluster";
/// How long an acknowledged upload may wait to be read back before it is answered anyway
/// (it is stored in the log either way).
const READ_BACK_WAIT: Duration = Duration::from_secs(5);
/// How long the reader of the log may read nothing before it checks whether it stalled.
const STALL_CHECK: Duration = Duration::from_secs(2);
/// Where records too large for the log wait in the bucket while the log carries a reference.
const REFERENCED: &str = "uploads/cluster";
/// How a reference record starts (then the object's path). No record of the write-ahead log's
/// encoding starts so: it would announce a payload of over a GiB.
const REFERENCE: &[u8] = b"kiln-ref:";
/// An object under `uploads/cluster/` that no reference this server read names is deleted
/// once it is this much older than the newest cut's trim could need (its publish failed, or
/// it was read by a server before this one).
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// What goes on the cuts subject.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "marker", rename_all = "lowercase")]
enum Marker {
    /// Freeze the partition's head here. Without a partition: a marker of a Kiln that cut
    /// every partition at once (its block, if written, is at or below every partition's
    /// resume point), ignored.
    Freeze {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<u64>,
    },
    /// The head frozen at the freeze marker `through` is the block whose meta is `meta`.
    Published {
        through: u64,
        meta: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<u64>,
    },
}

/// Each partition's newest cut in a block, and the one before (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PartitionCuts {
    pub newest: u64,
    pub before: u64,
}

impl PartitionCuts {
    /// Notes a newer cut (an older or repeated one changes nothing).
    fn note(&mut self, cut: u64) {
        if cut > self.newest {
            self.before = self.newest;
            self.newest = cut;
        } else if cut < self.newest && cut > self.before {
            self.before = cut;
        }
    }
}

/// The cluster side of a store.
pub(super) struct Cluster {
    pub log: Arc<dyn SharedLog>,
    /// Who this server is, in leases.
    pub server: String,
    /// The sequence of the last record applied to the heads.
    pub applied: watch::Sender<u64>,
    /// Per partition: its uploads up to this sequence were in blocks when this server
    /// started, and are not applied again.
    skip_through: Vec<u64>,
    /// The newest cut in the bucket at start: a log ending before it is a new one.
    bucket_newest: u64,
    /// The leases this server holds (partition leases, `maintenance`, its presence key), by
    /// name, with their revisions.
    leases: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Per partition: a freeze marker published and not yet read back.
    freeze_pending: Vec<AtomicU64>,
    /// Per partition: when this server last asked for a cut of it.
    asked_at: std::sync::Mutex<Vec<Option<Instant>>>,
    /// Per partition: its newest cut whose uploads are all in blocks, and the one before.
    cuts: std::sync::Mutex<Vec<PartitionCuts>>,
    /// The sequence of the last upload record applied (not a marker).
    last_upload: AtomicU64,
    /// The log is trimmed up to here (or, on a server that does not trim, its references
    /// up to here are forgotten).
    trimmed: AtomicU64,
    /// Records that could not be read (not Kiln's, or damaged) and were skipped.
    pub skipped: AtomicU64,
    /// Why following the log stopped, while it is stopped.
    follow_error: RwLock<Option<String>>,
    /// Why uploads are refused: the log ends before the newest cut in the bucket.
    behind: RwLock<Option<String>>,
    /// Shutting down: no lease is taken again.
    leaving: std::sync::atomic::AtomicBool,
    /// Objects of the references read from the log and not yet trimmed, by the reference's
    /// sequence.
    referenced: std::sync::Mutex<BTreeMap<u64, String>>,
    /// Names the objects of this server's references.
    next_reference: AtomicU64,
    /// When the bucket was last searched for objects no reference names (at most once per
    /// block duration: it is a listing).
    orphans_checked: std::sync::Mutex<Option<Instant>>,
}

fn lease_name(partition: u64) -> String {
    format!("{CUTTER_LEASE}{partition}")
}

/// Each partition's cuts, from the blocks in the bucket. A block without a partition
/// (written when one server cut every partition at once) covers every partition.
pub(super) fn cuts_in_blocks(state: &State) -> Vec<PartitionCuts> {
    let mut cuts = vec![PartitionCuts::default(); PARTITIONS as usize];
    for block in state.blocks.values() {
        let covered = cuts_covered(&block.meta);
        let partitions = match block.meta.partition {
            Some(p) if p < PARTITIONS => p..p + 1,
            Some(_) => continue,
            None => 0..PARTITIONS,
        };
        for p in partitions {
            for &cut in &covered {
                cuts[p as usize].note(cut);
            }
        }
    }
    cuts
}

impl Cluster {
    pub fn new(log: Arc<dyn SharedLog>, server: String, cuts: Vec<PartitionCuts>) -> Cluster {
        let skip_through: Vec<u64> = cuts.iter().map(|c| c.newest).collect();
        // Read from the oldest partition's newest cut: every partition resumes at its own.
        let resume_after = skip_through.iter().copied().min().unwrap_or(0);
        Cluster {
            log,
            server,
            applied: watch::channel(resume_after).0,
            bucket_newest: skip_through.iter().copied().max().unwrap_or(0),
            skip_through,
            leases: std::sync::Mutex::new(BTreeMap::new()),
            freeze_pending: (0..PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
            asked_at: std::sync::Mutex::new(vec![None; PARTITIONS as usize]),
            cuts: std::sync::Mutex::new(cuts),
            last_upload: AtomicU64::new(0),
            trimmed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            follow_error: RwLock::new(None),
            behind: RwLock::new(None),
            leaving: std::sync::atomic::AtomicBool::new(false),
            referenced: std::sync::Mutex::new(BTreeMap::new()),
            next_reference: AtomicU64::new(0),
            orphans_checked: std::sync::Mutex::new(None),
        }
    }

    /// Whether this server holds the lease of `partition` (it cuts that partition).
    pub fn cuts_partition(&self, partition: u64) -> bool {
        self.leases.lock().expect("lease lock").contains_key(&lease_name(partition))
    }

    /// The partitions whose lease this server holds.
    pub fn partitions_held(&self) -> Vec<u64> {
        let leases = self.leases.lock().expect("lease lock");
        (0..PARTITIONS).filter(|&p| leases.contains_key(&lease_name(p))).collect()
    }

    /// Whether this server holds the `maintenance` lease (it compacts and expires blocks).
    pub fn maintains(&self) -> bool {
        self.leases.lock().expect("lease lock").contains_key(MAINTENANCE_LEASE)
    }

    /// Gives up every lease this server holds at once (the lease task must not take them
    /// again: the store is being shut down).
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        let held = std::mem::take(&mut *self.leases.lock().expect("lease lock"));
        let releases =
            held.iter().map(|(name, &revision)| async move { (name, self.log.release(name, revision).await) });
        let mut failed = 0;
        for (name, released) in futures_util::future::join_all(releases).await {
            if let Err(e) = released {
                tracing::warn!(error = %e, lease = %name, "cannot give up a lease; it expires by itself");
                failed += 1;
            }
        }
        tracing::info!(server = %self.server, leases = held.len() - failed, "gave up its leases");
    }

    /// Why this server cannot take uploads or answer with every acknowledged one.
    pub fn unready(&self) -> Option<String> {
        self.log
            .unavailable()
            .or_else(|| self.behind.read().expect("behind lock").clone())
            .or_else(|| self.follow_error.read().expect("follow lock").clone())
    }

    /// Notes that every upload of `partition` up to `cut` is in blocks.
    fn note_cut(&self, partition: u64, cut: u64) {
        self.cuts.lock().expect("cuts lock")[partition as usize].note(cut);
    }

    /// Whether to search the bucket for unreferenced objects now (and note that it is done).
    fn orphans_due(&self, every: Duration) -> bool {
        let mut checked = self.orphans_checked.lock().expect("orphans lock");
        let due = checked.is_none_or(|at| at.elapsed() >= every);
        if due {
            *checked = Some(Instant::now());
        }
        due
    }

    /// Where the log may be trimmed: below the oldest, over partitions, of each partition's
    /// cut before its newest.
    fn trim_point(&self) -> u64 {
        self.cuts.lock().expect("cuts lock").iter().map(|c| c.before).min().unwrap_or(0)
    }
}

/// The cuts whose heads a cluster block holds: its own (a level-0 block is named by its cut),
/// or its inputs' (a compacted block).
pub(super) fn cuts_covered(meta: &BlockMeta) -> Vec<u64> {
    if meta.level == 0 {
        meta.stream_seq.into_iter().collect()
    } else {
        meta.compacted_from.iter().filter_map(|id| id.parse().ok()).collect()
    }
}

/// Publishes each group as one log record; returns how many groups were duplicates. A group
/// larger than a record goes to the bucket first, and the record is a reference to it: one
/// record either way, so a group is stored whole or not at all, and a retry is recognised by
/// its one key.
pub(super) async fn append(
    inner: &Inner,
    cluster: &Cluster,
    groups: Vec<KeyedUploads>,
    now: i64,
) -> Result<usize, StorageError> {
    if let Some(why) = cluster.behind.read().expect("behind lock").clone() {
        // Uploads published now would get sequences every server skips.
        return Err(StorageError::Log(super::cluster::LogError(why)));
    }
    let limit = cluster.log.max_record_bytes();
    let mut duplicates = 0;
    let mut newest = 0;
    for group in groups {
        let subject = upload_subject(group.uploads.first().map_or(0, |u| block::series_id(&u.meta.series)));
        let keys: Vec<(String, i64)> = group.key.iter().map(|k| (k.clone(), now)).collect();
        let encoded = wal::encode_record(&wal::Record { keys, uploads: group.uploads });
        let (payload, object) = if encoded.len() <= limit {
            (encoded, None)
        } else {
            let path = reference_path(cluster);
            // Like the log being unreachable: nothing stored, retry later (503).
            inner.objects.put(&ObjectPath::from(path.as_str()), PutPayload::from(encoded)).await.map_err(|e| {
                StorageError::Log(super::cluster::LogError(format!(
                    "an upload larger than a message goes to the bucket first, which failed: {e}"
                )))
            })?;
            ([REFERENCE, path.as_bytes()].concat(), Some(path))
        };
        // A failed publish keeps the object: the log may have stored the reference all the
        // same (an acknowledgement lost); an unreferenced object goes after `ORPHAN_AGE`.
        let published = cluster.log.publish(subject, payload, group.key.clone()).await.map_err(StorageError::Log)?;
        if published.duplicate {
            // The first publish's reference names its own object; this one is nobody's.
            if let Some(path) = object {
                delete_object(inner, &path).await;
            }
            if group.key.is_some() {
                duplicates += 1;
            }
        }
        newest = newest.max(published.seq);
    }
    // Read back before answering, so that this server's own queries see the upload.
    let mut applied = cluster.applied.subscribe();
    let _ = tokio::time::timeout(READ_BACK_WAIT, applied.wait_for(|&seq| seq >= newest)).await;
    Ok(duplicates)
}

/// A new object name for a record too large for the log: this server's id, the time and a
/// counter make it unique across servers and restarts.
fn reference_path(cluster: &Cluster) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = cluster.next_reference.fetch_add(1, Ordering::Relaxed);
    format!("{REFERENCED}/{}-{nanos}-{n}.rec", cluster.server)
}

async fn delete_object(inner: &Inner, path: &str) {
    match inner.objects.delete(&ObjectPath::from(path)).await {
        Err(e) if !is_not_found(&e) => {
            tracing::warn!(error = %e, object = path, "cannot delete an upload's object; a later trim retries")
        }
        _ => {}
    }
}

/// The record a reference names, read from the bucket; `None` if the reference is not one
/// of Kiln's or its object is gone. While the bucket is unreachable this waits (retrying):
/// skipping would lose the uploads on this server.
async fn read_referenced(inner: &Inner, path: &[u8]) -> Option<wal::Record> {
    let path = std::str::from_utf8(path).ok()?;
    // Anyone who may publish on the log could name any object: only ours are read (and
    // later deleted).
    let name = path.strip_prefix(REFERENCED)?.strip_prefix('/')?;
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let mut wait = Duration::from_millis(250);
    loop {
        let read = match inner.objects.get(&ObjectPath::from(path)).await {
            Ok(found) => found.bytes().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(bytes) => return wal::decode_record(&bytes),
            Err(e) if is_not_found(&e) => return None,
            Err(e) => {
                tracing::warn!(error = %e, object = path, "cannot read an upload the shared log refers to; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Reads the log into the head, forever: from the resume point, and after a failure from
/// the record after the last one applied.
pub(super) async fn follow(inner: Arc<Inner>) {
    let Some(cluster) = &inner.cluster else { return };
    loop {
        let from = *cluster.applied.borrow() + 1;
        // Sequences only grow: a log that ends before what this server has applied, or
        // before the newest cut in the bucket, is a new stream, whose records up to there
        // every server would skip. Refuse uploads until an operator sorts it out.
        let end = (from - 1).max(cluster.bucket_newest);
        match cluster.log.last_seq().await {
            Ok(last) if last < end => {
                let why = format!(
                    "the shared log ends at sequence {last}, before sequence {end} where the bucket's blocks end: was the stream deleted? Uploads are refused (see the operations guide)"
                );
                tracing::error!("{why}");
                *cluster.behind.write().expect("behind lock") = Some(why);
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Ok(_) => *cluster.behind.write().expect("behind lock") = None,
            Err(e) => tracing::debug!(error = %e, "cannot read where the shared log ends"),
        }
        match cluster.log.consume(from).await {
            Ok(mut entries) => {
                *cluster.follow_error.write().expect("follow lock") = None;
                loop {
                    match tokio::time::timeout(STALL_CHECK, entries.next()).await {
                        Ok(Some(Ok(entry))) => apply(&inner, cluster, entry).await,
                        Ok(Some(Err(e))) => {
                            tracing::warn!(error = %e, "reading the shared log failed; resuming");
                            break;
                        }
                        Ok(None) => break,
                        // Nothing read for a while: the log is idle, or the reader stalled
                        // without an error (seen when the NATS node serving it died: tens of
                        // seconds before the client noticed). Records beyond the last one
                        // read mean the latter: read again from there.
                        Err(_) => match cluster.log.last_seq().await {
                            Ok(last) if last > *cluster.applied.borrow() => {
                                tracing::info!(
                                    last,
                                    applied = *cluster.applied.borrow(),
                                    "reading the shared log stalled; reading again"
                                );
                                break;
                            }
                            _ => {}
                        },
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, from, "cannot read the shared log; retrying");
                *cluster.follow_error.write().expect("follow lock") = Some(format!("cannot read the shared log: {e}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn apply(inner: &Inner, cluster: &Cluster, entry: Entry) {
    if entry.seq <= *cluster.applied.borrow() {
        return;
    }
    let now = (inner.config.clock)();
    if entry.subject == CUTS {
        match serde_json::from_slice::<Marker>(&entry.payload) {
            Ok(Marker::Freeze { partition: Some(p) }) if p < PARTITIONS => freeze(inner, cluster, p, entry.seq),
            Ok(Marker::Freeze { partition: None }) => {
                tracing::debug!(seq = entry.seq, "ignoring a freeze marker without a partition")
            }
            Ok(Marker::Published { through, meta, partition }) => {
                if let Some(p) = partition.filter(|&p| p < PARTITIONS) {
                    cluster.note_cut(p, through);
                }
                swap_in(inner, through, &meta).await
            }
            Ok(Marker::Freeze { partition: Some(p) }) => skip(cluster, &entry, &format!("no partition {p}")),
            Err(e) => skip(cluster, &entry, &e.to_string()),
        }
    } else {
        let record = match entry.payload.strip_prefix(REFERENCE) {
            None => wal::decode_record(&entry.payload),
            Some(path) => {
                let record = read_referenced(inner, path).await;
                if record.is_some() {
                    let path = String::from_utf8_lossy(path).into_owned();
                    cluster.referenced.lock().expect("references lock").insert(entry.seq, path);
                }
                record
            }
        };
        match record {
            Some(record) => {
                let full = inner.config.head_max_bytes / PARTITIONS;
                let mut state = inner.state.write().expect("state lock");
                if apply_record(&mut state, record, entry.seq, &cluster.skip_through, now) >= full {
                    inner.head_full.notify_one();
                }
                cluster.last_upload.store(entry.seq, Ordering::Relaxed);
            }
            None => skip(cluster, &entry, "not a Kiln record, or damaged (or the object it refers to is gone)"),
        }
    }
    inner.state.write().expect("state lock").cluster_applied = Some(entry.seq);
    cluster.applied.send_replace(entry.seq);
}

/// Puts each upload of the record at `seq` into its partition's head, unless that partition
/// was cut at or after `seq` (`skip_through`: it is in a block). The record's idempotency keys
/// go with the head of its first upload's partition (its subject's). Returns the largest
/// size of a head it grew.
fn apply_record(state: &mut State, record: wal::Record, seq: u64, skip_through: &[u64], now: i64) -> u64 {
    let partition_of = |upload: &Upload| partition(block::series_id(&upload.meta.series)) as usize;
    let keys_partition = record.uploads.first().map(partition_of).filter(|&p| seq > skip_through[p]);
    let mut largest = 0;
    for upload in record.uploads {
        let p = partition_of(&upload);
        if seq > skip_through[p] {
            let head = &mut state.partitions[p];
            head.insert(upload, now);
            largest = largest.max(head.bytes);
        }
    }
    for (key, seen_at) in record.keys {
        state.remember(key.clone(), seen_at);
        if let Some(p) = keys_partition {
            state.partitions[p].keys.push((key, seen_at));
        }
    }
    largest
}

fn skip(cluster: &Cluster, entry: &Entry, why: &str) {
    let skipped = cluster.skipped.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(seq = entry.seq, subject = %entry.subject, bytes = entry.payload.len(), skipped, why, "skipping an unreadable record of the shared log");
}

/// Freezes `partition`'s head at its freeze marker `seq`: every upload of it before the
/// marker, on every server. If that block is already listed (this server is behind), the
/// head is dropped. An empty head has no block coming (its holder publishes none); when no
/// earlier head of the partition waits either, everything of it before `seq` is in blocks.
fn freeze(inner: &Inner, cluster: &Cluster, partition: u64, seq: u64) {
    let dropped = {
        let mut state = inner.state.write().expect("state lock");
        let head = std::mem::take(&mut state.partitions[partition as usize]);
        if head.is_empty() {
            if !state.frozen.iter().any(|f| f.partition == Some(partition)) {
                cluster.note_cut(partition, seq);
            }
            Some(head)
        } else if state.blocks.values().any(|b| {
            // Most blocks end below the marker: only those that do not are looked into.
            b.meta.stream_seq.is_some_and(|newest| newest >= seq) && cuts_covered(&b.meta).contains(&seq)
        }) {
            Some(head)
        } else {
            state.frozen.push_back(Arc::new(Frozen {
                first_segment: 0,
                sealed: seq,
                partition: Some(partition),
                data: FrozenData::InMemory(head),
            }));
            None
        }
    };
    drop(dropped);
    inner.frozen_ready.notify_one();
}

/// The block of the head frozen at `through` is published: load it and swap it for the
/// head. If it cannot be loaded now, the next listing does the swap.
async fn swap_in(inner: &Inner, through: u64, meta: &str) {
    let waiting = inner.state.read().expect("state lock").frozen.iter().any(|f| f.sealed == through);
    if !waiting {
        return;
    }
    match load_block(&inner.objects, &ObjectPath::from(meta)).await {
        Ok(block) => {
            let mut state = inner.state.write().expect("state lock");
            state.frozen.retain(|f| f.sealed != through);
            state.blocks.insert(meta.to_string(), Arc::new(block));
        }
        Err(e) => {
            tracing::warn!(error = %e, block = meta, "cannot load a block its partition's holder published; the next listing brings it")
        }
    }
}

/// Keeps this server's presence key and leases, renewing them well within their time to
/// live; takes free partition leases while this server holds fewer than its share, and gives
/// up those beyond it (so a server that starts gets some); takes the `maintenance` lease when
/// it is free.
pub(super) async fn hold_leases(inner: Arc<Inner>, ttl: Duration) {
    let Some(cluster) = &inner.cluster else { return };
    let member = format!("{MEMBER}{}", cluster.server);
    // Servers start at different partitions, so that they do not all race for the same ones.
    let first = u64::from_str_radix(cluster.server.get(..8).unwrap_or_default(), 16).unwrap_or(0) % PARTITIONS;
    let mut members = 1;
    while !cluster.leaving.load(Ordering::Relaxed) {
        // Renew what is held (or lost: then it is no longer acted on).
        let held: Vec<(String, u64)> =
            cluster.leases.lock().expect("lease lock").iter().map(|(n, &r)| (n.clone(), r)).collect();
        for (name, revision) in held {
            let renewed = match cluster.log.lease(&name, &cluster.server, Some(revision)).await {
                Ok(renewed) => renewed,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %name, "cannot renew a lease");
                    // Unrenewed, it expires on its own: stop acting on it before then.
                    None
                }
            };
            let mut leases = cluster.leases.lock().expect("lease lock");
            match renewed {
                Some(revision) => {
                    leases.insert(name, revision);
                }
                None => {
                    leases.remove(&name);
                    drop(leases);
                    tracing::info!(server = %cluster.server, lease = %name, "lost a lease");
                }
            }
        }
        if !cluster.leases.lock().expect("lease lock").contains_key(&member) {
            take(cluster, &member).await;
        }
        match cluster.log.leases_held(MEMBER).await {
            Ok(live) => members = live.len().max(1) as u64,
            Err(e) => tracing::debug!(error = %e, "cannot count the cluster's servers"),
        }
        let share = PARTITIONS.div_ceil(members);
        let mut mine = cluster.partitions_held();
        for p in (0..PARTITIONS).map(|i| (first + i) % PARTITIONS) {
            if mine.len() as u64 >= share || cluster.leaving.load(Ordering::Relaxed) {
                break;
            }
            if !mine.contains(&p) && take(cluster, &lease_name(p)).await {
                tracing::info!(server = %cluster.server, partition = p, "this server now cuts a partition's blocks");
                mine.push(p);
            }
        }
        // Beyond its share: give up partitions with no cut under way (their next holder
        // would finish it, but later).
        let mut surplus = (mine.len() as u64).saturating_sub(share);
        for p in mine.into_iter().rev() {
            if surplus == 0 {
                break;
            }
            let under_way = cluster.freeze_pending[p as usize].load(Ordering::Relaxed) > *cluster.applied.borrow()
                || inner.state.read().expect("state lock").frozen.iter().any(|f| f.partition == Some(p));
            if under_way {
                continue;
            }
            let name = lease_name(p);
            let Some(revision) = cluster.leases.lock().expect("lease lock").remove(&name) else { continue };
            match cluster.log.release(&name, revision).await {
                Ok(()) => {
                    tracing::info!(server = %cluster.server, partition = p, members, "gave up a partition to another server")
                }
                Err(e) => tracing::debug!(error = %e, partition = p, "cannot give up a lease; it expires by itself"),
            }
            surplus -= 1;
        }
        if !cluster.maintains() && take(cluster, MAINTENANCE_LEASE).await {
            tracing::info!(server = %cluster.server, "this server now compacts and expires the cluster's blocks");
        }
        if cluster.leaving.load(Ordering::Relaxed) {
            // Taken while the leases were being given up: give these up too.
            cluster.leave().await;
            return;
        }
        inner.frozen_ready.notify_one();
        tokio::time::sleep(ttl / 4).await;
    }
}

/// Takes the lease `name` if it is free; whether this server holds it now.
async fn take(cluster: &Cluster, name: &str) -> bool {
    match cluster.log.lease(name, &cluster.server, None).await {
        Ok(Some(revision)) => {
            cluster.leases.lock().expect("lease lock").insert(name.to_string(), revision);
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::debug!(error = %e, lease = name, "cannot take a lease");
            false
        }
    }
}

/// The part of a cut of `partition` that its lease holder does: publish a freeze marker
/// (once the previous one is read back).
pub(super) async fn request_cut(cluster: &Cluster, partition: u64) -> Result<(), StorageError> {
    let pending = &cluster.freeze_pending[partition as usize];
    if !cluster.cuts_partition(partition) || pending.load(Ordering::Relaxed) > *cluster.applied.borrow() {
        return Ok(());
    }
    let marker = serde_json::to_vec(&Marker::Freeze { partition: Some(partition) }).expect("marker serializes");
    let published = cluster.log.publish(CUTS.to_string(), marker, None).await.map_err(StorageError::Log)?;
    pending.store(published.seq, Ordering::Relaxed);
    cluster.asked_at.lock().expect("asked lock")[partition as usize] = Some(Instant::now());
    Ok(())
}

/// Asks for a cut of every partition this server holds whose head is due (old or large
/// enough), and of those that got no upload since their newest cut while the log moved on
/// (an empty cut, so that they do not hold the trim point back).
pub(super) async fn cut_when_due(inner: &Inner, cluster: &Cluster, now: i64) {
    let config = &inner.config;
    let full = config.head_max_bytes / PARTITIONS;
    let last_upload = cluster.last_upload.load(Ordering::Relaxed);
    for p in cluster.partitions_held() {
        let due = {
            let state = inner.state.read().expect("state lock");
            let head = &state.partitions[p as usize];
            let age = head.first_at.map_or(0, |t| now.saturating_sub(t));
            if head.is_empty() {
                let asked = cluster.asked_at.lock().expect("asked lock")[p as usize];
                let idle = asked.is_none_or(|at| at.elapsed() >= config.block_duration);
                idle && last_upload > cluster.cuts.lock().expect("cuts lock")[p as usize].newest
                    && !state.frozen.iter().any(|f| f.partition == Some(p))
            } else {
                head.bytes >= full || age >= config.block_duration.as_secs() as i64
            }
        };
        if due && let Err(e) = request_cut(cluster, p).await {
            tracing::warn!(error = %e, partition = p, "cannot ask the cluster to cut a partition's heads; retrying");
            return;
        }
    }
}

/// Cuts every partition this server holds whose head holds anything, and waits for the
/// freeze markers to be read back (the frozen heads are then this server's to write).
pub(super) async fn flush(inner: &Inner, cluster: &Cluster) -> Result<(), StorageError> {
    for p in cluster.partitions_held() {
        if inner.state.read().expect("state lock").partitions[p as usize].is_empty() {
            continue;
        }
        request_cut(cluster, p).await?;
        let pending = cluster.freeze_pending[p as usize].load(Ordering::Relaxed);
        let mut applied = cluster.applied.subscribe();
        let read_back = applied.wait_for(|&seq| seq >= pending);
        if tokio::time::timeout(Duration::from_secs(10), read_back).await.is_err() {
            return Err(StorageError::Log(super::cluster::LogError(
                "the freeze marker was not read back in time".into(),
            )));
        }
    }
    Ok(())
}

/// After the block of `partition`'s head frozen at `through` is in the bucket: tell every
/// server.
pub(super) async fn published(cluster: &Cluster, partition: u64, through: u64, meta: &str) {
    let marker = Marker::Published { through, meta: meta.to_string(), partition: Some(partition) };
    let marker = serde_json::to_vec(&marker).expect("marker serializes");
    if let Err(e) = cluster.log.publish(CUTS.to_string(), marker, None).await {
        tracing::warn!(error = %e, "cannot announce a published block; other servers find it in their next listing");
    }
}

/// Trims the log below the trim point once it has moved (any lease holder does: trimming is
/// idempotent), and deletes the objects of references trimmed. A server without a lease only
/// forgets those references.
pub(super) async fn trim(inner: &Inner, cluster: &Cluster) {
    let trim = cluster.trim_point();
    if trim <= cluster.trimmed.load(Ordering::Relaxed) {
        return;
    }
    let holder = !cluster.leases.lock().expect("lease lock").keys().all(|name| name.starts_with(MEMBER));
    if holder && let Err(e) = cluster.log.trim_below(trim + 1).await {
        tracing::warn!(error = %e, "cannot trim the shared log; retrying");
        return;
    }
    cluster.trimmed.store(trim, Ordering::Relaxed);
    let trimmed: Vec<String> = {
        let mut referenced = cluster.referenced.lock().expect("references lock");
        let kept = referenced.split_off(&(trim + 1));
        std::mem::replace(&mut *referenced, kept).into_values().collect()
    };
    if !holder {
        return;
    }
    for path in &trimmed {
        delete_object(inner, path).await;
    }
    if cluster.maintains() && cluster.orphans_due(inner.config.block_duration) {
        delete_orphans(inner, cluster).await;
    }
}

/// Deletes objects under `uploads/cluster/` that no reference read by this server names and
/// that are older than any untrimmed record could be (two block durations) plus `ORPHAN_AGE`.
async fn delete_orphans(inner: &Inner, cluster: &Cluster) {
    let known: HashSet<String> = cluster.referenced.lock().expect("references lock").values().cloned().collect();
    let oldest_kept = crate::timespec::now_unix()
        - i64::try_from((inner.config.block_duration * 2 + ORPHAN_AGE).as_secs()).unwrap_or(i64::MAX / 2);
    let prefix = ObjectPath::from(REFERENCED);
    let mut listing = inner.objects.list(Some(&prefix));
    let mut orphans = Vec::new();
    while let Some(item) = listing.next().await {
        match item {
            Ok(item) if item.last_modified.timestamp() < oldest_kept && !known.contains(item.location.as_ref()) => {
                orphans.push(item.location.to_string())
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot list uploads' objects; retrying at the next cut");
                return;
            }
        }
    }
    for path in &orphans {
        delete_object(inner, path).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_block(level: u32, stream_seq: u64, partition: Option<u64>, compacted_from: &[u64]) -> Arc<LoadedBlock> {
        let meta = BlockMeta {
            version: block::VERSION,
            id: format!("{stream_seq:020}"),
            writer: CLUSTER_WRITER.into(),
            min_time: 0,
            max_time: 0,
            data_len: 0,
            series: 0,
            uploads: 0,
            level,
            wal_segment: 0,
            compacted_from: compacted_from.iter().map(|c| format!("{c:020}")).collect(),
            idempotency_keys: Vec::new(),
            stream_seq: Some(stream_seq),
            partition,
            cut_by: None,
        };
        Arc::new(LoadedBlock {
            meta,
            data: ObjectPath::from("x"),
            index: BlockIndex::default(),
            known_since: Instant::now(),
        })
    }

    #[test]
    fn each_partition_resumes_at_its_own_cut() {
        let mut state = State::default();
        for (name, block) in [
            // Cut before partitions: covers every partition up to 10.
            ("a", cluster_block(0, 10, None, &[])),
            ("b", cluster_block(0, 20, Some(1), &[])),
            ("c", cluster_block(0, 30, Some(1), &[])),
            // A compacted block covers its inputs' cuts.
            ("d", cluster_block(1, 50, Some(2), &[40, 50])),
            ("e", cluster_block(0, 45, Some(17), &[])),
        ] {
            state.blocks.insert(name.into(), block);
        }
        let cuts = cuts_in_blocks(&state);
        assert_eq!(cuts[0], PartitionCuts { newest: 10, before: 0 });
        assert_eq!(cuts[1], PartitionCuts { newest: 30, before: 20 });
        assert_eq!(cuts[2], PartitionCuts { newest: 50, before: 40 });
        assert_eq!(cuts[3], PartitionCuts { newest: 10, before: 0 }, "a partition number out of range is ignored");
        // Cuts noted out of order (an empty cut read before the published marker of the
        // block before it) keep the newest two.
        let mut cut = PartitionCuts { newest: 30, before: 20 };
        cut.note(50);
        cut.note(40);
        cut.note(30);
        assert_eq!(cut, PartitionCuts { newest: 50, before: 40 });
    }

    #[test]
    fn a_record_s_series_go_to_their_partitions_above_their_cuts() {
        let series = |app: &str| SeriesKey::new(app, "cpu", BTreeMap::new());
        // Two series in different partitions.
        let (a, b) = (
            "app-a",
            (0..100)
                .map(|i| format!("app-{i}"))
                .find(|b| partition(block::series_id(&series(b))) != partition(block::series_id(&series("app-a"))))
                .unwrap(),
        );
        let (pa, pb) =
            (partition(block::series_id(&series(a))) as usize, partition(block::series_id(&series(&b))) as usize);
        let record = || wal::Record {
            keys: vec![("k".into(), 1)],
            uploads: vec![
                super::super::tests::upload(a, &[(&["main"], 1)], 100),
                super::super::tests::upload(&b, &[(&["main"], 1)], 100),
            ],
        };
        let mut state = State { partitions: (0..PARTITIONS).map(|_| Head::default()).collect(), ..State::default() };
        let mut skip = vec![0; PARTITIONS as usize];
        apply_record(&mut state, record(), 5, &skip, 0);
        assert_eq!(state.partitions[pa].series.len(), 1);
        assert_eq!(state.partitions[pb].series.len(), 1);
        assert_eq!(state.partitions[pa].keys.len(), 1, "the keys go with the first upload's partition");
        assert!(state.partitions[pb].keys.is_empty());
        // Partition a was cut at 6 (its uploads up to there are in a block), b was not.
        skip[pa] = 6;
        let mut state = State { partitions: (0..PARTITIONS).map(|_| Head::default()).collect(), ..State::default() };
        apply_record(&mut state, record(), 5, &skip, 0);
        assert!(state.partitions[pa].is_empty());
        assert_eq!(state.partitions[pb].series.len(), 1);
        assert!(state.seen.contains_key("k"), "a key is remembered either way");
    }

    #[test]
    fn markers_read_back() {
        let published =
            Marker::Published { through: 42, meta: "blocks/cluster/x.meta.json".into(), partition: Some(3) };
        let bytes = serde_json::to_vec(&published).unwrap();
        assert!(matches!(
            serde_json::from_slice::<Marker>(&bytes).unwrap(),
            Marker::Published { through: 42, meta, partition: Some(3) } if meta == "blocks/cluster/x.meta.json"
        ));
        let freeze = serde_json::to_vec(&Marker::Freeze { partition: Some(5) }).unwrap();
        assert!(matches!(serde_json::from_slice::<Marker>(&freeze).unwrap(), Marker::Freeze { partition: Some(5) }));
        // Markers of a Kiln that cut every partition at once still read.
        assert!(matches!(
            serde_json::from_slice::<Marker>(br#"{"marker":"freeze"}"#).unwrap(),
            Marker::Freeze { partition: None }
        ));
        assert!(matches!(
            serde_json::from_slice::<Marker>(br#"{"marker":"published","through":7,"meta":"m"}"#).unwrap(),
            Marker::Published { through: 7, partition: None, .. }
        ));
        assert!(serde_json::from_slice::<Marker>(br#"{"marker":"explode"}"#).is_err());
    }
}
