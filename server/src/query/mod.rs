//! Queries: pick the series a selector names, merge their uploads in a time range into one
//! call tree.

use std::collections::BTreeSet;
use std::sync::Arc;

use kiln_app::pages::home::AppSummary;
use kiln_app::source::ProfileSource;
use kiln_model::selector::{MatchOp, Selector};
use kiln_model::{CallTree, FlatTree};

use crate::storage::{Aggregation, SeriesKey, Store};

/// A query that cannot be answered as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// A parsed query: which series, which time range.
#[derive(Debug, Clone)]
pub struct Query {
    /// Application, type and label matchers.
    pub selector: Selector,
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive.
    pub until: i64,
}

impl Query {
    /// Parses `app.type{matchers}` over `[from, until)`.
    pub fn parse(text: &str, from: i64, until: i64) -> Result<Query, QueryError> {
        let selector = Selector::parse(text).map_err(|e| QueryError(format!("query `{text}`: {e}")))?;
        if selector.matchers.iter().any(|m| matches!(m.op, MatchOp::Regex | MatchOp::NotRegex)) {
            return Err(QueryError("regular-expression label matchers (`=~`, `!~`) are not supported yet".into()));
        }
        if from >= until {
            return Err(QueryError(format!("`from` ({from}) must be before `until` ({until})")));
        }
        Ok(Query { selector, from, until })
    }

    fn labels_match(&self, key: &SeriesKey) -> bool {
        self.selector.matchers.iter().all(|m| {
            let value = key.labels.get(&m.name).map(String::as_str).unwrap_or("");
            match m.op {
                MatchOp::Eq => value == m.value,
                MatchOp::NotEq => value != m.value,
                MatchOp::Regex | MatchOp::NotRegex => false,
            }
        })
    }
}

/// The profile type a query means when it names none: CPU if the app has it, else the first.
fn default_profile_type(store: &Store, app: &str) -> Option<String> {
    let types: BTreeSet<String> = store.series().into_iter().filter(|k| k.app == app).map(|k| k.profile_type).collect();
    if types.contains("cpu") { Some("cpu".into()) } else { types.into_iter().next() }
}

/// Merges every upload the query selects into one tree.
pub fn merge(store: &Store, query: &Query) -> FlatTree {
    let app = &query.selector.app;
    let Some(profile_type) = query.selector.profile_type.clone().or_else(|| default_profile_type(store, app)) else {
        return CallTree::new().to_flat();
    };
    let uploads = store.select(|key| key.app == *app && key.profile_type == profile_type && query.labels_match(key));
    let in_range: Vec<_> = uploads.iter().filter(|u| u.meta.until > query.from && u.meta.from < query.until).collect();
    let mut tree = CallTree::new();
    let averaged = in_range.iter().filter(|u| u.meta.aggregation == Aggregation::Average).count() as u64;
    for upload in &in_range {
        match upload.meta.aggregation {
            Aggregation::Sum => tree.merge_flat(&upload.tree),
            Aggregation::Average => tree.merge_flat_scaled(&upload.tree, 1, averaged),
        }
    }
    tree.to_flat()
}

/// The app's view of the store: what its server functions call.
pub struct StoreSource(pub Arc<Store>);

impl ProfileSource for StoreSource {
    fn apps(&self) -> Vec<AppSummary> {
        self.0
            .apps()
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

    fn merged_tree(&self, query: &str) -> Result<FlatTree, String> {
        let query = Query::parse(query, i64::MIN, i64::MAX).map_err(|e| e.to_string())?;
        Ok(merge(&self.0, &query))
    }
}
