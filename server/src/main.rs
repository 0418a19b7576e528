//! The `kiln` binary: a thin wrapper over the library.

/// mimalloc rather than the system allocator: ingest allocates and frees many small blocks
/// per upload, and glibc's malloc cost about a fifth of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kiln_server::cli::main()
}
