//! `kiln-agent-rust-v2 <server url> <app name> [seconds]`: profiles itself with the `pyroscope`
//! 2.x agent and its built-in backend while burning CPU, pushing every 10 s to the Connect push
//! endpoint, then stops the agent, which sends the last partial report.

use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
use pyroscope::pyroscope::PyroscopeAgentBuilder;

#[path = "../../workload.rs"]
mod workload;

use workload::{args, burn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args(std::env::args().skip(1).collect());
    let backend = pprof_backend(PprofConfig::default(), BackendConfig::default());
    let agent = PyroscopeAgentBuilder::new(&args.url, &args.app, 100, "pyroscope-rs", "2", backend)
        .tags(vec![("env", "test")])
        .build()?;
    let running = agent.start()?;
    burn(args.seconds);
    running.stop()?.shutdown();
    Ok(())
}
