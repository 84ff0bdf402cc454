//! The `portcullis` binary: everything lives in the library; see `cli.rs`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
