//! The time-order view: a flame chart (x is time, each sample drawn where it happened) laid
//! out by `kiln_model::time_order` and drawn by the flamegraph's rasteriser, with its colours
//! and search. The wheel zooms about the pointer (sideways or with Shift it pans), dragging
//! pans, the keys do both (arrows, `+`, `-`, `0` for the whole profile); a click selects a box,
//! which names the linked function the flamegraph outlines (and the other way round); a
//! double click, or Enter on the selection, zooms to the box.
//!
//! Its pointer and key handling is one listener and one mutable state rather than a signal
//! and a handler per concern: the view changes on every wheel step and drag move, and each
//! reactive piece costs the wasm download several kilobytes of generic code. Signals carry
//! only what the page shows as text.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use kiln_model::layout::{FrameRect, hit_test};
use kiln_model::palette::ColourMode;
use kiln_model::time_order::{ChartBox, TimeView};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, HtmlCanvasElement, KeyboardEvent, MouseEvent, WheelEvent};

use super::draw::{self, AGGREGATE, colour_of, outline_function};
use super::state::{Loaded, ROW_HEIGHT};
use crate::format::{format_value, group_digits};
use crate::search::NameSearch;
use crate::theme::{Theme, use_theme};

/// What the page shows of the chart as text, each a string signal (one signal type for all).
#[derive(Clone, Copy)]
struct Texts {
    range: RwSignal<String>,
    selection: RwSignal<String>,
    tip_name: RwSignal<String>,
    tip_row: RwSignal<String>,
    tip_style: RwSignal<String>,
    outlined: RwSignal<String>,
    linked: RwSignal<Option<String>>,
}

/// The chart's state between events and redraws.
struct Chart {
    canvas: Option<HtmlCanvasElement>,
    data: Option<Arc<Loaded>>,
    matches: Option<Vec<bool>>,
    linked: Option<u32>,
    theme: Theme,
    width: f64,
    view: TimeView,
    selected: Option<(u32, ChartBox)>,
    /// Where a drag started (pointer x, the view then), and whether it moved enough to be a
    /// pan rather than a click.
    drag: Option<(f64, TimeView)>,
    dragged: bool,
    rects: Vec<FrameRect>,
}

impl Chart {
    fn end(&self) -> u64 {
        self.data.as_ref().and_then(|d| d.chart.as_ref()).map_or(0, |(c, _, _)| c.end)
    }

    /// Draws the chart and sets the texts that follow the view and the selection.
    fn redraw(&mut self, texts: Texts) {
        let (Some(canvas), Some(d)) = (&self.canvas, &self.data) else { return };
        let Some((chart, samples, profile)) = &d.chart else { return };
        let Some(surface) = draw::surface(canvas, self.width, chart.height()) else { return };
        let rects = chart.visible(self.view, surface.width);
        let top = |r: &FrameRect| f64::from(r.depth) * ROW_HEIGHT;
        let matches = self.matches.as_deref();
        let colour = |r: &FrameRect| match r.node {
            None => AGGREGATE,
            Some(node) => colour_of(d, node, matches, false, ColourMode::Package),
        };
        let rows = 0..chart.height();
        draw::raster(&surface, chart.height(), rows.clone(), &rects, &top, &colour, self.theme);
        draw::labels(&surface, &d.tree, &rects, &rows, &top, self.theme);
        let outlined = outline_function(&surface, &d.tree, &rects, self.linked, &rows, &top, self.theme);
        let TimeView { start, end } = self.view;
        if let Some((row, b)) = self.selected {
            let scale = surface.width / (end - start);
            let left = ((b.start as f64 - start) * scale).max(-2.0);
            let right = ((b.end as f64 - start) * scale).min(surface.width + 2.0);
            if right > 0.0 && left < surface.width {
                let ctx = &surface.ctx;
                ctx.set_stroke_style_str(self.theme.canvas().selection);
                ctx.set_line_width(2.0);
                ctx.stroke_rect(left + 1.0, top_of(row) + 1.0, (right - left - 2.0).max(1.0), ROW_HEIGHT - 3.0);
                ctx.set_line_width(1.0);
            }
        }
        self.rects = rects;
        let units = &d.units;
        set_text(
            texts.range,
            format!(
                "Showing {} to {} of {} ({} samples{}{profile})",
                format_value(start.round() as u64, units),
                format_value(end.round() as u64, units),
                format_value(chart.end, units),
                group_digits(*samples as u64),
                if profile.is_empty() { "" } else { ", " },
            ),
        );
        set_text(texts.outlined, outlined.to_string());
        let selection = self.selected.and_then(|found| self.details(found));
        set_text(texts.selection, selection.map_or_else(String::new, |(name, row)| format!("Selected {name}: {row}")));
    }

    /// A box's function name and when it ran.
    fn details(&self, (_, b): (u32, ChartBox)) -> Option<(String, String)> {
        let d = self.data.as_ref()?;
        Some((
            d.tree.name_of(b.node).to_string(),
            format!("{} from {}", format_value(b.end - b.start, &d.units), format_value(b.start, &d.units)),
        ))
    }

    /// The box under a point of the canvas (CSS pixels), with its row; `Err` over a block of
    /// boxes too short to draw one by one.
    fn box_at(&self, x: f64, y: f64) -> Option<Result<(u32, ChartBox), ()>> {
        let row = u32::try_from((y / ROW_HEIGHT).floor() as i64).ok()?;
        let rect = hit_test(&self.rects, x, row)?;
        if rect.node.is_none() {
            return Some(Err(()));
        }
        let (chart, _, _) = self.data.as_ref()?.chart.as_ref()?;
        let TimeView { start, end } = self.view;
        let time = |px: f64| start + (px / self.width.max(1.0)) * (end - start);
        // A box thinner than a pixel is found at its rect's middle.
        let found = chart.box_at(row, time(x)).or_else(|| chart.box_at(row, time(rect.x + rect.width / 2.0)))?;
        Some(Ok((row, found)))
    }

    /// Selects `found` (or nothing); its function becomes the linked one.
    fn select(&mut self, found: Option<(u32, ChartBox)>, texts: Texts) {
        self.selected = found;
        let name = found.and_then(|(_, b)| Some(self.data.as_ref()?.tree.name_of(b.node).to_string()));
        if name.is_some() && texts.linked.get_untracked() != name {
            texts.linked.set(name);
        }
    }

    /// Handles one pointer or key event; true when the chart must be redrawn.
    fn on_event(&mut self, event: &Event, texts: Texts) -> bool {
        let total = self.end();
        let width = self.width.max(1.0);
        match event.type_().as_str() {
            "wheel" => {
                let Some(ev) = event.dyn_ref::<WheelEvent>() else { return false };
                event.prevent_default();
                // Sideways (or Shift) pans; the vertical wheel zooms about the pointer, 100
                // pixels of wheel halving or doubling the time shown.
                self.view = if ev.delta_x().abs() > ev.delta_y().abs() || ev.shift_key() {
                    let delta = if ev.shift_key() { ev.delta_y() } else { ev.delta_x() };
                    self.view.panned(delta / width, total)
                } else {
                    let steps = (ev.delta_y() / 100.0).clamp(-2.0, 2.0);
                    let factor = if steps < 0.0 { 1.0 / (1.0 - steps) } else { 1.0 + steps };
                    self.view.zoomed(f64::from(ev.offset_x()) / width, factor, total)
                };
                true
            }
            "mousedown" => {
                let Some(ev) = event.dyn_ref::<MouseEvent>() else { return false };
                if ev.button() == 0 {
                    self.drag = Some((f64::from(ev.client_x()), self.view));
                    self.dragged = false;
                }
                false
            }
            "mousemove" => {
                let Some(ev) = event.dyn_ref::<MouseEvent>() else { return false };
                let (x, y) = (f64::from(ev.offset_x()), f64::from(ev.offset_y()));
                if let Some((from_x, from_view)) = self.drag.filter(|_| ev.buttons() & 1 == 1) {
                    let moved = f64::from(ev.client_x()) - from_x;
                    if moved.abs() > 3.0 || self.dragged {
                        self.dragged = true;
                        self.view = from_view.panned(-moved / width, total);
                        set_text(texts.tip_style, HIDDEN.into());
                        return true;
                    }
                }
                let tip = match self.box_at(x, y) {
                    Some(Ok(found)) => self.details(found),
                    Some(Err(())) => Some(("Many short boxes: zoom in to tell them apart".into(), String::new())),
                    None => None,
                };
                match tip {
                    Some((name, row)) => {
                        set_text(texts.tip_name, name);
                        set_text(texts.tip_row, row);
                        set_text(texts.tip_style, format!("left: {:.0}px; top: {:.0}px", x + 14.0, y + 14.0));
                    }
                    None => set_text(texts.tip_style, HIDDEN.into()),
                }
                false
            }
            "mouseup" => {
                self.drag = None;
                false
            }
            "mouseleave" => {
                self.drag = None;
                set_text(texts.tip_style, HIDDEN.into());
                false
            }
            "click" => {
                let Some(ev) = event.dyn_ref::<MouseEvent>() else { return false };
                if std::mem::take(&mut self.dragged) {
                    return false;
                }
                let found = self.box_at(f64::from(ev.offset_x()), f64::from(ev.offset_y())).and_then(Result::ok);
                self.select(found, texts);
                true
            }
            "dblclick" => {
                let Some(ev) = event.dyn_ref::<MouseEvent>() else { return false };
                match self.box_at(f64::from(ev.offset_x()), f64::from(ev.offset_y())) {
                    Some(Ok((_, b))) => {
                        self.view = TimeView::around(b, total);
                        true
                    }
                    _ => false,
                }
            }
            "keydown" => {
                let Some(ev) = event.dyn_ref::<KeyboardEvent>() else { return false };
                match ev.key().as_str() {
                    "ArrowLeft" => self.view = self.view.panned(-0.1, total),
                    "ArrowRight" => self.view = self.view.panned(0.1, total),
                    "+" | "=" => self.view = self.view.zoomed(0.5, 0.5, total),
                    "-" => self.view = self.view.zoomed(0.5, 2.0, total),
                    "0" => self.view = TimeView::whole(total),
                    "Enter" => match self.selected {
                        Some((_, b)) => self.view = TimeView::around(b, total),
                        None => return false,
                    },
                    "Escape" => self.select(None, texts),
                    _ => return false,
                }
                event.prevent_default();
                true
            }
            _ => false,
        }
    }
}

/// The tooltip's style while it is hidden.
const HIDDEN: &str = "display: none";

/// The events the chart listens to, all with one listener.
const EVENTS: [&str; 8] = ["wheel", "mousedown", "mousemove", "mouseup", "mouseleave", "click", "dblclick", "keydown"];

fn top_of(row: u32) -> f64 {
    f64::from(row) * ROW_HEIGHT
}

fn set_text(signal: RwSignal<String>, text: String) {
    if signal.with_untracked(|now| *now != text) {
        signal.set(text);
    }
}

/// The listener on the canvas, removed when the chart goes.
struct Listener {
    canvas: HtmlCanvasElement,
    callback: Closure<dyn FnMut(Event)>,
}

impl Listener {
    fn remove(&self) {
        for name in EVENTS {
            let _ = self.canvas.remove_event_listener_with_callback(name, self.callback.as_ref().unchecked_ref());
        }
    }
}

/// The flame chart of `data` (a tree loaded with [`Loaded::timed`]).
#[component]
pub fn TimeOrderChart(
    /// The timed profile (`None` while it loads).
    #[prop(into)]
    data: Signal<Option<Arc<Loaded>>>,
    /// Frames containing this text are highlighted, the rest dimmed, as in the flamegraph.
    #[prop(into)]
    search: Signal<String>,
    /// The function selected here or in the flamegraph: its boxes are outlined.
    linked: RwSignal<Option<String>>,
) -> impl IntoView {
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    let canvas_width = RwSignal::new(0.0f64);
    let theme = use_theme();
    let texts = Texts {
        range: RwSignal::new(String::new()),
        selection: RwSignal::new(String::new()),
        tip_name: RwSignal::new(String::new()),
        tip_row: RwSignal::new(String::new()),
        tip_style: RwSignal::new(HIDDEN.to_string()),
        outlined: RwSignal::new("0".to_string()),
        linked,
    };
    let chart = Rc::new(RefCell::new(Chart {
        canvas: None,
        data: None,
        matches: None,
        linked: None,
        theme: Theme::default(),
        width: 0.0,
        view: TimeView::whole(0),
        selected: None,
        drag: None,
        dragged: false,
        rects: Vec::new(),
    }));

    // One listener for every pointer and key event, attached once the canvas exists.
    let state = chart.clone();
    Effect::new(move |_| {
        let Some(canvas) = canvas_ref.get() else { return };
        let observer = draw::observe_width(&canvas, canvas_width);
        let events = state.clone();
        let callback = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
            let mut chart = events.borrow_mut();
            if chart.on_event(&event, texts) {
                chart.redraw(texts);
            }
        });
        for name in EVENTS {
            let _ = canvas.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref());
        }
        let canvas: HtmlCanvasElement = canvas.clone().unchecked_into();
        state.borrow_mut().canvas = Some(canvas.clone());
        // Stored here, in the browser only: a thread-local value made while the server renders
        // the page would be dropped with the page's owner on another thread, which panics.
        let listening = StoredValue::new_local(Listener { canvas, callback });
        on_cleanup(move || {
            observer.with_value(|o| o.disconnect());
            listening.with_value(Listener::remove);
        });
    });

    // Whatever the page changes (the data, the search, the linked function, the theme, the
    // width) redraws; new data shows whole and unselected.
    Effect::new(move |_| {
        let d = data.get();
        let search = search.with(|s| NameSearch::parse(s));
        let matches = d
            .as_ref()
            .filter(|_| search.is_on())
            .map(|d| search.flags(&d.tree.names, d.lowercase_names()))
            .filter(|m| m.contains(&true));
        let linked_name = linked
            .get()
            .and_then(|name| d.as_ref().and_then(|d| d.tree.names.iter().position(|n| *n == name)).map(|i| i as u32));
        let mut chart = chart.borrow_mut();
        let fresh = match (&chart.data, &d) {
            (Some(old), Some(new)) => !Arc::ptr_eq(old, new),
            (old, new) => old.is_some() != new.is_some(),
        };
        chart.data = d;
        if fresh {
            chart.view = TimeView::whole(chart.end());
            chart.selected = None;
        }
        chart.matches = matches;
        chart.linked = linked_name;
        chart.theme = theme.get();
        chart.width = canvas_width.get();
        chart.redraw(texts);
    });

    view! {
        <div class="flamegraph time-order">
            <p class="time-order-range" aria-live="polite">{texts.range}</p>
            <p class="flame-selected" aria-live="polite">{texts.selection}</p>
            <div class="flame-canvas-wrap">
                <canvas
                    node_ref=canvas_ref
                    class="flame-canvas time-order-canvas"
                    tabindex="0"
                    aria-label="Time order: each sample drawn where it happened, time from left to right"
                    aria-keyshortcuts="ArrowLeft ArrowRight = - 0 Enter Escape"
                    data-linked-frames=texts.outlined
                ></canvas>
                <div class="flame-tooltip" role="tooltip" style=texts.tip_style>
                    <div class="tip-name">{texts.tip_name}</div>
                    <div class="tip-row">{texts.tip_row}</div>
                </div>
            </div>
        </div>
    }
}
