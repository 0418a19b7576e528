//! `settings.v1.SettingsService`: named string values per tenant (the Drilldown app keeps its
//! plugin settings there), one document per tenant in the store's object store
//! ([`Store::read_document`]): under the data directory, or in the bucket with S3 storage so
//! that every server sharing it sees the same settings; in cluster mode in the shared log's
//! key-value bucket (NATS's `kiln-settings`). Each change rewrites the tenant's document whole,
//! compare-and-set in cluster mode (a change another server made meanwhile is kept).

use std::collections::BTreeMap;

use super::messages::{DeleteSettingsRequest, Empty, GetSettingsResponse, Setting, SettingMessage};
use super::{Code, ConnectError};
use crate::api::AppError;
use crate::storage::{DocumentVersion, Store};

/// The document kind settings are kept under.
const KIND: &str = "settings";
/// Longest setting name, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// Longest setting value, in bytes.
const MAX_VALUE_BYTES: usize = 64 << 10;
/// Settings one tenant may keep.
const MAX_SETTINGS_PER_TENANT: usize = 256;

/// Changes are read-modify-write of one document: one at a time in this server; between
/// servers, the write is compare-and-set (cluster mode), retried this often.
static WRITE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Attempts of one change while other servers keep changing the same tenant's settings.
const WRITE_ATTEMPTS: u32 = 20;

type Settings = BTreeMap<String, Setting>;

async fn load(store: &Store, tenant: &str) -> Result<(Settings, DocumentVersion), ConnectError> {
    let (bytes, version) = store.read_document(KIND, tenant).await.map_err(AppError::from)?;
    let settings = match bytes {
        None => Settings::new(),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ConnectError::from(AppError::Internal(format!("the settings of tenant `{tenant}` do not parse: {e}")))
        })?,
    };
    Ok((settings, version))
}

/// Applies `change` to the tenant's settings and saves them, if it changed them. When another
/// server saved the tenant's settings since they were read, they are read again and `change`
/// applied again: every change made at the same time on several servers is kept.
async fn update(
    store: &Store,
    tenant: &str,
    mut change: impl FnMut(&mut Settings) -> Result<bool, ConnectError>,
) -> Result<(), ConnectError> {
    let _guard = WRITE_LOCK.lock().await;
    for attempt in 0..WRITE_ATTEMPTS {
        let (mut settings, version) = load(store, tenant).await?;
        if !change(&mut settings)? {
            return Ok(());
        }
        let bytes = if settings.is_empty() {
            None
        } else {
            Some(serde_json::to_vec_pretty(&settings).map_err(|e| AppError::Internal(format!("settings: {e}")))?)
        };
        if store.write_document(KIND, tenant, bytes, version).await.map_err(AppError::from)? {
            return Ok(());
        }
        // Lost a race with another server: let it finish before reading again.
        tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(attempt + 1))).await;
    }
    Err(ConnectError::new(
        Code::Unavailable,
        format!("the settings of tenant `{tenant}` kept changing on other servers during this change; try again"),
    ))
}

/// `Get`: every setting of the tenant, by name (`{}` when none: the client's defaults).
pub async fn get(store: &Store, tenant: &str, _request: Empty) -> Result<GetSettingsResponse, ConnectError> {
    Ok(GetSettingsResponse { settings: load(store, tenant).await?.0.into_values().collect() })
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
    update(store, tenant, |settings| {
        if !settings.contains_key(&setting.name) && settings.len() >= MAX_SETTINGS_PER_TENANT {
            return Err(ConnectError::new(
                Code::ResourceExhausted,
                format!("at most {MAX_SETTINGS_PER_TENANT} settings per tenant"),
            ));
        }
        settings.insert(setting.name.clone(), setting.clone());
        Ok(true)
    })
    .await?;
    Ok(SettingMessage { setting: Some(setting) })
}

/// `Delete`: removes the setting; deleting one that is not there is not an error.
pub async fn delete(store: &Store, tenant: &str, request: DeleteSettingsRequest) -> Result<Empty, ConnectError> {
    if request.name.is_empty() {
        return Err(ConnectError::invalid("`name` is required"));
    }
    update(store, tenant, |settings| Ok(settings.remove(&request.name).is_some())).await?;
    Ok(Empty {})
}
