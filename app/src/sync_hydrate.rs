//! Type-erased views that hydrate synchronously only.
//!
//! Erasing a view (`into_any()`) keeps a pointer to
//! each of its rendering methods, including `hydrate_async`, so the compiler keeps an
//! asynchronous twin of the hydration code of everything inside it. Kiln never hydrates
//! asynchronously (no lazy routes, no islands, no Suspense): `hydrate_body` walks the page synchronously.
//! Those twins were about a seventh of the release wasm, downloaded by every browser that
//! opens Kiln.
//!
//! [`SyncHydrate`] wraps a view and forwards every method except `hydrate_async`, which keeps
//! the trait's default: the synchronous hydration, awaited at once. Erase through
//! [`IntoAnySync::into_any_sync`] instead of `into_any`.
//!
//! This leans on tachys internals, so the Leptos crates are pinned exactly (`=` in the root
//! Cargo.toml: leptos, leptos_axum, leptos_meta, tachys). On the first Leptos release whose
//! `AnyView` no longer keeps `hydrate_async` for views that are never hydrated asynchronously
//! (upstream's async-hydration bloat; check by building with `into_any()` in place of
//! `into_any_sync()` and comparing the gzipped size `make site` prints): delete this file, use
//! `into_any()` again where `into_any_sync()` is called, and go back to `^` requirements
//! (drop the `tachys` line from app/Cargo.toml).

use leptos::prelude::*;
use tachys::html::attribute::{Attribute, any_attribute::AnyAttribute};
use tachys::hydration::Cursor;
use tachys::ssr::StreamBuilder;
use tachys::view::add_attr::AddAnyAttr;
use tachys::view::any_view::AnyView;
use tachys::view::{Position, PositionState, Render, RenderHtml};

/// A view whose asynchronous hydration is its synchronous one.
pub struct SyncHydrate<V>(pub V);

impl<V: Render> Render for SyncHydrate<V> {
    type State = V::State;

    fn build(self) -> Self::State {
        self.0.build()
    }

    fn rebuild(self, state: &mut Self::State) {
        self.0.rebuild(state)
    }
}

impl<V: RenderHtml> RenderHtml for SyncHydrate<V> {
    type AsyncOutput = SyncHydrate<V::AsyncOutput>;
    type Owned = SyncHydrate<V::Owned>;

    const MIN_LENGTH: usize = V::MIN_LENGTH;
    const EXISTS: bool = V::EXISTS;

    fn dry_resolve(&mut self) {
        self.0.dry_resolve();
    }

    async fn resolve(self) -> Self::AsyncOutput {
        SyncHydrate(self.0.resolve().await)
    }

    fn html_len(&self) -> usize {
        self.0.html_len()
    }

    fn to_html_with_buf(
        self,
        buf: &mut String,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) {
        self.0.to_html_with_buf(buf, position, escape, mark_branches, extra_attrs);
    }

    fn to_html_async_with_buf<const OUT_OF_ORDER: bool>(
        self,
        buf: &mut StreamBuilder,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) where
        Self: Sized,
    {
        self.0.to_html_async_with_buf::<OUT_OF_ORDER>(buf, position, escape, mark_branches, extra_attrs);
    }

    fn hydrate<const FROM_SERVER: bool>(self, cursor: &Cursor, position: &PositionState) -> Self::State {
        self.0.hydrate::<FROM_SERVER>(cursor, position)
    }

    fn into_owned(self) -> Self::Owned {
        SyncHydrate(self.0.into_owned())
    }
}

impl<V: AddAnyAttr> AddAnyAttr for SyncHydrate<V> {
    type Output<SomeNewAttr: Attribute> = SyncHydrate<V::Output<SomeNewAttr>>;

    fn add_any_attr<NewAttr: Attribute>(self, attr: NewAttr) -> Self::Output<NewAttr>
    where
        Self::Output<NewAttr>: RenderHtml,
    {
        SyncHydrate(self.0.add_any_attr(attr))
    }
}

/// `into_any` without the asynchronous hydration twin.
pub trait IntoAnySync {
    /// Erases the view's type, as `into_any` does.
    fn into_any_sync(self) -> AnyView;
}

impl<V> IntoAnySync for V
where
    V: RenderHtml + Send + 'static,
{
    fn into_any_sync(self) -> AnyView {
        SyncHydrate(self).into_any()
    }
}
