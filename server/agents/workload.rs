//! The CPU work both agent binaries profile: two named functions the live-agent test looks for
//! in Kiln's flamegraph. Each binary includes this file as its `workload` module.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Naive recursion: deep, repetitive stacks under one name.
#[inline(never)]
fn burn_fibonacci(n: u64) -> u64 {
    if n < 2 { n } else { burn_fibonacci(black_box(n - 1)) + burn_fibonacci(black_box(n - 2)) }
}

/// Trial division: a flat loop, a second name with a different shape.
#[inline(never)]
fn burn_primes(limit: u64) -> u64 {
    let mut count = 0;
    for candidate in 2..limit {
        if (2..candidate).take_while(|d| d * d <= candidate).all(|d| candidate % d != 0) {
            count += 1;
        }
    }
    count
}

/// Alternates between the two until `seconds` have passed, in slices short enough that
/// the deadline is met within a few milliseconds.
pub fn burn(seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut sink = 0u64;
    while Instant::now() < deadline {
        sink = sink.wrapping_add(burn_fibonacci(black_box(24)));
        sink = sink.wrapping_add(burn_primes(black_box(20_000)));
    }
    black_box(sink);
}

/// `<server url> <app name> [seconds]`, plus whatever flags the caller has already removed.
pub struct Args {
    pub url: String,
    pub app: String,
    pub seconds: u64,
}

pub fn args(rest: Vec<String>) -> Args {
    let usage = "usage: <server url> <app name> [seconds (default 25)]";
    let mut rest = rest.into_iter();
    let url = rest.next().unwrap_or_else(|| panic!("{usage}"));
    let app = rest.next().unwrap_or_else(|| panic!("{usage}"));
    let seconds = rest.next().map_or(25, |s| s.parse().unwrap_or_else(|_| panic!("{usage}")));
    Args { url, app, seconds }
}
