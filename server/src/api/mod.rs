//! The HTTP API: one axum [`Router`] with the REST endpoints (ingest, render, health,
//! metrics, render and render-diff) beside the Leptos pages and the data they fetch.

pub mod auth;
mod collapse;
pub mod connect;
mod error;
mod export;
mod ingest;
mod labels;
mod lane;
mod otlp;
mod page_data;
pub mod protect;
mod push;
mod render;
pub mod site;
mod tenant;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any_service, get, post};
use axum::{Router, extract::DefaultBodyLimit};
use kiln_app::source::SharedSource;
use kiln_app::{PAGE_PATHS, shell};
use leptos::prelude::{LeptosOptions, provide_context, use_context};
use tower_http::trace::TraceLayer;

pub use auth::Auth;
pub use error::AppError;
pub use render::parse_render_query;
pub use site::Site;
pub use tenant::{Tenant, idempotency_key};

use crate::ingest::IngestLimits;
use crate::ingest::otlp::OtlpOptions;
use crate::metrics::{Exposition, Metrics, StorageGauges, Totals};
use crate::query::{MergeCache, QueryLimits, StoreSource};
use crate::storage::Store;
use crate::work::{Cancel, InflightBudget};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Stored profiles.
    pub store: Arc<Store>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Upload limits.
    pub limits: IngestLimits,
    /// How OTLP profiles become series (`--otlp-sample-labels`).
    pub otlp: Arc<OtlpOptions>,
    /// What one query may cost.
    pub query_limits: QueryLimits,
    /// Recent merges: a page's query merged while rendering answers the browser's fetch of its
    /// tree a moment later (`query::MergeCache` says when an entry is reused).
    pub merges: Arc<MergeCache>,
    /// What the pages' HTML calls the site's assets (`/pkg/kiln.js`, …).
    pub leptos: LeptosOptions,
    /// Where those assets are served from: the binary's own copy unless `--site-root` says.
    pub site: Site,
    /// Tokens required for uploads and reads; none by default.
    pub auth: Auth,
    /// Bytes of uploads being decoded, across requests (`--max-inflight-bytes`); its gauge and
    /// refusal counter are for `/metrics`.
    pub inflight: Arc<InflightBudget>,
    /// Handler panics answered 500 since start, for `/metrics`.
    pub panics: Arc<AtomicU64>,
}

impl AppState {
    /// A state over `store` with the default limits, no tokens, fresh metrics and the site
    /// assets built into the binary: the starting point for tests and embedders, which
    /// override what they need (`AppState { auth, ..AppState::new(store) }`).
    pub fn new(store: Arc<Store>) -> AppState {
        AppState {
            store,
            metrics: Arc::new(Metrics::default()),
            limits: IngestLimits::default(),
            otlp: Arc::default(),
            query_limits: QueryLimits::default(),
            merges: Arc::default(),
            leptos: LeptosOptions::builder().output_name("kiln").build(),
            site: Site::Embedded,
            auth: Auth::default(),
            inflight: InflightBudget::new(crate::work::DEFAULT_INFLIGHT_BYTES),
            panics: Arc::default(),
        }
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// The whole application as one router, ready to serve or to test with `oneshot`.
pub fn router(state: AppState) -> Router {
    // Rendering spawns on Leptos' executor; it is global, and set once (later calls fail harmlessly).
    let _ = any_spawner::Executor::init_tokio();
    let store = state.store.clone();
    state.metrics.observe_storage(move || storage_gauges(&store));
    let (store, merges, query_limits) = (state.store.clone(), state.merges.clone(), state.query_limits);
    // Per request: a page's merges stop at the request's deadline, which the edge put in the
    // request (Leptos provides the request's parts before this runs).
    let context = move || {
        let cancel = use_context::<Parts>().and_then(|p| p.extensions.get::<Cancel>().cloned());
        let source = StoreSource {
            store: store.clone(),
            merges: merges.clone(),
            limits: query_limits,
            cancel: cancel.unwrap_or_else(Cancel::never),
        };
        provide_context(SharedSource(Arc::new(source)));
    };
    let shell_options = state.leptos.clone();
    // Pages render whole before the first byte: their data is read while rendering, so the
    // status and the head are known, and there is nothing to stream out of order.
    let page = leptos_axum::render_app_async_with_context(context.clone(), move || shell(shell_options.clone()));
    // Uploads are read, counted in the in-flight budget and decoded inline when small; queries
    // and pages run on the heavy lane. The rest (health, labels, assets) stays on the workers.
    let upload = || middleware::from_fn_with_state(state.clone(), lane::upload);
    // The Open page's files: read as uploads are, within their own (larger) body limit.
    let collapse_upload = || middleware::from_fn_with_state(state.clone(), lane::collapse_upload);
    let collapse_limit = || DefaultBodyLimit::max(state.limits.collapse_body_bytes());
    let heavy = || middleware::from_fn(lane::heavy);
    let mut router = Router::new()
        .route("/ingest", post(ingest::ingest).layer(upload()))
        .route("/pyroscope/ingest", post(ingest::ingest).layer(upload()))
        .route("/push.v1.PusherService/Push", post(push::push).layer(upload()))
        .route(crate::ingest::otlp::HTTP_PATH, post(otlp::export_http).layer(upload()))
        // Refusals before tonic runs (budget, body limit) are answered as gRPC statuses.
        .route(
            crate::ingest::otlp::GRPC_EXPORT_PATH,
            any_service(otlp::grpc_service(state.clone()))
                .layer(upload())
                .layer(middleware::from_fn_with_state(state.clone(), otlp::grpc_refusals)),
        )
        .route(
            "/querier.v1.QuerierService/{method}",
            post(connect::querier).layer(DefaultBodyLimit::max(connect::MAX_MESSAGE_BYTES)).layer(heavy()),
        )
        .route(
            "/settings.v1.SettingsService/{method}",
            post(connect::settings).layer(DefaultBodyLimit::max(connect::MAX_MESSAGE_BYTES)),
        )
        .route("/adhocprofiles.v1.AdHocProfileService/{method}", post(connect::unimplemented_service))
        .route("/vcs.v1.VCSService/{method}", post(connect::unimplemented_service))
        .route("/render", get(render::render).layer(heavy()))
        .route("/pyroscope/render", get(render::render).layer(heavy()))
        .route("/render/time-order", get(render::render_time_order).layer(heavy()))
        .route("/render-diff", get(render::render_diff).layer(heavy()))
        .route("/pyroscope/render-diff", get(render::render_diff).layer(heavy()))
        .route("/api/apps", get(labels::apps))
        .route("/api/collapse", post(collapse::collapse).layer(collapse_limit()).layer(collapse_upload()))
        .route("/api/collapse/time-order", post(collapse::time_order).layer(collapse_limit()).layer(collapse_upload()))
        .route("/api/page-data/{name}", get(page_data::page_data).layer(heavy()))
        .route("/labels", get(labels::labels))
        .route("/label-values", get(labels::label_values))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/pkg/{*name}", get(site::asset))
        .route("/favicon.ico", get(site::favicon));
    for path in PAGE_PATHS {
        let page = page.clone();
        router = router.route(path, get(move |request: Request<Body>| page(request)).layer(heavy()));
    }
    // Any other path is the "not found" page (the app renders it for paths it does not know).
    let not_found_options = state.leptos.clone();
    let not_found = leptos_axum::render_app_async_with_context(context, move || shell(not_found_options.clone()));
    router
        .fallback(move |request: Request<Body>| async move {
            let mut response = not_found(request).await;
            if response.status() == StatusCode::OK {
                *response.status_mut() = StatusCode::NOT_FOUND;
            }
            response
        })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        // Inside `observe_request`, so a panic's 500 is counted with the other 5xx.
        .layer(protect::catch_panics(state.panics.clone()))
        // Inside `observe_request`, so refused requests show in the 4xx count.
        .layer(middleware::from_fn_with_state(state.auth.clone(), auth::require_token))
        .layer(middleware::from_fn_with_state(state.clone(), observe_request))
        // Failures are logged once, where their cause is known (`AppError`, the panic hook),
        // not again here.
        .layer(TraceLayer::new_for_http().on_failure(()))
        // Outermost, so every answer carries them: refusals, panics and assets included.
        .layer(middleware::from_fn(protect::security_headers))
        .with_state(state)
}

/// Counts and times every request by route template. `Router::layer` wraps each route, so the
/// matched template is known here; the fallback (static files, 404s) has none.
async fn observe_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_request(
        route.as_ref().map(MatchedPath::as_str),
        &method,
        response.status(),
        started.elapsed(),
    );
    response
}

/// The storage figures `/metrics` reads at each scrape.
fn storage_gauges(store: &Store) -> StorageGauges {
    let stats = store.stats();
    StorageGauges {
        head_bytes: stats.head_bytes,
        frozen_heads: stats.frozen_heads,
        wal_segments: stats.wal_segments,
        blocks: stats.blocks,
        flush_failures: Some(stats.flush_failures),
        compaction_failures: Some(stats.compaction_failures),
        log_records_skipped: store.is_clustered().then(|| store.log_records_skipped()),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    // The store is open once the state exists; check its directory is still there.
    if let Some(reason) = state.store.unready() {
        (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
    } else if state.store.dir().is_dir() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "data directory is gone").into_response()
    }
}

/// OpenMetrics for scrapers that ask for it, the Prometheus text format otherwise.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Exposition::for_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    state.metrics.sync_totals(Totals {
        inflight_bytes: state.inflight.in_flight(),
        refused_inflight: state.inflight.refused(),
        refused_disk_floor: state.store.stats().low_disk_refusals,
        handler_panics: state.panics.load(std::sync::atomic::Ordering::Relaxed),
    });
    ([(header::CONTENT_TYPE, format.content_type())], state.metrics.render(format)).into_response()
}
