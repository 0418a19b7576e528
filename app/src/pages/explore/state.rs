//! The explorer's state: everything it shows, as read from and written to the URL, so that a
//! link reproduces the view.

use kiln_model::palette::ColourMode;

use crate::format::encode_query_value;
use crate::location::QueryMap;

/// Everything the explorer shows, as read from and written to the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreState {
    /// `app.type{matchers}`.
    pub query: String,
    /// Start of the range (`now-1h`, Unix seconds, …).
    pub from: String,
    /// End of the range.
    pub until: String,
    /// Search text (highlight and table filter).
    pub search: String,
    /// `flame` (graph and table), `table`, or `sandwich`.
    pub view: String,
    /// `icicle` (root on top) or `flame` (root at the bottom).
    pub orient: String,
    /// The function a sandwich view centres on.
    pub function: String,
    /// The zoomed frame's path from the root (`main;render`).
    pub zoom: String,
    /// What frame colours tell: `package` or `self` (see [`ColourMode`]).
    pub colour: String,
    /// Functions whose direct recursion is collapsed, `;`-separated like a stack (frame names
    /// never hold a `;`).
    pub collapse: String,
    /// The function selected in the flamegraph or the time order, outlined in both: kept in
    /// the URL so that it stays selected across a switch between the two views.
    pub selected: String,
}

/// The range the explorer opens with.
pub const DEFAULT_FROM: &str = "now-1h";
/// See [`DEFAULT_FROM`].
pub const DEFAULT_UNTIL: &str = "now";

impl ExploreState {
    /// Reads the state from the URL's query string, with defaults.
    pub fn from_params(params: &QueryMap) -> Self {
        let get = |k: &str, default: &str| params.get(k).filter(|v| !v.is_empty()).unwrap_or_else(|| default.into());
        ExploreState {
            query: get("query", ""),
            from: get("from", DEFAULT_FROM),
            until: get("until", DEFAULT_UNTIL),
            search: get("search", ""),
            view: get("view", "flame"),
            orient: get("orient", "icicle"),
            function: get("fn", ""),
            zoom: get("zoom", ""),
            colour: get("colour", ColourMode::Package.as_str()),
            collapse: get("collapse", ""),
            selected: get("sel", ""),
        }
    }

    /// The URL of this state (defaults left out, so links stay short).
    pub fn href(&self) -> String {
        let mut url = format!(
            "/explore?query={}&from={}&until={}",
            encode_query_value(&self.query),
            encode_query_value(&self.from),
            encode_query_value(&self.until)
        );
        for (key, value, default) in [
            ("search", &self.search, ""),
            ("view", &self.view, "flame"),
            ("orient", &self.orient, "icicle"),
            ("fn", &self.function, ""),
            ("zoom", &self.zoom, ""),
            ("colour", &self.colour, ColourMode::Package.as_str()),
            ("collapse", &self.collapse, ""),
            ("sel", &self.selected, ""),
        ] {
            if value != default {
                url.push_str(&format!("&{key}={}", encode_query_value(value)));
            }
        }
        url
    }

    /// A copy with `change` applied.
    pub fn with(&self, change: impl FnOnce(&mut ExploreState)) -> ExploreState {
        let mut next = self.clone();
        change(&mut next);
        next
    }
}

#[cfg(test)]
mod tests {
    use kiln_model::recursion::collapse_list;

    use super::*;

    #[test]
    fn colours_and_collapsed_recursion_are_kept_in_the_url_defaults_left_out() {
        let plain = ExploreState::from_params(&QueryMap::default()).with(|s| s.query = "app.cpu".into());
        assert_eq!(ColourMode::parse(&plain.colour), ColourMode::Package);
        assert_eq!(plain.href(), "/explore?query=app.cpu&from=now-1h&until=now");

        let state = plain.with(|s| {
            s.colour = ColourMode::SelfValue.as_str().into();
            s.collapse = "walk;parse".into();
        });
        assert_eq!(state.href(), "/explore?query=app.cpu&from=now-1h&until=now&colour=self&collapse=walk%3Bparse");
        assert_eq!(collapse_list(&state.collapse), ["walk", "parse"]);
        assert!(collapse_list("").is_empty());

        let selected = plain.with(|s| s.selected = "a&b c".into());
        assert_eq!(selected.href(), "/explore?query=app.cpu&from=now-1h&until=now&sel=a%26b%20c");
        let params = QueryMap::parse(selected.href().split_once('?').unwrap().1);
        assert_eq!(ExploreState::from_params(&params), selected);
    }
}
