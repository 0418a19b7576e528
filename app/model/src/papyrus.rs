//! Papyrus script profiling logs (Skyrim, Fallout 4: `Debug.StartStackProfiling`,
//! `Debug.StartScriptProfiling`, written to `Logs/Script/Profiling/`). After a `… log opened`
//! line, one event a line, `time:EVENT:stack:depth:form:Script..Function`: the time in
//! milliseconds, the event (`PUSH` a call, `POP` a return, `QUEUE_PUSH`/`QUEUE_POP` a call
//! queued for the script's thread, `START`/`STOP` of profiling), the stack (Papyrus' thread)
//! it happened on, its depth, the object it ran on, and the function. `Log closed` ends it.
//!
//! Read into one profile per stack, in nanoseconds, with its time order: between two events
//! of a stack, the time is its innermost open call's. A call that returns without having
//! been entered in the log (profiling started inside it) is not in the tree; a queued call's
//! wait counts to its caller; calls still open at the log's end close at its last event.

use std::collections::{BTreeMap, HashMap};

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "papyrus";

const EVENTS: [&str; 6] = ["PUSH", "POP", "QUEUE_PUSH", "QUEUE_POP", "START", "STOP"];

/// An event line's time, event and stack, and its function (all after the fifth `:`).
fn event(line: &str) -> Option<(u64, &str, &str, Option<&str>)> {
    let mut fields = line.splitn(6, ':');
    let time = fields.next()?.trim().parse().ok()?;
    let event = fields.next().filter(|e| EVENTS.contains(e))?;
    let stack = fields.next().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))?;
    Some((time, event, stack, fields.nth(2).filter(|f| !f.is_empty())))
}

/// True when the log starts as Papyrus writes it: `… log opened`, or an event line.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let head = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    };
    let first = head.lines().map(|l| l.trim_end_matches('\r')).find(|l| !l.trim().is_empty()).unwrap_or_default();
    first.ends_with("log opened (PC)") || first.contains(" log opened") || event(first).is_some()
}

/// Reads a Papyrus profiling log. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// One Papyrus stack as read so far.
#[derive(Default)]
struct Stack<'a> {
    tree: CallTree,
    /// The open calls, outermost first: their function and tree node.
    open: Vec<(&'a str, NodeId)>,
    /// How many open calls each function has: a return of a call never entered is told
    /// without a walk down the stack (which would make a log of them quadratic).
    open_counts: HashMap<&'a str, usize>,
    /// The time of its last event.
    last: Option<u64>,
    order: TimeOrder,
}

impl Stack<'_> {
    /// The time since the last event goes to the innermost open call.
    fn account(&mut self, until: u64, origin: u64) {
        if let (Some(last), Some(&(_, node))) = (self.last, self.open.last()) {
            let nanos = (until - last).saturating_mul(1_000_000);
            self.tree.add_self(node, nanos);
            self.order.push(node, (last - origin).saturating_mul(1_000_000), nanos);
        }
        self.last = Some(until);
    }
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let error = |reason: String| FormatError::new(NAME, reason);
    let text = std::str::from_utf8(bytes).map_err(|e| error(format!("not UTF-8 text: {e}")))?;
    let mut stacks: BTreeMap<&str, Stack> = BTreeMap::new();
    let mut origin = None;
    let mut end = 0;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.contains(" log opened") || line.trim() == "Log closed" {
            continue;
        }
        let at = |reason: String| error(format!("line {}: {reason}", number + 1));
        let (time, kind, id, function) =
            event(line).ok_or_else(|| at(format!("expected `time:EVENT:stack:…`, not `{}`", line.trim())))?;
        if time < end {
            return Err(at(format!("time {time} is before the previous event's, {end}")));
        }
        let origin = *origin.get_or_insert(time);
        end = time;
        let stack = stacks.entry(id).or_default();
        budget.spend_frames(1).map_err(|e| FormatError::exhausted(NAME, e))?;
        let mut mark = TreeSize::of(&stack.tree);
        stack.account(time, origin);
        let function = || function.ok_or_else(|| at(format!("a {kind} without its function")));
        match kind {
            "PUSH" => {
                let name = function()?;
                let parent = stack.open.last().map_or(ROOT, |&(_, node)| node);
                let node = if stack.open.len() < max_depth { stack.tree.child(parent, name) } else { parent };
                stack.open.push((name, node));
                *stack.open_counts.entry(name).or_default() += 1;
            }
            "POP" => {
                let name = function()?;
                // Calls above it that never logged their return close with it: the walk is
                // as long as the calls it closes.
                if stack.open_counts.get(name).is_some_and(|&n| n > 0) {
                    while let Some((open, _)) = stack.open.pop() {
                        *stack.open_counts.get_mut(open).expect("counted when pushed") -= 1;
                        if open == name {
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
        budget.spend_growth(&stack.tree, &mut mark).map_err(|e| FormatError::exhausted(NAME, e))?;
    }
    let mut parts = Vec::new();
    for (id, mut stack) in stacks {
        stack.account(end, origin.unwrap_or_default());
        if !stack.tree.is_empty() {
            parts.push(Part {
                name: format!("stack {id}"),
                units: "nanoseconds".into(),
                tree: stack.tree,
                time_order: Some(stack.order),
            });
        }
    }
    Ok(ProfileSet { split: Split::Threads, parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> String {
        set.parts.iter().map(|p| format!("# {}\n{}", p.name, folded::print(&p.tree.to_flat()))).collect()
    }

    const LOG: &str = "Script_7 log opened (PC)\r\n\
100:START:1\r\n\
100:POP:1:3:None:Debug..StartStackProfiling\r\n\
100:PUSH:1:3:None:quest..outer\r\n\
104:QUEUE_PUSH:1:4: (00018A56):Location.??.GetFormID\r\n\
106:PUSH:1:4: (00018A56):Form..GetFormID\r\n\
107:PUSH:2:0:None:effect..OnEffectStart\r\n\
109:POP:1:4: (00018A56):Form..GetFormID\r\n\
110:PUSH:1:4:None:Game..GetModName\r\n\
112:POP:1:3:None:quest..outer\r\n\
113:POP:1:2:None:quest..caller\r\n\
115:POP:2:0:None:effect..OnEffectStart\r\n\
Log closed\r\n";

    #[test]
    fn time_between_a_stacks_events_is_its_innermost_calls() {
        assert!(looks_like(LOG.as_bytes()) && looks_like(b"5:PUSH:3:0:None:a..b\n"));
        assert!(!looks_like(b"main;work 3\n"));
        let set = parse(LOG.as_bytes(), 64).unwrap();
        // Stack 1: outer 100–106 (its queued call's wait included) and 109–110, GetFormID
        // 106–109, GetModName 110–112 (its return never logged: it closes with outer);
        // `caller` returns without having been entered. Stack 2: 107–115.
        assert_eq!(
            folded_of(&set),
            "# stack 1\nquest..outer 7000000\nquest..outer;Form..GetFormID 3000000\nquest..outer;Game..GetModName 2000000\n\
             # stack 2\neffect..OnEffectStart 8000000\n"
        );
        let order = set.parts[1].time_order.as_ref().unwrap();
        assert_eq!(order.samples.iter().map(|s| (s.start, s.weight)).collect::<Vec<_>>(), [(7_000_000, 8_000_000)]);
        assert_eq!(parse(LOG.as_bytes(), 1).unwrap().parts[0].tree.node_count(), 2, "cut to outer");
    }

    #[test]
    fn broken_logs_name_the_format_the_line_and_what_is_wrong() {
        for (log, says) in [
            ("1:PUSH:1:0:None:a..b\nwhat\n", "line 2: expected `time:EVENT:stack:…`, not `what`"),
            ("5:PUSH:1:0:None:a..b\n3:POP:1:0:None:a..b\n", "line 2: time 3 is before the previous event's, 5"),
            ("5:PUSH:1:0:None:a..b\n3:PUSH:2:0:None:a..b\n", "line 2: time 3 is before the previous event's, 5"),
            ("5:PUSH:1\n", "line 1: a PUSH without its function"),
            ("5:JUMP:1:0:None:a\n", "expected `time:EVENT:stack:…`"),
        ] {
            let e = parse(log.as_bytes(), 64).unwrap_err();
            assert_eq!(e.format, NAME);
            assert!(e.reason.contains(says), "{log:?}: {e}");
        }
        // Calls 20,000 deep, then as many returns of a call never entered: each told at once.
        let deep: String = (0..20_000).map(|i| format!("{i}:PUSH:1:0:None:f{}\n", i % 7)).collect();
        let unmatched: String = (0..20_000).map(|i| format!("{}:POP:1:0:None:never\n", 20_000 + i)).collect();
        let set = parse(format!("{deep}{unmatched}").as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), 39_999 * 1_000_000);
        let many: String = (0..5000).map(|i| format!("{i}:PUSH:1:0:None:f\n")).collect();
        let e = parse_budgeted(many.as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1)).unwrap_err();
        assert!(e.exhausted.is_some(), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_events_never_panic(events in proptest::collection::vec((0u64..5, 0usize..6, 1u8..3, 0u8..4), 0..40)) {
            let mut time = 0;
            let log: String = events
                .iter()
                .map(|(gap, kind, stack, function)| {
                    time += gap;
                    format!("{time}:{}:{stack}:0:None:s..f{function}\n", EVENTS[*kind])
                })
                .collect();
            let set = parse(log.as_bytes(), 3).unwrap();
            for part in &set.parts {
                part.tree.to_flat().validate().unwrap();
                let order = part.time_order.as_ref().unwrap();
                prop_assert_eq!(order.samples.iter().map(|s| s.weight).sum::<u64>(), part.tree.total());
            }
        }
    }
}
