//! The `kiln` binary is the whole product: copied alone to an empty directory and run from
//! there, it serves the pages and the web UI's files (built into it), byte for byte what
//! `make site` built. The browser half of this proof is the Playwright suite, which
//! end2end/run.sh runs against such a relocated copy.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use support::Kiln;

/// One GET of a site file with extra header lines: the status, the head (lower-cased) and the
/// raw body (site files are sent whole, never chunked).
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response[split + 4..].to_vec();
    assert!(!head.contains("transfer-encoding: chunked"), "site files are sent whole: {head}");
    (status, head, body)
}

#[test]
fn a_copied_binary_serves_the_built_site_from_an_empty_directory() {
    // Where server/build.rs took the site from.
    let built = match option_env!("KILN_SITE_PKG") {
        Some(dir) => Path::new(dir).to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/site/pkg"),
    };
    let built_wasm = std::fs::read(built.join("kiln_bg.wasm")).expect("the site is built (`make site`)");

    let alone = tempfile::tempdir().unwrap();
    let binary = alone.path().join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &binary).unwrap();
    assert_eq!(std::fs::read_dir(alone.path()).unwrap().count(), 1, "nothing but the binary");
    let kiln = Kiln::start_binary(&binary, alone.path(), Path::new("data"), &[]);

    let (status, head, wasm) = get(kiln.addr, "/pkg/kiln_bg.wasm", "");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: application/wasm"), "{head}");
    assert!(head.contains("etag: \""), "{head}");
    assert!(wasm == built_wasm, "the served wasm ({} bytes) is the built one ({} bytes)", wasm.len(), built_wasm.len());

    // Compressed for browsers that take gzip, and the same bytes once inflated.
    let (status, head, gzipped) = get(kiln.addr, "/pkg/kiln_bg.wasm", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(gzipped.len() < wasm.len() / 2, "{} bytes gzipped of {}", gzipped.len(), wasm.len());
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..]).read_to_end(&mut inflated).unwrap();
    assert!(inflated == built_wasm, "the gzip copy inflates to the built wasm");

    // Asked again with the tag it was given: not sent again.
    let etag = head.lines().find_map(|line| line.strip_prefix("etag: ")).unwrap().to_string();
    let (status, _, body) = get(kiln.addr, "/pkg/kiln_bg.wasm", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((status, body.len()), (304, 0));

    for (file, content_type) in [("kiln.js", "text/javascript"), ("kiln.css", "text/css")] {
        let (status, head, body) = get(kiln.addr, &format!("/pkg/{file}"), "");
        assert_eq!(status, 200, "{file}: {head}");
        assert!(head.contains(&format!("content-type: {content_type}")), "{file}: {head}");
        assert!(body == std::fs::read(built.join(file)).unwrap(), "{file} is the built one");
    }

    // The icons: at the root where clients look for one unasked, and the SVG every page links
    // (the "not found" page too), so that no page's console shows a 404 for an icon.
    for (path, file, content_type) in
        [("/favicon.ico", "favicon.ico", "image/x-icon"), ("/pkg/favicon.svg", "favicon.svg", "image/svg+xml")]
    {
        let (status, head, body) = get(kiln.addr, path, "");
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.contains(&format!("content-type: {content_type}")), "{path}: {head}");
        assert!(body == std::fs::read(built.join(file)).unwrap(), "{path} is the built {file}");
    }
    assert!(get(kiln.addr, "/favicon.ico", "").2.starts_with(&[0, 0, 1, 0]), "an ICO file");
    for page in ["/", "/explore?query=app.cpu", "/diff", "/open", "/no/such/page"] {
        let (_, html) = support::http(kiln.addr, "GET", page, b"").unwrap();
        assert!(
            html.contains(r#"<link rel="icon" href="/pkg/favicon.svg" type="image/svg+xml""#),
            "{page} links the icon: {html}"
        );
    }

    // A page that loads them, and a 404 for what is not there.
    let (status, page) = support::http(kiln.addr, "GET", "/", b"").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("/pkg/kiln.js") && page.contains("kiln_bg.wasm"), "the page loads the site: {page}");
    assert_eq!(get(kiln.addr, "/pkg/missing.js", "").0, 404);
    assert_eq!(support::http(kiln.addr, "GET", "/no/such/page", b"").unwrap().0, 404);

    // Nothing was written beside the binary but the data directory it was told to use.
    let mut left: Vec<String> = std::fs::read_dir(alone.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["data", "kiln"]);
}

#[test]
fn site_root_serves_the_ui_files_from_disk() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("pkg")).unwrap();
    std::fs::write(root.path().join("pkg/kiln.css"), "body { color: hotpink }").unwrap();
    std::fs::write(root.path().join("pkg/favicon.ico"), b"\0\0\x01\0from disk").unwrap();
    let data = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(data.path(), &["--site-root", root.path().to_str().unwrap()]);
    let (status, head, body) = get(kiln.addr, "/pkg/kiln.css", "");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/css"), "{head}");
    assert_eq!(body, b"body { color: hotpink }");
    // `/favicon.ico` is the directory's `pkg/favicon.ico` too.
    let (status, head, body) = get(kiln.addr, "/favicon.ico", "");
    assert_eq!((status, &body[..]), (200, &b"\0\0\x01\0from disk"[..]), "{head}");
    assert!(head.contains("content-type: image/x-icon"), "{head}");
    // Only what the directory holds: the embedded copy is not mixed in.
    assert_eq!(get(kiln.addr, "/pkg/kiln.js", "").0, 404);
    assert_eq!(get(kiln.addr, "/pkg/../Cargo.toml", "").0, 404);
}
