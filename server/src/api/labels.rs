//! Discovery endpoints: applications, label names and label values (Pyroscope's names).

use axum::Json;
use axum::extract::{Query as QueryString, State, rejection::QueryRejection};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppError, AppState, Tenant};
use crate::query;

/// `?query=app.type{matchers}&label=name`, both optional where the endpoint allows.
#[derive(Debug, Deserialize)]
pub struct LabelParams {
    query: Option<String>,
    label: Option<String>,
}

/// `GET /api/apps`: every application with its profile types, labels and last upload.
pub async fn apps(State(state): State<AppState>, tenant: Tenant) -> Json<Value> {
    let apps: Vec<Value> = state
        .store
        .apps(&tenant.0)
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
    tenant: Tenant,
    params: Result<QueryString<LabelParams>, QueryRejection>,
) -> Result<Json<Vec<String>>, AppError> {
    let QueryString(params) = params.map_err(|e| AppError::bad_request(format!("bad query string: {e}")))?;
    Ok(Json(query::label_names(&state.store, &tenant.0, params.query.as_deref())?))
}

/// `GET /label-values?label=&query=`: values of one label over the selected series.
pub async fn label_values(
    State(state): State<AppState>,
    tenant: Tenant,
    params: Result<QueryString<LabelParams>, QueryRejection>,
) -> Result<Json<Vec<String>>, AppError> {
    let QueryString(params) = params.map_err(|e| AppError::bad_request(format!("bad query string: {e}")))?;
    let label = params.label.filter(|l| !l.is_empty()).ok_or_else(|| AppError::bad_request("missing `label`"))?;
    Ok(Json(query::label_values(&state.store, &tenant.0, &label, params.query.as_deref())?))
}
