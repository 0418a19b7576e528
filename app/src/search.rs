//! The function search, shared by the flamegraphs and the tables: a substring in any case, or a
//! regular expression written between slashes (`/^parse_(json|xml)$/`), as browser devtools
//! filters take them. Regular expressions ignore case too.
//!
//! In the browser a pattern runs on the browser's own `RegExp`: it costs the wasm nothing and
//! is the dialect people type into web tools. On the server (the first paint of a table, and
//! native tests) the `regex` crate runs it; the two agree on everything but exotic syntax.

use kiln_model::search::LowercaseNames;
use leptos::prelude::*;

use crate::paint::after_paint;

/// The search box. What is typed reaches `search` at once (the graphs repaint with it);
/// `after_typing` runs once that repaint is on screen, for what the frame does not need, such
/// as keeping the text in the URL (`replaceState` costs several milliseconds in Chromium).
/// Keystrokes typed in between each schedule one run; the last sees the final text.
///
/// `after_typing` is told whether the keystroke starts an edit: the first after a pause of
/// [`TYPING_PAUSE`], after Enter or leaving the box, or after something else (Back, Forward)
/// changed the search. A page that keeps the search in its history pushes an entry then and
/// replaces it for the rest of the edit, so that a word typed is one entry, not one per key.
#[component]
pub fn SearchBox(
    search: RwSignal<String>,
    #[prop(into)] after_typing: Callback<bool>,
    /// The input's id (the explorer's `/` key focuses `#search`).
    #[prop(optional)]
    id: Option<&'static str>,
    /// The hint in the empty box.
    #[prop(default = "function, or /regex/")]
    placeholder: &'static str,
) -> impl IntoView {
    // The text this box set in the edit under way (`None` between edits).
    let editing = StoredValue::new(None::<String>);
    let pause = StoredValue::new(None::<leptos::leptos_dom::helpers::TimeoutHandle>);
    let end_edit = move || {
        editing.set_value(None);
        if let Some(timer) = pause.get_value() {
            timer.clear();
        }
    };
    let on_input = move |ev: leptos::ev::Event| {
        let text = event_target_value(&ev);
        let starts_edit = editing.with_value(|e| search.with_untracked(|now| e.as_ref() != Some(now)));
        editing.set_value(Some(text.clone()));
        search.set(text);
        if let Some(timer) = pause.get_value() {
            timer.clear();
        }
        // `try_`: the box may be gone when the pause ends.
        pause.set_value(
            set_timeout_with_handle(
                move || {
                    editing.try_set_value(None);
                },
                TYPING_PAUSE,
            )
            .ok(),
        );
        // `try_`: the page may have changed before the paint.
        after_paint(move || {
            after_typing.try_run(starts_edit);
        });
    };
    view! {
        <label class="search">
            <span>"Search"</span>
            <input
                id=id
                type="search"
                placeholder=placeholder
                title="Text matches any part of a name, in any case; /pattern/ is a regular expression"
                aria-label="Search functions"
                prop:value=move || search.get()
                on:input=on_input
                // `change`: Enter, or leaving the box after an edit.
                on:change=move |_| end_edit()
                on:blur=move |_| end_edit()
            />
        </label>
    }
}

/// How long typing stops before the next keystroke starts a new edit (a new history entry).
pub const TYPING_PAUSE: std::time::Duration = std::time::Duration::from_millis(1000);

/// A parsed search box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSearch {
    /// Nothing typed: no search running.
    Off,
    /// A substring, lowercased.
    Text(String),
    /// A regular expression (between the slashes).
    Pattern(String),
    /// A regular expression that does not compile, with the reason.
    Invalid(String),
}

impl NameSearch {
    /// Reads what was typed: `/…/` is a regular expression, anything else a substring.
    pub fn parse(input: &str) -> NameSearch {
        let input = input.trim();
        if input.is_empty() {
            return NameSearch::Off;
        }
        match input.strip_prefix('/').and_then(|rest| rest.strip_suffix('/')) {
            Some(pattern) if !pattern.is_empty() => match regex_backend::check(pattern) {
                Ok(()) => NameSearch::Pattern(pattern.to_string()),
                Err(reason) => NameSearch::Invalid(reason),
            },
            _ => NameSearch::Text(input.to_lowercase()),
        }
    }

    /// Whether a search is running (an invalid pattern is one that matches nothing).
    pub fn is_on(&self) -> bool {
        *self != NameSearch::Off
    }

    /// Why the pattern does not compile, for showing beside the search box.
    pub fn error(&self) -> Option<&str> {
        match self {
            NameSearch::Invalid(reason) => Some(reason),
            _ => None,
        }
    }

    /// For each of `names`, whether it matches; `lowercase` holds the same names lowercased
    /// (precomputed per tree, so that a substring search only compares).
    pub fn flags(&self, names: &[String], lowercase: &LowercaseNames) -> Vec<bool> {
        match self {
            NameSearch::Off | NameSearch::Invalid(_) => vec![false; names.len()],
            NameSearch::Text(needle) => lowercase.matches(needle),
            NameSearch::Pattern(pattern) => regex_backend::flags(pattern, names.iter().map(String::as_str)),
        }
    }

    /// Whether one name matches (for filtering a short list, such as a table's rows).
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            NameSearch::Off => true,
            NameSearch::Invalid(_) => false,
            NameSearch::Text(needle) => name.to_lowercase().contains(needle.as_str()),
            NameSearch::Pattern(pattern) => regex_backend::flags(pattern, [name]).first().copied().unwrap_or(false),
        }
    }

    /// The items of `items` whose name matches, in order.
    pub fn filter<'a, T>(&self, items: &'a [T], name: impl Fn(&T) -> &str) -> Vec<&'a T> {
        match self {
            NameSearch::Off => items.iter().collect(),
            NameSearch::Pattern(pattern) => {
                let keep = regex_backend::flags(pattern, items.iter().map(&name));
                items.iter().zip(keep).filter_map(|(item, keep)| keep.then_some(item)).collect()
            }
            _ => items.iter().filter(|item| self.keeps(name(item))).collect(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod regex_backend {
    use wasm_bindgen::{JsCast, JsValue};

    // Built from source text at the first regular-expression search rather than bound as a
    // wasm-bindgen `inline_js` snippet: a snippet is a module of its own, which the browser
    // fetches only when it imports the app's script, one more round trip before every page's
    // first paint.
    thread_local! {
        static ERROR: js_sys::Function = js_sys::Function::new_with_args(
            "pattern",
            "try { new RegExp(pattern, 'i'); return undefined; } catch (e) { return String(e.message); }",
        );
        static FLAGS: js_sys::Function = js_sys::Function::new_with_args(
            "joined, pattern",
            "const re = new RegExp(pattern, 'i'); const names = joined.split('\\n'); \
             const out = new Uint8Array(names.length); \
             for (let i = 0; i < names.length; i++) out[i] = re.test(names[i]) ? 1 : 0; return out;",
        );
    }

    fn regex_error(pattern: &str) -> Option<String> {
        match ERROR.with(|f| f.call1(&JsValue::NULL, &pattern.into())) {
            Ok(message) => message.as_string(),
            Err(thrown) => Some(thrown.as_string().unwrap_or_else(|| "not a regular expression".into())),
        }
    }

    fn regex_flags(joined: &str, pattern: &str) -> Vec<u8> {
        FLAGS
            .with(|f| f.call2(&JsValue::NULL, &joined.into(), &pattern.into()))
            .ok()
            .and_then(|out| out.dyn_into::<js_sys::Uint8Array>().ok())
            .map(|out| out.to_vec())
            .unwrap_or_default()
    }

    pub fn check(pattern: &str) -> Result<(), String> {
        regex_error(pattern).map_or(Ok(()), Err)
    }

    /// One crossing into JS for all names: they go over joined by newlines (a name's own
    /// newlines, which no profiler writes, become spaces so that the lines stay aligned).
    pub fn flags<'a>(pattern: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<bool> {
        let mut joined = String::new();
        let mut count = 0;
        for name in names {
            if count > 0 {
                joined.push('\n');
            }
            if name.contains('\n') {
                joined.push_str(&name.replace('\n', " "))
            } else {
                joined.push_str(name)
            }
            count += 1;
        }
        if count == 0 || check(pattern).is_err() {
            return vec![false; count];
        }
        let flags = regex_flags(&joined, pattern);
        let mut out: Vec<bool> = flags.into_iter().map(|f| f != 0).collect();
        out.resize(count, false);
        out
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod regex_backend {
    fn compile(pattern: &str) -> Result<regex::Regex, String> {
        regex::RegexBuilder::new(pattern).case_insensitive(true).build().map_err(|e| e.to_string())
    }

    pub fn check(pattern: &str) -> Result<(), String> {
        compile(pattern).map(|_| ())
    }

    pub fn flags<'a>(pattern: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<bool> {
        let names = names.into_iter();
        match compile(pattern) {
            Ok(re) => names.map(|name| re.is_match(name)).collect(),
            Err(_) => names.map(|_| false).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> (Vec<String>, LowercaseNames) {
        let names: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        let lower = LowercaseNames::new(list.iter().copied());
        (names, lower)
    }

    #[test]
    fn text_is_a_substring_in_any_case() {
        let (n, l) = names(&["main", "parse_json", "ParseXml", "draw"]);
        let s = NameSearch::parse("  PARSE ");
        assert_eq!(s, NameSearch::Text("parse".into()));
        assert_eq!(s.flags(&n, &l), [false, true, true, false]);
        assert!(s.keeps("reparsed"));
        assert!(!s.keeps("main"));
    }

    #[test]
    fn slashes_make_a_case_insensitive_pattern() {
        let (n, l) = names(&["main", "parse_json", "ParseXml", "parse_yaml"]);
        let s = NameSearch::parse("/^parse_?(json|XML)$/");
        assert_eq!(s.flags(&n, &l), [false, true, true, false]);
        let rows = ["a::b", "x::parse", "c"];
        assert_eq!(NameSearch::parse("/::/").filter(&rows, |r| r), [&"a::b", &"x::parse"]);
    }

    #[test]
    fn a_bad_pattern_matches_nothing_and_says_why() {
        let (n, l) = names(&["a(b", "c"]);
        let s = NameSearch::parse("/a(b/");
        assert!(s.error().is_some(), "{s:?}");
        assert!(s.is_on());
        assert_eq!(s.flags(&n, &l), [false, false]);
        assert!(!s.keeps("a(b"));
    }

    #[test]
    fn lone_or_empty_slashes_are_text() {
        assert_eq!(NameSearch::parse("/"), NameSearch::Text("/".into()));
        assert_eq!(NameSearch::parse("//"), NameSearch::Text("//".into()));
        assert_eq!(NameSearch::parse("/usr/lib"), NameSearch::Text("/usr/lib".into()));
        assert_eq!(NameSearch::parse("   "), NameSearch::Off);
        assert!(NameSearch::parse("").filter(&["x"], |r| r).len() == 1);
    }
}
