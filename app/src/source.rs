//! What the app's server functions read profiles from. The server provides an implementation
//! (its storage and query engine) as context; the app never sees disks or sockets.
//!
//! Every read is scoped to a tenant: the one the page request names in `X-Scope-OrgID` (set by
//! a gateway in front of Kiln), or the default tenant. [`source`] binds the two, so a server
//! function cannot forget whose data it reads.

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

/// Read access to stored profiles, per tenant. Times are as users write them (`now-1h`, Unix
/// seconds).
pub trait ProfileSource: Send + Sync + 'static {
    /// Every application of `tenant` with data, most recently seen first.
    fn apps(&self, tenant: &str) -> Vec<AppSummary>;
    /// The merged tree and timeline of a query (`app.type{labels}`) over `[from, until)`.
    fn merged(&self, tenant: &str, query: &str, from: &str, until: &str) -> Result<MergedView, String>;
    /// Label names of the series a query selects.
    fn label_names(&self, tenant: &str, query: &str) -> Result<Vec<String>, String>;
    /// Values of one label over the series a query selects.
    fn label_values(&self, tenant: &str, label: &str, query: &str) -> Result<Vec<String>, String>;
}

/// The context value server functions look up.
#[derive(Clone)]
pub struct SharedSource(pub Arc<dyn ProfileSource>);

/// A profile source bound to the tenant of the current request.
pub struct TenantSource {
    source: Arc<dyn ProfileSource>,
    tenant: String,
}

impl TenantSource {
    /// See [`ProfileSource::apps`].
    pub fn apps(&self) -> Vec<AppSummary> {
        self.source.apps(&self.tenant)
    }

    /// See [`ProfileSource::merged`].
    pub fn merged(&self, query: &str, from: &str, until: &str) -> Result<MergedView, String> {
        self.source.merged(&self.tenant, query, from, until)
    }

    /// See [`ProfileSource::label_names`].
    pub fn label_names(&self, query: &str) -> Result<Vec<String>, String> {
        self.source.label_names(&self.tenant, query)
    }

    /// See [`ProfileSource::label_values`].
    pub fn label_values(&self, label: &str, query: &str) -> Result<Vec<String>, String> {
        self.source.label_values(&self.tenant, label, query)
    }
}

/// The profile source of the current request, scoped to its tenant.
#[cfg(feature = "ssr")]
pub fn source() -> Result<TenantSource, leptos::prelude::ServerFnError> {
    use leptos::prelude::{ServerFnError, use_context};
    let source =
        use_context::<SharedSource>().map(|s| s.0).ok_or_else(|| ServerFnError::new("no profile source in context"))?;
    let parts = use_context::<http::request::Parts>();
    let header = parts.as_ref().and_then(|p| p.headers.get(kiln_model::tenant::TENANT_HEADER));
    let tenant = kiln_model::tenant::tenant_from_header(header.map(|v| v.as_bytes())).map_err(ServerFnError::new)?;
    Ok(TenantSource { source, tenant })
}
