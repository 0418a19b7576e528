//! `kiln-agent-rust-v05 [--folded] <server url> <app name> [seconds]`: profiles itself with
//! the `pyroscope` 0.5 agent and its pprof-rs backend while burning CPU, uploading every 10 s
//! to `/ingest` (pprof bodies, or folded text with `--folded`), then stops the agent, which
//! sends the last partial report.

use pyroscope::PyroscopeAgent;
use pyroscope::pyroscope::ReportEncoding;
use pyroscope_pprofrs::{PprofConfig, pprof_backend};
use pyroscope_v05 as pyroscope;

#[path = "../../workload.rs"]
mod workload;

use workload::{args, burn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rest: Vec<String> = std::env::args().skip(1).collect();
    let folded = rest.iter().any(|a| a == "--folded");
    rest.retain(|a| a != "--folded");
    let args = args(rest);
    let encoding = if folded { ReportEncoding::FOLDED } else { ReportEncoding::PPROF };
    let agent = PyroscopeAgent::builder(&args.url, &args.app)
        .backend(pprof_backend(PprofConfig::new().sample_rate(100)))
        .tags(vec![("env", "test")])
        .report_encoding(encoding)
        .build()?;
    let running = agent.start()?;
    burn(args.seconds);
    running.stop()?.shutdown();
    Ok(())
}
