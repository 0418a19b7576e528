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
//! chunk (before compression)
//!   symbols      u32 count, count × (u32 length, UTF-8): the frame names of the chunk
//!   uploads      u32 count, count × upload, sorted by (from, until)
//!   upload       from i64 | until i64 | sample rate u32 | aggregation u8 |
//!                units (u32 length, UTF-8) | spy name (u32 length, UTF-8) | nodes u32 |
//!                parent u32 × nodes | symbol u32 × nodes | total u64 × nodes | self u64 × nodes
//! ```
//!
//! All integers are little-endian. Symbols are per chunk, not per block: a query then needs
//! exactly one ranged GET per selected series and never a block-wide symbol section (which
//! would have to be fetched or cached by every reader). Frames shared by many series are
//! repeated once per series, which LZ4 and the chunk's own dedup keep small.
//!
//! The footer sits at a fixed distance from the end so that a reader fetches it with one
//! ranged GET of the last 52 bytes, then the index with a second; both are checksummed, and
//! so is every chunk, so a half-written or damaged object is detected and skipped.

use std::collections::{BTreeMap, HashMap};

use kiln_model::FlatTree;
use serde::{Deserialize, Serialize};

use super::{Aggregation, ProfileMeta, SeriesKey, Upload};

/// First bytes of every data object.
pub const MAGIC: &[u8; 8] = b"KILNBLK\0";
/// Last bytes of every data object.
pub const END_MAGIC: &[u8; 8] = b"KILNBEND";
/// The data format this module writes and reads.
pub const VERSION: u16 = 1;
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
}

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.out.extend_from_slice(v.as_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptBlock> {
        if self.bytes.len() < n {
            return Err(corrupt("chunk ends early"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CorruptBlock> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CorruptBlock> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, CorruptBlock> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self) -> Result<i64, CorruptBlock> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn count(&mut self, item_size: usize) -> Result<usize, CorruptBlock> {
        let n = self.u32()? as usize;
        // A count larger than the bytes left is damage, not a reason to allocate.
        if n.saturating_mul(item_size) > self.bytes.len() {
            return Err(corrupt("count exceeds the chunk"));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, CorruptBlock> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("string is not UTF-8"))
    }
}

fn encode_chunk(uploads: &[&Upload]) -> Vec<u8> {
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
        w.str(s);
    }
    w.u32(uploads.len() as u32);
    for upload in uploads {
        let (meta, tree) = (&upload.meta, &upload.tree);
        w.i64(meta.from);
        w.i64(meta.until);
        w.u32(meta.sample_rate);
        w.u8(match meta.aggregation {
            Aggregation::Sum => 0,
            Aggregation::Average => 1,
        });
        w.str(&meta.units);
        w.str(&meta.spy_name);
        w.u32(tree.len() as u32);
        tree.parent.iter().for_each(|&p| w.u32(p));
        tree.name.iter().for_each(|&n| w.u32(symbol_of[tree.names[n as usize].as_str()]));
        tree.total.iter().for_each(|&t| w.u64(t));
        tree.self_value.iter().for_each(|&s| w.u64(s));
    }
    lz4_flex::compress_prepend_size(&w.out)
}

/// Decodes one chunk (compressed bytes as stored) into the uploads of `key`.
pub fn decode_chunk(key: &SeriesKey, compressed: &[u8], crc: u32) -> Result<Vec<Upload>, CorruptBlock> {
    if crc32fast::hash(compressed) != crc {
        return Err(corrupt("chunk checksum mismatch"));
    }
    let raw = lz4_flex::decompress_size_prepended(compressed).map_err(|e| corrupt(format!("chunk: {e}")))?;
    let mut r = Reader { bytes: &raw };
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

/// Encodes uploads (any order, any series) into a data object; returns it with its index.
pub fn encode<'a>(uploads: impl IntoIterator<Item = &'a Upload>) -> (Vec<u8>, BlockIndex, Footer) {
    let mut by_series: BTreeMap<(u64, &SeriesKey), Vec<&Upload>> = BTreeMap::new();
    for upload in uploads {
        let key = &upload.meta.series;
        by_series.entry((series_id(key), key)).or_default().push(upload);
    }
    let mut out = MAGIC.to_vec();
    let mut index = BlockIndex::default();
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    for ((id, key), mut list) in by_series {
        // Sorted so that a block's bytes depend on its contents, not on arrival order.
        list.sort_by(|a, b| {
            (a.meta.from, a.meta.until)
                .cmp(&(b.meta.from, b.meta.until))
                .then_with(|| kiln_model::codec::encode(&a.tree).cmp(&kiln_model::codec::encode(&b.tree)))
        });
        let chunk = encode_chunk(&list);
        let entry = SeriesEntry {
            id,
            key: key.clone(),
            offset: out.len() as u64,
            len: chunk.len() as u64,
            crc: crc32fast::hash(&chunk),
            min_time: list.iter().map(|u| u.meta.from).min().unwrap_or(0),
            max_time: list.iter().map(|u| u.meta.until).max().unwrap_or(0),
            uploads: list.len() as u64,
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
    };
    out.extend_from_slice(&index_bytes);
    out.extend_from_slice(&encode_footer(&footer));
    (out, index, footer)
}

fn encode_footer(f: &Footer) -> Vec<u8> {
    let mut w = Writer { out: Vec::with_capacity(FOOTER_LEN) };
    w.u64(f.index_offset);
    w.u64(f.index_len);
    w.u32(f.index_crc);
    w.i64(f.min_time);
    w.i64(f.max_time);
    w.out.extend_from_slice(&VERSION.to_le_bytes());
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
    };
    let version = u16::from_le_bytes(bytes[36..38].try_into().expect("2 bytes"));
    if version != VERSION {
        return Err(corrupt(format!("format version {version}, this Kiln reads {VERSION}")));
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
    let index: BlockIndex = serde_json::from_slice(&raw).map_err(|e| corrupt(format!("index: {e}")))?;
    for entry in &index.series {
        let inside = entry.offset >= MAGIC.len() as u64
            && entry.offset.checked_add(entry.len).is_some_and(|end| end <= footer.index_offset);
        if !inside {
            return Err(corrupt("chunk outside the data section"));
        }
    }
    Ok(index)
}

/// Decodes a whole data object (compaction reads blocks whole): every upload, or why not.
pub fn decode_all(bytes: &[u8]) -> Result<(BlockIndex, Vec<Upload>), CorruptBlock> {
    if bytes.len() < MAGIC.len() + FOOTER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("missing magic"));
    }
    let len = bytes.len() as u64;
    let footer = decode_footer(&bytes[bytes.len() - FOOTER_LEN..], len)?;
    let index = decode_index(&bytes[footer.index_offset as usize..(len as usize - FOOTER_LEN)], &footer)?;
    let mut uploads = Vec::new();
    for e in &index.series {
        uploads.extend(decode_chunk(&e.key, &bytes[e.offset as usize..(e.offset + e.len) as usize], e.crc)?);
    }
    Ok((index, uploads))
}

#[cfg(test)]
mod tests {
    use super::super::tests::upload;
    use super::*;

    fn sorted(mut uploads: Vec<Upload>) -> Vec<Upload> {
        uploads.sort_by(|a, b| {
            (&a.meta.series, a.meta.from, a.meta.until).cmp(&(&b.meta.series, b.meta.from, b.meta.until))
        });
        uploads
    }

    #[test]
    fn block_round_trips() {
        let mut avg = upload("b", &[(&["main", "alloc"], 7)], 50);
        avg.meta.aggregation = Aggregation::Average;
        avg.meta.units = "bytes".into();
        avg.meta.series.labels.insert("env".into(), "prod".into());
        let uploads = vec![
            upload("a", &[(&["main", "f", "g"], 3), (&["main", "h"], 1)], 100),
            upload("a", &[(&["main", "f"], 2)], 90),
            avg,
            upload("c", &[], 10),
        ];
        let (bytes, index, footer) = encode(&uploads);
        assert_eq!((footer.min_time, footer.max_time), (0, 100));
        assert_eq!(index.series.len(), 3);
        let (decoded_index, decoded) = decode_all(&bytes).unwrap();
        assert_eq!(decoded_index, index);
        assert_eq!(sorted(decoded), sorted(uploads));
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
