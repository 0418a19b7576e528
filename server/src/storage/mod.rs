//! Storage: where parsed uploads go and merged trees come from.
//!
//! The narrow interface is [`Store::append`] (parsed profiles in, durable before it returns)
//! and [`Store::select`] (the stored profiles of the series a query picks). Behind it:
//!
//! - [`wal`]: every upload is framed, checksummed and appended to a log file, and the file is
//!   fsynced before the append is acknowledged. Concurrent uploads share one fsync (group
//!   commit: one writer thread drains every queued upload, writes them, syncs once).
//! - the head: every acknowledged upload, in memory, grouped by series. It is rebuilt from the
//!   log at start, so a restart (or a `kill -9`) loses nothing that was acknowledged.

mod wal;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use kiln_model::FlatTree;
use serde::{Deserialize, Serialize};

pub use wal::WalError;

/// A series: one application's profiles of one type with one label set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Application name.
    pub app: String,
    /// Profile type (`cpu`, `alloc_space`, …).
    pub profile_type: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
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
}

#[derive(Default)]
struct Head {
    series: HashMap<SeriesKey, Vec<Arc<Upload>>>,
}

impl Head {
    fn insert(&mut self, upload: Upload) {
        self.series.entry(upload.meta.series.clone()).or_default().push(Arc::new(upload));
    }
}

/// The store: write-ahead log plus in-memory head.
pub struct Store {
    dir: PathBuf,
    head: Arc<RwLock<Head>>,
    wal: wal::WalWriter,
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

impl Store {
    /// Opens (or creates) the store in `dir`, replaying the log into the head.
    pub fn open(dir: &Path) -> Result<Store, StorageError> {
        std::fs::create_dir_all(dir).map_err(WalError::Io)?;
        let head = Arc::new(RwLock::new(Head::default()));
        let log_path = dir.join("wal.log");
        let replayed = wal::replay(&log_path)?;
        {
            let mut head = head.write().expect("head lock");
            for upload in replayed {
                head.insert(upload);
            }
        }
        let sink_head = head.clone();
        let wal = wal::WalWriter::start(&log_path, move |uploads| {
            let mut head = sink_head.write().expect("head lock");
            for upload in uploads {
                head.insert(upload);
            }
        })?;
        Ok(Store { dir: dir.to_path_buf(), head, wal })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores uploads durably: when this returns `Ok`, they are fsynced and queryable.
    /// All of them are stored or none (they are one log record).
    pub async fn append(&self, uploads: Vec<Upload>) -> Result<(), StorageError> {
        if uploads.is_empty() {
            return Ok(());
        }
        Ok(self.wal.append(uploads).await?)
    }

    /// Every stored upload of the series that `keep` accepts.
    pub fn select(&self, mut keep: impl FnMut(&SeriesKey) -> bool) -> Vec<Arc<Upload>> {
        let head = self.head.read().expect("head lock");
        head.series.iter().filter(|(key, _)| keep(key)).flat_map(|(_, uploads)| uploads.iter().cloned()).collect()
    }

    /// Every series key.
    pub fn series(&self) -> Vec<SeriesKey> {
        self.head.read().expect("head lock").series.keys().cloned().collect()
    }

    /// Applications with their types, labels and last upload.
    pub fn apps(&self) -> Vec<AppInfo> {
        let head = self.head.read().expect("head lock");
        let mut apps: BTreeMap<&str, AppInfo> = BTreeMap::new();
        for (key, uploads) in &head.series {
            let info = apps.entry(&key.app).or_insert_with(|| AppInfo {
                name: key.app.clone(),
                profile_types: BTreeSet::new(),
                label_names: BTreeSet::new(),
                last_seen: i64::MIN,
                uploads: 0,
            });
            info.profile_types.insert(key.profile_type.clone());
            info.label_names.extend(key.labels.keys().cloned());
            info.uploads += uploads.len() as u64;
            info.last_seen = uploads.iter().map(|u| u.meta.until).fold(info.last_seen, i64::max);
        }
        let mut list: Vec<AppInfo> = apps.into_values().collect();
        list.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.name.cmp(&b.name)));
        list
    }
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
                series: SeriesKey { app: app.into(), profile_type: "cpu".into(), labels: BTreeMap::new() },
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

    #[tokio::test]
    async fn appended_uploads_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = upload("a", &[(&["main", "f"], 3)], 100);
        let second = upload("b", &[(&["main"], 2)], 200);
        {
            let store = Store::open(dir.path()).unwrap();
            store.append(vec![first.clone()]).await.unwrap();
            store.append(vec![second.clone()]).await.unwrap();
            assert_eq!(store.select(|_| true).len(), 2);
        }
        let store = Store::open(dir.path()).unwrap();
        let mut got: Vec<Upload> = store.select(|_| true).iter().map(|u| (**u).clone()).collect();
        got.sort_by_key(|u| u.meta.until);
        assert_eq!(got, vec![first, second]);
        let apps = store.apps();
        assert_eq!(apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
    }

    #[tokio::test]
    async fn concurrent_appends_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.append(vec![upload("a", &[(&["x"], 1)], i)]).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let total: u64 = store.select(|_| true).iter().map(|u| u.tree.total()).sum();
        assert_eq!(total, 50);
    }
}
