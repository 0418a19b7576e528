//! Counting without reading: what a query would fetch (for the query limits), and which
//! series each tenant has active (for the per-tenant series limit).

use std::collections::HashSet;

use super::{SeriesKey, Store, overlaps};

/// What [`Store::select_chunks`] would read for the same arguments, counted from the head and
/// the cached block indexes, before any byte is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadPlan {
    /// Distinct series with data in the range (head or blocks).
    pub series: usize,
    /// Compressed block chunk bytes to fetch.
    pub chunk_bytes: u64,
}

impl Store {
    /// Counts what `select_chunks(from, until, keep)` would select and fetch.
    pub fn plan_reads(&self, from: i64, until: i64, mut keep: impl FnMut(&SeriesKey) -> bool) -> ReadPlan {
        let state = self.inner.state.read().expect("state lock");
        let mut series: HashSet<&SeriesKey> = HashSet::new();
        let mut chunk_bytes = 0u64;
        for head in state.heads() {
            for (key, held) in &head.series {
                if held.overlaps(from, until) && keep(key) {
                    series.insert(key);
                }
            }
        }
        for block in state.visible() {
            if !overlaps(from, until, block.meta.min_time, block.meta.max_time) {
                continue;
            }
            for entry in &block.index.series {
                if overlaps(from, until, entry.min_time, entry.max_time) && keep(&entry.key) {
                    series.insert(&entry.key);
                    chunk_bytes = chunk_bytes.saturating_add(entry.len);
                }
            }
        }
        ReadPlan { series: series.len(), chunk_bytes }
    }

    /// Of `keys` (all of `tenant`), the new series that do not fit under `limit` active series
    /// of the tenant; the others may be stored.
    ///
    /// A series is active while it has uploads in the head, that is since the last cut into a
    /// block (`--block-duration`) and until that block is published, like the in-memory
    /// series Mimir and Pyroscope ingesters count. Series already active always fit, so a
    /// tenant at its limit keeps its existing series flowing. Requests checked at the same
    /// moment may together pass the limit by the new series each of them carries.
    pub fn series_beyond_limit<'a>(
        &self,
        tenant: &str,
        keys: impl IntoIterator<Item = &'a SeriesKey>,
        limit: usize,
    ) -> HashSet<SeriesKey> {
        let state = self.inner.state.read().expect("state lock");
        let is_active = |key: &SeriesKey| state.heads().any(|head| head.series.contains_key(key));
        let (mut new, mut seen): (Vec<&SeriesKey>, HashSet<&SeriesKey>) = Default::default();
        for key in keys {
            if !is_active(key) && seen.insert(key) {
                new.push(key);
            }
        }
        if new.is_empty() {
            return HashSet::new();
        }
        // Only requests that bring a new series pay for the count.
        let active: HashSet<&SeriesKey> =
            state.heads().flat_map(|head| head.series.keys()).filter(|key| key.tenant == tenant).collect();
        let room = limit.saturating_sub(active.len());
        new.into_iter().skip(room).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::storage::StoreConfig;
    use crate::storage::tests::upload;

    fn key(app: &str, tenant: &str) -> SeriesKey {
        SeriesKey { tenant: tenant.into(), ..SeriesKey::new(app, "cpu", BTreeMap::new()) }
    }

    #[tokio::test]
    async fn reads_are_counted_before_fetching_and_series_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            StoreConfig { background: false, retention: std::time::Duration::ZERO, ..StoreConfig::new(dir.path()) };
        let store = Store::open_with(config).await.unwrap();
        store.append(vec![upload("a", &[(&["main"], 1)], 100), upload("b", &[(&["main"], 1)], 100)]).await.unwrap();
        store.flush().await.unwrap();
        store.append(vec![upload("a", &[(&["main"], 1)], 200)]).await.unwrap();
        let all = store.plan_reads(i64::MIN, i64::MAX, |_| true);
        assert_eq!(all.series, 2);
        assert!(all.chunk_bytes > 0);
        let head_only = store.plan_reads(150, 300, |_| true);
        assert_eq!(head_only, ReadPlan { series: 1, chunk_bytes: 0 });
        assert_eq!(store.plan_reads(i64::MIN, i64::MAX, |k| k.app == "b").series, 1);

        // Active: `a` (in the head). One more fits under 2, the next does not; `a` always fits.
        let default = crate::storage::DEFAULT_TENANT;
        let (a, b, c) = (key("a", default), key("b", default), key("c", default));
        assert!(store.series_beyond_limit(default, [&a], 1).is_empty());
        assert_eq!(store.series_beyond_limit(default, [&a, &b, &c, &b], 2), HashSet::from([c.clone()]));
        assert_eq!(store.series_beyond_limit(default, [&b], 1), HashSet::from([b.clone()]));
        // Another tenant has its own count.
        assert!(store.series_beyond_limit("team-b", [&key("x", "team-b")], 1).is_empty());
    }
}
