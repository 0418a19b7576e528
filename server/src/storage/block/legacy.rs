//! Version 1 chunks, still read so that blocks written by earlier versions stay queryable (they
//! are rewritten in version 2 when compacted): a names table, then per upload parent, symbol,
//! total and self columns of fixed-width integers.

use std::collections::HashMap;

use kiln_model::FlatTree;

use super::varint::Reader;
use super::{CorruptBlock, corrupt};
use crate::storage::{Aggregation, ProfileMeta, SeriesKey, Upload};

/// Reads a version 1 chunk (after decompression).
pub(super) fn decode_chunk_v1(key: &SeriesKey, raw: &[u8]) -> Result<Vec<Upload>, CorruptBlock> {
    let mut r = Reader { bytes: raw };
    let symbol_count = r.count(4)?;
    let symbols: Vec<String> = (0..symbol_count).map(|_| r.str()).collect::<Result<_, _>>()?;
    let upload_count = r.count(8)?;
    let mut uploads = Vec::with_capacity(upload_count);
    for _ in 0..upload_count {
        let from = r.i64()?;
        let until = r.i64()?;
        let sample_rate = r.u32()?;
        let aggregation = match r.u8()? {
            0 => Aggregation::Sum,
            1 => Aggregation::Average,
            other => return Err(corrupt(format!("unknown aggregation {other}"))),
        };
        let units = r.str()?;
        let spy_name = r.str()?;
        let nodes = r.count(24)?;
        let parent: Vec<u32> = (0..nodes).map(|_| r.u32()).collect::<Result<_, _>>()?;
        let symbol: Vec<u32> = (0..nodes).map(|_| r.u32()).collect::<Result<_, _>>()?;
        let total: Vec<u64> = (0..nodes).map(|_| r.u64()).collect::<Result<_, _>>()?;
        let self_value: Vec<u64> = (0..nodes).map(|_| r.u64()).collect::<Result<_, _>>()?;
        // Each tree gets back a names table of only the symbols it uses.
        let mut local: HashMap<u32, u32> = HashMap::new();
        let mut names = Vec::new();
        let mut name = Vec::with_capacity(nodes);
        for s in symbol {
            let text = symbols.get(s as usize).ok_or_else(|| corrupt("symbol out of range"))?;
            let id = *local.entry(s).or_insert_with(|| {
                names.push(text.clone());
                (names.len() - 1) as u32
            });
            name.push(id);
        }
        let tree = FlatTree { names, name, parent, total, self_value };
        tree.validate().map_err(|e| corrupt(format!("tree: {e}")))?;
        uploads.push(Upload {
            meta: ProfileMeta { series: key.clone(), from, until, units, sample_rate, spy_name, aggregation },
            tree,
        });
    }
    if !r.bytes.is_empty() {
        return Err(corrupt("trailing bytes in chunk"));
    }
    Ok(uploads)
}
