//! What each fuzz target checks, as plain functions: the libFuzzer targets in `fuzz_targets/`
//! call them, and so can any other driver. Each must return normally for every input; a panic
//! is a finding.

use std::collections::BTreeMap;

use kiln_model::folded::{self, LineFormat, ParseLimits};
use kiln_model::selector::Selector;
use kiln_server::api::parse_render_query;
use kiln_server::ingest::pprof::{self, Destination, SampleTypeConfigs};
use kiln_server::ingest::push::{self, Codec};
use kiln_server::ingest::{IngestLimits, IngestParams};
use kiln_server::{query, timespec};

/// Small limits, so that the fuzzer reaches them with short inputs.
const PARSE_LIMITS: ParseLimits = ParseLimits { max_depth: 64, max_line_len: 4096 };

/// Folded text in both line formats; what parses must print back to text that parses to the
/// same total.
pub fn folded(data: &[u8]) {
    for format in [LineFormat::Counted, LineFormat::Lines] {
        let Ok(tree) = folded::parse(data, format, PARSE_LIMITS) else { continue };
        let flat = tree.to_flat();
        let printed = folded::print(&flat);
        // Invalid UTF-8 is read lossily: one bad byte prints as a 3-byte U+FFFD, so the printed
        // line may exceed the input's line limit.
        let relaxed = ParseLimits { max_line_len: usize::MAX, ..PARSE_LIMITS };
        let again = folded::parse(printed.as_bytes(), LineFormat::Counted, relaxed)
            .unwrap_or_else(|e| panic!("printed tree does not parse: {e}\n{printed}"));
        assert_eq!(again.total(), tree.total(), "total changed through print:\n{printed}");
    }
}

/// The clock for every target: relative times (`now-1h`) count from here.
const NOW: i64 = 1_700_000_000;

/// Small limits, so that the fuzzer reaches them with short inputs.
fn small_limits() -> IngestLimits {
    IngestLimits {
        max_decompressed_bytes: 1 << 20,
        max_stack_depth: 64,
        max_labels: 8,
        max_label_bytes: 64,
        ..IngestLimits::default()
    }
}

/// A pprof body (gzipped or not) as `/ingest?format=pprof` and the push endpoint decode it.
pub fn pprof(data: &[u8]) {
    let limits = small_limits();
    let labels = BTreeMap::new();
    let config = SampleTypeConfigs::new();
    let dest =
        Destination { app: "fuzz", labels: &labels, range: None, sample_rate: None, spy_name: "", config: &config };
    let _ = pprof::uploads(data, &dest, &limits, &mut limits.budget(), 1_700_000_000);
}

/// Names (`app.type{k=v}`) and queries, in both of Kiln's syntaxes.
pub fn selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(selector) = Selector::parse(text) {
        let _ = selector.is_exact();
    }
    let _ = Selector::parse_query(text);
}

/// Time parameters: one value for `timespec::parse`, and the input split at its first newline
/// into `from` and `until` for `parse_range`. Every value a client can send must give a time or
/// an error, never a panic or a wrapped sum.
pub fn timespec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = timespec::parse(text, NOW);
    let (from, until) = match text.split_once('\n') {
        Some((from, until)) => (Some(from), Some(until)),
        None => (Some(text), None),
    };
    let _ = timespec::parse_range(from, until, NOW);
    let _ = timespec::parse_range(None, from, NOW);
    // `/ingest?from=…&until=…`: what is accepted is stored, and must not poison later queries.
    let params = IngestParams {
        name: Some("fuzz.cpu".into()),
        from: from.map(String::from),
        until: until.map(String::from),
        ..IngestParams::default()
    };
    if let Ok(meta) = params.to_meta(&small_limits(), NOW) {
        let timeline = query::timeline(std::iter::once((meta.from, meta.until, 1)), i64::MIN, i64::MAX);
        assert!(timeline.samples.len() <= 100_000, "{} timeline points for {text:?}", timeline.samples.len());
    }
}

/// `/render`'s query string, as the handler reads it before touching storage, then the
/// timeline of that range over one upload: its size comes from the client's range and must
/// stay bounded whatever the range.
pub fn render_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok((query, _max_nodes)) = parse_render_query("fuzz", text) else { return };
    assert!(query.from < query.until, "an empty range was accepted: {text}");
    let upload = (NOW - 60, NOW, 1u64);
    let timeline = query::timeline(std::iter::once(upload), query.from, query.until);
    // Far above any real maximum: only an unbounded timeline fails this.
    assert!(timeline.samples.len() <= 100_000, "{} timeline points for {text}", timeline.samples.len());
    assert!(timeline.step > 0, "step {} for {text}", timeline.step);
}

/// A push body: the first byte picks the codec (even: protobuf, odd: JSON), the rest is the
/// (decompressed) body the handler decodes. Every upload lands in the request's tenant.
pub fn push(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else { return };
    let codec = if first % 2 == 0 { Codec::Proto } else { Codec::Json };
    let limits = small_limits();
    let Ok(groups) = push::decode(body, codec, "fuzz", "fuzz-agent", &limits, &mut limits.budget(), NOW) else {
        return;
    };
    for group in &groups {
        assert!(group.key.as_ref().is_none_or(|k| k.starts_with("fuzz/push/")), "{:?}", group.key);
        assert!(group.uploads.iter().all(|u| u.meta.series.tenant == "fuzz"));
    }
}

/// A speedscope file, as the model reads it (the viewer's "open a file" and `/api/collapse`)
/// and as `/ingest?format=speedscope` stores it. Merging the profiles keeps their total.
pub fn speedscope(data: &[u8]) {
    if let Ok(file) = kiln_model::speedscope::parse(data, 64) {
        let merged = file.merged();
        if let Some(sum) = file.profiles.iter().try_fold(0u64, |sum, p| sum.checked_add(p.tree.total())) {
            assert_eq!(merged.total(), sum, "merging changed the total");
        }
    }
    let limits = small_limits();
    let params = IngestParams { name: Some("fuzz.cpu".into()), ..IngestParams::default() };
    let meta = params.to_meta(&limits, NOW).expect("a fixed, valid name");
    let _ = kiln_server::ingest::speedscope::uploads(data, &params, &meta, &limits, &mut limits.budget());
}

/// A Java Flight Recorder recording, as the model reads it (`/api/collapse`, the Open page) and
/// as `/ingest?format=jfr` stores it. Each profile's contexts merged keep their total.
pub fn jfr(data: &[u8]) {
    let mut budget = kiln_model::budget::DecodeBudget::unlimited();
    if let Ok(recording) = kiln_model::jfr::read(data, 64, &mut budget) {
        for profile in &recording.profiles {
            let sum = profile.contexts.values().try_fold(0u64, |sum, tree| sum.checked_add(tree.total()));
            if let Some(sum) = sum {
                assert_eq!(profile.merged().total(), sum, "merging contexts changed the total");
            }
        }
    }
    let limits = small_limits();
    let params = IngestParams { name: Some("fuzz".into()), ..IngestParams::default() };
    let meta = params.to_meta(&limits, NOW).expect("a fixed, valid name");
    let _ = kiln_server::ingest::jfr::uploads(data, None, &params, &meta, &limits, &mut limits.budget());
}
