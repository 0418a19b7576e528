//! `GET /render`: a query's merged tree in the format the caller asks for.

use axum::Json;
use axum::extract::{Query as QueryString, State, rejection::QueryRejection};
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use kiln_model::{codec, flamebearer, folded};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppError, AppState};
use crate::query::{self, Merged, Query};
use crate::timespec;

/// The tree format carries numbers only; its unit travels in this header.
const UNITS_HEADER: HeaderName = HeaderName::from_static("x-kiln-units");

/// Query string of `/render`.
#[derive(Debug, Deserialize)]
pub struct RenderParams {
    query: Option<String>,
    name: Option<String>,
    from: Option<String>,
    until: Option<String>,
    format: Option<String>,
}

/// Pyroscope's `/render` answer: flamebearer, metadata, timeline.
fn flamebearer_profile(name: &str, merged: &Merged) -> Value {
    json!({
        "flamebearer": flamebearer::encode(&merged.tree),
        "metadata": {
            "format": "single",
            "spyName": merged.spy_name,
            "sampleRate": merged.sample_rate,
            "units": merged.units,
            "name": name,
        },
        "timeline": {
            "startTime": merged.timeline.start_time,
            "samples": merged.timeline.samples,
            "durationDelta": merged.timeline.step,
        },
    })
}

/// `/render?query=app.cpu{…}&from=…&until=…&format=json|tree|folded`.
pub async fn render(
    State(state): State<AppState>,
    params: Result<QueryString<RenderParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let QueryString(params) = params.map_err(|e| AppError::bad_request(format!("bad query string: {e}")))?;
    let text = params
        .query
        .or(params.name)
        .ok_or_else(|| AppError::bad_request("missing `query` (e.g. `query=myapp.cpu`)"))?;
    // With no range, everything stored is in view.
    let (from, until) = timespec::parse_range(params.from.as_deref(), params.until.as_deref(), timespec::now_unix())
        .map_err(AppError::bad_request)?;
    let query = Query::parse(&text, from, until)?;
    let merged = query::merge(&state.store, &query);
    match params.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(flamebearer_profile(&text, &merged)).into_response()),
        "tree" => Ok((
            [(header::CONTENT_TYPE, codec::CONTENT_TYPE.to_string()), (UNITS_HEADER, merged.units.clone())],
            codec::encode(&merged.tree),
        )
            .into_response()),
        "folded" | "collapsed" => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], folded::print(&merged.tree)).into_response())
        }
        other => Err(AppError::bad_request(format!("unknown format `{other}`; supported: json, tree, folded"))),
    }
}
