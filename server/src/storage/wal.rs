//! The write-ahead log: one file of checksummed records, each holding one request's uploads.
//!
//! ```text
//! record  = length u32 LE | crc32 u32 LE (of payload) | payload
//! payload = count u32 LE | count × (meta length u32 LE | meta JSON | tree length u32 LE | tree)
//! ```
//!
//! The tree is `kiln_model::codec` bytes. A record is whole or ignored: a torn tail (a crash
//! mid-write) fails its length or checksum, is logged, and is cut off so that later appends
//! follow the last good record.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc;

use kiln_model::codec;
use tokio::sync::oneshot;

use super::{ProfileMeta, Upload};

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

fn encode_record(uploads: &[Upload]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&(uploads.len() as u32).to_le_bytes());
    for upload in uploads {
        let meta = serde_json::to_vec(&upload.meta).expect("meta serializes");
        let tree = codec::encode(&upload.tree);
        payload.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        payload.extend_from_slice(&meta);
        payload.extend_from_slice(&(tree.len() as u32).to_le_bytes());
        payload.extend_from_slice(&tree);
    }
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

fn decode_payload(mut payload: &[u8]) -> Option<Vec<Upload>> {
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
    let count = len(&mut payload)?;
    let mut uploads = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let meta_len = len(&mut payload)?;
        let meta: ProfileMeta = serde_json::from_slice(take(&mut payload, meta_len)?).ok()?;
        let tree_len = len(&mut payload)?;
        let tree = codec::decode(take(&mut payload, tree_len)?).ok()?;
        uploads.push(Upload { meta, tree });
    }
    payload.is_empty().then_some(uploads)
}

/// Reads every good record of the log at `path` and cuts off a damaged tail.
pub(super) fn replay(path: &Path) -> Result<Vec<Upload>, WalError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut uploads = Vec::new();
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
        match good {
            Some((used, batch)) => {
                uploads.extend(batch);
                offset += used;
                records += 1;
            }
            None => {
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    dropped_bytes = bytes.len() - offset,
                    "write-ahead log has a damaged tail (an interrupted write); keeping the {records} good records before it"
                );
                file.set_len(offset as u64)?;
                file.sync_all()?;
                break;
            }
        }
    }
    tracing::info!(path = %path.display(), records, uploads = uploads.len(), "replayed write-ahead log");
    Ok(uploads)
}

type Ack = oneshot::Sender<Result<(), String>>;

/// The single writer of the log. Appends queue on a channel; the writer thread takes every
/// queued append at once, writes them, fsyncs once, hands them to the head and then
/// acknowledges them: one sync per burst instead of one per upload.
pub(super) struct WalWriter {
    queue: mpsc::Sender<(Vec<Upload>, Ack)>,
}

impl WalWriter {
    pub(super) fn start(
        path: &Path,
        mut on_durable: impl FnMut(Vec<Upload>) + Send + 'static,
    ) -> Result<WalWriter, WalError> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        file.seek(SeekFrom::End(0))?;
        if let Some(dir) = path.parent() {
            // The file's directory entry must be durable too, or a fresh log can vanish.
            File::open(dir)?.sync_all()?;
        }
        let (queue, inbox) = mpsc::channel::<(Vec<Upload>, Ack)>();
        std::thread::Builder::new().name("kiln-wal".into()).spawn(move || {
            while let Ok(first) = inbox.recv() {
                let mut batch = vec![first];
                batch.extend(inbox.try_iter());
                let mut buffer = Vec::new();
                for (uploads, _) in &batch {
                    buffer.extend_from_slice(&encode_record(uploads));
                }
                let written = file.write_all(&buffer).and_then(|()| file.sync_data());
                match written {
                    Ok(()) => {
                        let (uploads, acks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                        on_durable(uploads.into_iter().flatten().collect());
                        for ack in acks {
                            let _ = ack.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "write-ahead log append failed; uploads were not acknowledged");
                        for (_, ack) in batch {
                            let _ = ack.send(Err(e.to_string()));
                        }
                    }
                }
            }
        })?;
        Ok(WalWriter { queue })
    }

    pub(super) async fn append(&self, uploads: Vec<Upload>) -> Result<(), WalError> {
        let (ack, done) = oneshot::channel();
        self.queue.send((uploads, ack)).map_err(|_| WalError::Stopped)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(WalError::Io(io::Error::other(message))),
            Err(_) => Err(WalError::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::upload;
    use super::*;

    #[test]
    fn records_round_trip_and_corruption_is_detected() {
        let batch = vec![upload("a", &[(&["x", "y"], 4)], 10), upload("b", &[(&["z"], 1)], 20)];
        let record = encode_record(&batch);
        assert_eq!(decode_payload(&record[HEADER..]).unwrap(), batch);
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
        let record = encode_record(&[upload("a", &[(&["x"], 1)], 10)]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        for cut in 0..record.len() {
            let mut bytes = record.clone();
            bytes.extend_from_slice(&record[..cut]);
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(replay(&path).unwrap().len(), 1, "cut at {cut}");
        }
    }
}
