//! Query-string values, encoded and decoded the same way by the browser app (links, fetches,
//! the URL it reads back) and by `kiln upload`, through the `percent-encoding` crate.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is escaped: a value never breaks out of its
/// parameter (`&`, `=`, `#`) and survives being read as a form (`+`).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes one query-string value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, VALUE).to_string()
}

/// Decodes one query-string key or value as `URLSearchParams` does: `+` is a space, `%XX` a
/// byte, a `%` without two hex digits stays as written, and bytes that are not UTF-8 become
/// U+FFFD.
pub fn decode(value: &str) -> String {
    // `+` first: an escaped plus (`%2B`) must stay a plus.
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_what_encoding_wrote() {
        for value in ["app.cpu{env=\"a b\"}", "100%", "naïve;frame+1", "", "a&b=c#d"] {
            assert_eq!(decode(&encode(value)), value);
        }
        assert_eq!(encode("app.cpu{env=prod}"), "app.cpu%7Benv%3Dprod%7D");
        assert_eq!(encode("a-b_c.d~e f"), "a-b_c.d~e%20f");
        assert_eq!(decode("a+b%2Bc"), "a b+c");
        assert_eq!(decode("50%"), "50%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%FF"), "\u{FFFD}");
    }
}
