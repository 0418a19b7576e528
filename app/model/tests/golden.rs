//! Golden files: real folded captures parsed by the model, summarised (totals, node count, the
//! top functions) and compared with checked-in expectations. `BLESS=1 cargo test` rewrites them
//! after an intended change; review the diff before committing.

use std::path::PathBuf;

use kiln_model::folded::{self, LineFormat, ParseLimits};
use kiln_model::{codec, top};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn summary(input: &[u8]) -> String {
    let tree =
        folded::parse(input, LineFormat::Counted, ParseLimits::default()).expect("real captures parse").to_flat();
    tree.validate().expect("a valid tree");
    assert_eq!(codec::decode(&codec::encode(&tree)).expect("round trip"), tree);
    let mut out = format!(
        "total {}\nnodes {}\nnames {}\nstacks {}\n\n",
        tree.total(),
        tree.len(),
        tree.names.len(),
        tree.stacks().len()
    );
    out.push_str("self\ttotal\tfunction\n");
    for row in top::top_table(&tree).iter().take(25) {
        out.push_str(&format!("{}\t{}\t{}\n", row.self_value, row.total, row.name));
    }
    out
}

fn check(golden_name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(golden_name);
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

#[test]
fn perf_capture_collapsed_by_inferno() {
    let input = std::fs::read(data("example-perf-stacks-collapsed.txt")).unwrap();
    check("example-perf-stacks.summary.txt", &summary(&input));
}

#[test]
fn rust_service_with_long_names() {
    let input = std::fs::read(data("flamegraph-base-flames.txt")).unwrap();
    check("flamegraph-base-flames.summary.txt", &summary(&input));
}

#[test]
fn printing_gives_back_the_same_stacks() {
    let input = std::fs::read_to_string(data("example-perf-stacks-collapsed.txt")).unwrap();
    let tree = folded::parse(input.as_bytes(), LineFormat::Counted, ParseLimits::default()).unwrap().to_flat();
    let mut original: Vec<&str> = input.lines().filter(|l| !l.is_empty()).collect();
    let printed = folded::print(&tree);
    let mut reprinted: Vec<&str> = printed.lines().collect();
    original.sort_unstable();
    reprinted.sort_unstable();
    assert_eq!(original, reprinted);
}
