//! Hostile input against the real `kiln` binary, one module per class of attack. Every case
//! asserts the answer (a 4xx, or a 503 with `Retry-After`, with a JSON error) and that the same
//! process is still alive afterwards, serving a normal query with earlier uploads intact.
//!
//! The slow cases live here, in one test binary, so that `make test` builds and starts it once.

#[path = "../support/mod.rs"]
mod support;

mod decode;
mod outage;
mod query_limits;
mod runtime;
mod time;

use std::net::SocketAddr;

use support::{Kiln, folded_values, http};

/// The upload every case makes before attacking: it must survive the attack.
pub const BASELINE_APP: &str = "baseline.cpu";
pub const BASELINE_BODY: &str = "main;work;leaf 7\nmain;idle 3\n";

/// Starts Kiln in `dir` and stores the baseline upload.
pub fn start_with_baseline(dir: &std::path::Path, flags: &[&str]) -> Kiln {
    let kiln = Kiln::start(dir, flags);
    let (status, body) = http(kiln.addr, "POST", &format!("/ingest?name={BASELINE_APP}"), BASELINE_BODY.as_bytes())
        .expect("baseline upload");
    assert_eq!(status, 200, "{body}");
    kiln
}

/// The process answers `/healthz` and a normal query, and the baseline upload is intact.
pub fn assert_alive(addr: SocketAddr) {
    let (status, body) = http(addr, "GET", "/healthz", b"").expect("kiln still accepts connections");
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        http(addr, "GET", &format!("/render?query={BASELINE_APP}&format=folded"), b"").expect("query answers");
    assert_eq!(status, 200, "{body}");
    let want = folded_values(BASELINE_BODY);
    assert_eq!(folded_values(&body), want, "the baseline upload is intact");
}

/// A refusal: `status` as expected and a JSON body with an `error` message.
pub fn assert_refused(answer: std::io::Result<(u16, String)>, status: u16, context: &str) {
    let (got, body) = answer.unwrap_or_else(|e| panic!("{context}: no answer: {e}"));
    assert_eq!(got, status, "{context}: {body}");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{context}: not JSON ({e}): {body}"));
    assert!(json["error"].as_str().is_some_and(|m| !m.is_empty()), "{context}: no error message: {body}");
}
