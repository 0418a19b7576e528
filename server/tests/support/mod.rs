//! Running the real `kiln` binary from tests: start it on a free port, talk plain HTTP/1.1,
//! kill it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `kiln serve`.
pub struct Kiln {
    pub addr: SocketAddr,
    child: Option<Child>,
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

impl Kiln {
    /// Starts Kiln on `data_dir` with extra flags and waits until it answers; its log goes to
    /// `kiln.log` in the data directory.
    pub fn start(data_dir: &Path, flags: &[&str]) -> Kiln {
        Kiln::start_binary(Path::new(env!("CARGO_BIN_EXE_kiln")), Path::new("."), data_dir, flags)
    }

    /// [`Kiln::start`] with another copy of the binary, run in `cwd` (a relative `data_dir` is
    /// under it).
    pub fn start_binary(binary: &Path, cwd: &Path, data_dir: &Path, flags: &[&str]) -> Kiln {
        Kiln::start_until(binary, cwd, data_dir, flags, "/readyz")
    }

    /// [`Kiln::start`], waiting only until `path` answers 200 (`/healthz` for a server that
    /// is expected not to be ready).
    pub fn start_answering(data_dir: &Path, flags: &[&str], path: &str) -> Kiln {
        Kiln::start_until(Path::new(env!("CARGO_BIN_EXE_kiln")), Path::new("."), data_dir, flags, path)
    }

    fn start_until(binary: &Path, cwd: &Path, data_dir: &Path, flags: &[&str], ready_path: &str) -> Kiln {
        let data_dir = &cwd.join(data_dir);
        std::fs::create_dir_all(data_dir).unwrap();
        let addr = free_port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("kiln.log")).unwrap();
        let child = Command::new(binary)
            .current_dir(cwd)
            .env_remove("KILN_SITE_ROOT")
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(flags)
            .env("KILN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kiln starts");
        let mut kiln = Kiln { addr, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http(addr, "GET", ready_path, b"") {
                return kiln;
            }
            if let Some(status) = kiln.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(data_dir.join("kiln.log")).unwrap_or_default();
                panic!("kiln exited with {status} before serving:\n{log}");
            }
            assert!(Instant::now() < deadline, "kiln did not answer on {addr} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for the process to exit on its own (after a SIGTERM) and returns how it ended.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").wait().unwrap()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Kiln {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 request on its own connection: status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    http_with(addr, method, path, &[], body)
}

/// [`http`] with extra request headers.
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no response head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok((status, dechunk(body)));
    }
    Ok((status, body.to_string()))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// `stack value` lines into a map.
pub fn folded_values(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(stack, value)| (stack.to_string(), value.parse().unwrap()))
        .collect()
}

/// A small random source for kill timing (seeded from the clock; printed for reruns).
pub struct XorShift(u64);

impl XorShift {
    pub fn seeded() -> XorShift {
        let seed = std::env::var("KILN_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        println!("seed {seed} (rerun with KILN_TEST_SEED={seed})");
        XorShift(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `name` found on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// A running `s3s-fs` (a real S3 API over a folder; its buckets are the folder's
/// subfolders), with the access key `kilnkey` and secret `kilnsecret`; killed when dropped.
pub struct S3Server(Child);

impl S3Server {
    /// Starts `binary` (`s3s-fs`) serving `root` on `addr` and waits until it listens.
    pub fn start(binary: &Path, addr: SocketAddr, root: &Path) -> S3Server {
        let server = S3Server(
            Command::new(binary)
                .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
                .args(["--access-key", "kilnkey", "--secret-key", "kilnsecret"])
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("s3s-fs starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
