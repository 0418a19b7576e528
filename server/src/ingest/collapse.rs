//! Raw profiler output (`perf script`, DTrace, `sample`, VTune, …) collapsed server-side with
//! inferno, so `perf script | curl --data-binary @- …&format=perf_script` just works.

use inferno::collapse::Collapse;
use serde_json::json;

use crate::api::AppError;

/// True for the formats this module collapses.
pub fn is_raw_format(format: &str) -> bool {
    matches!(format, "perf_script" | "perf" | "dtrace" | "sample" | "vtune" | "vsprof" | "ghcprof" | "guess")
}

/// Collapses `input` (the raw output of the tool `format` names) to folded text.
pub fn collapse(format: &str, input: &[u8]) -> Result<Vec<u8>, AppError> {
    let mut out = Vec::new();
    let result = match format {
        "perf_script" | "perf" => inferno::collapse::perf::Folder::default().collapse(input, &mut out),
        "dtrace" => inferno::collapse::dtrace::Folder::default().collapse(input, &mut out),
        "sample" => inferno::collapse::sample::Folder::default().collapse(input, &mut out),
        "vtune" => inferno::collapse::vtune::Folder::default().collapse(input, &mut out),
        "vsprof" => inferno::collapse::vsprof::Folder::default().collapse(input, &mut out),
        "ghcprof" => inferno::collapse::ghcprof::Folder::default().collapse(input, &mut out),
        _ => inferno::collapse::guess::Folder::default().collapse(input, &mut out),
    };
    result.map_err(|e| {
        AppError::bad_request_with(
            format!("could not read the body as {format} output: {e}"),
            json!({ "parameter": "format" }),
        )
    })?;
    Ok(out)
}
