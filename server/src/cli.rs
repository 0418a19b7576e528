//! The `kiln` command line: flags with environment-variable fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use leptos::prelude::LeptosOptions;
use tracing_subscriber::EnvFilter;

use crate::api::{AppState, Auth, Site, router};
use crate::edge::{self, EdgeConfig};
use crate::ingest::IngestLimits;
use crate::metrics::Metrics;
use crate::query::QueryLimits;
use crate::storage::cluster::LogConfig;
use crate::storage::{Backend, DiskFloor, S3Options, Store, StoreConfig};
use crate::timespec::{IngestWindow, parse_duration};
use crate::upload::UploadArgs;

/// Kiln: continuous profiling. Agents upload profiles; people browse flamegraphs.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start and matched once: boxing the larger variant would save nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server: ingest API, query API and the web UI on one port.
    Serve(ServeArgs),
    /// Upload profile files (or standard input) to a Kiln server.
    Upload(UploadArgs),
}

/// `kiln serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (Pyroscope agents look for port 4040).
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:4040")]
    pub listen: SocketAddr,
    /// Directory for stored profiles (created if missing).
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Serve the web UI's files from this directory's `pkg/` (as `make site` writes it to
    /// `target/site`) instead of the copy built into the binary: for UI work, where a rebuilt
    /// site shows on reload without rebuilding the server. Unset: the built-in copy.
    #[arg(long, env = "KILN_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
    /// Largest accepted request body, as sent, in bytes.
    #[arg(long, env = "KILN_MAX_BODY_BYTES", default_value_t = IngestLimits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Largest file `/api/collapse` (the Open page) accepts, as sent, in bytes: it parses and
    /// stores nothing, so a big file may come raw instead of gzipped by the browser. It is read
    /// within the in-flight budget and parsed on the heavy lane, like any upload. Never less
    /// than --max-body-bytes.
    #[arg(long, env = "KILN_MAX_COLLAPSE_BODY_BYTES", default_value_t = IngestLimits::default().max_collapse_body_bytes)]
    pub max_collapse_body_bytes: usize,
    /// Largest accepted body after decompression, in bytes.
    #[arg(long, env = "KILN_MAX_DECOMPRESSED_BYTES", default_value_t = IngestLimits::default().max_decompressed_bytes)]
    pub max_decompressed_bytes: usize,
    /// Frames kept per stack; deeper stacks are cut at the leaf end.
    #[arg(long, env = "KILN_MAX_STACK_DEPTH", default_value_t = IngestLimits::default().max_stack_depth)]
    pub max_stack_depth: usize,
    /// Active series per tenant (series with uploads since the last block cut); uploads of
    /// new series beyond it get 400, the tenant's active series keep being stored.
    #[arg(long, env = "KILN_MAX_SERIES_PER_TENANT", default_value_t = IngestLimits::default().max_series_per_tenant)]
    pub max_series_per_tenant: usize,
    /// OTLP sample attributes that become series labels (comma-separated, e.g. `thread.name`);
    /// none by default, so that per-sample values cannot multiply series. Resource attributes
    /// are always labels.
    #[arg(long, env = "KILN_OTLP_SAMPLE_LABELS", value_delimiter = ',')]
    pub otlp_sample_labels: Vec<String>,
    /// Series one query may merge; more gets 422 (narrow it with label matchers).
    #[arg(long, env = "KILN_MAX_QUERY_SERIES", default_value_t = QueryLimits::default().max_series)]
    pub max_query_series: usize,
    /// Compressed stored bytes one query may read (it grows with series × time range); more
    /// gets 422 (use a shorter range or more label matchers).
    #[arg(long, env = "KILN_MAX_QUERY_BYTES", default_value_t = QueryLimits::default().max_bytes)]
    pub max_query_bytes: u64,
    /// Nodes in a JSON answer (`/render` flamebearer or speedscope, `/render-diff`) whose
    /// request names no `maxNodes`; the rest is folded into `other` nodes.
    #[arg(long, env = "KILN_MAX_NODES_DEFAULT", default_value_t = QueryLimits::default().default_max_nodes)]
    pub max_nodes_default: usize,
    /// The largest `maxNodes` a JSON request may ask for; more gets 422.
    #[arg(long, env = "KILN_MAX_NODES_MAX", default_value_t = QueryLimits::default().max_nodes)]
    pub max_nodes_max: usize,
    /// The oldest time an upload may carry, in Unix seconds (default 2000-01-01); older
    /// stamps get 400 naming the parameter.
    #[arg(long, env = "KILN_INGEST_OLDEST", default_value_t = IngestWindow::default().oldest)]
    pub ingest_oldest: i64,
    /// How far ahead of the server's clock an upload's time may be (`1d`); further gets 400.
    #[arg(long, env = "KILN_INGEST_MAX_FUTURE", default_value = "1d", value_parser = parse_duration)]
    pub ingest_max_future: Duration,
    /// Decode budget: stack frames an upload may walk per KiB of (decompressed) body; beyond it
    /// the upload is refused with 422.
    #[arg(long, env = "KILN_MAX_FRAMES_PER_KIB", default_value_t = IngestLimits::default().frames_per_kib)]
    pub max_frames_per_kib: u64,
    /// Decode budget: call-tree nodes an upload may make per KiB of body (every 64 bytes of a
    /// frame name kept count as one); beyond it the upload is refused with 422.
    #[arg(long, env = "KILN_MAX_NODES_PER_KIB", default_value_t = IngestLimits::default().nodes_per_kib)]
    pub max_nodes_per_kib: u64,
    /// Decode budget: KiB's worth of frames and nodes every request gets on top of its size.
    #[arg(long, env = "KILN_DECODE_FLOOR_KIB", default_value_t = IngestLimits::default().decode_floor_kib)]
    pub decode_floor_kib: u64,
    /// Connections served at once.
    #[arg(long, env = "KILN_MAX_CONNECTIONS", default_value_t = EdgeConfig::default().max_connections)]
    pub max_connections: usize,
    /// Seconds shutdown waits for in-flight requests.
    #[arg(long, env = "KILN_DRAIN_TIMEOUT", default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// How long a connection may sit idle between requests before Kiln closes it (`120s`,
    /// `2m` or plain seconds). Keep it above the clients' own idle limit (90 s for Go and
    /// reqwest pools) so that they, not Kiln, close idle connections; HTTP/1.1 responses
    /// advertise 5 s less in `Keep-Alive`.
    #[arg(long, env = "KILN_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// HTTP/1: how long a request's headers may take, counted from its first byte.
    #[arg(long, env = "KILN_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// HTTP/1: the longest wait for the next piece of a request body.
    #[arg(long, env = "KILN_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// The longest a request may take until its response starts; slower ones get 503 with
    /// `Retry-After`, and the work they started stops at its next check.
    #[arg(long, env = "KILN_REQUEST_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Bytes of uploads held at once across all requests: bodies as received plus what they
    /// decompress to (1 GiB). Uploads beyond it get 503 with `Retry-After`; agents do not retry,
    /// so keep it far above what normal traffic holds.
    #[arg(long, env = "KILN_MAX_INFLIGHT_BYTES", default_value_t = crate::work::DEFAULT_INFLIGHT_BYTES)]
    pub max_inflight_bytes: u64,
    /// Token required to upload (`/ingest`, `/pyroscope/ingest`, the Connect push endpoint), as
    /// `Authorization: Bearer <token>` or Basic auth with the token as password. Unset: open.
    #[arg(long, env = "KILN_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,
    /// Token required for everything else (queries, the web UI), same forms; `/healthz`,
    /// `/readyz` and `/metrics` stay open. Unset: open.
    #[arg(long, env = "KILN_QUERY_TOKEN", hide_env_values = true)]
    pub query_token: Option<String>,
    /// Where blocks are kept: `local` (under `--data-dir`) or `s3://bucket/prefix`. The
    /// write-ahead log always stays in `--data-dir`.
    #[arg(long, env = "KILN_STORAGE", default_value = "local", value_parser = Backend::parse)]
    pub storage: Backend,
    /// S3 endpoint URL, for S3-compatible services (`http://` is allowed); else `AWS_ENDPOINT`
    /// or AWS itself.
    #[arg(long, env = "KILN_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region; else `AWS_REGION` / `AWS_DEFAULT_REGION`.
    #[arg(long, env = "KILN_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id; else `AWS_ACCESS_KEY_ID`.
    #[arg(long, env = "KILN_S3_ACCESS_KEY")]
    pub s3_access_key: Option<String>,
    /// S3 secret access key; else `AWS_SECRET_ACCESS_KEY`.
    #[arg(long, env = "KILN_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// The in-memory head is cut into a block this long after its first upload.
    #[arg(long, env = "KILN_BLOCK_DURATION", default_value = "10m", value_parser = parse_duration)]
    pub block_duration: Duration,
    /// The head is also cut into a block as soon as it holds this many bytes (64 MiB).
    #[arg(long, env = "KILN_HEAD_MAX_BYTES", default_value_t = 64 << 20)]
    pub head_max_bytes: u64,
    /// Blocks (and head data) older than this are deleted (`30d`, `12h`); `0` keeps everything.
    #[arg(long, env = "KILN_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,
    /// How often the block listing is refreshed, picking up other servers' blocks on a
    /// shared bucket; compaction and retention run as often.
    #[arg(long, env = "KILN_BLOCK_REFRESH", default_value = "5s", value_parser = parse_duration)]
    pub block_refresh: Duration,
    /// Blocks starting in one window of this length are merged into one once it has passed.
    #[arg(long, env = "KILN_COMPACTION_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub compaction_window: Duration,
    /// An upload retried with an idempotency key (`Idempotency-Key` header, push sample `ID`)
    /// already stored this recently answers 200 and is not stored again.
    #[arg(long, env = "KILN_DEDUPE_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub dedupe_window: Duration,
    /// Uploads are refused (503, `Retry-After`) while the data directory's file system has
    /// less free space than this: a size (`1GiB`, `500MiB`), a percentage (`5%`), or `0` for
    /// no floor. While the object store is unreachable the write-ahead log holds everything
    /// not yet in a block, so this is what bounds an outage.
    #[arg(long, env = "KILN_MIN_FREE_DISK", default_value = "1GiB", value_parser = DiskFloor::parse)]
    pub min_free_disk: DiskFloor,
    /// Cluster mode: NATS JetStream servers (`nats://n1:4222,nats://n2:4222`) whose stream
    /// is the shared write-ahead log of every Kiln server given the same list (and one
    /// `--storage` bucket). Unset: this server keeps its own log in `--data-dir`.
    #[arg(long, env = "KILN_CLUSTER")]
    pub cluster: Option<String>,
    /// Cluster mode: copies NATS keeps of the stream and buckets (3 in production, where
    /// NATS runs as a cluster; 1 for a single NATS server).
    #[arg(long, env = "KILN_CLUSTER_REPLICAS", default_value_t = 1)]
    pub cluster_replicas: usize,
}

impl ServeArgs {
    /// The storage settings these flags describe.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            backend: self.storage.clone(),
            s3: S3Options {
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                access_key: self.s3_access_key.clone(),
                secret_key: self.s3_secret_key.clone(),
            },
            block_duration: self.block_duration,
            head_max_bytes: self.head_max_bytes,
            retention: self.retention,
            refresh_interval: self.block_refresh,
            compaction_window: self.compaction_window,
            dedupe_window: self.dedupe_window,
            min_free_disk: self.min_free_disk,
            cluster: self.cluster.as_ref().map(|urls| LogConfig {
                urls: urls.clone(),
                dedupe_window: self.dedupe_window,
                replicas: self.cluster_replicas,
                lease_ttl: Duration::from_secs(10),
            }),
            ..StoreConfig::new(&self.data_dir)
        }
    }
}

/// Runs the command line; the exit code says whether it worked.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `kiln upload` prints its own one-line outcome, causes included: the TLS stack's logs
    // would only say the same thing again.
    let default_filter = match cli.command {
        Command::Serve(_) => "info,kiln_server=info",
        Command::Upload(_) => "off,kiln_server=info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .init();
    crate::api::protect::log_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Upload(args) => return runtime.block_on(upload(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// The Leptos options and where the site is served from: cargo-leptos' environment when it
/// runs us (`cargo leptos watch`, which serves its own build from disk), else the flags.
fn leptos_options(args: &ServeArgs) -> Result<(LeptosOptions, Site), String> {
    if std::env::var_os("LEPTOS_OUTPUT_NAME").is_some() {
        let conf = leptos::prelude::get_configuration(None).map_err(|e| format!("leptos configuration: {e}"))?;
        let site = Site::Dir(PathBuf::from(&*conf.leptos_options.site_root));
        return Ok((conf.leptos_options, site));
    }
    let options = LeptosOptions::builder().output_name("kiln").site_pkg_dir("pkg").site_addr(args.listen).build();
    let site = match &args.site_root {
        Some(dir) => {
            if !dir.join("pkg").is_dir() {
                tracing::warn!(site_root = %dir.display(), "no pkg/ directory here: pages will render but not hydrate (run `make site`)");
            }
            tracing::info!(site_root = %dir.display(), "serving the web UI's files from disk");
            Site::Dir(dir.clone())
        }
        None => {
            let (files, bytes) = crate::api::site::embedded_size();
            tracing::debug!(files, bytes, "serving the web UI built into the binary");
            Site::Embedded
        }
    };
    Ok((options, site))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let store = Store::open_with(args.store_config())
        .await
        .map_err(|e| format!("cannot open the data directory {}: {e}", args.data_dir.display()))?;
    let (leptos, site) = leptos_options(&args)?;
    let state = AppState {
        store: Arc::new(store),
        metrics: Arc::new(Metrics::default()),
        limits: IngestLimits {
            max_body_bytes: args.max_body_bytes,
            max_collapse_body_bytes: args.max_collapse_body_bytes,
            max_decompressed_bytes: args.max_decompressed_bytes,
            max_stack_depth: args.max_stack_depth,
            window: IngestWindow {
                oldest: args.ingest_oldest,
                max_future_secs: i64::try_from(args.ingest_max_future.as_secs()).unwrap_or(i64::MAX),
            },
            max_series_per_tenant: args.max_series_per_tenant,
            frames_per_kib: args.max_frames_per_kib,
            nodes_per_kib: args.max_nodes_per_kib,
            decode_floor_kib: args.decode_floor_kib,
            ..IngestLimits::default()
        },
        otlp: Arc::new(crate::ingest::otlp::OtlpOptions {
            sample_labels: args
                .otlp_sample_labels
                .iter()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect(),
        }),
        query_limits: QueryLimits {
            max_series: args.max_query_series,
            max_bytes: args.max_query_bytes,
            default_max_nodes: args.max_nodes_default,
            max_nodes: args.max_nodes_max,
        },
        merges: Arc::default(),
        leptos,
        site,
        auth: Auth::new(args.ingest_token.clone(), args.query_token.clone()),
        inflight: crate::work::InflightBudget::new(args.max_inflight_bytes),
        panics: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(listen = %local, data_dir = %args.data_dir.display(), "Kiln is serving on http://{local}");
    if args.idle_timeout <= Duration::from_secs(90) {
        tracing::warn!(idle_timeout = ?args.idle_timeout, "idle timeout at or under 90 s: Go and reqwest clients keep idle connections that long and may lose uploads to the close");
    }
    let edge_config = EdgeConfig {
        max_connections: args.max_connections,
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        idle_timeout: args.idle_timeout,
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        request_timeout: args.request_timeout,
        ..EdgeConfig::default()
    };
    edge::serve(listener, router(state.clone()), state.metrics.clone(), edge_config, edge::shutdown_signal()).await;
    state.store.leave().await;
    tracing::info!("stopped");
    Ok(())
}

/// `kiln upload`: one line per file on stderr, stored or refused with the reason (stdout stays
/// free for scripts), then a count when some were not stored; the exit code says whether all were.
async fn upload(args: UploadArgs) -> ExitCode {
    let report = |upload: &crate::upload::Uploaded| {
        let retried = if upload.attempts > 1 { format!(" after {} attempts", upload.attempts) } else { String::new() };
        eprintln!("kiln: uploaded {} ({} bytes, {} sent){retried}", upload.source, upload.raw_bytes, upload.sent_bytes);
    };
    let mut refused = 0;
    let outcome = crate::upload::run_with(&args, report, |e| {
        refused += 1;
        eprintln!("kiln: {e}");
    })
    .await;
    match outcome {
        Ok(_) if refused == 0 => ExitCode::SUCCESS,
        Ok(stored) => {
            eprintln!("kiln: {} of {} files stored", stored.len(), stored.len() + refused);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kiln: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_have_the_documented_defaults() {
        let cli = Cli::try_parse_from(["kiln", "serve"]).expect("defaults parse");
        let Command::Serve(args) = cli.command else { panic!("serve parses as serve") };
        assert_eq!(args.idle_timeout, EdgeConfig::default().idle_timeout);
        assert_eq!(args.header_read_timeout, EdgeConfig::default().header_read_timeout);
        assert_eq!(args.body_read_timeout, EdgeConfig::default().body_read_timeout);
        assert_eq!(args.request_timeout, EdgeConfig::default().request_timeout);
        assert_eq!(args.max_inflight_bytes, 1 << 30);
        assert_eq!(args.max_collapse_body_bytes, 256 << 20);
        let store = args.store_config();
        let defaults = StoreConfig::new(&args.data_dir);
        assert_eq!(store.backend, Backend::Local);
        assert_eq!(store.block_duration, defaults.block_duration);
        assert_eq!(store.head_max_bytes, 64 << 20);
        assert_eq!(store.retention, defaults.retention);
        assert_eq!(store.refresh_interval, defaults.refresh_interval);
        assert_eq!(store.compaction_window, defaults.compaction_window);
        assert_eq!(store.dedupe_window, defaults.dedupe_window);
        assert_eq!(store.min_free_disk, defaults.min_free_disk);
        let cli = Cli::try_parse_from(["kiln", "serve", "--idle-timeout", "3m"]).expect("flag parses");
        let Command::Serve(args) = cli.command else { panic!("serve parses as serve") };
        assert_eq!(args.idle_timeout, Duration::from_secs(180));
    }
}
