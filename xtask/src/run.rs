//! `cargo xtask run`: builds vethtrace and runs it as root.

use std::process::Command;

use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Build in debug mode instead of release.
    #[arg(long)]
    pub debug: bool,
    /// Arguments for vethtrace; with none it runs its default command.
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    setup::setup(&setup::Options { no_packages: true })?;
    let mut build = Command::new("cargo");
    build.args(["build", "--package", "vethtrace", "--bin", "vethtrace"]);
    if !options.debug {
        build.arg("--release");
    }
    cmd::run(build.current_dir(cmd::workspace_root()))?;

    let profile = if options.debug { "debug" } else { "release" };
    let binary = cmd::workspace_root().join("target").join(profile).join("vethtrace");
    let status = Command::new(&binary).args(&options.args).status()?;
    std::process::exit(status.code().unwrap_or(1));
}
