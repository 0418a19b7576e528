//! The compact binary tree format (version 1): how a [`FlatTree`] travels from the server to
//! the viewer and how the store keeps it on disk.
//!
//! JSON costs a parse and a node object per frame; a million-node tree in this format is four
//! little-endian columns the browser copies straight into vectors.
//!
//! ```text
//! magic      8 bytes  "KILNTREE"
//! version    u16      1
//! reserved   u16      0
//! names      u32      number of names
//! nodes      u32      number of nodes (preorder; node 0 is the root)
//! names × (u32 byte length, UTF-8 bytes)
//! parent     u32 × nodes
//! name       u32 × nodes
//! total      u64 × nodes
//! self       u64 × nodes
//! ```
//!
//! All integers are little-endian. A decoder rejects anything that does not describe a valid
//! tree (see [`FlatTree::validate`]), so a corrupt or hostile payload never reaches layout.

use crate::tree::FlatTree;

/// First bytes of every encoded tree.
pub const MAGIC: &[u8; 8] = b"KILNTREE";
/// The version this module writes and reads.
pub const VERSION: u16 = 1;
/// The media type the server answers with.
pub const CONTENT_TYPE: &str = "application/vnd.kiln.tree.v1";

/// Encodes a tree.
pub fn encode(tree: &FlatTree) -> Vec<u8> {
    let names_len: usize = tree.names.iter().map(|n| 4 + n.len()).sum();
    let mut out = Vec::with_capacity(20 + names_len + tree.len() * 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(tree.names.len() as u32).to_le_bytes());
    out.extend_from_slice(&(tree.len() as u32).to_le_bytes());
    for name in &tree.names {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    for v in &tree.parent {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in &tree.name {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in &tree.total {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in &tree.self_value {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid tree: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError("truncated".into()));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, DecodeError> {
        let raw = self.take(n.checked_mul(4).ok_or_else(|| DecodeError("too many nodes".into()))?)?;
        Ok(raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }

    fn u64s(&mut self, n: usize) -> Result<Vec<u64>, DecodeError> {
        let raw = self.take(n.checked_mul(8).ok_or_else(|| DecodeError("too many nodes".into()))?)?;
        Ok(raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    }
}

/// Decodes and validates a tree.
pub fn decode(bytes: &[u8]) -> Result<FlatTree, DecodeError> {
    let mut r = Reader { bytes };
    if r.take(8)? != MAGIC {
        return Err(DecodeError("not a Kiln tree (bad magic)".into()));
    }
    let version = u16::from_le_bytes(r.take(2)?.try_into().expect("2 bytes"));
    if version != VERSION {
        return Err(DecodeError(format!("unsupported version {version}")));
    }
    r.take(2)?;
    let name_count = r.u32()? as usize;
    let node_count = r.u32()? as usize;
    // Every name takes at least 4 bytes and every node 24: refuse counts the input cannot hold
    // before allocating for them.
    if name_count.saturating_mul(4).saturating_add(node_count.saturating_mul(24)) > r.bytes.len() {
        return Err(DecodeError("truncated".into()));
    }
    let mut names = Vec::with_capacity(name_count);
    for _ in 0..name_count {
        let len = r.u32()? as usize;
        let raw = r.take(len)?;
        names.push(String::from_utf8(raw.to_vec()).map_err(|_| DecodeError("name is not UTF-8".into()))?);
    }
    let tree = FlatTree {
        names,
        parent: r.u32s(node_count)?,
        name: r.u32s(node_count)?,
        total: r.u64s(node_count)?,
        self_value: r.u64s(node_count)?,
    };
    if !r.bytes.is_empty() {
        return Err(DecodeError("trailing bytes".into()));
    }
    tree.validate().map_err(DecodeError)?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::CallTree;
    use proptest::prelude::*;

    fn sample() -> FlatTree {
        let mut tree = CallTree::new();
        tree.add_stack(["main", "parse", "<script>ü"], 5);
        tree.add_stack(["main", "draw"], 3);
        tree.to_flat()
    }

    #[test]
    fn round_trips() {
        let tree = sample();
        assert_eq!(decode(&encode(&tree)).unwrap(), tree);
    }

    #[test]
    fn empty_tree_round_trips() {
        let tree = CallTree::new().to_flat();
        assert_eq!(decode(&encode(&tree)).unwrap(), tree);
    }

    #[test]
    fn rejects_bad_magic_version_truncation_and_inconsistent_totals() {
        let bytes = encode(&sample());
        assert!(decode(b"NOTATREE").is_err());
        let mut wrong_version = bytes.clone();
        wrong_version[8] = 9;
        assert!(decode(&wrong_version).unwrap_err().0.contains("version"));
        for cut in [10, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_total = bytes.clone();
        let last = wrong_total.len() - 1;
        wrong_total[last - 7] ^= 1;
        assert!(decode(&wrong_total).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn single_bit_flips_never_panic(flip in 0usize..2000) {
            let mut bytes = encode(&sample());
            let i = flip % (bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            let _ = decode(&bytes);
        }
    }
}
