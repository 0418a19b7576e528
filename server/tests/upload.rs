//! `kiln upload` against a real Kiln on a socket, and against a fake server that misbehaves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use kiln_server::api::{AppState, Auth, router};
use kiln_server::edge::{self, EdgeConfig};
use kiln_server::metrics::Metrics;
use kiln_server::storage::Store;
use kiln_server::upload::{self, UploadArgs, UploadError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How long a test waits for anything before failing instead of hanging.
const GIVE_UP: Duration = Duration::from_secs(60);

struct Kiln {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn kiln(auth: Auth) -> Kiln {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let state = AppState { metrics: metrics.clone(), auth, ..AppState::new(store) };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(edge::serve(listener, router(state), metrics.clone(), EdgeConfig::default(), async {
        let _ = stopped.await;
    }));
    Kiln { addr, metrics, _stop: stop, _dir: dir }
}

fn args(server: SocketAddr, extra: &[&str]) -> UploadArgs {
    let server = format!("http://{server}");
    let mut argv = vec!["upload", "--server", server.as_str(), "--retry-backoff", "10ms"];
    argv.extend_from_slice(extra);
    UploadArgs::try_parse_from(argv).expect("flags parse")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// One GET on its own connection, `Connection: close`; the status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: kiln\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(GIVE_UP, stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn several_files_share_one_connection_gzipped() {
    let server = kiln(Auth::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // Repetitive, so that gzip visibly shrinks it.
    let big: String = (0..2000).map(|i| format!("main;work;step_{} 1\n", i % 10)).collect();
    let files = [
        write(dir.path(), "a.folded", "main;a 1\n"),
        write(dir.path(), "b.folded", "main;b 2\n"),
        write(dir.path(), "c.folded", &big),
    ];
    let mut argv = vec!["--app", "shop", "--type", "cpu", "--label", "env=test"];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    argv.extend(names.iter().map(String::as_str));
    let done = tokio::time::timeout(GIVE_UP, upload::run(&args(server.addr, &argv))).await.unwrap().unwrap();

    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|u| u.attempts == 1));
    let keys: std::collections::HashSet<_> = done.iter().map(|u| u.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 3, "each upload has its own key");
    assert_eq!(server.metrics.accepted_connections.load(Ordering::SeqCst), 1, "one kept-alive connection");
    assert_eq!(server.metrics.ingest_uploads.load(Ordering::SeqCst), 3);
    let sent = server.metrics.ingest_bytes.load(Ordering::SeqCst) as usize;
    assert!(sent < big.len() / 10, "bodies arrive gzipped: {sent} bytes for {} raw", big.len());

    let (status, folded) = get(server.addr, "/render?query=shop.cpu%7Benv%3D%22test%22%7D&format=folded").await;
    assert_eq!(status, 200);
    assert!(folded.contains("main;a 1\n") && folded.contains("main;b 2\n"), "{folded}");
    assert!(folded.contains("main;work;step_3 200\n"), "{folded}");
}

#[tokio::test]
async fn a_rejected_upload_fails_with_the_servers_error() {
    let server = kiln(Auth::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "x.folded", "main;a 1\n");
    let file = file.display().to_string();

    let error = upload::run(&args(server.addr, &["--app", "shop", "--format", "nonsense", &file])).await.unwrap_err();
    let UploadError::Rejected { status, body, .. } = error else { panic!("rejected, not {error:?}") };
    assert_eq!(status.as_u16(), 400);
    assert!(body.starts_with('{') && body.contains("unknown format"), "{body}");

    // The binary: exit code and the JSON on stderr.
    let url = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["upload", "--server", &url, "--app", "shop", "--format", "nonsense", &file])
            .env_remove("KILN_INGEST_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("400") && stderr.contains(r#""error":"unknown format `nonsense`"#), "{stderr}");
}

#[tokio::test]
async fn each_file_is_read_by_its_content_and_a_bad_one_does_not_stop_the_rest() {
    let server = kiln(Auth::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let perf = "prog 1 1.0: 1 cycles:\n\tffff main (/bin/prog)\n\tffff start (/bin/prog)\n\n";
    let perf = write(dir.path(), "a-perf-script.txt", perf).display().to_string();
    let bad = write(dir.path(), "notes.txt", "not a profile at all\n").display().to_string();
    let folded = write(dir.path(), "good.folded", "main;work 3\n").display().to_string();
    let missing = dir.path().join("missing.folded").display().to_string();

    let url = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["upload", "--server", &url, "--app", "mixed", "--type", "cpu", &perf, &bad, &missing, &folded])
            .env_remove("KILN_INGEST_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a file was not stored: {stderr}");
    assert!(stderr.contains("uploaded") && stderr.contains("a-perf-script.txt"), "{stderr}");
    assert!(stderr.contains("notes.txt was rejected: 400") && stderr.contains("could not recognise"), "{stderr}");
    assert!(stderr.contains("cannot read") && stderr.contains("missing.folded"), "{stderr}");
    assert!(stderr.contains("good.folded") && stderr.contains("2 of 4 files stored"), "{stderr}");

    let (status, stored) = get(server.addr, "/render?query=mixed.cpu&format=folded&from=now-1h").await;
    assert_eq!(status, 200);
    assert!(stored.contains("prog;start;main 1\n") && stored.contains("main;work 3\n"), "{stored}");
}

#[tokio::test]
async fn the_ingest_token_goes_as_bearer() {
    let server = kiln(Auth::new(Some("s3cret".into()), None)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "x.folded", "main;a 1\n").display().to_string();

    let error = upload::run(&args(server.addr, &["--app", "shop", &file])).await.unwrap_err();
    assert!(matches!(error, UploadError::Rejected { status, .. } if status.as_u16() == 401), "{error:?}");
    let error = upload::run(&args(server.addr, &["--app", "shop", "--token", "wrong", &file])).await.unwrap_err();
    assert!(matches!(error, UploadError::Rejected { status, .. } if status.as_u16() == 401), "{error:?}");
    upload::run(&args(server.addr, &["--app", "shop", "--token", "s3cret", &file])).await.unwrap();
    assert_eq!(server.metrics.ingest_uploads.load(Ordering::SeqCst), 1);
}

/// One request as a fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads one request (headers, then a `content-length` body).
async fn read_request(stream: &mut TcpStream, with_body: bool) -> Seen {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed mid-request");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut seen = Seen { head, body: Vec::new() };
    if with_body {
        let length: usize = seen.header("content-length").expect("content-length").parse().unwrap();
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed mid-body");
            body.extend_from_slice(&chunk[..n]);
        }
        seen.body = body;
    }
    seen
}

#[tokio::test]
async fn retries_after_a_reset_and_a_503_carry_the_same_key_and_honour_retry_after() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let record = seen.clone();
    let waited = Arc::new(Mutex::new(None::<Duration>));
    let waited_for = waited.clone();
    let fake = tokio::spawn(async move {
        // First connection: take the headers, then reset mid-request.
        let (mut stream, _) = listener.accept().await.unwrap();
        let request = read_request(&mut stream, false).await;
        record.lock().unwrap().push(request);
        stream.set_zero_linger().unwrap();
        drop(stream);
        // Second: a 503 that keeps the connection, then a 200 on it.
        let (mut stream, _) = listener.accept().await.unwrap();
        let request = read_request(&mut stream, true).await;
        record.lock().unwrap().push(request);
        let busy = r#"{"error":"busy"}"#;
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{busy}",
            busy.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        let answered = std::time::Instant::now();
        let request = read_request(&mut stream, true).await;
        *waited_for.lock().unwrap() = Some(answered.elapsed());
        record.lock().unwrap().push(request);
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        // Hold the connection until the client is done with it.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });

    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "x.folded", "main;a 1\n").display().to_string();
    let done = tokio::time::timeout(GIVE_UP, upload::run(&args(addr, &["--app", "shop", "--type", "cpu", &file])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done[0].attempts, 3);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert!(request.head.starts_with("POST /ingest?name=shop.cpu&format=auto HTTP/1.1\r\n"), "{}", request.head);
        assert_eq!(request.header("idempotency-key").as_deref(), Some(done[0].idempotency_key.as_str()));
        assert_eq!(request.header("content-encoding").as_deref(), Some("gzip"));
    }
    assert!(seen[1].body.starts_with(&[0x1f, 0x8b]), "gzip body");
    assert_eq!(seen[1].body, seen[2].body);
    // The client's own backoff is 10 ms: only the server's `Retry-After: 1` makes it wait this long.
    let waited = waited.lock().unwrap().expect("the retry after the 503 arrived");
    assert!(waited >= Duration::from_secs(1), "retried {waited:?} after the 503");
    drop(done);
    fake.abort();
}

#[tokio::test]
async fn gives_up_after_the_attempts_allowed() {
    // A port that refuses: bound, then closed.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "x.folded", "main;a 1\n").display().to_string();
    let error = upload::run(&args(addr, &["--app", "shop", "--attempts", "3", &file])).await.unwrap_err();
    assert!(matches!(error, UploadError::GaveUp { attempts: 3, .. }), "{error:?}");
}

/// A proxy in front of `target` that loses the answer to the first request: it forwards the
/// request, waits until the server has answered (so the upload is stored), then closes the
/// client's connection without relaying a byte. Later connections pass through untouched.
async fn answer_losing_proxy(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let lose_answer = std::mem::take(&mut first);
            tokio::spawn(async move {
                let upstream = TcpStream::connect(target).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut upstream_read, mut upstream_write) = upstream.into_split();
                let forward = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
                });
                if lose_answer {
                    let mut answer = [0u8; 1];
                    let _ = upstream_read.read(&mut answer).await;
                    forward.abort();
                    let _ = client_write.shutdown().await;
                } else {
                    let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_stored_upload_whose_answer_was_lost_counts_once_after_the_retry() {
    let server = kiln(Auth::default()).await;
    let proxy = answer_losing_proxy(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "x.folded", "main;a 4\n").display().to_string();
    let done = tokio::time::timeout(GIVE_UP, upload::run(&args(proxy, &["--app", "shop", "--type", "cpu", &file])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done[0].attempts, 2, "the lost answer made the client retry");
    assert_eq!(server.metrics.ingest_uploads.load(Ordering::SeqCst), 2, "both attempts reached Kiln");
    assert_eq!(server.metrics.ingest_duplicates.load(Ordering::SeqCst), 1);
    let (status, folded) = get(server.addr, "/render?query=shop.cpu&format=folded").await;
    assert_eq!((status, folded.as_str()), (200, "main;a 4\n"), "stored once");
}

#[tokio::test]
async fn the_tenant_goes_as_x_scope_orgid() {
    let server = kiln(Auth::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "x.folded", "main;a 1\n").display().to_string();
    upload::run(&args(server.addr, &["--app", "shop", "--type", "cpu", "--tenant", "team-a", &file])).await.unwrap();
    let (_, default_apps) = get(server.addr, "/api/apps").await;
    assert_eq!(default_apps, "[]", "nothing in the default tenant");
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = "GET /api/apps HTTP/1.1\r\nhost: kiln\r\nx-scope-orgid: team-a\r\nconnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.contains(r#""name":"shop""#), "{response}");
}

/// A TLS endpoint on loopback in front of `target`, with the test certificate of
/// tests/data/tls (issued to `localhost` and 127.0.0.1 by the CA in `ca.pem`).
async fn tls_terminator(target: SocketAddr) -> SocketAddr {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::crypto::aws_lc_rs;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate hangs up here.
                let Ok(mut client) = acceptor.accept(client).await else { return };
                let mut upstream = TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn uploads_go_over_https_with_the_token_and_a_trusted_certificate_only() {
    let server = kiln(Auth::new(Some("s3cret".into()), None)).await;
    let tls = tls_terminator(server.addr).await;
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/ca.pem").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "x.folded", "main;tls 3\n").display().to_string();
    let https = |extra: &[&str]| {
        let url = format!("https://localhost:{}", tls.port());
        let mut argv =
            vec!["upload", "--server", url.as_str(), "--retry-backoff", "10ms", "--app", "shop", "--type", "cpu"];
        argv.extend_from_slice(extra);
        argv.push(&file);
        UploadArgs::try_parse_from(argv).expect("flags parse")
    };

    // A certificate the client does not trust: refused before anything is sent.
    let error = tokio::time::timeout(GIVE_UP, upload::run(&https(&["--attempts", "1", "--token", "s3cret"])))
        .await
        .unwrap()
        .unwrap_err();
    let UploadError::GaveUp { last, .. } = &error else { panic!("a TLS failure, not {error:?}") };
    assert!(last.to_lowercase().contains("certificate"), "says why: {last}");
    assert_eq!(server.metrics.ingest_uploads.load(Ordering::SeqCst), 0);

    // Trusted through --ca-cert, but no token: the server's 401 came back through TLS.
    let error = upload::run(&https(&["--ca-cert", &ca])).await.unwrap_err();
    assert!(matches!(error, UploadError::Rejected { status, .. } if status.as_u16() == 401), "{error:?}");

    // Trusted, with the token: stored.
    let done = tokio::time::timeout(GIVE_UP, upload::run(&https(&["--ca-cert", &ca, "--token", "s3cret"])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done[0].attempts, 1);
    assert_eq!(server.metrics.ingest_uploads.load(Ordering::SeqCst), 1);
    let (status, folded) = get(server.addr, "/render?query=shop.cpu&format=folded").await;
    assert_eq!((status, folded.as_str()), (200, "main;tls 3\n"));
}
