//! Kiln's profile model.
//!
//! Everything here is pure computation over stacks and trees: no I/O, no clock, no threads, so
//! the same code runs in the server (ingest, storage, query) and in the browser (the wasm
//! flamegraph). The data flows in one direction:
//!
//! folded text → [`folded`] → [`CallTree`] (mutable, merged) → [`FlatTree`] (immutable, preorder
//! columns) → [`codec`] bytes → [`FlatTree`] in the browser → [`layout`] rectangles on a canvas.

pub mod budget;
pub mod callgrind;
pub mod codec;
pub mod cpuprofile;
pub mod diff;
pub mod firefox_processed;
pub mod flamebearer;
pub mod folded;
pub mod formats;
pub mod gecko;
pub mod ghc_json;
pub mod heapprofile;
pub mod instruments;
pub mod jfr;
mod json_events;
pub mod layout;
pub mod navigate;
mod nested_tree;
pub mod page_data;
pub mod palette;
pub mod papyrus;
pub mod perf_script;
pub mod pmcstat;
pub mod profile_set;
pub mod query_string;
pub mod raster;
pub mod recursion;
pub mod safari;
pub mod sandwich;
pub mod search;
pub mod selector;
pub mod speedscope;
pub mod stackprof;
pub mod tenant;
pub mod time_order;
pub mod top;
pub mod trace_event;
mod tree;
pub mod truncate;
pub mod units;
pub mod v8_isolate_log;
pub mod v8log;

pub use tree::{CallTree, FlatTree, NodeId, ROOT, ROOT_NAME, SeededMap, SeededState, children_column};
