//! The timeline: value per time step as bars; dragging across it selects a range and
//! re-queries.

use kiln_model::page_data::TimelineData;
use leptos::prelude::*;

use super::state::ExploreState;
use crate::format::format_unix_time;

/// View-box width; the SVG stretches to the page.
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 60.0;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Drag {
    start: f64,
    end: f64,
}

fn fraction(ev: &leptos::ev::MouseEvent) -> Option<f64> {
    let target = ev.current_target()?;
    let element: web_sys::Element = wasm_bindgen::JsCast::dyn_into(target).ok()?;
    let width = f64::from(element.client_width()).max(1.0);
    Some((f64::from(ev.offset_x()) / width).clamp(0.0, 1.0))
}

/// The timeline chart of the current range.
#[component]
pub fn Timeline(
    data: TimelineData,
    /// The explorer state a dragged range is applied to (no dragging without one).
    #[prop(optional, into)]
    state: Option<Signal<ExploreState>>,
) -> impl IntoView {
    let drag = RwSignal::<Option<Drag>>::new(None);
    let max = data.samples.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = data.samples.len().max(1) as f64;
    let bar_width = WIDTH / n;
    let bars = data
        .samples
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0)
        .map(|(i, &v)| {
            let h = (v as f64 / max * (HEIGHT - 2.0)).max(1.0);
            view! {
                <rect
                    x=format!("{:.2}", i as f64 * bar_width)
                    y=format!("{:.2}", HEIGHT - h)
                    width=format!("{:.2}", (bar_width * 0.9).max(0.5))
                    height=format!("{h:.2}")
                ></rect>
            }
        })
        .collect_view();
    let total: u64 = data.samples.iter().sum();
    let label = format!(
        "Timeline from {} to {}, {} points; drag to select a range",
        format_unix_time(data.start_time),
        format_unix_time(data.end_time()),
        data.samples.len()
    );
    let selection = move || {
        drag.get().map(|d| {
            let (a, b) = if d.start <= d.end { (d.start, d.end) } else { (d.end, d.start) };
            view! { <div class="timeline-selection" style=format!("left: {:.3}%; width: {:.3}%", a * 100.0, (b - a) * 100.0)></div> }
        })
    };
    let range_data = data.clone();
    let finish = move |ev: leptos::ev::MouseEvent| {
        let Some(mut d) = drag.get_untracked() else {
            return;
        };
        drag.set(None);
        if let Some(f) = fraction(&ev) {
            d.end = f;
        }
        let (a, b) = if d.start <= d.end { (d.start, d.end) } else { (d.end, d.start) };
        if b - a < 0.005 {
            return;
        }
        let Some(state) = state else {
            return;
        };
        let (from, until) = (range_data.time_at(a), range_data.time_at(b));
        let next = state.get_untracked().with(|s| {
            s.from = from.to_string();
            s.until = until.to_string();
        });
        crate::location::navigate(&next.href());
    };
    view! {
        <figure class="timeline">
            <div
                class="timeline-plot"
                role="img"
                aria-label=label
                data-total=total.to_string()
                on:mousedown=move |ev| {
                    if let Some(f) = fraction(&ev) {
                        ev.prevent_default();
                        drag.set(Some(Drag { start: f, end: f }));
                    }
                }
                on:mousemove=move |ev| {
                    if drag.get_untracked().is_some()
                        && let Some(f) = fraction(&ev)
                    {
                        drag.update(|d| {
                            if let Some(d) = d {
                                d.end = f;
                            }
                        });
                    }
                }
                on:mouseup=finish
                on:mouseleave=move |_| drag.set(None)
            >
                <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" aria-hidden="true">
                    {bars}
                </svg>
                {selection}
            </div>
            <figcaption>
                <span>{format_unix_time(data.start_time)}</span>
                <span>{format_unix_time(data.end_time())}</span>
            </figcaption>
        </figure>
    }
}
