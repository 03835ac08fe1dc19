//! The VM harness: boots Debian kernels under QEMU and runs tests in them.

#[derive(clap::Args)]
pub struct TestOptions {
    /// Kernel series to boot: 5.10, 6.1, 6.12 or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
}

impl TestOptions {
    pub fn all_kernels() -> Self {
        Self { kernel: "all".into() }
    }
}

#[derive(clap::Args)]
pub struct RunOptions {
    /// Kernel series to boot: 5.10, 6.1 or 6.12.
    #[arg(long)]
    pub kernel: String,
}

pub fn test(_options: &TestOptions) -> anyhow::Result<()> {
    anyhow::bail!("vm-test is not implemented yet")
}

pub fn run(_options: &RunOptions) -> anyhow::Result<()> {
    anyhow::bail!("vm-run is not implemented yet")
}
