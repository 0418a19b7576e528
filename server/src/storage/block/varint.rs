//! The block format's byte writer and reader: little-endian fixed-width integers, LEB128
//! varints, zigzag varints and length-prefixed strings, every read checked against the end.

use super::{CorruptBlock, corrupt};

pub(super) struct Writer {
    pub(super) out: Vec<u8>,
}

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
    pub(super) fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    pub(super) fn vstr(&mut self, v: &str) {
        self.varint(v.len() as u64);
        self.out.extend_from_slice(v.as_bytes());
    }
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptBlock> {
        if self.bytes.len() < n {
            return Err(corrupt("chunk ends early"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, CorruptBlock> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, CorruptBlock> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub(super) fn u64(&mut self) -> Result<u64, CorruptBlock> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    pub(super) fn i64(&mut self) -> Result<i64, CorruptBlock> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    pub(super) fn count(&mut self, item_size: usize) -> Result<usize, CorruptBlock> {
        let n = self.u32()? as usize;
        // A count larger than the bytes left is damage, not a reason to allocate.
        if n.saturating_mul(item_size) > self.bytes.len() {
            return Err(corrupt("count exceeds the chunk"));
        }
        Ok(n)
    }
    pub(super) fn str(&mut self) -> Result<String, CorruptBlock> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("string is not UTF-8"))
    }
    #[inline]
    pub(super) fn varint(&mut self) -> Result<u64, CorruptBlock> {
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
    pub(super) fn zigzag(&mut self) -> Result<i64, CorruptBlock> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }
    /// A varint count of items of at least `item_size` bytes each.
    pub(super) fn vcount(&mut self, item_size: usize) -> Result<usize, CorruptBlock> {
        let n = self.varint()?;
        if n.saturating_mul(item_size as u64) > self.bytes.len() as u64 {
            return Err(corrupt("count exceeds the chunk"));
        }
        Ok(n as usize)
    }
    pub(super) fn vstr(&mut self) -> Result<String, CorruptBlock> {
        let n = self.vcount(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("string is not UTF-8"))
    }
}
