//! `settings.v1.SettingsService`: named string values per tenant (the Drilldown app keeps its
//! plugin settings there), one document per tenant in the store's object store
//! ([`Store::read_document`]): under the data directory, or in the bucket with S3 storage so
//! that every server sharing it sees the same settings; in cluster mode in the shared log's
//! key-value bucket (NATS's `kiln-settings`). Each change rewrites the tenant's document whole.

use std::collections::BTreeMap;

use super::messages::{DeleteSettingsRequest, Empty, GetSettingsResponse, Setting, SettingMessage};
use super::{Code, ConnectError};
use crate::api::AppError;
use crate::storage::Store;

/// The document kind settings are kept under.
const KIND: &str = "settings";
/// Longest setting name, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// Longest setting value, in bytes.
const MAX_VALUE_BYTES: usize = 64 << 10;
/// Settings one tenant may keep.
const MAX_SETTINGS_PER_TENANT: usize = 256;

/// Changes are read-modify-write of one document: one at a time in this server (between
/// servers on one bucket, the last write wins).
static WRITE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Settings = BTreeMap<String, Setting>;

async fn load(store: &Store, tenant: &str) -> Result<Settings, ConnectError> {
    match store.read_document(KIND, tenant).await.map_err(AppError::from)? {
        None => Ok(Settings::new()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ConnectError::from(AppError::Internal(format!("the settings of tenant `{tenant}` do not parse: {e}")))
        }),
    }
}

async fn save(store: &Store, tenant: &str, settings: &Settings) -> Result<(), ConnectError> {
    if settings.is_empty() {
        return Ok(store.delete_document(KIND, tenant).await.map_err(AppError::from)?);
    }
    let bytes = serde_json::to_vec_pretty(settings).map_err(|e| AppError::Internal(format!("settings: {e}")))?;
    Ok(store.write_document(KIND, tenant, bytes).await.map_err(AppError::from)?)
}

/// `Get`: every setting of the tenant, by name (`{}` when none: the client's defaults).
pub async fn get(store: &Store, tenant: &str, _request: Empty) -> Result<GetSettingsResponse, ConnectError> {
    Ok(GetSettingsResponse { settings: load(store, tenant).await?.into_values().collect() })
}

/// `Set`: stores the setting (stamped now when it carries no time) and answers it.
pub async fn set(store: &Store, tenant: &str, request: SettingMessage) -> Result<SettingMessage, ConnectError> {
    let mut setting = request.setting.ok_or_else(|| ConnectError::invalid("`setting` is required"))?;
    if setting.name.is_empty() || setting.name.len() > MAX_NAME_BYTES {
        return Err(ConnectError::invalid(format!("a setting's `name` is 1 to {MAX_NAME_BYTES} bytes")));
    }
    if setting.value.len() > MAX_VALUE_BYTES {
        return Err(ConnectError::new(
            Code::ResourceExhausted,
            format!("a setting's value is at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    if setting.modified_at <= 0 {
        setting.modified_at = crate::timespec::now_unix().saturating_mul(1000);
    }
    let _guard = WRITE_LOCK.lock().await;
    let mut settings = load(store, tenant).await?;
    if !settings.contains_key(&setting.name) && settings.len() >= MAX_SETTINGS_PER_TENANT {
        return Err(ConnectError::new(
            Code::ResourceExhausted,
            format!("at most {MAX_SETTINGS_PER_TENANT} settings per tenant"),
        ));
    }
    settings.insert(setting.name.clone(), setting.clone());
    save(store, tenant, &settings).await?;
    Ok(SettingMessage { setting: Some(setting) })
}

/// `Delete`: removes the setting; deleting one that is not there is not an error.
pub async fn delete(store: &Store, tenant: &str, request: DeleteSettingsRequest) -> Result<Empty, ConnectError> {
    if request.name.is_empty() {
        return Err(ConnectError::invalid("`name` is required"));
    }
    let _guard = WRITE_LOCK.lock().await;
    let mut settings = load(store, tenant).await?;
    if settings.remove(&request.name).is_some() {
        save(store, tenant, &settings).await?;
    }
    Ok(Empty {})
}
