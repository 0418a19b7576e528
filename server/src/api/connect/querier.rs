//! `querier.v1.QuerierService`: each method over Kiln's own selection ([`Query::by_labels`]),
//! merge ([`query::merge_cancellable`]) and truncation ([`truncate::max_nodes`]).
//!
//! Times arrive in milliseconds; Kiln stores seconds, so a range is widened to whole seconds.
//! CPU, wall and other time types are answered in nanoseconds, as their five-part IDs say
//! ([`profile_type_id`]): a merge of uploads counted in samples (folded uploads, Go's
//! `samples/count`) is converted through its sample rate after merging.

use std::collections::{BTreeMap, BTreeSet};

use kiln_model::selector::{SERVICE_NAME_LABEL, profile_type_id, profile_type_of_id};
use kiln_model::{CallTree, FlatTree, diff, truncate};

use super::messages::*;
use super::{Code, ConnectError, flamegraph};
use crate::api::AppState;
use crate::api::export::{self, PprofMeta};
use crate::query::{self, Merged, Parts, Query, label_value, pyroscope_labels};
use crate::storage::SeriesKey;
use crate::timespec;
use crate::work::Cancel;

/// At most this many label selectors in one request (`matchers`), and labels in `group_by`.
const MAX_SELECTORS: usize = 64;
/// At most this many points per series in `SelectSeries` (Prometheus' limit).
const MAX_POINTS: i64 = 11_000;

/// One request's view of the server.
pub struct Querier<'a> {
    /// The server's state.
    pub state: &'a AppState,
    /// The tenant `X-Scope-OrgID` names.
    pub tenant: &'a str,
    /// The request's deadline.
    pub cancel: &'a Cancel,
}

/// `[from, until)` in Kiln's seconds for a request's `[start, end]` in milliseconds; 0 leaves
/// that end open.
fn seconds(start_ms: i64, end_ms: i64) -> Result<(i64, i64), ConnectError> {
    let now = timespec::now_unix();
    let from = if start_ms == 0 { i64::MIN } else { timespec::clamp_to_horizon(start_ms.div_euclid(1000), now) };
    let until = if end_ms == 0 {
        i64::MAX
    } else {
        // Uploads stamped in the end's own second count.
        timespec::clamp_to_horizon(end_ms.div_euclid(1000).saturating_add(1), now)
    };
    if from >= until {
        return Err(ConnectError::invalid(format!("`start` ({start_ms}) must be before `end` ({end_ms})")));
    }
    Ok((from, until))
}

/// Kiln's profile type for a request's ID.
fn kiln_type(id: &str) -> Result<String, ConnectError> {
    if id.is_empty() {
        return Err(ConnectError::invalid(
            "`profileTypeID` is required (e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds`)",
        ));
    }
    profile_type_of_id(id).ok_or_else(|| {
        ConnectError::invalid(format!(
            "unknown profile type `{id}`; ProfileTypes lists the IDs Kiln has (e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds`)"
        ))
    })
}

/// The node budget of a flamegraph: the request's (at most `--max-nodes-max`) or the default.
fn node_budget(state: &AppState, asked: Option<i64>) -> Result<usize, ConnectError> {
    let asked = asked.filter(|&n| n > 0).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    state.query_limits.json_nodes(asked).map_err(|e| ConnectError::invalid(e.0))
}

/// Converts a merge counted in samples to the nanoseconds its type's ID states.
fn to_id_units(merged: &mut Merged, id: &str) {
    let wants_nanoseconds = id.split(':').nth(2) == Some("nanoseconds");
    if !(wants_nanoseconds && merged.units == "samples" && merged.sample_rate > 0) {
        return;
    }
    let factor = 1_000_000_000 / u64::from(merged.sample_rate);
    for v in
        merged.tree.total.iter_mut().chain(merged.tree.self_value.iter_mut()).chain(merged.timeline.samples.iter_mut())
    {
        *v = v.saturating_mul(factor);
    }
    merged.units = "nanoseconds".into();
}

/// The stacks through `call_site` (frames from the root), the rest dropped: Grafana's "focus
/// on this call site".
fn focus(tree: &FlatTree, selector: Option<&StackTraceSelector>) -> FlatTree {
    let path: Vec<&str> = selector.map(|s| s.call_site.iter().map(|l| l.name.as_str()).collect()).unwrap_or_default();
    if path.is_empty() {
        return tree.clone();
    }
    let mut focused = CallTree::new();
    for (stack, value) in tree.stacks() {
        if stack.starts_with(&path) {
            focused.add_stack(stack, value);
        }
    }
    focused.to_flat()
}

fn label_pairs(labels: impl IntoIterator<Item = (String, String)>) -> Vec<LabelPair> {
    labels.into_iter().map(|(name, value)| LabelPair { name, value }).collect()
}

impl Querier<'_> {
    fn query(&self, id: &str, selector: &str, start: i64, end: i64) -> Result<Query, ConnectError> {
        let profile_type = kiln_type(id)?;
        let (from, until) = seconds(start, end)?;
        Ok(Query::by_labels(self.tenant, Some(profile_type), selector, from, until)?
            .with_limits(self.state.query_limits))
    }

    /// The query's merge in the units its type's ID states. Applications may count in
    /// different units (samples at different rates, nanoseconds), so a query across several
    /// merges each application on its own, converts it, and adds the trees up.
    async fn merge(&self, query: &Query, id: &str) -> Result<Merged, ConnectError> {
        self.merge_parts(query, id, Parts::TreeAndTimeline).await
    }

    /// [`Querier::merge`], computing only `parts`.
    async fn merge_parts(&self, query: &Query, id: &str, parts: Parts) -> Result<Merged, ConnectError> {
        let store = &self.state.store;
        let apps: BTreeSet<String> = store.series().into_iter().filter(|k| query.selects(k)).map(|k| k.app).collect();
        if apps.len() <= 1 {
            let mut merged = query::merge_parts(store, query, self.cancel, parts).await?;
            to_id_units(&mut merged, id);
            return Ok(merged);
        }
        // The whole query's reads are checked once, before any application is merged.
        let plan = store.plan_reads(query.from, query.until, |k| query.selects(k));
        query.limits.check(&plan).map_err(|e| ConnectError::from(crate::api::AppError::from(e)))?;
        let mut tree = CallTree::new();
        let mut combined: Option<Merged> = None;
        for app in apps {
            let one = query.clone().and_label(SERVICE_NAME_LABEL, &app);
            let mut merged = query::merge_parts(store, &one, self.cancel, parts).await?;
            to_id_units(&mut merged, id);
            tree.merge_flat(&merged.tree);
            match &mut combined {
                None => combined = Some(merged),
                Some(all) => {
                    // One range, so one timeline shape; add the steps up.
                    let (a, b) = (&mut all.timeline, &merged.timeline);
                    if (a.start_time, a.step, a.samples.len()) == (b.start_time, b.step, b.samples.len()) {
                        for (x, y) in a.samples.iter_mut().zip(&b.samples).chain(a.uploads.iter_mut().zip(&b.uploads)) {
                            *x = x.saturating_add(*y);
                        }
                    }
                }
            }
        }
        let mut merged = combined.expect("at least two applications");
        merged.tree = tree.to_flat();
        Ok(merged)
    }

    /// The tenant's series any of `matchers` selects (all of them without one) with data in
    /// the request's `[start, end]` milliseconds (either 0: open on that side).
    fn matching_series(&self, matchers: &[String], start: i64, end: i64) -> Result<Vec<SeriesKey>, ConnectError> {
        if matchers.len() > MAX_SELECTORS {
            return Err(ConnectError::invalid(format!("at most {MAX_SELECTORS} matchers per request")));
        }
        let queries = matchers
            .iter()
            .map(|m| Query::by_labels(self.tenant, None, m, i64::MIN, i64::MAX))
            .collect::<Result<Vec<_>, _>>()?;
        let (from, until) = seconds(start, end)?;
        let mut series: Vec<SeriesKey> =
            self.state.store.series_between(from, until).into_iter().filter(|k| k.tenant == self.tenant).collect();
        if !queries.is_empty() {
            series.retain(|k| queries.iter().any(|q| q.selects(k)));
        }
        series.sort();
        Ok(series)
    }

    pub fn profile_types(&self, _request: ProfileTypesRequest) -> Result<ProfileTypesResponse, ConnectError> {
        let types: BTreeSet<String> = self
            .state
            .store
            .series()
            .into_iter()
            .filter(|k| k.tenant == self.tenant)
            .map(|k| profile_type_id(&k.profile_type))
            .collect();
        let profile_types = types
            .into_iter()
            .map(|id| {
                let parts: Vec<String> = id.split(':').map(str::to_string).collect();
                ProfileType {
                    name: parts[0].clone(),
                    sample_type: parts[1].clone(),
                    sample_unit: parts[2].clone(),
                    period_type: parts[3].clone(),
                    period_unit: parts[4].clone(),
                    id,
                }
            })
            .collect();
        Ok(ProfileTypesResponse { profile_types })
    }

    pub fn label_names(&self, request: LabelNamesRequest) -> Result<NamesResponse, ConnectError> {
        let mut names = BTreeSet::new();
        for key in self.matching_series(&request.matchers, request.start, request.end)? {
            names.extend(pyroscope_labels(&key).into_keys());
        }
        Ok(NamesResponse { names: names.into_iter().collect() })
    }

    pub fn label_values(&self, request: LabelValuesRequest) -> Result<NamesResponse, ConnectError> {
        if request.name.is_empty() {
            return Err(ConnectError::invalid("`name` (the label) is required"));
        }
        let values: BTreeSet<String> = self
            .matching_series(&request.matchers, request.start, request.end)?
            .iter()
            .map(|k| label_value(k, &request.name).into_owned())
            .filter(|v| !v.is_empty())
            .collect();
        Ok(NamesResponse { names: values.into_iter().collect() })
    }

    pub fn series(&self, request: SeriesRequest) -> Result<SeriesResponse, ConnectError> {
        let wanted: BTreeSet<&str> = request.label_names.iter().map(String::as_str).collect();
        let mut sets: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
        for key in self.matching_series(&request.matchers, request.start, request.end)? {
            let labels = pyroscope_labels(&key)
                .into_iter()
                .filter(|(name, _)| wanted.is_empty() || wanted.contains(name.as_str()))
                .collect();
            sets.insert(labels);
        }
        Ok(SeriesResponse { labels_set: sets.into_iter().map(|set| Labels { labels: label_pairs(set) }).collect() })
    }

    pub async fn select_merge_stacktraces(
        &self,
        request: SelectMergeStacktracesRequest,
    ) -> Result<SelectMergeStacktracesResponse, ConnectError> {
        if !request.profile_id_selector.is_empty() || !request.trace_id_selector.is_empty() {
            return Err(ConnectError::unimplemented(
                "Kiln stores no profile or trace ids: selecting by them is not served",
            ));
        }
        let format = request.format;
        match format {
            0 | 1 | 4 => {}
            2 | 3 => {
                return Err(ConnectError::unimplemented(format!(
                    "format {} is not served; ask for FLAMEGRAPH or PPROF",
                    PROFILE_FORMATS[format as usize]
                )));
            }
            other => return Err(ConnectError::invalid(format!("unknown format {other}"))),
        }
        let budget = node_budget(self.state, request.max_nodes)?;
        let query = self.query(&request.profile_type_id, &request.label_selector, request.start, request.end)?;
        if !request.span_selector.is_empty() {
            // Span ids are not stored per sample yet: no sample belongs to any span.
            return Ok(SelectMergeStacktracesResponse {
                flamegraph: Some(flamegraph::encode(&FlatTree::default())),
                pprof: None,
            });
        }
        let merged = self.merge(&query, &request.profile_type_id).await?;
        let tree = focus(&merged.tree, request.stack_trace_selector.as_ref());
        let tree = truncate::max_nodes(&tree, budget);
        self.cancel.check().map_err(|_| ConnectError::new(Code::DeadlineExceeded, "the request ran out of time"))?;
        if format == 4 {
            let profile = self.pprof(&tree, &merged, &query);
            return Ok(SelectMergeStacktracesResponse {
                flamegraph: None,
                pprof: Some(PprofProfile { profile: Some(profile) }),
            });
        }
        Ok(SelectMergeStacktracesResponse { flamegraph: Some(flamegraph::encode(&tree)), pprof: None })
    }

    fn pprof(&self, tree: &FlatTree, merged: &Merged, query: &Query) -> crate::proto::Profile {
        let bounded = |t: i64| (t != i64::MIN && t != i64::MAX).then_some(t);
        let meta = PprofMeta {
            profile_type: merged.profile_type.as_deref().unwrap_or("samples"),
            units: &merged.units,
            sample_rate: merged.sample_rate,
            from: bounded(query.from),
            until: bounded(query.until),
        };
        export::pprof_profile(tree, &meta)
    }

    pub fn select_merge_span_profile(
        &self,
        request: SelectMergeSpanProfileRequest,
    ) -> Result<SelectMergeSpanProfileResponse, ConnectError> {
        if matches!(request.format, 2 | 3) {
            return Err(ConnectError::unimplemented("only FLAMEGRAPH is served for span profiles"));
        }
        // Checked like any query, answered empty: span ids are not stored per sample yet.
        self.query(&request.profile_type_id, &request.label_selector, request.start, request.end)?;
        Ok(SelectMergeSpanProfileResponse { flamegraph: Some(flamegraph::encode(&FlatTree::default())) })
    }

    pub async fn select_merge_profile(
        &self,
        request: SelectMergeProfileRequest,
    ) -> Result<crate::proto::Profile, ConnectError> {
        if !request.profile_id_selector.is_empty() || !request.trace_id_selector.is_empty() {
            return Err(ConnectError::unimplemented(
                "Kiln stores no profile or trace ids: selecting by them is not served",
            ));
        }
        let query = self.query(&request.profile_type_id, &request.label_selector, request.start, request.end)?;
        let merged = self.merge(&query, &request.profile_type_id).await?;
        let mut tree = focus(&merged.tree, request.stack_trace_selector.as_ref());
        // A pprof download is the whole profile unless a budget is asked for.
        if request.max_nodes.is_some_and(|n| n > 0) {
            tree = truncate::max_nodes(&tree, node_budget(self.state, request.max_nodes)?);
        }
        Ok(self.pprof(&tree, &merged, &query))
    }

    pub async fn select_series(&self, request: SelectSeriesRequest) -> Result<SelectSeriesResponse, ConnectError> {
        if request.step.is_nan() || request.step <= 0.0 {
            return Err(ConnectError::invalid("`step` (seconds per point) must be more than 0"));
        }
        if request.start <= 0 || request.end <= request.start {
            return Err(ConnectError::invalid("`start` and `end` (milliseconds) must be given, `start` before `end`"));
        }
        let step_ms = (request.step * 1000.0).ceil().max(1.0) as i64;
        if (request.end - request.start) / step_ms > MAX_POINTS {
            return Err(ConnectError::invalid(format!(
                "more than {MAX_POINTS} points per series; use a larger `step`"
            )));
        }
        if request.group_by.len() > MAX_SELECTORS {
            return Err(ConnectError::invalid(format!("at most {MAX_SELECTORS} labels in `groupBy`")));
        }
        let average = match request.aggregation.unwrap_or(0) {
            0 => false,
            1 => true,
            other => return Err(ConnectError::invalid(format!("unknown aggregation {other}"))),
        };
        let base = self.query(&request.profile_type_id, &request.label_selector, request.start, request.end)?;
        // The whole request's reads are checked once before any group is merged.
        let plan = self.state.store.plan_reads(base.from, base.until, |k| base.selects(k));
        base.limits.check(&plan).map_err(|e| ConnectError::from(crate::api::AppError::from(e)))?;
        // One group per distinct value set of `group_by`.
        let groups: BTreeSet<Vec<String>> = self
            .state
            .store
            .series()
            .iter()
            .filter(|k| base.selects(k))
            .map(|key| request.group_by.iter().map(|l| label_value(key, l).into_owned()).collect())
            .collect();
        let mut series = Vec::new();
        for values in groups {
            let mut query = base.clone();
            for (label, value) in request.group_by.iter().zip(&values) {
                query = query.and_label(label, value);
            }
            let merged = self.merge_parts(&query, &request.profile_type_id, Parts::Timeline).await?;
            // (sum, uploads) per step of the request, from the merge's finer timeline.
            let mut buckets: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
            let line = &merged.timeline;
            for (i, (&value, &uploads)) in line.samples.iter().zip(&line.uploads).enumerate() {
                if uploads == 0 {
                    continue;
                }
                let at_ms = line.start_time.saturating_add(line.step.saturating_mul(i as i64)).saturating_mul(1000);
                let bucket = (at_ms.max(request.start) - request.start) / step_ms;
                let slot = buckets.entry(request.start + bucket * step_ms).or_default();
                *slot = (slot.0.saturating_add(value), slot.1 + uploads);
            }
            let total: u64 = buckets.values().fold(0u64, |sum, v| sum.saturating_add(v.0));
            let points = buckets
                .into_iter()
                .map(|(timestamp, (sum, uploads))| {
                    // AVERAGE: the mean of the uploads in the step, as Pyroscope averages profiles.
                    let value = if average { sum as f64 / uploads as f64 } else { sum as f64 };
                    Point { value, timestamp }
                })
                .collect();
            let labels = label_pairs(request.group_by.iter().cloned().zip(values).filter(|(_, v)| !v.is_empty()));
            series.push((total, Series { labels, points }));
        }
        // `limit`: the series with the largest totals.
        series.sort_by_key(|s| std::cmp::Reverse(s.0));
        if let Some(limit) = request.limit.filter(|&l| l > 0) {
            series.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(SelectSeriesResponse { series: series.into_iter().map(|(_, s)| s).collect() })
    }

    pub async fn diff(&self, request: DiffRequest) -> Result<DiffResponse, ConnectError> {
        let (Some(left), Some(right)) = (request.left, request.right) else {
            return Err(ConnectError::invalid("a diff needs both `left` and `right`"));
        };
        let (left_type, right_type) = (kiln_type(&left.profile_type_id)?, kiln_type(&right.profile_type_id)?);
        if left_type != right_type {
            return Err(ConnectError::invalid(format!(
                "profile types differ: left is `{}`, right is `{}`; compare one type with itself",
                left.profile_type_id, right.profile_type_id
            )));
        }
        let budget = node_budget(self.state, right.max_nodes.or(left.max_nodes))?;
        let left_query = self.query(&left.profile_type_id, &left.label_selector, left.start, left.end)?;
        let right_query = self.query(&right.profile_type_id, &right.label_selector, right.start, right.end)?;
        let left_merged = self.merge(&left_query, &left.profile_type_id).await?;
        let right_merged = self.merge(&right_query, &right.profile_type_id).await?;
        let left_tree = focus(&left_merged.tree, left.stack_trace_selector.as_ref());
        let right_tree = focus(&right_merged.tree, right.stack_trace_selector.as_ref());
        let tree = diff::max_nodes(&diff::diff(&left_tree, &right_tree), budget);
        Ok(DiffResponse { flamegraph: Some(flamegraph::encode_diff(&tree)) })
    }

    pub fn profile_stats(&self, _request: Empty) -> Result<GetProfileStatsResponse, ConnectError> {
        let store = &self.state.store;
        let apps = store.apps(self.tenant);
        let newest = apps.iter().map(|a| a.last_seen).max();
        let Some(newest) = newest.filter(|_| apps.iter().any(|a| a.uploads > 0)) else {
            return Ok(GetProfileStatsResponse::default());
        };
        // The oldest stored time, found from read plans (metadata only): the first second
        // before which nothing of the tenant is stored.
        let mine = |k: &SeriesKey| k.tenant == self.tenant;
        let (mut low, mut high) = (i64::MIN / 2, newest.saturating_add(1));
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if store.plan_reads(i64::MIN, mid, mine).series > 0 { high = mid } else { low = mid }
        }
        Ok(GetProfileStatsResponse {
            data_ingested: true,
            oldest_profile_time: low.saturating_mul(1000),
            newest_profile_time: newest.saturating_mul(1000),
        })
    }

    pub fn analyze_query(&self, request: AnalyzeQueryRequest) -> Result<AnalyzeQueryResponse, ConnectError> {
        let text = request.query.trim();
        let head = text.split('{').next().unwrap_or("").trim();
        let (profile_type, selector) =
            if head.is_empty() { (None, text) } else { (Some(kiln_type(head)?), &text[head.len()..]) };
        let (from, until) = seconds(request.start, request.end)?;
        let query = Query::by_labels(self.tenant, profile_type, selector, from, until)?;
        let plan = self.state.store.plan_reads(from, until, |k| query.selects(k));
        let series = plan.series as u64;
        Ok(AnalyzeQueryResponse {
            query_scopes: vec![QueryScope {
                component_type: "kiln".into(),
                component_count: 1,
                series_count: series,
                profile_bytes: plan.chunk_bytes,
                ..Default::default()
            }],
            query_impact: Some(QueryImpact {
                total_bytes_in_time_range: plan.chunk_bytes,
                total_queried_series: series,
                deduplication_needed: false,
            }),
        })
    }
}
