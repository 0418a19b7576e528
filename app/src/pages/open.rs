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
//! Only a file's first 64 KiB are read into the page to tell where it goes; a file for the
//! server is posted as the browser holds it (a `Blob`, which it sends from disk), never copied
//! into the page, so a 100 MB trace costs the page no more than a small one. It goes raw:
//! `/api/collapse` takes files up to its own limit (`--max-collapse-body-bytes`, 256 MiB by
//! default), and the server reads a big file sooner than the browser gzips it (3 s for 100 MB).
//! Only when the server does not take it (413, from a lower limit or an older server) is it
//! gzipped (`CompressionStream`, streamed) and posted again. A gzipped file is posted as it is:
//! the server's body decoding gunzips it (announced or not), so the browser needs no
//! decompression code at all. Its time order is offered when the server's list of its profiles
//! says they have times. Storing an opened profile uploads it gzipped.
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

use std::cell::RefCell;
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

/// How much of a file the page reads itself to tell where it goes: enough for every format's
/// start and many lines of folded text.
const HEAD_BYTES: i32 = 64 << 10;

/// The bytes of `blob`.
async fn read_bytes(blob: &web_sys::Blob) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(blob.array_buffer()).await.map_err(|e| format!("{e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Whether the file's content alone says it has timestamps to show in time order: speedscope
/// JSON with an evented profile (within its first bytes). The server's list of a file's
/// profiles says it of each one (`perf script`'s threads too, with times or not).
fn has_times(head: &[u8]) -> bool {
    speedscope::looks_like_json(head) && head.windows(9).any(|w| w == b"\"evented\"")
}

/// Folded text, parsed, when `bytes` are (and are not a format whose lines read as folded).
fn folded_tree(bytes: &[u8]) -> Option<kiln_model::CallTree> {
    if speedscope::looks_like_json(bytes) || kiln_model::callgrind::looks_like(bytes) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    folded::parse(text.as_bytes(), LineFormat::Counted, ParseLimits::default()).ok().filter(|tree| !tree.is_empty())
}

thread_local! {
    /// What was posted for the opened file (the file, or its gzipped copy), posted again when
    /// another of its profiles is picked. Set in the browser only (one page, one thread): a
    /// `Blob` is not `Send`, so it cannot live in the page's signals.
    static POSTED: RefCell<Option<web_sys::Blob>> = const { RefCell::new(None) };
}

/// A file opened: its tree (with the list of its profiles when it holds several), what is
/// posted again for another of them (the file, or its gzipped copy), and its first bytes.
struct Opened {
    collapsed: fetch::Collapsed,
    body: web_sys::Blob,
    head: Vec<u8>,
}

/// Reads a file into a tree: folded text in the page, anything else by the server. Only the
/// file's head is read into the page to tell which; a file for the server is posted as the
/// browser holds it (sent from disk, never read into the page), gzipped only when the server
/// does not take it raw.
async fn load(file: web_sys::File) -> Result<Opened, String> {
    let size = file.size();
    let head = if size <= f64::from(HEAD_BYTES) {
        read_bytes(&file).await?
    } else {
        read_bytes(&file.slice_with_i32_and_i32(0, HEAD_BYTES).map_err(|e| format!("{e:?}"))?).await?
    };
    let body: web_sys::Blob = file.into();
    // The head's whole lines: folded text, then read whole (it is all lines of names).
    let whole_lines = match head.iter().rposition(|&b| b == b'\n') {
        Some(end) if size > f64::from(HEAD_BYTES) => &head[..=end],
        _ => &head[..],
    };
    if folded_tree(whole_lines).is_some() {
        let bytes = if size <= f64::from(HEAD_BYTES) { head.clone() } else { read_bytes(&body).await? };
        if let Some(tree) = folded_tree(&bytes) {
            let collapsed =
                fetch::Collapsed { tree: (tree.to_flat(), "samples".into()), parts: Vec::new(), part: String::new() };
            return Ok(Opened { collapsed, body, head });
        }
    }
    const COLLAPSE: &str = "/api/collapse?format=auto";
    if head.starts_with(&[0x1f, 0x8b]) {
        let collapsed = fetch::post_for_tree(COLLAPSE, &body).await?;
        return Ok(Opened { collapsed, body, head });
    }
    if let Some(collapsed) = fetch::post_for_tree_if_taken(COLLAPSE, &body).await? {
        return Ok(Opened { collapsed, body, head });
    }
    // Too big for the server as it is: gzipped, a tenth of the size for a trace.
    let body = fetch::gzipped(&body).await?;
    let collapsed = fetch::post_for_tree(COLLAPSE, &body).await?;
    Ok(Opened { collapsed, body, head })
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
    // The file's profiles (empty for a file of one), which one shows (`all` or an index), and
    // whether threads merge into "all".
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
    let fetch_time_order = move |read: web_sys::Blob, part: Option<usize>| async move {
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
            match load(file).await {
                Ok(Opened { collapsed, body, head }) => {
                    POSTED.set(Some(body.clone()));
                    let read = body;
                    // A gzipped file's times are known from the server's list of its profiles.
                    let timed_file = has_times(&head) || collapsed.parts.iter().any(|p| p.timed);
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
        let Some(read) = POSTED.with_borrow(Clone::clone) else { return };
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
            let outcome = fetch::post_text_gzipped(&url, &body).await.map(|()| {
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
