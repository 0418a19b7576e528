//! Chunks: the uploads of one series in one block over one shared stack tree (format version 2,
//! see the module above for the layout), and reading a chunk as stored whatever its version.

use std::sync::Arc;

use kiln_model::{FlatTree, ROOT_NAME, SeededMap};

use super::legacy::decode_chunk_v1;
use super::varint::{Reader, Writer};
use super::{CorruptBlock, SeriesEntry, corrupt};
use crate::storage::{Aggregation, ProfileMeta, SeriesKey, Upload};

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
    /// Its facts, without samples.
    fn clone_facts(&self) -> ChunkUpload {
        ChunkUpload {
            from: self.from,
            until: self.until,
            sample_rate: self.sample_rate,
            aggregation: self.aggregation,
            units: self.units.clone(),
            spy_name: self.spy_name.clone(),
            nodes: Vec::new(),
            self_value: Vec::new(),
        }
    }

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
    /// Builds the chunk of `uploads` (one series, in the order given), canonical.
    pub fn from_uploads(uploads: &[&Upload]) -> Chunk {
        let mut builder = ChunkBuilder::default();
        for upload in uploads {
            builder.add(upload);
        }
        builder.chunk.canonical()
    }

    /// The same uploads in canonical order: nodes in preorder with siblings sorted by name,
    /// names numbered by first use, so that the same samples always give the same bytes. Nodes
    /// on no upload's path (left by uploads dropped from a head) are left out. Upload order is
    /// kept.
    pub fn canonical(&self) -> Chunk {
        let (parent, symbol, symbols) = (&self.parent, &self.symbol, &self.symbols);
        // Live nodes: the root and every ancestor of a node with self samples.
        let mut live = vec![false; parent.len()];
        live[0] = true;
        for upload in &self.uploads {
            for &node in &upload.nodes {
                let mut cursor = node as usize;
                while !live[cursor] {
                    live[cursor] = true;
                    cursor = parent[cursor] as usize;
                }
            }
        }
        let mut kids: Vec<Vec<u32>> = vec![Vec::new(); parent.len()];
        for i in 1..parent.len() {
            if live[i] {
                kids[parent[i] as usize].push(i as u32);
            }
        }
        for list in &mut kids {
            list.sort_by(|a, b| symbols[symbol[*a as usize] as usize].cmp(&symbols[symbol[*b as usize] as usize]));
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
                chunk.symbols.push(symbols[symbol[node as usize] as usize].clone());
            }
            chunk.symbol.push(*s);
            stack.extend(kids[node as usize].iter().rev());
        }
        chunk.uploads = self
            .uploads
            .iter()
            .map(|upload| {
                let mut own: Vec<(u32, u64)> =
                    upload.nodes.iter().zip(&upload.self_value).map(|(&n, &v)| (new_id[n as usize], v)).collect();
                own.sort_unstable_by_key(|&(n, _)| n);
                let (nodes, self_value) = own.into_iter().unzip();
                ChunkUpload { nodes, self_value, ..upload.clone_facts() }
            })
            .collect();
        chunk
    }

    /// The chunk's bytes before compression (version 2).
    pub(super) fn encode(&self) -> Vec<u8> {
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
    pub(super) fn decode(raw: &[u8]) -> Result<Chunk, CorruptBlock> {
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

/// Builds a chunk one upload at a time, as the head does at insert: each upload's call paths
/// join the series' stack tree (a hash lookup per distinct node, none per sample), and the
/// upload keeps only its (node, self value) pairs. Nodes are numbered as they first appear, so
/// every parent comes before its children but the order is not canonical:
/// [`Chunk::canonical`] gives the order blocks store.
///
/// The chunk sits behind an `Arc`: a query takes a snapshot for the price of a reference
/// count, and the next insert after it copies the chunk once (copy on write) instead of
/// queries holding the head's lock while they merge.
#[derive(Clone)]
pub struct ChunkBuilder {
    chunk: Arc<Chunk>,
    symbol_of: SeededMap<Box<str>, u32>,
    children: SeededMap<(u32, u32), u32>,
}

impl Default for ChunkBuilder {
    fn default() -> ChunkBuilder {
        let root =
            Chunk { symbols: vec![ROOT_NAME.to_string()], parent: vec![0], symbol: vec![0], uploads: Vec::new() };
        let mut symbol_of = SeededMap::default();
        symbol_of.insert(ROOT_NAME.into(), 0);
        ChunkBuilder { chunk: Arc::new(root), symbol_of, children: SeededMap::default() }
    }
}

impl ChunkBuilder {
    /// Adds `upload` to the chunk; returns roughly how many bytes of memory that took.
    pub fn add(&mut self, upload: &Upload) -> u64 {
        let Self { chunk, symbol_of, children } = self;
        let chunk = Arc::make_mut(chunk);
        let tree = &upload.tree;
        let mut bytes = 0u64;
        // Each of the tree's names is hashed once, then nodes go by (parent, symbol) ids.
        let symbols_before = chunk.symbols.len();
        let names: Vec<u32> = tree.names.iter().map(|name| intern(chunk, symbol_of, name)).collect();
        bytes += chunk.symbols[symbols_before..].iter().map(|name| 2 * name.len() as u64 + 64).sum::<u64>();
        let nodes_before = chunk.parent.len();
        let mut mapped: Vec<u32> = Vec::with_capacity(tree.len());
        let mut own: Vec<(u32, u64)> = Vec::new();
        for i in 0..tree.len() {
            let node = if i == 0 {
                0
            } else {
                child(chunk, children, mapped[tree.parent[i] as usize], names[tree.name[i] as usize])
            };
            mapped.push(node);
            if tree.self_value[i] > 0 {
                own.push((node, tree.self_value[i]));
            }
        }
        bytes += (chunk.parent.len() - nodes_before) as u64 * 32;
        let (nodes, self_value) = ascending_pairs(own);
        let meta = &upload.meta;
        bytes += 96 + meta.units.len() as u64 + meta.spy_name.len() as u64 + nodes.len() as u64 * 12;
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
        bytes
    }

    /// Adds every upload of `other` (a chunk of the same series, as compaction merges
    /// blocks): its stack tree joins this one node by node, its uploads keep their pairs.
    pub fn add_chunk(&mut self, other: &Chunk) {
        let Self { chunk, symbol_of, children } = self;
        let chunk = Arc::make_mut(chunk);
        let names: Vec<u32> = other.symbols.iter().map(|name| intern(chunk, symbol_of, name)).collect();
        // Every parent comes before its children (a chunk's reader checks it), so one pass
        // maps each node after its parent.
        let mut mapped: Vec<u32> = Vec::with_capacity(other.parent.len());
        for i in 0..other.parent.len() {
            let node = if i == 0 {
                0
            } else {
                child(chunk, children, mapped[other.parent[i] as usize], names[other.symbol[i] as usize])
            };
            mapped.push(node);
        }
        for upload in &other.uploads {
            let own = upload.nodes.iter().zip(&upload.self_value).map(|(&n, &v)| (mapped[n as usize], v)).collect();
            let (nodes, self_value) = ascending_pairs(own);
            chunk.uploads.push(ChunkUpload { nodes, self_value, ..upload.clone_facts() });
        }
    }

    /// The chunk as it is now (not canonical), shared.
    pub fn snapshot(&self) -> Arc<Chunk> {
        self.chunk.clone()
    }

    /// The chunk as it is now.
    pub fn chunk(&self) -> &Chunk {
        &self.chunk
    }

    /// Keeps only the uploads `keep` accepts (their nodes stay until the chunk is made
    /// canonical).
    pub fn retain_uploads(&mut self, keep: impl FnMut(&ChunkUpload) -> bool) {
        Arc::make_mut(&mut self.chunk).uploads.retain(keep);
    }
}

/// (node, self value) pairs as an upload keeps them: nodes ascending, each once (two siblings
/// of one name in a hand-built tree are one path here, their values added).
fn ascending_pairs(mut own: Vec<(u32, u64)>) -> (Vec<u32>, Vec<u64>) {
    own.sort_unstable_by_key(|&(n, _)| n);
    let (mut nodes, mut self_value): (Vec<u32>, Vec<u64>) =
        (Vec::with_capacity(own.len()), Vec::with_capacity(own.len()));
    for (n, v) in own {
        if nodes.last() == Some(&n) {
            let last = self_value.last_mut().expect("a value");
            *last = last.saturating_add(v);
        } else {
            nodes.push(n);
            self_value.push(v);
        }
    }
    (nodes, self_value)
}

/// The symbol of `name` in `chunk`, added when new.
fn intern(chunk: &mut Chunk, symbol_of: &mut SeededMap<Box<str>, u32>, name: &str) -> u32 {
    if let Some(&id) = symbol_of.get(name) {
        return id;
    }
    let id = chunk.symbols.len() as u32;
    chunk.symbols.push(name.to_string());
    symbol_of.insert(name.into(), id);
    id
}

/// The child of `parent` named `symbol` in `chunk`, added when new.
fn child(chunk: &mut Chunk, children: &mut SeededMap<(u32, u32), u32>, parent: u32, symbol: u32) -> u32 {
    *children.entry((parent, symbol)).or_insert_with(|| {
        chunk.parent.push(parent);
        chunk.symbol.push(symbol);
        (chunk.parent.len() - 1) as u32
    })
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

pub(super) fn encode_chunk(uploads: &[&Upload]) -> Vec<u8> {
    compress(&Chunk::from_uploads(uploads).encode())
}

/// A chunk's bytes as stored.
pub(super) fn compress(raw: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(raw)
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
