//! Cluster mode: several Kiln servers on one NATS JetStream (a real `nats-server -js`, started
//! here on a free port) and one S3 bucket (`s3s-fs`), answering like one server.
//!
//! Needs `nats-server` (Debian's package; `make nats-server` installs it) and `s3s-fs` (`make
//! s3s-fs`). Every check polls with a generous deadline: nothing here is timed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kiln_server::storage::SeriesKey;
use kiln_server::storage::block::series_id;
use kiln_server::storage::cluster::nats::NatsLog;
use kiln_server::storage::cluster::{Document, LogConfig, PARTITIONS, SharedLog, partition};
use support::{Kiln, S3Server, folded_values, http, http_with, on_path};

const QUERY: &str = "/render?query=clustered.cpu&format=folded";
const DEADLINE: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `nats-server -js`, stopped (SIGKILL) when dropped; restartable on its port and
/// store directory.
struct Nats {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

impl Nats {
    fn start(store: &Path) -> Nats {
        // A free port can be taken by another test between choosing and binding it: then
        // nats-server exits, and another port is tried.
        for _ in 0..5 {
            let mut nats = Nats { child: None, port: free_port(), store: store.to_path_buf() };
            if nats.try_start() {
                return nats;
            }
        }
        panic!("nats-server did not start; see {}", store.join("nats.log").display());
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        assert!(self.try_start(), "nats-server did not start again on port {}", self.port);
    }

    /// Starts nats-server on this port and store; false if it exited (its port was taken).
    fn try_start(&mut self) -> bool {
        let binary =
            on_path("nats-server").or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()));
        let binary =
            binary.expect("`nats-server` is not installed: run `make nats-server` (Debian's package nats-server)");
        let log_path = self.store.join("nats.log");
        let ready_before = std::fs::read_to_string(&log_path).unwrap_or_default().matches("Server is ready").count();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let mut child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            let ready = std::fs::read_to_string(&log_path).unwrap_or_default().matches("Server is ready").count();
            if ready > ready_before {
                self.child = Some(child);
                return true;
            }
            assert!(Instant::now() < deadline, "nats-server did not get ready on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// NATS, a bucket, and the flags that put a Kiln server on both.
struct Cluster {
    nats: Nats,
    _s3: S3Server,
    bucket_dir: PathBuf,
    flags: Vec<String>,
    _dirs: tempfile::TempDir,
}

impl Cluster {
    fn start(dirs: tempfile::TempDir) -> Cluster {
        let s3s = on_path("s3s-fs").expect(
            "`s3s-fs` is not on PATH: install it with `make s3s-fs` (cargo install s3s-fs@0.14.1 --features binary --locked)",
        );
        let root = dirs.path().join("s3");
        std::fs::create_dir_all(root.join("kiln")).unwrap();
        let s3_addr: SocketAddr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let s3 = S3Server::start(&s3s, s3_addr, &root);
        std::fs::create_dir_all(dirs.path().join("nats")).unwrap();
        let nats = Nats::start(&dirs.path().join("nats"));
        let flags = [
            "--storage",
            "s3://kiln/c",
            "--s3-endpoint",
            &format!("http://{s3_addr}"),
            "--s3-region",
            "us-east-1",
            "--s3-access-key",
            "kilnkey",
            "--s3-secret-key",
            "kilnsecret",
            "--block-duration",
            "2s",
            "--block-refresh",
            "1s",
            "--cluster",
            // A list, as in production (one server named twice: both answer).
            &format!("{}, {}", nats.url(), nats.url()),
        ]
        .map(String::from)
        .to_vec();
        Cluster { nats, _s3: s3, bucket_dir: root.join("kiln/c"), flags, _dirs: dirs }
    }

    fn kiln(&self, name: &str) -> Kiln {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        Kiln::start(&self._dirs.path().join(name), &flags)
    }

    /// A server's log so far, without its colour codes.
    fn log_of(&self, name: &str) -> String {
        without_colours(&std::fs::read_to_string(self._dirs.path().join(name).join("kiln.log")).unwrap_or_default())
    }

    /// Level-0 block metas in the bucket.
    fn blocks(&self) -> Vec<Block> {
        let Ok(entries) = std::fs::read_dir(self.bucket_dir.join("blocks/cluster")) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".meta.json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter(|meta| meta["level"] == 0)
            .map(|meta| Block {
                stream_seq: meta["stream_seq"].as_u64().unwrap(),
                uploads: meta["uploads"].as_u64().unwrap(),
                partition: meta["partition"].as_u64().expect("a cluster block names its partition"),
                cut_by: meta["cut_by"].as_str().expect("a cluster block names its writer").to_string(),
            })
            .collect()
    }

    /// Uploads in level-0 blocks.
    fn uploads_in_blocks(&self) -> u64 {
        self.blocks().iter().map(|b| b.uploads).sum()
    }

    /// A server's id, as it names itself in leases and block metas.
    fn server_id(&self, name: &str) -> String {
        std::fs::read_to_string(self._dirs.path().join(name).join("writer-id")).unwrap().trim().to_string()
    }

    /// The partition leases held now: the partitions of each holder, by server id.
    fn lease_holders(&self) -> BTreeMap<String, BTreeSet<u64>> {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let log = NatsLog::connect(&log_config(&self.nats)).await.unwrap();
            let mut holders: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
            for (lease, holder) in log.leases_held("cutter.").await.unwrap() {
                holders.entry(holder).or_default().insert(lease["cutter.".len()..].parse().unwrap());
            }
            holders
        })
    }

    /// The stream's first and last sequence.
    fn stream_span(&self) -> (u64, u64) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let client = async_nats::connect(self.nats.url()).await.unwrap();
            let mut stream = async_nats::jetstream::new(client).get_stream("KILN").await.unwrap();
            let state = &stream.info().await.unwrap().state;
            (state.first_sequence, state.last_sequence)
        })
    }
}

/// A level-0 block's meta.
#[derive(Debug)]
struct Block {
    /// The freeze marker its partition's head was cut at.
    stream_seq: u64,
    uploads: u64,
    partition: u64,
    /// The server that wrote it.
    cut_by: String,
}

/// A `host` label value whose series (`clustered.cpu{host=…}`) is in `partition`.
fn host_in(wanted: u64) -> String {
    (0..)
        .map(|i| format!("h{i}"))
        .find(|host| {
            let labels = BTreeMap::from([("host".to_string(), host.clone())]);
            partition(series_id(&SeriesKey::new("clustered", "cpu", labels))) == wanted
        })
        .unwrap()
}

/// Uploads `stack` to a series of `partition`.
fn upload_in(kiln: &Kiln, partition: u64, stack: &str) -> u16 {
    let path = format!("/ingest?name=clustered.cpu%7Bhost%3D{}%7D", host_in(partition));
    match http(kiln.addr, "POST", &path, format!("{stack} 1\n").as_bytes()) {
        Ok((status, _)) => status,
        Err(_) => 0,
    }
}

/// Polls until the partition leases are spread over exactly `servers` (each holds one or
/// more, all are held); returns them.
fn wait_for_leases_spread(cluster: &Cluster, servers: &[&str]) -> BTreeMap<String, BTreeSet<u64>> {
    let ids: BTreeSet<String> = servers.iter().map(|name| cluster.server_id(name)).collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let holders = cluster.lease_holders();
        let held: usize = holders.values().map(BTreeSet::len).sum();
        if held == PARTITIONS as usize && holders.keys().cloned().collect::<BTreeSet<_>>() == ids {
            return holders;
        }
        assert!(Instant::now() < deadline, "the partition leases were never spread over {servers:?}: {holders:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn upload(kiln: &Kiln, stack: &str) -> u16 {
    match http(kiln.addr, "POST", "/ingest?name=clustered.cpu", format!("{stack} 1\n").as_bytes()) {
        Ok((status, _)) => status,
        Err(_) => 0,
    }
}

/// Polls `kiln` until its answer holds every `acked` stack exactly once, each of `maybe` (sent
/// but not acknowledged) at most once, and nothing else. No answer meanwhile may count an
/// upload twice (a head and the block cut from it must never both answer).
fn wait_for_exactly(kiln: &Kiln, acked: &BTreeSet<String>, maybe: &BTreeSet<String>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answer = http(kiln.addr, "GET", QUERY, b"").map(|(_, body)| body).unwrap_or_default();
        let values: BTreeMap<String, u64> = folded_values(&answer);
        let twice: Vec<(&String, &u64)> = values.iter().filter(|(_, v)| **v > 1).collect();
        assert!(twice.is_empty(), "{} counted uploads more than once: {twice:?}", kiln.addr);
        let all_once = acked.iter().all(|s| values.get(s) == Some(&1));
        let nothing_else = values.iter().all(|(s, &v)| (acked.contains(s) || maybe.contains(s)) && v == 1);
        if all_once && nothing_else {
            return;
        }
        let missing: Vec<&String> = acked.iter().filter(|s| values.get(*s) != Some(&1)).collect();
        let extra: Vec<(&String, &u64)> =
            values.iter().filter(|(s, v)| !(acked.contains(*s) || maybe.contains(*s)) || **v != 1).collect();
        assert!(
            Instant::now() < deadline,
            "{} never answered with every acknowledged upload exactly once; missing or miscounted {missing:?}, unexpected {extra:?}",
            kiln.addr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn servers_on_one_stream_answer_like_one() {
    let mut cluster = Cluster::start(tempfile::tempdir().unwrap());
    let servers = vec![cluster.kiln("a"), cluster.kiln("b"), cluster.kiln("c")];
    let mut names = vec!["a", "b", "c"];
    let mut acked = BTreeSet::new();
    let mut maybe = BTreeSet::new();
    // Round-robin, as behind a load balancer, into every partition.
    for i in 0..32 {
        let stack = format!("main;upload_{i}");
        assert_eq!(upload_in(&servers[i % 3], i as u64 % PARTITIONS, &stack), 200, "upload {i}");
        acked.insert(stack);
    }
    // A keyed retry that lands on another server is counted once.
    for kiln in &servers[..2] {
        let (status, body) = http_with(
            kiln.addr,
            "POST",
            "/ingest?name=clustered.cpu",
            &[("Idempotency-Key", "retry-1")],
            b"main;keyed 1\n",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    acked.insert("main;keyed".to_string());
    for kiln in &servers {
        wait_for_exactly(kiln, &acked, &maybe);
    }
    // Every server cuts some of the partitions.
    wait_for_leases_spread(&cluster, &names);
    let spread_after = cluster.stream_span().1;
    let mut i = 0;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stack = format!("main;spread_{i}");
        assert_eq!(upload_in(&servers[i % 3], i as u64 % PARTITIONS, &stack), 200, "upload {i}");
        acked.insert(stack);
        i += 1;
        if i % PARTITIONS as usize == 0 {
            let writers: BTreeSet<String> =
                cluster.blocks().into_iter().filter(|b| b.stream_seq > spread_after).map(|b| b.cut_by).collect();
            if writers.len() == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "blocks were not cut by every server: {writers:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let holders = wait_for_leases_spread(&cluster, &names);

    // A server holding partition leases killed, never restarted: nothing it acknowledged is
    // lost, and the other servers take its partitions and cut their blocks from then on.
    let mut servers = servers;
    let killed = (0..names.len()).max_by_key(|&at| holders[&cluster.server_id(names[at])].len()).unwrap();
    let killed_id = cluster.server_id(names[killed]);
    let killed_partitions = holders[&killed_id].clone();
    servers.remove(killed).kill();
    names.remove(killed);
    let (_, killed_after) = cluster.stream_span();
    for i in 32..64 {
        let stack = format!("main;upload_{i}");
        assert_eq!(upload_in(&servers[i % 2], i as u64 % PARTITIONS, &stack), 200, "upload {i}");
        acked.insert(stack);
    }
    for kiln in &servers {
        wait_for_exactly(kiln, &acked, &maybe);
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let blocks = cluster.blocks();
        let in_blocks: u64 = blocks.iter().map(|b| b.uploads).sum();
        let later: Vec<&Block> = blocks.iter().filter(|b| b.stream_seq > killed_after).collect();
        let writers: BTreeSet<&str> = later.iter().map(|b| b.cut_by.as_str()).collect();
        assert!(!writers.contains(killed_id.as_str()), "a killed server cut a block: {later:?}");
        let taken_over = killed_partitions.iter().all(|p| later.iter().any(|b| b.partition == *p));
        // Nothing counted twice in blocks either (uploads of one cut are in one block).
        assert!(
            in_blocks <= acked.len() as u64,
            "blocks hold {in_blocks} uploads, more than the {} acknowledged",
            acked.len()
        );
        if in_blocks == acked.len() as u64 && taken_over && writers.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "blocks hold {in_blocks} of {} uploads; blocks cut since the kill: {later:?} (the killed server held {killed_partitions:?})",
            acked.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_leases_spread(&cluster, &names);
    // The stream is trimmed below what is in blocks (one to two cuts of each partition are
    // kept, so not all of it).
    let deadline = Instant::now() + DEADLINE;
    while cluster.stream_span().0 <= 1 {
        assert!(Instant::now() < deadline, "the stream was never trimmed: {:?}", cluster.stream_span());
        std::thread::sleep(Duration::from_millis(500));
    }
    // A server started now, on a trimmed stream, resumes each partition at its own cut and
    // sees everything.
    servers.push(cluster.kiln("d"));
    names.push("d");
    wait_for_exactly(&servers[2], &acked, &maybe);

    // NATS stopped: uploads are refused with 503 (nothing is acknowledged that is not in the
    // log), /readyz says why; NATS back: uploads are accepted again, with no operator action.
    cluster.nats.stop();
    let mut attempt = 0;
    let mut refused = false;
    let deadline = Instant::now() + DEADLINE;
    while !refused {
        let stack = format!("main;during_outage_{attempt}");
        match upload(&servers[attempt % 3], &stack) {
            200 => {
                acked.insert(stack);
            }
            503 => {
                maybe.insert(stack);
                refused = true;
            }
            other => panic!("an upload while NATS is down answered {other}"),
        }
        attempt += 1;
        assert!(Instant::now() < deadline, "uploads were never refused while NATS was down");
    }
    let (status, why) = http(servers[0].addr, "GET", "/readyz", b"").unwrap();
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("NATS"), "/readyz should say NATS is unreachable: {why}");
    cluster.nats.restart();
    // Each server's client reconnects on its own schedule: wait for each to take uploads.
    for kiln in &servers {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let stack = format!("main;after_outage_{attempt}");
            attempt += 1;
            let status = upload(kiln, &stack);
            if status == 200 {
                acked.insert(stack);
                break;
            }
            assert!(matches!(status, 503 | 0), "an upload while NATS restarts answered {status}");
            maybe.insert(stack);
            assert!(Instant::now() < deadline, "uploads were not accepted again after NATS restarted");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for i in 0..6 {
        let stack = format!("main;recovered_{i}");
        assert_eq!(upload(&servers[i % 3], &stack), 200, "upload {i} after NATS restarted");
        acked.insert(stack);
    }
    for kiln in &servers {
        wait_for_exactly(kiln, &acked, &maybe);
        let (status, body) = http(kiln.addr, "GET", "/readyz", b"").unwrap();
        assert_eq!(status, 200, "{body}");
    }

    // A server stopped gracefully gives its leases up at once; the others cut what follows.
    wait_for_leases_spread(&cluster, &names);
    let stopping = servers.remove(0);
    let stopped = names.remove(0);
    let term = Command::new("kill").args(["-TERM", &stopping.pid().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(stopping.wait().success());
    assert!(cluster.log_of(stopped).contains("gave up its leases"), "{}", cluster.log_of(stopped));
    let holders = cluster.lease_holders();
    assert!(
        !holders.contains_key(&cluster.server_id(stopped)),
        "a stopped server's leases are free at once: {holders:?}"
    );
    for i in 0..8 {
        let stack = format!("main;after_stop_{i}");
        assert_eq!(upload_in(&servers[i % 2], i as u64 * 2, &stack), 200, "upload {i} after a server stopped");
        acked.insert(stack);
    }
    let in_blocks_expected = acked.len() as u64;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let in_blocks = cluster.uploads_in_blocks();
        // Uploads refused during the outage may have been stored: at least every one acknowledged.
        if in_blocks >= in_blocks_expected && in_blocks <= in_blocks_expected + maybe.len() as u64 {
            let answered =
                http(servers[0].addr, "GET", QUERY, b"").map(|(_, body)| folded_values(&body)).unwrap_or_default();
            if answered.values().sum::<u64>() == in_blocks {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "blocks hold {in_blocks} uploads, not the {in_blocks_expected} acknowledged"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for kiln in &servers {
        wait_for_exactly(kiln, &acked, &maybe);
    }
    wait_for_leases_spread(&cluster, &names);
}

/// Partitions are cut at different points of the stream (each when its own head is due):
/// a server started later, or restarted, resumes each partition at its own cut, so an upload
/// above one partition's cut and below another's is counted once.
#[test]
fn a_server_started_later_resumes_each_partition_at_its_own_cut() {
    let cluster = Cluster::start(tempfile::tempdir().unwrap());
    let a = cluster.kiln("a");
    let mut acked = BTreeSet::new();
    // Uploads into a few partitions in turn, until the bucket holds blocks of several
    // partitions with different newest cuts.
    let deadline = Instant::now() + DEADLINE;
    let mut i = 0;
    loop {
        let stack = format!("main;staggered_{i}");
        assert_eq!(upload_in(&a, i % 5, &stack), 200, "upload {i}");
        acked.insert(stack);
        i += 1;
        std::thread::sleep(Duration::from_millis(300));
        let mut newest: BTreeMap<u64, u64> = BTreeMap::new();
        for block in cluster.blocks() {
            let cut = newest.entry(block.partition).or_default();
            *cut = (*cut).max(block.stream_seq);
        }
        let distinct: BTreeSet<u64> = newest.values().copied().collect();
        if i >= 20 && distinct.len() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "blocks were not cut per partition: {newest:?}");
    }
    // Some uploads still in heads, above some partitions' cuts.
    for j in 0..5 {
        let stack = format!("main;in_head_{j}");
        assert_eq!(upload_in(&a, j, &stack), 200);
        acked.insert(stack);
    }
    let b = cluster.kiln("b");
    wait_for_exactly(&b, &acked, &BTreeSet::new());
    a.kill();
    let a = cluster.kiln("a");
    wait_for_exactly(&a, &acked, &BTreeSet::new());
    for j in 0..5 {
        let stack = format!("main;after_restart_{j}");
        assert_eq!(upload_in(if j % 2 == 0 { &a } else { &b }, j, &stack), 200);
        acked.insert(stack);
    }
    for kiln in [&a, &b] {
        wait_for_exactly(kiln, &acked, &BTreeSet::new());
    }
}

#[test]
fn compacted_cluster_blocks_count_every_upload_once() {
    let mut cluster = Cluster::start(tempfile::tempdir().unwrap());
    cluster.flags.extend(["--compaction-window", "8s"].map(String::from));
    let servers = [cluster.kiln("a"), cluster.kiln("b")];
    let mut acked = BTreeSet::new();
    // Spread over several compaction windows, so that several blocks fall in each.
    for i in 0..16 {
        let stack = format!("main;spread_{i}");
        assert_eq!(upload(&servers[i % 2], &stack), 200, "upload {i}");
        acked.insert(stack);
        std::thread::sleep(Duration::from_millis(500));
    }
    let compacted = || {
        std::fs::read_dir(cluster.bucket_dir.join("blocks/cluster"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".meta.json"))
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                    .filter(|meta| meta["level"] == 1)
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + DEADLINE;
    while compacted() == 0 {
        assert!(Instant::now() < deadline, "no block was compacted");
        for kiln in &servers {
            // Meanwhile no answer counts an upload twice.
            wait_for_exactly(kiln, &acked, &BTreeSet::new());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for kiln in &servers {
        wait_for_exactly(kiln, &acked, &BTreeSet::new());
    }
}

#[test]
fn records_that_are_not_kiln_s_are_skipped_and_counted() {
    let cluster = Cluster::start(tempfile::tempdir().unwrap());
    let kiln = cluster.kiln("a");
    let mut acked = BTreeSet::from(["main;before".to_string()]);
    assert_eq!(upload(&kiln, "main;before"), 200);
    // Anyone with access to NATS can publish on Kiln's subjects: garbage on an upload
    // subject, a damaged record and a marker that is no marker.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let log = NatsLog::connect(&log_config(&cluster.nats)).await.unwrap();
        for (subject, payload) in [
            ("kiln.uploads.3", b"not a record".to_vec()),
            ("kiln.uploads.0", vec![0xff; 64]),
            ("kiln.uploads.7", Vec::new()),
            ("kiln.cuts", b"{\"marker\":\"explode\"}".to_vec()),
        ] {
            log.publish(subject.to_string(), payload, None).await.unwrap();
        }
    });
    assert_eq!(upload(&kiln, "main;after"), 200);
    acked.insert("main;after".to_string());
    wait_for_exactly(&kiln, &acked, &BTreeSet::new());
    let (status, body) = http(kiln.addr, "GET", "/readyz", b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let log = cluster.log_of("a");
    assert_eq!(log.matches("skipping an unreadable record of the shared log").count(), 4, "{log}");
    let (_, metrics) = http(kiln.addr, "GET", "/metrics", b"").unwrap();
    assert!(metrics.lines().any(|l| l == "kiln_log_records_skipped_total 4"), "the skips are counted: {metrics}");
}

/// The log's text without its terminal colour codes.
fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(at) = rest.find('\u{1b}') {
        plain.push_str(&rest[..at]);
        rest = rest[at..].split_once('m').map_or("", |(_, after)| after);
    }
    plain.push_str(rest);
    plain
}

#[test]
fn a_stream_that_ends_before_the_blocks_is_refused() {
    let cluster = Cluster::start(tempfile::tempdir().unwrap());
    let kiln = cluster.kiln("a");
    assert_eq!(upload(&kiln, "main;in_a_block"), 200);
    let deadline = Instant::now() + DEADLINE;
    while cluster.uploads_in_blocks() < 1 {
        assert!(Instant::now() < deadline, "the upload never reached a block");
        std::thread::sleep(Duration::from_millis(200));
    }
    kiln.kill();
    // The stream deleted (as if NATS lost its storage); Kiln makes a new, empty one on start,
    // whose sequences start again below the newest cut in the bucket.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(cluster.nats.url()).await.unwrap();
        async_nats::jetstream::new(client).delete_stream("KILN").await.unwrap();
    });
    let flags: Vec<&str> = cluster.flags.iter().map(String::as_str).collect();
    let kiln = Kiln::start_answering(&cluster._dirs.path().join("a"), &flags, "/healthz");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, why) = http(kiln.addr, "GET", "/readyz", b"").unwrap();
        if status == 503 && why.contains("shared log ends at sequence 0") {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never said the log is behind the blocks: {status} {why}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(upload(&kiln, "main;would_be_skipped"), 503, "an upload every server would skip is refused");
    // Queries still answer from the blocks.
    wait_for_exactly(&kiln, &BTreeSet::from(["main;in_a_block".to_string()]), &BTreeSet::new());
}

fn log_config(nats: &Nats) -> LogConfig {
    LogConfig {
        urls: nats.url(),
        dedupe_window: Duration::from_secs(3600),
        replicas: 1,
        lease_ttl: Duration::from_secs(10),
    }
}

/// The interface's leases and documents, on NATS itself.
#[test]
fn a_lease_has_one_holder_at_a_time() {
    let dirs = tempfile::tempdir().unwrap();
    let nats = Nats::start(dirs.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let a = NatsLog::connect(&log_config(&nats)).await.unwrap();
        let b = NatsLog::connect(&log_config(&nats)).await.unwrap();
        let held = a.lease("cutter", "a", None).await.unwrap().expect("a free lease is taken");
        assert_eq!(b.lease("cutter", "b", None).await.unwrap(), None, "a held lease is not taken");
        let renewed = a.lease("cutter", "a", Some(held)).await.unwrap().expect("the holder renews");
        assert_eq!(a.lease("cutter", "a", Some(held)).await.unwrap(), None, "a stale revision is a lost lease");
        assert_eq!(b.lease("cutter", "b", None).await.unwrap(), None);
        assert!(a.lease("member.a", "a", None).await.unwrap().is_some());
        assert_eq!(b.leases_held("cutter").await.unwrap(), vec![("cutter".to_string(), "a".to_string())]);
        a.release("cutter", renewed).await.unwrap();
        assert_eq!(b.leases_held("cutter").await.unwrap(), vec![], "a released lease is not held");
        assert_eq!(b.leases_held("member.").await.unwrap(), vec![("member.a".to_string(), "a".to_string())]);
        assert!(b.lease("cutter", "b", None).await.unwrap().is_some(), "a released lease is taken");
        // A key published twice within the window is stored once.
        let first = a.publish("kiln.uploads.1".into(), b"x".to_vec(), Some("key-1".into())).await.unwrap();
        let second = b.publish("kiln.uploads.1".into(), b"x".to_vec(), Some("key-1".into())).await.unwrap();
        assert!(!first.duplicate && second.duplicate && second.seq == first.seq, "{first:?} {second:?}");
        // Documents are compare-and-set: a write at a revision that is gone stores nothing.
        let none = a.get("settings").await.unwrap();
        assert_eq!(none, Document { value: None, revision: 0 });
        assert!(a.put("settings", Some(b"{}".to_vec()), 0).await.unwrap(), "created");
        assert!(!b.put("settings", Some(b"{\"b\":1}".to_vec()), 0).await.unwrap(), "a second create is refused");
        let read = b.get("settings").await.unwrap();
        assert_eq!(read.value.as_deref(), Some(&b"{}"[..]));
        assert!(
            b.put("settings", Some(b"{\"b\":1}".to_vec()), read.revision).await.unwrap(),
            "written at its revision"
        );
        assert!(!a.put("settings", Some(b"{\"a\":1}".to_vec()), read.revision).await.unwrap(), "a stale revision");
        let read = a.get("settings").await.unwrap();
        assert_eq!(read.value.as_deref(), Some(&b"{\"b\":1}"[..]), "the refused write stored nothing");
        assert!(a.put("settings", None, read.revision).await.unwrap(), "removed at its revision");
        let removed = b.get("settings").await.unwrap();
        assert_eq!(removed.value, None);
        assert!(b.put("settings", Some(b"{}".to_vec()), removed.revision).await.unwrap(), "written again");
        // Trimming deletes exactly the records below the sequence given.
        let mut last = first.seq;
        for i in 0..3 {
            last = a.publish(format!("kiln.uploads.{i}"), vec![i], None).await.unwrap().seq;
        }
        a.trim_below(last - 1).await.unwrap();
        let mut entries = b.consume(1).await.unwrap();
        let seqs = [entries.next().await.unwrap().unwrap(), entries.next().await.unwrap().unwrap()].map(|e| e.seq);
        assert_eq!(seqs, [last - 1, last]);
    });
}

/// `POST /settings.v1.SettingsService/<method>` in JSON, as `tenant`; answers the JSON.
fn settings_call(kiln: &Kiln, tenant: &str, method: &str, body: serde_json::Value) -> serde_json::Value {
    let path = format!("/settings.v1.SettingsService/{method}");
    let headers = [("Content-Type", "application/json"), ("X-Scope-OrgID", tenant)];
    let (status, answer) = http_with(kiln.addr, "POST", &path, &headers, body.to_string().as_bytes()).unwrap();
    assert_eq!(status, 200, "{method}: {answer}");
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn settings_set_on_one_server_are_read_on_another() {
    let cluster = Cluster::start(tempfile::tempdir().unwrap());
    let (a, b) = (cluster.kiln("a"), cluster.kiln("b"));
    // A tenant id with characters a key of the key-value bucket cannot hold as they are.
    let tenant = "org.(prod)*";
    let setting = serde_json::json!({"name": "drilldown", "value": "{\"collapsed\":true}", "modifiedAt": "7"});
    settings_call(&a, tenant, "Set", serde_json::json!({ "setting": setting }));
    assert_eq!(
        settings_call(&b, tenant, "Get", serde_json::json!({})),
        serde_json::json!({ "settings": [setting] }),
        "another server reads the setting at once"
    );
    assert_eq!(settings_call(&b, "other", "Get", serde_json::json!({})), serde_json::json!({}), "per tenant");
    assert!(
        !cluster.bucket_dir.join("documents").exists(),
        "in cluster mode settings are kept in NATS's key-value bucket, not in the object store"
    );
    settings_call(&b, tenant, "Delete", serde_json::json!({"name": "drilldown"}));
    assert_eq!(settings_call(&a, tenant, "Get", serde_json::json!({})), serde_json::json!({}), "deleted everywhere");
}

/// Settings changed on two servers at the same time, each change of a tenant's settings a
/// read-modify-write of one document: every change is kept (a write made on a version another
/// server replaced meanwhile is redone on the new one), on both servers.
#[test]
fn settings_changed_on_two_servers_at_once_are_all_kept() {
    let cluster = Cluster::start(tempfile::tempdir().unwrap());
    let (a, b) = (cluster.kiln("a"), cluster.kiln("b"));
    let tenant = "busy";
    const PER_CLIENT: usize = 12;
    // Four clients, two on each server, each setting its own names one after another.
    std::thread::scope(|scope| {
        for client in 0..4 {
            let kiln = if client % 2 == 0 { &a } else { &b };
            scope.spawn(move || {
                for i in 0..PER_CLIENT {
                    let setting =
                        serde_json::json!({"name": format!("c{client}-{i}"), "value": "v", "modifiedAt": "1"});
                    settings_call(kiln, tenant, "Set", serde_json::json!({ "setting": setting }));
                }
            });
        }
    });
    let names = |kiln: &Kiln| -> BTreeSet<String> {
        let answer = settings_call(kiln, tenant, "Get", serde_json::json!({}));
        answer["settings"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
    };
    let wanted: BTreeSet<String> = (0..4).flat_map(|c| (0..PER_CLIENT).map(move |i| format!("c{c}-{i}"))).collect();
    assert_eq!(names(&a), wanted, "every change is kept");
    assert_eq!(names(&b), wanted);
    // Deletions at the same time on both servers: each removes its own names.
    std::thread::scope(|scope| {
        for client in 0..4 {
            let kiln = if client % 2 == 0 { &a } else { &b };
            scope.spawn(move || {
                for i in 0..PER_CLIENT {
                    settings_call(kiln, tenant, "Delete", serde_json::json!({"name": format!("c{client}-{i}")}));
                }
            });
        }
    });
    assert_eq!(
        settings_call(&b, tenant, "Get", serde_json::json!({})),
        serde_json::json!({}),
        "every deletion is kept"
    );
}

/// The objects of uploads too large for one NATS message, waiting in the bucket.
fn referenced_objects(cluster: &Cluster) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cluster.bucket_dir.join("uploads/cluster")) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".rec"))
        .collect()
}

#[test]
fn an_upload_larger_than_a_message_goes_through_the_bucket() {
    let cluster = Cluster::start(tempfile::tempdir().unwrap());
    let servers = [cluster.kiln("a"), cluster.kiln("b"), cluster.kiln("c")];
    // Over 1 MiB as stored: more than a NATS message may be (its default max_payload).
    let stacks: BTreeSet<String> = (0..20_000).map(|i| format!("main;frame_{i}_{:0>80}", i)).collect();
    let big: String = stacks.iter().map(|s| format!("{s} 1\n")).collect();
    let keyed = [("Idempotency-Key", "big-1")];
    let (status, body) =
        http_with(servers[0].addr, "POST", "/ingest?name=clustered.cpu", &keyed, big.as_bytes()).unwrap();
    assert_eq!(status, 200, "{body}");
    // No other upload yet, so no later cut: the log still holds the reference.
    assert_eq!(referenced_objects(&cluster).len(), 1, "the upload waits in the bucket");
    // A retry on another server is recognised by its key; its own object is deleted at once.
    let (status, body) =
        http_with(servers[1].addr, "POST", "/ingest?name=clustered.cpu", &keyed, big.as_bytes()).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(referenced_objects(&cluster).len(), 1, "the retry's object is not kept");
    let mut acked = stacks;
    for kiln in &servers {
        wait_for_exactly(kiln, &acked, &BTreeSet::new());
    }
    // The object goes once the log is trimmed below its reference: after the cut of the
    // block holding the upload, and the next cut (of later uploads).
    let deadline = Instant::now() + DEADLINE;
    let mut i = 0;
    while !referenced_objects(&cluster).is_empty() {
        assert!(Instant::now() < deadline, "the upload's object was never deleted: {:?}", cluster.blocks());
        let stack = format!("main;later_{i}");
        assert_eq!(upload(&servers[i % 3], &stack), 200);
        acked.insert(stack);
        i += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    // Counted once everywhere, now from blocks; a server started now too.
    for kiln in servers.iter().chain([&cluster.kiln("d")]) {
        wait_for_exactly(kiln, &acked, &BTreeSet::new());
    }
}
