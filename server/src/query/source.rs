//! The app's view of the store: what its server functions call during rendering.

use std::sync::Arc;

use kiln_model::page_data::{AppSummary, MergedView, ProfileSource, TimelineData};

use super::{MergeCache, Query, QueryLimits, block_on, label_names, label_values};
use crate::storage::Store;
use crate::timespec;
use crate::work::Cancel;

/// [`ProfileSource`] over a [`Store`]: queries under the given limits, their merges stopped
/// when the request's [`Cancel`] fires (its timeout, or the client gone).
pub struct StoreSource {
    /// The store read.
    pub store: Arc<Store>,
    /// Recent merges, shared with `/render`: the page's merge answers the browser's fetch of
    /// the same query's tree a moment later.
    pub merges: Arc<MergeCache>,
    /// Series, bytes and nodes each query may cost.
    pub limits: QueryLimits,
    /// The request's deadline; merges check it as they go.
    pub cancel: Cancel,
}

impl ProfileSource for StoreSource {
    fn apps(&self, tenant: &str) -> Vec<AppSummary> {
        self.store
            .apps(tenant)
            .into_iter()
            .map(|a| AppSummary {
                name: a.name,
                profile_types: a.profile_types.into_iter().collect(),
                label_names: a.label_names.into_iter().collect(),
                last_seen: a.last_seen,
                uploads: a.uploads,
            })
            .collect()
    }

    fn merged(&self, tenant: &str, query: &str, from: &str, until: &str) -> Result<MergedView, String> {
        let (from, until) = timespec::parse_range(Some(from), Some(until), timespec::now_unix())?;
        let query = Query::parse(tenant, query, from, until).map_err(|e| e.to_string())?.with_limits(self.limits);
        let merged = block_on(self.merges.merge(&self.store, &query, &self.cancel)).map_err(|e| e.to_string())?;
        Ok(MergedView {
            tree: merged.tree.clone(),
            units: merged.units.clone(),
            timeline: TimelineData {
                start_time: merged.timeline.start_time,
                step: merged.timeline.step,
                samples: merged.timeline.samples.clone(),
            },
        })
    }

    fn label_names(&self, tenant: &str, query: &str) -> Result<Vec<String>, String> {
        label_names(&self.store, tenant, Some(query)).map_err(|e| e.to_string())
    }

    fn label_values(&self, tenant: &str, label: &str, query: &str) -> Result<Vec<String>, String> {
        label_values(&self.store, tenant, label, Some(query)).map_err(|e| e.to_string())
    }
}
