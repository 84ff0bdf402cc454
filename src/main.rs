//! The `portcullis` binary: everything lives in the library; see `cli.rs`.
#![forbid(unsafe_code)]

/// mimalloc instead of glibc malloc: a proxy allocates and frees many small buffers per
/// request, and glibc's allocator took about a fifth of the CPU under load (see
/// docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
