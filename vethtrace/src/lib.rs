//! vethtrace: where the other end of every veth is.
//!
//! The library holds everything the `vethtrace` binary does, so that the
//! integration tests and benchmarks can drive the same code.

pub mod cli;
pub mod commands;
pub mod ebpf;
pub mod error;
pub mod live;
pub mod netlink;
pub mod netns;
pub mod netns_ref;
pub mod output;
pub mod privileges;
pub mod snapshot;

use std::io::Write;

use cli::{Cli, Command, WatchArgs};
use error::Error;

/// Runs the command line and writes its output to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), Error> {
    match &cli.command {
        None => commands::watch::run(&WatchArgs::default(), out),
        Some(Command::Snapshot(args)) => commands::snapshot::run(args, out),
        Some(Command::Peer(args)) => commands::peer::run(args, out),
        Some(Command::Watch(args)) => commands::watch::run(args, out),
        Some(Command::Status(args)) => commands::status::run(args, out),
    }
}
