//! The block format: an immutable, compressed slice of the head, one data object plus one
//! small meta object.
//!
//! ```text
//! data object
//!   magic        8 bytes  "KILNBLK\0"
//!   chunks       one per series, sorted by (series id, key); each LZ4 (size-prepended)
//!   index        LZ4 of JSON: the series table with each chunk's offset, length and CRC32
//!   footer       52 bytes:
//!                index offset u64 | index length u64 | index crc32 u32 | min time i64 |
//!                max time i64 | version u16 | reserved u16 | footer crc32 u32 | "KILNBEND"
//!
//! chunk, version 2 (before compression; v = LEB128 varint, z = zigzag varint)
//!   symbols      v count, count × (v length, UTF-8): the frame names of the chunk
//!   stack tree   v nodes, (nodes − 1) × v distance to the parent (node i's parent is
//!                i − distance), nodes × v symbol: every call path of the chunk's uploads,
//!                once; node 0 is the root, nodes in preorder, siblings in name order
//!   uploads      v count, count × upload, sorted by (from, until)
//!   upload       z from − previous upload's from | z until − from | v sample rate |
//!                aggregation u8 | units (v length, UTF-8) | spy name (v length, UTF-8) |
//!                v k | k × v node id − previous node id (ascending, from 0) |
//!                k × v self value
//! ```
//!
//! All fixed-size integers are little-endian. Symbols are per chunk, not per block: a query
//! then needs exactly one ranged GET per selected series and never a block-wide symbol section
//! (which would have to be fetched or cached by every reader).
//!
//! Why a stack tree per chunk: the uploads of one series are the same program profiled every
//! 10 s, so they share nearly all their call paths. Each path is stored once, and an upload is
//! only the paths it has self samples in plus those values (totals are sums of selves, so they
//! are derived, not stored): a few bytes per stack instead of a full tree of 24 bytes a node
//! per upload. A query merges a chunk by adding value columns indexed by stack-tree node (no
//! hashing per upload), then folds the chunk's tree into the answer once.
//!
//! A block keeps an upload's samples, not its node layout: decoding gives the canonical tree
//! (preorder, siblings in name order, no empty nodes, as [`kiln_model::CallTree::to_flat`]
//! builds), which is what ingest stores anyway.
//!
//! Version 1 chunks (a names table, then per upload parent, symbol, total and self columns of
//! fixed-width integers) are still read, so blocks written by earlier versions stay queryable
//! and are rewritten in version 2 when compacted.
//!
//! The footer sits at a fixed distance from the end so that a reader fetches it with one
//! ranged GET of the last 52 bytes, then the index with a second; both are checksummed, and
//! so is every chunk, so a half-written or damaged object is detected and skipped.
//!
//! Here: the index types and writing and reading whole objects; `chunk` holds the chunk
//! format, `footer` the footer and index section, `legacy` the version 1 chunk reader,
//! `varint` the byte writer and reader they share.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{SeriesKey, Upload};

mod chunk;
mod footer;
mod legacy;
mod varint;

use chunk::encode_chunk;
pub use chunk::{Chunk, ChunkBuilder, ChunkUpload, decode_chunk, read_chunk};
use footer::encode_footer;
pub use footer::{decode_footer, decode_index};

/// First bytes of every data object.
pub const MAGIC: &[u8; 8] = b"KILNBLK\0";
/// Last bytes of every data object.
pub const END_MAGIC: &[u8; 8] = b"KILNBEND";
/// The data format this module writes.
pub const VERSION: u16 = 2;
/// The data formats this module reads.
pub const READABLE: &[u16] = &[1, 2];
/// Size of the footer.
pub const FOOTER_LEN: usize = 52;

/// Why block bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt block: {0}")]
pub struct CorruptBlock(pub String);

fn corrupt(what: impl Into<String>) -> CorruptBlock {
    CorruptBlock(what.into())
}

/// A stable series id: FNV-1a (64-bit) over tenant, app, type and the sorted labels, each
/// field terminated by a 0xff byte (which UTF-8 never contains, so fields cannot run
/// together). The default tenant is left out, so ids from before tenancy stay the same.
pub fn series_id(key: &SeriesKey) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes.iter().chain([0xffu8].iter()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    if key.tenant != super::DEFAULT_TENANT {
        feed(key.tenant.as_bytes());
    }
    feed(key.app.as_bytes());
    feed(key.profile_type.as_bytes());
    for (name, value) in &key.labels {
        feed(name.as_bytes());
        feed(value.as_bytes());
    }
    hash
}

/// One series in a block: where its chunk is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesEntry {
    /// [`series_id`] of the key.
    pub id: u64,
    /// The series.
    pub key: SeriesKey,
    /// Byte offset of the chunk in the data object.
    pub offset: u64,
    /// Compressed length of the chunk.
    pub len: u64,
    /// CRC32 of the compressed chunk.
    pub crc: u32,
    /// Earliest `from` of its uploads.
    pub min_time: i64,
    /// Latest `until` of its uploads.
    pub max_time: i64,
    /// Number of uploads.
    pub uploads: u64,
    /// Format version of the chunk: the block's, set from its footer when the index is read
    /// (so it is not stored per entry).
    #[serde(skip)]
    pub format: u16,
}

/// The series table of a block, as stored in its index section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlockIndex {
    /// Sorted by (id, key).
    pub series: Vec<SeriesEntry>,
}

/// The footer's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Where the index section starts.
    pub index_offset: u64,
    /// Its length.
    pub index_len: u64,
    /// Its CRC32.
    pub index_crc: u32,
    /// Earliest `from` in the block.
    pub min_time: i64,
    /// Latest `until` in the block.
    pub max_time: i64,
    /// Data format version.
    pub version: u16,
}

/// The published description of a block; its presence in the store means the block exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Data format version.
    pub version: u16,
    /// Unique per writer; sorts by creation time.
    pub id: String,
    /// The Kiln instance that wrote it (and alone may compact or delete it).
    pub writer: String,
    /// Earliest `from` in the block.
    pub min_time: i64,
    /// Latest `until` in the block.
    pub max_time: i64,
    /// Size of the data object.
    pub data_len: u64,
    /// Number of series.
    pub series: u64,
    /// Number of uploads.
    pub uploads: u64,
    /// 0 for a block cut from the head; one more than its inputs' for a compacted one.
    pub level: u32,
    /// The writer's write-ahead-log segments up to this number are in this block (or in
    /// older blocks): a restart after a crash between publishing and deleting the segments
    /// skips them instead of counting their uploads twice.
    pub wal_segment: u64,
    /// Blocks this one replaces; readers hide them even before they are deleted.
    #[serde(default)]
    pub compacted_from: Vec<String>,
    /// Idempotency keys (tenant-qualified) of the uploads in this block, with the Unix second
    /// each was first seen: after a restart, or on another server sharing the bucket, a retry
    /// of an upload that is already in a block is still recognised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idempotency_keys: Vec<(String, i64)>,
    /// Cluster mode: the shared log's sequence this block covers up to (the freeze marker
    /// its partition's head was cut at); a compacted block has its newest input's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<u64>,
    /// Cluster mode: the partition whose uploads this block holds (every upload of it up to
    /// `stream_seq` not in an older block). A cluster block without one (written before
    /// blocks were cut per partition) holds every partition's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u64>,
    /// Cluster mode: the server that wrote it (the partition's lease holder then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_by: Option<String>,
}

/// Encodes uploads (any order, any series) into a data object; returns it with its index.
pub fn encode<'a>(uploads: impl IntoIterator<Item = &'a Upload>) -> (Vec<u8>, BlockIndex, Footer) {
    encode_with(uploads, encode_chunk, VERSION)
}

/// Encodes series whose uploads are already in chunks (a head's), any order: each chunk is
/// made canonical and its uploads sorted, so the bytes depend on the contents alone.
pub fn encode_series(series: Vec<(SeriesKey, Arc<Chunk>)>) -> (Vec<u8>, BlockIndex, Footer) {
    let mut by_series: Vec<(u64, SeriesKey, Arc<Chunk>)> =
        series.into_iter().filter(|(_, c)| !c.uploads.is_empty()).map(|(k, c)| (series_id(&k), k, c)).collect();
    by_series.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let chunks = by_series.into_iter().map(|(id, key, chunk)| {
        let mut chunk = chunk.canonical();
        chunk.uploads.sort_by(|a, b| {
            (a.from, a.until, &a.nodes, &a.self_value).cmp(&(b.from, b.until, &b.nodes, &b.self_value))
        });
        let bytes = chunk::compress(&chunk.encode());
        let times = chunk.uploads.iter().map(|u| (u.from, u.until));
        (id, key, bytes, span(times), chunk.uploads.len())
    });
    assemble(chunks, VERSION)
}

fn encode_with<'a>(
    uploads: impl IntoIterator<Item = &'a Upload>,
    encode_chunk: fn(&[&Upload]) -> Vec<u8>,
    version: u16,
) -> (Vec<u8>, BlockIndex, Footer) {
    let mut by_series: BTreeMap<(u64, &SeriesKey), Vec<&Upload>> = BTreeMap::new();
    for upload in uploads {
        let key = &upload.meta.series;
        by_series.entry((series_id(key), key)).or_default().push(upload);
    }
    let chunks = by_series.into_iter().map(|((id, key), mut list)| {
        // Sorted so that a block's bytes depend on its contents, not on arrival order.
        list.sort_by(|a, b| {
            (a.meta.from, a.meta.until)
                .cmp(&(b.meta.from, b.meta.until))
                .then_with(|| kiln_model::codec::encode(&a.tree).cmp(&kiln_model::codec::encode(&b.tree)))
        });
        let times = list.iter().map(|u| (u.meta.from, u.meta.until));
        (id, key.clone(), encode_chunk(&list), span(times), list.len())
    });
    assemble(chunks, version)
}

/// Earliest start and latest end of `times`, `(0, 0)` when empty.
fn span(times: impl Iterator<Item = (i64, i64)>) -> (i64, i64) {
    let (min, max) = times.fold((i64::MAX, i64::MIN), |(lo, hi), (from, until)| (lo.min(from), hi.max(until)));
    if min > max { (0, 0) } else { (min, max) }
}

/// Lays out the series' compressed chunks (ascending series id), then the index and footer.
fn assemble(
    chunks: impl Iterator<Item = (u64, SeriesKey, Vec<u8>, (i64, i64), usize)>,
    version: u16,
) -> (Vec<u8>, BlockIndex, Footer) {
    let mut out = MAGIC.to_vec();
    let mut index = BlockIndex::default();
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    for (id, key, chunk, (min, max), uploads) in chunks {
        let entry = SeriesEntry {
            id,
            key,
            offset: out.len() as u64,
            len: chunk.len() as u64,
            crc: crc32fast::hash(&chunk),
            min_time: min,
            max_time: max,
            uploads: uploads as u64,
            format: version,
        };
        min_time = min_time.min(entry.min_time);
        max_time = max_time.max(entry.max_time);
        out.extend_from_slice(&chunk);
        index.series.push(entry);
    }
    if index.series.is_empty() {
        (min_time, max_time) = (0, 0);
    }
    let index_bytes = lz4_flex::compress_prepend_size(&serde_json::to_vec(&index).expect("index serializes"));
    let footer = Footer {
        index_offset: out.len() as u64,
        index_len: index_bytes.len() as u64,
        index_crc: crc32fast::hash(&index_bytes),
        min_time,
        max_time,
        version,
    };
    out.extend_from_slice(&index_bytes);
    out.extend_from_slice(&encode_footer(&footer));
    (out, index, footer)
}

/// Decodes a whole data object: every upload, or why not.
pub fn decode_all(bytes: &[u8]) -> Result<(BlockIndex, Vec<Upload>), CorruptBlock> {
    let index = whole_index(bytes)?;
    let mut uploads = Vec::new();
    for e in &index.series {
        uploads.extend(decode_chunk(e, chunk_bytes(bytes, e)?)?);
    }
    Ok((index, uploads))
}

/// Decodes a whole data object as compaction reads it: the index and each series' chunk (in
/// the index's order), without a tree per upload.
pub fn decode_series(bytes: &[u8]) -> Result<(BlockIndex, Vec<Chunk>), CorruptBlock> {
    let index = whole_index(bytes)?;
    let chunks = index.series.iter().map(|e| read_chunk(e, chunk_bytes(bytes, e)?)).collect::<Result<_, _>>()?;
    Ok((index, chunks))
}

fn whole_index(bytes: &[u8]) -> Result<BlockIndex, CorruptBlock> {
    if bytes.len() < MAGIC.len() + FOOTER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("missing magic"));
    }
    let len = bytes.len() as u64;
    let footer = decode_footer(&bytes[bytes.len() - FOOTER_LEN..], len)?;
    decode_index(&bytes[footer.index_offset as usize..(len as usize - FOOTER_LEN)], &footer)
}

fn chunk_bytes<'a>(bytes: &'a [u8], entry: &SeriesEntry) -> Result<&'a [u8], CorruptBlock> {
    let start = usize::try_from(entry.offset).map_err(|_| corrupt("chunk offset out of range"))?;
    let end = start.checked_add(usize::try_from(entry.len).map_err(|_| corrupt("chunk length out of range"))?);
    end.and_then(|end| bytes.get(start..end)).ok_or_else(|| corrupt("chunk outside the data object"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kiln_model::FlatTree;

    use super::super::tests::upload;
    use super::varint::Writer;
    use super::*;
    use crate::storage::Aggregation;

    fn sorted(mut uploads: Vec<Upload>) -> Vec<Upload> {
        uploads.sort_by(|a, b| {
            (&a.meta.series, a.meta.from, a.meta.until).cmp(&(&b.meta.series, b.meta.from, b.meta.until))
        });
        uploads
    }

    #[test]
    fn block_round_trips() {
        let uploads = sample_uploads();
        let (bytes, index, footer) = encode(&uploads);
        assert_eq!((footer.min_time, footer.max_time), (0, 110));
        assert_eq!(footer.version, VERSION);
        assert_eq!(index.series.len(), 3);
        let (decoded_index, decoded) = decode_all(&bytes).unwrap();
        assert_eq!(decoded_index, index);
        assert_eq!(sorted(decoded), sorted(uploads));
    }

    /// The version 1 chunk writer, kept to prove that old blocks stay readable.
    fn encode_chunk_v1(uploads: &[&Upload]) -> Vec<u8> {
        let mut symbols: Vec<&str> = Vec::new();
        let mut symbol_of: HashMap<&str, u32> = HashMap::new();
        for upload in uploads {
            for name in &upload.tree.names {
                symbol_of.entry(name.as_str()).or_insert_with(|| {
                    symbols.push(name.as_str());
                    (symbols.len() - 1) as u32
                });
            }
        }
        let mut w = Writer { out: Vec::new() };
        w.u32(symbols.len() as u32);
        for s in &symbols {
            w.u32(s.len() as u32);
            w.out.extend_from_slice(s.as_bytes());
        }
        w.u32(uploads.len() as u32);
        for upload in uploads {
            let (meta, tree) = (&upload.meta, &upload.tree);
            w.i64(meta.from);
            w.i64(meta.until);
            w.u32(meta.sample_rate);
            w.u8(u8::from(meta.aggregation == Aggregation::Average));
            for text in [&meta.units, &meta.spy_name] {
                w.u32(text.len() as u32);
                w.out.extend_from_slice(text.as_bytes());
            }
            w.u32(tree.len() as u32);
            tree.parent.iter().for_each(|&p| w.u32(p));
            tree.name.iter().for_each(|&n| w.u32(symbol_of[tree.names[n as usize].as_str()]));
            tree.total.iter().for_each(|&t| w.u64(t));
            tree.self_value.iter().for_each(|&s| w.u64(s));
        }
        lz4_flex::compress_prepend_size(&w.out)
    }

    fn sample_uploads() -> Vec<Upload> {
        let mut avg = upload("b", &[(&["main", "alloc"], 7)], 50);
        avg.meta.aggregation = Aggregation::Average;
        avg.meta.units = "bytes".into();
        avg.meta.series.labels.insert("env".into(), "prod".into());
        vec![
            upload("a", &[(&["main", "f", "g"], 3), (&["main", "h"], 1), (&[], 2)], 100),
            upload("a", &[(&["main", "f"], 2), (&["total", "f"], 5)], 90),
            upload("a", &[(&["main", "f", "g"], 1), (&["other"], 9)], 110),
            avg,
            upload("c", &[], 10),
        ]
    }

    #[test]
    fn version_1_blocks_still_read() {
        let uploads = sample_uploads();
        let (bytes, _, footer) = encode_with(&uploads, encode_chunk_v1, 1);
        assert_eq!(footer.version, 1);
        let (index, decoded) = decode_all(&bytes).unwrap();
        assert!(index.series.iter().all(|e| e.format == 1));
        assert_eq!(sorted(decoded), sorted(uploads.clone()));
        // And through the query path's reader, which turns them into stack-tree chunks.
        let entry = index.series.iter().find(|e| e.key.app == "a").unwrap();
        let chunk = read_chunk(entry, &bytes[entry.offset as usize..(entry.offset + entry.len) as usize]).unwrap();
        let trees: Vec<FlatTree> = (0..chunk.uploads.len()).map(|i| chunk.tree(i)).collect();
        let expected: Vec<FlatTree> =
            sorted(uploads).into_iter().filter(|u| u.meta.series.app == "a").map(|u| u.tree).collect();
        assert_eq!(trees, expected);
    }

    #[test]
    fn a_chunk_stores_each_call_path_once() {
        let uploads = sample_uploads();
        let a: Vec<&Upload> = uploads.iter().filter(|u| u.meta.series.app == "a").collect();
        let chunk = Chunk::from_uploads(&a);
        // total, main, main;f, main;f;g, main;h, other, total;f (the frame named like the root)
        assert_eq!(chunk.parent.len(), 8);
        assert_eq!(Chunk::decode(&chunk.encode()).unwrap(), chunk);
        // Every upload is its self samples only.
        assert_eq!(chunk.uploads.iter().map(|u| u.nodes.len()).collect::<Vec<_>>(), [3, 2, 2]);
        assert_eq!(chunk.uploads[1].total(), 7);
    }

    #[test]
    fn a_head_built_upload_by_upload_writes_the_same_block() {
        let uploads = sample_uploads();
        // Arrival order differs from block order, and one upload is dropped again (as
        // retention drops them from a head): its call paths must not reach the block.
        let dropped = upload("a", &[(&["gone", "deep"], 4)], 5);
        let mut builders: BTreeMap<SeriesKey, ChunkBuilder> = BTreeMap::new();
        for u in uploads.iter().rev().chain([&dropped]) {
            builders.entry(u.meta.series.clone()).or_default().add(u);
        }
        builders.values_mut().for_each(|b| b.retain_uploads(|u| u.from != dropped.meta.from));
        let series = builders.iter().map(|(k, b)| (k.clone(), b.snapshot())).collect();
        assert_eq!(encode_series(series).0, encode(&uploads).0);
        // Queries read a head's chunk as it is, parents before children.
        let a = &builders.iter().find(|(k, _)| k.app == "a").expect("series a").1;
        assert!(a.chunk().parent.iter().enumerate().skip(1).all(|(i, &p)| (p as usize) < i));
        assert!(a.chunk().symbols.iter().any(|s| s == "gone"), "pruned only when made canonical");
    }

    #[test]
    fn chunks_of_several_blocks_join_as_one() {
        // As compaction merges a series' chunks from several blocks.
        let uploads = sample_uploads();
        let a: Vec<&Upload> = uploads.iter().filter(|u| u.meta.series.app == "a").collect();
        let (first, second) = a.split_at(1);
        let mut joined = ChunkBuilder::default();
        joined.add_chunk(&Chunk::from_uploads(second));
        joined.add_chunk(&Chunk::from_uploads(first));
        let mut canonical = joined.chunk().canonical();
        canonical.uploads.sort_by_key(|u| (u.from, u.until));
        let mut expected = Chunk::from_uploads(&a);
        expected.uploads.sort_by_key(|u| (u.from, u.until));
        assert_eq!(canonical, expected);
    }

    /// Block bytes of format 1 against format 2 for the real captures in the repository:
    /// `cargo test -p kiln-server --lib format_sizes -- --ignored --nocapture`.
    #[test]
    #[ignore = "a size report, not a check"]
    fn format_sizes() {
        use kiln_model::folded::{self, LineFormat, ParseLimits};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../app/model/tests/data");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for name in ["example-perf-stacks-collapsed.txt", "flamegraph-base-flames.txt"] {
            let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            let parse = |t: &str| folded::parse(t.as_bytes(), LineFormat::Counted, ParseLimits::default()).unwrap();
            let once = vec![Upload { tree: parse(&text).to_flat(), ..upload(name, &[], 10) }];
            // The same app every 10 s for 10 minutes: a third of the stacks missing, new counts.
            let mut folded_bytes = 0;
            let repeated: Vec<Upload> = (0..60)
                .map(|i| {
                    let mut lines: Vec<String> = Vec::new();
                    for line in text.lines() {
                        if next(3) != 0 {
                            lines.push(format!("{} {}", &line[..line.rfind(' ').unwrap()], 1 + next(100)));
                        }
                    }
                    let jittered = lines.join("\n");
                    folded_bytes += jittered.len();
                    Upload { tree: parse(&jittered).to_flat(), ..upload(name, &[], 10 + i * 10) }
                })
                .collect();
            for (what, uploads, text_len) in [("once", &once, text.len()), ("60 uploads", &repeated, folded_bytes)] {
                let v1 = encode_with(uploads, encode_chunk_v1, 1).0.len();
                let v2 = encode(uploads).0.len();
                println!("{name}, {what}: {text_len} bytes folded, format 1 {v1} bytes, format 2 {v2} bytes");
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let uploads = vec![upload("a", &[(&["main", "f"], 3)], 100), upload("b", &[(&["x"], 1)], 50)];
        let (bytes, _, _) = encode(&uploads);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x5a;
            assert!(decode_all(&damaged).is_err(), "flip at {i} of {} went unnoticed", bytes.len());
        }
        for cut in 0..bytes.len() {
            assert!(decode_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn series_ids_are_stable_and_label_sensitive() {
        let a = upload("a", &[], 0).meta.series;
        let mut b = a.clone();
        b.labels.insert("k".into(), "v".into());
        assert_eq!(series_id(&a), series_id(&a.clone()));
        assert_ne!(series_id(&a), series_id(&b));
        // Pinned: ids are stored in blocks, so the hash must never change.
        let key = SeriesKey::new("a", "cpu", BTreeMap::new());
        assert_eq!(series_id(&key), 0x28b6_cbe4_9994_6c36);
        let other_tenant = SeriesKey { tenant: "team-b".into(), ..key.clone() };
        assert_ne!(series_id(&other_tenant), series_id(&key));
    }
}
