//! The write-ahead log: numbered segment files of checksummed records, each record holding
//! one request's uploads.
//!
//! Segments are `wal/<20-digit number>.wal`. Cutting the head into a block starts a new
//! segment (the "rotation", done on the writer thread between two batches, so every upload
//! is in exactly one of: the segments up to the sealed one, or the newer ones); once the
//! block is published, the sealed segments are deleted. A restart replays every remaining
//! segment in order.
//!
//! ```text
//! record  = length u32 LE | crc32 u32 LE (of payload) | payload
//! payload = [0xffffffff | key count u32 LE | key count × (key length u32 LE | key | seen at i64 LE)]
//!           count u32 LE | count × (meta length u32 LE | meta JSON | tree length u32 LE | tree)
//! ```
//!
//! The tree is `kiln_model::codec` bytes. The bracketed part holds the idempotency keys the
//! record's uploads were sent with; it is written only when there are keys (a count of
//! 0xffffffff uploads cannot otherwise occur), so records from before keys existed still read. A record is whole or ignored: a torn tail (a crash
//! mid-write) fails its length or checksum, is logged, and is cut off so that later appends
//! follow the last good record.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use kiln_model::codec;
use tokio::sync::oneshot;

use super::{ProfileMeta, Upload};

/// What one record holds: uploads, and the idempotency keys they were sent with (with the
/// time each was first seen), which become known exactly when the uploads become durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Record {
    pub keys: Vec<(String, i64)>,
    pub uploads: Vec<Upload>,
}

impl Record {
    fn extend(&mut self, other: Record) {
        self.keys.extend(other.keys);
        self.uploads.extend(other.uploads);
    }
}

const KEYS_MARKER: u32 = u32::MAX;

/// Log failures.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system refused.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The writer thread is gone (the store is shutting down).
    #[error("the log writer has stopped")]
    Stopped,
}

const HEADER: usize = 8;

/// A record's bytes: payload length, CRC of the payload, payload. Built by the appending
/// request, not by the writer thread, so that encoding runs on every core and the writer only
/// writes and syncs.
pub(super) fn encode_record(record: &Record) -> Vec<u8> {
    // Written in place: a length placeholder before each part, patched once the part is out.
    fn length_prefixed(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        write(out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    let estimate: usize = record.uploads.iter().map(|u| 256 + u.tree.len() * 12).sum();
    let mut out = Vec::with_capacity(HEADER + 64 + estimate);
    out.extend_from_slice(&[0; HEADER]);
    if !record.keys.is_empty() {
        out.extend_from_slice(&KEYS_MARKER.to_le_bytes());
        out.extend_from_slice(&(record.keys.len() as u32).to_le_bytes());
        for (key, seen_at) in &record.keys {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&seen_at.to_le_bytes());
        }
    }
    out.extend_from_slice(&(record.uploads.len() as u32).to_le_bytes());
    for upload in &record.uploads {
        length_prefixed(&mut out, |out| serde_json::to_writer(out, &upload.meta).expect("meta serializes"));
        length_prefixed(&mut out, |out| out.extend_from_slice(&codec::encode(&upload.tree)));
    }
    let payload_len = (out.len() - HEADER) as u32;
    let crc = crc32fast::hash(&out[HEADER..]);
    out[..4].copy_from_slice(&payload_len.to_le_bytes());
    out[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode_payload(mut payload: &[u8]) -> Option<Record> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Some(head)
    }
    fn len(bytes: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
    }
    let mut count = len(&mut payload)?;
    let mut keys = Vec::new();
    if count == KEYS_MARKER as usize {
        for _ in 0..len(&mut payload)? {
            let key_len = len(&mut payload)?;
            let key = String::from_utf8(take(&mut payload, key_len)?.to_vec()).ok()?;
            let seen_at = i64::from_le_bytes(take(&mut payload, 8)?.try_into().ok()?);
            keys.push((key, seen_at));
        }
        count = len(&mut payload)?;
    }
    let mut uploads = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let meta_len = len(&mut payload)?;
        let meta: ProfileMeta = serde_json::from_slice(take(&mut payload, meta_len)?).ok()?;
        let tree_len = len(&mut payload)?;
        let tree = codec::decode(take(&mut payload, tree_len)?).ok()?;
        uploads.push(Upload { meta, tree });
    }
    payload.is_empty().then_some(Record { keys, uploads })
}

/// Decodes the good records at the start of `bytes`: what they hold, how many bytes they
/// span and how many records there are. Decoding stops at the first damaged record.
fn decode_records(bytes: &[u8]) -> (Record, usize, usize) {
    let mut decoded = Record::default();
    let mut offset = 0usize;
    let mut records = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let good = (|| {
            let header = rest.get(..HEADER)?;
            let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
            let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
            let payload = rest.get(HEADER..HEADER + len)?;
            if crc32fast::hash(payload) != crc {
                return None;
            }
            Some((HEADER + len, decode_payload(payload)?))
        })();
        let Some((used, record)) = good else { break };
        decoded.extend(record);
        offset += used;
        records += 1;
    }
    (decoded, offset, records)
}

/// One whole record (as [`encode_record`] makes it, from the shared log in cluster mode), or
/// `None` if the bytes are anything else.
pub(super) fn decode_record(bytes: &[u8]) -> Option<Record> {
    let (record, good, records) = decode_records(bytes);
    (records == 1 && good == bytes.len()).then_some(record)
}

/// Reads every good record of the log at `path` and cuts off a damaged tail.
pub(super) fn replay(path: &Path) -> Result<Record, WalError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Record::default()),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (replayed, good, records) = decode_records(&bytes);
    if good < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            offset = good,
            dropped_bytes = bytes.len() - good,
            "write-ahead log has a damaged tail (an interrupted write); keeping the {records} good records before it"
        );
        file.set_len(good as u64)?;
        file.sync_all()?;
    }
    tracing::info!(path = %path.display(), records, uploads = replayed.uploads.len(), "replayed write-ahead log");
    Ok(replayed)
}

/// Reads back what the sealed segments numbered `first..=last` hold, without changing them:
/// a frozen head that was dropped from memory, for its block or for a query. Segments
/// already deleted are simply not there: a reader checks afterwards that the head was not
/// published meanwhile. A damaged tail (tails are cut at start, so this is new damage) is
/// logged and the records before it are read.
pub(super) fn read_sealed(dir: &Path, first: u64, last: u64) -> Result<Record, WalError> {
    let mut read = Record::default();
    for seq in segments(dir)?.into_iter().filter(|s| (first..=last).contains(s)) {
        let path = segment_path(dir, seq);
        let bytes = std::fs::read(&path)?;
        let (record, good, _) = decode_records(&bytes);
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), offset = good, "a sealed write-ahead log segment is damaged; reading the records before the damage");
        }
        read.extend(record);
    }
    Ok(read)
}

/// Number and total size of the log's segments.
pub(super) fn usage(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .fold((0, 0), |(count, bytes), e| (count + 1, bytes + e.metadata().map_or(0, |m| m.len())))
}

type Ack = oneshot::Sender<Result<(), String>>;

enum Message {
    /// A record and its bytes.
    Append(Record, Vec<u8>, Ack),
    /// Start a new segment; answers with the number of the sealed one.
    Rotate(oneshot::Sender<Result<u64, String>>),
}

/// The path of segment `seq` in `dir`.
pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Segment numbers in `dir`, ascending.
pub(super) fn segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name.strip_suffix(".wal").and_then(|n| n.parse::<u64>().ok()) {
            found.push(seq);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Deletes the segments numbered `seq` or lower: their uploads are in published blocks.
pub(super) fn delete_through(dir: &Path, seq: u64) -> Result<(), WalError> {
    for old in segments(dir)?.into_iter().filter(|&s| s <= seq) {
        std::fs::remove_file(segment_path(dir, old))?;
    }
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The segments in `dir` numbered above `covered` (those up to it are already in blocks
/// and are deleted), with their sizes, and the highest segment number seen.
pub(super) fn pending_segments(dir: &Path, covered: Option<u64>) -> Result<(Vec<(u64, u64)>, u64), WalError> {
    let mut pending = Vec::new();
    let mut last = covered.unwrap_or(0);
    for seq in segments(dir)? {
        last = last.max(seq);
        let path = segment_path(dir, seq);
        if covered.is_some_and(|c| seq <= c) {
            tracing::info!(segment = seq, "write-ahead log segment is already in a block; deleting it");
            std::fs::remove_file(path)?;
            continue;
        }
        pending.push((seq, std::fs::metadata(&path)?.len()));
    }
    Ok((pending, last))
}

fn open_segment(dir: &Path, seq: u64) -> Result<File, io::Error> {
    let mut file = OpenOptions::new().create(true).append(true).open(segment_path(dir, seq))?;
    file.seek(SeekFrom::End(0))?;
    // The file's directory entry must be durable too, or a fresh segment can vanish.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// The single writer of the log. Appends queue on a channel; the writer thread takes every
/// queued append at once, writes them, fsyncs once, hands them to the head and then
/// acknowledges them: one sync per burst instead of one per upload.
pub(super) struct WalWriter {
    queue: mpsc::Sender<Message>,
}

impl WalWriter {
    /// Starts writing segment `first_seq` in `dir`. `on_durable` gets every synced batch;
    /// `on_rotate` runs on the same thread right after a segment is sealed, with its number.
    pub(super) fn start(
        dir: &Path,
        first_seq: u64,
        mut on_durable: impl FnMut(Record) + Send + 'static,
        mut on_rotate: impl FnMut(u64) + Send + 'static,
    ) -> Result<WalWriter, WalError> {
        let dir = dir.to_path_buf();
        let mut seq = first_seq;
        let mut file = open_segment(&dir, seq)?;
        let (queue, inbox) = mpsc::channel::<Message>();
        std::thread::Builder::new().name("kiln-wal".into()).spawn(move || {
            while let Ok(first) = inbox.recv() {
                let mut pending: Vec<(Record, Vec<u8>, Ack)> = Vec::new();
                for message in std::iter::once(first).chain(inbox.try_iter()) {
                    match message {
                        Message::Append(record, bytes, ack) => pending.push((record, bytes, ack)),
                        Message::Rotate(done) => {
                            // Appends queued before the rotation belong to the sealed segment.
                            write_batch(&mut file, std::mem::take(&mut pending), &mut on_durable);
                            match open_segment(&dir, seq + 1) {
                                Ok(next) => {
                                    file = next;
                                    seq += 1;
                                    on_rotate(seq - 1);
                                    let _ = done.send(Ok(seq - 1));
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot start a new write-ahead log segment");
                                    let _ = done.send(Err(e.to_string()));
                                }
                            }
                        }
                    }
                }
                write_batch(&mut file, pending, &mut on_durable);
            }
        })?;
        Ok(WalWriter { queue })
    }

    pub(super) async fn append(&self, record: Record) -> Result<(), WalError> {
        let (ack, done) = oneshot::channel();
        let bytes = encode_record(&record);
        self.queue.send(Message::Append(record, bytes, ack)).map_err(|_| WalError::Stopped)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(WalError::Io(io::Error::other(message))),
            Err(_) => Err(WalError::Stopped),
        }
    }

    /// Seals the current segment and starts the next; returns the sealed segment's number.
    pub(super) async fn rotate(&self) -> Result<u64, WalError> {
        let (ack, done) = oneshot::channel();
        self.queue.send(Message::Rotate(ack)).map_err(|_| WalError::Stopped)?;
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(message)) => Err(WalError::Io(io::Error::other(message))),
            Err(_) => Err(WalError::Stopped),
        }
    }
}

fn write_batch(file: &mut File, batch: Vec<(Record, Vec<u8>, Ack)>, on_durable: &mut impl FnMut(Record)) {
    if batch.is_empty() {
        return;
    }
    let mut buffer = Vec::with_capacity(batch.iter().map(|(_, bytes, _)| bytes.len()).sum());
    for (_, bytes, _) in &batch {
        buffer.extend_from_slice(bytes);
    }
    let before = file.metadata().map(|m| m.len()).ok();
    match file.write_all(&buffer).and_then(|()| file.sync_data()) {
        Ok(()) => {
            let (records, acks): (Vec<_>, Vec<_>) = batch.into_iter().map(|(record, _, ack)| (record, ack)).unzip();
            let mut durable = Record::default();
            for record in records {
                durable.extend(record);
            }
            on_durable(durable);
            for ack in acks {
                let _ = ack.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "write-ahead log append failed; uploads were not acknowledged");
            // A partial record would hide every later (acknowledged) one from replay.
            if let Some(len) = before
                && let Err(e) = file.set_len(len)
            {
                tracing::error!(error = %e, "cannot cut the failed write off the write-ahead log");
            }
            for (_, _, ack) in batch {
                let _ = ack.send(Err(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::upload;
    use super::*;

    #[test]
    fn records_round_trip_and_corruption_is_detected() {
        let batch = Record {
            keys: Vec::new(),
            uploads: vec![upload("a", &[(&["x", "y"], 4)], 10), upload("b", &[(&["z"], 1)], 20)],
        };
        let record = encode_record(&batch);
        assert_eq!(decode_payload(&record[HEADER..]).unwrap(), batch);
        let keyed = Record { keys: vec![("anonymous/k1".into(), 7), ("t/k2".into(), -3)], ..batch.clone() };
        assert_eq!(decode_payload(&encode_record(&keyed)[HEADER..]).unwrap(), keyed);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut bytes = record.clone();
        bytes.extend_from_slice(&record);
        let flip = record.len() + HEADER + 5;
        bytes[flip] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let replayed = replay(&path).unwrap();
        assert_eq!(replayed, batch, "the damaged second record is skipped");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), record.len() as u64, "and cut off");
    }

    #[test]
    fn torn_tail_is_cut_at_every_offset() {
        let record =
            encode_record(&Record { keys: vec![("k".into(), 1)], uploads: vec![upload("a", &[(&["x"], 1)], 10)] });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        for cut in 0..record.len() {
            let mut bytes = record.clone();
            bytes.extend_from_slice(&record[..cut]);
            std::fs::write(&path, &bytes).unwrap();
            let replayed = replay(&path).unwrap();
            assert_eq!((replayed.uploads.len(), replayed.keys.len()), (1, 1), "cut at {cut}");
        }
    }
}
