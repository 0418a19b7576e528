//! `POST /api/collapse?format=auto|pprof|speedscope|perf_script|…`: a profile file in, its tree out in
//! the compact binary format. Stores nothing: it is how the viewer opens local files whose
//! format the browser does not parse itself. The formats are those of
//! [`kiln_model::formats::FORMATS`], as for `/ingest`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kiln_model::formats::{self, Collapser, Decoder};
use kiln_model::profile_set::Split;
use kiln_model::time_order::{self, TimeOrder, TimedProfile};
use kiln_model::{CallTree, codec, perf_script, speedscope};
use serde::Deserialize;

use super::{AppError, AppState};
use crate::ingest;

/// `?format=&part=`.
#[derive(Debug, Deserialize)]
pub struct CollapseParams {
    format: Option<String>,
    /// Which profile of a file that holds several: its index in `x-kiln-parts`, or `all`.
    part: Option<String>,
}

/// The most profiles `x-kiln-parts` lists (a later one is still answered by its index).
pub const MAX_LISTED_PARTS: usize = 256;
/// A profile's name in `x-kiln-parts` is cut to this many characters.
pub const MAX_LISTED_NAME_CHARS: usize = 120;

/// Which profile of a file the answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// Every thread merged.
    All,
    /// One profile, by index.
    Index(usize),
}

impl Choice {
    fn parse(part: Option<&str>) -> Result<Option<Choice>, AppError> {
        match part.map(str::trim) {
            None | Some("") => Ok(None),
            Some("all") => Ok(Some(Choice::All)),
            Some(index) => index.parse().map(|i| Some(Choice::Index(i))).map_err(|_| AppError::BadRequest {
                message: format!("`part` is `all` or a profile's index in x-kiln-parts, not `{index}`"),
                detail: None,
            }),
        }
    }
}

/// What `/api/collapse` answers: the tree, its unit, and for a file of several profiles their
/// list and which one the tree is.
struct Collapsed {
    tree: kiln_model::FlatTree,
    units: String,
    listing: Option<(String, String)>,
}

/// Reads the body as `format` (default `auto`) and answers the tree, unit in `x-kiln-units`.
///
/// A file of several profiles (a trace's threads, callgrind's event types, speedscope's
/// profiles) also answers `x-kiln-parts`, a JSON array (ASCII, other characters `\u`-escaped)
/// of `{"name", "units", "total", "timed"}` in file order, the first [`MAX_LISTED_PARTS`], and
/// `x-kiln-part`, which one the tree is: `all` (threads merged, the default) or an index (event
/// types, which do not merge, default to the first). `?part=` asks for another; each ask reads
/// the file again, within the same limits as the first.
pub async fn collapse(
    State(state): State<AppState>,
    Query(params): Query<CollapseParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(body_rejection)?;
    let format = params.format.filter(|f| !f.is_empty()).unwrap_or_else(|| "auto".into());
    let choice = Choice::parse(params.part.as_deref())?;
    let limits = state.limits;
    let collapsed = tokio::task::spawn_blocking(move || read_collapsed(&body, &headers, &format, choice, &limits))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let mut response = (
        [
            (header::CONTENT_TYPE, codec::CONTENT_TYPE.to_string()),
            (HeaderName::from_static("x-kiln-units"), collapsed.units),
        ],
        codec::encode(&collapsed.tree),
    )
        .into_response();
    if let Some((parts, part)) = collapsed.listing {
        let headers = response.headers_mut();
        for (name, value) in [("x-kiln-parts", parts), ("x-kiln-part", part)] {
            let value = HeaderValue::try_from(value).map_err(|e| AppError::Internal(e.to_string()))?;
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}

/// A body that could not be read: over the Open page's limit is 413, naming its setting.
fn body_rejection(e: BytesRejection) -> AppError {
    match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(format!(
            "the file is larger than the limit ({}): {}",
            super::lane::COLLAPSE_LIMIT_SETTING,
            e.body_text()
        )),
        _ => AppError::bad_request(e.body_text()),
    }
}

/// The tree `choice` names of `body`, read as `format`.
fn read_collapsed(
    body: &[u8],
    headers: &HeaderMap,
    format: &str,
    choice: Option<Choice>,
    limits: &ingest::IngestLimits,
) -> Result<Collapsed, AppError> {
    let mut budget = limits.budget();
    let decoded = ingest::open::decoded(body, headers, &mut budget)?;
    let Some(profiles) = ingest::open::read(&decoded, format, limits, &mut budget)? else {
        if matches!(choice, Some(Choice::Index(i)) if i > 0) {
            return Err(AppError::BadRequest { message: "this file holds one profile".into(), detail: None });
        }
        // Read from the decoded bytes: a gzipped body is not inflated twice.
        let (tree, units) = ingest::read_profile(&decoded, &HeaderMap::new(), format, limits)?;
        return Ok(Collapsed { tree, units, listing: None });
    };
    if profiles.parts.is_empty() {
        return Err(AppError::Unprocessable("the file holds no samples".into()));
    }
    let choice = choice.unwrap_or(match profiles.split {
        Split::Threads => Choice::All,
        Split::EventTypes => Choice::Index(0),
    });
    let (tree, units) = match choice {
        Choice::All => {
            let (tree, units) = profiles.merged().ok_or_else(|| AppError::BadRequest {
                message: "this file's profiles are different event types, which do not merge: ask for one by index"
                    .into(),
                detail: None,
            })?;
            (tree.to_flat(), units.to_string())
        }
        Choice::Index(i) => {
            let part = profiles.parts.get(i).ok_or_else(|| AppError::BadRequest {
                message: format!("the file holds {} profiles; there is no profile {i}", profiles.parts.len()),
                detail: None,
            })?;
            (part.tree.to_flat(), part.units.clone())
        }
    };
    let listed: Vec<serde_json::Value> = profiles
        .parts
        .iter()
        .take(MAX_LISTED_PARTS)
        .map(|p| {
            serde_json::json!({
                "name": p.name.chars().take(MAX_LISTED_NAME_CHARS).collect::<String>(),
                "units": p.units,
                "total": p.tree.total(),
                "timed": profiles.timed_apart || p.time_order.as_ref().is_some_and(|o| !o.samples.is_empty()),
            })
        })
        .collect();
    let part = match choice {
        Choice::All => "all".to_string(),
        Choice::Index(i) => i.to_string(),
    };
    Ok(Collapsed { tree, units, listing: Some((ascii_json(&serde_json::Value::Array(listed)), part)) })
}

/// `value` as JSON in visible ASCII, as a header value must be: every character beyond it
/// (only ever inside a string, where serde_json leaves it as is) as `\u` escapes.
fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// `POST /api/collapse/time-order?format=auto|cpuprofile|chrome_trace|speedscope|perf_script&part=`:
/// a file with timestamps in, the samples of one timed profile (thread) in time order out, with
/// that profile's tree ([`time_order::encode`]): the profile `part` names (its index in
/// `/api/collapse`'s `x-kiln-parts`), else the busiest. Stores nothing: the Open page asks for
/// it to show its "Time order" view.
///
/// Formats without times answer 422; more than [`time_order::MAX_SAMPLES`] samples 413, so the
/// answer (about 6 bytes a sample) and the browser's chart stay bounded. The body is read as
/// `/api/collapse` reads it: gzipped or not, UTF-8 or UTF-16 text.
pub async fn time_order(
    State(state): State<AppState>,
    Query(params): Query<CollapseParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(body_rejection)?;
    let format = params.format.filter(|f| !f.is_empty()).unwrap_or_else(|| "auto".into());
    let part = match Choice::parse(params.part.as_deref())? {
        Some(Choice::Index(i)) => Some(i),
        Some(Choice::All) | None => None,
    };
    let limits = state.limits;
    let timed = tokio::task::spawn_blocking(move || read_time_order(&body, &headers, &format, part, &limits))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, time_order::CONTENT_TYPE)], time_order::encode(&timed)).into_response())
}

/// The timed profile of `body`, read as `format`: profile `part`, or the busiest.
fn read_time_order(
    body: &[u8],
    headers: &HeaderMap,
    format: &str,
    part: Option<usize>,
    limits: &ingest::IngestLimits,
) -> Result<TimedProfile, AppError> {
    let mut budget = limits.budget();
    let body = ingest::open::decoded(body, headers, &mut budget)?;
    let body = body.as_slice();
    let found = if format == "auto" {
        formats::sniff(body)
            .or_else(|| speedscope::looks_like_json(body).then(|| formats::find("speedscope")).flatten())
            .or_else(|| perf_script::looks_like_timed(body).then(|| formats::find("perf_script")).flatten())
    } else {
        formats::find(format)
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
    // Every profile, in file order.
    let profiles: Vec<Timed> = match found.decoder {
        // Every parser's profiles carry their time order when the file has one.
        Decoder::Parser(_) | Decoder::Speedscope => ingest::open::read(body, found.name, limits, &mut budget)?
            .map(|profiles| profiles.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.tree, p.time_order, p.units))
            .collect(),
        Decoder::Collapse(Collapser::Perf) => {
            // The flamegraph of `perf script` is inferno's; its times are read by the model.
            let timed: Vec<Timed> = perf_script::parse_budgeted(body, limits.max_stack_depth, &mut budget.decode)
                .map_err(|e| match e.exhausted {
                    Some(_) => AppError::Unprocessable(e.to_string()),
                    None => AppError::BadRequest { message: e.to_string(), detail: None },
                })?
                .parts
                .into_iter()
                .map(|p| (p.name, p.tree, p.time_order, p.units))
                .collect();
            match part {
                // `part` counts the threads `/api/collapse` lists, inferno's: the same thread
                // here is the one of the same name (both readers name threads alike).
                Some(i) => {
                    let listed = ingest::open::read(body, found.name, limits, &mut budget)?;
                    let name = listed.and_then(|p| p.parts.into_iter().nth(i)).map(|p| p.name);
                    let found = name.and_then(|name| timed.iter().position(|t| t.0 == name));
                    return read_part(timed, found.unwrap_or(usize::MAX), i);
                }
                None => timed,
            }
        }
        _ => return Err(no_times(&format!("{} files have no timestamps", found.name))),
    };
    match part {
        Some(i) => read_part(profiles, i, i),
        // The busiest profile: the one a trace's user most likely opened it for.
        None => {
            let (name, tree, order, units) = profiles
                .into_iter()
                .filter_map(|(name, tree, order, units)| Some((name, tree, order?, units)))
                .filter(|(_, _, order, _)| !order.samples.is_empty() || order.overflowed)
                .max_by_key(|(_, tree, _, _)| tree.total())
                .ok_or_else(|| no_times("this file's profiles have no timestamps (they count samples) or are empty"))?;
            timed_profile(name, &tree, &order, &units)
        }
    }
}

/// (name, tree, time order, unit) of a profile, its time order `None` when it has no times.
type Timed = (String, CallTree, Option<TimeOrder>, String);

/// The message of a profile without times to show.
fn no_times(what: &str) -> AppError {
    AppError::Unprocessable(format!(
        "{what}: nothing to show in time order; .cpuprofile, Chrome trace, evented speedscope, Firefox \
         (Gecko or processed), Safari, stackprof (wall mode), `node --prof` logs (raw or preprocessed), \
         Papyrus logs and `perf script` files with timestamps open in it"
    ))
}

/// Profile `index` of `profiles` in time order, asked for as `part` (its index in the listing).
fn read_part(profiles: Vec<Timed>, index: usize, part: usize) -> Result<TimedProfile, AppError> {
    let count = profiles.len();
    let (name, tree, order, units) = profiles.into_iter().nth(index).ok_or_else(|| AppError::BadRequest {
        message: format!("the file holds {count} profiles; there is no profile {part}"),
        detail: None,
    })?;
    match order {
        Some(order) if !order.samples.is_empty() => timed_profile(name, &tree, &order, &units),
        _ => Err(no_times(&format!("{name} has no timestamps (it counts samples) or is empty"))),
    }
}

/// The answer of `/api/collapse/time-order`, unless there are too many samples to show.
fn timed_profile(name: String, tree: &CallTree, order: &TimeOrder, units: &str) -> Result<TimedProfile, AppError> {
    if order.overflowed {
        return Err(AppError::TooLarge(format!(
            "{name} has more than {} samples, too many to show in time order; its flamegraph still opens",
            time_order::MAX_SAMPLES
        )));
    }
    Ok(TimedProfile { name, ..TimedProfile::new(tree, order, units) })
}
