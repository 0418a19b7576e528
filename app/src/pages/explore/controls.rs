//! Explorer controls: time presets and a custom range, view switches, label filters, the
//! profile-type picker and export links. Most are plain links (they work before hydration);
//! the filter pickers navigate once a value is chosen.

use kiln_model::selector::{MatchOp, Matcher, Selector};
use leptos::prelude::*;

use super::state::ExploreState;
use crate::data::{DataRequest, page_data};
use crate::format::encode_query_value;
use crate::location::{QueryMap, navigate};

/// Label names of the series `query` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelNamesRequest {
    /// `app.type{matchers}`.
    pub query: String,
}

impl DataRequest for LabelNamesRequest {
    type Answer = Vec<String>;
    const NAME: &'static str = "label-names";

    fn to_query(&self) -> String {
        format!("query={}", encode_query_value(&self.query))
    }

    fn from_query(q: &QueryMap) -> Self {
        LabelNamesRequest { query: q.get("query").unwrap_or_default() }
    }

    #[cfg(feature = "ssr")]
    fn answer(&self, source: &crate::source::TenantSource) -> Result<Vec<String>, String> {
        source.label_names(&self.query)
    }
}

/// Values of `label` over the series `query` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelValuesRequest {
    /// Label name.
    pub label: String,
    /// `app.type{matchers}`.
    pub query: String,
}

impl DataRequest for LabelValuesRequest {
    type Answer = Vec<String>;
    const NAME: &'static str = "label-values";

    fn to_query(&self) -> String {
        format!("label={}&query={}", encode_query_value(&self.label), encode_query_value(&self.query))
    }

    fn from_query(q: &QueryMap) -> Self {
        LabelValuesRequest { label: q.get("label").unwrap_or_default(), query: q.get("query").unwrap_or_default() }
    }

    #[cfg(feature = "ssr")]
    fn answer(&self, source: &crate::source::TenantSource) -> Result<Vec<String>, String> {
        source.label_values(&self.label, &self.query)
    }
}

const PRESETS: &[(&str, &str)] = &[
    ("5m", "now-5m"),
    ("15m", "now-15m"),
    ("1h", "now-1h"),
    ("6h", "now-6h"),
    ("24h", "now-24h"),
    ("7d", "now-7d"),
    ("30d", "now-30d"),
];

/// Preset ranges ending now, and a custom range form.
#[component]
pub fn TimeRange(#[prop(into)] state: Signal<ExploreState>) -> impl IntoView {
    let from_input = NodeRef::<leptos::html::Input>::new();
    let until_input = NodeRef::<leptos::html::Input>::new();
    let presets = move || {
        let s = state.get();
        PRESETS
            .iter()
            .map(|(label, from)| {
                let active = s.from == *from && s.until == "now";
                let href = s
                    .with(|s| {
                        s.from = (*from).into();
                        s.until = "now".into();
                    })
                    .href();
                view! {
                    <a class="preset" class:active=active aria-current=active.then_some("true") href=href>
                        {*label}
                    </a>
                }
            })
            .collect_view()
    };
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (Some(from), Some(until)) = (from_input.get(), until_input.get()) else {
            return;
        };
        let next = state.get_untracked().with(|s| {
            s.from = from.value();
            s.until = until.value();
        });
        navigate(&next.href());
    };
    view! {
        <nav class="time-range" aria-label="Time range">
            {presets}
            <form class="custom-range" on:submit=apply>
                <input node_ref=from_input aria-label="From" prop:value=move || state.with(|s| s.from.clone()) size="12" />
                <span>"→"</span>
                <input node_ref=until_input aria-label="Until" prop:value=move || state.with(|s| s.until.clone()) size="12" />
                <button type="submit">"Apply"</button>
            </form>
        </nav>
    }
}

/// Flamegraph (icicle or flame), table only, sandwich.
#[component]
pub fn ViewSwitch(#[prop(into)] state: Signal<ExploreState>) -> impl IntoView {
    move || {
        let s = state.get();
        let choices: [(&str, &str, &str); 4] = [
            ("Icicle", "flame", "icicle"),
            ("Flame", "flame", "flame"),
            ("Time order", "time", s.orient.as_str()),
            ("Table", "table", s.orient.as_str()),
        ];
        let links = choices
            .into_iter()
            .map(|(label, view, orient)| {
                let active = s.view == view && (view != "flame" || s.orient == orient);
                let href = s
                    .with(|s| {
                        s.view = view.into();
                        s.orient = orient.into();
                    })
                    .href();
                view! {
                    <a class="view" class:active=active aria-current=active.then_some("true") href=href>
                        {label}
                    </a>
                }
            })
            .collect_view();
        view! { <nav class="views" aria-label="View">{links}</nav> }
    }
}

/// The current label matchers as removable chips, and pickers to add one.
#[component]
pub fn LabelFilter(#[prop(into)] state: Signal<ExploreState>) -> impl IntoView {
    let selector = Memo::new(move |_| state.with(|s| Selector::parse(&s.query).ok()));
    let names = page_data(move || Some(LabelNamesRequest { query: state.with(|s| s.query.clone()) }));
    let chosen = RwSignal::new(String::new());
    let values = page_data(move || {
        let label = chosen.get();
        (!label.is_empty()).then(|| LabelValuesRequest { label, query: state.with(|s| s.query.clone()) })
    });
    let chips = move || {
        let s = state.get();
        let sel = selector.get()?;
        Some(
            sel.matchers
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut without = sel.clone();
                    without.matchers.remove(i);
                    let href = s.with(|s| s.query = without.to_string()).href();
                    let text = format!("{}{}\"{}\"", m.name, m.op, m.value);
                    let aria = format!("Remove filter {text}");
                    view! {
                        <a class="chip" href=href title="Remove this filter" aria-label=aria>
                            {text}
                            " ×"
                        </a>
                    }
                })
                .collect_view(),
        )
    };
    let add = move |value: String| {
        let label = chosen.get_untracked();
        let Some(mut sel) = selector.get_untracked() else {
            return;
        };
        if label.is_empty() || value.is_empty() {
            return;
        }
        sel.matchers.retain(|m| m.name != label);
        sel.matchers.push(Matcher { name: label, op: MatchOp::Eq, value });
        chosen.set(String::new());
        let next = state.get_untracked().with(|s| s.query = sel.to_string());
        navigate(&next.href());
    };
    view! {
        <div class="labels">
            {chips}
            <select
                aria-label="Filter by label"
                prop:value=move || chosen.get()
                on:change=move |ev| chosen.set(event_target_value(&ev))
            >
                <option value="">"+ label filter"</option>
                {move || {
                    names
                        .get()
                        .and_then(Result::ok)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|n| n != "__name__")
                        .map(|n| view! { <option value=n.clone()>{n.clone()}</option> })
                        .collect_view()
                }}
            </select>
            <Show when=move || !chosen.get().is_empty()>
                <select
                    aria-label="Label value"
                    on:change=move |ev| add(event_target_value(&ev))
                >
                    <option value="">"value…"</option>
                    {move || {
                        values
                            .get()
                            .and_then(Result::ok)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|v| view! { <option value=v.clone()>{v.clone()}</option> })
                            .collect_view()
                    }}
                </select>
            </Show>
        </div>
    }
}

/// Download links for the current view, a PNG of the canvas, and "copy link".
#[component]
pub fn Exports(#[prop(into)] state: Signal<ExploreState>) -> impl IntoView {
    let link = move |format: &'static str, label: &'static str, file: &'static str| {
        let s = state.get();
        let mut href = format!(
            "/render?format={format}&query={}&from={}&until={}",
            encode_query_value(&s.query),
            encode_query_value(&s.from),
            encode_query_value(&s.until)
        );
        // What is exported matches what is shown: the same recursion collapsed and, for the
        // SVG, the same orientation (inferno draws root at the bottom unless inverted).
        if !s.collapse.is_empty() {
            href.push_str(&format!("&collapse={}", encode_query_value(&s.collapse)));
        }
        if format == "svg" && s.orient != "flame" {
            href.push_str("&inverted=true");
        }
        view! {
            <a class="export" href=href download=file>
                {label}
            </a>
        }
    };
    let copied = RwSignal::new(false);
    view! {
        <nav class="exports" aria-label="Export">
            {move || link("svg", "SVG", "flamegraph.svg")}
            {move || link("folded", "Folded", "profile.folded.txt")}
            {move || link("pprof", "pprof", "profile.pb.gz")}
            {move || link("json", "JSON", "profile.json")}
            <button type="button" on:click=move |_| save_png()>
                "PNG"
            </button>
            <button
                type="button"
                on:click=move |_| {
                    if let Some(w) = web_sys::window()
                        && let Ok(href) = w.location().href()
                    {
                        let _ = w.navigator().clipboard().write_text(&href);
                        copied.set(true);
                    }
                }
            >
                {move || if copied.get() { "Link copied" } else { "Copy link" }}
            </button>
        </nav>
    }
}

/// Downloads the first flamegraph canvas as a PNG.
fn save_png() {
    use wasm_bindgen::JsCast;
    let Some(canvas) = document()
        .query_selector("canvas.flame-canvas")
        .ok()
        .flatten()
        .and_then(|c| c.dyn_into::<web_sys::HtmlCanvasElement>().ok())
    else {
        return;
    };
    let Ok(url) = canvas.to_data_url_with_type("image/png") else {
        return;
    };
    if let Ok(a) =
        document().create_element("a").and_then(|a| a.dyn_into::<web_sys::HtmlAnchorElement>().map_err(Into::into))
    {
        a.set_href(&url);
        a.set_download("flamegraph.png");
        a.click();
    }
}
