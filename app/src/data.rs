//! What pages show besides the flamegraph (the applications, a query's table and timeline, label
//! names and values, a comparison): loaded by the server while it renders the page, carried to
//! the browser inside the HTML so that hydration needs no request, and fetched by the browser
//! from `/api/page-data/{name}` when the URL changes.
//!
//! Each page defines the requests it makes beside its components, and the answers' types live in
//! [`kiln_model::page_data`]; the pages module's `answer` lists the requests for the server. This
//! module knows no page.
//!
//! Answers travel in [`kiln_model::page_data::encode`]'s encoding (postcard in base64) both
//! ways.

use std::fmt;
use std::str::FromStr;

use kiln_model::page_data::{DecodeError, decode, encode};
use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::location::QueryMap;
#[cfg(feature = "ssr")]
use crate::source::TenantSource;

/// One kind of data a page asks for.
pub trait DataRequest: Clone + PartialEq + Send + Sync + 'static {
    /// What the server answers.
    type Answer: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The endpoint's last path segment.
    const NAME: &'static str;
    /// The request as a query string (`query=…&from=…`).
    fn to_query(&self) -> String;
    /// The request read back from [`DataRequest::to_query`]'s output.
    fn from_query(query: &QueryMap) -> Self;
    /// Answers the request from stored profiles.
    #[cfg(feature = "ssr")]
    fn answer(&self, source: &TenantSource) -> Result<Self::Answer, String>;
}

/// Data as a page holds it: `None` until there is an answer (or while nothing is asked).
pub type PageData<T> = RwSignal<Option<Result<T, String>>>;

/// The answer to `request()`, kept current as the request changes.
///
/// The first answer is the server's, made while rendering; later ones are fetched. While a
/// new answer is on its way the previous one stays shown, and an answer that arrives after
/// the request changed again is dropped.
pub fn page_data<R: DataRequest>(request: impl Fn() -> Option<R> + Send + Sync + 'static) -> PageData<R::Answer> {
    let first = request();
    let seed = leptos::server::SharedValue::new_str({
        let first = first.clone();
        move || Seed(first.as_ref().and_then(answer_while_rendering))
    });
    let data = RwSignal::new(seed.into_inner().0);
    // The request the shown data answers: none yet when the browser built this page itself.
    let answered = StoredValue::new(if data.with_untracked(Option::is_some) { first } else { None });
    Effect::new(move |_| {
        let next = request();
        if answered.with_value(|a| *a == next) {
            return;
        }
        answered.set_value(next.clone());
        let Some(next) = next else {
            data.set(None);
            return;
        };
        leptos::task::spawn_local(async move {
            let url = format!("/api/page-data/{}?{}", R::NAME, next.to_query());
            let answer = crate::fetch::get_text(&url)
                .await
                .and_then(|text| decode::<R::Answer>(&text).map_err(|e| e.to_string()));
            if answered.try_with_value(|a| a.as_ref() == Some(&next)) == Some(true) {
                data.try_set(Some(answer));
            }
        });
    });
    data
}

#[cfg(feature = "ssr")]
fn answer_while_rendering<R: DataRequest>(request: &R) -> Option<Result<R::Answer, String>> {
    Some(crate::source::source().map_err(|e| e.to_string()).and_then(|source| request.answer(&source)))
}

/// In the browser the server's answer comes with the page, or the request is fetched.
#[cfg(not(feature = "ssr"))]
fn answer_while_rendering<R: DataRequest>(_: &R) -> Option<Result<R::Answer, String>> {
    None
}

/// An answer as the page carries it: Leptos moves hydration data as strings, and rewrites
/// each `<` in them as the six characters `\u003c`, which only a JSON decoder turns back. The
/// encoding is base64, which has no `<` (nor `%`, `"` or `\`), so the text goes as it is.
struct Seed<T>(Option<Result<T, String>>);

impl<T: Serialize> fmt::Display for Seed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(&self.0))
    }
}

impl<T: DeserializeOwned> FromStr for Seed<T> {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode::<Option<Result<T, String>>>(text).map(Seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_carry_no_angle_bracket_and_read_back() {
        let names = vec!["<img src=x onerror=alert(1)>".to_string(), "100%3C".into(), "%".into(), String::new()];
        for seed in [Seed(Some(Ok(names.clone()))), Seed(Some(Err("<b>%25</b>".into()))), Seed(None)] {
            let carried = seed.to_string();
            assert!(!carried.contains('<'), "{carried}");
            assert_eq!(carried.parse::<Seed<Vec<String>>>().unwrap().0, seed.0);
        }
    }
}
