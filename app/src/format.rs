//! Small text helpers shared by the pages.

pub use kiln_model::query_string::{decode as decode_query_value, encode as encode_query_value};

/// A sample count with thousands separators: `1234567` → `1,234,567`.
pub fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A value in its unit, as a person reads it: `1,234 samples`, `1.50 s`, `2.0 MiB`.
pub fn format_value(value: u64, units: &str) -> String {
    match units {
        // Lock waits (pprof's `delay`, JFR's monitor and park durations) are times too.
        "nanoseconds" | "lock_nanoseconds" => format_duration_ns(value),
        "bytes" => kiln_model::units::format_bytes(value),
        "" => group_digits(value),
        unit => format!("{} {unit}", group_digits(value)),
    }
}

fn format_duration_ns(ns: u64) -> String {
    match ns as f64 {
        n if n >= 3_600e9 => format!("{:.2} h", n / 3_600e9),
        n if n >= 60e9 => format!("{:.2} min", n / 60e9),
        n if n >= 1e9 => format!("{:.2} s", n / 1e9),
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        _ => format!("{ns} ns"),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC` (civil-from-days, no time zone database).
pub fn format_unix_time(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

/// `part` as a percentage of `whole`, one decimal.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(group_digits(123), "123");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(1, 0), "0%");
        assert_eq!(format_value(1234, "samples"), "1,234 samples");
        assert_eq!(format_value(1_500_000_000, "nanoseconds"), "1.50 s");
        assert_eq!(format_value(2_500_000, "lock_nanoseconds"), "2.50 ms");
        assert_eq!(format_value(3 * 1024 * 1024, "bytes"), "3.0 MiB");
        assert_eq!(format_value(12, "bytes"), "12 B");
        assert_eq!(format_unix_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_unix_time(1_764_079_200), "2025-11-25 14:00 UTC");
        assert_eq!(format_unix_time(951_782_400), "2000-02-29 00:00 UTC");
    }
}
