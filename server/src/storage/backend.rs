//! Where blocks live: an [`ObjectStore`] on the local file system or on an S3-compatible
//! service, chosen by `--storage`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

/// Connection settings for S3-compatible storage; unset ones come from the `AWS_*`
/// environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL (`http://127.0.0.1:9000`); unset means AWS itself.
    pub endpoint: Option<String>,
    /// Region (`us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key: Option<String>,
    /// Secret access key.
    pub secret_key: Option<String>,
}

/// Where blocks go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    /// The data directory on the local file system (blocks under `blocks/`).
    #[default]
    Local,
    /// `s3://bucket/prefix`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
    },
}

impl Backend {
    /// Parses `--storage`: empty or `local` for the data directory, `s3://bucket[/prefix]`.
    pub fn parse(text: &str) -> Result<Backend, String> {
        let text = text.trim();
        if text.is_empty() || text == "local" {
            return Ok(Backend::Local);
        }
        let Some(rest) = text.strip_prefix("s3://") else {
            return Err(format!("`{text}`: storage is `local` or `s3://bucket/prefix`"));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{text}` names no bucket"));
        }
        Ok(Backend::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() })
    }

    /// Opens the object store; `data_dir` hosts the local backend.
    pub fn open(&self, data_dir: &Path, s3: &S3Options) -> Result<Arc<dyn ObjectStore>, String> {
        match self {
            Backend::Local => {
                let root = data_dir;
                std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
                // Blocks replace write-ahead-log segments, so they must be as durable.
                let store = LocalFileSystem::new_with_prefix(root).map_err(|e| e.to_string())?.with_fsync(true);
                Ok(Arc::new(store))
            }
            Backend::S3 { bucket, prefix } => {
                // Retries ride out a blip; an outage is the maintenance loop's to retry (frozen
                // heads wait in the log meanwhile). Capping the backoff means a store that
                // returns is noticed within seconds, and the timeout means a failure is
                // counted and logged within a minute instead of three.
                let retry = RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(5),
                        base: 2.0,
                    },
                    max_retries: 10,
                    retry_timeout: Duration::from_secs(60),
                };
                let mut builder =
                    AmazonS3Builder::from_env().with_bucket_name(bucket).with_allow_http(true).with_retry(retry);
                if let Some(endpoint) = &s3.endpoint {
                    // Self-hosted S3 services are addressed path-style (`host/bucket/key`).
                    builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &s3.access_key {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let store = builder.build().map_err(|e| format!("S3 bucket `{bucket}`: {e}"))?;
                if prefix.is_empty() {
                    Ok(Arc::new(store))
                } else {
                    Ok(Arc::new(PrefixStore::new(store, prefix.as_str())))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_parse() {
        assert_eq!(Backend::parse(""), Ok(Backend::Local));
        assert_eq!(Backend::parse("local"), Ok(Backend::Local));
        assert_eq!(Backend::parse("s3://b"), Ok(Backend::S3 { bucket: "b".into(), prefix: String::new() }));
        assert_eq!(Backend::parse("s3://b/p/q/"), Ok(Backend::S3 { bucket: "b".into(), prefix: "p/q".into() }));
        assert!(Backend::parse("s3:///x").is_err());
        assert!(Backend::parse("gs://b").is_err());
    }
}
