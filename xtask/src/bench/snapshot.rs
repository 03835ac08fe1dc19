//! `cargo xtask bench snapshot`: times `vethtrace snapshot` against two
//! baselines on N container-like namespaces and prints a Markdown table.
//!
//! For each N this command starts itself again as the init of a private
//! sandbox (see `sandbox.rs`). That copy builds the namespaces, runs the
//! tools and prints its measurements as JSON. This side only builds
//! vethtrace, collects those results and renders them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::report::{self, SizeResult, Status};
use super::sandbox;
use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Numbers of containers to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub sizes: Vec<usize>,
    /// Timed runs of vethtrace per size, after one untimed warm-up run.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Timed runs of the shell loop per size.
    #[arg(long, default_value_t = 3)]
    pub shell_runs: usize,
    /// Timed runs of the all-pairs RTM_GETNSID script per size.
    #[arg(long, default_value_t = 1)]
    pub all_pairs_runs: usize,
    /// Time only vethtrace.
    #[arg(long)]
    pub skip_baselines: bool,
    /// Run every timed tool under SCHED_FIFO priority 1 (chrt), so that
    /// other users' processes cannot preempt it. On a shared machine this
    /// comes close to an idle one, but each run then keeps a core to itself
    /// until it ends: minutes for the all-pairs script at 1000 containers.
    #[arg(long)]
    pub fifo: bool,
    /// Limit for one run of any tool, in seconds; a run past it is killed
    /// and reported as timed out.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// The vethtrace binary to time, instead of building
    /// target/release/vethtrace.
    #[arg(long, value_name = "PATH")]
    pub vethtrace: Option<PathBuf>,
    /// Internal: measure this many containers as the sandbox's init process.
    #[arg(long, hide = true, value_name = "N")]
    pub sandbox_size: Option<usize>,
}

pub fn bench(options: &Options) -> anyhow::Result<()> {
    if let Some(size) = options.sandbox_size {
        let vethtrace = options.vethtrace.clone().context("--sandbox-size needs --vethtrace")?;
        let result = sandbox::run(&sandbox::Plan {
            size,
            vethtrace,
            runs: options.runs,
            shell_runs: options.shell_runs,
            all_pairs_runs: options.all_pairs_runs,
            skip_baselines: options.skip_baselines,
            fifo: options.fifo,
            timeout: Duration::from_secs(options.timeout),
        })?;
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }

    cmd::require_root("cargo xtask bench snapshot")?;
    if options.sizes.is_empty() || options.sizes.contains(&0) {
        bail!("--sizes needs one or more numbers of containers above 0, such as --sizes 100,1000");
    }
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    setup::setup(&setup::Options { no_packages: false })?;
    let vethtrace = match &options.vethtrace {
        Some(path) => path.clone(),
        None => build_vethtrace()?,
    };
    let binaries = Binaries::copy(&vethtrace)?;

    let load_before = load_average()?;
    let mut results = Vec::new();
    for &size in &options.sizes {
        results.push(run_sandbox(options, size, &binaries)?);
    }
    let load_after = load_average()?;

    println!("{}", machine(&load_before, &load_after)?);
    if options.fifo {
        println!("Every tool ran under SCHED_FIFO priority 1 (`--fifo`).");
    }
    println!();
    print!("{}", report::table(&results));
    if let Some(targets) = report::targets(&results) {
        println!();
        print!("{targets}");
    }

    let mut wrong = Vec::new();
    for result in &results {
        for tool in &result.tools {
            if let Status::WrongResult { message } = &tool.status {
                wrong.push(format!("N={} {}: {message}", result.size, tool.tool.describe()));
            }
        }
    }
    if !wrong.is_empty() {
        bail!("some tools printed wrong results, so their times mean nothing:\n{}", wrong.join("\n"));
    }
    Ok(())
}

fn build_vethtrace() -> anyhow::Result<PathBuf> {
    cmd::run(
        Command::new("cargo")
            .args(["build", "--release", "--package", "vethtrace", "--bin", "vethtrace"])
            .current_dir(cmd::workspace_root()),
    )?;
    Ok(cmd::workspace_root().join("target/release/vethtrace"))
}

/// Private copies of this xtask binary and of the vethtrace binary under
/// test, removed on drop. Other cargo commands may rebuild target/ while
/// the benchmark runs, and every run must start the same binaries.
struct Binaries {
    dir: PathBuf,
    xtask: PathBuf,
    vethtrace: PathBuf,
}

impl Binaries {
    fn copy(vethtrace: &Path) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("vtbench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let binaries = Self {
            xtask: dir.join("xtask"),
            vethtrace: dir.join("vethtrace"),
            dir,
        };
        // /proc/self/exe still reads when cargo has replaced the file.
        std::fs::copy("/proc/self/exe", &binaries.xtask)
            .with_context(|| format!("failed to copy /proc/self/exe to {}", binaries.xtask.display()))?;
        std::fs::copy(vethtrace, &binaries.vethtrace)
            .with_context(|| format!("failed to copy {} to {}", vethtrace.display(), binaries.vethtrace.display()))?;
        Ok(binaries)
    }
}

impl Drop for Binaries {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("failed to remove {}: {error}", self.dir.display());
        }
    }
}

/// Runs this command again, with `--sandbox-size`, as the init process of
/// new mount, network and PID namespaces, and parses what it measured.
fn run_sandbox(options: &Options, size: usize, binaries: &Binaries) -> anyhow::Result<SizeResult> {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"])
        .arg(&binaries.xtask)
        .args(["bench", "snapshot", "--sandbox-size", &size.to_string()])
        .arg("--vethtrace")
        .arg(&binaries.vethtrace)
        .args(["--runs", &options.runs.to_string()])
        .args(["--shell-runs", &options.shell_runs.to_string()])
        .args(["--all-pairs-runs", &options.all_pairs_runs.to_string()])
        .args(["--timeout", &options.timeout.to_string()]);
    if options.skip_baselines {
        command.arg("--skip-baselines");
    }
    if options.fifo {
        command.arg("--fifo");
    }
    eprintln!("+ {}", cmd::display(&command));
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start {}", cmd::display(&command)))?;
    if !output.status.success() {
        bail!("the sandbox for N={size} failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("the sandbox for N={size} printed invalid JSON: {stdout}"))
}

/// Describes the kernel, CPUs, memory and load in a line to paste above
/// the table.
fn machine(load_before: &str, load_after: &str) -> anyhow::Result<String> {
    let kernel = read_trimmed("/proc/sys/kernel/osrelease")?;
    let cpus = std::thread::available_parallelism().map_or(0, |count| count.get());
    let meminfo = read_trimmed("/proc/meminfo")?;
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("no MemTotal line in /proc/meminfo")?;
    Ok(format!(
        "Linux {kernel}, {cpus} CPUs, {:.1} GiB memory; load average (1, 5, 15 min) {load_before} before, {load_after} after.",
        memory_kib as f64 / (1024.0 * 1024.0)
    ))
}

/// Reads the 1, 5 and 15 minute load averages from /proc/loadavg.
fn load_average() -> anyhow::Result<String> {
    let text = read_trimmed("/proc/loadavg")?;
    Ok(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn read_trimmed(path: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {path}"))?;
    Ok(text.trim().to_string())
}
