//! The VM harness: boots Debian kernels under QEMU and runs the integration
//! tests (`vm-test`) or a command (`vm-run`) in them.
//!
//! The kernels, images and logs live under `target/vm/`: `apt/` and `debs/`
//! for the package downloads, `kernels/` for the unpacked kernels, `layers/`
//! and `boot/` for the initramfs, `logs/` for each boot's serial output.

mod apt;
mod binaries;
mod command;
mod cpio;
mod initramfs;
mod kernel;
mod qemu;
mod report;
mod suite;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

pub use command::run;
pub use suite::test;

use crate::cmd;
use kernel::Series;

/// Per-kernel timeout of `vm-test`, for the boot and the whole suite. On a
/// 2-core host shared with other builds, a kernel reached /init in 7-20 s
/// under TCG and the 25 integration tests then took 60-120 s.
const DEFAULT_TEST_TIMEOUT_SECONDS: u64 = 600;
const DEFAULT_RUN_TIMEOUT_SECONDS: u64 = 1800;

#[derive(clap::Args)]
pub struct TestOptions {
    /// Kernel series to boot: 5.10, 6.1, 6.12 or all.
    #[arg(long, default_value = "all", value_parser = ["5.10", "6.1", "6.12", "all"])]
    pub kernel: String,
    /// Seconds each kernel may take to boot and run the tests before it is
    /// stopped and counted as failed.
    #[arg(long, default_value_t = DEFAULT_TEST_TIMEOUT_SECONDS, value_name = "SECONDS")]
    pub timeout: u64,
    /// Ask the Debian mirror for each series' newest cloud kernel instead of
    /// reusing the one cached under target/vm/kernels.
    #[arg(long)]
    pub refresh_kernels: bool,
    /// Run this prebuilt libtest binary in the guest instead of building the
    /// vethtrace-tests crate (repeat the option for several).
    #[arg(long, value_name = "PATH")]
    pub test_binary: Vec<PathBuf>,
    /// Put this vethtrace binary in the guest instead of building one with
    /// `cargo build --release`.
    #[arg(long, value_name = "PATH")]
    pub vethtrace_binary: Option<PathBuf>,
    /// Arguments for the test binaries, such as a test name filter.
    #[arg(last = true)]
    pub args: Vec<String>,
}

impl TestOptions {
    pub fn all_kernels() -> Self {
        Self {
            kernel: "all".into(),
            timeout: DEFAULT_TEST_TIMEOUT_SECONDS,
            refresh_kernels: false,
            test_binary: Vec::new(),
            vethtrace_binary: None,
            args: Vec::new(),
        }
    }
}

#[derive(clap::Args)]
pub struct RunOptions {
    /// Kernel series to boot: 5.10, 6.1 or 6.12.
    #[arg(long, value_parser = ["5.10", "6.1", "6.12"])]
    pub kernel: String,
    /// Shell script to copy into the guest and run with /bin/sh, with ARGS
    /// as its arguments. Without it the guest runs `vethtrace ARGS`.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Seconds the guest may run before it is stopped.
    #[arg(long, default_value_t = DEFAULT_RUN_TIMEOUT_SECONDS, value_name = "SECONDS")]
    pub timeout: u64,
    /// Ask the Debian mirror for the series' newest cloud kernel instead of
    /// reusing the one cached under target/vm/kernels.
    #[arg(long)]
    pub refresh_kernels: bool,
    /// Put this vethtrace binary in the guest instead of building one with
    /// `cargo build --release`.
    #[arg(long, value_name = "PATH")]
    pub vethtrace_binary: Option<PathBuf>,
    /// Arguments for vethtrace, or for the script.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// The kernel of one series and its modules layer, which every boot of that
/// series needs.
struct PreparedKernel {
    series: &'static Series,
    kernel: kernel::Kernel,
    modules_layer: PathBuf,
}

/// Paths below `target/vm/`.
struct Dirs {
    root: PathBuf,
}

impl Dirs {
    fn new() -> anyhow::Result<Self> {
        let dirs = Self {
            root: cmd::workspace_root().join("target").join("vm"),
        };
        for dir in [dirs.layers(), dirs.boot(), dirs.logs()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
            remove_files_of_dead_runs(&dir);
        }
        Ok(dirs)
    }

    fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn boot(&self) -> PathBuf {
        self.root.join("boot")
    }

    fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    fn modules_cache(&self, series: &Series) -> PathBuf {
        self.root.join("kernels").join(series.name).join("modules")
    }
}

/// Returns the cached kernel of `series` with its modules layer.
fn prepare_kernel(dirs: &Dirs, series: &'static Series, refresh: bool) -> anyhow::Result<PreparedKernel> {
    let kernel = kernel::prepare(&dirs.root, series, refresh)?;
    let modules = kernel.modules(initramfs::GUEST_MODULES, &dirs.modules_cache(series))?;
    let modules_layer = initramfs::modules_layer(&dirs.layers(), series.name, &kernel, &modules)?;
    Ok(PreparedKernel {
        series,
        kernel,
        modules_layer,
    })
}

/// `/job/env` of a boot: the variables `/init` sets besides its fixed ones.
fn job_env(series: &Series) -> String {
    format!("export VETHTRACE_VM_KERNEL={}\n", initramfs::shell_quote(series.name))
}

/// Returns `prebuilt` if given and present, or else builds vethtrace.
fn vethtrace_binary(prebuilt: Option<&Path>) -> anyhow::Result<PathBuf> {
    match prebuilt {
        Some(path) if path.is_file() => Ok(path.to_path_buf()),
        Some(path) => bail!("--vethtrace-binary {} is not a file", path.display()),
        None => binaries::build_vethtrace(),
    }
}

/// Returns the initramfs layer with the vethtrace binary.
fn vethtrace_layer(dirs: &Dirs, prebuilt: Option<&Path>) -> anyhow::Result<PathBuf> {
    let vethtrace = vethtrace_binary(prebuilt)?;
    initramfs::programs_layer(
        &dirs.layers(),
        "vethtrace",
        &[(initramfs::GUEST_VETHTRACE.to_owned(), vethtrace)],
    )
}

/// A file deleted when this value is dropped: the initrd of one boot, named
/// after this process so that concurrent runs do not overwrite each other's.
struct TemporaryFile(PathBuf);

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        // A leftover file only costs disk space.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Deletes the files in `dir` that a run killed by a signal left behind: an
/// initrd `NAME.PID.initrd` or a partial file `NAME.PID.partial` whose
/// process no longer exists.
fn remove_files_of_dead_runs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|name| name.strip_suffix(".initrd").or_else(|| name.strip_suffix(".partial")))
        else {
            continue;
        };
        let Some(pid) = stem.rsplit('.').next().and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        let dead =
            std::fs::metadata(format!("/proc/{pid}")).is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound);
        if dead {
            // A file that cannot be deleted only costs disk space.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Shows `path` relative to the workspace root when it is below it.
fn display_relative(path: &Path) -> String {
    let root = cmd::workspace_root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}
