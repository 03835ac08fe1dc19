//! Development tasks for vethtrace, run as `cargo xtask COMMAND`.
//!
//! Each command lives in its own module with its own options; this file only
//! dispatches.

mod bench;
mod cmd;
mod run;
mod setup;
mod test;
mod vm;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Development tasks for vethtrace")]
enum Command {
    /// Install what building and testing need: the nightly's rust-src,
    /// bpf-linker built against the nightly's LLVM, and Debian packages.
    Setup(setup::Options),
    /// Build vethtrace and run it as root; arguments after `--` go to it.
    Run(run::Options),
    /// Run the host tests, then the VM tests on every supported kernel.
    Test(test::Options),
    /// Boot Debian kernels under QEMU and run the test suite in each.
    VmTest(vm::TestOptions),
    /// Boot a Debian kernel under QEMU and run vethtrace or a script in it.
    VmRun(vm::RunOptions),
    /// Run a benchmark in a private sandbox and print a Markdown table.
    Bench(bench::Options),
}

fn main() -> anyhow::Result<()> {
    match Command::parse() {
        Command::Setup(options) => setup::setup(&options),
        Command::Run(options) => run::run(&options),
        Command::Test(options) => test::test(&options),
        Command::VmTest(options) => vm::test(&options),
        Command::VmRun(options) => vm::run(&options),
        Command::Bench(options) => bench::bench(&options),
    }
}
