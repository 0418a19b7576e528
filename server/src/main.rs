//! The `kiln` binary: a thin wrapper over the library.

fn main() -> std::process::ExitCode {
    kiln_server::cli::main()
}
