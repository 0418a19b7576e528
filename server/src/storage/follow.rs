//! Cluster mode: the store on a [`SharedLog`] instead of its own write-ahead log.
//!
//! - **Ingest:** an upload, decoded once by the server that took it, is published as a log
//!   record in the write-ahead log's own record encoding, on its series' partition subject,
//!   its idempotency key as the log's dedupe key. It is acknowledged after the log's
//!   acknowledgement (and once this server has read it back, so its own queries see it).
//! - **Following:** every server reads the log in order from the sequence after its newest
//!   block and applies each record to its head, so every server holds the same head.
//! - **Cuts:** one server at a time holds the `cutter` lease. When the head is due, it
//!   publishes a *freeze* marker; every server, reading the marker at the same place among
//!   the uploads, freezes its head there, so all frozen heads hold exactly the records
//!   before the marker. The lease holder writes the block (named by the marker's sequence,
//!   so a second writer after a lease change writes the same object), then publishes a
//!   *published* marker; every server swaps that frozen head for the block in one step.
//!   A server that lists the block before reading the marker does the same swap then. The
//!   log is trimmed one cut behind (a lagging reader still finds what it has not read).
//! - A server starting resumes from the newest cut recorded in the blocks' metas.
//! - **Uploads larger than a record** of the log are written to the bucket first (under
//!   `uploads/cluster/`), and the log carries a *reference* to that object in their place;
//!   every server reads the object when it reads the reference. The object is deleted once
//!   the log is trimmed below its reference (nobody reads that record again), by the
//!   server that trims.

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cluster::{CUTS, Entry, SharedLog, upload_subject};
use super::maintenance::load_block;
use super::*;

/// The lease that lets one server cut, compact and expire the cluster's blocks.
const CUTTER_LEASE: &str = "cutter";
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
/// it was read by a cutter before this one).
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// What goes on the cuts subject.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "marker", rename_all = "lowercase")]
enum Marker {
    /// Freeze the head here.
    Freeze,
    /// The head frozen at the freeze marker `through` is the block whose meta is `meta`.
    Published { through: u64, meta: String },
}

/// The cluster side of a store.
pub(super) struct Cluster {
    pub log: Arc<dyn SharedLog>,
    /// Who this server is, in the lease.
    pub server: String,
    /// The sequence of the last record applied to the head.
    pub applied: watch::Sender<u64>,
    /// The cutter lease's revision while this server holds it.
    pub lease: std::sync::Mutex<Option<u64>>,
    /// A freeze marker published and not yet read back.
    pub freeze_pending: AtomicU64,
    /// The freeze marker of the newest published block, and the one before (the log is
    /// trimmed below the one before).
    cuts: std::sync::Mutex<(u64, u64)>,
    /// Records that could not be read (not Kiln's, or damaged) and were skipped.
    pub skipped: AtomicU64,
    /// Why following the log stopped, while it is stopped.
    follow_error: RwLock<Option<String>>,
    /// Why uploads are refused: the log ends before the newest cut in the bucket.
    behind: RwLock<Option<String>>,
    /// Shutting down: the lease is not taken again.
    leaving: std::sync::atomic::AtomicBool,
    /// Objects of the references read from the log and not yet trimmed, by the reference's
    /// sequence.
    referenced: std::sync::Mutex<BTreeMap<u64, String>>,
    /// The cut of the last published marker read (references below the one before it are
    /// trimmed: a server that does not trim forgets them then).
    last_published: AtomicU64,
    /// Names the objects of this server's references.
    next_reference: AtomicU64,
}

impl Cluster {
    pub fn new(log: Arc<dyn SharedLog>, server: String, resume_after: u64) -> Cluster {
        Cluster {
            log,
            server,
            applied: watch::channel(resume_after).0,
            lease: std::sync::Mutex::new(None),
            freeze_pending: AtomicU64::new(0),
            cuts: std::sync::Mutex::new((resume_after, resume_after)),
            skipped: AtomicU64::new(0),
            follow_error: RwLock::new(None),
            behind: RwLock::new(None),
            leaving: std::sync::atomic::AtomicBool::new(false),
            referenced: std::sync::Mutex::new(BTreeMap::new()),
            last_published: AtomicU64::new(resume_after),
            next_reference: AtomicU64::new(0),
        }
    }

    /// Whether this server holds the cutter lease.
    pub fn is_cutter(&self) -> bool {
        self.lease.lock().expect("lease lock").is_some()
    }

    /// Gives up the cutter lease, if held (the lease task must not take it again: the store
    /// is being shut down).
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        let held = self.lease.lock().expect("lease lock").take();
        if let Some(revision) = held {
            match self.log.release(CUTTER_LEASE, revision).await {
                Ok(()) => tracing::info!(server = %self.server, "gave up the cutter lease"),
                Err(e) => tracing::warn!(error = %e, "cannot give up the cutter lease; it expires by itself"),
            }
        }
    }

    /// Why this server cannot take uploads or answer with every acknowledged one.
    pub fn unready(&self) -> Option<String> {
        self.log
            .unavailable()
            .or_else(|| self.behind.read().expect("behind lock").clone())
            .or_else(|| self.follow_error.read().expect("follow lock").clone())
    }
}

/// The sequence after which a starting server resumes: the newest cut in a block.
pub(super) fn resume_point(state: &State) -> u64 {
    state.blocks.values().filter_map(|b| b.meta.stream_seq).max().unwrap_or(0)
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
        // Sequences only grow: a log that ends before what this server has applied (the
        // newest cut in the bucket, at start) is a new stream, whose records up to there
        // every server would skip. Refuse uploads until an operator sorts it out.
        match cluster.log.last_seq().await {
            Ok(last) if last < from - 1 => {
                let why = format!(
                    "the shared log ends at sequence {last}, before sequence {} where the bucket's blocks end: was the stream deleted? Uploads are refused (see the operations guide)",
                    from - 1
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
            Ok(Marker::Freeze) => freeze(inner, entry.seq),
            Ok(Marker::Published { through, meta }) => {
                let before = cluster.last_published.swap(through, Ordering::Relaxed);
                if !cluster.is_cutter() {
                    // The cutter trims the log below `before`, and deletes those references'
                    // objects.
                    cluster.referenced.lock().expect("references lock").retain(|&seq, _| seq > before);
                }
                swap_in(inner, through, &meta).await
            }
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
                let mut state = inner.state.write().expect("state lock");
                state.apply(record, now);
                if state.active.bytes >= inner.config.head_max_bytes {
                    inner.head_full.notify_one();
                }
            }
            None => skip(cluster, &entry, "not a Kiln record, or damaged (or the object it refers to is gone)"),
        }
    }
    inner.state.write().expect("state lock").cluster_applied = Some(entry.seq);
    cluster.applied.send_replace(entry.seq);
}

fn skip(cluster: &Cluster, entry: &Entry, why: &str) {
    let skipped = cluster.skipped.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(seq = entry.seq, subject = %entry.subject, bytes = entry.payload.len(), skipped, why, "skipping an unreadable record of the shared log");
}

/// Freezes the active head at the freeze marker `seq`: every record before it, on every
/// server. If that block is already listed (this server is behind), the head is dropped.
fn freeze(inner: &Inner, seq: u64) {
    let dropped = {
        let mut state = inner.state.write().expect("state lock");
        let head = std::mem::take(&mut state.active);
        let first = std::mem::replace(&mut state.active_first_segment, seq + 1);
        // An empty head has no block coming (the cutter publishes none for it).
        if head.is_empty() || state.blocks.values().any(|b| cuts_covered(&b.meta).contains(&seq)) {
            Some(head)
        } else {
            state.frozen.push_back(Arc::new(Frozen {
                first_segment: first,
                sealed: seq,
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
            tracing::warn!(error = %e, block = meta, "cannot load a block the cutter published; the next listing brings it")
        }
    }
}

/// Keeps (or takes) the cutter lease, renewing it well within its time to live.
pub(super) async fn hold_lease(inner: Arc<Inner>, ttl: Duration) {
    let Some(cluster) = &inner.cluster else { return };
    while !cluster.leaving.load(Ordering::Relaxed) {
        let held = *cluster.lease.lock().expect("lease lock");
        let next = match cluster.log.lease(CUTTER_LEASE, &cluster.server, held).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the cutter lease");
                // Unrenewed, it expires on its own: stop acting as the cutter before then.
                None
            }
        };
        if next.is_some() != held.is_some() {
            if next.is_some() {
                tracing::info!(server = %cluster.server, "this server now cuts the cluster's blocks");
            } else {
                tracing::info!(server = %cluster.server, "this server no longer cuts the cluster's blocks");
            }
        }
        if cluster.leaving.load(Ordering::Relaxed) {
            // Taken while the lease was being given up: give this one up too.
            if let Some(revision) = next {
                let _ = cluster.log.release(CUTTER_LEASE, revision).await;
            }
            return;
        }
        *cluster.lease.lock().expect("lease lock") = next;
        if next.is_some() {
            inner.frozen_ready.notify_one();
        }
        tokio::time::sleep(ttl / 4).await;
    }
}

/// The cutter's part of a cut: publish a freeze marker (once the previous one is read back).
pub(super) async fn request_cut(cluster: &Cluster) -> Result<(), StorageError> {
    if !cluster.is_cutter() || cluster.freeze_pending.load(Ordering::Relaxed) > *cluster.applied.borrow() {
        return Ok(());
    }
    let marker = serde_json::to_vec(&Marker::Freeze).expect("marker serializes");
    let published = cluster.log.publish(CUTS.to_string(), marker, None).await.map_err(StorageError::Log)?;
    cluster.freeze_pending.store(published.seq, Ordering::Relaxed);
    Ok(())
}

/// After the block of the head frozen at `through` is in the bucket: tell every server, and
/// trim the log below the cut before it (and delete the objects of references trimmed).
pub(super) async fn published(inner: &Inner, cluster: &Cluster, through: u64, meta: &str) {
    let marker = serde_json::to_vec(&Marker::Published { through, meta: meta.to_string() }).expect("marker serializes");
    if let Err(e) = cluster.log.publish(CUTS.to_string(), marker, None).await {
        tracing::warn!(error = %e, "cannot announce a published block; other servers find it in their next listing");
    }
    let trim = {
        let mut cuts = cluster.cuts.lock().expect("cuts lock");
        *cuts = (through, cuts.0);
        cuts.1
    };
    if trim == 0 {
        return;
    }
    if let Err(e) = cluster.log.trim_below(trim + 1).await {
        tracing::warn!(error = %e, "cannot trim the shared log; retrying at the next cut");
        return;
    }
    let trimmed: Vec<String> = {
        let mut referenced = cluster.referenced.lock().expect("references lock");
        let kept = referenced.split_off(&(trim + 1));
        std::mem::replace(&mut *referenced, kept).into_values().collect()
    };
    for path in &trimmed {
        delete_object(inner, path).await;
    }
    delete_orphans(inner, cluster).await;
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

    #[test]
    fn markers_read_back() {
        let published = Marker::Published { through: 42, meta: "blocks/cluster/x.meta.json".into() };
        let bytes = serde_json::to_vec(&published).unwrap();
        assert!(matches!(
            serde_json::from_slice::<Marker>(&bytes).unwrap(),
            Marker::Published { through: 42, meta } if meta == "blocks/cluster/x.meta.json"
        ));
        assert!(matches!(serde_json::from_slice::<Marker>(br#"{"marker":"freeze"}"#).unwrap(), Marker::Freeze));
        assert!(serde_json::from_slice::<Marker>(br#"{"marker":"explode"}"#).is_err());
    }
}
