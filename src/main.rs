//! The `distfs` command: a thin binary over the library. `anyhow` lives only here and in
//! `cli/`. Exit codes: 0 ok, 1 failure (one-line reason on stderr), 2 usage error.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
