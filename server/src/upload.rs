//! `kiln upload`: the agent side of an upload, for scripts and CI jobs, over `http://` or
//! `https://` (reqwest with rustls: the system's trusted roots, plus `--ca-cert`).
//!
//! Kiln's rule for kept-alive connections is that the client closes an idle connection, never
//! the server (see [`crate::edge`]). This client keeps one connection for all its files and drops
//! it after [`POOL_IDLE_TIMEOUT`], well under the server's 120 s idle limit, so it never sends a
//! request into a connection the server is closing. Should that happen anyway (a restart, a
//! proxy), every upload carries an `Idempotency-Key` and is retried with the same key, so a
//! server that remembers keys can drop the duplicate.

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::body::{Frame, SizeHint};
use reqwest::{StatusCode, header};

use kiln_model::selector::{MatchOp, Matcher, Selector};

use crate::timespec::parse_duration;

/// How long the client keeps an idle connection: under the server's idle limit (120 s by
/// default, advertised as `Keep-Alive: timeout=115`) so that the client closes first.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bodies at least this large (after compression) get a progress bar on a terminal.
const PROGRESS_MIN_BYTES: usize = 1 << 20;

/// The header that lets a server recognise a retried upload.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `kiln upload` flags.
#[derive(Debug, Clone, Parser)]
#[command(after_help = "Each file is one upload, gzip-compressed, sent over one kept-alive connection \
                  that this client closes after 60 s idle, before the server's own limit. \
                  https:// servers are checked against the system's trusted certificates and \
                  those of --ca-cert. Uploads that fail on the way (connection reset or closed, timeout, 408, 429, 5xx) \
                  are retried with the same Idempotency-Key, after the server's Retry-After when it \
                  sends one (at most 60 s); a 4xx answer stops with the server's \
                  error and a non-zero exit code.\n\n\
                  Each file's format is read from its content unless --format names one; a file that \
                  cannot be read or is refused does not stop the others, and the exit code is \
                  non-zero when any file was not stored.\n\n\
                  Example: perf script | kiln upload --app shop --type cpu --label env=prod")]
pub struct UploadArgs {
    /// Files to upload, one upload each; `-` or no file reads standard input.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The Kiln server's base URL: `http://` or `https://`, a path prefix allowed.
    #[arg(long, env = "KILN_SERVER", default_value = "http://127.0.0.1:4040")]
    pub server: String,
    /// Also trust the certificates in this PEM file (a private CA, a self-signed server) for
    /// `https://` servers, besides the system's.
    #[arg(long, env = "KILN_CA_CERT", value_name = "PEM_FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Format of the files, passed to the server as `format=`: `auto` (the server reads each
    /// file's format from its content), or folded, collapsed, lines, perf_script, dtrace,
    /// sample, vtune, vsprof, ghcprof, pprof, speedscope, cpuprofile, …
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Application name.
    #[arg(long)]
    pub app: String,
    /// Profile type (cpu, alloc_space, …); the series is then `APP.TYPE`. Without it the server
    /// derives the type from `--units`.
    #[arg(long = "type", value_name = "TYPE")]
    pub profile_type: Option<String>,
    /// A series label as `key=value`; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Start of the profiled period: Unix time (s, ms, µs or ns) or `now-10s`.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the profiled period: Unix time (s, ms, µs or ns) or `now`.
    #[arg(long)]
    pub until: Option<String>,
    /// Samples per second the profiler took (`sampleRate`).
    #[arg(long)]
    pub sample_rate: Option<u64>,
    /// What the sample counts measure: samples, objects, bytes, …
    #[arg(long)]
    pub units: Option<String>,
    /// Bearer token for a server started with `--ingest-token`.
    #[arg(long, env = "KILN_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The tenant to upload as (sent as `X-Scope-OrgID`); the server's default tenant without it.
    #[arg(long, env = "KILN_TENANT")]
    pub tenant: Option<String>,
    /// Attempts per upload, the first included, before giving up.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: u32,
    /// How long one attempt may take, from connecting to the end of the response (`60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Wait before the first retry (`250ms`); each later retry waits twice as long, at most 10 s.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub retry_backoff: Duration,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not key=value"))?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("label name `{key}` must be letters, digits, `_` or `.`"));
    }
    if value.contains([',', '{', '}']) {
        return Err(format!("label value `{value}` must not contain `,`, `{{` or `}}`"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Why an upload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The flags cannot work (e.g. a server URL that is not `http://` or `https://`).
    #[error("{0}")]
    Usage(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Input {
        /// The file, `-` for standard input.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The server refused the upload; retrying would not help.
    #[error("{file} was rejected: {status}: {body}")]
    Rejected {
        /// The file, `-` for standard input.
        file: String,
        /// HTTP status.
        status: StatusCode,
        /// The server's JSON error, as sent.
        body: String,
    },
    /// Every attempt failed on the way.
    #[error("{file}: giving up after {attempts} attempts: {last}")]
    GaveUp {
        /// The file, `-` for standard input.
        file: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// One stored upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The file, `-` for standard input.
    pub source: String,
    /// Bytes read.
    pub raw_bytes: usize,
    /// Bytes sent (gzip).
    pub sent_bytes: usize,
    /// Attempts it took.
    pub attempts: u32,
    /// The key every attempt carried.
    pub idempotency_key: String,
}

/// The body of one attempt: the compressed bytes in pieces, with an optional progress bar.
struct UploadBody {
    data: Bytes,
    sent: usize,
    progress: Option<ProgressBar>,
}

/// Pieces small enough for the progress bar to move on a slow link.
const CHUNK_BYTES: usize = 64 << 10;

impl hyper::body::Body for UploadBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.sent >= this.data.len() {
            return Poll::Ready(None);
        }
        let end = (this.sent + CHUNK_BYTES).min(this.data.len());
        let chunk = this.data.slice(this.sent..end);
        this.sent = end;
        if let Some(progress) = &mut this.progress {
            progress.draw(end);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

/// A one-line bar on stderr, redrawn when the percentage changes.
struct ProgressBar {
    label: String,
    total: usize,
    shown: Option<usize>,
}

impl ProgressBar {
    const WIDTH: usize = 30;

    fn draw(&mut self, done: usize) {
        let percent = done * 100 / self.total.max(1);
        if self.shown == Some(percent) {
            return;
        }
        self.shown = Some(percent);
        let filled = Self::WIDTH * percent / 100;
        let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r{} [{}{}] {percent:3}% {:.1}/{:.1} MiB",
            self.label,
            "#".repeat(filled),
            " ".repeat(Self::WIDTH - filled),
            mib(done),
            mib(self.total)
        );
        if done >= self.total {
            let _ = writeln!(stderr);
        }
        let _ = stderr.flush();
    }
}

/// Uploads over one pooled connection, with retries.
pub struct Uploader {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    tenant: Option<String>,
    attempts: u32,
    timeout: Duration,
    retry_backoff: Duration,
    progress: bool,
}

impl Uploader {
    /// A client for `server` (`http://host:port` or `https://…`, a path prefix allowed).
    pub fn new(args: &UploadArgs) -> Result<Uploader, UploadError> {
        let base = args.server.trim().trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| UploadError::Usage(format!("--server {base}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(UploadError::Usage(format!("--server {base}: not an http:// or https:// URL")));
        }
        let mut builder = reqwest::Client::builder()
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .connect_timeout(args.timeout.min(Duration::from_secs(10)))
            // Where the URL says, whatever the environment: the connection is ours to keep.
            .no_proxy()
            // A redirect would resend neither the body nor the retry logic's key faithfully.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|source| UploadError::Input { path: path.display().to_string(), source })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| UploadError::Usage(format!("--ca-cert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(UploadError::Usage(format!("--ca-cert {}: no PEM certificate in it", path.display())));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client =
            builder.build().map_err(|e| UploadError::Usage(format!("cannot set up the client: {}", describe(&e))))?;
        Ok(Uploader {
            client,
            base,
            token: args.token.clone().filter(|t| !t.is_empty()),
            tenant: args.tenant.clone().filter(|t| !t.is_empty()),
            attempts: args.attempts.max(1),
            timeout: args.timeout,
            retry_backoff: args.retry_backoff,
            progress: std::io::stderr().is_terminal(),
        })
    }

    /// Sends `raw` (uncompressed) to `/ingest?{query}`; `source` names it in messages.
    pub async fn upload(&self, source: &str, query: &str, raw: &[u8]) -> Result<Uploaded, UploadError> {
        let body = gzip(raw);
        let key = idempotency_key();
        let uri = format!("{}/ingest?{query}", self.base);
        let mut last = String::new();
        // What the server asked for with `Retry-After` on its last answer, if anything.
        let mut asked_to_wait = None;
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                let delay =
                    backoff(self.retry_backoff, attempt - 1, &key).max(asked_to_wait.take().unwrap_or_default());
                tracing::debug!(%source, attempt, ?delay, error = %last, "retrying upload");
                tokio::time::sleep(delay).await;
            }
            match tokio::time::timeout(self.timeout, self.attempt(source, &uri, &key, &body)).await {
                Ok(Ok(Answer { status, .. })) if status.is_success() => {
                    return Ok(Uploaded {
                        source: source.to_string(),
                        raw_bytes: raw.len(),
                        sent_bytes: body.len(),
                        attempts: attempt,
                        idempotency_key: key,
                    });
                }
                Ok(Ok(Answer { status, text, retry_after })) if retryable(status) => {
                    last = format!("{status}: {text}");
                    asked_to_wait = retry_after;
                }
                Ok(Ok(Answer { status, text, .. })) => {
                    return Err(UploadError::Rejected { file: source.to_string(), status, body: text });
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {:?}", self.timeout),
            }
        }
        Err(UploadError::GaveUp { file: source.to_string(), attempts: self.attempts, last })
    }

    /// One attempt: the server's answer, or why there is none.
    async fn attempt(&self, source: &str, uri: &str, key: &str, body: &Bytes) -> Result<Answer, String> {
        let progress = (self.progress && body.len() >= PROGRESS_MIN_BYTES).then(|| ProgressBar {
            label: source.to_string(),
            total: body.len(),
            shown: None,
        });
        let mut request = self
            .client
            .post(uri)
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::CONTENT_ENCODING, "gzip")
            .header(header::CONTENT_LENGTH, body.len())
            .header(header::USER_AGENT, concat!("kiln-upload/", env!("CARGO_PKG_VERSION")))
            .header(IDEMPOTENCY_KEY, key);
        if let Some(tenant) = &self.tenant {
            request = request.header(kiln_model::tenant::TENANT_HEADER, tenant);
        }
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(reqwest::Body::wrap(UploadBody { data: body.clone(), sent: 0, progress }));
        let response = request.send().await.map_err(|e| {
            let text = describe(&e);
            if text.contains("invalid peer certificate") {
                format!("{text} (if the server's certificate comes from a private CA, pass that CA with --ca-cert)")
            } else {
                text
            }
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.bytes().await.map_err(|e| describe(&e))?;
        Ok(Answer { status, text: String::from_utf8_lossy(&text).trim().to_string(), retry_after })
    }
}

/// What the server answered to one attempt.
struct Answer {
    status: StatusCode,
    text: String,
    /// How long it asked the client to wait before trying again.
    retry_after: Option<Duration>,
}

/// The longest `Retry-After` honoured: a server asking for more is waited for this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A `Retry-After` in seconds (the form Kiln sends; an HTTP date is ignored), at most
/// [`MAX_RETRY_AFTER`].
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The error and its causes on one line ("connection reset by peer" sits a few levels down).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let _ = write!(text, ": {e}");
        cause = e.source();
    }
    text
}

/// Answers that may succeed when sent again: the server timed out, is overloaded, or failed.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Exponential backoff from `base`, capped at 10 s, with up to a quarter added so that agents
/// cut off together do not come back together.
fn backoff(base: Duration, retry: u32, key: &str) -> Duration {
    let delay = base.saturating_mul(1 << (retry - 1).min(16)).min(Duration::from_secs(10));
    let jitter = delay.as_millis() as u64 / 4;
    let random = RandomState::new().hash_one((key, retry));
    delay + Duration::from_millis(if jitter == 0 { 0 } else { random % jitter })
}

/// A key unique to one upload: the clock, the process and a counter, hashed with a
/// per-process random seed, as 32 hex digits.
pub fn idempotency_key() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let seed = RandomState::new();
    let mut key = String::with_capacity(32);
    for half in 0u8..2 {
        let _ = write!(key, "{:016x}", seed.hash_one((now, std::process::id(), count, half)));
    }
    key
}

fn gzip(raw: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 4 + 64), Compression::default());
    encoder.write_all(raw).expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}

/// The `/ingest` query string for these flags.
pub fn query_string(args: &UploadArgs) -> String {
    // Written as a selector, so that names and values with `{`, `,` or quotes arrive intact.
    let name = Selector {
        app: args.app.clone(),
        profile_type: args.profile_type.clone(),
        matchers: args
            .labels
            .iter()
            .map(|(k, v)| Matcher { name: k.clone(), op: MatchOp::Eq, value: v.clone() })
            .collect(),
    }
    .to_string();
    let mut pairs = vec![("name", name), ("format", args.format.clone())];
    pairs.extend(args.from.clone().map(|v| ("from", v)));
    pairs.extend(args.until.clone().map(|v| ("until", v)));
    pairs.extend(args.sample_rate.map(|v| ("sampleRate", v.to_string())));
    pairs.extend(args.units.clone().map(|v| ("units", v)));
    pairs.iter().map(|(k, v)| format!("{k}={}", kiln_model::query_string::encode(v))).collect::<Vec<_>>().join("&")
}

fn read_input(path: &Path) -> Result<(String, Vec<u8>), UploadError> {
    let name = path.display().to_string();
    let mut data = Vec::new();
    let result = if name == "-" {
        std::io::stdin().lock().read_to_end(&mut data).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut data)).map(|_| ())
    };
    result.map(|()| (name.clone(), data)).map_err(|source| UploadError::Input { path: name, source })
}

/// Uploads every file (or standard input); `Ok` when all of them were stored, else the first
/// failure (after trying the other files, as [`run_with`] does).
pub async fn run(args: &UploadArgs) -> Result<Vec<Uploaded>, UploadError> {
    let mut refused = Vec::new();
    let stored = run_with(args, |_| {}, |e| refused.push(e)).await?;
    match refused.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(stored),
    }
}

/// Uploads every file in order, telling `on_stored` about each stored one and `on_refused`
/// about each that could not be read or that the server refused (a bad file among good ones
/// does not stop the others). Returns what was stored; `Err` only when going on is pointless:
/// unusable flags, or a server that could not be reached after every retry.
pub async fn run_with(
    args: &UploadArgs,
    mut on_stored: impl FnMut(&Uploaded),
    mut on_refused: impl FnMut(UploadError),
) -> Result<Vec<Uploaded>, UploadError> {
    let uploader = Uploader::new(args)?;
    let query = query_string(args);
    if args.files.is_empty() && std::io::stdin().is_terminal() {
        // Reading a terminal would wait for a profile that nobody is going to type.
        return Err(UploadError::Usage("no input: name files or pipe a profile into `kiln upload`".into()));
    }
    let files = if args.files.is_empty() { vec![PathBuf::from("-")] } else { args.files.clone() };
    let mut done = Vec::with_capacity(files.len());
    for path in &files {
        let outcome = match read_input(path) {
            Ok((source, raw)) => uploader.upload(&source, &query, &raw).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(uploaded) => {
                on_stored(&uploaded);
                done.push(uploaded);
            }
            Err(e @ (UploadError::Input { .. } | UploadError::Rejected { .. })) => on_refused(e),
            Err(fatal) => return Err(fatal),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> UploadArgs {
        let mut argv = vec!["upload", "--app", "shop"];
        argv.extend_from_slice(extra);
        UploadArgs::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn the_query_names_the_series_and_passes_flags_through() {
        let args = args(&[
            "--type",
            "cpu",
            "--label",
            "env=prod",
            "--label",
            "region=eu 1",
            "--format",
            "perf_script",
            "--from",
            "now-10s",
            "--sample-rate",
            "99",
            "--units",
            "samples",
        ]);
        assert_eq!(
            query_string(&args),
            "name=shop.cpu%7Benv%3D%22prod%22%2Cregion%3D%22eu%201%22%7D&format=perf_script&from=now-10s&sampleRate=99&units=samples"
        );
        assert_eq!(query_string(&self::args(&[])), "name=shop&format=auto");
    }

    #[test]
    fn labels_must_be_key_value() {
        assert!(UploadArgs::try_parse_from(["upload", "--app", "a", "--label", "novalue"]).is_err());
        assert!(UploadArgs::try_parse_from(["upload", "--app", "a", "--label", "k=a,b"]).is_err());
        assert!(UploadArgs::try_parse_from(["upload"]).is_err(), "--app is required");
    }

    #[test]
    fn keys_differ_per_upload() {
        let a = idempotency_key();
        let b = idempotency_key();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        let first = backoff(base, 1, "k");
        assert!(first >= base && first < base * 5 / 4 + Duration::from_millis(1));
        let third = backoff(base, 3, "k");
        assert!(third >= base * 4 && third <= base * 5);
        assert!(backoff(base, 30, "k") <= Duration::from_millis(12_500));
    }

    #[test]
    fn the_client_gives_up_idle_connections_before_the_server() {
        let advertised = crate::edge::EdgeConfig::default().idle_timeout - Duration::from_secs(5);
        assert!(POOL_IDLE_TIMEOUT < advertised);
    }

    #[test]
    fn http_and_https_servers_only() {
        assert!(Uploader::new(&args(&["--server", "https://example.test"])).is_ok());
        assert!(Uploader::new(&args(&["--server", "http://127.0.0.1:4040/kiln/"])).is_ok());
        for bad in ["ftp://example.test", "example.test:4040", "http://", "https://exa mple.test"] {
            assert!(matches!(Uploader::new(&args(&["--server", bad])), Err(UploadError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn retries_on_timeouts_overload_and_server_errors_only() {
        for status in [408, 429, 500, 502, 503] {
            assert!(retryable(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [400, 401, 404, 413, 415, 422] {
            assert!(!retryable(StatusCode::from_u16(status).unwrap()), "{status}");
        }
    }
}
