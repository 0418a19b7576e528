//! Raw profiler output (`perf script`, DTrace, `sample`, VTune, …) collapsed server-side with
//! inferno, so `perf script | curl --data-binary @- …&format=perf_script` just works.
//!
//! The collapsed text is bounded like a decompressed body: past `max_output` bytes collapsing
//! stops and the request is refused (422), whatever inferno would have gone on to write.

use std::io::{self, Write};

use inferno::collapse::Collapse;
use kiln_model::formats::Collapser;
use serde_json::json;

use super::IngestError;

/// A `Vec` that refuses to grow past `max` bytes.
struct Bounded {
    out: Vec<u8>,
    max: usize,
    overflowed: bool,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len().saturating_add(buf.len()) > self.max {
            self.overflowed = true;
            return Err(io::Error::other("collapsed output over the limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Collapses `input` (the raw output of the tool the format `format` names, read by
/// `collapser`) to folded text of at most `max_output` bytes.
pub fn collapse(collapser: Collapser, format: &str, input: &[u8], max_output: usize) -> Result<Vec<u8>, IngestError> {
    bounded(format, max_output, |out| match collapser {
        Collapser::Perf => inferno::collapse::perf::Folder::default().collapse(input, out),
        Collapser::Dtrace => inferno::collapse::dtrace::Folder::default().collapse(input, out),
        Collapser::Sample => inferno::collapse::sample::Folder::default().collapse(input, out),
        Collapser::Vtune => inferno::collapse::vtune::Folder::default().collapse(input, out),
        Collapser::Vsprof => inferno::collapse::vsprof::Folder::default().collapse(input, out),
        Collapser::Ghcprof => inferno::collapse::ghcprof::Folder::default().collapse(input, out),
        Collapser::Guess => inferno::collapse::guess::Folder::default().collapse(input, out),
    })
}

/// `perf script` output collapsed with its thread in each stack's root frame (`comm-pid/tid`,
/// the command as the default collapse names it): what the Open page's thread picker splits
/// ([`kiln_model::perf_script::threads_of_collapsed`]).
pub fn collapse_perf_by_thread(format: &str, input: &[u8], max_output: usize) -> Result<Vec<u8>, IngestError> {
    let mut options = inferno::collapse::perf::Options::default();
    options.include_tid = true;
    bounded(format, max_output, |out| inferno::collapse::perf::Folder::from(options).collapse(input, out))
}

/// Runs `collapse` into at most `max_output` bytes.
fn bounded(
    format: &str,
    max_output: usize,
    collapse: impl FnOnce(&mut Bounded) -> io::Result<()>,
) -> Result<Vec<u8>, IngestError> {
    let mut out = Bounded { out: Vec::new(), max: max_output, overflowed: false };
    let result = collapse(&mut out);
    if out.overflowed {
        return Err(IngestError::OutputTooLarge { limit: max_output });
    }
    result.map_err(|e| {
        IngestError::malformed_with(
            format!("could not read the body as {format} output: {e}"),
            json!({ "parameter": "format" }),
        )
    })?;
    Ok(out.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_bounded() {
        let perf = b"prog 1 1.0: 1 cycles:\n\tffff main (/bin/prog)\n\tffff start (/bin/prog)\n\n";
        let folded = collapse(Collapser::Perf, "perf_script", perf, 1 << 20).unwrap();
        assert_eq!(String::from_utf8_lossy(&folded).trim(), "prog;start;main 1");
        let refused = collapse(Collapser::Perf, "perf_script", perf, 4);
        assert!(matches!(refused, Err(IngestError::OutputTooLarge { limit: 4 })));
    }
}
