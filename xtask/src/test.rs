//! `cargo xtask test`: the host tests, then the VM tests on every kernel.

use std::process::Command;

use crate::{cmd, setup, vm};

#[derive(clap::Args)]
pub struct Options {
    /// Run only the host tests.
    #[arg(long)]
    pub host_only: bool,
    /// Arguments for `cargo test`, such as a test name filter.
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn test(options: &Options) -> anyhow::Result<()> {
    cmd::require_root("cargo xtask test")?;
    setup::setup(&setup::Options { no_packages: false })?;
    // The integration tests run the vethtrace binary, which `cargo test`
    // does not build for another package's tests.
    cmd::run(
        Command::new("cargo")
            .args(["build", "--package", "vethtrace", "--bin", "vethtrace"])
            .current_dir(cmd::workspace_root()),
    )?;
    cmd::run(
        Command::new("cargo")
            // The workspace's default members: everything but the eBPF
            // crate, which only builds for the BPF target.
            .arg("test")
            .args(&options.args)
            .current_dir(cmd::workspace_root()),
    )?;
    if !options.host_only {
        vm::test(&vm::TestOptions::all_kernels())?;
    }
    Ok(())
}
