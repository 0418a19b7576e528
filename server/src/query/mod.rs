//! Queries: pick the series a selector names, merge their uploads in a time range into one
//! call tree.

mod source;

use std::collections::BTreeSet;
use std::sync::Arc;

use kiln_model::selector::{MatchOp, Matcher, Selector};
use kiln_model::{CallTree, FlatTree};

use crate::storage::{Aggregation, SeriesKey, StorageError, Store, Upload};

pub use source::StoreSource;

/// A query that cannot be answered as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// A label matcher ready to evaluate: regular expressions compiled once per query.
#[derive(Debug, Clone)]
enum CompiledMatcher {
    Eq(String, String),
    NotEq(String, String),
    Regex(String, regex::Regex),
    NotRegex(String, regex::Regex),
}

impl CompiledMatcher {
    fn compile(m: &Matcher) -> Result<CompiledMatcher, QueryError> {
        let regex = || {
            // Anchored like Prometheus: `env=~"prod"` does not match `preprod`.
            regex::Regex::new(&format!("^(?:{})$", m.value)).map_err(|e| {
                let reason = e.to_string();
                let reason = reason.lines().last().unwrap_or("invalid").trim();
                QueryError(format!("label `{}`: invalid regular expression `{}`: {reason}", m.name, m.value))
            })
        };
        Ok(match m.op {
            MatchOp::Eq => CompiledMatcher::Eq(m.name.clone(), m.value.clone()),
            MatchOp::NotEq => CompiledMatcher::NotEq(m.name.clone(), m.value.clone()),
            MatchOp::Regex => CompiledMatcher::Regex(m.name.clone(), regex()?),
            MatchOp::NotRegex => CompiledMatcher::NotRegex(m.name.clone(), regex()?),
        })
    }

    /// A missing label reads as the empty string, as in Prometheus: `env=""` and `env!~".+"`
    /// select series without `env`.
    fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        let value = |name: &str| labels.get(name).map(String::as_str).unwrap_or("");
        match self {
            CompiledMatcher::Eq(name, v) => value(name) == v,
            CompiledMatcher::NotEq(name, v) => value(name) != v,
            CompiledMatcher::Regex(name, re) => re.is_match(value(name)),
            CompiledMatcher::NotRegex(name, re) => !re.is_match(value(name)),
        }
    }
}

/// A parsed query: whose, which series, which time range.
#[derive(Debug, Clone)]
pub struct Query {
    /// The tenant whose series it reads; no query crosses tenants.
    pub tenant: String,
    /// Application, type and label matchers.
    pub selector: Selector,
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive.
    pub until: i64,
    matchers: Vec<CompiledMatcher>,
}

impl Query {
    /// Parses `app.type{matchers}` (or Pyroscope 1.x's `process_cpu:cpu:…{service_name="app"}`,
    /// see [`Selector::parse_query`]) over `[from, until)`, in `tenant`'s data.
    pub fn parse(tenant: &str, text: &str, from: i64, until: i64) -> Result<Query, QueryError> {
        let selector = Selector::parse_query(text).map_err(|e| QueryError(format!("query `{text}`: {e}")))?;
        let matchers = selector.matchers.iter().map(CompiledMatcher::compile).collect::<Result<_, _>>()?;
        if from >= until {
            return Err(QueryError(format!("`from` ({from}) must be before `until` ({until})")));
        }
        Ok(Query { tenant: tenant.to_string(), selector, from, until, matchers })
    }

    /// True when `key` belongs to the query's tenant and application (and type, when named)
    /// and its labels match.
    pub fn selects(&self, key: &SeriesKey) -> bool {
        key.tenant == self.tenant
            && key.app == self.selector.app
            && self.selector.profile_type.as_ref().is_none_or(|t| *t == key.profile_type)
            && self.labels_match(key)
    }

    /// True when every label matcher accepts `key`'s labels.
    pub fn labels_match(&self, key: &SeriesKey) -> bool {
        self.matchers.iter().all(|m| m.matches(&key.labels))
    }
}

/// The series of `tenant` a (possibly absent or empty) query selects; all of the tenant's
/// without one.
pub fn select_series(store: &Store, tenant: &str, text: Option<&str>) -> Result<Vec<SeriesKey>, QueryError> {
    let series: Vec<SeriesKey> = store.series().into_iter().filter(|key| key.tenant == tenant).collect();
    let Some(text) = text.filter(|q| !q.trim().is_empty()) else {
        return Ok(series);
    };
    let query = Query::parse(tenant, text, i64::MIN, i64::MAX)?;
    Ok(series.into_iter().filter(|key| query.selects(key)).collect())
}

/// Label names over the selected series, `__name__` (the series name) first.
pub fn label_names(store: &Store, tenant: &str, text: Option<&str>) -> Result<Vec<String>, QueryError> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for key in select_series(store, tenant, text)? {
        names.extend(key.labels.into_keys());
    }
    Ok(std::iter::once("__name__".to_string()).chain(names).collect())
}

/// Values of `label` over the selected series; for `__name__`, the `app.type` names.
pub fn label_values(store: &Store, tenant: &str, label: &str, text: Option<&str>) -> Result<Vec<String>, QueryError> {
    let mut values = BTreeSet::new();
    for key in select_series(store, tenant, text)? {
        if label == "__name__" {
            values.insert(format!("{}.{}", key.app, key.profile_type));
        } else if let Some(v) = key.labels.get(label) {
            values.insert(v.clone());
        }
    }
    Ok(values.into_iter().collect())
}

/// The profile type a query means when it names none: CPU if the app has it, else the first.
fn default_profile_type(store: &Store, tenant: &str, app: &str) -> Option<String> {
    let types: BTreeSet<String> =
        store.series().into_iter().filter(|k| k.tenant == tenant && k.app == app).map(|k| k.profile_type).collect();
    if types.contains("cpu") { Some("cpu".into()) } else { types.into_iter().next() }
}

/// A query's answer: the merged tree, its units and a timeline.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Every selected upload merged by frame name.
    pub tree: FlatTree,
    /// The profile type that was merged (`None` when the app has no data).
    pub profile_type: Option<String>,
    /// Sample unit of the series (`samples`, `nanoseconds`, `bytes`, …).
    pub units: String,
    /// Samples per second, for converting samples to CPU time.
    pub sample_rate: u32,
    /// Agent that sent the newest upload.
    pub spy_name: String,
    /// Total value per time step.
    pub timeline: Timeline,
}

/// Value per time step over the query's range.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timeline {
    /// Unix seconds of the first step.
    pub start_time: i64,
    /// Seconds per step.
    pub step: i64,
    /// Sum of the uploads starting in each step.
    pub samples: Vec<u64>,
}

/// At most this many timeline points; never steps below ten seconds (agents' interval).
const MAX_TIMELINE_POINTS: i64 = 1000;
const MIN_STEP: i64 = 10;

fn timeline(uploads: &[&Arc<Upload>], from: i64, until: i64) -> Timeline {
    // An open range is narrowed to the data it holds.
    let from = if from == i64::MIN { uploads.iter().map(|u| u.meta.from).min().unwrap_or(0) } else { from };
    let until = if until == i64::MAX { uploads.iter().map(|u| u.meta.until).max().unwrap_or(from) + 1 } else { until };
    let span = until.saturating_sub(from).max(1);
    let step = ((span + MAX_TIMELINE_POINTS - 1) / MAX_TIMELINE_POINTS).max(MIN_STEP);
    let start_time = from.div_euclid(step) * step;
    let points = ((until - start_time + step - 1) / step).max(1) as usize;
    let mut samples = vec![0u64; points];
    for upload in uploads {
        let index = (upload.meta.from.max(start_time) - start_time) / step;
        if let Some(slot) = samples.get_mut(index as usize) {
            *slot += upload.tree.total();
        }
    }
    Timeline { start_time, step, samples }
}

/// Merges every upload the query selects into one tree, with its timeline.
pub async fn merge(store: &Store, query: &Query) -> Result<Merged, StorageError> {
    let app = &query.selector.app;
    let profile_type = query.selector.profile_type.clone().or_else(|| default_profile_type(store, &query.tenant, app));
    let uploads = match &profile_type {
        Some(ty) => {
            store
                .select(query.from, query.until, |key| {
                    key.tenant == query.tenant && key.app == *app && key.profile_type == *ty && query.labels_match(key)
                })
                .await?
        }
        None => Vec::new(),
    };
    let mut in_range: Vec<&Arc<Upload>> = uploads.iter().collect();
    in_range.sort_by_key(|u| (u.meta.from, u.meta.until));
    let mut tree = CallTree::new();
    let averaged = in_range.iter().filter(|u| u.meta.aggregation == Aggregation::Average).count() as u64;
    for upload in &in_range {
        match upload.meta.aggregation {
            Aggregation::Sum => tree.merge_flat(&upload.tree),
            Aggregation::Average => tree.merge_flat_scaled(&upload.tree, 1, averaged),
        }
    }
    let newest = in_range.last();
    Ok(Merged {
        tree: tree.to_flat(),
        profile_type,
        units: newest.map_or_else(|| "samples".into(), |u| u.meta.units.clone()),
        sample_rate: newest.map_or(100, |u| u.meta.sample_rate),
        spy_name: newest.map_or_else(String::new, |u| u.meta.spy_name.clone()),
        timeline: timeline(&in_range, query.from, query.until),
    })
}

/// Runs a storage future to completion from synchronous code (the app's `ProfileSource`
/// is synchronous; blocks are read asynchronously).
pub(crate) fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        // A single-threaded runtime cannot lend its thread: drive the future on another one.
        Ok(handle) => {
            std::thread::scope(|scope| scope.spawn(|| handle.block_on(future)).join().expect("storage read panicked"))
        }
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for a storage read")
            .block_on(future),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::storage::DEFAULT_TENANT;

    fn key(app: &str, ty: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new(app, ty, labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn matchers_select_series() {
        let prod_eu = key("web", "cpu", &[("env", "prod"), ("region", "eu-1")]);
        let preprod_us = key("web", "cpu", &[("env", "preprod"), ("region", "us-1")]);
        let bare = key("web", "cpu", &[]);
        let alloc = key("web", "alloc_space", &[("env", "prod")]);
        let other_app = key("api", "cpu", &[("env", "prod")]);
        let all = [&prod_eu, &preprod_us, &bare, &alloc, &other_app];
        // query → which of `all` it selects
        let table: &[(&str, [bool; 5])] = &[
            ("web", [true, true, true, true, false]),
            ("web.cpu", [true, true, true, false, false]),
            (r#"web.cpu{env="prod"}"#, [true, false, false, false, false]),
            (r#"web.cpu{env!="prod"}"#, [false, true, true, false, false]),
            // Anchored: `prod` does not match `preprod`.
            (r#"web.cpu{env=~"prod"}"#, [true, false, false, false, false]),
            (r#"web.cpu{env=~".*prod"}"#, [true, true, false, false, false]),
            (r#"web.cpu{env!~"pre.*"}"#, [true, false, true, false, false]),
            (r#"web.cpu{region=~"eu-.*|us-.*"}"#, [true, true, false, false, false]),
            // A missing label is the empty string.
            (r#"web.cpu{env=""}"#, [false, false, true, false, false]),
            (r#"web.cpu{env=~".*"}"#, [true, true, true, false, false]),
            (r#"web.cpu{env=~".+"}"#, [true, true, false, false, false]),
            (r#"web.cpu{env!~".+"}"#, [false, false, true, false, false]),
            (r#"web.cpu{missing!="x"}"#, [true, true, true, false, false]),
            (r#"web.cpu{env=~"prod",region!~"us.*"}"#, [true, false, false, false, false]),
            (r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="web"}"#, [true, true, true, false, false]),
            (
                r#"memory:alloc_space:bytes:space:bytes{service_name="web",env="prod"}"#,
                [false, false, false, true, false],
            ),
            (
                r#"process_cpu:samples:count:cpu:nanoseconds{service_name="api",env=~"p.*"}"#,
                [false, false, false, false, true],
            ),
        ];
        let mut other_tenant = prod_eu.clone();
        other_tenant.tenant = "team-b".into();
        assert!(!Query::parse(DEFAULT_TENANT, "web", 0, 1).unwrap().selects(&other_tenant));
        assert!(Query::parse("team-b", "web", 0, 1).unwrap().selects(&other_tenant));
        assert!(!Query::parse("team-b", "web", 0, 1).unwrap().selects(&prod_eu));
        for (text, expected) in table {
            let query = Query::parse(DEFAULT_TENANT, text, 0, 1).unwrap();
            let got: Vec<bool> = all.iter().map(|k| query.selects(k)).collect();
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn bad_regular_expressions_name_the_label_and_pattern() {
        let err = Query::parse(DEFAULT_TENANT, r#"web{region=~"eu-(",env="x"}"#, 0, 1).unwrap_err();
        assert!(err.0.contains("label `region`") && err.0.contains("`eu-(`"), "{err}");
        let err = Query::parse(DEFAULT_TENANT, r#"web{env!~"[z-a]"}"#, 0, 1).unwrap_err();
        assert!(err.0.contains("label `env`"), "{err}");
    }
}
