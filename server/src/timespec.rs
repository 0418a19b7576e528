//! Times in query strings: Unix seconds, milliseconds, microseconds or nanoseconds (told apart
//! by magnitude), `now`, and `now-15m` style offsets; and the one duration syntax
//! ([`parse_duration`]) that those offsets and every duration flag of `kiln` share.
//!
//! Every time comes from the network, so every step is checked: a parse never wraps, and what
//! it returns is bounded before anyone does arithmetic with it. Queries are clamped to
//! [`QUERY_HORIZON_SECS`] around now; uploads are refused outside an [`IngestWindow`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far from now a query range may reach, either way: 100 years. Wider ends are clamped,
/// so that range arithmetic (steps, spans, points) always fits in an `i64`.
pub const QUERY_HORIZON_SECS: i64 = 100 * 31_557_600;

/// The current Unix time in seconds.
pub fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Parses `value` to Unix seconds, relative forms against `now`.
pub fn parse(value: &str, now: i64) -> Result<i64, String> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, offset) = match rest.as_bytes()[0] {
            b'-' => (-1, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ => return Err(format!("`{value}` is not a time: expected `now-15m` style")),
        };
        let offset = parse_duration(offset)
            .ok()
            .and_then(|offset| i64::try_from(offset.as_secs()).ok())
            .ok_or_else(|| format!("`{value}` has a bad duration: use `now-15m` style (s, m, h, d, w or y)"))?;
        return now
            .checked_add(sign * offset)
            .ok_or_else(|| format!("`{value}` is out of range: the offset is larger than any time"));
    }
    let number: i64 =
        value.parse().map_err(|_| format!("`{value}` is not a time: use Unix seconds/ms/µs/ns or `now-1h`"))?;
    // Seconds until the year 5138, then ms, µs, ns.
    Ok(match number.unsigned_abs() {
        n if n < 100_000_000_000 => number,
        n if n < 100_000_000_000_000 => number / 1_000,
        n if n < 100_000_000_000_000_000 => number / 1_000_000,
        _ => number / 1_000_000_000,
    })
}

/// A query range `[from, until)` in Unix seconds. Absent ends are open (`i64::MIN`,
/// `i64::MAX`: the query narrows them to the data); given ends are clamped to
/// [`QUERY_HORIZON_SECS`] around `now`. Relative forms in `until` count from the end of the
/// current second, so `until=now` includes an upload stamped this very second.
pub fn parse_range(from: Option<&str>, until: Option<&str>, now: i64) -> Result<(i64, i64), String> {
    let from = match from.filter(|s| !s.is_empty()) {
        Some(text) => clamp_to_horizon(parse(text, now).map_err(|e| format!("`from`: {e}"))?, now),
        None => i64::MIN,
    };
    let until = match until.filter(|s| !s.is_empty()) {
        Some(text) => clamp_to_horizon(parse(text, now + 1).map_err(|e| format!("`until`: {e}"))?, now),
        None => i64::MAX,
    };
    Ok((from, until))
}

/// `time` moved into `now ± 100 years`.
pub fn clamp_to_horizon(time: i64, now: i64) -> i64 {
    time.clamp(now.saturating_sub(QUERY_HORIZON_SECS), now.saturating_add(QUERY_HORIZON_SECS))
}

/// The times an upload may carry: none before `oldest`, none more than `max_future_secs`
/// ahead of the server's clock. A stamp outside is a broken clock or an attack, and stored
/// it would stretch every open-ended query over millennia.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestWindow {
    /// Unix seconds; 2000-01-01 by default.
    pub oldest: i64,
    /// Seconds past now.
    pub max_future_secs: i64,
}

impl Default for IngestWindow {
    fn default() -> Self {
        IngestWindow { oldest: 946_684_800, max_future_secs: 86_400 }
    }
}

impl IngestWindow {
    /// `Ok` when `time` (Unix seconds) is inside the window at `now`; otherwise why not.
    pub fn check(&self, time: i64, now: i64) -> Result<(), String> {
        if time < self.oldest {
            return Err(format!("{time} is before the oldest accepted time ({}, see --ingest-oldest)", self.oldest));
        }
        let newest = now.saturating_add(self.max_future_secs);
        if time > newest {
            return Err(format!(
                "{time} is more than {} s ahead of the server's clock ({now}, see --ingest-max-future)",
                self.max_future_secs
            ));
        }
        Ok(())
    }
}

/// A duration: a whole number and a unit, or a plain number of seconds (`120`). The units:
///
/// | unit | means |
/// |---|---|
/// | `ms` | milliseconds |
/// | `s` | seconds (the default) |
/// | `m` | minutes |
/// | `h` | hours |
/// | `d` | days of 86 400 s |
/// | `w` | weeks of 7 days |
/// | `y` | years of 365 days |
///
/// One syntax for every duration flag (`--retention 30d`, `--retry-backoff 250ms`) and for
/// the offsets of relative times (`now-15m`, where milliseconds round down to whole seconds).
/// No sign, fraction or space inside; sizes that overflow are errors, never wraps.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("`{text}` is not a duration like 120s, 2m, 250ms or 120"))?;
    let seconds = |factor: u64| {
        number.checked_mul(factor).map(Duration::from_secs).ok_or_else(|| format!("`{text}` is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3_600),
        "d" => seconds(86_400),
        "w" => seconds(7 * 86_400),
        "y" => seconds(365 * 86_400),
        other => Err(format!("unknown unit `{other}` in `{text}`: use ms, s, m, h, d, w or y")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_the_current_second() {
        assert_eq!(parse_range(Some("now-1h"), Some("now"), 100_000), Ok((96_400, 100_001)));
        assert_eq!(parse_range(None, None, 5), Ok((i64::MIN, i64::MAX)));
        assert_eq!(parse_range(Some("10"), Some("20"), 5), Ok((10, 20)));
        assert!(parse_range(Some("x"), None, 5).unwrap_err().contains("`from`"));
    }

    #[test]
    fn offsets_past_any_time_are_errors_not_wraps() {
        for bad in [
            "now+9223372036854775807",
            "now-9223372036854775808",
            "now-9999999999999999999999",
            "now-300000000000000000y",
        ] {
            assert!(parse(bad, 1_700_000_000).is_err(), "{bad}");
        }
        assert_eq!(parse("now-100y", 1_700_000_000), Ok(1_700_000_000 - 3_153_600_000));
        // Fits an `i64`, so it parses; a query range clamps it.
        assert_eq!(parse("now-9223372036854775307", 1_700_000_000), Ok(1_700_000_000 - 9_223_372_036_854_775_307));
    }

    #[test]
    fn query_ranges_are_clamped_to_a_century() {
        let now = 1_700_000_000;
        let (from, until) = parse_range(Some("-9223372036854775807"), Some("9223372036854775807"), now).unwrap();
        assert_eq!((from, until), (now - QUERY_HORIZON_SECS, now + QUERY_HORIZON_SECS));
        let (from, _) = parse_range(Some("now-9223372036854775307"), None, now).unwrap();
        assert_eq!(from, now - QUERY_HORIZON_SECS);
    }

    #[test]
    fn the_ingest_window_refuses_broken_clocks() {
        let window = IngestWindow::default();
        let now = 1_700_000_000;
        assert!(window.check(now, now).is_ok());
        assert!(window.check(now + 86_400, now).is_ok());
        assert!(window.check(now + 86_401, now).unwrap_err().contains("ahead"));
        assert!(window.check(946_684_799, now).unwrap_err().contains("oldest"));
        assert!(window.check(i64::MIN, now).is_err());
        assert!(window.check(i64::MAX, i64::MAX).is_ok(), "saturates instead of wrapping");
    }

    #[test]
    fn durations_take_every_unit_or_plain_seconds() {
        let secs = Duration::from_secs;
        for (input, want) in [
            ("120", secs(120)),
            ("120s", secs(120)),
            (" 2m ", secs(120)),
            ("250ms", Duration::from_millis(250)),
            ("1h", secs(3_600)),
            ("30d", secs(30 * 86_400)),
            ("2w", secs(14 * 86_400)),
            ("1y", secs(365 * 86_400)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
        for bad in ["", "s", "-3s", "1.5h", "2 weeks", "5q", "3M", "18446744073709551616", "18446744073709551615y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("5q").unwrap_err().contains("use ms, s, m, h, d, w or y"));
    }

    #[test]
    fn relative_times_use_the_same_units() {
        let now = 1_700_000_000;
        assert_eq!(parse("now-2w", now), Ok(now - 14 * 86_400));
        assert_eq!(parse("now+1y", now), Ok(now + 365 * 86_400));
        assert_eq!(parse("now-1500ms", now), Ok(now - 1), "milliseconds round down to seconds");
    }

    #[test]
    fn parses_every_form() {
        let now = 1_700_000_000;
        for (input, want) in [
            ("now", now),
            ("now-10s", now - 10),
            ("now-15m", now - 900),
            ("now-7d", now - 604_800),
            ("1700000000", 1_700_000_000),
            ("1700000000123", 1_700_000_000),
            ("1700000000123456", 1_700_000_000),
            ("1700000000123456789", 1_700_000_000),
        ] {
            assert_eq!(parse(input, now), Ok(want), "{input}");
        }
        for bad in ["", "yesterday", "now-", "now-5q", "now*2"] {
            assert!(parse(bad, now).is_err(), "{bad}");
        }
    }
}
