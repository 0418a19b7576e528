//! The store end to end, read through `query::merge`: what queries answer after cuts,
//! restarts, crashes, compaction, retention, damage and outages.

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
        uploads.push(labelled("a", env, &[(&["main", leaf.as_str()], 1 + i as u64), (&["main"], 2)], 100 + i * 100));
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
        state.heads().flat_map(|h| h.series.values()).map(|s| s.uploads().len()).sum::<usize>()
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
