//! What the app's server functions read profiles from. The server provides an implementation
//! (its storage and query engine) as context; the app never sees disks or sockets.

use std::sync::Arc;

use kiln_model::FlatTree;

use crate::pages::explore::timeline::TimelineData;
use crate::pages::home::AppSummary;

/// A query's answer as the pages need it.
pub struct MergedView {
    /// Every selected upload merged.
    pub tree: FlatTree,
    /// Sample unit.
    pub units: String,
    /// Value per time step.
    pub timeline: TimelineData,
}

/// Read access to stored profiles. Times are as users write them (`now-1h`, Unix seconds).
pub trait ProfileSource: Send + Sync + 'static {
    /// Every application with data, most recently seen first.
    fn apps(&self) -> Vec<AppSummary>;
    /// The merged tree and timeline of a query (`app.type{labels}`) over `[from, until)`.
    fn merged(&self, query: &str, from: &str, until: &str) -> Result<MergedView, String>;
    /// Label names of the series a query selects.
    fn label_names(&self, query: &str) -> Result<Vec<String>, String>;
    /// Values of one label over the series a query selects.
    fn label_values(&self, label: &str, query: &str) -> Result<Vec<String>, String>;
}

/// The context value server functions look up.
#[derive(Clone)]
pub struct SharedSource(pub Arc<dyn ProfileSource>);

/// The profile source of the current request.
pub fn source() -> Result<Arc<dyn ProfileSource>, leptos::prelude::ServerFnError> {
    leptos::prelude::use_context::<SharedSource>()
        .map(|s| s.0)
        .ok_or_else(|| leptos::prelude::ServerFnError::new("no profile source in context"))
}
