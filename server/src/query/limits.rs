//! What one query may cost: how many series it merges, how many stored bytes it reads, and
//! how many nodes a JSON answer carries. Beyond a limit the query is refused (422) with a
//! message that says how to narrow it, before anything is fetched.

use crate::storage::ReadPlan;

/// Limits on one query, set by `kiln serve` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Distinct series one query may merge (`--max-query-series`).
    pub max_series: usize,
    /// Compressed block bytes one query may fetch (`--max-query-bytes`): it grows with series
    /// × time range, so it is the bound on the range a query may span.
    pub max_bytes: u64,
    /// Nodes of a JSON answer (flamebearer, speedscope) when the request names no `maxNodes`
    /// (`--max-nodes-default`); the rest is folded into `other` nodes, totals unchanged.
    pub default_max_nodes: usize,
    /// The largest `maxNodes` a request may ask for (`--max-nodes-max`).
    pub max_nodes: usize,
}

impl Default for QueryLimits {
    /// Pyroscope's flamegraph node defaults (8192 by default, at most 2^20 on request); one
    /// tenant's worth of series (`--max-series-per-tenant`'s default); 1 GiB of compressed
    /// chunks, days of a busy application's profiles.
    fn default() -> Self {
        QueryLimits { max_series: 10_000, max_bytes: 1 << 30, default_max_nodes: 8192, max_nodes: 1 << 20 }
    }
}

/// A query over a limit; the message says which limit and how to stay under it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TooLarge(pub String);

/// Marks every [`TooLarge`] message, so that answers carried as text (the pages' data) can be
/// told apart from malformed requests: [`is_too_large`].
const TOO_LARGE: &str = "query too large: ";

/// True when `message` (possibly prefixed, e.g. `left: …`) comes from a [`TooLarge`].
pub fn is_too_large(message: &str) -> bool {
    message.contains(TOO_LARGE)
}

impl QueryLimits {
    /// Refuses a query whose reads, counted before fetching, pass a limit.
    pub fn check(&self, plan: &ReadPlan) -> Result<(), TooLarge> {
        if plan.series > self.max_series {
            return Err(TooLarge(format!(
                "{TOO_LARGE}it selects {} series, more than the {} allowed (--max-query-series); narrow it with \
                 label matchers (e.g. `app.cpu{{env=\"prod\",pod=\"…\"}}`) or a shorter time range",
                plan.series, self.max_series
            )));
        }
        if plan.chunk_bytes > self.max_bytes {
            return Err(TooLarge(format!(
                "{TOO_LARGE}it would read {} of stored profiles, more than the {} allowed (--max-query-bytes); use \
                 a shorter time range (`from`/`until`) or more label matchers",
                mib(plan.chunk_bytes),
                mib(self.max_bytes)
            )));
        }
        Ok(())
    }

    /// The node budget of a JSON answer: the request's `maxNodes` (at most `max_nodes`), else
    /// the default.
    pub fn json_nodes(&self, asked: Option<usize>) -> Result<usize, TooLarge> {
        match asked {
            None => Ok(self.default_max_nodes),
            Some(n) if n <= self.max_nodes => Ok(n),
            Some(n) => Err(TooLarge(format!(
                "{TOO_LARGE}`maxNodes` {n} is more than the {} allowed (--max-nodes-max); ask for fewer nodes",
                self.max_nodes
            ))),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_their_flag_and_how_to_narrow() {
        let limits = QueryLimits { max_series: 2, max_bytes: 1000, default_max_nodes: 10, max_nodes: 100 };
        assert_eq!(limits.check(&ReadPlan { series: 2, chunk_bytes: 1000 }), Ok(()));
        let series = limits.check(&ReadPlan { series: 3, chunk_bytes: 0 }).unwrap_err();
        assert!(series.0.contains("--max-query-series") && series.0.contains("label matchers"), "{series}");
        let bytes = limits.check(&ReadPlan { series: 1, chunk_bytes: 1001 }).unwrap_err();
        assert!(bytes.0.contains("--max-query-bytes") && bytes.0.contains("shorter time range"), "{bytes}");
        assert!(is_too_large(&format!("left: {bytes}")) && !is_too_large("query `x{`: bad"));
        assert_eq!(limits.json_nodes(None), Ok(10));
        assert_eq!(limits.json_nodes(Some(100)), Ok(100));
        assert!(limits.json_nodes(Some(101)).unwrap_err().0.contains("--max-nodes-max"));
    }
}
