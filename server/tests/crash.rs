//! The real `kiln` binary killed with SIGKILL while uploads are in flight, again and again:
//! every upload that got a 200 must be there afterwards, exactly once.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Kiln, XorShift, folded_values, http};

const ROUNDS: usize = 6;
const UPLOADERS: usize = 4;

#[test]
fn acknowledged_uploads_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny head, cut into a block every few dozen uploads, so that kills also land while
    // blocks are being written and log segments deleted.
    let flags = ["--head-max-bytes", "16000", "--block-duration", "1s", "--block-refresh", "250ms", "--retention", "0"];
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut rng = XorShift::seeded();
    for round in 0..ROUNDS {
        let kiln = Kiln::start(dir.path(), &flags);
        let stop = Arc::new(AtomicBool::new(false));
        let uploaders: Vec<_> = (0..UPLOADERS)
            .map(|worker| {
                let (stop, acked, addr) = (stop.clone(), acked.clone(), kiln.addr);
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let frame = format!("r{round}w{worker}n{n}");
                        let value = 1 + (n * 7 + worker as u64) % 97;
                        let body = format!("main;{frame} {value}\nmain;shared 1\n");
                        let status = http(addr, "POST", "/ingest?name=crash.cpu&format=folded", body.as_bytes())
                            .map(|(status, _)| status);
                        if matches!(status, Ok(200)) {
                            acked.lock().unwrap().insert(frame, value);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.below(900) + 300));
        kiln.kill();
        stop.store(true, Ordering::Relaxed);
        for u in uploaders {
            u.join().unwrap();
        }
        println!("round {round}: {} uploads acknowledged so far", acked.lock().unwrap().len());
    }
    let kiln = Kiln::start(dir.path(), &flags);
    let (status, body) = http(kiln.addr, "GET", "/render?query=crash.cpu&format=folded", b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let stored = folded_values(&body);
    let acked = acked.lock().unwrap();
    assert!(acked.len() > ROUNDS * 10, "too few uploads got through: {}", acked.len());
    for (frame, value) in acked.iter() {
        assert_eq!(stored.get(&format!("main;{frame}")), Some(value), "acknowledged upload {frame}");
    }
    // Unacknowledged uploads may have landed (durable, answer lost), but never twice.
    let uploads = stored.iter().filter(|(stack, _)| *stack != "main;shared").count() as u64;
    for (stack, value) in &stored {
        if let Some(frame) = stack.strip_prefix("main;").filter(|f| *f != "shared") {
            let n: u64 = frame.rsplit('n').next().unwrap().parse().unwrap();
            let worker: u64 = frame.split('w').nth(1).unwrap().split('n').next().unwrap().parse().unwrap();
            assert_eq!(*value, 1 + (n * 7 + worker) % 97, "{stack} counted more than once");
        }
    }
    assert_eq!(stored.get("main;shared"), Some(&uploads), "one `shared` sample per stored upload");
    let blocks = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .flat_map(|writer| std::fs::read_dir(writer.unwrap().path()).unwrap())
        .filter(|f| f.as_ref().unwrap().file_name().to_string_lossy().ends_with(".meta.json"))
        .count();
    println!("{} uploads acknowledged, {} stored, {blocks} blocks", acked.len(), uploads);
    assert!(blocks > 0, "no block was cut: the test did not exercise the block path");
    kiln.kill();
}
