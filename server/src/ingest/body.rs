//! Request bodies: gzip (announced or not: the Node agent sends gzip with no header) or
//! identity, decompressed under a size limit that holds across the whole request (a push of
//! many gzipped profiles shares one), and granting the decode budget its bytes.

use std::io::Read;

use axum::http::{HeaderMap, header};
use flate2::read::MultiGzDecoder;

use super::{IngestError, RequestBudget};

/// The first bytes of every gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The body's bytes with any gzip layer removed; its size is granted to `budget`.
pub fn decode(body: &[u8], headers: &HeaderMap, budget: &mut RequestBudget) -> Result<Vec<u8>, IngestError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity").trim();
    match encoding.to_ascii_lowercase().as_str() {
        "" | "identity" | "gzip" | "x-gzip" => {}
        other => {
            return Err(IngestError::UnsupportedEncoding(format!(
                "Content-Encoding `{other}` is not supported; send gzip or identity"
            )));
        }
    }
    if body.starts_with(&GZIP_MAGIC) {
        gunzip(body, budget)
    } else {
        budget.decode.grant(body.len() as u64);
        Ok(body.to_vec())
    }
}

/// Decompresses gzip within what is left of the request's decompressed bytes (413 beyond),
/// and grants the output's size to the decode budget.
pub fn gunzip(body: &[u8], budget: &mut RequestBudget) -> Result<Vec<u8>, IngestError> {
    let left = budget.decompressed_left;
    let mut out = Vec::new();
    let mut reader = MultiGzDecoder::new(body).take(left as u64 + 1);
    reader.read_to_end(&mut out).map_err(|e| IngestError::malformed(format!("body is not valid gzip: {e}")))?;
    if out.len() > left {
        budget.decompressed_left = 0;
        return Err(IngestError::TooLarge(format!(
            "decompressed body is larger than {} bytes (--max-decompressed-bytes, KILN_MAX_DECOMPRESSED_BYTES{})",
            budget.max_decompressed,
            if left < budget.max_decompressed { ", counting every gzipped profile of the request" } else { "" }
        )));
    }
    budget.decompressed_left -= out.len();
    if let Some(hold) = &budget.hold {
        let total = budget.max_decompressed - budget.decompressed_left;
        if !hold.cover_decompressed(total as u64) {
            return Err(IngestError::Busy(format!(
                "the server is busy decoding other uploads: this request's gzipped profiles decompress to {total} \
                 bytes, over what the in-flight budget has left (--max-inflight-bytes, KILN_MAX_INFLIGHT_BYTES)"
            )));
        }
    }
    budget.decode.grant(out.len() as u64);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::IngestLimits;
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
        assert_eq!(decode(&gz(b"a;b 1"), &HeaderMap::new(), &mut limits.budget()).unwrap(), b"a;b 1");
        assert_eq!(decode(b"a;b 1", &HeaderMap::new(), &mut limits.budget()).unwrap(), b"a;b 1");
    }

    #[test]
    fn bombs_truncation_and_unknown_encodings_are_refused() {
        let limits = IngestLimits { max_decompressed_bytes: 1000, ..IngestLimits::default() };
        let bomb = gz(&vec![b'a'; 100_000]);
        assert!(matches!(decode(&bomb, &HeaderMap::new(), &mut limits.budget()), Err(IngestError::TooLarge(_))));
        let whole = gz(b"a;b 1\n");
        assert!(matches!(
            decode(&whole[..whole.len() - 6], &HeaderMap::new(), &mut limits.budget()),
            Err(IngestError::Malformed { .. })
        ));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(matches!(decode(b"x", &headers, &mut limits.budget()), Err(IngestError::UnsupportedEncoding(_))));
    }

    #[test]
    fn the_decompressed_limit_holds_across_a_request() {
        let limits = IngestLimits { max_decompressed_bytes: 1000, ..IngestLimits::default() };
        let mut budget = limits.budget();
        let part = gz(&[b'a'; 600]);
        assert_eq!(gunzip(&part, &mut budget).unwrap().len(), 600);
        assert!(matches!(gunzip(&part, &mut budget), Err(IngestError::TooLarge(_))));
    }
}
