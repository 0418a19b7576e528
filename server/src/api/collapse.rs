//! `POST /api/collapse?format=auto|pprof|speedscope|perf_script|…`: a profile file in, its tree out in
//! the compact binary format. Stores nothing: it is how the viewer opens local files whose
//! format the browser does not parse itself. The formats are those of
//! [`kiln_model::formats::FORMATS`], as for `/ingest`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use kiln_model::formats::{self, Collapser, Decoder, Parser};
use kiln_model::time_order::{self, TimeOrder, TimedProfile};
use kiln_model::{CallTree, codec, perf_script, speedscope};
use serde::Deserialize;

use super::{AppError, AppState};
use crate::ingest;

/// `?format=`.
#[derive(Debug, Deserialize)]
pub struct CollapseParams {
    format: Option<String>,
}

/// Reads the body as `format` (default `auto`) and answers the tree, unit in `x-kiln-units`.
pub async fn collapse(
    State(state): State<AppState>,
    Query(params): Query<CollapseParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(super::ingest::body_rejection)?;
    let format = params.format.filter(|f| !f.is_empty()).unwrap_or_else(|| "auto".into());
    let limits = state.limits;
    let (tree, units) = tokio::task::spawn_blocking(move || ingest::read_profile(&body, &headers, &format, &limits))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok((
        [(header::CONTENT_TYPE, codec::CONTENT_TYPE.to_string()), (HeaderName::from_static("x-kiln-units"), units)],
        codec::encode(&tree),
    )
        .into_response())
}

/// `POST /api/collapse/time-order?format=auto|cpuprofile|chrome_trace|speedscope|perf_script`:
/// a file with timestamps in, the samples of its busiest timed profile (thread) in time order
/// out, with that profile's tree ([`time_order::encode`]). Stores nothing: the Open page asks
/// for it to show its "Time order" view.
///
/// Formats without times answer 422; more than [`time_order::MAX_SAMPLES`] samples 413, so the
/// answer (about 6 bytes a sample) and the browser's chart stay bounded. The body is read as
/// sent: the browser posts the file it opened, and a gzipped file is not one it offers time
/// order for.
pub async fn time_order(
    State(state): State<AppState>,
    Query(params): Query<CollapseParams>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(super::ingest::body_rejection)?;
    let format = params.format.filter(|f| !f.is_empty()).unwrap_or_else(|| "auto".into());
    let limits = state.limits;
    let timed = tokio::task::spawn_blocking(move || read_time_order(&body, &format, &limits))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, time_order::CONTENT_TYPE)], time_order::encode(&timed)).into_response())
}

/// The timed profile of `body`, read as `format`.
fn read_time_order(body: &[u8], format: &str, limits: &ingest::IngestLimits) -> Result<TimedProfile, AppError> {
    let found = if format == "auto" {
        formats::sniff(body)
            .or_else(|| speedscope::looks_like_json(body).then(|| formats::find("speedscope")).flatten())
            .or_else(|| perf_script::looks_like_timed(body).then(|| formats::find("perf_script")).flatten())
    } else {
        formats::find(format)
    };
    let no_times = |what: &str| {
        AppError::Unprocessable(format!(
            "{what}: nothing to show in time order; .cpuprofile, Chrome trace, evented speedscope and \
             `perf script` files with timestamps open in it"
        ))
    };
    let Some(found) = found else {
        return Err(match format {
            "auto" => no_times("this file is not a format with timestamps"),
            other => AppError::BadRequest {
                message: format!("unknown format `{other}`; expected one of: {}", formats::spellings().join(", ")),
                detail: None,
            },
        });
    };
    let mut budget = limits.budget();
    budget.decode.grant(body.len() as u64);
    // (name, tree, time order, unit) of every profile that kept one.
    let timed: Vec<(String, CallTree, TimeOrder, String)> = match found.decoder {
        Decoder::Parser(parser @ (Parser::CpuProfile | Parser::ChromeTrace)) => {
            ingest::profile_set::read(parser, body, limits, &mut budget)?
                .parts
                .into_iter()
                .filter_map(|p| Some((p.name, p.tree, p.time_order?, p.units)))
                .collect()
        }
        Decoder::Speedscope => {
            let file = ingest::speedscope::read(body, limits, &mut budget)?;
            file.profiles
                .into_iter()
                .filter_map(|p| Some((p.name, p.tree, p.time_order?, file.units.to_string())))
                .collect()
        }
        Decoder::Collapse(Collapser::Perf) => {
            // The flamegraph of `perf script` is inferno's; its times are read by the model.
            perf_script::parse_budgeted(body, limits.max_stack_depth, &mut budget.decode)
                .map_err(|e| match e.exhausted {
                    Some(_) => AppError::Unprocessable(e.to_string()),
                    None => AppError::BadRequest { message: e.to_string(), detail: None },
                })?
                .parts
                .into_iter()
                .filter_map(|p| Some((p.name, p.tree, p.time_order?, p.units)))
                .collect()
        }
        _ => return Err(no_times(&format!("{} files have no timestamps", found.name))),
    };
    if let Some((name, ..)) = timed.iter().find(|(_, _, order, _)| order.overflowed) {
        return Err(AppError::TooLarge(format!(
            "{name} has more than {} samples, too many to show in time order; its flamegraph still opens",
            time_order::MAX_SAMPLES
        )));
    }
    // The busiest profile: the one a trace's user most likely opened it for.
    let (name, tree, order, units) = timed
        .into_iter()
        .filter(|(_, _, order, _)| !order.samples.is_empty())
        .max_by_key(|(_, tree, _, _)| tree.total())
        .ok_or_else(|| no_times("this file's profiles have no timestamps (they count samples) or are empty"))?;
    Ok(TimedProfile { name, ..TimedProfile::new(&tree, &order, &units) })
}
