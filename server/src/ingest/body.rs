//! Request bodies: gzip (announced or not: the Node agent sends gzip with no header) or
//! identity, decompressed under a size limit.

use std::io::Read;

use axum::http::{HeaderMap, header};
use flate2::read::MultiGzDecoder;

use super::IngestLimits;
use crate::api::AppError;

/// The first bytes of every gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The body's bytes with any gzip layer removed.
pub fn decode(body: &[u8], headers: &HeaderMap, limits: &IngestLimits) -> Result<Vec<u8>, AppError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity").trim();
    match encoding.to_ascii_lowercase().as_str() {
        "" | "identity" | "gzip" | "x-gzip" => {}
        other => {
            return Err(AppError::UnsupportedMediaType(format!(
                "Content-Encoding `{other}` is not supported; send gzip or identity"
            )));
        }
    }
    if body.starts_with(&GZIP_MAGIC) { gunzip(body, limits.max_decompressed_bytes) } else { Ok(body.to_vec()) }
}

/// Decompresses gzip, refusing output beyond `max` bytes.
pub fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, AppError> {
    let mut out = Vec::new();
    let mut reader = MultiGzDecoder::new(body).take(max as u64 + 1);
    reader.read_to_end(&mut out).map_err(|e| AppError::bad_request(format!("body is not valid gzip: {e}")))?;
    if out.len() > max {
        return Err(AppError::TooLarge(format!("decompressed body is larger than {max} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_is_detected_without_a_header() {
        let limits = IngestLimits::default();
        assert_eq!(decode(&gz(b"a;b 1"), &HeaderMap::new(), &limits).unwrap(), b"a;b 1");
        assert_eq!(decode(b"a;b 1", &HeaderMap::new(), &limits).unwrap(), b"a;b 1");
    }

    #[test]
    fn bombs_truncation_and_unknown_encodings_are_refused() {
        let limits = IngestLimits { max_decompressed_bytes: 1000, ..IngestLimits::default() };
        let bomb = gz(&vec![b'a'; 100_000]);
        assert!(matches!(decode(&bomb, &HeaderMap::new(), &limits), Err(AppError::TooLarge(_))));
        let whole = gz(b"a;b 1\n");
        assert!(matches!(
            decode(&whole[..whole.len() - 6], &HeaderMap::new(), &limits),
            Err(AppError::BadRequest { .. })
        ));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(matches!(decode(b"x", &headers, &limits), Err(AppError::UnsupportedMediaType(_))));
    }
}
