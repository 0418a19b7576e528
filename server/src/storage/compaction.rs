//! Compaction (a writer merges its own level-0 blocks of one finished window), the cleanup of
//! unpublished data objects, and retention.

use super::block::ChunkBuilder;
use super::maintenance::{BlockContents, ClusterCut, delete_block, publish};
use super::*;

/// A block as listed: its meta's path and the block.
type Listed = (String, Arc<LoadedBlock>);

pub(super) async fn compact(inner: &Inner, now: i64) -> Result<usize, StorageError> {
    let _one_at_a_time = inner.maintenance.lock().await;
    let window = inner.config.compaction_window.as_secs().max(1) as i64;
    let settle = inner.config.block_duration.as_secs() as i64;
    let (replaced, groups) = {
        let state = inner.state.read().expect("state lock");
        let visible: HashSet<&str> = state.visible().map(|b| b.meta.id.as_str()).collect();
        let own = state.blocks.iter().filter(|(_, b)| b.meta.writer == inner.writer);
        let mut replaced = Vec::new();
        // By window and (cluster mode) partition: a compacted block holds one partition, as
        // the blocks it replaces do.
        let mut groups: BTreeMap<(i64, Option<u64>), Vec<Listed>> = BTreeMap::new();
        for (path, block) in own {
            if !visible.contains(block.meta.id.as_str()) {
                replaced.push((path.clone(), block.clone()));
            } else if block.meta.level == 0 {
                let start = block.meta.min_time.div_euclid(window);
                // Only finished windows: no block of it can still be on its way.
                if (start + 1) * window + settle <= now {
                    groups.entry((start, block.meta.partition)).or_default().push((path.clone(), block.clone()));
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
    for ((_, partition), group) in groups.into_iter().filter(|(_, g)| g.len() >= 2) {
        // Chunks of one series from several blocks join one stack tree: no tree per upload.
        let mut series: BTreeMap<SeriesKey, ChunkBuilder> = BTreeMap::new();
        let mut inputs = Vec::new();
        for (path, block) in group {
            let bytes = inner.objects.get(&block.data).await?.bytes().await?;
            match block::decode_series(&bytes) {
                Ok((index, chunks)) => {
                    for (entry, chunk) in index.series.into_iter().zip(chunks) {
                        series.entry(entry.key).or_default().add_chunk(&chunk);
                    }
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
        let series = series.into_iter().map(|(key, builder)| (key, builder.snapshot())).collect();
        let cut = inputs
            .iter()
            .filter_map(|(_, b)| b.meta.stream_seq)
            .max()
            .map(|stream_seq| ClusterCut { stream_seq, partition });
        let (key, block) = publish(inner, BlockContents::Series(series), 1, wal_segment, ids, keys, cut).await?;
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
pub(super) async fn delete_orphans(inner: &Inner) -> Result<(), StorageError> {
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

pub(super) async fn apply_retention(inner: &Inner, now: i64) -> Result<usize, StorageError> {
    if inner.config.retention.is_zero() {
        return Ok(0);
    }
    let cutoff = now.saturating_sub(inner.config.retention.as_secs() as i64);
    let expired: Vec<(String, Arc<LoadedBlock>)> = {
        let mut state = inner.state.write().expect("state lock");
        // Cluster mode: the partitions' heads stay as they are, the same on every server
        // (they are cut within a block duration, and their blocks expire then).
        for series in state.active.series.values_mut() {
            series.chunk.retain_uploads(|u| u.until >= cutoff);
        }
        state.active.series.retain(|_, series| !series.uploads().is_empty());
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
