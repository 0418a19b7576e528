//! `settings.v1.SettingsService`: named string values per tenant (the Drilldown app keeps its
//! plugin settings there), stored in one small file in the data directory, rewritten whole and
//! atomically (temporary file, fsync, rename, fsync of the directory) on every change.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::messages::{DeleteSettingsRequest, Empty, GetSettingsResponse, Setting, SettingMessage};
use super::{Code, ConnectError};

/// Longest setting name, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// Longest setting value, in bytes.
const MAX_VALUE_BYTES: usize = 64 << 10;
/// Settings one tenant may keep.
const MAX_SETTINGS_PER_TENANT: usize = 256;

/// Changes are read-modify-write of one file: one at a time.
static WRITE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type AllSettings = BTreeMap<String, BTreeMap<String, Setting>>;

fn file(dir: &Path) -> PathBuf {
    dir.join("settings.json")
}

fn internal(what: &str, e: impl std::fmt::Display) -> ConnectError {
    tracing::error!(error = %e, "settings: {what}");
    ConnectError::new(Code::Internal, "internal error; see the server log")
}

async fn load(dir: &Path) -> Result<AllSettings, ConnectError> {
    match tokio::fs::read(file(dir)).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| internal("settings.json is not readable", e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AllSettings::new()),
        Err(e) => Err(internal("reading settings.json", e)),
    }
}

async fn save(dir: &Path, all: &AllSettings) -> Result<(), ConnectError> {
    let bytes = serde_json::to_vec_pretty(all).map_err(|e| internal("encoding settings", e))?;
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let tmp = dir.join("settings.json.tmp");
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&tmp, file(&dir))?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(|e| internal("writing settings.json", e))?
    .map_err(|e| internal("writing settings.json", e))
}

/// `Get`: every setting of the tenant, by name (`{}` when none: the client's defaults).
pub async fn get(dir: &Path, tenant: &str, _request: Empty) -> Result<GetSettingsResponse, ConnectError> {
    let all = load(dir).await?;
    Ok(GetSettingsResponse { settings: all.get(tenant).map(|s| s.values().cloned().collect()).unwrap_or_default() })
}

/// `Set`: stores the setting (stamped now when it carries no time) and answers it.
pub async fn set(dir: &Path, tenant: &str, request: SettingMessage) -> Result<SettingMessage, ConnectError> {
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
    let mut all = load(dir).await?;
    let mine = all.entry(tenant.to_string()).or_default();
    if !mine.contains_key(&setting.name) && mine.len() >= MAX_SETTINGS_PER_TENANT {
        return Err(ConnectError::new(
            Code::ResourceExhausted,
            format!("at most {MAX_SETTINGS_PER_TENANT} settings per tenant"),
        ));
    }
    mine.insert(setting.name.clone(), setting.clone());
    save(dir, &all).await?;
    Ok(SettingMessage { setting: Some(setting) })
}

/// `Delete`: removes the setting; deleting one that is not there is not an error.
pub async fn delete(dir: &Path, tenant: &str, request: DeleteSettingsRequest) -> Result<Empty, ConnectError> {
    if request.name.is_empty() {
        return Err(ConnectError::invalid("`name` is required"));
    }
    let _guard = WRITE_LOCK.lock().await;
    let mut all = load(dir).await?;
    let removed = all.get_mut(tenant).and_then(|mine| mine.remove(&request.name)).is_some();
    if removed {
        all.retain(|_, mine| !mine.is_empty());
        save(dir, &all).await?;
    }
    Ok(Empty {})
}
