//! A short-lived cache of merged queries, so that one explorer page view merges its query
//! once: the server merges it while rendering the page (for the table and the timeline), and
//! the browser asks `/render?format=tree` for the same query a moment later (for the graph).
//!
//! An entry is reused only when all of these hold:
//! - same tenant, selector and query limits (so tenancy and limits apply as without the cache:
//!   the limits were checked by the merge that filled the entry, with the same limits);
//! - the tenant's stored uploads of the queried application(s) are unchanged (their count and
//!   newest time, read from the store's indexes without touching data): any new upload,
//!   retention or deletion makes the next query merge afresh;
//! - the entry is at most [`MergeCache::ttl`] old (5 s by default);
//! - the range is the same, or the same shifted later by at most the TTL on both ends: a
//!   relative range (`from=now-1h&until=now`) resolved again a moment later. Its answer then
//!   misses at most the TTL's worth of the range's newest seconds (and keeps as much of its
//!   oldest ones), which is never data uploaded after the entry was made (see above).
//!
//! Bounded in entries and in (estimated) bytes; the oldest entries go first. Two requests for
//! the same query at once (the browser fetching the table's data and the tree together) share
//! one merge: the second waits for the first's answer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_model::FlatTree;
use kiln_model::selector::Selector;
use tokio::sync::OnceCell;

use super::{MergeError, Merged, Query, QueryLimits, merge_cancellable};
use crate::storage::Store;
use crate::work::Cancel;

/// Default age past which an entry is never used.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// Default number of entries kept.
pub const DEFAULT_MAX_ENTRIES: usize = 16;
/// Default bound on the entries' estimated size.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// Merged answers of recent queries; see the module's documentation for when one is reused.
pub struct MergeCache {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    entries: Mutex<Vec<Arc<Entry>>>,
}

impl Default for MergeCache {
    fn default() -> Self {
        MergeCache::new(DEFAULT_TTL, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    }
}

/// What a query is besides its range: an entry answers only queries equal in all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    tenant: String,
    selector: Selector,
    one_app: bool,
    limits: QueryLimits,
    /// The selected applications' upload count and newest upload time when the entry was made.
    stored: (u64, i64),
}

struct Entry {
    key: Key,
    from: i64,
    until: i64,
    made: Instant,
    merged: OnceCell<Arc<Merged>>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.merged.get().map_or(0, |m| estimated_bytes(m))
    }
}

impl MergeCache {
    /// A cache keeping at most `max_entries` answers, about `max_bytes` in all, each used for
    /// at most `ttl`. `max_entries == 0` (or a zero `ttl`) turns it off.
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> MergeCache {
        MergeCache { ttl, max_entries, max_bytes, entries: Mutex::new(Vec::new()) }
    }

    /// How long an entry may be used.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// [`merge_cancellable`]'s answer to `query`, from a fresh enough entry when there is one.
    pub async fn merge(&self, store: &Store, query: &Query, cancel: &Cancel) -> Result<Arc<Merged>, MergeError> {
        if self.max_entries == 0 || self.ttl.is_zero() {
            return merge_cancellable(store, query, cancel).await.map(Arc::new);
        }
        let entry = self.entry_for(store, query);
        let answer = entry
            .merged
            .get_or_try_init(|| async { merge_cancellable(store, query, cancel).await.map(Arc::new) })
            .await;
        match answer {
            Ok(merged) => {
                let merged = merged.clone();
                self.trim();
                Ok(merged)
            }
            Err(e) => {
                // A refused or abandoned merge leaves no entry behind (a waiting request tries
                // again with its own deadline).
                self.entries
                    .lock()
                    .expect("merge cache lock")
                    .retain(|e| !Arc::ptr_eq(e, &entry) || e.merged.initialized());
                Err(e)
            }
        }
    }

    /// Entries held now (for tests).
    pub fn len(&self) -> usize {
        self.entries.lock().expect("merge cache lock").len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live entry answering `query`, or a new empty one in its place.
    fn entry_for(&self, store: &Store, query: &Query) -> Arc<Entry> {
        let key = Key {
            tenant: query.tenant.clone(),
            selector: query.selector.clone(),
            one_app: query.one_app,
            limits: query.limits,
            stored: stored_uploads(store, query),
        };
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut entries = self.entries.lock().expect("merge cache lock");
        entries.retain(|e| e.made.elapsed() <= self.ttl);
        let answers = |e: &Entry| {
            let shift = query.from.saturating_sub(e.from);
            e.key == key && query.until.saturating_sub(e.until) == shift && (0..=ttl_secs).contains(&shift)
        };
        // The newest first: it holds the newest data of a shifted range.
        if let Some(found) = entries.iter().rev().find(|e| answers(e)) {
            return found.clone();
        }
        let entry = Arc::new(Entry {
            key,
            from: query.from,
            until: query.until,
            made: Instant::now(),
            merged: OnceCell::new(),
        });
        entries.push(entry.clone());
        if entries.len() > self.max_entries {
            let excess = entries.len() - self.max_entries;
            entries.drain(..excess);
        }
        entry
    }

    /// Drops the oldest entries until the rest fit in the byte bound.
    fn trim(&self) {
        let mut entries = self.entries.lock().expect("merge cache lock");
        let mut bytes: usize = entries.iter().map(|e| e.bytes()).sum();
        while bytes > self.max_bytes && !entries.is_empty() {
            bytes -= entries.remove(0).bytes();
        }
    }
}

/// How many uploads the query's application(s) of its tenant have, and the newest one's time:
/// from the store's indexes, no data read. Changes with any upload, retention or deletion.
fn stored_uploads(store: &Store, query: &Query) -> (u64, i64) {
    store
        .apps(&query.tenant)
        .into_iter()
        .filter(|app| !query.one_app || app.name == query.selector.app)
        .fold((0, i64::MIN), |(uploads, newest), app| (uploads + app.uploads, newest.max(app.last_seen)))
}

/// Rough memory of a merged answer: its node columns, its names and its timeline.
fn estimated_bytes(merged: &Merged) -> usize {
    let FlatTree { names, name, parent, total, self_value } = &merged.tree;
    let node =
        size_of_val(&name[..]) + size_of_val(&parent[..]) + size_of_val(&total[..]) + size_of_val(&self_value[..]);
    let names: usize = names.iter().map(|n| n.len() + size_of::<String>()).sum();
    node + names + (merged.timeline.samples.len() + merged.timeline.uploads.len()) * size_of::<u64>()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kiln_model::CallTree;

    use super::*;
    use crate::storage::{DEFAULT_TENANT, ProfileMeta, SeriesKey, StoreConfig, Upload};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig { background: false, retention: Duration::ZERO, ..StoreConfig::new(dir.path()) };
        let store = Store::open_with(config).await.unwrap();
        (dir, store)
    }

    fn upload(tenant: &str, at: i64, stack: &[&str], value: u64) -> Upload {
        let mut tree = CallTree::new();
        tree.add_stack(stack.to_vec(), value);
        let mut series = SeriesKey::new("web", "cpu", BTreeMap::new());
        series.tenant = tenant.to_string();
        Upload {
            meta: ProfileMeta {
                series,
                from: at - 10,
                until: at,
                units: "samples".into(),
                sample_rate: 100,
                spy_name: "test".into(),
                aggregation: crate::storage::Aggregation::Sum,
            },
            tree: tree.to_flat(),
        }
    }

    fn query(tenant: &str, from: i64, until: i64) -> Query {
        Query::parse(tenant, "web.cpu", from, until).unwrap()
    }

    #[tokio::test]
    async fn a_query_asked_again_is_merged_once_until_an_upload_changes_it() {
        let (_dir, store) = store().await;
        store.append(vec![upload(DEFAULT_TENANT, 1000, &["main", "work"], 5)]).await.unwrap();
        let cache = MergeCache::default();
        let never = Cancel::never();
        let first = cache.merge(&store, &query(DEFAULT_TENANT, 0, 2000), &never).await.unwrap();
        let again = cache.merge(&store, &query(DEFAULT_TENANT, 0, 2000), &never).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same query within the TTL reuses the merge");
        // A relative range resolved a moment later: both ends shifted by the same few seconds.
        let shifted = cache.merge(&store, &query(DEFAULT_TENANT, 2, 2002), &never).await.unwrap();
        assert!(Arc::ptr_eq(&first, &shifted));
        // Another range, or ends shifted apart, is another query.
        let wider = cache.merge(&store, &query(DEFAULT_TENANT, 0, 2001), &never).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &wider));
        let earlier = cache.merge(&store, &query(DEFAULT_TENANT, -2, 1998), &never).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &earlier));
        // Far shifts are not the same view.
        let later = cache.merge(&store, &query(DEFAULT_TENANT, 100, 2100), &never).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &later));
        // A new upload is seen at once.
        store.append(vec![upload(DEFAULT_TENANT, 1500, &["main", "idle"], 7)]).await.unwrap();
        let after = cache.merge(&store, &query(DEFAULT_TENANT, 0, 2000), &never).await.unwrap();
        assert_eq!((first.tree.total(), after.tree.total()), (5, 12));
    }

    #[tokio::test]
    async fn tenants_and_limits_are_part_of_the_key() {
        let (_dir, store) = store().await;
        store
            .append(vec![upload(DEFAULT_TENANT, 1000, &["ours"], 5), upload("team-b", 1000, &["theirs"], 9)])
            .await
            .unwrap();
        let cache = MergeCache::default();
        let never = Cancel::never();
        let ours = cache.merge(&store, &query(DEFAULT_TENANT, 0, 2000), &never).await.unwrap();
        let theirs = cache.merge(&store, &query("team-b", 0, 2000), &never).await.unwrap();
        assert_eq!((ours.tree.total(), theirs.tree.total()), (5, 9));
        // Limits the cached merge passed do not let a stricter query through.
        let strict = QueryLimits { max_series: 0, ..QueryLimits::default() };
        let refused = cache.merge(&store, &query(DEFAULT_TENANT, 0, 2000).with_limits(strict), &never).await;
        assert!(matches!(refused, Err(MergeError::TooLarge(_))), "{refused:?}");
        assert_eq!(cache.len(), 2, "a refused query leaves no entry");
    }

    #[tokio::test]
    async fn entries_are_bounded_in_count_bytes_and_age() {
        let (_dir, store) = store().await;
        store.append(vec![upload(DEFAULT_TENANT, 1000, &["main"], 5)]).await.unwrap();
        let never = Cancel::never();
        let few = MergeCache::new(DEFAULT_TTL, 2, DEFAULT_MAX_BYTES);
        for until in 2000..2005 {
            few.merge(&store, &query(DEFAULT_TENANT, 0, until), &never).await.unwrap();
        }
        assert_eq!(few.len(), 2);
        let small = MergeCache::new(DEFAULT_TTL, 16, 1);
        small.merge(&store, &query(DEFAULT_TENANT, 0, 2000), &never).await.unwrap();
        assert!(small.is_empty(), "an answer over the byte bound is not kept");
        let brief = MergeCache::new(Duration::from_millis(1), 16, DEFAULT_MAX_BYTES);
        let first = brief.merge(&store, &query(DEFAULT_TENANT, 0, 2000), &never).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let again = brief.merge(&store, &query(DEFAULT_TENANT, 0, 2000), &never).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "an entry past its TTL is not used");
        let off = MergeCache::new(DEFAULT_TTL, 0, DEFAULT_MAX_BYTES);
        off.merge(&store, &query(DEFAULT_TENANT, 0, 2000), &never).await.unwrap();
        assert!(off.is_empty());
    }
}
