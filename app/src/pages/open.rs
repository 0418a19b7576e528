//! Open a file: view a local profile without storing it, then optionally upload it.
//!
//! Folded text is parsed in the browser by the shared model; anything else (speedscope JSON, pprof,
//! gzipped files, `perf script`, DTrace, V8 `.cpuprofile`, Chrome traces, callgrind, Java Flight
//! Recorder recordings, …) goes through `/api/collapse`, which reads it with the server's decoders
//! and inferno and stores nothing. The model's own parsers of those formats stay out of the
//! browser's wasm, and so do their content checks but two: JSON's first byte, and callgrind's
//! start, the one text format whose lines can read as folded stacks. Any other file that is not
//! folded text fails to parse as it and goes to the server, which tells the formats apart
//! (`format=auto`). (The speedscope parser left the wasm to make room for the time-order view
//! within the download budget; the other formats' checks, to keep their growing list out of it.)
//!
//! A gzipped file is posted as it is: the server's body decoding gunzips it (announced or not),
//! so the browser needs no decompression code at all (`DecompressionStream` would add its
//! bindings to the wasm and a second copy of the file to memory) and the upload is the smaller
//! file. Its time order is offered when the server's list of its profiles says they have times.
//!
//! A file of several profiles (a trace's threads, callgrind's event types, a JFR recording's CPU,
//! allocation and lock profiles, speedscope's profiles, a Firefox profile's or a `perf script`
//! capture's threads) shows a
//! "Profile" picker with each and, for threads, "all merged" (the default): `/api/collapse` lists
//! them (`x-kiln-parts`) and answers the one asked for (`?part=`), reading the file again each
//! time.
//!
//! Files with timestamps (V8 profiles and tick logs, Chrome traces, evented speedscope, Firefox
//! profiles, stackprof wall mode, `perf script` with times) also open in time order: the page asks `/api/collapse/time-order` for the busiest
//! profile's samples once the flamegraph shows, and a toggle switches between the two views. A
//! function selected in either is outlined in both.

use std::sync::Arc;

use kiln_model::folded::{self, LineFormat, ParseLimits};
use kiln_model::speedscope;
use kiln_model::top::top_table;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::fetch;
use crate::flame::{FlameGraph, Loaded, TimeOrderChart};
use crate::format::{encode_query_value, format_value};
use crate::paint::after_paint;
use crate::search::NameSearch;
use crate::sync_hydrate::IntoAnySync;

/// The bytes of `file`.
async fn read_file(file: web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer()).await.map_err(|e| format!("{e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Whether the file's content alone says it has timestamps to show in time order: speedscope
/// JSON with an evented profile. The server's list of a file's profiles says it of each one
/// (`perf script`'s threads too, with times or not).
fn has_times(bytes: &[u8]) -> bool {
    speedscope::looks_like_json(bytes) && bytes.windows(9).any(|w| w == b"\"evented\"")
}

/// Turns a file's bytes into a tree, locally when they are folded text, with the list of its
/// profiles when it holds several.
async fn load(bytes: &[u8]) -> Result<fetch::Collapsed, String> {
    // JSON (speedscope, or a format told apart by its start, whose files may hold several
    // profiles) and callgrind (whose cost lines `1 2` read as folded stacks) are read by the
    // server; so is anything that is not folded text.
    let local = !speedscope::looks_like_json(bytes) && !kiln_model::callgrind::looks_like(bytes);
    let folded = std::str::from_utf8(bytes)
        .ok()
        .filter(|_| local)
        .and_then(|text| folded::parse(text.as_bytes(), LineFormat::Counted, ParseLimits::default()).ok())
        .filter(|tree| !tree.is_empty());
    match folded {
        Some(tree) => {
            Ok(fetch::Collapsed { tree: (tree.to_flat(), "samples".into()), parts: Vec::new(), part: String::new() })
        }
        None => fetch::post_for_tree("/api/collapse?format=auto", bytes).await,
    }
}

/// `/open`.
#[component]
pub fn OpenPage() -> impl IntoView {
    let loaded = RwSignal::<Option<Arc<Loaded>>>::new(None);
    let file_name = RwSignal::new(String::new());
    let status = RwSignal::new(String::from("Drop a profile here or pick a file."));
    let search = RwSignal::new(String::new());
    let dragging = RwSignal::new(false);
    // Whether the time order shows instead of the flamegraph (and the other way round: two
    // signals, so that each view's `hidden` is a signal rather than another closure, which
    // costs the wasm download more).
    let in_time_order = RwSignal::new(false);
    let in_flamegraph = RwSignal::new(true);
    let no_time_order = RwSignal::new(true);
    let show = move |time_order: bool| {
        in_time_order.set(time_order);
        in_flamegraph.set(!time_order);
    };
    let timed = RwSignal::<Option<Arc<Loaded>>>::new(None);
    let timed_status = RwSignal::new(String::new());
    // The function selected in either view, outlined in both.
    let linked = RwSignal::new(None::<String>);
    // The file's bytes, posted again when another of its profiles is picked; its profiles
    // (empty for a file of one), which one shows (`all` or an index), and whether threads
    // merge into "all".
    let bytes = StoredValue::new(Arc::new(Vec::<u8>::new()));
    let parts = RwSignal::new(Vec::<fetch::PartInfo>::new());
    let chosen = RwSignal::new(String::new());
    let mergeable = RwSignal::new(false);
    let show_tree = move |(tree, units): (kiln_model::FlatTree, String)| {
        status.set(format!("{} in total", format_value(tree.total(), &units)));
        loaded.set(Some(Arc::new(Loaded::new(tree, units))));
    };
    // Asked for once the flamegraph shows, whether or not the view is chosen: one request less
    // to wait for when it is (and less code than asking on the toggle). A part's own, or the
    // busiest thread's for "all".
    let fetch_time_order = move |read: Arc<Vec<u8>>, part: Option<usize>| async move {
        let part = part.map(|i| format!("&part={i}")).unwrap_or_default();
        match fetch::post_for_time_order(&format!("/api/collapse/time-order?format=auto{part}"), &read).await {
            Ok(profile) => {
                timed.set(Some(Arc::new(Loaded::timed(profile))));
                timed_status.set(String::new());
            }
            Err(e) => timed_status.set(format!("No time order: {e}")),
        }
    };

    let open = move |file: web_sys::File| {
        file_name.set(file.name());
        status.set(format!("Reading {}…", file.name()));
        show(false);
        timed.set(None);
        timed_status.set("Reading the time order…".into());
        linked.set(None);
        leptos::task::spawn_local(async move {
            let read = match read_file(file).await {
                Ok(read) => read,
                Err(e) => {
                    loaded.set(None);
                    status.set(format!("Could not read the file: {e}"));
                    return;
                }
            };
            let read = Arc::new(read);
            bytes.set_value(read.clone());
            match load(&read).await {
                Ok(collapsed) => {
                    // A gzipped file's times are known from the server's list of its profiles.
                    let timed_file = has_times(&read) || collapsed.parts.iter().any(|p| p.timed);
                    no_time_order.set(!timed_file);
                    mergeable.set(collapsed.part == "all");
                    chosen.set(collapsed.part);
                    parts.set(collapsed.parts);
                    show_tree(collapsed.tree);
                    if timed_file {
                        fetch_time_order(read, None).await;
                    }
                }
                Err(e) => {
                    loaded.set(None);
                    status.set(format!("Could not read the file: {e}"));
                }
            }
        });
    };
    // Another profile of the file: read again by the server, which keeps nothing between asks.
    let pick = move |part: String| {
        let read = bytes.get_value();
        chosen.set(part.clone());
        status.set("Reading the profile…".into());
        timed.set(None);
        let index = part.parse::<usize>().ok();
        let timed_part = match index {
            Some(i) => parts.with_untracked(|p| p.get(i).is_some_and(|p| p.timed)),
            None => parts.with_untracked(|p| p.iter().any(|p| p.timed)),
        };
        no_time_order.set(!timed_part);
        if !timed_part {
            show(false);
        }
        leptos::task::spawn_local(async move {
            match fetch::post_for_tree(&format!("/api/collapse?format=auto&part={part}"), &read).await {
                Ok(collapsed) => show_tree(collapsed.tree),
                Err(e) => status.set(format!("Could not read the profile: {e}")),
            }
            if timed_part {
                timed_status.set("Reading the time order…".into());
                fetch_time_order(read, index).await;
            }
        });
    };
    let on_pick = move |ev: leptos::ev::Event| {
        let file = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            .and_then(|input| input.files())
            .and_then(|files| files.get(0));
        if let Some(file) = file {
            open(file);
        }
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(file) = ev.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
            open(file);
        }
    };

    let view_button = move |time_order: bool, label: &'static str| {
        view! {
            <button
                type="button"
                class="view-toggle"
                aria-pressed=move || (in_time_order.get() == time_order).to_string()
                on:click=move |_| show(time_order)
            >
                {label}
            </button>
        }
    };
    let linked_text = move || linked.get().map(|name| format!("Function selected: {name} (outlined in both views)"));

    // The table's functions, counted once per tree (a walk over every node), not once per
    // keystroke.
    let functions = RwSignal::new(None);
    Effect::new(move |_| functions.set(loaded.get().map(|d| (Arc::new(top_table(&d.tree)), d))));
    // The table follows the search one paint later than the flamegraph, as the explorer's
    // does: a keystroke repaints the canvas in the next frame, and the rows (up to 2,000 of
    // them rebuilt) once that frame is on screen. Keystrokes typed in between make one update.
    let filter = RwSignal::new(String::new());
    Effect::new(move |_| {
        search.track();
        after_paint(move || {
            if let Some(latest) = search.try_get_untracked()
                && filter.try_with_untracked(|f| *f != latest) == Some(true)
            {
                filter.set(latest);
            }
        });
    });
    let table = move || {
        let (functions, data) = functions.get()?;
        let units = data.units.clone();
        let search = filter.with(|s| NameSearch::parse(s));
        let rows = search
            .filter(&functions, |r| &r.name)
            .into_iter()
            .take(2000)
            .cloned()
            .map(|row| {
                view! {
                    <tr>
                        <td class="name">{row.name}</td>
                        <td class="num self">{format_value(row.self_value, &units)}</td>
                        <td class="num total">{format_value(row.total, &units)}</td>
                    </tr>
                }
            })
            .collect_view();
        Some(view! {
            <table class="top-table">
                <caption>"Functions by total"</caption>
                <thead>
                    <tr>
                        <th scope="col">"Function"</th>
                        <th scope="col" class="num">"Self"</th>
                        <th scope="col" class="num">"Total"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        })
    };

    view! {
        <section class="open">
            <h1>"Open a file"</h1>
            <div
                class="dropzone"
                class:dragging=move || dragging.get()
                on:dragover=move |ev: leptos::ev::DragEvent| {
                    ev.prevent_default();
                    dragging.set(true);
                }
                on:dragleave=move |_| dragging.set(false)
                on:drop=on_drop
            >
                <p>{readable_formats()}</p>
                <label class="file-pick">
                    <span>"Choose a file"</span>
                    <input type="file" aria-label="Profile file" on:change=on_pick />
                </label>
            </div>
            <p class="flame-status" aria-live="polite">{move || status.get()}</p>
            <Show when=move || loaded.with(Option::is_some)>
                <div class="toolbar">
                    <label class="search">
                        <span>"Search"</span>
                        <input
                            type="search"
                            aria-label="Search functions"
                            prop:value=move || search.get()
                            on:input=move |ev| search.set(event_target_value(&ev))
                        />
                    </label>
                    <Show when=move || parts.with(|p| p.len() > 1)>
                        <label class="part-pick">
                            <span>"Profile"</span>
                            <select aria-label="Profile" on:change=move |ev| pick(event_target_value(&ev))>
                                {move || {
                                    let all = mergeable
                                        .get()
                                        .then(|| {
                                            let label = format!("All merged ({} profiles)", parts.with(Vec::len));
                                            view! { <option value="all" selected=chosen.get_untracked() == "all">{label}</option> }
                                        });
                                    let each = parts
                                        .get()
                                        .into_iter()
                                        .enumerate()
                                        .map(|(i, p)| {
                                            let label = format!("{}: {}", p.name, format_value(p.total as u64, &p.units));
                                            let selected = chosen.get_untracked() == i.to_string();
                                            view! { <option value=i.to_string() selected=selected>{label}</option> }
                                        })
                                        .collect_view();
                                    (all, each)
                                }}
                            </select>
                        </label>
                    </Show>
                    <div class="view-toggles" role="group" aria-label="View" hidden=no_time_order>
                        {view_button(false, "Flamegraph")}
                        {view_button(true, "Time order")}
                    </div>
                </div>
                <p class="linked-function" aria-live="polite">{linked_text}</p>
                <div hidden=in_time_order>
                    <FlameGraph data=loaded search linked />
                </div>
                <div hidden=in_flamegraph>
                    <p class="time-order-status" aria-live="polite">{timed_status}</p>
                    <TimeOrderChart data=timed search linked />
                </div>
                <UploadForm loaded file_name />
                {table}
            </Show>
        </section>
    }
}

/// What the page reads, from the one table of formats the server decodes with.
fn readable_formats() -> String {
    let names = kiln_model::formats::shown_names();
    format!("Reads {}. Nothing is stored unless you upload it.", names.join(", "))
}

/// Stores the opened profile under an application name and labels.
#[component]
fn UploadForm(loaded: RwSignal<Option<Arc<Loaded>>>, file_name: RwSignal<String>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let result = RwSignal::<Option<Result<String, String>>>::new(None);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(data) = loaded.get_untracked() else {
            return;
        };
        let app = name.get_untracked().trim().to_string();
        if app.is_empty() {
            result.set(Some(Err("Give the profile a name, e.g. myapp.cpu{env=dev}".into())));
            return;
        }
        let body = folded::print(&data.tree);
        let units = data.units.clone();
        leptos::task::spawn_local(async move {
            let url =
                format!("/ingest?name={}&units={}&format=folded", encode_query_value(&app), encode_query_value(&units));
            let outcome = fetch::post_text(&url, &body).await.map(|()| {
                // The uploaded series without its labels, written back as a selector (so a
                // quoted application name stays quoted).
                let query = kiln_model::selector::Selector::parse(&app)
                    .map(|s| kiln_model::selector::Selector { matchers: Vec::new(), ..s }.to_string())
                    .unwrap_or_else(|_| app.clone());
                format!("/explore?query={}", encode_query_value(&query))
            });
            result.set(Some(outcome));
        });
    };
    view! {
        <form class="upload-form" on:submit=submit>
            <label>
                <span>"Upload as"</span>
                <input
                    aria-label="Application name and labels"
                    placeholder=move || {
                        let stem = file_name.get();
                        let stem = stem.split('.').next().unwrap_or("myapp").to_string();
                        format!("{stem}.cpu{{env=dev}}")
                    }
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))
                />
            </label>
            <button type="submit">"Upload to Kiln"</button>
            {move || {
                result
                    .get()
                    .map(|r| match r {
                        Ok(href) => view! { <a class="uploaded" href=href>"Uploaded: open it in the explorer"</a> }.into_any_sync(),
                        Err(e) => view! { <span class="error">{e}</span> }.into_any_sync(),
                    })
            }}
        </form>
    }
}
