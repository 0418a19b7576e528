//! `multipart/form-data` as the Go agent sends it: a few named parts, whole in memory.
//!
//! Hand-written because the body is already buffered (and gunzipped) by the time the format is
//! known, and only part names and contents matter; no streaming parser is needed.

use super::IngestError;

/// One part: its form field name and its bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// `name="…"` of its `Content-Disposition`.
    pub name: String,
    /// The content, as sent.
    pub data: &'a [u8],
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(message: &str) -> IngestError {
    IngestError::malformed(format!("multipart body: {message}"))
}

/// Splits `body` into its parts.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, IngestError> {
    if boundary.is_empty() {
        return Err(bad("empty boundary"));
    }
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = format!("\r\n--{boundary}").into_bytes();
    let start = find(body, &delimiter).ok_or_else(|| bad("no boundary found"))?;
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding may follow a delimiter before its line break.
        let line_end = find(rest, b"\r\n").ok_or_else(|| bad("truncated after a boundary"))?;
        rest = &rest[line_end + 2..];
        let headers_end = find(rest, b"\r\n\r\n").ok_or_else(|| bad("part headers never end"))?;
        let headers = String::from_utf8_lossy(&rest[..headers_end]);
        rest = &rest[headers_end + 4..];
        let end = find(rest, &next_delimiter).ok_or_else(|| bad("a part never ends (truncated body?)"))?;
        parts.push(Part { name: part_name(&headers).ok_or_else(|| bad("a part has no name"))?, data: &rest[..end] });
        rest = &rest[end + next_delimiter.len()..];
    }
}

fn part_name(headers: &str) -> Option<String> {
    let disposition = headers
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition")))?
        .1;
    disposition.split(';').find_map(|p| {
        let (key, value) = p.split_once('=')?;
        (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_split_by_name() {
        assert_eq!(boundary("multipart/form-data; boundary=\"xyz\"").as_deref(), Some("xyz"));
        assert_eq!(boundary("application/octet-stream"), None);
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n\
Content-Type: application/octet-stream\r\n\r\nab\r\n--c\r\n--xyz\r\n\
Content-Disposition: form-data; name=\"sample_type_config\"\r\n\r\n{}\r\n--xyz--\r\n";
        let parts = parse(body, "xyz").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_str(), parts[0].data), ("profile", &b"ab\r\n--c"[..]));
        assert_eq!((parts[1].name.as_str(), parts[1].data), ("sample_type_config", &b"{}"[..]));
        assert!(parse(&body[..60], "xyz").is_err());
        assert!(parse(b"no parts here", "xyz").is_err());
    }
}
