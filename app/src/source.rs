//! What the pages' data is read from: a [`ProfileSource`] the server provides (its storage and
//! query engine) as context; the app never sees disks or sockets.
//!
//! Every read is scoped to a tenant: the one the page request names in `X-Scope-OrgID` (set by
//! a gateway in front of Kiln), or the default tenant. [`source`] binds the two, so page data
//! cannot be read for the wrong tenant.

use std::sync::Arc;

use kiln_model::page_data::{AppSummary, MergedView, ProfileSource};

/// The context value pages look up while the server renders them.
#[derive(Clone)]
pub struct SharedSource(pub Arc<dyn ProfileSource>);

/// A profile source bound to the tenant of the current request.
pub struct TenantSource {
    source: Arc<dyn ProfileSource>,
    tenant: String,
    address: String,
}

impl TenantSource {
    /// `source` as `tenant` sees it, for a request to this server at `address`.
    pub fn new(source: Arc<dyn ProfileSource>, tenant: String, address: String) -> Self {
        TenantSource { source, tenant, address }
    }

    /// This server as the browser reached it (`http://host:port`), for setup instructions.
    pub fn address(&self) -> &str {
        &self.address
    }

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

/// This server as a request with `host` (its `Host` header) reached it.
pub fn address_of(host: Option<&str>) -> String {
    format!("http://{}", host.unwrap_or("127.0.0.1:4040"))
}

/// The profile source of the request being rendered, scoped to its tenant.
#[cfg(feature = "ssr")]
pub fn source() -> Result<TenantSource, String> {
    use leptos::prelude::use_context;
    let source = use_context::<SharedSource>().map(|s| s.0).ok_or("no profile source in context")?;
    let parts = use_context::<http::request::Parts>();
    let header = parts.as_ref().and_then(|p| p.headers.get(kiln_model::tenant::TENANT_HEADER));
    let tenant = kiln_model::tenant::tenant_from_header(header.map(|v| v.as_bytes()))?;
    let host = parts.as_ref().and_then(|p| p.headers.get(http::header::HOST)).and_then(|h| h.to_str().ok());
    Ok(TenantSource::new(source, tenant, address_of(host)))
}
