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
//! Two servers changing one tenant's document at the same moment: the last put wins.

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

impl Store {
    /// The tenant's document of this kind, `None` when there is none.
    pub async fn read_document(&self, kind: &str, tenant: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(cluster) = &self.inner.cluster
            && let Some(bytes) = cluster.log.get(&log_key(kind, tenant)).await.map_err(StorageError::Log)?
        {
            return Ok(Some(bytes.to_vec()));
        }
        match self.inner.objects.get(&path(kind, tenant)).await {
            Ok(found) => Ok(Some(found.bytes().await?.to_vec())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the tenant's document of this kind.
    pub async fn write_document(&self, kind: &str, tenant: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        if let Some(cluster) = &self.inner.cluster {
            let limit = cluster.log.max_record_bytes();
            if bytes.len() > limit {
                return Err(StorageError::TooLarge(format!(
                    "the {kind} of tenant `{tenant}` would be {} bytes, more than the shared log's message limit of {limit} bytes (NATS max_payload)",
                    bytes.len()
                )));
            }
            return cluster.log.put(&log_key(kind, tenant), bytes).await.map_err(StorageError::Log);
        }
        self.inner.objects.put(&path(kind, tenant), PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Removes the tenant's document of this kind (none is not an error).
    pub async fn delete_document(&self, kind: &str, tenant: &str) -> Result<(), StorageError> {
        if let Some(cluster) = &self.inner.cluster {
            // The object store's copy goes too (if one is left from before the cluster), or
            // reading would fall back to it.
            cluster.log.delete(&log_key(kind, tenant)).await.map_err(StorageError::Log)?;
        }
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
