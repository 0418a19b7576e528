//! What each fuzz target checks, as plain functions: the libFuzzer targets in `fuzz_targets/`
//! call them, and so can any other driver. Each must return normally for every input; a panic
//! is a finding.

use std::collections::BTreeMap;

use kiln_model::folded::{self, LineFormat, ParseLimits};
use kiln_model::selector::Selector;
use kiln_server::ingest::IngestLimits;
use kiln_server::ingest::pprof::{self, Destination, SampleTypeConfigs};

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

/// A pprof body (gzipped or not) as `/ingest?format=pprof` and the push endpoint decode it.
pub fn pprof(data: &[u8]) {
    let limits = IngestLimits {
        max_decompressed_bytes: 1 << 20,
        max_stack_depth: 64,
        max_labels: 8,
        max_label_bytes: 64,
        ..IngestLimits::default()
    };
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
