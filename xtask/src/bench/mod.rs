//! `cargo xtask bench`: benchmarks that compare vethtrace with the scripts
//! it replaces, on topologies built inside a private sandbox.
//!
//! Each benchmark is a subcommand, so later ones can sit beside `snapshot`.

mod live;
mod measure;
mod report;
mod sandbox;
mod snapshot;
mod verify;

#[derive(clap::Args)]
pub struct Options {
    #[command(subcommand)]
    pub benchmark: Benchmark,
}

#[derive(clap::Subcommand)]
pub enum Benchmark {
    /// Time `vethtrace snapshot --json` on N container-like namespaces, each
    /// wired to the host by a veth, beside a docker-veth.sh-style shell loop
    /// and an all-pairs RTM_GETNSID script; prints a Markdown table.
    Snapshot(snapshot::Options),
    /// Time a burst of veth pair creations and deletions with and without
    /// `vethtrace watch` attached, in QEMU guests. Prints lost events, line
    /// latency and idle context switches as Markdown tables.
    Live(live::Options),
}

pub fn bench(options: &Options) -> anyhow::Result<()> {
    match &options.benchmark {
        Benchmark::Snapshot(options) => snapshot::bench(options),
        Benchmark::Live(options) => live::bench(options),
    }
}
