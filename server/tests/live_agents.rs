//! Real Pyroscope agents, live: the `pyroscope` crate 0.5 (pprof-rs backend, pprof and folded
//! encodings) and 2.x (built-in backend, Connect push) each profile a child process burning CPU
//! in two named functions for ~25 s against a Kiln on a socket; then `/render` must show both
//! functions. The three runs share one Kiln and run at once, so the test takes ~30 s.
//!
//! The agents are the workspace binaries `kiln-agent-rust-v05` and `kiln-agent-rust-v2`
//! (server/agents/). Each links its own copy of pprof-rs, and a package's test can only name its
//! own binaries, so this test finds them next to its own executable in the target directory.
//! `cargo test` builds other packages' binaries only as test harnesses, so build them first with
//! `cargo build -p kiln-agent-rust-v05 -p kiln-agent-rust-v2` (`make test` does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kiln_server::api::{AppState, router};
use kiln_server::edge::{self, EdgeConfig};
use kiln_server::metrics::Metrics;
use kiln_server::storage::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How long each agent burns CPU: two full 10 s uploads and the partial one sent on stop.
const RUN_SECONDS: u64 = 25;
/// An agent still running this long after it should have stopped is killed and the test fails.
const GIVE_UP: Duration = Duration::from_secs(120);

struct Kiln {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn kiln() -> Kiln {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let state =
        AppState { metrics: metrics.clone(), ..AppState::new(Arc::new(Store::open(dir.path()).await.unwrap())) };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(edge::serve(listener, router(state), metrics, EdgeConfig::default(), async {
        let _ = stopped.await;
    }));
    Kiln { addr, _stop: stop, _dir: dir }
}

/// `target/<profile>/<name>`: this test runs from `target/<profile>/deps/`.
fn agent_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("test binary in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build the agents first with `cargo build -p kiln-agent-rust-v05 -p kiln-agent-rust-v2` \
         (with the same profile and CARGO_TARGET_DIR); `make test` does",
        path.display()
    );
    path
}

/// One agent run: which binary, its extra flags, and the application it reports as.
struct Run {
    binary: &'static str,
    flags: &'static [&'static str],
    app: &'static str,
}

const RUNS: &[Run] = &[
    Run { binary: "kiln-agent-rust-v05", flags: &[], app: "live_v05_pprof" },
    // Sends `name=live_v05_folded.cpu.cpu{env=test}`: the agent appends the type again.
    Run { binary: "kiln-agent-rust-v05", flags: &["--folded"], app: "live_v05_folded" },
    Run { binary: "kiln-agent-rust-v2", flags: &[], app: "live_v2_push" },
];

/// Runs the agent to completion; its stderr on failure.
fn run_agent(binary: PathBuf, flags: &[&str], url: &str, app: &str) -> Result<(), String> {
    let mut child = Command::new(&binary)
        .args(flags)
        .args([url, &format!("{app}.cpu"), &RUN_SECONDS.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(RUN_SECONDS) + GIVE_UP;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return if status.success() { Ok(()) } else { Err(format!("{app}: {status}\n{stderr}")) };
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{app}: still running {GIVE_UP:?} after its {RUN_SECONDS} s, killed"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One GET on its own connection, `Connection: close`; the status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: kiln\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Sum of the counts of the stacks that pass through `function`.
fn total_through(folded: &str, function: &str) -> u64 {
    folded
        .lines()
        .filter(|line| line.contains(function))
        .map(|line| line.rsplit_once(' ').and_then(|(_, n)| n.parse::<u64>().ok()).unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agents_show_the_functions_they_burned_cpu_in() {
    let binaries: Vec<PathBuf> = RUNS.iter().map(|r| agent_binary(r.binary)).collect();
    let server = kiln().await;
    let url = format!("http://{}", server.addr);
    let runs: Vec<_> = RUNS
        .iter()
        .zip(binaries)
        .map(|(run, binary)| {
            let url = url.clone();
            tokio::task::spawn_blocking(move || run_agent(binary, run.flags, &url, run.app))
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        if let Err(e) = run.await.unwrap() {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "agents failed:\n{}", failures.join("\n"));

    for run in RUNS {
        let (status, folded) = get(server.addr, &format!("/render?query={}.cpu&format=folded", run.app)).await;
        assert_eq!(status, 200, "{}: {folded}", run.app);
        for function in ["burn_fibonacci", "burn_primes"] {
            let total = total_through(&folded, function);
            assert!(total > 0, "{} {:?}: no samples in {function}:\n{folded}", run.binary, run.flags);
        }
        // The agent's tag is a label whichever way it travelled (pprof labels, name, push series).
        let (_, tagged) =
            get(server.addr, &format!("/render?query={}.cpu%7Benv%3D%22test%22%7D&format=folded", run.app)).await;
        assert_eq!(tagged, folded, "{}: everything carries env=test", run.app);
    }
}
