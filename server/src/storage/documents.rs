//! Small documents kept beside the blocks, in the same object store: under the data directory,
//! or in the bucket with S3 storage so that every server sharing it reads the same. What the
//! API keeps per tenant besides profiles (the settings of Pyroscope's clients) lives here, one
//! object per kind and tenant, replaced whole: a put is atomic on both backends (the local one
//! writes a temporary file, syncs it and renames it).
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

impl Store {
    /// The tenant's document of this kind, `None` when there is none.
    pub async fn read_document(&self, kind: &str, tenant: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.inner.objects.get(&path(kind, tenant)).await {
            Ok(found) => Ok(Some(found.bytes().await?.to_vec())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the tenant's document of this kind.
    pub async fn write_document(&self, kind: &str, tenant: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.inner.objects.put(&path(kind, tenant), PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Removes the tenant's document of this kind (none is not an error).
    pub async fn delete_document(&self, kind: &str, tenant: &str) -> Result<(), StorageError> {
        match self.inner.objects.delete(&path(kind, tenant)).await {
            Err(e) if !is_not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }
}
