//! The routed pages, and the registry of the data they ask for.

pub mod diff;
pub mod explore;
pub mod home;
pub mod open;

/// Answers `GET /api/page-data/{name}?{query}` with the encoded answer, or `None` for a
/// name no page asks for. A page that adds a [`DataRequest`] adds it here.
///
/// [`DataRequest`]: crate::data::DataRequest
#[cfg(feature = "ssr")]
pub fn answer(name: &str, query: &str, source: &crate::source::TenantSource) -> Option<Result<String, String>> {
    use crate::data::DataRequest;
    use crate::location::QueryMap;
    use crate::source::TenantSource;
    fn encoded<R: DataRequest>(query: &str, source: &TenantSource) -> Result<String, String> {
        R::from_query(&QueryMap::parse(query)).answer(source).map(|answer| kiln_model::page_data::encode(&answer))
    }
    Some(match name {
        home::HomeRequest::NAME => encoded::<home::HomeRequest>(query, source),
        explore::SummaryRequest::NAME => encoded::<explore::SummaryRequest>(query, source),
        explore::LabelNamesRequest::NAME => encoded::<explore::LabelNamesRequest>(query, source),
        explore::LabelValuesRequest::NAME => encoded::<explore::LabelValuesRequest>(query, source),
        diff::DiffRequest::NAME => encoded::<diff::DiffRequest>(query, source),
        _ => return None,
    })
}
