//! `GET /api/page-data/{name}?…`: the data a page asks for when its URL changes (a query's
//! table and timeline, label names and values, a comparison), in the encoding the page
//! decodes. The pages define the requests (`kiln_app::pages::answer`), `kiln_model::page_data`
//! their answers; this is only the HTTP side.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use kiln_app::source::{TenantSource, address_of};

use super::{AppError, AppState, Tenant};
use crate::query::{self, StoreSource};
use crate::work::{Cancel, Cancelled};

/// Answers one page-data request; 404 for a name no page asks for, 422 for a query over the
/// query limits, 400 for a request the query engine refuses, 503 when its time ran out.
pub async fn page_data(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    cancel: Cancel,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let store_source = StoreSource {
        store: state.store.clone(),
        merges: state.merges.clone(),
        limits: state.query_limits,
        cancel: cancel.clone(),
    };
    let source = TenantSource::new(Arc::new(store_source), tenant.0, address_of(host));
    match kiln_app::pages::answer(&name, query.as_deref().unwrap_or(""), &source) {
        None => Err(AppError::NotFound(format!("no page data named `{name}`"))),
        // The merge stopped at the request's deadline: 503, as for `/render`.
        Some(Err(_)) if cancel.is_cancelled() => Err(Cancelled.into()),
        Some(Err(message)) if query::is_too_large(&message) => Err(AppError::Unprocessable(message)),
        Some(Err(message)) => Err(AppError::bad_request(message)),
        Some(Ok(body)) => Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()),
    }
}
