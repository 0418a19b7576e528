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
