//! Tenants and retries through the router: `X-Scope-OrgID` isolates tenants in storage and in
//! every query, and an upload retried with the same idempotency key (or push sample `ID`)
//! counts once.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use kiln_server::api::{AppState, router};
use kiln_server::ingest::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use kiln_server::storage::Store;
use prost::Message;
use tower::ServiceExt;

async fn app(dir: &Path) -> (Router, Arc<Store>) {
    let store = Arc::new(Store::open(dir).await.unwrap());
    (router(AppState::new(store.clone())), store)
}

/// A request with optional tenant and idempotency headers; answers status and body text.
async fn send(
    app: &Router,
    request: axum::http::request::Builder,
    tenant: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, String) {
    let request = match tenant {
        Some(t) => request.header("X-Scope-OrgID", t),
        None => request,
    };
    let response = app.clone().oneshot(request.body(body.into()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn ingest(app: &Router, tenant: Option<&str>, name: &str, folded: &str) -> StatusCode {
    send(app, Request::post(format!("/ingest?name={name}")), tenant, folded.to_string()).await.0
}

async fn get(app: &Router, tenant: Option<&str>, uri: &str) -> String {
    let (status, body) = send(app, Request::get(uri), tenant, Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

async fn app_names(app: &Router, tenant: Option<&str>) -> Vec<String> {
    let apps: serde_json::Value = serde_json::from_str(&get(app, tenant, "/api/apps").await).unwrap();
    apps.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn tenants_see_only_their_own_data_in_head_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = app(dir.path()).await;
    let (a, b) = (Some("team-a"), Some("team-b"));
    // Both tenants use the same application name and labels; one of each is cut into a block.
    assert_eq!(ingest(&app, a, "shop.cpu%7Benv%3Dprod%7D", "main;a_only 1").await, StatusCode::OK);
    assert_eq!(ingest(&app, b, "shop.cpu%7Benv%3Dstaging%7D", "main;b_only 10").await, StatusCode::OK);
    store.flush().await.unwrap();
    assert_eq!(ingest(&app, a, "shop.cpu%7Benv%3Dprod%7D", "main;a_only 2").await, StatusCode::OK);
    assert_eq!(ingest(&app, b, "billing.cpu", "main;b_billing 100").await, StatusCode::OK);
    assert_eq!(ingest(&app, None, "shop.cpu", "main;default_only 1000").await, StatusCode::OK);

    assert_eq!(app_names(&app, a).await, ["shop"]);
    assert_eq!(app_names(&app, b).await, ["billing", "shop"]);
    assert_eq!(app_names(&app, None).await, ["shop"]);
    assert!(app_names(&app, Some("team-c")).await.is_empty());

    let render = "/render?query=shop.cpu&format=folded";
    assert_eq!(get(&app, a, render).await, "main;a_only 3\n");
    assert_eq!(get(&app, b, render).await, "main;b_only 10\n");
    assert_eq!(get(&app, None, render).await, "main;default_only 1000\n");
    let json: serde_json::Value = serde_json::from_str(&get(&app, a, "/render?query=shop.cpu").await).unwrap();
    assert_eq!(json["flamebearer"]["numTicks"], 3);

    assert_eq!(get(&app, a, "/label-values?label=env&query=shop").await, r#"["prod"]"#);
    assert_eq!(get(&app, b, "/label-values?label=env&query=shop").await, r#"["staging"]"#);
    assert_eq!(get(&app, b, "/label-values?label=__name__").await, r#"["billing.cpu","shop.cpu"]"#);
    assert_eq!(get(&app, None, "/labels?query=shop").await, r#"["__name__"]"#);

    let diff = "/render-diff?leftQuery=shop.cpu&rightQuery=shop.cpu";
    let json: serde_json::Value = serde_json::from_str(&get(&app, b, diff).await).unwrap();
    assert_eq!((json["leftTicks"].as_u64(), json["rightTicks"].as_u64()), (Some(10), Some(10)));

    // The pages read through the same tenant scope.
    let home_a = get(&app, a, "/").await;
    let home_b = get(&app, b, "/").await;
    assert!(!home_a.contains("billing") && home_b.contains("billing"), "home pages are per tenant");
    let explore = "/explore?query=shop.cpu&from=0&until=now";
    assert!(get(&app, a, explore).await.contains("a_only"));
    assert!(!get(&app, a, explore).await.contains("b_only"));
    // So does the data the pages fetch once open.
    let summary = "/api/page-data/summary?query=shop.cpu&from=0&until=now";
    let functions = |body: String| -> Vec<String> {
        let summary: kiln_model::page_data::QuerySummary = kiln_model::page_data::decode(&body).unwrap();
        summary.rows.into_iter().map(|row| row.name).collect()
    };
    assert_eq!(functions(get(&app, a, summary).await), ["a_only", "main"]);
    assert_eq!(functions(get(&app, b, summary).await), ["b_only", "main"]);

    // And the answers hold after a restart (the tenant is part of the stored series).
    drop(app);
    drop(store);
    let (app, _store) = self::app(dir.path()).await;
    assert_eq!(get(&app, a, render).await, "main;a_only 3\n");
    assert_eq!(get(&app, b, render).await, "main;b_only 10\n");
}

#[tokio::test]
async fn a_bad_tenant_id_is_a_400_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _store) = app(dir.path()).await;
    for bad in ["", "a/b", "..", "team a"] {
        let (status, body) = send(&app, Request::post("/ingest?name=x.cpu"), Some(bad), "f 1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(body.contains("X-Scope-OrgID"), "{body}");
        assert_eq!(send(&app, Request::get("/api/apps"), Some(bad), Body::empty()).await.0, StatusCode::BAD_REQUEST);
    }
    assert!(app_names(&app, None).await.is_empty());
}

async fn retried_ingest(app: &Router, tenant: Option<&str>, key: Option<&str>, folded: &str) -> StatusCode {
    let request = Request::post("/ingest?name=retry.cpu");
    let request = match key {
        Some(k) => request.header("Idempotency-Key", k),
        None => request,
    };
    send(app, request, tenant, folded.to_string()).await.0
}

#[tokio::test]
async fn a_retried_ingest_with_the_same_key_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = app(dir.path()).await;
    let total = |tenant| {
        let app = app.clone();
        async move { get(&app, tenant, "/render?query=retry.cpu&format=folded").await }
    };
    assert_eq!(retried_ingest(&app, None, Some("upload-1"), "main;work 5").await, StatusCode::OK);
    assert_eq!(retried_ingest(&app, None, Some("upload-1"), "main;work 5").await, StatusCode::OK);
    assert_eq!(total(None).await, "main;work 5\n");
    // After the head is cut into a block, a retry is still recognised.
    store.flush().await.unwrap();
    assert_eq!(retried_ingest(&app, None, Some("\"upload-1\""), "main;work 5").await, StatusCode::OK);
    assert_eq!(total(None).await, "main;work 5\n");
    // Two identical uploads without a key are both real data.
    retried_ingest(&app, None, None, "main;work 5").await;
    retried_ingest(&app, None, None, "main;work 5").await;
    assert_eq!(total(None).await, "main;work 15\n");
    // A key is the tenant's own: another tenant's upload with the same key is stored.
    assert_eq!(retried_ingest(&app, Some("other"), Some("upload-1"), "main;work 7").await, StatusCode::OK);
    assert_eq!(total(Some("other")).await, "main;work 7\n");
    // A key that is not a key is refused before anything is stored.
    assert_eq!(retried_ingest(&app, None, Some(""), "main;work 1").await, StatusCode::BAD_REQUEST);
    assert_eq!(retried_ingest(&app, None, Some(&"k".repeat(300)), "main;work 1").await, StatusCode::BAD_REQUEST);
    assert_eq!(total(None).await, "main;work 15\n");
    let metrics = get(&app, None, "/metrics").await;
    assert!(metrics.contains("kiln_ingest_duplicates_total 2"), "{metrics}");
}

fn push_body(pprof: &[u8], ids: &[&str]) -> Vec<u8> {
    PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                LabelPair { name: "service_name".into(), value: "pushed".into() },
                LabelPair { name: "__name__".into(), value: "process_cpu".into() },
            ],
            samples: ids.iter().map(|id| RawSample { raw_profile: pprof.to_vec(), id: id.to_string() }).collect(),
        }],
    }
    .encode_to_vec()
}

#[tokio::test]
async fn a_retried_push_sample_with_the_same_id_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _store) = app(dir.path()).await;
    assert_eq!(ingest(&app, None, "source.cpu", "main;hot 3").await, StatusCode::OK);
    let (status, pprof) = {
        let response = app
            .clone()
            .oneshot(Request::get("/render?query=source.cpu&format=pprof").body(Body::empty()).unwrap())
            .await
            .unwrap();
        (response.status(), to_bytes(response.into_body(), usize::MAX).await.unwrap())
    };
    assert_eq!(status, StatusCode::OK);
    let push = |ids: &[&str], tenant: Option<&str>| {
        let body = push_body(&pprof, ids);
        let app = app.clone();
        let tenant = tenant.map(str::to_string);
        async move {
            let request =
                Request::post("/push.v1.PusherService/Push").header(header::CONTENT_TYPE, "application/proto");
            send(&app, request, tenant.as_deref(), body).await
        }
    };
    let hot = |tenant: Option<&'static str>| {
        let app = app.clone();
        async move {
            let folded = get(&app, tenant, "/render?query=pushed&format=folded").await;
            folded.lines().filter_map(|l| l.rsplit_once(' ')).map(|(_, n)| n.parse::<u64>().unwrap()).sum::<u64>()
        }
    };
    assert_eq!(push(&["s1", "s2"], None).await.0, StatusCode::OK);
    assert_eq!(hot(None).await, 6);
    // The agent retries the whole request, then sends one more sample along with an old one.
    assert_eq!(push(&["s1", "s2"], None).await.0, StatusCode::OK);
    assert_eq!(hot(None).await, 6);
    assert_eq!(push(&["s2", "s3"], None).await.0, StatusCode::OK);
    assert_eq!(hot(None).await, 9);
    // Samples without an ID always count; a tenant's ids are its own.
    assert_eq!(push(&["", ""], None).await.0, StatusCode::OK);
    assert_eq!(hot(None).await, 15);
    assert_eq!(push(&["s1"], Some("team-b")).await.0, StatusCode::OK);
    assert_eq!(hot(Some("team-b")).await, 3);
    // A bad tenant is a Connect error.
    let (status, body) = push(&["s9"], Some("bad tenant")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid_argument") && body.contains("X-Scope-OrgID"), "{body}");
}
