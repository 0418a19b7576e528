//! `multipart/form-data` as the Go agent sends it: a few named parts, whole in memory.
//!
//! Parsed by `multer`. The body is already buffered, gunzipped and bounded by
//! `--max-decompressed-bytes` by the time its format is known, so it is handed over as one
//! chunk and no part can be larger than it; only part names and contents matter.

use bytes::Bytes;

use super::IngestError;

/// One part: its form field name and its bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    /// `name="…"` of its `Content-Disposition`.
    pub name: String,
    /// The content, as sent.
    pub data: Bytes,
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    multer::parse_boundary(content_type).ok()
}

fn bad(message: impl std::fmt::Display) -> IngestError {
    IngestError::malformed(format!("multipart body: {message}"))
}

/// Splits `body` into its parts.
pub async fn parse(body: Bytes, boundary: &str) -> Result<Vec<Part>, IngestError> {
    if boundary.is_empty() {
        return Err(bad("empty boundary"));
    }
    let whole = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(whole, boundary);
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().map(str::to_string).ok_or_else(|| bad("a part has no name"))?;
        let data = field.bytes().await.map_err(bad)?;
        parts.push(Part { name, data });
    }
    if parts.is_empty() {
        return Err(bad("no parts found"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse_now(body: &[u8], boundary: &str) -> Result<Vec<Part>, IngestError> {
        parse(Bytes::copy_from_slice(body), boundary).await
    }

    #[tokio::test]
    async fn parts_are_split_by_name() {
        assert_eq!(boundary("multipart/form-data; boundary=\"xyz\"").as_deref(), Some("xyz"));
        assert_eq!(boundary("application/octet-stream"), None);
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n\
Content-Type: application/octet-stream\r\n\r\nab\r\n--c\r\n--xyz\r\n\
Content-Disposition: form-data; name=\"sample_type_config\"\r\n\r\n{}\r\n--xyz--\r\n";
        let parts = parse_now(body, "xyz").await.unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_str(), &parts[0].data[..]), ("profile", &b"ab\r\n--c"[..]));
        assert_eq!((parts[1].name.as_str(), &parts[1].data[..]), ("sample_type_config", &b"{}"[..]));
        assert!(parse_now(&body[..60], "xyz").await.is_err());
        assert!(parse_now(b"no parts here", "xyz").await.is_err());
        let unnamed = b"--xyz\r\nContent-Disposition: form-data\r\n\r\nab\r\n--xyz--\r\n";
        assert!(parse_now(unnamed, "xyz").await.is_err());
    }
}
