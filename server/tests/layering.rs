//! Imports point one way: a server module may import the modules below it, never one above.
//!
//! ```text
//! main → cli → upload → edge → api → ingest | query → storage
//!                                    (kiln_app: the pages, beside api)
//! timespec, metrics, work, proto: at the bottom, usable by all, importing none of the above
//! ```
//!
//! The check reads every file under `server/src`, finds the paths it names into the crate
//! (`crate::x`, `use crate::{x, y}`, `super::` chains that climb to the crate root) and into the
//! UI crate (`kiln_app::`), and fails naming the file, the line and the arrow that points up.
//! `ingest` and `query` are peers: neither imports the other. Comments are skipped, so an
//! intra-doc link upward is allowed (it documents, it does not depend).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Each top-level module of the server and its layer: higher numbers may import lower ones.
/// A module missing here fails the check, so a new one gets a place on purpose.
const LAYERS: &[(&str, u32)] = &[
    ("main", 70),
    ("lib", 70),
    ("cli", 60),
    ("upload", 50),
    ("edge", 40),
    ("api", 30),
    // The Leptos pages: api renders them; nothing below api may reach them.
    ("kiln_app", 25),
    ("ingest", 20),
    ("query", 20),
    ("storage", 10),
    ("timespec", 0),
    ("metrics", 0),
    ("work", 0),
    ("proto", 0),
];

/// Known upward imports, each removed by a change in flight. An entry that no longer matches
/// anything fails the check, so the list only shrinks.
const ALLOWED: &[(&str, &str)] = &[
    // Storage's engine tests drive the store through `query::merge` to check what reads see
    // after flushes, compactions and restarts; test code only.
    ("src/storage/engine_tests.rs", "crate::query::{self, Query}"),
];

/// One upward import.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    /// The path as written, up to the end of its last segment or brace group.
    path: String,
    from: String,
    to: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` imports `{}` ({} → {} points up the layers)",
            self.file, self.line, self.from, self.path, self.from, self.to
        )
    }
}

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|&(_, rank)| rank)
}

/// May `from` import `to`? Downward, or within itself, or between bottom utilities; other
/// peers (ingest, query) may not.
fn allowed(from: &str, to: &str) -> bool {
    if from == to {
        return true;
    }
    match (layer(from), layer(to)) {
        (Some(0), Some(0)) => true,
        (Some(a), Some(b)) => a > b,
        // Not a module of this crate (a local item that happens to follow `crate::`).
        _ => true,
    }
}

/// The source with comments blanked out (same length, newlines kept), so that offsets still
/// give line numbers. String literals are kept: a path in a string is still text, not an import,
/// but server code does not spell crate paths in strings.
fn strip_comments(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut block_depth = 0usize;
    let mut in_line_comment = false;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if in_line_comment {
            if b == b'\n' {
                in_line_comment = false;
                out.push(b'\n');
            } else {
                out.push(b' ');
            }
            i += 1;
        } else if block_depth > 0 {
            if b == b'*' && next == Some(b'/') {
                block_depth -= 1;
                out.extend_from_slice(b"  ");
                i += 2;
            } else if b == b'/' && next == Some(b'*') {
                block_depth += 1;
                out.extend_from_slice(b"  ");
                i += 2;
            } else {
                out.push(if b == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
        } else if in_string {
            if b == b'\\' && next.is_some() {
                out.extend_from_slice(&bytes[i..i + 2]);
                i += 2;
            } else {
                in_string = b != b'"';
                out.push(b);
                i += 1;
            }
        } else if b == b'/' && next == Some(b'/') {
            in_line_comment = true;
            out.extend_from_slice(b"  ");
            i += 2;
        } else if b == b'/' && next == Some(b'*') {
            block_depth = 1;
            out.extend_from_slice(b"  ");
            i += 2;
        } else {
            // A `'"'` char literal does not open a string.
            in_string = b == b'"' && !(i > 0 && bytes[i - 1] == b'\'' && next == Some(b'\''));
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII was replaced")
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The identifier starting at `at` (empty if none).
fn ident_at(text: &str, at: usize) -> &str {
    let end = text[at..].bytes().position(|b| !is_ident(b)).map_or(text.len(), |n| at + n);
    &text[at..end]
}

/// The path starting at `at` as written: identifiers, `::`, and one `{…}` group.
fn path_at(text: &str, at: usize) -> String {
    let bytes = text.as_bytes();
    let mut end = at;
    let mut depth = 0usize;
    while end < bytes.len() {
        let b = bytes[end];
        match b {
            b'{' => depth += 1,
            b'}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    end += 1;
                    break;
                }
            }
            _ if depth > 0 => {}
            b':' => {}
            _ if is_ident(b) => {}
            _ => break,
        }
        end += 1;
    }
    text[at..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The top-level modules a path into the crate names: its first segment, or each first
/// segment of a `{a, b::c}` group.
fn first_segments(text: &str, at: usize) -> Vec<String> {
    if text[at..].starts_with('{') {
        let group = path_at(text, at);
        let inner = &group[1..group.len().saturating_sub(1)];
        let mut names = Vec::new();
        let mut depth = 0usize;
        let mut start = true;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => start = true,
                c if start && depth == 0 && !c.is_whitespace() => {
                    start = false;
                    names.push(ident_at(inner, i).to_string());
                }
                _ => {}
            }
        }
        names
    } else {
        vec![ident_at(text, at).to_string()]
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The top-level module a file under `src` belongs to, and how many module levels deep it is
/// (`src/ingest/push.rs`: `ingest`, 2; `src/ingest/mod.rs` and `src/cli.rs`: 1).
fn module_of(relative: &str) -> (String, usize) {
    let parts: Vec<&str> = relative.trim_start_matches("src/").split('/').collect();
    let stem = |file: &str| file.trim_end_matches(".rs").to_string();
    let depth = parts.len() - usize::from(parts.last() == Some(&"mod.rs"));
    (if parts.len() == 1 { stem(parts[0]) } else { parts[0].to_string() }, depth)
}

/// Every upward import in one file (`relative` as `src/…`).
fn violations(relative: &str, source: &str) -> Vec<Violation> {
    let (from, depth) = module_of(relative);
    let text = strip_comments(source);
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut report = |offset: usize, path_start: usize, to: &str| {
        if !allowed(&from, to) {
            found.push(Violation {
                file: relative.to_string(),
                line: line_of(&text, offset),
                path: path_at(&text, path_start),
                from: from.clone(),
                to: to.to_string(),
            });
        }
    };
    let starts_word = |at: usize| at == 0 || !(is_ident(bytes[at - 1]) || bytes[at - 1] == b'$');
    for (at, _) in text.match_indices("crate::") {
        if starts_word(at) {
            for to in first_segments(&text, at + "crate::".len()) {
                report(at, at, &to);
            }
        }
    }
    for (at, _) in text.match_indices("kiln_app::") {
        if starts_word(at) {
            report(at, at, "kiln_app");
        }
    }
    // `super::super::x` from a file `depth` levels down reaches the crate root after `depth`
    // steps (inline modules such as `mod tests` are one more level, so this can only err
    // toward missing a climb, and only names of top-level modules count).
    for (at, _) in text.match_indices("super::") {
        if !starts_word(at) || (at >= 2 && &text[at - 2..at] == "::") {
            continue;
        }
        let mut end = at;
        let mut steps = 0;
        while text[end..].starts_with("super::") {
            steps += 1;
            end += "super::".len();
        }
        if steps >= depth {
            for to in first_segments(&text, end) {
                if layer(&to).is_some() {
                    report(at, at, &to);
                }
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn server_modules_import_only_downward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut used: BTreeMap<(&str, &str), bool> = ALLOWED.iter().map(|&entry| (entry, false)).collect();
    for path in &files {
        let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let (module, _) = module_of(&relative);
        if layer(&module).is_none() {
            problems.push(format!("{relative}: module `{module}` has no layer; add it to LAYERS in tests/layering.rs"));
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
        for v in violations(&relative, &source) {
            let allowed = used.iter_mut().find(|((file, path), _)| *file == v.file && *path == v.path);
            match allowed {
                Some((_, seen)) => *seen = true,
                None => problems.push(v.to_string()),
            }
        }
    }
    for ((file, path), seen) in used {
        if !seen {
            problems
                .push(format!("{file}: allowed import `{path}` is gone; remove it from ALLOWED in tests/layering.rs"));
        }
    }
    assert!(
        problems.is_empty(),
        "imports must point down the layers (cli → upload → edge → api → ingest | query → storage; \
         timespec, metrics, work, proto at the bottom):\n{}",
        problems.join("\n")
    );
}

#[test]
fn an_upward_import_is_found_with_its_file_line_and_arrow() {
    let source = "//! Links to [`crate::api`] in docs are fine.\n\
                  use crate::storage::Store;\n\
                  use crate::{metrics, api::AppError};\n\
                  /* crate::edge in a block comment */\n\
                  fn f() -> kiln_app::pages::Page { crate::query::x() }\n\
                  macro_rules! m { () => { $crate::api::x() } }\n";
    let found = violations("src/storage/head.rs", source);
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "src/storage/head.rs:3: `storage` imports `crate::{metrics, api::AppError}` (storage → api points up the layers)",
            "src/storage/head.rs:5: `storage` imports `crate::query::x` (storage → query points up the layers)",
            "src/storage/head.rs:5: `storage` imports `kiln_app::pages::Page` (storage → kiln_app points up the layers)",
        ]
    );
}

#[test]
fn peers_and_climbing_super_paths_are_checked_too() {
    // ingest and query are peers; `super::super` from ingest/push.rs is the crate root.
    let source = "use crate::query::Query;\nuse super::super::api::AppError;\nuse super::body;\n";
    let found = violations("src/ingest/push.rs", source);
    assert_eq!(found.iter().map(|v| (v.line, v.to.as_str())).collect::<Vec<_>>(), [(1, "query"), (2, "api")]);
    // From ingest/mod.rs one `super` is the root; inside an inline `mod tests` it is not
    // counted as one (an unknown name after it is not a module).
    assert_eq!(violations("src/ingest/mod.rs", "use super::api;\n").len(), 1);
    assert!(violations("src/ingest/mod.rs", "use super::super::tests::upload;\n").is_empty());
    // Downward and bottom imports pass, from anywhere.
    let fine = "use crate::storage::Store;\nuse crate::{timespec, metrics::Metrics, proto};\nuse crate::ingest::x;\n";
    assert!(violations("src/api/push.rs", fine).is_empty());
    assert!(violations("src/timespec.rs", "use crate::work::x;\n").is_empty());
    assert_eq!(violations("src/timespec.rs", "use crate::storage::x;\n").len(), 1);
    assert_eq!(module_of("src/cli.rs"), ("cli".to_string(), 1));
    assert_eq!(module_of("src/storage/block/footer.rs"), ("storage".to_string(), 3));
}
