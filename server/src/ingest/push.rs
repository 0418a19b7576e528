//! `POST /push.v1.PusherService/Push`: Pyroscope's Connect (unary RPC) ingest, used by the
//! Rust agent 2.x and the Python agent 1.4.
//!
//! The request is a `push.v1.PushRequest` as `application/proto`, or in the proto3 JSON mapping
//! as `application/json` (`rawProfile` in base64), gzipped or not. Each series' raw samples are
//! pprof profiles, decoded by [`super::pprof`] (which documents how sample types become Kiln
//! profile types).
//!
//! **Naming.** `service_name` is the application. When it ends in a known profile type
//! (`agenttest.cpu`), that suffix is dropped, exactly as `/ingest` reads `name=agenttest.cpu`: so
//! `query=agenttest.cpu` finds the same CPU data whichever protocol the agent spoke. `__name__`
//! (the profile family, `process_cpu`, `memory`, …) is not stored: the pprof's sample types
//! already say what each series is (`process_cpu` → `cpu`, `memory` → `alloc_space`,
//! `inuse_space`, …). Other labels starting with `__` are dropped; the rest are series labels.
//!
//! Success is 200 with an empty `PushResponse`; errors use the Connect shape
//! `{"code": "...", "message": "..."}` (the handler, api/push.rs).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use base64::Engine;
use kiln_model::selector::KNOWN_PROFILE_TYPES;
use prost::Message;
use serde::Deserialize;

use super::{IngestError, MAX_IDEMPOTENCY_KEY_LEN, Sink, body, pprof, scoped_key};
pub use crate::proto::LabelPair;
use crate::storage::{KeyedUploads, Upload};
use crate::work::UploadHold;

/// `push.v1.PushRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    /// One entry per series.
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

/// `push.v1.RawProfileSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct RawProfileSeries {
    /// The series' labels, `service_name` and `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    /// Its profiles.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

/// `push.v1.RawSample`.
#[derive(Clone, PartialEq, Message)]
pub struct RawSample {
    /// A pprof, gzipped or not.
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    /// The agent's id for this upload: a retried push of the same id counts once.
    #[prost(string, tag = "2")]
    pub id: String,
}

/// The proto3 JSON mapping of the same messages.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JsonPushRequest {
    series: Vec<JsonSeries>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JsonSeries {
    labels: Vec<JsonLabel>,
    samples: Vec<JsonSample>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JsonLabel {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JsonSample {
    #[serde(rename = "rawProfile", alias = "raw_profile")]
    raw_profile: String,
    /// proto3 JSON keeps the field's own name, `ID`.
    #[serde(rename = "ID", alias = "id")]
    id: String,
}

/// How a push body is encoded (its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `application/proto`.
    Proto,
    /// `application/json`.
    Json,
}

/// A push body (as sent, gzipped or not) in `codec`, decoded and stored in `tenant`; the
/// agent's `User-Agent` is the uploads' spy name.
pub async fn push(
    sink: Sink<'_>,
    tenant: &str,
    codec: Codec,
    hold: Option<UploadHold>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), IngestError> {
    let limits = *sink.limits;
    // One budget for the whole request: its gzipped profiles share the decompressed-byte limit,
    // and all of them together the frames and nodes its size allows.
    let mut budget = limits.budget().holding(hold);
    let body = body::decode(body, headers, &mut budget)?;
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let spy_name: String = user_agent.chars().take(128).collect();
    let groups = decode(&body, codec, tenant, &spy_name, &limits, &mut budget, crate::timespec::now_unix())?;
    super::store_groups(sink, tenant, groups).await
}

/// Decodes a (decompressed) push body into the uploads it carries: one group per raw sample,
/// its `ID` (when the agent sends one) making a retried push of that sample count once. No
/// I/O, so the fuzz targets call it as the handler does.
pub fn decode(
    body: &[u8],
    codec: Codec,
    tenant: &str,
    spy_name: &str,
    limits: &super::IngestLimits,
    budget: &mut super::RequestBudget,
    now: i64,
) -> Result<Vec<KeyedUploads>, IngestError> {
    let request = match codec {
        Codec::Proto => {
            PushRequest::decode(body).map_err(|e| IngestError::malformed(format!("not a PushRequest: {e}")))?
        }
        Codec::Json => from_json(body)?,
    };
    let mut groups: Vec<KeyedUploads> = Vec::new();
    for series in &request.series {
        let (app, labels) = series_labels(&series.labels, limits)?;
        let config = pprof::SampleTypeConfigs::new();
        let dest = pprof::Destination {
            app: &app,
            labels: &labels,
            range: None,
            sample_rate: None,
            spy_name,
            config: &config,
        };
        for sample in &series.samples {
            let mut uploads: Vec<Upload> = pprof::uploads(&sample.raw_profile, &dest, limits, budget, now)?;
            super::check_upload_times(&uploads, &limits.window, now)?;
            for upload in &mut uploads {
                upload.meta.series.tenant = tenant.to_string();
            }
            let id = sample.id.trim();
            if id.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(IngestError::malformed(format!(
                    "a sample ID is longer than {MAX_IDEMPOTENCY_KEY_LEN} bytes"
                )));
            }
            let key = (!id.is_empty()).then(|| scoped_key(tenant, "push", id));
            groups.push(KeyedUploads { key, uploads });
        }
    }
    Ok(groups)
}

fn from_json(body: &[u8]) -> Result<PushRequest, IngestError> {
    let json: JsonPushRequest =
        serde_json::from_slice(body).map_err(|e| IngestError::malformed(format!("not a PushRequest in JSON: {e}")))?;
    let series = json
        .series
        .into_iter()
        .map(|s| {
            let samples = s
                .samples
                .into_iter()
                .map(|sample| {
                    // proto3 JSON allows standard or URL-safe base64, padded or not.
                    let text = sample.raw_profile.trim_end_matches('=').replace('-', "+").replace('_', "/");
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(text)
                        .map(|raw_profile| RawSample { raw_profile, id: sample.id.clone() })
                        .map_err(|e| IngestError::malformed(format!("rawProfile is not base64: {e}")))
                })
                .collect::<Result<_, _>>()?;
            let labels = s.labels.into_iter().map(|l| LabelPair { name: l.name, value: l.value }).collect();
            Ok(RawProfileSeries { labels, samples })
        })
        .collect::<Result<_, IngestError>>()?;
    Ok(PushRequest { series })
}

/// The application and the series labels of a pushed series.
fn series_labels(
    pairs: &[LabelPair],
    limits: &super::IngestLimits,
) -> Result<(String, BTreeMap<String, String>), IngestError> {
    let mut app = None;
    let mut labels = BTreeMap::new();
    for pair in pairs {
        if pair.name.len() > limits.max_label_bytes || pair.value.len() > limits.max_label_bytes {
            return Err(IngestError::malformed(format!(
                "label `{}` is longer than {} bytes",
                pair.name, limits.max_label_bytes
            )));
        }
        match pair.name.as_str() {
            "service_name" => app = Some(pair.value.trim().to_string()),
            name if name.starts_with("__") || name.is_empty() => {}
            name => {
                labels.insert(name.to_string(), pair.value.clone());
            }
        }
    }
    if labels.len() > limits.max_labels {
        return Err(IngestError::malformed(format!("more than {} labels", limits.max_labels)));
    }
    let app = app
        .filter(|a| !a.is_empty())
        .ok_or_else(|| IngestError::malformed("series has no `service_name` label (the application name)"))?;
    let app = match app.rsplit_once('.') {
        Some((head, ty)) if !head.is_empty() && KNOWN_PROFILE_TYPES.contains(&ty) => head.to_string(),
        _ => app,
    };
    Ok((app, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, value: &str) -> LabelPair {
        LabelPair { name: name.into(), value: value.into() }
    }

    #[test]
    fn service_name_is_the_app_and_internal_labels_are_dropped() {
        let limits = super::super::IngestLimits::default();
        let (app, labels) = series_labels(
            &[pair("__name__", "process_cpu"), pair("service_name", "agenttest.cpu"), pair("env", "test")],
            &limits,
        )
        .unwrap();
        assert_eq!(app, "agenttest");
        assert_eq!(labels, BTreeMap::from([("env".to_string(), "test".to_string())]));
        assert_eq!(series_labels(&[pair("service_name", "my.app")], &limits).unwrap().0, "my.app");
        assert!(series_labels(&[pair("env", "test")], &limits).is_err());
    }

    #[test]
    fn json_requests_carry_base64_profiles() {
        let body = br#"{"series":[{"labels":[{"name":"service_name","value":"a"}],"samples":[{"rawProfile":"AQI-_w","ID":"x"}]}]}"#;
        let request = from_json(body).unwrap();
        assert_eq!(request.series[0].samples[0].raw_profile, [1, 2, 0x3e, 0xff]);
        assert!(from_json(br#"{"series":[{"samples":[{"rawProfile":"***"}]}]}"#).is_err());
    }
}
