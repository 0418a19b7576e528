//! The profile formats Kiln reads: one table for `/ingest?format=`, `/api/collapse?format=` and
//! the Open page's list. Each entry says how users spell it, how it is recognised when the
//! format is not given, and which decoder reads it; the server runs the decoder
//! (`server/src/ingest/mod.rs`), the pages only show the names.

use crate::budget::DecodeBudget;
use crate::folded::LineFormat;
use crate::profile_set::{FormatError, ProfileSet};
use crate::{
    callgrind, cpuprofile, firefox_processed, gecko, ghc_json, heapprofile, instruments, jfr, papyrus, pmcstat, safari,
    stackprof, trace_event, v8_isolate_log, v8log,
};

/// How a format's bytes become a call tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// Folded stacks, in one of the model's line formats.
    Folded(LineFormat),
    /// A pprof profile (one series per sample type), gzipped or not.
    Pprof,
    /// speedscope JSON (one series per named profile).
    Speedscope,
    /// A tool's raw output, collapsed to folded stacks by inferno's collapser of this format.
    Collapse(Collapser),
    /// A file of one or more profiles read by one of the model's parsers.
    Parser(Parser),
}

/// The model's parsers of files with one or more profiles (threads, event types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parser {
    /// V8's `.cpuprofile` ([`cpuprofile`]).
    CpuProfile,
    /// The older `.cpuprofile` of a nested `head` node ([`cpuprofile::parse_tree`]).
    CpuProfileTree,
    /// Chrome's Trace Event format ([`trace_event`]).
    ChromeTrace,
    /// callgrind's format ([`callgrind`]).
    Callgrind,
    /// Ruby stackprof's JSON ([`stackprof`]).
    Stackprof,
    /// The Firefox Profiler's Gecko profile JSON ([`gecko`]).
    Gecko,
    /// The Firefox Profiler's processed format ([`firefox_processed`]).
    FirefoxProcessed,
    /// V8's sampling heap profile ([`heapprofile`]).
    HeapProfile,
    /// A V8 tick log as `node --prof-process --preprocess` writes it ([`v8log`]).
    V8Log,
    /// V8's raw tick log, `isolate-….log` from `node --prof` ([`v8_isolate_log`]).
    V8IsolateLog,
    /// GHC's JSON profile, `+RTS -pj` ([`ghc_json`]).
    GhcJson,
    /// Java Flight Recorder recordings ([`jfr`]).
    Jfr,
    /// Instruments' deep copy of a call tree ([`instruments`]).
    Instruments,
    /// FreeBSD `pmcstat -G` call graphs ([`pmcstat`]).
    Pmcstat,
    /// Papyrus script profiling logs ([`papyrus`]).
    Papyrus,
    /// Safari's timeline recordings ([`safari`]).
    Safari,
}

impl Parser {
    /// Whether `bytes` look like this format: a cheap look at the start of the file.
    pub fn looks_like(self, bytes: &[u8]) -> bool {
        match self {
            Parser::CpuProfile => cpuprofile::looks_like(bytes),
            Parser::CpuProfileTree => cpuprofile::looks_like_tree(bytes),
            Parser::ChromeTrace => trace_event::looks_like(bytes),
            Parser::Callgrind => callgrind::looks_like(bytes),
            Parser::Stackprof => stackprof::looks_like(bytes),
            Parser::Gecko => gecko::looks_like(bytes),
            Parser::FirefoxProcessed => firefox_processed::looks_like(bytes),
            Parser::HeapProfile => heapprofile::looks_like(bytes),
            Parser::V8Log => v8log::looks_like(bytes),
            Parser::V8IsolateLog => v8_isolate_log::looks_like(bytes),
            Parser::GhcJson => ghc_json::looks_like(bytes),
            Parser::Jfr => jfr::looks_like(bytes),
            Parser::Instruments => instruments::looks_like(bytes),
            Parser::Pmcstat => pmcstat::looks_like(bytes),
            Parser::Papyrus => papyrus::looks_like(bytes),
            Parser::Safari => safari::looks_like(bytes),
        }
    }

    /// Reads `bytes` within `budget`; stacks deeper than `max_depth` lose their leaf end.
    pub fn parse(self, bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
        match self {
            Parser::CpuProfile => cpuprofile::parse_budgeted(bytes, max_depth, budget),
            Parser::CpuProfileTree => cpuprofile::parse_tree_budgeted(bytes, max_depth, budget),
            Parser::ChromeTrace => trace_event::parse_budgeted(bytes, max_depth, budget),
            Parser::Callgrind => callgrind::parse_budgeted(bytes, max_depth, budget),
            Parser::Stackprof => stackprof::parse_budgeted(bytes, max_depth, budget),
            Parser::Gecko => gecko::parse_budgeted(bytes, max_depth, budget),
            Parser::FirefoxProcessed => firefox_processed::parse_budgeted(bytes, max_depth, budget),
            Parser::HeapProfile => heapprofile::parse_budgeted(bytes, max_depth, budget),
            Parser::V8Log => v8log::parse_budgeted(bytes, max_depth, budget),
            Parser::V8IsolateLog => v8_isolate_log::parse_budgeted(bytes, max_depth, budget),
            Parser::GhcJson => ghc_json::parse_budgeted(bytes, max_depth, budget),
            Parser::Jfr => jfr::parse_budgeted(bytes, max_depth, budget),
            Parser::Instruments => instruments::parse_budgeted(bytes, max_depth, budget),
            Parser::Pmcstat => pmcstat::parse_budgeted(bytes, max_depth, budget),
            Parser::Papyrus => papyrus::parse_budgeted(bytes, max_depth, budget),
            Parser::Safari => safari::parse_budgeted(bytes, max_depth, budget),
        }
    }
}

/// inferno's collapsers, one per tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collapser {
    /// `perf script`.
    Perf,
    /// DTrace's `ustack()` aggregations.
    Dtrace,
    /// macOS `sample`.
    Sample,
    /// Intel VTune's CSV export.
    Vtune,
    /// Visual Studio's profiler CSV export.
    Vsprof,
    /// GHC's `.prof` files.
    Ghcprof,
    /// Whichever of the above the input looks like.
    Guess,
}

/// How a format is recognised when the request does not name it (`format=auto`, the Open
/// page): entries are tried in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// Only when named.
    Named,
    /// When the body looks like JSON (first non-blank byte `{`).
    LooksLikeJson,
    /// When the body's start looks like the format ([`Parser::looks_like`]).
    LooksLike,
    /// When the body decodes to a non-empty tree.
    Decodes,
}

/// One format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Its `format=` value.
    pub name: &'static str,
    /// Other accepted spellings.
    pub aliases: &'static [&'static str],
    /// How it is recognised unnamed.
    pub detection: Detection,
    /// What reads it.
    pub decoder: Decoder,
    /// How the Open page names it, when it lists it (plain text).
    pub shown_as: Option<&'static str>,
}

impl Format {
    /// Whether `name` spells this format.
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// Every format, in the order `auto` tries them: the formats whose start tells them apart
/// (JFR's magic bytes, V8 profiles and logs, Chrome traces, callgrind, Firefox and Safari
/// recordings, Instruments, pmcstat and Papyrus text), then any other JSON as speedscope, then
/// folded text, then pprof, and last inferno's guess among the tools' outputs.
pub const FORMATS: &[Format] = &[
    Format {
        name: jfr::NAME,
        aliases: &["java_flight_recorder"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::Jfr),
        shown_as: Some("Java Flight Recorder (.jfr)"),
    },
    Format {
        name: cpuprofile::NAME,
        aliases: &["v8", "chrome_cpuprofile"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::CpuProfile),
        shown_as: Some("Chrome / Node .cpuprofile"),
    },
    Format {
        name: cpuprofile::TREE_NAME,
        aliases: &["cpuprofile_head", "v8_profiler"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::CpuProfileTree),
        shown_as: Some("Chrome / Node .cpuprofile, older form (a head tree, v8-profiler)"),
    },
    Format {
        name: trace_event::NAME,
        aliases: &["trace_event", "chrome_tracing"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::ChromeTrace),
        shown_as: Some("Chrome trace events (also the older performance-panel export)"),
    },
    Format {
        name: callgrind::NAME,
        aliases: &[],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::Callgrind),
        shown_as: Some("callgrind"),
    },
    Format {
        name: stackprof::NAME,
        aliases: &["ruby_stackprof"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::Stackprof),
        shown_as: Some("Ruby stackprof JSON"),
    },
    Format {
        name: firefox_processed::NAME,
        aliases: &["firefox_profiler", "processed_profile"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::FirefoxProcessed),
        shown_as: Some("Firefox Profiler (processed, as profiler.firefox.com saves it)"),
    },
    Format {
        name: gecko::NAME,
        aliases: &["firefox"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::Gecko),
        shown_as: Some("Firefox Profiler (Gecko JSON)"),
    },
    Format {
        name: heapprofile::NAME,
        aliases: &["v8_heap", "heap_profile"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::HeapProfile),
        shown_as: Some("Chrome / Node .heapprofile"),
    },
    Format {
        name: v8log::NAME,
        aliases: &["v8log", "node_prof"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::V8Log),
        shown_as: Some("Node --prof, preprocessed (--prof-process --preprocess)"),
    },
    Format {
        name: v8_isolate_log::NAME,
        aliases: &["isolate_log", "node_prof_log"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::V8IsolateLog),
        shown_as: Some("Node --prof log (isolate-*.log)"),
    },
    Format {
        name: ghc_json::NAME,
        aliases: &["ghc_json"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::GhcJson),
        shown_as: Some("GHC profile, JSON (+RTS -pj)"),
    },
    Format {
        name: safari::NAME,
        aliases: &["safari_timeline", "webkit_timeline"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::Safari),
        shown_as: Some("Safari timeline recording"),
    },
    Format {
        name: instruments::NAME,
        aliases: &["instruments_deep_copy"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::Instruments),
        shown_as: Some("Instruments call tree (deep copy)"),
    },
    Format {
        name: pmcstat::NAME,
        aliases: &["pmcstat_callgraph"],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::Pmcstat),
        shown_as: Some("FreeBSD pmcstat -G"),
    },
    Format {
        name: papyrus::NAME,
        aliases: &[],
        detection: Detection::LooksLike,
        decoder: Decoder::Parser(Parser::Papyrus),
        shown_as: Some("Papyrus profiling log"),
    },
    Format {
        name: "speedscope",
        aliases: &[],
        detection: Detection::LooksLikeJson,
        decoder: Decoder::Speedscope,
        shown_as: Some("speedscope JSON"),
    },
    Format {
        name: "folded",
        aliases: &["collapsed"],
        detection: Detection::Decodes,
        decoder: Decoder::Folded(LineFormat::Counted),
        shown_as: Some("folded stacks"),
    },
    Format {
        name: "lines",
        aliases: &[],
        detection: Detection::Named,
        decoder: Decoder::Folded(LineFormat::Lines),
        shown_as: None,
    },
    Format {
        name: "pprof",
        aliases: &[],
        detection: Detection::Decodes,
        decoder: Decoder::Pprof,
        shown_as: Some("pprof (gzipped or not)"),
    },
    Format {
        name: "perf_script",
        aliases: &["perf"],
        detection: Detection::Named,
        decoder: Decoder::Collapse(Collapser::Perf),
        shown_as: Some("perf script"),
    },
    Format {
        name: "dtrace",
        aliases: &[],
        detection: Detection::Named,
        decoder: Decoder::Collapse(Collapser::Dtrace),
        shown_as: Some("DTrace"),
    },
    Format {
        name: "sample",
        aliases: &[],
        detection: Detection::Named,
        decoder: Decoder::Collapse(Collapser::Sample),
        shown_as: Some("macOS sample"),
    },
    Format {
        name: "vtune",
        aliases: &[],
        detection: Detection::Named,
        decoder: Decoder::Collapse(Collapser::Vtune),
        shown_as: Some("VTune"),
    },
    Format {
        name: "vsprof",
        aliases: &[],
        detection: Detection::Named,
        decoder: Decoder::Collapse(Collapser::Vsprof),
        shown_as: None,
    },
    Format {
        name: "ghcprof",
        aliases: &[],
        detection: Detection::Named,
        decoder: Decoder::Collapse(Collapser::Ghcprof),
        shown_as: None,
    },
    Format {
        name: "guess",
        aliases: &[],
        detection: Detection::Decodes,
        decoder: Decoder::Collapse(Collapser::Guess),
        shown_as: None,
    },
];

/// The format `name` spells, if any.
pub fn find(name: &str) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.is_named(name))
}

/// The format whose start `bytes` look like, among those told apart that way.
pub fn sniff(bytes: &[u8]) -> Option<&'static Format> {
    FORMATS.iter().find(|f| match (f.detection, f.decoder) {
        (Detection::LooksLike, Decoder::Parser(parser)) => parser.looks_like(bytes),
        _ => false,
    })
}

/// The formats as people know them (`.cpuprofile`, `perf script`, …), for pages and error
/// messages: every format with a shown name, in detection order.
pub fn shown_names() -> Vec<&'static str> {
    FORMATS.iter().filter_map(|f| f.shown_as).collect()
}

/// Every accepted spelling, names and aliases, for error messages.
pub fn spellings() -> Vec<&'static str> {
    FORMATS.iter().flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_names_one_format() {
        let spellings = spellings();
        for spelling in &spellings {
            assert_eq!(FORMATS.iter().filter(|f| f.is_named(spelling)).count(), 1, "{spelling}");
        }
        assert_eq!(find("collapsed").map(|f| f.name), Some("folded"));
        assert_eq!(find("perf").map(|f| f.decoder), Some(Decoder::Collapse(Collapser::Perf)));
        assert_eq!(find("auto"), None);
    }

    #[test]
    fn auto_tries_json_then_text_then_pprof_then_the_tools_guess() {
        let tried: Vec<&str> = FORMATS.iter().filter(|f| f.detection != Detection::Named).map(|f| f.name).collect();
        assert_eq!(
            tried,
            [
                "jfr",
                "cpuprofile",
                "cpuprofile_tree",
                "chrome_trace",
                "callgrind",
                "stackprof",
                "firefox_processed",
                "gecko",
                "heapprofile",
                "v8_prof",
                "v8_log",
                "ghcprof_json",
                "safari",
                "instruments",
                "pmcstat",
                "papyrus",
                "speedscope",
                "folded",
                "pprof",
                "guess"
            ]
        );
        assert!(
            FORMATS.iter().all(|f| (f.detection == Detection::LooksLike) == matches!(f.decoder, Decoder::Parser(_)))
        );
    }

    #[test]
    fn each_parsed_format_is_told_apart_by_its_start() {
        let cpuprofile = br#"{"nodes":[{"id":1,"callFrame":{"functionName":"(root)"}}],"samples":[]}"#;
        let trace = br#"[{"ph":"X","name":"a","pid":1,"tid":1,"ts":0,"dur":1},"#;
        let traced = br#"{"traceEvents":[]}"#;
        let callgrind = b"# callgrind format\nversion: 1\nevents: Ir\n";
        let bare_callgrind = b"version: 1\ncmd: ./a\n\nevents: Ir Dr\nfn=main\n1 2\n";
        let speedscope = br#"{"shared":{"frames":[]},"profiles":[]}"#;
        let stackprof = br#"{"version":1.2,"mode":"cpu","interval":1000,"samples":0,"frames":{},"raw":[]}"#;
        let name = |bytes: &[u8]| sniff(bytes).map(|f| f.name);
        assert_eq!(name(cpuprofile), Some("cpuprofile"));
        assert_eq!(name(trace), Some("chrome_trace"));
        assert_eq!(name(traced), Some("chrome_trace"));
        assert_eq!(name(callgrind), Some("callgrind"));
        assert_eq!(name(bare_callgrind), Some("callgrind"));
        assert_eq!(name(speedscope), None);
        assert_eq!(name(stackprof), Some("stackprof"));
        let gecko = br#"{"meta":{"version":27,"interval":1,"stackwalk":1},"threads":[]}"#;
        assert_eq!(name(gecko), Some("gecko"));
        let processed =
            br#"{"meta":{"interval":1,"preprocessedProfileVersion":53},"shared":{"stringArray":[]},"threads":[]}"#;
        assert_eq!(name(processed), Some("firefox_processed"));
        assert_eq!(name(b"FLR\0\0\x02\0\x01"), Some("jfr"));
        assert_eq!(
            name(b"v8-version,11,3,244,8,-node.38,0\nshared-library,/usr/bin/node,0x400000,0xb71000,0\n"),
            Some("v8_log")
        );
        assert_eq!(name(b"Weight\tSelf Weight\tSymbol Name\n4.93 s  100.0%\t0 s\tmain\n"), Some("instruments"));
        assert_eq!(
            name(b"@ inst_retired.any [35705 samples]\n\n20.86%  [7447]  f @ /boot/kernel/zfs.ko\n"),
            Some("pmcstat")
        );
        assert_eq!(name(b"Stack_3185 log opened (PC)\n50002:START:3185\n"), Some("papyrus"));
        let safari = br#"{"version":1,"recording":{"displayName":"Timeline Recording 1","startTime":4.1,"endTime":6.6,"discontinuities":[],"instrumentTypes":["timeline-record-type-script"]}}"#;
        assert_eq!(name(safari), Some("safari"));
        assert_eq!(name(b"main;work 3\n"), None);
        assert_eq!(name(b"version: 1\nmain;work 3\n"), None);
    }
}
