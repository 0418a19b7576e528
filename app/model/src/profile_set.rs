//! Several profiles read from one file (threads of a trace, event types of a callgrind file),
//! and the error every such reader gives.

use std::fmt;

use crate::budget::Exhausted;
use crate::time_order::TimeOrder;
use crate::tree::CallTree;

/// What is wrong with a file of a recognised format: always names the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// The format's name in [`crate::formats::FORMATS`].
    pub format: &'static str,
    /// What is wrong, and where.
    pub reason: String,
    /// Set when the file is well-formed but expands beyond the decode budget.
    pub exhausted: Option<Exhausted>,
}

impl FormatError {
    /// A malformed file of `format`.
    pub fn new(format: &'static str, reason: impl Into<String>) -> FormatError {
        FormatError { format, reason: reason.into(), exhausted: None }
    }

    /// A file of `format` over the decode budget.
    pub fn exhausted(format: &'static str, exhausted: Exhausted) -> FormatError {
        FormatError { format, reason: exhausted.to_string(), exhausted: Some(exhausted) }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.format, self.reason)
    }
}

impl std::error::Error for FormatError {}

/// How the profiles of one file differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Threads or processes measured in one unit: they merge into one profile.
    Threads,
    /// Different quantities (callgrind's event types): each is its own kind of profile.
    EventTypes,
}

/// One profile of a file.
#[derive(Debug, Clone)]
pub struct Part {
    /// The thread, process or event type it is (never empty).
    pub name: String,
    /// Kiln's unit for its values (`nanoseconds`, `samples`, or an event type such as `Ir`).
    pub units: String,
    /// Its samples.
    pub tree: CallTree,
    /// Its samples in time order (stacks are nodes of `tree`), for formats with timestamps.
    pub time_order: Option<TimeOrder>,
}

/// The profiles of one file, in file order, none empty.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    /// How the parts differ.
    pub split: Split,
    /// The profiles.
    pub parts: Vec<Part>,
}

impl ProfileSet {
    /// The one tree that stands for the file: all threads merged, or the first event type.
    /// `None` when the file holds no samples.
    pub fn merged(&self) -> Option<(CallTree, &str)> {
        let first = self.parts.first()?;
        let mut tree = first.tree.clone();
        if self.split == Split::Threads {
            for part in &self.parts[1..] {
                tree.merge_tree(&part.tree);
            }
        }
        Some((tree, &first.units))
    }
}
