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

use std::collections::{BTreeMap, HashMap};

use kiln_model::{FlatTree, ROOT_NAME, SeededMap};
use serde::{Deserialize, Serialize};

use super::{Aggregation, ProfileMeta, SeriesKey, Upload};

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
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn vstr(&mut self, v: &str) {
        self.varint(v.len() as u64);
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
    #[inline]
    fn varint(&mut self) -> Result<u64, CorruptBlock> {
        let mut value = 0u64;
        for (i, &byte) in self.bytes.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                if i == 9 && byte > 1 {
                    break;
                }
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        Err(corrupt("bad varint"))
    }
    fn zigzag(&mut self) -> Result<i64, CorruptBlock> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }
    /// A varint count of items of at least `item_size` bytes each.
    fn vcount(&mut self, item_size: usize) -> Result<usize, CorruptBlock> {
        let n = self.varint()?;
        if n.saturating_mul(item_size as u64) > self.bytes.len() as u64 {
            return Err(corrupt("count exceeds the chunk"));
        }
        Ok(n as usize)
    }
    fn vstr(&mut self) -> Result<String, CorruptBlock> {
        let n = self.vcount(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("string is not UTF-8"))
    }
}

/// One upload of a [`Chunk`]: its facts and its self samples on the chunk's stack tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkUpload {
    /// Unix seconds of the start of the profiled window.
    pub from: i64,
    /// Unix seconds of its end.
    pub until: i64,
    /// Samples per second.
    pub sample_rate: u32,
    /// How it combines with other uploads.
    pub aggregation: Aggregation,
    /// Sample unit.
    pub units: String,
    /// The agent that sent it.
    pub spy_name: String,
    /// Stack-tree nodes with self samples, ascending.
    pub nodes: Vec<u32>,
    /// Self value of each of `nodes`.
    pub self_value: Vec<u64>,
}

impl ChunkUpload {
    /// Every sample of the upload (its root's total).
    pub fn total(&self) -> u64 {
        self.self_value.iter().fold(0u64, |sum, &v| sum.saturating_add(v))
    }
}

/// A decoded chunk: the uploads of one series in one block over one shared stack tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    /// Frame names, indexed by `symbol`.
    pub symbols: Vec<String>,
    /// Parent of each stack-tree node; nodes are in preorder, node 0 is the root (its own
    /// parent), so every parent comes before its children.
    pub parent: Vec<u32>,
    /// Frame name of each node.
    pub symbol: Vec<u32>,
    /// The uploads, sorted by (from, until).
    pub uploads: Vec<ChunkUpload>,
}

impl Chunk {
    /// Builds the chunk of `uploads` (one series, in the order given).
    pub fn from_uploads(uploads: &[&Upload]) -> Chunk {
        let mut symbols: Vec<&str> = vec![ROOT_NAME];
        let mut symbol_of: SeededMap<&str, u32> = SeededMap::default();
        symbol_of.insert(ROOT_NAME, 0);
        let (mut parent, mut symbol) = (vec![0u32], vec![0u32]);
        let mut children: SeededMap<(u32, u32), u32> = SeededMap::default();
        let mut selves: Vec<Vec<(u32, u64)>> = Vec::with_capacity(uploads.len());
        for upload in uploads {
            let tree = &upload.tree;
            // Each of the tree's names is hashed once, then nodes go by (parent, symbol) ids.
            let names: Vec<u32> = tree
                .names
                .iter()
                .map(|name| {
                    *symbol_of.entry(name.as_str()).or_insert_with(|| {
                        symbols.push(name.as_str());
                        (symbols.len() - 1) as u32
                    })
                })
                .collect();
            let mut mapped: Vec<u32> = Vec::with_capacity(tree.len());
            let mut own = Vec::new();
            for i in 0..tree.len() {
                let node = if i == 0 {
                    0
                } else {
                    let key = (mapped[tree.parent[i] as usize], names[tree.name[i] as usize]);
                    *children.entry(key).or_insert_with(|| {
                        parent.push(key.0);
                        symbol.push(key.1);
                        (parent.len() - 1) as u32
                    })
                };
                mapped.push(node);
                if tree.self_value[i] > 0 {
                    own.push((node, tree.self_value[i]));
                }
            }
            selves.push(own);
        }
        // Canonical order: preorder with siblings sorted by name, names numbered by first use,
        // so that the same samples always give the same bytes.
        let mut kids: Vec<Vec<u32>> = vec![Vec::new(); parent.len()];
        for i in 1..parent.len() {
            kids[parent[i] as usize].push(i as u32);
        }
        for list in &mut kids {
            list.sort_by(|a, b| symbols[symbol[*a as usize] as usize].cmp(symbols[symbol[*b as usize] as usize]));
        }
        let mut new_id = vec![0u32; parent.len()];
        let mut new_symbol = vec![u32::MAX; symbols.len()];
        let mut chunk = Chunk::default();
        let mut stack: Vec<u32> = vec![0];
        while let Some(node) = stack.pop() {
            let id = chunk.parent.len() as u32;
            new_id[node as usize] = id;
            chunk.parent.push(if node == 0 { 0 } else { new_id[parent[node as usize] as usize] });
            let s = &mut new_symbol[symbol[node as usize] as usize];
            if *s == u32::MAX {
                *s = chunk.symbols.len() as u32;
                chunk.symbols.push(symbols[symbol[node as usize] as usize].to_string());
            }
            chunk.symbol.push(*s);
            stack.extend(kids[node as usize].iter().rev());
        }
        for (upload, own) in uploads.iter().zip(selves) {
            let mut own: Vec<(u32, u64)> = own.into_iter().map(|(n, v)| (new_id[n as usize], v)).collect();
            own.sort_unstable_by_key(|&(n, _)| n);
            let (mut nodes, mut self_value): (Vec<u32>, Vec<u64>) = (Vec::new(), Vec::new());
            for (n, v) in own {
                // Two siblings of one name in a hand-built tree are one path here.
                if nodes.last() == Some(&n) {
                    let last = self_value.last_mut().expect("a value");
                    *last = last.saturating_add(v);
                } else {
                    nodes.push(n);
                    self_value.push(v);
                }
            }
            let meta = &upload.meta;
            chunk.uploads.push(ChunkUpload {
                from: meta.from,
                until: meta.until,
                sample_rate: meta.sample_rate,
                aggregation: meta.aggregation,
                units: meta.units.clone(),
                spy_name: meta.spy_name.clone(),
                nodes,
                self_value,
            });
        }
        chunk
    }

    /// The chunk's bytes before compression (version 2).
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer { out: Vec::new() };
        w.varint(self.symbols.len() as u64);
        for s in &self.symbols {
            w.vstr(s);
        }
        w.varint(self.parent.len() as u64);
        for i in 1..self.parent.len() {
            w.varint((i as u32 - self.parent[i]) as u64);
        }
        for &s in &self.symbol {
            w.varint(u64::from(s));
        }
        w.varint(self.uploads.len() as u64);
        let mut previous_from = 0i64;
        for u in &self.uploads {
            w.zigzag(u.from.wrapping_sub(previous_from));
            w.zigzag(u.until.wrapping_sub(u.from));
            previous_from = u.from;
            w.varint(u64::from(u.sample_rate));
            w.u8(match u.aggregation {
                Aggregation::Sum => 0,
                Aggregation::Average => 1,
            });
            w.vstr(&u.units);
            w.vstr(&u.spy_name);
            w.varint(u.nodes.len() as u64);
            let mut previous = 0u32;
            for &n in &u.nodes {
                w.varint(u64::from(n - previous));
                previous = n;
            }
            for &v in &u.self_value {
                w.varint(v);
            }
        }
        w.out
    }

    /// Reads version 2 chunk bytes (after decompression), checking every index.
    fn decode(raw: &[u8]) -> Result<Chunk, CorruptBlock> {
        let mut r = Reader { bytes: raw };
        let symbol_count = r.vcount(1)?;
        let symbols: Vec<String> = (0..symbol_count).map(|_| r.vstr()).collect::<Result<_, _>>()?;
        let nodes = r.vcount(1)?;
        if nodes == 0 {
            return Err(corrupt("stack tree without a root"));
        }
        let mut parent = Vec::with_capacity(nodes);
        parent.push(0u32);
        for i in 1..nodes {
            let distance = r.varint()?;
            if distance == 0 || distance > i as u64 {
                return Err(corrupt("stack tree node before its parent"));
            }
            parent.push((i as u64 - distance) as u32);
        }
        // Loops into sized vectors rather than collecting `Result`s, which cannot size the
        // vector up front and regrow it many times per chunk.
        let mut symbol = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            match r.varint()? {
                s if s < symbols.len() as u64 => symbol.push(s as u32),
                _ => return Err(corrupt("symbol out of range")),
            }
        }
        let upload_count = r.vcount(7)?;
        let mut uploads = Vec::with_capacity(upload_count);
        let mut previous_from = 0i64;
        for _ in 0..upload_count {
            let from = previous_from.wrapping_add(r.zigzag()?);
            let until = from.wrapping_add(r.zigzag()?);
            previous_from = from;
            let sample_rate = u32::try_from(r.varint()?).map_err(|_| corrupt("sample rate out of range"))?;
            let aggregation = match r.u8()? {
                0 => Aggregation::Sum,
                1 => Aggregation::Average,
                other => return Err(corrupt(format!("unknown aggregation {other}"))),
            };
            let units = r.vstr()?;
            let spy_name = r.vstr()?;
            let k = r.vcount(2)?;
            let mut ids = Vec::with_capacity(k);
            let mut previous = 0u64;
            for j in 0..k {
                let delta = r.varint()?;
                // Strictly ascending: only the first id may repeat the start (the root).
                if j > 0 && delta == 0 {
                    return Err(corrupt("upload nodes out of order"));
                }
                previous = previous.saturating_add(delta);
                if previous >= nodes as u64 {
                    return Err(corrupt("upload node out of range"));
                }
                ids.push(previous as u32);
            }
            let mut self_value = Vec::with_capacity(k);
            for _ in 0..k {
                self_value.push(r.varint()?);
            }
            uploads.push(ChunkUpload {
                from,
                until,
                sample_rate,
                aggregation,
                units,
                spy_name,
                nodes: ids,
                self_value,
            });
        }
        if !r.bytes.is_empty() {
            return Err(corrupt("trailing bytes in chunk"));
        }
        Ok(Chunk { symbols, parent, symbol, uploads })
    }

    /// The tree of upload `index`, canonical (as `CallTree::to_flat` builds it).
    pub fn tree(&self, index: usize) -> FlatTree {
        self.tree_with(index, &mut Scratch::default())
    }

    fn tree_with(&self, index: usize, scratch: &mut Scratch) -> FlatTree {
        let upload = &self.uploads[index];
        scratch.prepare(self.parent.len(), self.symbols.len());
        let generation = scratch.next_generation();
        // The upload's nodes: those with self samples, their ancestors and the root.
        let mut ids: Vec<u32> = vec![0];
        scratch.mark[0] = generation;
        for &node in &upload.nodes {
            let mut cursor = node;
            while scratch.mark[cursor as usize] != generation {
                scratch.mark[cursor as usize] = generation;
                ids.push(cursor);
                cursor = self.parent[cursor as usize];
            }
        }
        // Preorder ids: ascending order is the canonical layout of this subset.
        ids.sort_unstable();
        let mut tree = FlatTree::default();
        for (local, &id) in ids.iter().enumerate() {
            scratch.local[id as usize] = local as u32;
            let s = self.symbol[id as usize] as usize;
            if scratch.symbol_mark[s] != generation {
                scratch.symbol_mark[s] = generation;
                scratch.symbol_local[s] = tree.names.len() as u32;
                tree.names.push(self.symbols[s].clone());
            }
            tree.name.push(scratch.symbol_local[s]);
            tree.parent.push(if id == 0 { 0 } else { scratch.local[self.parent[id as usize] as usize] });
        }
        tree.self_value = vec![0; ids.len()];
        for (&node, &value) in upload.nodes.iter().zip(&upload.self_value) {
            tree.self_value[scratch.local[node as usize] as usize] = value;
        }
        tree.total = tree.self_value.clone();
        for i in (1..ids.len()).rev() {
            let p = tree.parent[i] as usize;
            tree.total[p] = tree.total[p].saturating_add(tree.total[i]);
        }
        tree
    }

    /// Every upload of the chunk as an [`Upload`] of `key`.
    pub fn into_uploads(self, key: &SeriesKey) -> Vec<Upload> {
        let mut scratch = Scratch::default();
        (0..self.uploads.len())
            .map(|i| {
                let tree = self.tree_with(i, &mut scratch);
                let u = &self.uploads[i];
                Upload {
                    meta: ProfileMeta {
                        series: key.clone(),
                        from: u.from,
                        until: u.until,
                        units: u.units.clone(),
                        sample_rate: u.sample_rate,
                        spy_name: u.spy_name.clone(),
                        aggregation: u.aggregation,
                    },
                    tree,
                }
            })
            .collect()
    }
}

/// Per-node and per-symbol work arrays reused across the uploads of a chunk; generation
/// stamps instead of clearing them for every upload.
#[derive(Default)]
struct Scratch {
    generation: u32,
    mark: Vec<u32>,
    local: Vec<u32>,
    symbol_mark: Vec<u32>,
    symbol_local: Vec<u32>,
}

impl Scratch {
    fn prepare(&mut self, nodes: usize, symbols: usize) {
        if self.mark.len() < nodes {
            self.mark.resize(nodes, 0);
            self.local.resize(nodes, 0);
        }
        if self.symbol_mark.len() < symbols {
            self.symbol_mark.resize(symbols, 0);
            self.symbol_local.resize(symbols, 0);
        }
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.mark.fill(0);
            self.symbol_mark.fill(0);
            self.generation = 1;
        }
        self.generation
    }
}

fn encode_chunk(uploads: &[&Upload]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(&Chunk::from_uploads(uploads).encode())
}

/// Checks and decompresses a chunk as stored; returns it as a [`Chunk`] whatever its version.
pub fn read_chunk(entry: &SeriesEntry, compressed: &[u8]) -> Result<Chunk, CorruptBlock> {
    if crc32fast::hash(compressed) != entry.crc {
        return Err(corrupt("chunk checksum mismatch"));
    }
    let raw = lz4_flex::decompress_size_prepended(compressed).map_err(|e| corrupt(format!("chunk: {e}")))?;
    match entry.format {
        2 => Chunk::decode(&raw),
        1 => {
            let uploads = decode_chunk_v1(&entry.key, &raw)?;
            Ok(Chunk::from_uploads(&uploads.iter().collect::<Vec<_>>()))
        }
        other => Err(corrupt(format!("chunk format version {other}"))),
    }
}

/// Decodes one chunk (compressed bytes as stored) into the uploads of its series.
pub fn decode_chunk(entry: &SeriesEntry, compressed: &[u8]) -> Result<Vec<Upload>, CorruptBlock> {
    if entry.format == 1 {
        if crc32fast::hash(compressed) != entry.crc {
            return Err(corrupt("chunk checksum mismatch"));
        }
        let raw = lz4_flex::decompress_size_prepended(compressed).map_err(|e| corrupt(format!("chunk: {e}")))?;
        return decode_chunk_v1(&entry.key, &raw);
    }
    Ok(read_chunk(entry, compressed)?.into_uploads(&entry.key))
}

/// Reads a version 1 chunk (after decompression).
fn decode_chunk_v1(key: &SeriesKey, raw: &[u8]) -> Result<Vec<Upload>, CorruptBlock> {
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

/// Encodes uploads (any order, any series) into a data object; returns it with its index.
pub fn encode<'a>(uploads: impl IntoIterator<Item = &'a Upload>) -> (Vec<u8>, BlockIndex, Footer) {
    encode_with(uploads, encode_chunk, VERSION)
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

fn encode_footer(f: &Footer) -> Vec<u8> {
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
        uploads.extend(decode_chunk(e, &bytes[e.offset as usize..(e.offset + e.len) as usize])?);
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
