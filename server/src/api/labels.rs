//! Discovery endpoints: applications, label names and label values (Pyroscope's names).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Query as QueryString, State, rejection::QueryRejection};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppError, AppState};
use crate::query::Query;
use crate::storage::SeriesKey;

/// `?query=app.type{matchers}&label=name`, both optional where the endpoint allows.
#[derive(Debug, Deserialize)]
pub struct LabelParams {
    query: Option<String>,
    label: Option<String>,
}

/// The series a (possibly absent) query selects.
fn selected_series(state: &AppState, query: Option<&str>) -> Result<Vec<SeriesKey>, AppError> {
    let series = state.store.series();
    let Some(text) = query.filter(|q| !q.trim().is_empty()) else {
        return Ok(series);
    };
    let query = Query::parse(text, i64::MIN, i64::MAX)?;
    Ok(series.into_iter().filter(|key| query.selects(key)).collect())
}

/// `GET /api/apps`: every application with its profile types, labels and last upload.
pub async fn apps(State(state): State<AppState>) -> Json<Value> {
    let apps: Vec<Value> = state
        .store
        .apps()
        .into_iter()
        .map(|a| {
            json!({
                "name": a.name,
                "profileTypes": a.profile_types,
                "labelNames": a.label_names,
                "lastSeen": a.last_seen,
                "uploads": a.uploads,
            })
        })
        .collect();
    Json(Value::Array(apps))
}

/// `GET /labels?query=`: label names of the selected series (plus `__name__`, the app).
pub async fn labels(
    State(state): State<AppState>,
    params: Result<QueryString<LabelParams>, QueryRejection>,
) -> Result<Json<Vec<String>>, AppError> {
    let QueryString(params) = params.map_err(|e| AppError::bad_request(format!("bad query string: {e}")))?;
    let mut names: BTreeSet<String> = BTreeSet::from(["__name__".to_string()]);
    for key in selected_series(&state, params.query.as_deref())? {
        names.extend(key.labels.into_keys());
    }
    Ok(Json(names.into_iter().collect()))
}

/// `GET /label-values?label=&query=`: values of one label over the selected series.
pub async fn label_values(
    State(state): State<AppState>,
    params: Result<QueryString<LabelParams>, QueryRejection>,
) -> Result<Json<Vec<String>>, AppError> {
    let QueryString(params) = params.map_err(|e| AppError::bad_request(format!("bad query string: {e}")))?;
    let label = params.label.filter(|l| !l.is_empty()).ok_or_else(|| AppError::bad_request("missing `label`"))?;
    let mut values = BTreeSet::new();
    for key in selected_series(&state, params.query.as_deref())? {
        if label == "__name__" {
            values.insert(format!("{}.{}", key.app, key.profile_type));
        } else if let Some(v) = key.labels.get(&label) {
            values.insert(v.clone());
        }
    }
    Ok(Json(values.into_iter().collect()))
}
