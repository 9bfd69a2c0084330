//! The `retouch` binary: parses flags, wires a run, maps the outcome to an exit code.

mod cli;

fn main() {
    limit_malloc_arenas();
    std::process::exit(cli::main());
}

/// One glibc malloc arena for the whole process. By default every thread that allocates may get
/// its own arena (up to 8 per core), and each keeps the multi-megabyte image buffers it freed
/// resident for reuse: with the rayon and Tokio threads that was ~470 MB for a run whose live
/// heap peaks near 80 MB per image. One arena measured 272 MB at the same speed (BENCHMARKS.md,
/// full pipeline). Must run before any other thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
