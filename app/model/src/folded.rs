//! Folded ("collapsed") stacks: `frame;frame;frame count`, one stack per line.
//!
//! The parser works on bytes and inserts frames straight into a [`CallTree`], so a line costs
//! at most two hash lookups per frame (the name, then the child) and no allocation once its
//! frames have been seen. Cheaper still: a frame shared with the line before, or named like
//! its parent's first child (call chains), costs one comparison. Lines and frames are split
//! with memchr; UTF-8 is checked once per distinct name. Invalid UTF-8 in a frame name is
//! replaced (agents do send it), never rejected.

use std::fmt;
use std::iter;

use crate::tree::{CallTree, FlatTree, NodeId, ROOT};

/// How each line carries its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// `stack count`, split on the last space (Pyroscope's `folded`/`collapsed`).
    Counted,
    /// One stack per line, each counting 1 (Pyroscope's `lines`).
    Lines,
}

/// Limits applied while parsing untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Frames beyond this depth are dropped from the leaf end (Pyroscope truncates too).
    pub max_depth: usize,
    /// A line whose stack (the frames, without the count) is longer is an error. Length is
    /// counted in bytes of the original input: a replacement character (U+FFFD, 3 bytes) counts
    /// as one byte, the invalid byte it stands for, so that the folded text Kiln prints for a
    /// profile it took in (where every invalid byte became a U+FFFD) is always taken back.
    pub max_line_len: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits { max_depth: 1024, max_line_len: 1 << 20 }
    }
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses folded text into a new tree.
pub fn parse(input: &[u8], format: LineFormat, limits: ParseLimits) -> Result<CallTree, ParseError> {
    let mut tree = CallTree::new();
    parse_into(&mut tree, input, format, limits)?;
    Ok(tree)
}

/// Parses folded text, adding every stack to `tree`. On error `tree` may hold part of the
/// input: callers that must not keep partial data parse into a fresh tree first.
pub fn parse_into(
    tree: &mut CallTree,
    input: &[u8],
    format: LineFormat,
    limits: ParseLimits,
) -> Result<(), ParseError> {
    // The previous line's frames and nodes: sorted input (what collapse tools print) shares
    // long prefixes between neighbouring lines, which are then walked without hashing.
    let mut previous: Vec<(&[u8], NodeId)> = Vec::new();
    let mut line_start = 0;
    let line_ends = memchr::memchr_iter(b'\n', input).chain(iter::once(input.len()));
    for (index, line_end) in line_ends.enumerate() {
        let line_no = index + 1;
        let raw_line = &input[line_start..line_end];
        line_start = line_end + 1;
        if raw_line.len() > limits.max_line_len && stack_len(raw_line, format) > limits.max_line_len {
            return Err(ParseError {
                line: line_no,
                reason: format!("line is longer than {} bytes", limits.max_line_len),
            });
        }
        let line = trim_ascii(raw_line);
        if line.is_empty() {
            continue;
        }
        let (stack, value) = match format {
            LineFormat::Lines => (line, 1),
            LineFormat::Counted => split_count(line).map_err(|reason| ParseError { line: line_no, reason })?,
        };
        let mut node = ROOT;
        let mut shared = true;
        let mut depth = 0;
        let mut frame_start = 0;
        for frame_end in memchr::memchr_iter(b';', stack).chain(iter::once(stack.len())) {
            if depth >= limits.max_depth {
                break;
            }
            let frame = &stack[frame_start..frame_end];
            frame_start = frame_end + 1;
            if shared && previous.get(depth).is_some_and(|(f, _)| *f == frame) {
                node = previous[depth].1;
                depth += 1;
                continue;
            }
            if shared {
                shared = false;
                previous.truncate(depth);
            }
            node = match tree.first_child_named(node, frame) {
                Some(child) => child,
                None => {
                    let name = tree.intern_bytes(frame);
                    tree.child_by_name_id(node, name)
                }
            };
            previous.push((frame, node));
            depth += 1;
        }
        if shared {
            // The whole stack was a prefix of the previous one: forget the deeper frames.
            previous.truncate(depth);
        }
        tree.add_self(node, value);
    }
    Ok(())
}

/// The length of a line's stack as the line limit counts it (see [`ParseLimits`]). Only
/// computed for lines over the limit in raw bytes.
fn stack_len(raw_line: &[u8], format: LineFormat) -> usize {
    let line = trim_ascii(raw_line);
    let stack = match format {
        LineFormat::Counted => split_count(line).map_or(line, |(stack, _)| stack),
        LineFormat::Lines => line,
    };
    let replacements = memchr::memmem::find_iter(stack, "\u{fffd}".as_bytes()).count();
    stack.len() - 2 * replacements
}

fn trim_ascii(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &line[start..end]
}

fn split_count(line: &[u8]) -> Result<(&[u8], u64), String> {
    let Some(space) = line.iter().rposition(|&b| b == b' ' || b == b'\t') else {
        return Err("expected `stack count`, found no count".into());
    };
    let (stack, count) = (trim_ascii(&line[..space]), &line[space + 1..]);
    if stack.is_empty() {
        return Err("empty stack".into());
    }
    let count = std::str::from_utf8(count).map_err(|_| "count is not a number".to_string())?;
    let value = count.parse::<u64>().map_err(|_| {
        if count.starts_with('-') {
            format!("negative count `{count}`")
        } else if !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit()) {
            format!("count `{count}` is too large")
        } else {
            format!("count `{}` is not a whole number", truncate(count, 40))
        }
    })?;
    Ok((stack, value))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Prints a tree as folded text, one line per stack with self samples, in preorder.
pub fn print(tree: &FlatTree) -> String {
    let mut out = String::new();
    for (frames, value) in tree.stacks() {
        out.push_str(&frames.join(";"));
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> FlatTree {
        parse(text.as_bytes(), LineFormat::Counted, ParseLimits::default()).unwrap().to_flat()
    }

    #[test]
    fn parses_and_prints_back() {
        let flat = parse_ok("a;b 1\na;c 2\n");
        assert_eq!(flat.total(), 3);
        assert_eq!(print(&flat), "a;b 1\na;c 2\n");
    }

    #[test]
    fn splits_on_last_space_and_tolerates_crlf_and_blank_lines() {
        let flat = parse_ok("main;do work;fn(a, b) 5\r\n\r\n  \nmain 1");
        assert_eq!(print(&flat), "main 1\nmain;do work;fn(a, b) 5\n");
    }

    #[test]
    fn lines_format_counts_one_per_line() {
        let flat = parse(b"a;b\na;b\na", LineFormat::Lines, ParseLimits::default()).unwrap().to_flat();
        assert_eq!(print(&flat), "a 1\na;b 2\n");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let flat = parse(b"a;\xff\xfe 2", LineFormat::Counted, ParseLimits::default()).unwrap().to_flat();
        assert_eq!(flat.total(), 2);
        assert!(flat.names.iter().any(|n| n.contains('\u{fffd}')));
    }

    #[test]
    fn depth_is_truncated() {
        let limits = ParseLimits { max_depth: 2, ..ParseLimits::default() };
        let flat = parse(b"a;b;c;d 3", LineFormat::Counted, limits).unwrap().to_flat();
        assert_eq!(print(&flat), "a;b 3\n");
    }

    #[test]
    fn bad_lines_name_the_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("a 1\nb\n", 2, "no count"),
            ("a 1\nb -3", 2, "negative"),
            ("a x", 1, "not a whole number"),
            ("a 99999999999999999999999", 1, "too large"),
            ("  7", 1, "no count"),
        ];
        for (input, line, reason) in cases {
            let err = parse(input.as_bytes(), LineFormat::Counted, ParseLimits::default()).unwrap_err();
            assert_eq!(err.line, *line, "{input:?}");
            assert!(err.reason.contains(reason), "{input:?}: {}", err.reason);
        }
    }

    proptest::proptest! {
        #[test]
        fn prefix_reuse_gives_the_same_tree_as_plain_insertion(
            mut lines in proptest::collection::vec((proptest::collection::vec(0u8..4, 1..7), 1u64..50), 0..40),
            sort in proptest::bool::ANY,
            max_depth in 1usize..8,
        ) {
            if sort {
                lines.sort();
            }
            let text: String = lines
                .iter()
                .map(|(frames, v)| {
                    let names: Vec<String> = frames.iter().map(|f| format!("f{f}")).collect();
                    format!("{} {v}\n", names.join(";"))
                })
                .collect();
            let limits = ParseLimits { max_depth, ..ParseLimits::default() };
            let parsed = parse(text.as_bytes(), LineFormat::Counted, limits).unwrap().to_flat();
            let mut expected = CallTree::new();
            for (frames, v) in &lines {
                let names: Vec<String> = frames.iter().take(max_depth).map(|f| format!("f{f}")).collect();
                expected.add_stack(names.iter().map(String::as_str), *v);
            }
            proptest::prop_assert_eq!(parsed, expected.to_flat());
        }
    }

    #[test]
    fn printed_replacements_fit_the_limit_their_line_came_in_under() {
        let limits = ParseLimits { max_line_len: 8, ..ParseLimits::default() };
        // Eight bytes of stack, four of them invalid UTF-8: within the limit.
        let flat = parse(b"ab\xff\xff\xff\xffcd 12", LineFormat::Counted, limits).unwrap().to_flat();
        let printed = print(&flat);
        assert_eq!(printed, "ab\u{fffd}\u{fffd}\u{fffd}\u{fffd}cd 12\n");
        assert!(printed.len() > 8 + 4, "the printed line is longer than the limit in bytes");
        let again = parse(printed.as_bytes(), LineFormat::Counted, limits).unwrap().to_flat();
        assert_eq!(again, flat);
        // One byte more is over the limit, whether it is replaced yet or not, and for both
        // line formats.
        for input in [&b"ab\xff\xff\xff\xffcde 1"[..], "ab\u{fffd}\u{fffd}\u{fffd}\u{fffd}cde 1".as_bytes()] {
            assert_eq!(parse(input, LineFormat::Counted, limits).unwrap_err().line, 1);
        }
        let lines = ParseLimits { max_line_len: 10, ..limits };
        assert!(parse("ab\u{fffd}\u{fffd}\u{fffd}\u{fffd}cd 1".as_bytes(), LineFormat::Lines, lines).is_ok());
        assert!(parse("ab\u{fffd}\u{fffd}\u{fffd}\u{fffd}cde 1".as_bytes(), LineFormat::Lines, lines).is_err());
    }

    #[test]
    fn overlong_line_is_rejected() {
        let limits = ParseLimits { max_line_len: 8, ..ParseLimits::default() };
        let err = parse(b"a 1\nabcdefghij 1", LineFormat::Counted, limits).unwrap_err();
        assert_eq!(err.line, 2);
    }
}
