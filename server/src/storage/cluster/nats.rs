//! [`SharedLog`] on NATS JetStream: one stream (`KILN`) for uploads and cut markers, with
//! JetStream's duplicate window as the dedupe of idempotency keys (`Nats-Msg-Id`), and two
//! key-value buckets: `kiln-leases` (entries expire when not renewed) and `kiln-settings`.
//!
//! Written for nats-server 2.9 (Debian's): no feature of later servers is used.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::{CUTS, Document, Entries, Entry, LogConfig, LogError, Published, SharedLog, UPLOADS};

/// The stream's name.
const STREAM: &str = "KILN";
const LEASES: &str = "kiln-leases";
const SETTINGS: &str = "kiln-settings";
/// The longest a request to NATS may take before the caller hears it failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The log on a NATS server or cluster.
pub struct NatsLog {
    client: async_nats::Client,
    js: jetstream::Context,
    leases: kv::Store,
    settings: kv::Store,
}

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> LogError + '_ {
    move |e| LogError(format!("NATS {what}: {e}"))
}

impl NatsLog {
    /// Connects and makes sure the stream and buckets exist with `config`'s settings.
    /// Fails if NATS does not answer within about 20 s; once connected, the client
    /// reconnects by itself for as long as it takes.
    pub async fn connect(config: &LogConfig) -> Result<NatsLog, LogError> {
        // NATS and Kiln are often started together: give NATS a few seconds to come up.
        let mut attempt = 0;
        loop {
            match NatsLog::connect_once(config).await {
                Ok(log) => return Ok(log),
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, "cannot set up the shared log yet; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect_once(config: &LogConfig) -> Result<NatsLog, LogError> {
        let client = async_nats::ConnectOptions::new()
            .name("kiln")
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .max_reconnects(None)
            // The client parses one URL from a string; a list is a list of strings.
            .connect(config.urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect::<Vec<&str>>())
            .await
            .map_err(|e| failed("connect")(&e))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        let wanted = stream::Config {
            name: STREAM.to_string(),
            subjects: vec![format!("{UPLOADS}.*"), CUTS.to_string()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            duplicate_window: config.dedupe_window,
            ..Default::default()
        };
        match js.get_stream(STREAM).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| failed("stream info")(&e))?;
                if info.config.duplicate_window != config.dedupe_window || info.config.subjects != wanted.subjects {
                    let updated = stream::Config { num_replicas: info.config.num_replicas, ..wanted };
                    js.update_stream(updated).await.map_err(|e| failed("update stream")(&e))?;
                }
            }
            Err(_) => {
                // Another server may create it at the same moment: then getting it works.
                if let Err(e) = js.create_stream(wanted).await {
                    js.get_stream(STREAM).await.map_err(|_| failed("create stream")(&e))?;
                }
            }
        }
        let leases = bucket(&js, LEASES, config.lease_ttl, config.replicas).await?;
        let settings = bucket(&js, SETTINGS, Duration::ZERO, config.replicas).await?;
        Ok(NatsLog { client, js, leases, settings })
    }
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, LogError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    // The bucket's stream as the client's `create_key_value` makes it, created directly:
    // that function first reads account details in a shape nats-server 2.9 does not send.
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    if let Err(e) = js.create_stream(config).await {
        // Another server may have created it meanwhile.
        js.get_key_value(name).await.map_err(|_| failed("create bucket")(&e))?;
    }
    js.get_key_value(name).await.map_err(|e| failed("bucket")(&e))
}

impl SharedLog for NatsLog {
    fn publish(
        &self,
        subject: String,
        payload: Vec<u8>,
        key: Option<String>,
    ) -> BoxFuture<'_, Result<Published, LogError>> {
        Box::pin(async move {
            // While disconnected the client would queue the message and send it after
            // reconnecting, long after the uploader was told 503: refuse at once instead.
            if let Some(why) = self.unavailable() {
                return Err(LogError(why));
            }
            let mut message = jetstream::message::PublishMessage::build().payload(payload.into());
            if let Some(key) = key {
                message = message.message_id(key);
            }
            let ack = tokio::time::timeout(REQUEST_TIMEOUT, async {
                self.js
                    .send_publish(subject, message)
                    .await
                    .map_err(|e| failed("publish")(&e))?
                    .await
                    .map_err(|e| failed("publish")(&e))
            })
            .await
            .map_err(|_| LogError("NATS did not acknowledge the publish in time".into()))??;
            Ok(Published { seq: ack.sequence, duplicate: ack.duplicate })
        })
    }

    fn consume(&self, from: u64) -> BoxFuture<'_, Result<Entries, LogError>> {
        Box::pin(async move {
            let stream = self.js.get_stream(STREAM).await.map_err(|e| failed("stream")(&e))?;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: "kiln.>".to_string(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
                    ..Default::default()
                })
                .await
                .map_err(|e| failed("consumer")(&e))?;
            let messages = consumer.messages().await.map_err(|e| failed("consume")(&e))?;
            let entries = messages.map(|message| {
                let message = message.map_err(|e| failed("consume")(&e))?;
                let seq = message.info().map_err(|e| failed("message info")(&e))?.stream_sequence;
                Ok(Entry { seq, subject: message.subject.to_string(), payload: message.payload.clone() })
            });
            Ok(entries.boxed())
        })
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move {
            let mut stream = self.js.get_stream(STREAM).await.map_err(|e| failed("stream")(&e))?;
            Ok(stream.info().await.map_err(|e| failed("stream info")(&e))?.state.last_sequence)
        })
    }

    fn trim_below(&self, below: u64) -> BoxFuture<'_, Result<(), LogError>> {
        Box::pin(async move {
            let stream = self.js.get_stream(STREAM).await.map_err(|e| failed("stream")(&e))?;
            stream.purge().sequence(below).await.map_err(|e| failed("purge")(&e))?;
            Ok(())
        })
    }

    fn max_record_bytes(&self) -> usize {
        // Headers (the message id) count against the limit too.
        self.client.server_info().max_payload.saturating_sub(1024).max(1024)
    }

    fn lease(&self, name: &str, holder: &str, revision: Option<u64>) -> BoxFuture<'_, Result<Option<u64>, LogError>> {
        let (name, holder) = (name.to_string(), holder.to_string());
        Box::pin(async move {
            if let Some(revision) = revision {
                return match self.leases.update(&name, holder.into_bytes().into(), revision).await {
                    Ok(revision) => Ok(Some(revision)),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                    Err(e) => Err(failed("lease renew")(&e)),
                };
            }
            match self.leases.create(&name, holder.clone().into_bytes().into()).await {
                Ok(revision) => Ok(Some(revision)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    // Ours from before (a lost renewal answer): take it back at its revision.
                    match self.leases.entry(&name).await.map_err(|e| failed("lease read")(&e))? {
                        Some(entry) if entry.value == holder.as_bytes() && entry.operation == kv::Operation::Put => {
                            match self.leases.update(&name, holder.into_bytes().into(), entry.revision).await {
                                Ok(revision) => Ok(Some(revision)),
                                Err(_) => Ok(None),
                            }
                        }
                        _ => Ok(None),
                    }
                }
                Err(e) => Err(failed("lease")(&e)),
            }
        })
    }

    fn release(&self, name: &str, revision: u64) -> BoxFuture<'_, Result<(), LogError>> {
        let name = name.to_string();
        Box::pin(async move {
            self.leases.delete_expect_revision(&name, Some(revision)).await.map_err(|e| failed("lease release")(&e))
        })
    }

    fn leases_held(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<(String, String)>, LogError>> {
        let prefix = prefix.to_string();
        Box::pin(async move {
            let listed = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let keys = self.leases.keys().await.map_err(|e| failed("lease keys")(&e))?;
                let keys: Vec<String> = keys
                    .filter_map(|key| async move { key.ok() })
                    .filter(|key| std::future::ready(key.starts_with(&prefix)))
                    .collect()
                    .await;
                let mut held = Vec::new();
                for key in keys {
                    // Expired or released since the listing: not held.
                    if let Some(entry) = self.leases.entry(&key).await.map_err(|e| failed("lease read")(&e))?
                        && entry.operation == kv::Operation::Put
                    {
                        held.push((key, String::from_utf8_lossy(&entry.value).into_owned()));
                    }
                }
                Ok(held)
            })
            .await;
            listed.map_err(|_| LogError("NATS did not list the leases in time".into()))?
        })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Document, LogError>> {
        let key = key.to_string();
        Box::pin(async move {
            Ok(match self.settings.entry(&key).await.map_err(|e| failed("get")(&e))? {
                None => Document { value: None, revision: 0 },
                // A removed document is an empty value (see `put`); one removed by `kv::Store::
                // delete` (Kiln before compare-and-set) is a delete marker.
                Some(entry) => Document {
                    value: (entry.operation == kv::Operation::Put && !entry.value.is_empty()).then_some(entry.value),
                    revision: entry.revision,
                },
            })
        })
    }

    fn put(&self, key: &str, value: Option<Vec<u8>>, expected: u64) -> BoxFuture<'_, Result<bool, LogError>> {
        let key = key.to_string();
        Box::pin(async move {
            // A removal is an empty value written at the expected revision, not a delete
            // marker: a delete at an expected revision that lost the race fails like any
            // other failure in the client, and could not be retried.
            let value: bytes::Bytes = value.unwrap_or_default().into();
            if expected == 0 {
                return match self.settings.create(&key, value).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(failed("put")(&e)),
                };
            }
            match self.settings.update(&key, value, expected).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(failed("put")(&e)),
            }
        })
    }

    fn unavailable(&self) -> Option<String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            state => Some(format!("NATS is unreachable ({state:?}); uploads are refused until it answers again")),
        }
    }
}
