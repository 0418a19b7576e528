//! What pages show besides the flamegraph, as plain data: the applications, a query's table and
//! timeline, a comparison. The server fills these in (it implements [`ProfileSource`]), the
//! pages draw them, and [`encode`] / [`decode`] carry them between the two. Living here rather
//! than beside the pages lets the server's query layer answer a page without importing the UI.
//!
//! The encoding is serde + postcard, in base64 so that it is text. It replaced a hand-written
//! text codec (`wire`, 340 lines) once measured in the release wasm (`make site`, after
//! `wasm-opt -Oz`, 2026-11-28, on 5048eac): 866,782 bytes / 332,827 gzipped with `wire`;
//! 871,034 / 334,604 with postcard in base64 as here (867,976 / 333,882 with hex instead of
//! base64). 1.8 KB gzipped buys a maintained format and no codec of our own. Bodies grow a
//! little: base64 adds a third, postcard's varints and length prefixes save a few bytes a field.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::FlatTree;
use crate::top::TopRow;

/// One application on the home page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    /// Application name.
    pub name: String,
    /// Profile types seen for it (`cpu`, `alloc_space`, …).
    pub profile_types: Vec<String>,
    /// Label names seen on its series.
    pub label_names: Vec<String>,
    /// Unix seconds of the newest upload.
    pub last_seen: i64,
    /// Number of uploads stored.
    pub uploads: u64,
}

/// What the home page shows: the applications and where agents should send data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Home {
    /// Applications, most recently seen first.
    pub apps: Vec<AppSummary>,
    /// This server as the browser reached it (`http://host:port`), for the setup instructions.
    pub address: String,
}

/// Value per time step.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimelineData {
    /// Unix seconds of the first step.
    pub start_time: i64,
    /// Seconds per step.
    pub step: i64,
    /// One value per step.
    pub samples: Vec<u64>,
}

impl TimelineData {
    /// The Unix second where the last step ends. Saturating: a timeline over stamps near the
    /// ends of `i64` (stored by a broken clock) still draws instead of overflowing.
    pub fn end_time(&self) -> i64 {
        self.start_time.saturating_add(self.step.saturating_mul(self.samples.len() as i64))
    }

    /// The Unix second at `fraction` (0..=1) of the width.
    pub fn time_at(&self, fraction: f64) -> i64 {
        let span = self.end_time() as f64 - self.start_time as f64;
        // `as i64` saturates, so the sum cannot wrap.
        self.start_time.saturating_add((span * fraction.clamp(0.0, 1.0)).round() as i64)
    }
}

/// The table and timeline of a query: everything the explorer shows except the flamegraph
/// itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerySummary {
    /// Total value of the profile.
    pub total: u64,
    /// Sample unit.
    pub units: String,
    /// Functions, largest total first (the biggest 2000).
    pub rows: Vec<TopRow>,
    /// Number of functions before the cut.
    pub functions: usize,
    /// Value per time step.
    pub timeline: TimelineData,
}

/// One function's totals on both sides of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffRow {
    /// Function name.
    pub name: String,
    /// Total on the left.
    pub left: u64,
    /// Total on the right.
    pub right: u64,
}

/// The functions of both sides, largest change in share first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// Left side's total.
    pub left_ticks: u64,
    /// Right side's total.
    pub right_ticks: u64,
    /// Sample unit.
    pub units: String,
    /// The biggest changes (at most 500).
    pub rows: Vec<DiffRow>,
    /// Left side's value per time step.
    pub left_timeline: TimelineData,
    /// Right side's value per time step.
    pub right_timeline: TimelineData,
}

/// `part` as a percentage of `total` (0 for an empty total).
pub fn share(part: u64, total: u64) -> f64 {
    if total == 0 { 0.0 } else { part as f64 * 100.0 / total as f64 }
}

impl DiffRow {
    /// How far this function's share of the profile moved, in percentage points (positive: it
    /// grew).
    pub fn change(&self, table: &Comparison) -> f64 {
        share(self.right, table.right_ticks) - share(self.left, table.left_ticks)
    }
}

/// `value` as text: its postcard bytes in base64, so that it travels inside HTML (as hydration
/// data) and as a text body.
pub fn encode<T: Serialize>(value: &T) -> String {
    // Page data is strings, numbers, vectors and options: postcard serialises all of them.
    let bytes = postcard::to_allocvec(value).expect("page data serialises");
    BASE64.encode(bytes)
}

/// Why page data did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed page data: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// [`encode`]'s text read back as one value; trailing bytes are an error, never ignored.
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    let bytes = BASE64.decode(text).map_err(|e| DecodeError(e.to_string()))?;
    let (value, rest) = postcard::take_from_bytes(&bytes).map_err(|e| DecodeError(e.to_string()))?;
    if rest.is_empty() { Ok(value) } else { Err(DecodeError(format!("{} bytes after the value", rest.len()))) }
}

/// A query's answer as the pages need it.
pub struct MergedView {
    /// Every selected upload merged.
    pub tree: FlatTree,
    /// Sample unit.
    pub units: String,
    /// Value per time step.
    pub timeline: TimelineData,
}

/// Read access to stored profiles, per tenant: what the pages' data is read from. The server
/// implements it over its store; the app never sees disks or sockets. Times are as users write
/// them (`now-1h`, Unix seconds).
pub trait ProfileSource: Send + Sync + 'static {
    /// Every application of `tenant` with data, most recently seen first.
    fn apps(&self, tenant: &str) -> Vec<AppSummary>;
    /// The merged tree and timeline of a query (`app.type{labels}`) over `[from, until)`.
    fn merged(&self, tenant: &str, query: &str, from: &str, until: &str) -> Result<MergedView, String>;
    /// Label names of the series a query selects.
    fn label_names(&self, tenant: &str, query: &str) -> Result<Vec<String>, String>;
    /// Values of one label over the series a query selects.
    fn label_values(&self, tenant: &str, label: &str, query: &str) -> Result<Vec<String>, String>;
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn malformed_records_are_errors() {
        let one = encode(&7u64);
        let two = encode(&(7u64, 8u64));
        for bad in ["", "!!!!", "<b>", "AAAA=", &one[..one.len() - 1]] {
            assert!(decode::<Vec<String>>(bad).is_err(), "{bad:?} decoded");
        }
        // A string that claims more bytes than the record holds.
        assert!(decode::<String>(&BASE64.encode([200, 1, b'a'])).is_err());
        assert!(decode::<Option<u64>>(&BASE64.encode([2, 5])).is_err(), "neither absent nor present");
        assert!(decode::<u64>(&two).is_err(), "trailing bytes");
        assert_eq!(decode::<u64>(&one), Ok(7));
    }

    proptest! {
        #[test]
        fn every_record_round_trips(
            names in proptest::collection::vec(".{0,12}", 0..6),
            numbers in proptest::collection::vec(any::<u64>(), 0..6),
            signed in any::<i64>(),
            answer in proptest::option::of(".{0,8}"),
            failed in any::<bool>(),
        ) {
            let rows: Vec<TopRow> = names
                .iter()
                .zip(numbers.iter().chain(std::iter::repeat(&0)))
                .map(|(name, &n)| TopRow { name: name.clone(), self_value: n / 2, total: n })
                .collect();
            prop_assert_eq!(decode::<Vec<TopRow>>(&encode(&rows)), Ok(rows));
            prop_assert_eq!(decode::<Vec<u64>>(&encode(&numbers)), Ok(numbers));
            prop_assert_eq!(decode::<i64>(&encode(&signed)), Ok(signed));
            let result: Result<Option<String>, String> = if failed { Err(names.concat()) } else { Ok(answer) };
            let text = encode(&result);
            // Text that HTML and hydration data carry as it is.
            prop_assert!(!text.contains(['<', '%', '"', '\\']), "{}", text);
            prop_assert_eq!(decode::<Result<Option<String>, String>>(&text), Ok(result));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = decode::<Result<Vec<TopRow>, String>>(&text);
            let _ = decode::<Option<QuerySummary>>(&text);
        }
    }

    #[test]
    fn page_records_read_back() {
        let timeline = TimelineData { start_time: -5, step: 10, samples: vec![0, 3, u64::MAX] };
        let home = Home {
            apps: vec![AppSummary {
                name: "web {x}".into(),
                profile_types: vec!["cpu".into(), "alloc_space".into()],
                label_names: vec![],
                last_seen: 1_700_000_000,
                uploads: 7,
            }],
            address: "http://127.0.0.1:4040".into(),
        };
        assert_eq!(decode::<Home>(&encode(&home)), Ok(home));
        let summary = QuerySummary {
            total: 9,
            units: "samples".into(),
            rows: vec![TopRow { name: "main".into(), self_value: 1, total: 9 }],
            functions: 1,
            timeline: timeline.clone(),
        };
        assert_eq!(decode::<QuerySummary>(&encode(&summary)), Ok(summary));
        let comparison = Comparison {
            left_ticks: 4,
            right_ticks: 0,
            units: "bytes".into(),
            rows: vec![DiffRow { name: "a:1,".into(), left: 4, right: 0 }],
            left_timeline: timeline,
            right_timeline: TimelineData::default(),
        };
        assert_eq!(decode::<Comparison>(&encode(&comparison)), Ok(comparison));
    }

    #[test]
    fn changes_are_in_points_of_each_side() {
        let row = DiffRow { name: "f".into(), left: 1, right: 3 };
        let table = Comparison {
            left_ticks: 4,
            right_ticks: 4,
            units: String::new(),
            rows: vec![],
            left_timeline: TimelineData::default(),
            right_timeline: TimelineData::default(),
        };
        assert_eq!(row.change(&table), 50.0);
        // An empty side counts as no share, not a division by zero.
        assert_eq!(row.change(&Comparison { right_ticks: 0, ..table }), -25.0);
    }

    #[test]
    fn timelines_saturate_at_the_ends_of_time() {
        let t = TimelineData { start_time: i64::MAX - 5, step: 10, samples: vec![1, 2] };
        assert_eq!(t.end_time(), i64::MAX);
        assert_eq!(t.time_at(0.0), i64::MAX - 5);
        assert!(t.time_at(1.0) >= i64::MAX - 5);
        let t = TimelineData { start_time: i64::MIN, step: i64::MAX, samples: vec![1, 2, 3] };
        assert_eq!((t.end_time(), t.time_at(1.0)), (-1, -1));
        let t = TimelineData { start_time: 100, step: 10, samples: vec![1, 2] };
        assert_eq!((t.end_time(), t.time_at(0.5), t.time_at(2.0)), (120, 110, 120));
    }
}
