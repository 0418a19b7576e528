//! Times in query strings: Unix seconds, milliseconds, microseconds or nanoseconds (told apart
//! by magnitude), `now`, and `now-15m` style offsets.

use std::time::{SystemTime, UNIX_EPOCH};

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
        return Ok(now + sign * parse_duration(offset).ok_or_else(|| format!("`{value}` has a bad duration"))?);
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

/// A query range `[from, until)` in Unix seconds. Absent ends are open. Relative forms in
/// `until` count from the end of the current second, so `until=now` includes an upload
/// stamped this very second.
pub fn parse_range(from: Option<&str>, until: Option<&str>, now: i64) -> Result<(i64, i64), String> {
    let from = match from.filter(|s| !s.is_empty()) {
        Some(text) => parse(text, now).map_err(|e| format!("`from`: {e}"))?,
        None => i64::MIN,
    };
    let until = match until.filter(|s| !s.is_empty()) {
        Some(text) => parse(text, now + 1),
        None => Ok(i64::MAX),
    }
    .map_err(|e| format!("`until`: {e}"))?;
    Ok((from, until))
}

/// `10s`, `15m`, `1h`, `7d`, `2w`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "y" => 31_536_000,
        _ => return None,
    };
    n.checked_mul(scale)
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
