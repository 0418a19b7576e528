//! Request bodies: gzip (announced or not: the Node agent sends gzip with no header) or
//! identity, decompressed under a size limit that holds across the whole request (a push of
//! many gzipped profiles shares one), and granting the decode budget its bytes.

use axum::http::{HeaderMap, header};

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
    let out = inflate_members(body, left).map_err(|e| match e {
        GzipError::Invalid(what) => IngestError::malformed(format!("body is not valid gzip: {what}")),
        GzipError::TooLarge => {
            budget.decompressed_left = 0;
            IngestError::TooLarge(format!(
                "decompressed body is larger than {} bytes (--max-decompressed-bytes, KILN_MAX_DECOMPRESSED_BYTES{})",
                budget.max_decompressed,
                if left < budget.max_decompressed { ", counting every gzipped profile of the request" } else { "" }
            ))
        }
    })?;
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

/// Text as UTF-8: a UTF-8 byte-order mark is dropped, and UTF-16 with its mark (what Windows
/// PowerShell's `>` and some Windows profilers write) is re-encoded, so that every text format
/// reads the same file however it was saved. Bytes without a mark pass through untouched.
pub fn utf8_text(body: Vec<u8>) -> Result<Vec<u8>, IngestError> {
    let big_endian = match body.get(..2) {
        _ if body.starts_with(&[0xef, 0xbb, 0xbf]) => return Ok(body[3..].to_vec()),
        Some([0xff, 0xfe]) => false,
        Some([0xfe, 0xff]) => true,
        _ => return Ok(body),
    };
    if !body.len().is_multiple_of(2) {
        return Err(IngestError::malformed("UTF-16 text with an odd number of bytes (truncated?)"));
    }
    let units = body[2..].chunks_exact(2).map(|pair| {
        let pair = [pair[0], pair[1]];
        if big_endian { u16::from_be_bytes(pair) } else { u16::from_le_bytes(pair) }
    });
    let mut text = String::with_capacity(body.len() / 2 * 3);
    for unit in char::decode_utf16(units) {
        text.push(unit.unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    Ok(text.into_bytes())
}

enum GzipError {
    Invalid(&'static str),
    TooLarge,
}

/// Every gzip member of `body` (RFC 1952; agents send one, `cat`ed files several), inflated
/// into one buffer of at most `limit` bytes.
///
/// Written over the raw inflater rather than a `Read` adapter because this runs for every
/// upload: the output is reserved once from the member's recorded size (no regrowing, no
/// zero-filling of each read buffer), the input is not copied through a buffered reader, and
/// the CRC is checked with `crc32fast`'s carry-less multiply instead of the inflater's table
/// code: together a third of the time gunzip took per upload.
fn inflate_members(body: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    let mut out: Vec<u8> = Vec::new();
    let mut rest = body;
    loop {
        let deflate = rest.get(member_header_len(rest)?..).ok_or(GzipError::Invalid("truncated header"))?;
        let start = out.len();
        // The trailer's size (mod 2^32) is a hint from the sender: trusted only up to the limit.
        let hint =
            deflate.len().checked_sub(4).map(|at| u32::from_le_bytes(deflate[at..].try_into().unwrap_or_default()));
        let want = (hint.unwrap_or(0) as usize).min(limit.saturating_add(1).saturating_sub(start));
        out.reserve_exact(want.max(64));
        let used = inflate_one(deflate, &mut out, limit)?;
        let trailer = deflate.get(used..used + 8).ok_or(GzipError::Invalid("truncated trailer"))?;
        let (crc, size) = trailer.split_at(4);
        let member = &out[start..];
        if u32::from_le_bytes(crc.try_into().unwrap_or_default()) != crc32fast::hash(member) {
            return Err(GzipError::Invalid("CRC mismatch"));
        }
        if u32::from_le_bytes(size.try_into().unwrap_or_default()) != member.len() as u32 {
            return Err(GzipError::Invalid("length mismatch"));
        }
        rest = &deflate[used + 8..];
        if rest.is_empty() {
            return Ok(out);
        }
        if !rest.starts_with(&GZIP_MAGIC) {
            return Err(GzipError::Invalid("bytes after the last member"));
        }
    }
}

/// The length of the gzip member header at the start of `bytes`.
fn member_header_len(bytes: &[u8]) -> Result<usize, GzipError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let truncated = GzipError::Invalid("truncated header");
    if bytes.len() < 10 {
        return Err(truncated);
    }
    if bytes[..2] != GZIP_MAGIC || bytes[2] != 8 {
        return Err(GzipError::Invalid("not a deflate gzip member"));
    }
    let flags = bytes[3];
    if flags & 0xe0 != 0 {
        return Err(GzipError::Invalid("reserved header flags"));
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = bytes.get(at..at + 2).ok_or(truncated)?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = bytes.get(at..).and_then(|b| b.iter().position(|&c| c == 0));
            let end = end.ok_or(GzipError::Invalid("truncated header"))?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    Ok(at)
}

/// Inflates one raw deflate stream onto `out`, never past `limit` bytes in all; returns the
/// input bytes it used.
fn inflate_one(deflate: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize, GzipError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut inflater = Decompress::new(false);
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(GzipError::TooLarge);
            }
            // Past the hint (a wrong or lying trailer): grow, at most to one byte over the limit.
            let grow = out.len().max(4096).min(limit.saturating_add(1) - out.len());
            out.reserve_exact(grow);
        }
        let (used, made) = (inflater.total_in() as usize, out.len());
        let status = inflater
            .decompress_vec(&deflate[used..], out, FlushDecompress::None)
            .map_err(|_| GzipError::Invalid("corrupt deflate data"))?;
        if out.len() > limit {
            return Err(GzipError::TooLarge);
        }
        if status == Status::StreamEnd {
            return Ok(inflater.total_in() as usize);
        }
        // No progress with room to write: the input ended inside the stream.
        let stalled = inflater.total_in() as usize == used && out.len() == made;
        if stalled && out.len() < out.capacity() {
            return Err(GzipError::Invalid("truncated deflate data"));
        }
    }
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

    #[test]
    fn members_headers_and_trailers_are_checked() {
        let limits = IngestLimits::default();
        // Two members (`cat a.gz b.gz`) are one body.
        let mut two = gz(b"a;b 1\n");
        two.extend(gz(b"c 2\n"));
        assert_eq!(gunzip(&two, &mut limits.budget()).unwrap(), b"a;b 1\nc 2\n");
        // A header with a file name, a comment and extra field, as `gzip -N` and others write.
        let mut named = flate2::GzBuilder::new()
            .filename("profile.pb")
            .comment("from a test")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::default());
        named.write_all(b"x 3\n").unwrap();
        assert_eq!(gunzip(&named.finish().unwrap(), &mut limits.budget()).unwrap(), b"x 3\n");
        // A flipped payload byte fails the CRC; a lying size fails the length check.
        let whole = gz(&[b'z'; 5000]);
        let mut bad_crc = whole.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert!(matches!(gunzip(&bad_crc, &mut limits.budget()), Err(IngestError::Malformed { .. })));
        let mut bad_size = whole.clone();
        bad_size[n - 4] ^= 1;
        assert!(matches!(gunzip(&bad_size, &mut limits.budget()), Err(IngestError::Malformed { .. })));
        // Every truncation is refused, none hangs; garbage after a member is refused.
        for cut in 0..whole.len() {
            assert!(gunzip(&whole[..cut], &mut limits.budget()).is_err(), "cut at {cut}");
        }
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"junk");
        assert!(gunzip(&trailing, &mut limits.budget()).is_err());
    }

    #[test]
    fn a_trailer_that_understates_or_overstates_the_size_changes_nothing_but_the_verdict() {
        // The recorded size only sizes the first allocation: a bomb that claims 10 bytes still
        // stops at the limit, and one that claims 4 GiB allocates no more than the limit.
        let limits = IngestLimits { max_decompressed_bytes: 10_000, ..IngestLimits::default() };
        for claimed in [10u32, u32::MAX] {
            let mut bomb = gz(&vec![b'a'; 1_000_000]);
            let n = bomb.len();
            bomb[n - 4..].copy_from_slice(&claimed.to_le_bytes());
            assert!(matches!(gunzip(&bomb, &mut limits.budget()), Err(IngestError::TooLarge(_))));
        }
        // Exactly at the limit is fine.
        let exact = gz(&vec![b'b'; 10_000]);
        assert_eq!(gunzip(&exact, &mut limits.budget()).unwrap().len(), 10_000);
    }

    #[test]
    fn byte_order_marks_are_read_and_utf16_becomes_utf8() {
        let text = "main;caf\u{e9} 2\r\nmain;\u{1f525} 1\r\n";
        let mut le = vec![0xff, 0xfe];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let mut be = vec![0xfe, 0xff];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        let mut bom = vec![0xef, 0xbb, 0xbf];
        bom.extend_from_slice(text.as_bytes());
        for body in [le.clone(), be, bom, text.as_bytes().to_vec()] {
            assert_eq!(utf8_text(body).unwrap(), text.as_bytes());
        }
        le.pop();
        assert!(matches!(utf8_text(le), Err(IngestError::Malformed { .. })));
        // A lone surrogate is replaced, not refused.
        assert_eq!(utf8_text(vec![0xff, 0xfe, 0x00, 0xd8, b'a', 0]).unwrap(), "\u{fffd}a".as_bytes());
    }
}
