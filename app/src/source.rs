//! What the app's server functions read profiles from. The server provides an implementation
//! (its storage and query engine) as context; the app never sees disks or sockets.

use std::sync::Arc;

use kiln_model::FlatTree;

use crate::pages::home::AppSummary;

/// Read access to stored profiles.
pub trait ProfileSource: Send + Sync + 'static {
    /// Every application with data, most recently seen first.
    fn apps(&self) -> Vec<AppSummary>;
    /// The merged call tree for a query (`app.type{labels}`), or why the query is wrong.
    fn merged_tree(&self, query: &str) -> Result<FlatTree, String>;
}

/// The context value server functions look up.
#[derive(Clone)]
pub struct SharedSource(pub Arc<dyn ProfileSource>);

/// The profile source of the current request.
pub fn source() -> Result<SharedSource, leptos::prelude::ServerFnError> {
    leptos::prelude::use_context::<SharedSource>()
        .ok_or_else(|| leptos::prelude::ServerFnError::new("no profile source in context"))
}
