//! Queries: pick the series a selector names, merge their uploads in a time range into one
//! call tree.

mod cache;
mod limits;
mod source;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kiln_model::selector::{MatchOp, Matcher, SERVICE_NAME_LABEL, Selector, parse_label_selector, profile_type_id};
use kiln_model::time_order::{self, TimedProfile};
use kiln_model::{CallTree, FlatTree, NodeId, ROOT};

use crate::storage::block::{self, Chunk};
use crate::storage::{Aggregation, Selected, SeriesKey, StorageError, Store};
use crate::work::{Cancel, Cancelled};

pub use cache::MergeCache;
pub use limits::{QueryLimits, TooLarge, is_too_large};
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
    /// select series without `env`. Pyroscope's pseudo-labels read as [`label_value`] says.
    fn matches(&self, key: &SeriesKey) -> bool {
        let value = |name: &str| label_value(key, name);
        match self {
            CompiledMatcher::Eq(name, v) => value(name) == v.as_str(),
            CompiledMatcher::NotEq(name, v) => value(name) != v.as_str(),
            CompiledMatcher::Regex(name, re) => re.is_match(&value(name)),
            CompiledMatcher::NotRegex(name, re) => !re.is_match(&value(name)),
        }
    }
}

/// The pseudo-labels Pyroscope's clients read and select by, besides a series' own labels:
/// the application and the five parts of the profile type ID.
pub const PSEUDO_LABELS: &[&str] = &[
    SERVICE_NAME_LABEL,
    "__service_name__",
    "__profile_type__",
    "__name__",
    "__type__",
    "__unit__",
    "__period_type__",
    "__period_unit__",
];

/// The value of label `name` on `key`: `service_name` (and `__service_name__`) is the
/// application, `__profile_type__` the profile type ID ([`profile_type_id`]) and `__name__`,
/// `__type__`, `__unit__`, `__period_type__`, `__period_unit__` its five parts; any other name
/// is the series' own label, the empty string when it has none.
pub fn label_value<'a>(key: &'a SeriesKey, name: &str) -> Cow<'a, str> {
    let part = |i: usize| Cow::Owned(profile_type_id(&key.profile_type).split(':').nth(i).unwrap_or("").to_string());
    match name {
        SERVICE_NAME_LABEL | "__service_name__" => Cow::Borrowed(&key.app),
        "__profile_type__" => Cow::Owned(profile_type_id(&key.profile_type)),
        "__name__" => part(0),
        "__type__" => part(1),
        "__unit__" => part(2),
        "__period_type__" => part(3),
        "__period_unit__" => part(4),
        other => Cow::Borrowed(key.labels.get(other).map(String::as_str).unwrap_or("")),
    }
}

/// Every label of `key` as Pyroscope's clients see it: its own labels and the pseudo-labels.
pub fn pyroscope_labels(key: &SeriesKey) -> BTreeMap<String, String> {
    let mut labels = key.labels.clone();
    for name in PSEUDO_LABELS {
        labels.insert(name.to_string(), label_value(key, name).into_owned());
    }
    labels
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
    /// What it may cost; the defaults until [`Query::with_limits`].
    pub limits: QueryLimits,
    matchers: Vec<CompiledMatcher>,
    /// Whether `selector.app` names the one application read (Kiln's `app.cpu{…}`); when not,
    /// the matchers alone choose, across applications (`{service_name=~"api-.*"}`).
    one_app: bool,
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
        Ok(Query {
            tenant: tenant.to_string(),
            selector,
            from,
            until,
            limits: QueryLimits::default(),
            matchers,
            one_app: true,
        })
    }

    /// A query by label selector as Grafana writes it (`{}`, `{service_name=~"api-.*"}`),
    /// across every application it matches, of `profile_type` when given. Kiln's
    /// `app.cpu{env="prod"}` selects the same series as `{service_name="app",env="prod"}` of
    /// type `cpu`.
    pub fn by_labels(
        tenant: &str,
        profile_type: Option<String>,
        label_selector: &str,
        from: i64,
        until: i64,
    ) -> Result<Query, QueryError> {
        let matchers = parse_label_selector(label_selector)
            .map_err(|e| QueryError(format!("label selector `{label_selector}`: {e}")))?;
        let compiled = matchers.iter().map(CompiledMatcher::compile).collect::<Result<_, _>>()?;
        if from >= until {
            return Err(QueryError(format!("`start` ({from}) must be before `end` ({until})")));
        }
        Ok(Query {
            tenant: tenant.to_string(),
            selector: Selector { app: String::new(), profile_type, matchers },
            from,
            until,
            limits: QueryLimits::default(),
            matchers: compiled,
            one_app: false,
        })
    }

    /// The same query under the server's limits.
    pub fn with_limits(self, limits: QueryLimits) -> Query {
        Query { limits, ..self }
    }

    /// True when `key` belongs to the query's tenant and application (and type, when named)
    /// and its labels match.
    pub fn selects(&self, key: &SeriesKey) -> bool {
        self.selects_app(key)
            && self.selector.profile_type.as_ref().is_none_or(|t| *t == key.profile_type)
            && self.labels_match(key)
    }

    /// True when `key` belongs to the query's tenant and to its application (any, for a query
    /// by labels).
    fn selects_app(&self, key: &SeriesKey) -> bool {
        key.tenant == self.tenant && (!self.one_app || key.app == self.selector.app)
    }

    /// True when every label matcher accepts `key`'s labels (pseudo-labels included).
    pub fn labels_match(&self, key: &SeriesKey) -> bool {
        self.matchers.iter().all(|m| m.matches(key))
    }

    /// The same query narrowed to series whose `label` is `value` (a group of `group_by`).
    pub fn and_label(mut self, label: &str, value: &str) -> Query {
        self.matchers.push(CompiledMatcher::Eq(label.to_string(), value.to_string()));
        self.selector.matchers.push(Matcher { name: label.to_string(), op: MatchOp::Eq, value: value.to_string() });
        self
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

/// The profile type a query means when it names none: CPU if its application has it, else the
/// first.
fn default_profile_type(store: &Store, query: &Query) -> Option<String> {
    let types: BTreeSet<String> =
        store.series().into_iter().filter(|k| query.selects_app(k)).map(|k| k.profile_type).collect();
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
    /// How many uploads start in each step (for averages per step).
    pub uploads: Vec<u64>,
}

/// At most this many timeline points; never steps below ten seconds (agents' interval).
const MAX_TIMELINE_POINTS: i64 = 1000;
const MIN_STEP: i64 = 10;

/// The timeline of uploads given as (from, until, total).
///
/// Times may be anything an `i64` holds (an open range, or uploads stored with absurd stamps
/// before ingest refused them), so the arithmetic runs in `i128` and the step is chosen from
/// the span: whatever the range, there are at most `MAX_TIMELINE_POINTS + 1` points.
/// Public for the fuzz targets: its size comes from a client's range.
pub fn timeline(uploads: impl Iterator<Item = (i64, i64, u64)> + Clone, from: i64, until: i64) -> Timeline {
    // An open range is narrowed to the data it holds.
    let from = if from == i64::MIN { uploads.clone().map(|u| u.0).min().unwrap_or(0) } else { from };
    let until =
        if until == i64::MAX { uploads.clone().map(|u| u.1).max().unwrap_or(from).saturating_add(1) } else { until };
    let (from, until) = (i128::from(from), i128::from(until).max(i128::from(from) + 1));
    let points = i128::from(MAX_TIMELINE_POINTS);
    let step = ((until - from + points - 1) / points).max(i128::from(MIN_STEP));
    let start_time = from.div_euclid(step) * step;
    // `start_time` may sit one step before `from`, hence at most one point more than the cap.
    let count = ((until - start_time + step - 1) / step).clamp(1, points + 1) as usize;
    let mut samples = vec![0u64; count];
    let mut counts = vec![0u64; count];
    for (upload_from, _, total) in uploads {
        let index = (i128::from(upload_from).max(start_time) - start_time) / step;
        if let Some(i) = usize::try_from(index).ok().filter(|&i| i < count) {
            samples[i] = samples[i].saturating_add(total);
            counts[i] += 1;
        }
    }
    // Both fit: `step` is at most the span of two `i64`s over the point count, and
    // `start_time` lies within one step of an `i64`.
    let narrow = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
    Timeline { start_time: narrow(start_time), step: narrow(step), samples, uploads: counts }
}

/// An upload in a query's range, wherever it is stored.
struct InRange {
    from: i64,
    until: i64,
    total: u64,
    aggregation: Aggregation,
    /// Which chunk, and which of its uploads.
    chunk: usize,
    upload: usize,
}

/// Why a merge has no answer.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Reading the selected data failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The query would read more than its limits allow.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The request's time ran out (or it was abandoned) before the merge finished.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

/// Merges every upload the query selects into one tree, with its timeline, however long it
/// takes; refuses, before fetching anything, a query over its limits.
pub async fn merge(store: &Store, query: &Query) -> Result<Merged, MergeError> {
    merge_cancellable(store, query, &Cancel::never()).await
}

/// [`merge`], checking `cancel` between chunks and uploads: a request past its deadline stops
/// at the next one with [`MergeError::Cancelled`].
pub async fn merge_cancellable(store: &Store, query: &Query, cancel: &Cancel) -> Result<Merged, MergeError> {
    merge_parts(store, query, cancel, Parts::TreeAndTimeline).await
}

/// What a merge computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// The tree and the timeline.
    TreeAndTimeline,
    /// The timeline only (the tree is its root alone): for series over time, which need each
    /// upload's total and nothing of its stacks, so no tree is built.
    Timeline,
}

/// The uploads a query selects: its profile type, the chunks holding them, and which uploads of
/// those chunks fall in its range, sorted by time.
struct Selection {
    profile_type: Option<String>,
    chunks: Vec<Arc<Chunk>>,
    in_range: Vec<InRange>,
}

/// Reads the chunks `query` selects (refusing, before fetching anything, a query over its
/// limits) and finds its uploads in them.
async fn select_uploads(store: &Store, query: &Query, cancel: &Cancel) -> Result<Selection, MergeError> {
    let profile_type = query.selector.profile_type.clone().or_else(|| default_profile_type(store, query));
    let selected = match &profile_type {
        Some(ty) => {
            // `selects` checks tenant, app and labels; the type is the named or default one.
            let keep = |key: &SeriesKey| key.profile_type == *ty && query.selects(key);
            query.limits.check(&store.plan_reads(query.from, query.until, keep))?;
            store.select_chunks(query.from, query.until, keep).await?
        }
        None => Selected::default(),
    };
    cancel.check()?;
    let (from, until) = (query.from, query.until);
    // Chunks are decoded straight into stack-tree columns, never into a tree per upload.
    let decoded = parallel(
        selected.chunks,
        |raw| raw.bytes.len(),
        |group| {
            group
                .into_iter()
                .take_while(|_| !cancel.is_cancelled())
                .filter_map(|raw| block::read_chunk(&raw.entry, &raw.bytes).map_err(|e| raw.warn(&e)).ok())
                .collect::<Vec<Chunk>>()
        },
    );
    cancel.check()?;
    // The head's series are chunks already (shared, not copied); blocks' are decoded.
    let chunks: Vec<Arc<Chunk>> =
        selected.head.into_iter().map(|h| h.chunk).chain(decoded.into_iter().flatten().map(Arc::new)).collect();
    let mut in_range: Vec<InRange> = Vec::new();
    for (c, chunk) in chunks.iter().enumerate() {
        for (i, u) in chunk.uploads.iter().enumerate() {
            // A chunk spans its block's (or the head's) whole time range; only uploads in the
            // query's count.
            if u.until >= from && u.from < until {
                let (from, until, total, aggregation) = (u.from, u.until, u.total(), u.aggregation);
                in_range.push(InRange { from, until, total, aggregation, chunk: c, upload: i });
            }
        }
    }
    in_range.sort_by_key(|u| (u.from, u.until));
    Ok(Selection { profile_type, chunks, in_range })
}

/// [`merge_cancellable`], computing only `parts`.
pub async fn merge_parts(store: &Store, query: &Query, cancel: &Cancel, parts: Parts) -> Result<Merged, MergeError> {
    let Selection { profile_type, chunks, in_range } = select_uploads(store, query, cancel).await?;
    let (from, until) = (query.from, query.until);
    let averaged = in_range.iter().filter(|u| u.aggregation == Aggregation::Average).count() as u64;
    let mut wanted: Vec<Vec<bool>> = chunks.iter().map(|c| vec![false; c.uploads.len()]).collect();
    for u in &in_range {
        wanted[u.chunk][u.upload] = true;
    }
    let newest = in_range.last().map(|u| {
        let u = &chunks[u.chunk].uploads[u.upload];
        (u.units.clone(), u.sample_rate, u.spy_name.clone())
    });
    let work: Vec<Work> = match parts {
        Parts::TreeAndTimeline => chunks.iter().zip(&wanted).map(|(chunk, wanted)| Work { chunk, wanted }).collect(),
        Parts::Timeline => Vec::new(),
    };
    let tree = match one_chunk_tree(&work, averaged) {
        Some(tree) => tree,
        None => {
            let trees = parallel(work, Work::cost, |group| {
                let mut tree = CallTree::new();
                for item in group {
                    if cancel.is_cancelled() {
                        break;
                    }
                    item.merge_into(&mut tree, averaged);
                }
                tree
            });
            cancel.check()?;
            let mut trees = trees.into_iter();
            let mut tree = trees.next().unwrap_or_default();
            for other in trees {
                tree.merge_tree(&other);
            }
            tree.to_flat()
        }
    };
    let timeline = timeline(in_range.iter().map(|u| (u.from, u.until, u.total)), from, until);
    let (units, sample_rate, spy_name) = newest.unwrap_or_else(|| ("samples".into(), 100, String::new()));
    Ok(Merged { tree, profile_type, units, sample_rate, spy_name, timeline })
}

/// The merge of `work` when only one chunk has wanted uploads (a series read from the head,
/// or from one block): that chunk's tree laid out directly, with no tree to merge it into
/// (a hash probe per node: most of a large query's time). `None` for several chunks, or a
/// chunk whose tree a merge would reshape (two names of one text).
fn one_chunk_tree(work: &[Work], averaged: u64) -> Option<FlatTree> {
    let mut wanted = work.iter().filter(|w| w.wanted.iter().any(|&w| w));
    let only = wanted.next()?;
    if wanted.next().is_some() {
        return None;
    }
    chunk_tree(only.chunk, only.wanted, averaged).canonical()
}

/// The most uploads a stored series' time order shows, one column each: however wide the
/// range, the answer and the browser's chart stay bounded.
pub const MAX_TIME_ORDER_UPLOADS: usize = 1000;

/// The uploads `query` selects in time order, one column each, as wide as its total and laid
/// out as its flamegraph ([`TimedProfile::columns`]): what the explorer shows over the
/// timeline's range, so that a spike in the timeline can be looked at upload by upload. Refuses
/// ([`MergeError::TooLarge`]) more than [`MAX_TIME_ORDER_UPLOADS`] uploads, or more than
/// [`time_order::MAX_SAMPLES`] stacks in all, before building anything.
pub async fn time_order(store: &Store, query: &Query, cancel: &Cancel) -> Result<TimedProfile, MergeError> {
    let Selection { chunks, in_range, .. } = select_uploads(store, query, cancel).await?;
    if in_range.len() > MAX_TIME_ORDER_UPLOADS {
        return Err(TooLarge(format!(
            "{} uploads in this range, more than the {MAX_TIME_ORDER_UPLOADS} a time order shows (one column \
             each): narrow the range",
            in_range.len()
        ))
        .into());
    }
    let stacks: usize = in_range.iter().map(|u| chunks[u.chunk].uploads[u.upload].nodes.len()).sum();
    if stacks > time_order::MAX_SAMPLES {
        return Err(TooLarge(format!(
            "{stacks} stacks in this range's uploads, more than the {} a time order shows: narrow the range",
            time_order::MAX_SAMPLES
        ))
        .into());
    }
    let mut tree = CallTree::new();
    // Each chunk's nodes as nodes of `tree`, found once per chunk rather than once per upload.
    let mut node_of: Vec<Vec<NodeId>> = chunks.iter().map(|c| vec![u32::MAX; c.parent.len()]).collect();
    let mut parts: Vec<Vec<(NodeId, u64)>> = Vec::with_capacity(in_range.len());
    for u in &in_range {
        cancel.check()?;
        let chunk = &chunks[u.chunk];
        let upload = &chunk.uploads[u.upload];
        let map = &mut node_of[u.chunk];
        let part = upload
            .nodes
            .iter()
            .zip(&upload.self_value)
            .map(|(&node, &value)| {
                let node = tree_node(&mut tree, chunk, map, node);
                tree.add_self(node, value);
                (node, value)
            })
            .collect();
        parts.push(part);
    }
    let units = in_range.last().map_or_else(|| "samples".into(), |u| chunks[u.chunk].uploads[u.upload].units.clone());
    let name = match in_range.len() {
        1 => "1 upload".to_string(),
        n => format!("{n} uploads, one column each"),
    };
    Ok(TimedProfile { name, ..TimedProfile::columns(&tree, &parts, &units) })
}

/// The node of `tree` with the path of `chunk`'s node `node`, created if missing; `map` holds
/// the chunk's nodes already found (`u32::MAX` for none yet).
fn tree_node(tree: &mut CallTree, chunk: &Chunk, map: &mut [NodeId], node: u32) -> NodeId {
    let mut path = Vec::new();
    let mut cursor = node as usize;
    while cursor != 0 && cursor < map.len() && map[cursor] == u32::MAX {
        path.push(cursor);
        cursor = chunk.parent[cursor] as usize;
    }
    let mut at = if cursor == 0 || cursor >= map.len() { ROOT } else { map[cursor] };
    for &n in path.iter().rev() {
        let name = chunk.symbol.get(n).and_then(|&s| chunk.symbols.get(s as usize)).map_or("", String::as_str);
        at = tree.child(at, name);
        map[n] = at;
    }
    at
}

/// A part of a query's merge: a chunk (of the head or a block) with the uploads it contributes.
struct Work<'a> {
    chunk: &'a Chunk,
    wanted: &'a [bool],
}

impl Work<'_> {
    /// Rough cost, to share the work evenly between threads.
    fn cost(&self) -> usize {
        self.chunk.parent.len() + self.chunk.uploads.iter().map(|u| u.nodes.len()).sum::<usize>()
    }

    /// Adds this part's samples to `tree`; averaged uploads count `1 / averaged` each (rounded
    /// down per upload and node, as they always have).
    fn merge_into(self, tree: &mut CallTree, averaged: u64) {
        if self.wanted.iter().any(|&w| w) {
            tree.merge_flat(&chunk_tree(self.chunk, self.wanted, averaged));
        }
    }
}

/// The wanted uploads of a chunk summed on its stack tree: value columns added by node index,
/// then totals derived bottom-up once, instead of a hash lookup per node per upload.
fn chunk_tree(chunk: &Chunk, wanted: &[bool], averaged: u64) -> FlatTree {
    let n = chunk.parent.len();
    let mut summed = vec![0u64; n];
    // Averaged uploads are scaled per upload and node, totals included, so they need totals
    // of their own before scaling; kept apart from the summed selves.
    let (mut scaled_self, mut scaled_total, mut scratch): (Vec<u64>, Vec<u64>, Vec<u64>) = Default::default();
    let mut touched: Vec<u32> = Vec::new();
    let den = averaged.max(1);
    for (upload, _) in chunk.uploads.iter().zip(wanted).filter(|(_, w)| **w) {
        if upload.aggregation == Aggregation::Sum {
            for (&node, &v) in upload.nodes.iter().zip(&upload.self_value) {
                summed[node as usize] = summed[node as usize].saturating_add(v);
            }
            continue;
        }
        if scratch.is_empty() {
            (scaled_self, scaled_total, scratch) = (vec![0; n], vec![0; n], vec![0; n]);
        }
        for (&node, &v) in upload.nodes.iter().zip(&upload.self_value) {
            scaled_self[node as usize] = scaled_self[node as usize].saturating_add(v / den);
            let mut cursor = node as usize;
            loop {
                if scratch[cursor] == 0 {
                    touched.push(cursor as u32);
                }
                scratch[cursor] = scratch[cursor].saturating_add(v);
                if cursor == 0 {
                    break;
                }
                cursor = chunk.parent[cursor] as usize;
            }
        }
        for node in touched.drain(..) {
            let total = std::mem::take(&mut scratch[node as usize]);
            scaled_total[node as usize] = scaled_total[node as usize].saturating_add(total / den);
        }
    }
    // Every child comes after its parent (in a head's chunk too, where nodes are numbered as
    // they first appear), so one backward pass sums the subtrees.
    let mut total = summed.clone();
    for i in (1..n).rev() {
        let p = chunk.parent[i] as usize;
        total[p] = total[p].saturating_add(total[i]);
    }
    let mut self_value = summed;
    for ((t, s), (st, ss)) in total.iter_mut().zip(self_value.iter_mut()).zip(scaled_total.iter().zip(&scaled_self)) {
        *t = t.saturating_add(*st);
        *s = s.saturating_add(*ss);
    }
    // Only nodes with samples; a node without has no descendant with any either.
    let mut flat = FlatTree { names: chunk.symbols.clone(), ..FlatTree::default() };
    let mut local = vec![u32::MAX; n];
    for i in 0..n {
        if i > 0 && (total[i] == 0 || local[chunk.parent[i] as usize] == u32::MAX) {
            continue;
        }
        local[i] = flat.len() as u32;
        flat.name.push(chunk.symbol[i]);
        flat.parent.push(if i == 0 { 0 } else { local[chunk.parent[i] as usize] });
        flat.total.push(total[i]);
        flat.self_value.push(self_value[i]);
    }
    flat
}

/// Runs `work` on `items` split into groups of about equal `cost`, one group per core (up to
/// two groups; the machines Kiln is sized for have few cores and other queries to serve), on
/// scoped threads. Small inputs stay on the calling thread: a thread costs more than they do.
fn parallel<T: Send, R: Send>(items: Vec<T>, cost: impl Fn(&T) -> usize, work: impl Fn(Vec<T>) -> R + Sync) -> Vec<R> {
    const WORTH_A_THREAD: usize = 200_000;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    let total: usize = items.iter().map(&cost).sum();
    if threads < 2 || items.len() < 2 || total < WORTH_A_THREAD {
        return vec![work(items)];
    }
    let mut weighted: Vec<(usize, T)> = items.into_iter().map(|item| (cost(&item), item)).collect();
    weighted.sort_by_key(|(c, _)| std::cmp::Reverse(*c));
    let mut groups: Vec<(usize, Vec<T>)> = (0..threads).map(|_| (0, Vec::new())).collect();
    for (c, item) in weighted {
        let lightest = groups.iter_mut().min_by_key(|(load, _)| *load).expect("a group");
        lightest.0 += c;
        lightest.1.push(item);
    }
    let mut groups = groups.into_iter().map(|(_, g)| g);
    let first = groups.next().unwrap_or_default();
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = groups.map(|g| scope.spawn(move || work(g))).collect();
        let mut results = vec![work(first)];
        results.extend(others.into_iter().map(|h| h.join().expect("merge thread panicked")));
        results
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
    use crate::storage::{DEFAULT_TENANT, Upload};

    fn key(app: &str, ty: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new(app, ty, labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn label_selectors_select_across_applications() {
        let api_eu = key("api-eu", "cpu", &[("env", "prod")]);
        let api_us = key("api-us", "cpu", &[("env", "dev")]);
        let web = key("web", "cpu", &[("env", "prod")]);
        let web_heap = key("web", "alloc_space", &[]);
        let all = [&api_eu, &api_us, &web, &web_heap];
        let cpu = Some("cpu".to_string());
        // (profile type, selector) → which of `all` it selects
        let table: &[(Option<String>, &str, [bool; 4])] = &[
            (None, "{}", [true, true, true, true]),
            (None, "", [true, true, true, true]),
            (cpu.clone(), "{}", [true, true, true, false]),
            (cpu.clone(), r#"{service_name=~"api-.*"}"#, [true, true, false, false]),
            (cpu.clone(), r#"{service_name=~"api-.*",env="prod"}"#, [true, false, false, false]),
            (None, r#"{__service_name__="web"}"#, [false, false, true, true]),
            (None, r#"{__profile_type__="memory:alloc_space:bytes:space:bytes"}"#, [false, false, false, true]),
            (None, r#"{__name__="process_cpu",__type__="cpu",__unit__="nanoseconds"}"#, [true, true, true, false]),
            (None, r#"{service_name!="web"}"#, [true, true, false, false]),
        ];
        for (ty, selector, expected) in table {
            let query = Query::by_labels(DEFAULT_TENANT, ty.clone(), selector, 0, 1).unwrap();
            let got: Vec<bool> = all.iter().map(|k| query.selects(k)).collect();
            assert_eq!(got, expected, "{ty:?} {selector}");
        }
        // Kiln's `app.cpu{…}` selects what `{service_name="app",…}` of type cpu does.
        for (kiln, pyroscope) in [
            ("web.cpu", r#"{service_name="web"}"#),
            ("api-eu.cpu{env=\"prod\"}", r#"{service_name="api-eu",env="prod"}"#),
        ] {
            let kiln = Query::parse(DEFAULT_TENANT, kiln, 0, 1).unwrap();
            let pyroscope = Query::by_labels(DEFAULT_TENANT, cpu.clone(), pyroscope, 0, 1).unwrap();
            assert_eq!(all.map(|k| kiln.selects(k)), all.map(|k| pyroscope.selects(k)));
        }
        // Another tenant's series are never selected.
        let mut theirs = web.clone();
        theirs.tenant = "team-b".into();
        assert!(!Query::by_labels(DEFAULT_TENANT, None, "{}", 0, 1).unwrap().selects(&theirs));
        assert!(Query::by_labels(DEFAULT_TENANT, None, "{a=~\"(\"}", 0, 1).is_err());
        assert!(Query::by_labels(DEFAULT_TENANT, None, "{}", 1, 1).is_err());
        let labels = pyroscope_labels(&web);
        assert_eq!(labels["service_name"], "web");
        assert_eq!(labels["__profile_type__"], "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(labels["__period_unit__"], "nanoseconds");
        assert_eq!(labels["env"], "prod");
    }

    #[test]
    fn timelines_stay_bounded_whatever_the_range() {
        let cap = MAX_TIMELINE_POINTS as usize + 1;
        for (uploads, from, until) in [
            (vec![(0, 10, 5)], i64::MIN, i64::MAX),
            (vec![(-9_223_372_036_854_775_307 + 1_700_000_000, 1_700_000_000, 5)], i64::MIN, i64::MAX),
            (vec![(i64::MIN, i64::MAX, u64::MAX), (0, 1, u64::MAX)], i64::MIN, i64::MAX),
            (vec![(1_700_000_000, 1_700_000_010, 3)], i64::MIN + 1, i64::MAX - 1),
            (vec![], i64::MIN + 1, i64::MAX - 1),
            (vec![(5, 6, 1)], 10, 5),
        ] {
            let line = timeline(uploads.iter().copied(), from, until);
            assert!((1..=cap).contains(&line.samples.len()), "{from}..{until}: {} points", line.samples.len());
            assert!(line.step >= MIN_STEP);
            let total = uploads.iter().fold(0u64, |sum, u| sum.saturating_add(u.2));
            let counted = line.samples.iter().fold(0u64, |sum, &v| sum.saturating_add(v));
            assert!(counted <= total);
        }
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

    /// The reference: every upload as its own tree, merged node by node.
    async fn merge_per_upload(store: &Store, q: &Query) -> (FlatTree, Vec<u64>) {
        let mut uploads = store.select(q.from, q.until, |k| q.selects(k)).await.unwrap();
        uploads.sort_by_key(|u| (u.meta.from, u.meta.until));
        let averaged = uploads.iter().filter(|u| u.meta.aggregation == Aggregation::Average).count() as u64;
        let mut tree = CallTree::new();
        for u in &uploads {
            match u.meta.aggregation {
                Aggregation::Sum => tree.merge_flat(&u.tree),
                Aggregation::Average => tree.merge_flat_scaled(&u.tree, 1, averaged),
            }
        }
        let refs: Vec<&Arc<Upload>> = uploads.iter().collect();
        let line = timeline(refs.iter().map(|u| (u.meta.from, u.meta.until, u.tree.total())), q.from, q.until);
        (tree.to_flat(), line.samples)
    }

    #[tokio::test]
    async fn stack_tree_merge_matches_merging_every_upload() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::storage::StoreConfig {
            background: false,
            retention: std::time::Duration::ZERO,
            ..crate::storage::StoreConfig::new(dir.path())
        };
        let store = Store::open_with(config).await.unwrap();
        let frames = ["main", "run", "poll", "read", "write", "alloc"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..4 {
            let mut batch = Vec::new();
            for i in 0..30i64 {
                let mut tree = CallTree::new();
                for _ in 0..1 + next(12) {
                    let depth = next(5) as usize;
                    let stack: Vec<&str> = (0..depth).map(|_| frames[next(6) as usize]).collect();
                    tree.add_stack(stack, 1 + next(40));
                }
                let at = 1000 + (round * 30 + i) * 10;
                let average = i % 7 == 3;
                batch.push(Upload {
                    meta: crate::storage::ProfileMeta {
                        series: key("web", "cpu", if i % 2 == 0 { &[("pod", "a")] } else { &[("pod", "b")] }),
                        from: at - 10,
                        until: at,
                        units: "samples".into(),
                        sample_rate: 100,
                        spy_name: "test".into(),
                        aggregation: if average { Aggregation::Average } else { Aggregation::Sum },
                    },
                    tree: tree.to_flat(),
                });
            }
            store.append(batch).await.unwrap();
            // The last round stays in the head.
            if round < 3 {
                store.flush().await.unwrap();
            }
        }
        for (text, from, until) in [
            ("web.cpu", i64::MIN, i64::MAX),
            ("web.cpu", 1200, 1800),
            ("web.cpu{pod=\"a\"}", 990, 2100),
            ("web.cpu{pod=\"b\"}", 1500, 1501),
        ] {
            let q = Query::parse(crate::storage::DEFAULT_TENANT, text, from, until).unwrap();
            let merged = merge(&store, &q).await.unwrap();
            let (tree, samples) = merge_per_upload(&store, &q).await;
            assert_eq!(merged.tree, tree, "{text} {from}..{until}");
            assert_eq!(merged.timeline.samples, samples, "{text} {from}..{until}");
        }
        // A request past its deadline stops at the first check instead of merging.
        let cancel = Cancel::never();
        cancel.cancel();
        let q = Query::parse(crate::storage::DEFAULT_TENANT, "web.cpu", i64::MIN, i64::MAX).unwrap();
        assert!(matches!(merge_cancellable(&store, &q, &cancel).await, Err(MergeError::Cancelled(Cancelled))));
        // So do the pages' merges, which read through the app's source.
        use kiln_model::page_data::ProfileSource;
        let store = Arc::new(store);
        let page_source = |cancel| StoreSource {
            store: store.clone(),
            merges: Arc::new(MergeCache::new(std::time::Duration::ZERO, 0, 0)),
            limits: QueryLimits::default(),
            cancel,
        };
        assert!(page_source(Cancel::never()).merged(DEFAULT_TENANT, "web.cpu", "0", "now").is_ok());
        assert!(page_source(cancel).merged(DEFAULT_TENANT, "web.cpu", "0", "now").is_err());
    }

    #[test]
    fn bad_regular_expressions_name_the_label_and_pattern() {
        let err = Query::parse(DEFAULT_TENANT, r#"web{region=~"eu-(",env="x"}"#, 0, 1).unwrap_err();
        assert!(err.0.contains("label `region`") && err.0.contains("`eu-(`"), "{err}");
        let err = Query::parse(DEFAULT_TENANT, r#"web{env!~"[z-a]"}"#, 0, 1).unwrap_err();
        assert!(err.0.contains("label `env`"), "{err}");
    }
}
