//! Small documents kept beside the blocks, in the same object store: under the data directory,
//! or in the bucket with S3 storage so that every server sharing it reads the same. What the
//! API keeps per tenant besides profiles (the settings of Pyroscope's clients) lives here, one
//! object per kind and tenant, replaced whole: a put is atomic on both backends (the local one
//! writes a temporary file, syncs it and renames it).
//!
//! In cluster mode documents live in the shared log's key-value bucket instead (NATS's
//! `kiln-settings`), under `<kind>.<tenant>`: replicated with the log, and read by every
//! server at once. A document kept in the object store before the cluster was started is
//! still read until the first change writes it to the bucket.
//!
//! Two servers changing one tenant's document at the same moment: in cluster mode the second
//! write is refused (it was made on a version that is gone) and its change is redone on the
//! first's; without a cluster, the last put wins.

use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{ObjectStoreExt, PutPayload};

use super::{StorageError, Store, is_not_found};

/// Top-level prefix of every document (blocks are under `blocks/`).
const DOCUMENTS: &str = "documents";

fn path(kind: &str, tenant: &str) -> ObjectPath {
    // Tenant ids are checked at the edge; `PathPart` escapes whatever a path could not hold.
    ObjectPath::from_iter([PathPart::from(DOCUMENTS), PathPart::from(kind), PathPart::from(format!("{tenant}.json"))])
}

/// The key of a document in the shared log's key-value bucket. Keys there may hold letters,
/// digits and `-_/=.` (dots separate tokens, which may not be empty); tenant ids may also
/// hold `!*'()` and dots, written as `=XX` (their byte in hex; `=` is in no tenant id).
fn log_key(kind: &str, tenant: &str) -> String {
    let mut key = format!("{kind}.");
    for byte in tenant.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            key.push(char::from(byte));
        } else {
            key.push_str(&format!("={byte:02X}"));
        }
    }
    key
}

/// The version of a document as read: write it back with it, and the write is refused if
/// another server changed the document since ([`Store::write_document`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentVersion(u64);

impl Store {
    /// The tenant's document of this kind (`None` when there is none), and its version.
    pub async fn read_document(
        &self,
        kind: &str,
        tenant: &str,
    ) -> Result<(Option<Vec<u8>>, DocumentVersion), StorageError> {
        let mut version = DocumentVersion(0);
        if let Some(cluster) = &self.inner.cluster {
            let document = cluster.log.get(&log_key(kind, tenant)).await.map_err(StorageError::Log)?;
            if let Some(bytes) = document.value {
                return Ok((Some(bytes.to_vec()), DocumentVersion(document.revision)));
            }
            version = DocumentVersion(document.revision);
        }
        match self.inner.objects.get(&path(kind, tenant)).await {
            Ok(found) => Ok((Some(found.bytes().await?.to_vec()), version)),
            Err(e) if is_not_found(&e) => Ok((None, version)),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the tenant's document of this kind (`None` removes it; none is not an error),
    /// if it is still at `read`, the version [`Store::read_document`] answered. Returns
    /// `false`, changing nothing, when it is not: read it again and redo the change.
    ///
    /// In cluster mode that is a compare-and-set on the key-value bucket, so changes made on
    /// several servers at once are never lost. Without a cluster it always writes: the caller
    /// serialises changes within the server, and servers sharing a bucket without a cluster
    /// overwrite each other's changes (the last write wins).
    pub async fn write_document(
        &self,
        kind: &str,
        tenant: &str,
        bytes: Option<Vec<u8>>,
        read: DocumentVersion,
    ) -> Result<bool, StorageError> {
        if let Some(cluster) = &self.inner.cluster {
            let limit = cluster.log.max_record_bytes();
            if let Some(bytes) = &bytes
                && bytes.len() > limit
            {
                return Err(StorageError::TooLarge(format!(
                    "the {kind} of tenant `{tenant}` would be {} bytes, more than the shared log's message limit of {limit} bytes (NATS max_payload)",
                    bytes.len()
                )));
            }
            let removed = bytes.is_none();
            if !cluster.log.put(&log_key(kind, tenant), bytes, read.0).await.map_err(StorageError::Log)? {
                return Ok(false);
            }
            if removed {
                // The object store's copy goes too (if one is left from before the cluster),
                // or reading would fall back to it.
                self.delete_stored_document(kind, tenant).await?;
            }
            return Ok(true);
        }
        match bytes {
            Some(bytes) => {
                self.inner.objects.put(&path(kind, tenant), PutPayload::from(bytes)).await?;
            }
            None => self.delete_stored_document(kind, tenant).await?,
        }
        Ok(true)
    }

    async fn delete_stored_document(&self, kind: &str, tenant: &str) -> Result<(), StorageError> {
        match self.inner.objects.delete(&path(kind, tenant)).await {
            Err(e) if !is_not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_key;

    #[test]
    fn every_tenant_id_makes_a_key_the_bucket_takes() {
        assert_eq!(log_key("settings", "team-a_1"), "settings.team-a_1");
        assert_eq!(log_key("settings", "Org.(prod)*"), "settings.Org=2E=28prod=29=2A");
        assert_eq!(log_key("settings", "..."), "settings.=2E=2E=2E");
        // Distinct tenants, distinct keys: `=` is not in tenant ids, so nothing else writes `=2E`.
        assert_ne!(log_key("settings", "a.b"), log_key("settings", "a_b"));
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_/=.".contains(c);
        assert!(log_key("settings", "!'()*.").chars().all(allowed));
    }
}
