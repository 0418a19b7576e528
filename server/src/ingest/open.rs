//! Files opened in the viewer (`/api/collapse`): the profiles of a file that holds several
//! (a trace's threads, callgrind's event types, speedscope's profiles), so that the Open page
//! can offer a picker, as speedscope does (`perf script`'s threads too, inferno's collapse split
//! by thread). Formats of one profile are read by
//! [`super::read_profile`].

use axum::http::HeaderMap;
use kiln_model::CallTree;
use kiln_model::folded::{LineFormat, ParseLimits};
use kiln_model::formats::{self, Collapser, Decoder};
use kiln_model::perf_script;
use kiln_model::profile_set::{Part, Split};
use kiln_model::time_order::TimeOrder;

use super::{IngestError, IngestLimits, RequestBudget, body, collapse, parse_folded, profile_set, speedscope};

/// The profiles of one file, in file order, none empty.
#[derive(Debug)]
pub struct Profiles {
    /// How they differ: threads merge into "all", event types do not.
    pub split: Split,
    /// The profiles.
    pub parts: Vec<Part>,
    /// Whether every part has times that another reader reads: `perf script` with times, whose
    /// threads' flamegraphs are inferno's (in samples) and their time order the model's (in
    /// nanoseconds, [`kiln_model::perf_script::parse_budgeted`]).
    pub timed_apart: bool,
}

impl Profiles {
    /// Every thread merged (`None` for event types, which are different quantities), with the
    /// unit of the first.
    pub fn merged(&self) -> Option<(CallTree, &str)> {
        if self.split != Split::Threads {
            return None;
        }
        let (first, rest) = self.parts.split_first()?;
        let mut tree = first.tree.clone();
        for part in rest {
            tree.merge_tree(&part.tree);
        }
        Some((tree, &first.units))
    }
}

/// The body without its gzip layer and as UTF-8 text when it was UTF-16, as every decoder
/// reads it; the decode budget is granted its size.
pub fn decoded(body: &[u8], headers: &HeaderMap, budget: &mut RequestBudget) -> Result<Vec<u8>, IngestError> {
    body::utf8_text(body::decode(body, headers, budget)?)
}

/// The profiles of `body` (already [`decoded`]) when `format` (or, for `auto`, its content)
/// is one whose files hold several; `None` for any other format.
pub fn read(
    body: &[u8],
    format: &str,
    limits: &IngestLimits,
    budget: &mut RequestBudget,
) -> Result<Option<Profiles>, IngestError> {
    let found = if format == "auto" {
        formats::sniff(body)
            .or_else(|| kiln_model::speedscope::looks_like_json(body).then(|| formats::find("speedscope")).flatten())
            .or_else(|| perf_script::looks_like(body).then(|| formats::find(perf_script::NAME)).flatten())
    } else {
        formats::find(format)
    };
    let Some(found) = found else { return Ok(None) };
    let profiles = match found.decoder {
        Decoder::Parser(parser) => {
            let set = profile_set::read(parser, body, limits, budget)?;
            Profiles { split: set.split, parts: set.parts, timed_apart: false }
        }
        Decoder::Speedscope => {
            let file = speedscope::read(body, limits, budget)?;
            let parts = file
                .profiles
                .into_iter()
                .filter(|p| !p.tree.is_empty())
                .enumerate()
                .map(|(index, p)| Part {
                    name: if p.name.is_empty() { format!("profile {}", index + 1) } else { p.name },
                    units: file.units.to_string(),
                    tree: p.tree,
                    time_order: p.time_order,
                })
                .collect();
            Profiles { split: Split::Threads, parts, timed_apart: false }
        }
        // One part per thread, in inferno's values and frame names: together they are the
        // flamegraph `perf_script` always had.
        Decoder::Collapse(Collapser::Perf) => {
            let collapsed = collapse::collapse_perf_by_thread(found.name, body, limits.max_decompressed_bytes)?;
            let parse_limits = ParseLimits { max_depth: limits.max_stack_depth, max_line_len: limits.max_line_bytes };
            let tree = parse_folded(&collapsed, LineFormat::Counted, parse_limits)?;
            let set = perf_script::threads_of_collapsed(&tree.to_flat(), "samples");
            Profiles { split: set.split, parts: set.parts, timed_apart: perf_script::looks_like_timed(body) }
        }
        _ => return Ok(None),
    };
    Ok(Some(profiles))
}

/// Whether a part has samples to show in time order.
pub fn is_timed(order: Option<&TimeOrder>) -> bool {
    order.is_some_and(|o| !o.samples.is_empty())
}
