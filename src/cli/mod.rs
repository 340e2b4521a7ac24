//! Command-line parsing and dispatch: one file per subcommand, each with its clap `Args`
//! and a `run` that returns `anyhow::Result`. This module maps errors to exit codes.

use clap::{Parser, Subcommand};

mod add;
mod doctor;
mod gc;
mod hub;
mod key;
mod man;
mod mount;
mod pin;
mod publish;
mod refresh;
mod restart;
mod serve;
mod status;
mod trace;

/// distfs: a peer-to-peer software distribution as a read-only filesystem.
#[derive(Parser)]
#[command(name = "distfs", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a file or directory tree as a UnixFS DAG (Kubo `ipfs add` compatible).
    Add(add::AddArgs),
    /// Manage IPNS signing keys.
    Key(key::KeyArgs),
    /// Mount a distribution root as a read-only filesystem (foreground).
    Mount(mount::MountArgs),
    /// Add a version of a project to a distribution and push it with a new IPNS record.
    Publish(publish::PublishArgs),
    /// Add, update or remove one entry of a hub's `projects.json` and republish the hub.
    Hub(hub::HubArgs),
    /// Ask the running mount on a cache dir to re-resolve its root now.
    Refresh(refresh::RefreshArgs),
    /// Hand the running mount to a new daemon process (upgrade) without disturbing its users.
    Restart(restart::RestartArgs),
    /// Run a trustless HTTP gateway over a block store and CAR files.
    Serve(serve::ServeArgs),
    /// Turn a read trace (`distfs mount --trace`) into prefetch lists beside the files.
    Trace(trace::TraceArgs),
    /// Fetch a whole DAG into a cache directory and keep it through eviction and gc.
    Pin(pin::PinArgs),
    /// Release a pin.
    Unpin(pin::UnpinArgs),
    /// Clean a cache directory and evict it down to a size.
    Gc(gc::GcArgs),
    /// Write the distfs(1) manual page into DIR (for packagers; see man/).
    #[command(hide = true)]
    GenerateMan(man::GenerateManArgs),
    /// Show the running daemon's state (or its metrics) through its control socket.
    Status(status::StatusArgs),
    /// Check the machine, cache, gateways, names and every mount; say how to fix problems.
    Doctor(doctor::DoctorArgs),
}

/// Parses the command line, runs the subcommand and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Add(args) => add::run(args),
        Command::Key(args) => key::run(args),
        Command::Mount(args) => mount::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Hub(args) => hub::run(args),
        Command::Refresh(args) => refresh::run(args),
        Command::Restart(args) => restart::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Pin(args) => pin::pin(args),
        Command::Unpin(args) => pin::unpin(args),
        Command::Gc(args) => gc::run(args),
        Command::GenerateMan(args) => man::run(args, <Cli as clap::CommandFactory>::command()),
        Command::Status(args) => status::run(args),
        Command::Doctor(args) => doctor::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("distfs: {}", one_line(&err));
            1
        }
    }
}

/// Joins an error chain into one line: "outer: cause: root cause".
fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Warnings by default; fuser's own warnings are noise (it warns when an unmount finds the
/// mount already detached, which is how we leave on a signal).
const DEFAULT_LOG: &str = "warn,fuser=error";

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("DISTFS_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
