//! Work deferred past the next frame.

use leptos::prelude::{request_animation_frame, set_timeout};

/// Runs `f` once the next frame is on screen: after the coming animation frame, in a task of
/// its own. Work that a change sets off but that frame does not need (a URL rewrite, the
/// table's filtering, a sum over the whole tree) waits here, so that the frame is not late.
pub fn after_paint(f: impl FnOnce() + 'static) {
    request_animation_frame(move || set_timeout(f, std::time::Duration::ZERO));
}
