//! Golden files for the parsers of whole profile files: real files written by the real tools
//! (`tests/data/formats/README.md` says how each was made), read into profiles and printed as
//! folded stacks, one section per profile. `BLESS=1 cargo test -p kiln-model --test formats`
//! rewrites the expectations after an intended change; review the diff before committing.

use std::path::PathBuf;

use kiln_model::budget::DecodeBudget;
use kiln_model::formats::{self, Decoder, Parser};
use kiln_model::profile_set::{ProfileSet, Split};
use kiln_model::{
    callgrind, cpuprofile, firefox_processed, folded, gecko, ghc_json, heapprofile, instruments, papyrus, pmcstat,
    safari, stackprof, trace_event, v8_isolate_log, v8log,
};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every profile as folded stacks under a `# name (units): total` line.
fn printed(set: &ProfileSet) -> String {
    let mut out = String::new();
    for part in &set.parts {
        let flat = part.tree.to_flat();
        flat.validate().expect("a valid tree");
        out.push_str(&format!("# {} ({}): {}\n", part.name, part.units, flat.total()));
        out.push_str(&folded::print(&flat));
    }
    out
}

fn check(golden_name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/formats").join(golden_name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}; run with BLESS=1", path.display()));
    if expected != actual {
        let dump = std::env::temp_dir().join(golden_name);
        std::fs::write(&dump, actual).expect("write actual output");
        panic!(
            "{} differs from the golden file; actual output is in {} (BLESS=1 to accept)",
            path.display(),
            dump.display()
        );
    }
}

/// The format the table recognises `bytes` as, read through the table's parser.
fn sniffed(bytes: &[u8]) -> (&'static str, ProfileSet) {
    let format = formats::sniff(bytes).expect("recognised by its content");
    let Decoder::Parser(parser) = format.decoder else { panic!("{} has no parser", format.name) };
    (format.name, parser.parse(bytes, 1024, &mut DecodeBudget::unlimited()).expect("a real file parses"))
}

#[test]
fn node_cpuprofile() {
    let bytes = data("node-fib.cpuprofile");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "cpuprofile");
    assert_eq!(set.parts.len(), 1);
    let part = &set.parts[0];
    assert_eq!(part.units, "nanoseconds");
    // Every sample weighs the time to the next one, the last the time to endTime: the total is
    // the profile's span from its first sample to its end.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let deltas: i64 = json["timeDeltas"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).sum();
    let span = json["endTime"].as_i64().unwrap() - json["startTime"].as_i64().unwrap();
    let first = json["timeDeltas"][0].as_i64().unwrap();
    assert_eq!(part.tree.total(), ((span - first) * 1000) as u64, "deltas add to {deltas}");
    let printed = printed(&set);
    assert!(printed.contains("busy;fib;fib"), "{printed}");
    assert!(printed.contains("busy;sortMany"), "{printed}");
    check("node-fib.cpuprofile.folded", &printed);
}

#[test]
fn chromium_trace_from_playwright() {
    let bytes = data("chromium.trace.json");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "chrome_trace");
    assert_eq!(set.split, Split::Threads);
    let names: Vec<&str> = set.parts.iter().map(|p| p.name.as_str()).collect();
    assert!(names.iter().any(|n| n.contains("CrRendererMain")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("CPU profile")), "{names:?}");
    assert!(set.parts.iter().all(|p| p.units == "nanoseconds"));
    let (merged, _) = set.merged().unwrap();
    assert_eq!(merged.total(), set.parts.iter().map(|p| p.tree.total()).sum::<u64>());
    let printed = printed(&set);
    assert!(printed.contains(";fib;fib"), "the V8 samples keep their stacks");
    assert!(printed.contains("Layout"), "the spans are read");
    check("chromium.trace.folded", &printed);
}

#[test]
fn a_trace_cut_short_with_a_trailing_comma_still_opens() {
    // Chrome writes one event per line and the closing `]` last: cut it after any event.
    let text = String::from_utf8(data("chromium.trace.json")).unwrap();
    let events: Vec<&str> = text.lines().skip(1).filter(|l| l.starts_with("{\"args\"") && l.ends_with(',')).collect();
    assert!(events.len() > 100);
    let cut = format!("[\n{}\n", events[..events.len() / 2].join("\n"));
    assert!(cut.trim_end().ends_with(','));
    let set = trace_event::parse(cut.as_bytes(), 1024).expect("a trace cut short opens");
    assert!(!set.parts.is_empty());
    // Cut inside an event, the file is refused, naming the format.
    let torn = &cut[..cut.len() - 30];
    let err = trace_event::parse(torn.as_bytes(), 1024).unwrap_err();
    assert!(err.to_string().starts_with("chrome_trace: "), "{err}");
}

#[test]
fn callgrind_from_valgrind() {
    let bytes = data("cg.callgrind");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "callgrind");
    assert_eq!(set.split, Split::EventTypes);
    let events: Vec<&str> = set.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(events, ["Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"]);
    // The `summary:` line is what the file says it holds in all: the tree keeps it all.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let summary: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let totals: Vec<u64> = set.parts.iter().map(|p| p.tree.total()).collect();
    assert_eq!(totals, summary);
    let printed = printed(&set);
    assert!(printed.contains("main;middle;leaf "), "{printed}");
    assert!(printed.contains("main;other;leaf "), "{printed}");
    check("cg.callgrind.folded", &printed);
    assert_eq!(callgrind::parse(&bytes, 1024).unwrap().parts.len(), 9);
    assert!(matches!(formats::find("callgrind").unwrap().decoder, Decoder::Parser(Parser::Callgrind)));
    assert!(cpuprofile::looks_like(&data("node-fib.cpuprofile")));
}

/// A part's flame chart, row by row, one box a line (`row start..end name`, times in µs), the
/// first `limit` lines.
fn chart_printed(part: &kiln_model::profile_set::Part, limit: usize) -> String {
    use kiln_model::time_order::{FlameChart, TimedProfile};
    let order = part.time_order.as_ref().expect("a timed format keeps its time order");
    let timed = TimedProfile::new(&part.tree, order, &part.units);
    let chart = FlameChart::new(&timed.tree, &timed.samples);
    let mut out = format!("# {} ({} samples, {} µs)\n", part.name, timed.samples.len(), chart.end / 1000);
    let lines = chart.rows.iter().enumerate().flat_map(|(row, boxes)| {
        let tree = &timed.tree;
        boxes.iter().map(move |b| format!("{row} {}..{} {}\n", b.start / 1000, b.end / 1000, tree.name_of(b.node)))
    });
    out.extend(lines.take(limit));
    out
}

/// What a time order must hold whatever the file: samples in order without overlap, and the
/// same time as the tree (less any spent in the root itself, which has no frame to draw).
fn check_time_order(part: &kiln_model::profile_set::Part) {
    let order = part.time_order.as_ref().expect("a time order");
    assert!(!order.overflowed);
    for pair in order.samples.windows(2) {
        assert!(pair[0].end() <= pair[1].start, "{:?}", pair);
    }
    let timed = kiln_model::time_order::TimedProfile::new(&part.tree, order, &part.units);
    let in_root = timed.tree.self_value[0];
    assert_eq!(timed.samples.iter().map(|s| s.weight).sum::<u64>() + in_root, part.tree.total(), "{}", part.name);
}

#[test]
fn node_cpuprofile_in_time_order() {
    let (_, set) = sniffed(&data("node-fib.cpuprofile"));
    let part = &set.parts[0];
    check_time_order(part);
    // Sampled: every sample lasts until the next, so the chart has no gap and spans the tree.
    let order = part.time_order.as_ref().unwrap();
    assert!(order.samples.windows(2).all(|p| p[0].end() == p[1].start));
    let printed = chart_printed(part, 400);
    assert!(printed.lines().any(|l| l.ends_with(" busy")), "{printed}");
    check("node-fib.cpuprofile.time-order", &printed);
}

#[test]
fn chromium_trace_in_time_order() {
    let (_, set) = sniffed(&data("chromium.trace.json"));
    for part in &set.parts {
        check_time_order(part);
    }
    let profile = set.parts.iter().find(|p| p.name.starts_with("CPU profile")).unwrap();
    let main = set.parts.iter().find(|p| p.name.contains("CrRendererMain")).unwrap();
    check("chromium.trace.time-order", &(chart_printed(profile, 200) + &chart_printed(main, 200)));
}

#[test]
fn ruby_stackprof_json() {
    let bytes = data("stackprof-fib.json");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "stackprof");
    assert_eq!(set.parts.len(), 1);
    let part = &set.parts[0];
    assert_eq!((part.name.as_str(), part.units.as_str()), ("cpu", "nanoseconds"));
    // Every sample the file counts (garbage collection's among them) weighs the interval, in µs.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let samples = json["samples"].as_u64().unwrap();
    assert_eq!(part.tree.total(), samples * json["interval"].as_u64().unwrap() * 1000);
    let printed = printed(&set);
    assert!(printed.contains(";Object#busy;Object#fib;Object#fib"), "{printed}");
    assert!(printed.contains("(garbage collection);(marking)"), "{printed}");
    check("stackprof-fib.folded", &printed);
    assert!(!stackprof::looks_like(&data("node-fib.cpuprofile")));
}

#[test]
fn firefox_gecko_profile() {
    let bytes = data("gecko-fib.json");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "gecko");
    // One profile per thread of every process, each sample (with a stack) weighing the interval.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut expected = Vec::new();
    let mut pending = vec![&json];
    while let Some(profile) = pending.pop() {
        let interval_ns = (profile["meta"]["interval"].as_f64().unwrap() * 1e6) as u64;
        for thread in profile["threads"].as_array().unwrap() {
            let stack = thread["samples"]["schema"]["stack"].as_u64().unwrap() as usize;
            let rows = thread["samples"]["data"].as_array().unwrap();
            let sampled = rows.iter().filter(|row| !row[stack].is_null()).count() as u64;
            let label = format!("{} (pid {}, tid {})", thread["name"].as_str().unwrap(), thread["pid"], thread["tid"]);
            expected.push((label.replace('"', ""), sampled * interval_ns));
        }
        pending.extend(profile["processes"].as_array().unwrap().iter().rev());
    }
    let got: Vec<(String, u64)> = set.parts.iter().map(|p| (p.name.clone(), p.tree.total())).collect();
    assert_eq!(got, expected);
    // Each thread's samples in time order, from its first: every sample once, none overlapping.
    for part in &set.parts {
        let order = part.time_order.as_ref().expect("Gecko samples have times");
        assert_eq!(order.samples.iter().map(|s| s.weight).sum::<u64>(), part.tree.total(), "{}", part.name);
        assert!(order.samples.windows(2).all(|w| w[0].end() <= w[1].start), "{}", part.name);
    }
    assert!(set.parts.len() > 1 && set.parts.iter().all(|p| p.units == "nanoseconds"));
    let printed = printed(&set);
    assert!(
        printed.contains("busy (file:///tmp/ff/gecko-fib.html:5:14);fib (file:///tmp/ff/gecko-fib.html:4:13)"),
        "the page's JS keeps its stacks"
    );
    // The whole browser's stacks are 0.8 MB: the golden file keeps each thread's total and the
    // page's own stacks.
    let page: String = printed
        .lines()
        .filter(|l| l.starts_with("# ") || l.contains("gecko-fib.html"))
        .map(|l| format!("{l}\n"))
        .collect();
    check("gecko-fib.folded", &page);
    assert!(!gecko::looks_like(&data("stackprof-fib.json")) && !gecko::looks_like(&data("chromium.trace.json")));
}

#[test]
fn firefox_processed_profile_written_by_hand_from_its_documented_format() {
    // No producer runs here: `firefox-processed.json` was written by hand from the Firefox
    // Profiler's types (src/types/profile.ts, processed version 53): three threads of two
    // processes, strings shared, one thread's samples weighted in traced milliseconds with
    // time deltas, a function with frames at two lines.
    let bytes = data("firefox-processed.json");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "firefox_processed");
    assert_eq!(set.split, Split::Threads);
    // Each thread's samples with a stack, each weighing its weight: samples times the
    // interval, traced milliseconds as they are.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let interval_ms = json["meta"]["interval"].as_f64().unwrap();
    let expected: Vec<(String, u64)> = json["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|thread| {
            let samples = &thread["samples"];
            let per_sample_ms = if samples["weightType"] == "tracing-ms" { 1.0 } else { interval_ms };
            let total_ms: f64 = (0..samples["stack"].as_array().unwrap().len())
                .filter(|&i| !samples["stack"][i].is_null())
                .map(|i| samples["weight"].get(i).and_then(|w| w.as_f64()).unwrap_or(1.0) * per_sample_ms)
                .sum();
            let label = format!(
                "{} {} (pid {}, tid {})",
                thread["processName"].as_str().unwrap(),
                thread["name"].as_str().unwrap(),
                thread["pid"].as_str().unwrap(),
                thread["tid"]
            );
            (label, (total_ms * 1e6).round() as u64)
        })
        .collect();
    let got: Vec<(String, u64)> = set.parts.iter().map(|p| (p.name.clone(), p.tree.total())).collect();
    assert_eq!(got, expected);
    for part in &set.parts {
        check_time_order(part);
    }
    let printed = printed(&set);
    assert!(
        printed.contains("XRE_InitChildProcess;js::RunScript;busy (file:///tmp/ff/fib.html:5:14);fib (file:///tmp/ff/fib.html:4:13);fib (file:///tmp/ff/fib.html:4:13);fib (file:///tmp/ff/fib.html:4:13) 2000000"),
        "frames at two lines of one function read as the function, named as the Gecko profile names it: {printed}"
    );
    check("firefox-processed.folded", &printed);
    assert!(!firefox_processed::looks_like(&data("gecko-fib.json")), "a Gecko profile is not the processed format");
    // Named `gecko`, the processed format is read all the same.
    let named = gecko::parse(&bytes, 1024).unwrap();
    assert_eq!(printed, self::printed(&named));
}

#[test]
fn node_heap_profile() {
    let bytes = data("node-alloc.heapprofile");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "heapprofile");
    assert_eq!(set.parts.len(), 1);
    assert_eq!((set.parts[0].name.as_str(), set.parts[0].units.as_str()), ("heap", "bytes"));
    // Every node's `selfSize` is in the tree, under its stack.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut expected = 0;
    let mut pending = vec![&json["head"]];
    while let Some(node) = pending.pop() {
        expected += node["selfSize"].as_u64().unwrap();
        pending.extend(node["children"].as_array().unwrap());
    }
    assert_eq!(set.parts[0].tree.total(), expected);
    let printed = printed(&set);
    assert!(printed.contains(";buildTable;makeRow ") && printed.contains(";render;join "), "{printed}");
    check("node-alloc.heapprofile.folded", &printed);
    assert!(!heapprofile::looks_like(&data("node-fib.cpuprofile")));
    assert!(!cpuprofile::looks_like(&bytes), "a heap profile is not taken for a CPU profile");
}

#[test]
fn node_prof_tick_log_preprocessed() {
    let bytes = data("v8-work.prof.json");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "v8_prof");
    assert_eq!(set.parts.len(), 1);
    let part = &set.parts[0];
    assert_eq!(part.units, "nanoseconds");
    // Every tick is in the time order, and the order spans the ticks' times.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let ticks = json["ticks"].as_array().unwrap();
    let order = part.time_order.as_ref().unwrap();
    assert_eq!(order.samples.len(), ticks.len());
    assert_eq!(order.samples.iter().map(|s| s.weight).sum::<u64>(), part.tree.total());
    let printed = printed(&set);
    assert!(printed.contains(";main;fib;fib;fib"), "the script's recursion: {printed}");
    assert!(printed.contains(";main;hot"), "{printed}");
    check("v8-work.prof.folded", &printed);
    for other in ["node-fib.cpuprofile", "node-alloc.heapprofile", "stackprof-fib.json", "chromium.trace.json"] {
        assert!(!v8log::looks_like(&data(other)), "{other} taken for a V8 tick log");
    }
    assert!(!heapprofile::looks_like(&bytes) && !cpuprofile::looks_like(&bytes));
}

/// Folded stacks without the frames `dropped` names (and addresses, `0x…`), equal stacks
/// merged: what two readings of one run share when only one knows the C++ symbols.
fn without_frames(set: &ProfileSet, dropped: &std::collections::HashSet<String>) -> Vec<(String, u64)> {
    let mut stacks = std::collections::BTreeMap::new();
    for line in printed(set).lines().filter(|l| !l.starts_with("# ")) {
        let (stack, value) = line.rsplit_once(' ').unwrap();
        let kept: Vec<&str> = stack.split(';').filter(|f| !dropped.contains(*f) && !f.starts_with("0x")).collect();
        *stacks.entry(kept.join(";")).or_insert(0) += value.parse::<u64>().unwrap();
    }
    stacks.into_iter().collect()
}

#[test]
fn node_prof_raw_isolate_log_reads_as_v8s_own_tick_processor_does() {
    let bytes = data("v8-work.isolate.log");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "v8_log");
    assert_eq!(set.parts.len(), 1);
    let part = &set.parts[0];
    assert_eq!((part.name.as_str(), part.units.as_str()), ("main", "nanoseconds"));
    let text = String::from_utf8(bytes.clone()).unwrap();
    let ticks = text.lines().filter(|l| l.starts_with("tick,")).count();
    let order = part.time_order.as_ref().unwrap();
    assert_eq!(order.samples.len(), ticks);
    assert_eq!(order.samples.iter().map(|s| s.weight).sum::<u64>(), part.tree.total());

    // What `node --prof-process --preprocess` made of this same log (v8-work.isolate.prof.json):
    // the same ticks at the same times, and tick by tick the same stacks, but for native code:
    // C++ functions, which V8's tool names from the binary's symbols and Kiln (without them)
    // by library, and the builtins and bytecode handlers embedded in node's binary, which
    // V8's tool names by the binary (it looks in a library's pages before the code logged
    // there) and Kiln by their `code-creation` names.
    let preprocessed = data("v8-work.isolate.prof.json");
    let reference = v8log::parse(&preprocessed, 1024).unwrap();
    assert_eq!(part.tree.total(), reference.parts[0].tree.total());
    let starts = |set: &ProfileSet| -> Vec<u64> {
        set.parts[0].time_order.as_ref().unwrap().samples.iter().map(|s| s.start).collect()
    };
    assert_eq!(starts(&set), starts(&reference));
    let json: serde_json::Value = serde_json::from_slice(&preprocessed).unwrap();
    let mut native: std::collections::HashSet<String> = json["code"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "CPP" || c["type"] == "SHARED_LIB")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    native.extend(text.lines().filter_map(|l| l.strip_prefix("shared-library,")?.split(',').next().map(String::from)));
    let embedded: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("code-creation,Builtin,") || l.starts_with("code-creation,BytecodeHandler,"))
        .map(|l| l.split(',').nth(6).unwrap().to_string())
        .collect();
    assert!(embedded.iter().any(|name| printed(&set).contains(&format!(";{name}"))), "builtins are named");
    native.extend(embedded);
    let (ours, theirs) = (without_frames(&set, &native), without_frames(&reference, &native));
    assert!(ours.iter().any(|(stack, _)| stack.contains(";main;fib;fib;fib")), "{ours:?}");
    assert_eq!(ours, theirs);

    let printed = printed(&set);
    assert!(printed.contains(";main;hot"), "{printed}");
    check("v8-work.isolate.folded", &printed);
    for other in ["v8-work.prof.json", "cg.callgrind", "node-fib.cpuprofile"] {
        assert!(!v8_isolate_log::looks_like(&data(other)), "{other} taken for a raw V8 log");
    }
}

#[test]
fn ghc_json_profile() {
    let bytes = data("ghc-fib.prof.json");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "ghcprof_json");
    assert_eq!(set.split, Split::EventTypes);
    let parts: Vec<(&str, &str)> = set.parts.iter().map(|p| (p.name.as_str(), p.units.as_str())).collect();
    assert_eq!(parts, [("time", "nanoseconds"), ("alloc", "bytes")]);
    // Every node's ticks (times the tick interval) and allocations, as GHC wrote them.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let (mut ticks, mut alloc) = (0, 0);
    let mut pending = vec![&json["profile"]];
    while let Some(node) = pending.pop() {
        ticks += node["ticks"].as_u64().unwrap();
        alloc += node["alloc"].as_u64().unwrap();
        pending.extend(node["children"].as_array().unwrap());
    }
    assert_eq!(ticks, json["total_ticks"].as_u64().unwrap());
    assert_eq!(set.parts[0].tree.total(), ticks * json["tick_interval"].as_u64().unwrap() * 1000);
    assert_eq!(set.parts[1].tree.total(), alloc);
    let printed = printed(&set);
    assert!(
        printed.contains("MAIN.MAIN;Main.CAF;Main.main;Main.fib "),
        "named as inferno names GHC's text profiles: {printed}"
    );
    check("ghc-fib.prof.folded", &printed);
    assert!(!ghc_json::looks_like(&data("node-fib.cpuprofile")) && !ghc_json::looks_like(&data("v8-work.prof.json")));
}

/// Lines of a `# name (units): total` / folded-stacks listing, each profile's stacks sorted.
fn sorted_sections(listing: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in listing.lines().filter(|l| !l.is_empty()) {
        match line.strip_prefix("# ") {
            Some(title) => sections.push((title.to_string(), Vec::new())),
            None => sections.last_mut().expect("a title first").1.push(line.to_string()),
        }
    }
    for (_, stacks) in &mut sections {
        stacks.sort();
    }
    sections
}

#[test]
fn openjdk_flight_recording_matches_what_jfr_print_reports() {
    // `jfr-demo.sh` recorded it and wrote what OpenJDK's own `jfr print --json` says of its
    // events (jfr-expected.py): every profile's stacks and totals must be the same.
    let bytes = data("jfr-demo.jfr");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "jfr");
    assert_eq!(set.split, Split::EventTypes);
    let expected = String::from_utf8(data("jfr-demo.jfr-print.folded")).unwrap();
    if sorted_sections(&printed(&set)) != sorted_sections(&expected) {
        let dump = std::env::temp_dir().join("jfr-demo.kiln.folded");
        std::fs::write(&dump, printed(&set)).unwrap();
        panic!("the profiles differ from what `jfr print` reports; Kiln's are in {}", dump.display());
    }

    // The counts `jfr summary` gives for the sampled events are the profiles' totals.
    let summary = String::from_utf8(data("jfr-demo.summary.txt")).unwrap();
    let count = |event: &str| -> u64 {
        let line = summary.lines().find(|l| l.split_whitespace().next() == Some(event)).expect(event);
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let total = |name: &str| set.parts.iter().find(|p| p.name == name).map(|p| p.tree.total());
    assert_eq!(total("cpu"), Some(count("jdk.ExecutionSample")));
    assert_eq!(total("native"), Some(count("jdk.NativeMethodSample")));
    assert_eq!(total("alloc_in_new_tlab_objects"), Some(count("jdk.ObjectAllocationInNewTLAB")));
    assert_eq!(total("lock_count"), Some(count("jdk.JavaMonitorEnter")));
    let printed = printed(&set);
    for stack in ["JfrDemo.main;JfrDemo.burnFib;JfrDemo.fib;JfrDemo.fib", "JfrDemo.lambda$main$0;JfrDemo.holdMonitor"] {
        assert!(printed.contains(stack), "{stack}");
    }

    // Two chunks (recordings concatenated, as JFR rotates them) read as one recording.
    let twice = [bytes.clone(), bytes].concat();
    let (_, doubled) = sniffed(&twice);
    let totals = |set: &ProfileSet| set.parts.iter().map(|p| p.tree.total()).collect::<Vec<_>>();
    assert_eq!(totals(&doubled), totals(&set).iter().map(|t| t * 2).collect::<Vec<_>>());
}

#[test]
fn instruments_deep_copy_written_by_hand() {
    // No Instruments here: written by hand in the layout its Edit ▸ Deep Copy of a Time
    // Profiler call tree has (Instruments 16: `Weight`, `Self Weight`, `Symbol Names`, one
    // space of indentation a level).
    let bytes = data("instruments-deep-copy.txt");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "instruments");
    assert_eq!((set.parts[0].name.as_str(), set.parts[0].units.as_str()), ("Weight", "nanoseconds"));
    // The roots' totals (the rows least indented) as the copy shows them.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let rows: Vec<(usize, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            let (value, unit) = cells[0].split_once(' ').unwrap();
            let ms = value.parse::<f64>().unwrap() * if unit.starts_with("ms") { 1.0 } else { 1000.0 };
            (cells[2].len() - cells[2].trim_start().len(), ms)
        })
        .collect();
    let root = rows.iter().map(|r| r.0).min().unwrap();
    let roots_ms: f64 = rows.iter().filter(|r| r.0 == root).map(|r| r.1).sum();
    assert_eq!(set.parts[0].tree.total(), (roots_ms * 1e6).round() as u64);
    let printed = printed(&set);
    assert!(
        printed.contains("start;main;render(Scene const&);shade(Ray const&);noise3(float, float, float) 340000000")
    );
    check("instruments-deep-copy.folded", &printed);
    assert!(!instruments::looks_like(&data("cg.callgrind")));
}

#[test]
fn pmcstat_call_graph_written_by_hand() {
    // No FreeBSD here: written by hand in the layout pmcstat(8) -G writes (`@ event [N
    // samples]`, then each sampled function and its callers, one space more a level).
    let bytes = data("pmcstat-callgraph.txt");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "pmcstat");
    assert_eq!(set.split, Split::EventTypes);
    // One profile per event, holding every sample its header counts.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let headers: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("@ "))
        .map(|l| {
            let (event, count) = l.split_once(" [").unwrap();
            (event.to_string(), count.trim_end_matches(" samples]").parse().unwrap())
        })
        .collect();
    let got: Vec<(String, u64)> = set.parts.iter().map(|p| (p.name.clone(), p.tree.total())).collect();
    assert_eq!(got, headers);
    let printed = printed(&set);
    // Stacks run from the outermost caller to where the samples landed; memcpy's 30 samples
    // without a caller stop at it.
    assert!(printed.contains("_start;main;compress_file;compress_block;memcpy 270\n"), "{printed}");
    assert!(printed.contains("\nmemcpy 30\n"), "{printed}");
    check("pmcstat-callgraph.folded", &printed);
    assert!(!pmcstat::looks_like(&data("cg.callgrind")));
}

#[test]
fn papyrus_stack_log_written_by_hand() {
    // No Skyrim here: written by hand in the layout of Papyrus' stack profiling logs
    // (`time:EVENT:stack:depth:form:Script..Function`).
    let bytes = data("papyrus-stack.log");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "papyrus");
    assert_eq!(set.parts.len(), 1);
    let part = &set.parts[0];
    assert_eq!((part.name.as_str(), part.units.as_str()), ("stack 4242", "nanoseconds"));
    // From the first call entered to its return, every millisecond in one call or another.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let time = |event: &str| -> u64 {
        let line = text.lines().find(|l| l.contains(event)).unwrap();
        line.split(':').next().unwrap().parse().unwrap()
    };
    let span_ms = time(":POP:4242:2:None:kiln_quest..Tick") - time(":PUSH:4242:2:None:kiln_quest..Tick");
    assert_eq!(part.tree.total(), span_ms * 1_000_000);
    check_time_order(part);
    let printed = printed(&set);
    assert!(printed.contains("kiln_quest..Tick;kiln_quest..UpdateMarkers;utility..Wait 500000000"), "{printed}");
    check("papyrus-stack.folded", &printed);
    assert!(!papyrus::looks_like(&data("cg.callgrind")));
}

#[test]
fn safari_timeline_recording_written_by_hand() {
    // No Safari here: written by hand in the shape Web Inspector's Timelines export has
    // (`recording.sampleStackTraces` leaf first, `recording.sampleDurations` in seconds).
    let bytes = data("safari-recording.json");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "safari");
    let part = &set.parts[0];
    assert_eq!((part.name.as_str(), part.units.as_str()), ("Timeline Recording 1", "nanoseconds"));
    // Every sample with a stack weighs its duration.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let recording = &json["recording"];
    let seconds: f64 = (0..recording["sampleDurations"].as_array().unwrap().len())
        .filter(|&i| !recording["sampleStackTraces"][i]["stackFrames"].as_array().unwrap().is_empty())
        .map(|i| recording["sampleDurations"][i].as_f64().unwrap())
        .sum();
    assert_eq!(part.tree.total(), (seconds * 1e9).round() as u64);
    check_time_order(part);
    let printed = printed(&set);
    assert!(printed.contains("(program);busy;fib;fib;fib 1000000\n"), "{printed}");
    assert!(printed.contains("(anonymous) file:///tmp/safari/fib.html:9 500000\n"), "{printed}");
    check("safari-recording.folded", &printed);
    assert!(!safari::looks_like(&data("gecko-fib.json")) && !safari::looks_like(&data("firefox-processed.json")));
}

#[test]
fn chrome_performance_panel_export_of_old_written_by_hand() {
    // No Chrome of that age here: written by hand in the shape Chrome DevTools' Performance
    // panel saved before it split the CPU profile into `Profile`/`ProfileChunk` events (as
    // speedscope's importer reads it): a JSON array of trace events, spans and metadata, and
    // the whole profile as one `CpuProfile` event, `args.data.cpuProfile` with `nodes` (and
    // their `children`), `samples`, `timeDeltas`, `startTime` and `endTime`.
    let bytes = data("chrome-timeline-cpuprofile.json");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "chrome_trace");
    let names: Vec<&str> = set.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["Renderer (pid 4242) CrRendererMain (tid 775)", "CPU profile, Renderer (pid 4242) CrRendererMain (tid 775)"]
    );
    // The profile spans from its first sample to its end: endTime - startTime - the first delta.
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let profile = &json[6]["args"]["data"]["cpuProfile"];
    let span = profile["endTime"].as_i64().unwrap() - profile["startTime"].as_i64().unwrap();
    let first = profile["timeDeltas"][0].as_i64().unwrap();
    assert_eq!(set.parts[1].tree.total(), ((span - first) * 1000) as u64);
    // The spans: busy [0, 5000) µs holding a GC [1000, 1500), Layout [5200, 6000) after it.
    assert_eq!(set.parts[0].tree.total(), 5_800_000);
    check_time_order(&set.parts[1]);
    let printed = printed(&set);
    assert!(printed.contains("busy;fib;fib 2000000\n"), "{printed}");
    check("chrome-timeline-cpuprofile.folded", &printed);
}

#[test]
fn v8_profiler_head_tree_cpuprofile_written_by_hand() {
    // No producer here (Chrome DevTools wrote this form before 2016, the `v8-profiler` modules
    // for Node still do): written by hand in the shape speedscope's importer of it reads, V8's
    // C++ API written out: one nested tree under `head` (each node its `functionName`, `url`,
    // 1-based `lineNumber`, `callUID`, `id`, `hitCount` and `children` as nodes), `startTime`
    // and `endTime` in seconds, each sample's absolute time in `timestamps` (µs).
    let bytes = data("v8-profiler-head.cpuprofile");
    let (name, set) = sniffed(&bytes);
    assert_eq!(name, "cpuprofile_tree");
    let part = &set.parts[0];
    assert_eq!((part.name.as_str(), part.units.as_str()), ("main", "nanoseconds"));
    // Samples at 100, 1100, … 5100 µs after startTime, the last weighing the time to endTime.
    assert_eq!(part.tree.total(), 6_400_000);
    check_time_order(part);
    let printed = printed(&set);
    assert!(printed.contains("(anonymous) /tmp/fib.js:1;busy;fib;fib 1000000\n"), "{printed}");
    check("v8-profiler-head.folded", &printed);
    // Told apart from the newer form and from a heap profile, which nests a tree under `head` too.
    assert!(!cpuprofile::looks_like(&bytes));
    assert!(!cpuprofile::looks_like_tree(&data("node-fib.cpuprofile")));
    assert!(!cpuprofile::looks_like_tree(&data("node-alloc.heapprofile")));
    assert!(!heapprofile::looks_like(&bytes));
}

#[test]
fn py_spy_speedscope_profile() {
    // Written by py-spy 0.4.3 from PyPI (`py-spy record --format speedscope --rate 200 -o
    // py-spy-work.speedscope.json -- python3 py-spy-work.py`): one sampled profile per thread,
    // weights in seconds.
    let bytes = data("py-spy-work.speedscope.json");
    assert!(kiln_model::speedscope::looks_like_json(&bytes));
    assert_eq!(formats::sniff(&bytes), None, "no format before speedscope takes it");
    let read = kiln_model::speedscope::parse(&bytes, 1024).expect("a real file parses");
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let profiles = json["profiles"].as_array().unwrap();
    assert_eq!(read.profiles.len(), profiles.len());
    assert_eq!(read.units, "nanoseconds");
    let thread = &read.profiles[0];
    assert_eq!(thread.name, profiles[0]["name"].as_str().unwrap());
    // Every sample's weight, 5 ms at 200 Hz, in nanoseconds.
    let seconds: f64 = profiles[0]["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).sum();
    assert_eq!(thread.tree.total(), (seconds * 1e9).round() as u64);
    let printed = folded::print(&thread.tree.to_flat());
    assert!(printed.contains("<module>;main;fib;fib;fib;"), "{printed}");
    check("py-spy-work.folded", &printed);
}
