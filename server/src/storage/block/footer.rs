//! The footer (the last [`FOOTER_LEN`] bytes of a data object) and the index section it points
//! to: both checksummed, so a torn or foreign object is detected before any chunk is read.

use super::varint::{Reader, Writer};
use super::{BlockIndex, CorruptBlock, END_MAGIC, FOOTER_LEN, Footer, MAGIC, READABLE, corrupt};

pub(super) fn encode_footer(f: &Footer) -> Vec<u8> {
    let mut w = Writer { out: Vec::with_capacity(FOOTER_LEN) };
    w.u64(f.index_offset);
    w.u64(f.index_len);
    w.u32(f.index_crc);
    w.i64(f.min_time);
    w.i64(f.max_time);
    w.out.extend_from_slice(&f.version.to_le_bytes());
    w.out.extend_from_slice(&0u16.to_le_bytes());
    let crc = crc32fast::hash(&w.out);
    w.u32(crc);
    w.out.extend_from_slice(END_MAGIC);
    w.out
}

/// Decodes the last [`FOOTER_LEN`] bytes of a data object.
pub fn decode_footer(bytes: &[u8], data_len: u64) -> Result<Footer, CorruptBlock> {
    if bytes.len() != FOOTER_LEN || &bytes[44..] != END_MAGIC {
        return Err(corrupt("no footer (a torn or foreign object)"));
    }
    if crc32fast::hash(&bytes[..40]) != u32::from_le_bytes(bytes[40..44].try_into().expect("4 bytes")) {
        return Err(corrupt("footer checksum mismatch"));
    }
    let mut r = Reader { bytes };
    let footer = Footer {
        index_offset: r.u64()?,
        index_len: r.u64()?,
        index_crc: r.u32()?,
        min_time: r.i64()?,
        max_time: r.i64()?,
        version: u16::from_le_bytes(bytes[36..38].try_into().expect("2 bytes")),
    };
    if !READABLE.contains(&footer.version) {
        return Err(corrupt(format!("format version {}, this Kiln reads {READABLE:?}", footer.version)));
    }
    let end = footer.index_offset.checked_add(footer.index_len);
    if footer.index_offset < MAGIC.len() as u64 || end != data_len.checked_sub(FOOTER_LEN as u64) {
        return Err(corrupt("index does not end at the footer"));
    }
    Ok(footer)
}

/// Decodes and checks the index section; every chunk must lie between magic and index.
pub fn decode_index(bytes: &[u8], footer: &Footer) -> Result<BlockIndex, CorruptBlock> {
    if crc32fast::hash(bytes) != footer.index_crc {
        return Err(corrupt("index checksum mismatch"));
    }
    let raw = lz4_flex::decompress_size_prepended(bytes).map_err(|e| corrupt(format!("index: {e}")))?;
    let mut index: BlockIndex = serde_json::from_slice(&raw).map_err(|e| corrupt(format!("index: {e}")))?;
    for entry in &mut index.series {
        entry.format = footer.version;
        let inside = entry.offset >= MAGIC.len() as u64
            && entry.offset.checked_add(entry.len).is_some_and(|end| end <= footer.index_offset);
        if !inside {
            return Err(corrupt("chunk outside the data section"));
        }
    }
    Ok(index)
}
