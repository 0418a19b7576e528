//! The background work that keeps the store in shape: cutting the head when due, publishing
//! frozen heads as blocks (and replaying those still in the log), loading the blocks other
//! writers publish, and deleting blocks.

use super::*;

/// Cuts the active head into a frozen one when it is due (old or big enough). Apart from
/// publishing: cutting needs only the local log, so it goes on while the object store is
/// unreachable, and frozen heads beyond the few kept in memory leave it.
pub(super) async fn cut_when_due(inner: Arc<Inner>) {
    let config = &inner.config;
    let tick = config.refresh_interval.min(Duration::from_secs(1)).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = inner.head_full.notified() => {}
        }
        let now = (config.clock)();
        if let Some(cluster) = &inner.cluster {
            // Every server freezes a partition's head where its holder's marker lands in the log.
            follow::cut_when_due(&inner, cluster, now).await;
            continue;
        }
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
pub(super) async fn maintain(inner: Arc<Inner>) {
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
        let pending = next_to_publish(&inner).is_some();
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
        if let Some(cluster) = &inner.cluster {
            follow::trim(&inner, cluster).await;
        }
        if last_refresh.elapsed() >= config.refresh_interval {
            last_refresh = Instant::now();
            let dedupe_from = now - config.dedupe_window.as_secs() as i64;
            inner.state.write().expect("state lock").seen.retain(|_, seen_at| *seen_at > dedupe_from);
            if let Err(e) = refresh_blocks(&inner.objects, &inner.state).await {
                tracing::warn!(error = %e, "listing blocks failed");
            }
            // In cluster mode one server compacts and expires the blocks: the `maintenance`
            // lease's holder.
            if !inner.cluster.as_ref().is_none_or(|c| c.maintains()) {
                continue;
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

pub(super) fn block_paths(writer: &str, id: &str) -> (ObjectPath, ObjectPath) {
    (
        ObjectPath::from(format!("{BLOCKS}/{writer}/{id}.data")),
        ObjectPath::from(format!("{BLOCKS}/{writer}/{id}{META_SUFFIX}")),
    )
}

/// Writes a block's data object, then its meta; returns it as loaded.
/// What a block is written from.
pub(super) enum BlockContents {
    /// A frozen head's series, already over one stack tree each.
    Series(Vec<(SeriesKey, Arc<Chunk>)>),
    /// Uploads read back (from the log, or from blocks being compacted).
    Uploads(Vec<Upload>),
}

impl BlockContents {
    fn is_empty(&self) -> bool {
        match self {
            BlockContents::Series(series) => series.iter().all(|(_, c)| c.uploads.is_empty()),
            BlockContents::Uploads(uploads) => uploads.is_empty(),
        }
    }

    fn encode(self) -> (Vec<u8>, BlockIndex, block::Footer) {
        match self {
            BlockContents::Series(series) => block::encode_series(series),
            BlockContents::Uploads(uploads) => block::encode(&uploads),
        }
    }
}

/// Cluster mode: where a block's uploads were cut from the shared log.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClusterCut {
    /// The freeze marker (a compacted block: its newest input's).
    pub stream_seq: u64,
    /// The partition (`None` only for a compacted block of blocks cut before partitions).
    pub partition: Option<u64>,
}

pub(super) async fn publish(
    inner: &Inner,
    contents: BlockContents,
    level: u32,
    wal_segment: u64,
    compacted_from: Vec<String>,
    idempotency_keys: Vec<(String, i64)>,
    cut: Option<ClusterCut>,
) -> Result<(String, Arc<LoadedBlock>), StorageError> {
    let (bytes, index, footer) = tokio::task::spawn_blocking(move || contents.encode())
        .await
        .map_err(|e| StorageError::Config(format!("block encoder panicked: {e}")))?;
    // A cluster block is named by its cut, so that a partition's next holder (after a lease change)
    // writes the same object instead of a second copy.
    let id = match cut {
        Some(cut) if level == 0 => format!("{:020}", cut.stream_seq),
        _ => new_block_id(),
    };
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
        stream_seq: cut.map(|c| c.stream_seq),
        partition: cut.and_then(|c| c.partition),
        cut_by: inner.cluster.as_ref().map(|c| c.server.clone()),
    };
    let (data, meta_path) = block_paths(&inner.writer, &id);
    inner.objects.put(&data, PutPayload::from(bytes)).await?;
    let meta_json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
    inner.objects.put(&meta_path, PutPayload::from(meta_json)).await?;
    tracing::info!(block = %id, series = meta.series, uploads = meta.uploads, bytes = meta.data_len, level, "published block");
    Ok((meta_path.to_string(), Arc::new(LoadedBlock { meta, data, index, known_since: Instant::now() })))
}

pub(super) async fn flush(inner: &Inner) -> Result<usize, StorageError> {
    if let Some(cluster) = &inner.cluster {
        // Only a partition's lease holder cuts it, through a marker every server reads.
        follow::flush(inner, cluster).await?;
        let _one_at_a_time = inner.maintenance.lock().await;
        return publish_frozen(inner).await;
    }
    let _one_at_a_time = inner.maintenance.lock().await;
    if !inner.state.read().expect("state lock").active.is_empty() {
        inner.wal.rotate().await?;
    }
    publish_frozen(inner).await
}

/// Publishes every frozen head, oldest first, and deletes its log segments; returns how
/// many blocks were written. The caller holds the maintenance lock. A head held only on
/// disk is read back from its segments first, one at a time.
pub(super) async fn publish_frozen(inner: &Inner) -> Result<usize, StorageError> {
    let mut written = 0;
    loop {
        let Some(frozen) = next_to_publish(inner) else {
            return Ok(written);
        };
        let (contents, keys) = match &frozen.data {
            FrozenData::InMemory(head) => (BlockContents::Series(head.chunks()), head.keys.clone()),
            FrozenData::OnDisk(_) => {
                let (dir, first, sealed) = (inner.wal_dir.clone(), frozen.first_segment, frozen.sealed);
                let record = tokio::task::spawn_blocking(move || wal::read_sealed(&dir, first, sealed))
                    .await
                    .map_err(|_| WalError::Stopped)??;
                (BlockContents::Uploads(record.uploads), record.keys)
            }
        };
        let published = if contents.is_empty() {
            None
        } else {
            let cut =
                inner.cluster.as_ref().map(|_| ClusterCut { stream_seq: frozen.sealed, partition: frozen.partition });
            let wal_segment = if inner.cluster.is_some() { 0 } else { frozen.sealed };
            Some(publish(inner, contents, 0, wal_segment, Vec::new(), keys, cut).await?)
        };
        let meta_path = published.as_ref().map(|(key, _)| key.clone());
        {
            // One step for readers: the block appears and its head goes.
            let mut state = inner.state.write().expect("state lock");
            if let Some((key, block)) = published {
                state.blocks.insert(key, block);
                written += 1;
            }
            state.frozen.retain(|f| f.sealed != frozen.sealed);
        }
        match &inner.cluster {
            Some(cluster) => {
                if let (Some(meta), Some(partition)) = (meta_path, frozen.partition) {
                    follow::published(cluster, partition, frozen.sealed, &meta).await;
                }
            }
            None => wal::delete_through(&inner.wal_dir, frozen.sealed)?,
        }
    }
}

/// The oldest frozen head this server writes: any (one server), or the oldest of a partition
/// whose lease it holds (cluster mode; the others' holders write theirs).
fn next_to_publish(inner: &Inner) -> Option<Arc<Frozen>> {
    let state = inner.state.read().expect("state lock");
    match &inner.cluster {
        None => state.frozen.front().cloned(),
        Some(cluster) => {
            let held = cluster.partitions_held();
            state.frozen.iter().find(|f| f.partition.is_some_and(|p| held.contains(&p))).cloned()
        }
    }
}

/// At start: the log segments no block covers become frozen heads (consecutive segments
/// grouped up to about `head_max_bytes`), published by the background task. Only the first
/// few stay in memory, so a restart after a long outage does not load the whole log.
pub(super) fn replay_frozen(
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
pub(super) async fn load_block(
    objects: &Arc<dyn ObjectStore>,
    meta_path: &ObjectPath,
) -> Result<LoadedBlock, StorageError> {
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

pub(super) async fn refresh_blocks(objects: &Arc<dyn ObjectStore>, state: &RwLock<State>) -> Result<(), StorageError> {
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
    if let Some(applied) = state.cluster_applied {
        // Cluster mode: a block cut at a marker this server has not read yet would count its
        // uploads twice (they are in its head); it is taken once the marker is read. One cut
        // at a marker already read replaces the head frozen there.
        loaded.retain(|(_, block)| block.meta.stream_seq.is_none_or(|seq| seq <= applied));
        let cuts: HashSet<u64> = loaded.iter().flat_map(|(_, b)| follow::cuts_covered(&b.meta)).collect();
        state.frozen.retain(|f| !cuts.contains(&f.sealed));
    }
    for (_, block) in &loaded {
        for (key, seen_at) in &block.meta.idempotency_keys {
            state.remember(key.clone(), *seen_at);
        }
    }
    state.blocks.extend(loaded);
    Ok(())
}

/// Deletes a block: meta first (so it stops existing), then data.
pub(super) async fn delete_block(inner: &Inner, meta_path: &str, block: &LoadedBlock) -> Result<(), StorageError> {
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
