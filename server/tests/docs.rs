//! The docs' shell commands against Kiln run as written: every `curl` and `kiln` line in a
//! ```` ```sh ```` block of the repository's Markdown is run against a real Kiln (the address
//! rewritten to the test's), and must succeed. Blocks that need what a test does not have (a
//! bucket, `perf`, a long soak, `make` itself) are marked ```` ```sh external ```` and skipped;
//! any other command in an unmarked block fails the test, so a new example is either checked
//! or visibly marked.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Kiln, http};

/// A command as the docs show it, with where it is.
#[derive(Debug, PartialEq)]
struct Example {
    file: String,
    line: usize,
    command: String,
}

/// The commands of the checked `sh` blocks of `markdown`: continuation lines joined, blank
/// lines and whole-line comments left out.
fn examples(file: &str, markdown: &str) -> Vec<Example> {
    let mut found = Vec::new();
    let mut checked = None::<bool>;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            checked = match checked {
                Some(_) => None,
                None => {
                    let mut words = info.split_whitespace();
                    Some(matches!(words.next(), Some("sh" | "bash" | "shell")) && !words.any(|w| w == "external"))
                }
            };
            continue;
        }
        if checked != Some(true) {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((index + 1, String::new()));
        if text.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                text.push_str(head);
                text.push(' ');
                pending = Some((start, text));
            }
            None => {
                text.push_str(trimmed);
                found.push(Example { file: file.to_string(), line: start, command: text });
            }
        }
    }
    found
}

/// The Markdown files of the repository (not dependencies or build output).
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | "node_modules" | ".git" | "test-results" | "playwright-report") {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The files the examples name, in `dir`: real captures where there are some.
fn write_fixtures(dir: &Path) {
    let data = repository().join("app/model/tests/data");
    let folded = std::fs::read_to_string(data.join("flamegraph-base-flames.txt")).unwrap();
    std::fs::write(dir.join("stacks.folded"), &folded).unwrap();
    let half = folded.lines().count() / 2;
    let lines: Vec<&str> = folded.lines().collect();
    std::fs::write(dir.join("a.folded"), lines[..half].join("\n")).unwrap();
    std::fs::write(dir.join("b.folded"), lines[half..].join("\n")).unwrap();
    let gz = std::fs::read(data.join("example-perf-stacks.txt.gz")).unwrap();
    let mut perf = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut perf).unwrap();
    std::fs::write(dir.join("perf.script"), perf).unwrap();
    let speedscope = serde_json::json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [{"name": "main"}, {"name": "parse"}, {"name": "render"}]},
        "profiles": [{
            "type": "sampled", "name": "main thread", "unit": "milliseconds",
            "startValue": 0, "endValue": 30,
            "samples": [[0, 1], [0, 2], [0, 1]], "weights": [10, 15, 5]
        }]
    });
    std::fs::write(dir.join("profile.speedscope.json"), speedscope.to_string()).unwrap();
}

/// A `kiln` on `PATH`: the binary under test.
fn bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kiln"), bin.join("kiln")).unwrap();
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs one example in `dir` against the Kiln at `addr`; `Err` says what went wrong.
fn run(example: &Example, dir: &Path, path: &str, addr: std::net::SocketAddr) -> Result<(), String> {
    let words: Vec<&str> = example.command.split_whitespace().collect();
    let mut command = example.command.replace("http://127.0.0.1:4040", &format!("http://{addr}"));
    if words.first() == Some(&"curl") {
        // Fail on an error status, as a reader would notice one.
        command = command.replacen("curl ", "curl -sS --fail-with-body ", 1);
    }
    let serves = words.starts_with(&["kiln", "serve"]) && !words.contains(&"--help");
    let mut listen = None;
    if serves {
        // A server of its own on a free port, in the example's own data directory.
        let port = free_port();
        command = command.replace("--listen 127.0.0.1:4040", &format!("--listen 127.0.0.1:{port}"));
        listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        command = format!("exec {command}");
    }
    let mut child = Command::new("bash")
        .args(["-c", &command])
        .current_dir(dir)
        .env("PATH", path)
        .env("KILN_SERVER", format!("http://{addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(listen) = listen {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http(listen, "GET", "/readyz", b"") {
                break;
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let output = child.wait_with_output().map_err(|e| e.to_string())?;
                return Err(format!("exited with {status}: {}", String::from_utf8_lossy(&output.stderr)));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("did not answer /readyz within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        return Ok(());
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[test]
fn every_command_in_the_docs_runs() {
    let root = repository();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    files.sort();
    let mut all = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap().display().to_string();
        all.extend(examples(&relative, &std::fs::read_to_string(file).unwrap()));
    }
    let unknown: Vec<String> = all
        .iter()
        .filter(|e| !matches!(e.command.split_whitespace().next(), Some("curl" | "kiln")))
        .map(|e| format!("{}:{}: {}", e.file, e.line, e.command))
        .collect();
    assert!(
        unknown.is_empty(),
        "commands a docs check cannot run; make them `curl` or `kiln` commands, or mark their block \
         ```sh external:\n{}",
        unknown.join("\n")
    );
    assert!(all.iter().any(|e| e.file == "README.md"), "the README's examples are found: {all:?}");

    let work = tempfile::tempdir().unwrap();
    write_fixtures(work.path());
    let path = format!("{}:{}", bin_dir(work.path()).display(), std::env::var("PATH").unwrap_or_default());
    let kiln = Kiln::start(&work.path().join("kiln-data"), &[]);
    let failures: Vec<String> = all
        .iter()
        .filter_map(|e| {
            run(e, work.path(), &path, kiln.addr)
                .err()
                .map(|why| format!("{}:{}: {}\n  {why}", e.file, e.line, e.command))
        })
        .collect();
    assert!(failures.is_empty(), "docs commands failed:\n{}", failures.join("\n"));
    // What the README sends is stored under the name it shows.
    let (status, apps) = http(kiln.addr, "GET", "/api/apps", b"").unwrap();
    assert_eq!(status, 200);
    let apps: serde_json::Value = serde_json::from_str(&apps).unwrap();
    let names: Vec<&str> = apps.as_array().unwrap().iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["myapp"], "every example stores under the name it shows (curl globbing eats `{{}}` without -g)");
    let labels = apps[0]["labelNames"].to_string();
    assert!(labels.contains("env"), "the `{{env=prod}}` of the examples arrives as a label: {labels}");
}

#[test]
fn examples_are_read_from_checked_blocks_only() {
    let markdown = "text\n```sh\n# a comment\ncurl -d x \\\n  'http://127.0.0.1:4040/ingest'\n\nkiln --help\n```\n\
                    ```sh external\nmake run\n```\n```text\ncurl not-a-command\n```\n";
    let found = examples("X.md", markdown);
    assert_eq!(
        found,
        vec![
            Example { file: "X.md".into(), line: 4, command: "curl -d x  'http://127.0.0.1:4040/ingest'".into() },
            Example { file: "X.md".into(), line: 7, command: "kiln --help".into() },
        ]
    );
}
