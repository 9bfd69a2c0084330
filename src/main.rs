//! The `retouch` binary: parses flags, wires a run, maps the outcome to an exit code.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
