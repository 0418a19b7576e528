//! Light and dark themes. The page follows the system's `prefers-color-scheme` until the user
//! picks a theme with the toggle; the pick is kept in `localStorage`. The stylesheet reads the
//! theme from `<html data-theme>`; canvases (which CSS does not paint) read it from the signal
//! that [`provide_theme`] puts in the context, and redraw when it changes.

use kiln_model::palette::for_dark;
use leptos::prelude::*;

/// Where the user's pick is kept; the inline script of [`THEME_SCRIPT`] reads it too.
const STORAGE_KEY: &str = "kiln-theme";

/// Sets `<html data-theme>` from a stored pick before the page is first painted, so that a
/// page whose pick differs from the system's setting does not flash in the wrong theme while
/// the wasm loads. Without a pick, the stylesheet's `prefers-color-scheme` rule applies.
pub const THEME_SCRIPT: &str = "try{var t=localStorage.getItem('kiln-theme');\
if(t==='dark'||t==='light')document.documentElement.setAttribute('data-theme',t)}catch(e){}";

/// A theme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    /// Dark text on a light background.
    #[default]
    Light,
    /// Light text on a dark background.
    Dark,
}

/// Colours of what a flamegraph canvas draws around its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanvasPalette {
    /// Fill behind the frames (the panel colour of the stylesheet), as RGB.
    pub background: [u8; 3],
    /// Frame labels.
    pub text: &'static str,
    /// Outline of the selected frame (the stylesheet's focus colour).
    pub selection: &'static str,
}

impl Theme {
    /// The name stored and set on `<html data-theme>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    fn parse(text: &str) -> Option<Theme> {
        match text {
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            _ => None,
        }
    }

    /// The other theme.
    pub fn toggled(self) -> Theme {
        match self {
            Theme::Light => Theme::Dark,
            Theme::Dark => Theme::Light,
        }
    }

    /// The canvas colours of this theme.
    pub fn canvas(self) -> CanvasPalette {
        match self {
            Theme::Light => CanvasPalette { background: [0xff, 0xff, 0xff], text: "#1b1b1b", selection: "#2563eb" },
            Theme::Dark => CanvasPalette { background: [0x1f, 0x1e, 0x1c], text: "#ecebe8", selection: "#60a5fa" },
        }
    }

    /// A frame colour (`(hue, saturation%, lightness%)`) fitted to this theme's background.
    pub fn frame(self, colour: (u16, u8, u8)) -> (u16, u8, u8) {
        match self {
            Theme::Light => colour,
            Theme::Dark => for_dark(colour),
        }
    }
}

/// The theme signal shared through the context.
#[derive(Debug, Clone, Copy)]
struct ThemeContext(RwSignal<Theme>);

/// Puts the theme signal in the context and, in the browser, keeps it in step with the user's
/// pick or the system's setting, and `<html data-theme>` in step with it.
pub fn provide_theme() {
    // Light on the server and while hydrating (the server cannot know the browser's setting);
    // the first effect switches to the real theme right after.
    let theme = RwSignal::new(Theme::Light);
    provide_context(ThemeContext(theme));
    Effect::new(move |_| {
        theme.set(current());
        follow_system(theme);
    });
    Effect::new(move |_| {
        let name = theme.get().as_str();
        if let Some(html) = document().document_element() {
            let _ = html.set_attribute("data-theme", name);
        }
    });
}

/// The theme the page is about to show (the user's pick, else the system's): for what is drawn
/// before the page hydrates, when the theme signal does not exist yet.
pub fn current() -> Theme {
    stored().or_else(system).unwrap_or_default()
}

/// The current theme (light where no theme was provided).
pub fn use_theme() -> Signal<Theme> {
    match use_context::<ThemeContext>() {
        Some(ThemeContext(theme)) => theme.into(),
        None => Signal::stored(Theme::Light),
    }
}

/// A button switching between light and dark (pressed: dark); the pick is remembered.
#[component]
pub fn ThemeToggle() -> impl IntoView {
    let theme = use_context::<ThemeContext>().map(|ThemeContext(t)| t);
    let dark = move || theme.is_some_and(|t| t.get() == Theme::Dark);
    let toggle = move |_| {
        let Some(theme) = theme else { return };
        let next = theme.get_untracked().toggled();
        theme.set(next);
        if let Some(storage) = local_storage() {
            let _ = storage.set_item(STORAGE_KEY, next.as_str());
        }
    };
    view! {
        <button type="button" class="theme-toggle" aria-pressed=move || dark().to_string() on:click=toggle>
            "Dark theme"
        </button>
    }
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn stored() -> Option<Theme> {
    Theme::parse(&local_storage()?.get_item(STORAGE_KEY).ok().flatten()?)
}

fn dark_query() -> Option<web_sys::MediaQueryList> {
    web_sys::window()?.match_media("(prefers-color-scheme: dark)").ok().flatten()
}

fn system() -> Option<Theme> {
    Some(if dark_query()?.matches() { Theme::Dark } else { Theme::Light })
}

/// Follows changes of the system's setting while the user has not picked a theme.
fn follow_system(theme: RwSignal<Theme>) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    let Some(query) = dark_query() else { return };
    let on_change = Closure::<dyn Fn()>::new(move || {
        if stored().is_none()
            && let Some(now) = system()
        {
            theme.set(now);
        }
    });
    let _ = query.add_event_listener_with_callback("change", on_change.as_ref().unchecked_ref());
    // The listener lives as long as the page (the theme is app-wide): hand it to JS for good.
    on_change.forget();
}
