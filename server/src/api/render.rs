//! `GET /render` (a query's merged tree) and `GET /render-diff` (two queries compared), in the
//! format the caller asks for. `server/API.md` lists the parameters and shapes.

use std::borrow::Cow;

use axum::Json;
use axum::extract::{Query as QueryString, State, rejection::QueryRejection};
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use kiln_model::recursion::{collapse_list, collapse_recursion};
use kiln_model::{FlatTree, codec, diff, flamebearer, folded, time_order, truncate};
use serde::Deserialize;
use serde_json::{Value, json};

use super::export::{self, SvgOptions, SvgParams};
use super::{AppError, AppState, Tenant};
use crate::query::{self, Merged, Query, QueryLimits, Timeline};
use crate::timespec;
use crate::work::Cancel;

/// The tree format carries numbers only; its unit travels in this header.
const UNITS_HEADER: HeaderName = HeaderName::from_static("x-kiln-units");
/// Response header of a tree cut to the frames a width shows (`visibleWidth`): `visible` when
/// frames were left out, so that the viewer fetches the whole tree before a zoom needs it.
const PART_HEADER: HeaderName = HeaderName::from_static("x-kiln-tree-part");

/// Query string of `/render`.
#[derive(Debug, Deserialize)]
pub struct RenderParams {
    query: Option<String>,
    name: Option<String>,
    from: Option<String>,
    until: Option<String>,
    format: Option<String>,
    #[serde(rename = "maxNodes", alias = "max-nodes")]
    max_nodes: Option<String>,
    /// Only the frames a graph this many pixels wide shows at the root's zoom (the viewer's
    /// first paint; see `FlatTree::visible_part`).
    #[serde(rename = "visibleWidth", alias = "visible-width")]
    visible_width: Option<String>,
    /// Functions whose direct recursion is collapsed, `;`-separated (as the viewer's URL has it).
    collapse: Option<String>,
    #[serde(flatten)]
    svg: SvgParams,
}

/// Query string of `/render-diff`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderDiffParams {
    left_query: Option<String>,
    left_from: Option<String>,
    left_until: Option<String>,
    right_query: Option<String>,
    right_from: Option<String>,
    right_until: Option<String>,
    format: Option<String>,
    #[serde(rename = "maxNodes", alias = "max-nodes")]
    max_nodes: Option<String>,
    #[serde(flatten)]
    svg: SvgParams,
}

fn timeline_json(timeline: &Timeline) -> Value {
    json!({
        "startTime": timeline.start_time,
        "samples": timeline.samples,
        "durationDelta": timeline.step,
    })
}

fn metadata(format: &str, name: &str, merged: &Merged) -> Value {
    json!({
        "format": format,
        "spyName": merged.spy_name,
        "sampleRate": merged.sample_rate,
        "units": merged.units,
        "name": name,
    })
}

/// Pyroscope's `/render` answer: flamebearer, metadata, timeline.
fn flamebearer_profile(name: &str, tree: &FlatTree, merged: &Merged) -> Value {
    json!({
        "flamebearer": flamebearer::encode(tree),
        "metadata": metadata("single", name, merged),
        "timeline": timeline_json(&merged.timeline),
    })
}

fn parse_time(param: &str, value: Option<&str>, now: i64) -> Result<Option<i64>, AppError> {
    value
        .filter(|s| !s.is_empty())
        .map(|s| timespec::parse(s, now).map_err(|e| AppError::bad_request(format!("`{param}`: {e}"))))
        .transpose()
}

/// Parses one side of a request: query text and range into a [`Query`]. An absent range keeps
/// everything stored in view.
fn parse_query(
    limits: QueryLimits,
    tenant: &Tenant,
    query_param: &str,
    text: Option<&str>,
    (from_param, from): (&str, Option<&str>),
    (until_param, until): (&str, Option<&str>),
) -> Result<(Query, Option<i64>, Option<i64>), AppError> {
    let text = text
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| AppError::bad_request(format!("missing `{query_param}` (e.g. `{query_param}=myapp.cpu`)")))?;
    let now = timespec::now_unix();
    // Given ends are clamped to a century around now, so that no range arithmetic can wrap.
    let from = parse_time(from_param, from, now)?.map(|t| timespec::clamp_to_horizon(t, now));
    // Relative ends count from the end of the current second: `until=now` includes an upload
    // stamped this very second.
    let until = parse_time(until_param, until, now + 1)?.map(|t| timespec::clamp_to_horizon(t, now));
    let query = Query::parse(&tenant.0, text, from.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX)).map_err(|e| {
        // Plain `/render` has one query; a comparison says which side is wrong.
        if query_param == "query" { e.into() } else { AppError::bad_request(format!("`{query_param}`: {}", e.0)) }
    })?;
    let query = query.with_limits(limits);
    Ok((query, from, until))
}

fn parse_max_nodes(value: Option<&str>) -> Result<Option<usize>, AppError> {
    parse_whole(value, 1..=usize::MAX, "`maxNodes` must be a whole number of nodes ≥ 1")
}

/// An optional whole-number parameter (absent or empty: `None`) within `range`; `rule` says
/// what it must be, for the 400.
fn parse_whole<T: std::str::FromStr + PartialOrd>(
    value: Option<&str>,
    range: std::ops::RangeInclusive<T>,
    rule: &str,
) -> Result<Option<T>, AppError> {
    match value.filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(n) => n
            .parse::<T>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| AppError::bad_request(format!("{rule}, not `{n}`"))),
    }
}

/// Trees of fewer nodes are sent whole even when `visibleWidth` asks for a part.
const SMALLEST_CUT_TREE: usize = 10_000;

/// Widths up to this are accepted: eight 8K screens side by side; the cut costs one pass over
/// the tree whatever the width.
const MAX_VISIBLE_WIDTH: u64 = 65_536;

fn parse_visible_width(value: Option<&str>) -> Result<Option<u64>, AppError> {
    let rule = format!("`visibleWidth` must be a whole number of pixels from 1 to {MAX_VISIBLE_WIDTH}");
    parse_whole(value, 1..=MAX_VISIBLE_WIDTH, &rule)
}

fn text_response(content_type: &'static str, body: impl IntoResponse) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn bad_query_string(e: QueryRejection) -> AppError {
    AppError::bad_request(format!("bad query string: {e}"))
}

/// Query string of `/render/time-order`.
#[derive(Debug, Deserialize)]
pub struct TimeOrderParams {
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

/// `/render/time-order?query=app.cpu{…}&from=…&until=…`: the uploads in the range in time order,
/// one column each ([`query::time_order`]), encoded as the Open page's time order is
/// ([`time_order::encode`]). More uploads than [`query::MAX_TIME_ORDER_UPLOADS`] answer 422.
pub async fn render_time_order(
    State(state): State<AppState>,
    tenant: Tenant,
    cancel: Cancel,
    params: Result<QueryString<TimeOrderParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let QueryString(params) = params.map_err(bad_query_string)?;
    let (query, ..) = parse_query(
        state.query_limits,
        &tenant,
        "query",
        params.query.as_deref(),
        ("from", params.from.as_deref()),
        ("until", params.until.as_deref()),
    )?;
    let timed = query::time_order(&state.store, &query, &cancel).await?;
    cancel.check()?;
    Ok(([(header::CONTENT_TYPE, time_order::CONTENT_TYPE)], time_order::encode(&timed)).into_response())
}

/// `/render?query=app.cpu{…}&from=…&until=…&format=json|tree|folded|svg|pprof|speedscope`.
pub async fn render(
    State(state): State<AppState>,
    tenant: Tenant,
    cancel: Cancel,
    params: Result<QueryString<RenderParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let QueryString(params) = params.map_err(bad_query_string)?;
    let RenderRequest { text, query, from, until, max_nodes, visible_width, svg_options } =
        RenderRequest::parse(&params, state.query_limits, &tenant)?;
    let format = params.format.as_deref().unwrap_or("json");
    // Shared with the page's own merge: the explorer's render merged this query a moment ago.
    let merged = state.merges.merge(&state.store, &query, &cancel).await?;
    let mut tree = Cow::Borrowed(&merged.tree);
    let collapse = collapse_list(params.collapse.as_deref().unwrap_or(""));
    if !collapse.is_empty() {
        tree = Cow::Owned(collapse_recursion(&tree, |name| collapse.contains(&name)));
    }
    // The viewer fetches the whole tree after a cut one: worth it only for a large tree that
    // the cut makes much smaller.
    let mut part = "whole";
    if let Some(width) = visible_width.filter(|_| tree.len() >= SMALLEST_CUT_TREE) {
        let visible = tree.visible_part(width);
        if visible.len() * 2 <= tree.len() {
            tree = Cow::Owned(visible);
            part = "visible";
        }
    }
    if let Some(limit) = max_nodes {
        tree = Cow::Owned(truncate::max_nodes(&tree, limit));
    }
    // Encoding a large tree takes a while too: not for a request already answered 503.
    cancel.check()?;
    let tree = tree.as_ref();
    match format {
        "json" => Ok(Json(flamebearer_profile(&text, tree, &merged)).into_response()),
        "tree" => Ok((
            [
                (header::CONTENT_TYPE, codec::CONTENT_TYPE.to_string()),
                (UNITS_HEADER, merged.units.clone()),
                (PART_HEADER, part.to_string()),
            ],
            codec::encode(tree),
        )
            .into_response()),
        "folded" | "collapsed" => Ok(text_response("text/plain; charset=utf-8", folded::print(tree))),
        "svg" => Ok(text_response("image/svg+xml", export::svg(tree, &svg_options, &text, &merged.units)?)),
        "pprof" => {
            let meta = export::PprofMeta {
                profile_type: merged.profile_type.as_deref().unwrap_or("samples"),
                units: &merged.units,
                sample_rate: merged.sample_rate,
                from,
                until,
            };
            let body = export::pprof(tree, &meta)?;
            Ok((
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"profile.pb.gz\""),
                ],
                body,
            )
                .into_response())
        }
        "speedscope" => Ok(Json(export::speedscope(tree, &text, &merged.units)).into_response()),
        other => Err(AppError::bad_request(format!(
            "unknown format `{other}`; supported: json, tree, folded, svg, pprof, speedscope"
        ))),
    }
}

/// Everything `/render` decides from its query string before reading storage.
struct RenderRequest {
    /// The query as written, for titles and metadata.
    text: String,
    query: Query,
    from: Option<i64>,
    until: Option<i64>,
    max_nodes: Option<usize>,
    visible_width: Option<u64>,
    svg_options: SvgOptions,
}

impl RenderRequest {
    fn parse(params: &RenderParams, limits: QueryLimits, tenant: &Tenant) -> Result<RenderRequest, AppError> {
        let text = params.query.clone().or(params.name.clone()).unwrap_or_default();
        let (query, from, until) = parse_query(
            limits,
            tenant,
            "query",
            Some(text.as_str()),
            ("from", params.from.as_deref()),
            ("until", params.until.as_deref()),
        )?;
        // JSON answers are never the whole of a huge tree unless asked for with a bound (the
        // viewer reads the binary `tree` instead); other formats keep everything unless asked.
        let max_nodes =
            match (params.format.as_deref().unwrap_or("json"), parse_max_nodes(params.max_nodes.as_deref())?) {
                ("json" | "speedscope", asked) => Some(limits.json_nodes(asked)?),
                (_, asked) => asked,
            };
        let visible_width = parse_visible_width(params.visible_width.as_deref())?;
        let svg_options = params.svg.options()?;
        Ok(RenderRequest { text, query, from, until, max_nodes, visible_width, svg_options })
    }
}

/// What `/render` makes of its query string before reading storage (the query and `maxNodes`),
/// checked exactly as the handler does, under the default limits. No I/O: the fuzz targets
/// call it.
pub fn parse_render_query(tenant: &str, raw_query: &str) -> Result<(Query, Option<usize>), AppError> {
    let uri: axum::http::Uri = format!("/render?{raw_query}")
        .parse()
        .map_err(|e| AppError::bad_request(format!("not a request target: {e}")))?;
    let QueryString(params) = QueryString::<RenderParams>::try_from_uri(&uri).map_err(bad_query_string)?;
    let request = RenderRequest::parse(&params, QueryLimits::default(), &Tenant(tenant.to_string()))?;
    Ok((request.query, request.max_nodes))
}

/// `/render-diff?leftQuery=&leftFrom=&leftUntil=&rightQuery=&rightFrom=&rightUntil=&format=json|svg`.
pub async fn render_diff(
    State(state): State<AppState>,
    tenant: Tenant,
    cancel: Cancel,
    params: Result<QueryString<RenderDiffParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let QueryString(params) = params.map_err(bad_query_string)?;
    let (left_query, ..) = parse_query(
        state.query_limits,
        &tenant,
        "leftQuery",
        params.left_query.as_deref(),
        ("leftFrom", params.left_from.as_deref()),
        ("leftUntil", params.left_until.as_deref()),
    )?;
    let (right_query, ..) = parse_query(
        state.query_limits,
        &tenant,
        "rightQuery",
        params.right_query.as_deref(),
        ("rightFrom", params.right_from.as_deref()),
        ("rightUntil", params.right_until.as_deref()),
    )?;
    let format = params.format.as_deref().unwrap_or("json");
    let max_nodes = match (format, parse_max_nodes(params.max_nodes.as_deref())?) {
        ("json", asked) => Some(state.query_limits.json_nodes(asked)?),
        (_, asked) => asked,
    };
    let svg_options = params.svg.options()?;
    let left = query::merge_cancellable(&state.store, &left_query, &cancel).await?;
    let right = query::merge_cancellable(&state.store, &right_query, &cancel).await?;
    if let (Some(l), Some(r)) = (&left.profile_type, &right.profile_type)
        && l != r
    {
        return Err(AppError::bad_request_with(
            format!("profile types differ: left is `{l}`, right is `{r}`; compare one type with itself"),
            json!({ "leftProfileType": l, "rightProfileType": r }),
        ));
    }
    // Samples cannot be compared with nanoseconds; an empty side has no units to disagree.
    if left.tree.total() > 0 && right.tree.total() > 0 && left.units != right.units {
        return Err(AppError::bad_request_with(
            format!("units differ: left is in `{}`, right in `{}`", left.units, right.units),
            json!({ "leftUnits": left.units, "rightUnits": right.units }),
        ));
    }
    let left_text = params.left_query.unwrap_or_default();
    let right_text = params.right_query.unwrap_or_default();
    let mut tree = diff::diff(&left.tree, &right.tree);
    if let Some(limit) = max_nodes {
        tree = diff::max_nodes(&tree, limit);
    }
    cancel.check()?;
    match format {
        "json" => {
            let newest = if right.tree.total() > 0 { &right } else { &left };
            Ok(Json(json!({
                "version": 1,
                "flamebearer": flamebearer::encode_double(&tree),
                "metadata": metadata("double", &right_text, newest),
                "leftTicks": tree.left_ticks(),
                "rightTicks": tree.right_ticks(),
                "leftTimeline": timeline_json(&left.timeline),
                "rightTimeline": timeline_json(&right.timeline),
            }))
            .into_response())
        }
        "svg" => {
            let title = format!("{left_text} → {right_text}");
            let units = if right.tree.total() > 0 { &right.units } else { &left.units };
            let svg = export::svg_diff(&tree.side(false), &tree.side(true), &svg_options, &title, units)?;
            Ok(text_response("image/svg+xml", svg))
        }
        other => Err(AppError::bad_request(format!("unknown format `{other}` for a comparison; supported: json, svg"))),
    }
}
