//! The per-tenant limit on active series (`--max-series-per-tenant`): an upload that would add a
//! series beyond it loses that series, and the rest of the request is stored.

use std::collections::HashSet;

use kiln_model::selector::{MatchOp, Matcher, Selector};

use super::IngestError;
use crate::storage::{KeyedUploads, SeriesKey, Store};

/// Takes out of `groups` the uploads of new series that do not fit under `limit` active series
/// of `tenant`, and returns the error to answer once the rest is stored (`None` when all fit).
///
/// The answer is 400, as Mimir and Pyroscope answer their per-tenant series limits: a
/// client error that retrying cannot fix, so agents and `kiln upload` do not retry it (a 429 or
/// 503 would invite retries that are refused again). Like Mimir, the series that fit (those
/// already active above all) are stored: agents do not retry, so refusing the whole request
/// would lose them too.
pub(crate) fn admit(store: &Store, tenant: &str, limit: usize, groups: &mut [KeyedUploads]) -> Option<IngestError> {
    let keys = groups.iter().flat_map(|g| &g.uploads).map(|u| &u.meta.series);
    let refused: HashSet<SeriesKey> = store.series_beyond_limit(tenant, keys, limit);
    let example = refused.iter().min()?;
    for group in groups.iter_mut() {
        group.uploads.retain(|u| !refused.contains(&u.meta.series));
    }
    let selector = Selector {
        app: example.app.clone(),
        profile_type: Some(example.profile_type.clone()),
        matchers: example
            .labels
            .iter()
            .map(|(name, value)| Matcher { name: name.clone(), op: MatchOp::Eq, value: value.clone() })
            .collect(),
    };
    tracing::debug!(tenant, refused = refused.len(), limit, "new series over the per-tenant limit");
    Some(IngestError::Refused {
        message: format!(
            "per-tenant series limit of {limit} active series reached (--max-series-per-tenant); {} new series \
             refused, e.g. `{selector}`; series already active are still stored. Drop labels with many values \
             (pod or request ids) or raise the limit",
            refused.len()
        ),
        detail: serde_json::json!({ "limit": "max-series-per-tenant", "refusedSeries": refused.len() }),
    })
}
