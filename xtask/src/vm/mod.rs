//! The VM harness: boots Debian kernels under QEMU and runs the integration
//! tests (`vm-test`) or a command (`vm-run`) in them.
//!
//! The kernels, images and logs live under `target/vm/`: `apt/` and `debs/`
//! for the package downloads, `kernels/` for the unpacked kernels, `layers/`
//! and `boot/` for the initramfs, `logs/` for each boot's serial output.

mod apt;
mod binaries;
mod cpio;
mod initramfs;
mod kernel;
mod qemu;
mod report;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{cmd, setup};
use kernel::Series;
use report::{Event, Outcome, Report};

/// Per-kernel timeout of `vm-test`: boot and the whole suite. A kernel boots
/// in about 5 s under TCG on a 2-core host; the rest is for the tests, which
/// run several times slower than natively.
const DEFAULT_TEST_TIMEOUT_SECONDS: u64 = 600;
const DEFAULT_RUN_TIMEOUT_SECONDS: u64 = 1800;
/// Console lines that `vm-test` shows when a guest printed no result.
const TAIL_LINES: usize = 30;

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

/// What every boot of one series needs: the kernel and its modules layer.
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

/// `cargo xtask vm-test`: runs the integration tests on each kernel and
/// fails if any kernel fails.
pub fn test(options: &TestOptions) -> anyhow::Result<()> {
    let series: Vec<&'static Series> = if options.kernel == "all" {
        kernel::SERIES.iter().collect()
    } else {
        vec![kernel::series(&options.kernel)?]
    };
    setup::setup(&setup::Options { no_packages: false })?;
    let dirs = Dirs::new()?;

    let vethtrace = vethtrace_binary(options.vethtrace_binary.as_deref())?;
    let tests: Vec<(String, PathBuf)> = if options.test_binary.is_empty() {
        binaries::build_integration_tests()?
            .into_iter()
            .map(|test| (format!("{}/{}", initramfs::GUEST_TESTS_DIR, test.name), test.path))
            .collect()
    } else {
        options
            .test_binary
            .iter()
            .map(|path| {
                let name = path.file_name().and_then(|name| name.to_str()).context("invalid --test-binary path")?;
                Ok((format!("{}/{name}", initramfs::GUEST_TESTS_DIR), path.clone()))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let base = initramfs::base_layer(&dirs.layers())?;
    let vethtrace_layer =
        initramfs::programs_layer(&dirs.layers(), "vethtrace", &[(initramfs::GUEST_VETHTRACE.to_owned(), vethtrace)])?;
    let tests_layer = initramfs::programs_layer(&dirs.layers(), "tests", &tests)?;

    let mut summaries = Vec::new();
    let mut failed = Vec::new();
    for series in series {
        let outcome = prepare_kernel(&dirs, series, options.refresh_kernels).and_then(|prepared| {
            let layers = [base.clone(), prepared.modules_layer.clone(), vethtrace_layer.clone(), tests_layer.clone()];
            test_kernel(&dirs, &prepared, &layers, options)
        });
        let (passed, summary) = match outcome {
            Ok(result) => result,
            Err(error) => (false, format!("{}: error: {error:#}", series.name)),
        };
        println!("{summary}");
        if !passed {
            failed.push(series.name);
        }
        summaries.push(summary);
    }

    if summaries.len() > 1 {
        println!("\nvm-test summary:");
        for summary in &summaries {
            println!("  {summary}");
        }
    }
    if !failed.is_empty() {
        bail!("vm-test failed on kernel {}", failed.join(", "));
    }
    Ok(())
}

/// Boots one kernel with the tests and returns whether it passed and its
/// summary line.
fn test_kernel(
    dirs: &Dirs,
    prepared: &PreparedKernel,
    layers: &[PathBuf],
    options: &TestOptions,
) -> anyhow::Result<(bool, String)> {
    let series = prepared.series;
    let package = &prepared.kernel.package;
    println!("\n== kernel {} ({} {}) ==", series.name, package.name, package.version);

    let job = initramfs::job_archive(&test_job(&options.args), &job_env(series), &[])?;
    let initrd = TemporaryFile(dirs.boot().join(format!("{}-test.{}.initrd", series.name, std::process::id())));
    initramfs::assemble(layers, &job, &initrd.0)?;
    let log = dirs.logs().join(format!("{}-test.log", series.name));

    let mut report = Report::default();
    let mut recent = std::collections::VecDeque::new();
    let start = std::time::Instant::now();
    let finished = qemu::boot(
        &qemu::Boot {
            vmlinuz: &prepared.kernel.vmlinuz,
            initrd: &initrd.0,
            log: &log,
            timeout: Duration::from_secs(options.timeout),
        },
        |line| {
            let qemu::Line::Guest(text) = line else { return };
            if recent.len() == TAIL_LINES {
                recent.pop_front();
            }
            recent.push_back(text.clone());
            match report.read_line(text, start.elapsed()) {
                Event::None => {}
                Event::Show(text) => println!("{text}"),
                Event::Test { name, outcome, output } => {
                    let word = match outcome {
                        Outcome::Passed => "ok",
                        Outcome::Failed => "FAILED",
                        Outcome::Skipped => "ignored",
                    };
                    println!("test {name} ... {word}");
                    for line in output {
                        let line = line.trim_end();
                        if line.is_empty() {
                            println!();
                        } else {
                            println!("    {line}");
                        }
                    }
                }
            }
            let _ = std::io::stdout().flush();
        },
    )?;

    let passed = report.result == Some(true) && report.failed == 0 && !finished.timed_out;
    if report.result.is_none() {
        println!("The guest printed no result; its last lines:");
        for line in &recent {
            println!("    {line}");
        }
    }
    let mut summary = format!(
        "{} ({}): {}, {} passed, {} failed, {} skipped",
        series.name,
        report.release.as_deref().unwrap_or("did not boot"),
        if passed { "pass" } else { "FAIL" },
        report.passed,
        report.failed,
        report.skipped,
    );
    if !report.modes.is_empty() {
        summary.push_str(&format!(", mode {}", report.modes.join("+")));
    }
    summary.push_str(&format!(", {}", report.modules_summary()));
    if let Some(boot_time) = report.boot_time {
        summary.push_str(&format!(", booted in {:.1} s", boot_time.as_secs_f64()));
    }
    summary.push_str(&format!(", {:.1} s in all", finished.elapsed.as_secs_f64()));
    if !passed {
        let mut reason = failure_reason(&report, finished.timed_out).to_owned();
        if let Some(test) = report.running_test() {
            reason.push_str(&format!(" in test {test}"));
        }
        summary.push_str(&format!("; {reason}; serial log: {}", display_relative(&log)));
    }
    Ok((passed, summary))
}

fn failure_reason(report: &Report, timed_out: bool) -> &'static str {
    if timed_out && report.release.is_none() {
        "timed out before /init ran; raise the limit with --timeout SECONDS"
    } else if timed_out {
        "timed out; raise the limit with --timeout SECONDS"
    } else if report.release.is_none() {
        "the guest stopped before /init ran (kernel panic?)"
    } else if report.result.is_none() {
        "the guest stopped without a result line (kernel panic?)"
    } else {
        "tests failed"
    }
}

/// The job of a test boot: each test binary in turn, single-threaded
/// because the tests share the kernel's network state, then the verdict.
fn test_job(args: &[String]) -> String {
    let args: Vec<String> = args.iter().map(|arg| initramfs::shell_quote(arg)).collect();
    format!(
        r#"status=0
found=0
for test in {dir}/*; do
    [ -x "$test" ] || continue
    found=1
    "$test" --test-threads=1 --nocapture {args} || status=1
done
if [ "$found" = 0 ]; then
    echo "vethtrace-vm-warning: no test binaries in {dir}"
    status=1
fi
if [ "$status" = 0 ]; then
    echo "vethtrace-vm-result: pass"
else
    echo "vethtrace-vm-result: fail"
fi
exit "$status"
"#,
        dir = initramfs::GUEST_TESTS_DIR,
        args = args.join(" "),
    )
}

/// `cargo xtask vm-run`: boots one kernel, runs the script or vethtrace,
/// streams the guest's output and exits with the command's exit status.
pub fn run(options: &RunOptions) -> anyhow::Result<()> {
    let series = kernel::series(&options.kernel)?;
    let script = match &options.script {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("failed to read the script {}", path.display()))?),
        None => None,
    };
    setup::setup(&setup::Options { no_packages: false })?;
    let dirs = Dirs::new()?;

    let vethtrace = vethtrace_binary(options.vethtrace_binary.as_deref())?;
    let base = initramfs::base_layer(&dirs.layers())?;
    let vethtrace_layer =
        initramfs::programs_layer(&dirs.layers(), "vethtrace", &[(initramfs::GUEST_VETHTRACE.to_owned(), vethtrace)])?;
    let prepared = prepare_kernel(&dirs, series, options.refresh_kernels)?;

    let args: Vec<String> = options.args.iter().map(|arg| initramfs::shell_quote(arg)).collect();
    let mut extra = Vec::new();
    let command = match script {
        Some(bytes) => {
            extra.push(("/job/script", bytes));
            format!("/bin/sh /job/script {}\n", args.join(" "))
        }
        None => format!("{} {}\n", initramfs::GUEST_VETHTRACE, args.join(" ")),
    };
    let job = initramfs::job_archive(&command, &job_env(series), &extra)?;
    let initrd = TemporaryFile(dirs.boot().join(format!("{}-run.{}.initrd", series.name, std::process::id())));
    initramfs::assemble(&[base, prepared.modules_layer, vethtrace_layer], &job, &initrd.0)?;
    let log = dirs.logs().join(format!("{}-run.log", series.name));

    eprintln!(
        "Booting {} {} under QEMU (TCG); the guest's output follows",
        prepared.kernel.package.name, prepared.kernel.package.version
    );
    let mut report = Report::default();
    let start = std::time::Instant::now();
    let finished = qemu::boot(
        &qemu::Boot {
            vmlinuz: &prepared.kernel.vmlinuz,
            initrd: &initrd.0,
            log: &log,
            timeout: Duration::from_secs(options.timeout),
        },
        |line| match line {
            qemu::Line::Guest(text) => {
                let event = report.read_line(text, start.elapsed());
                // The firmware's and kernel's lines before /init and after
                // the command go to the log only. Marker lines are for this
                // harness; a failed module or a warning is shown in words.
                if text.contains("vethtrace-vm-") {
                    if let Event::Show(message) = event {
                        eprintln!("{message}");
                    }
                } else if report.release.is_some() && report.exit_code.is_none() {
                    println!("{text}");
                    let _ = std::io::stdout().flush();
                }
            }
            qemu::Line::Qemu(text) => eprintln!("qemu: {text}"),
        },
    )?;

    let Some(code) = report.exit_code else {
        let reason = if finished.timed_out {
            format!("the guest timed out after {} s; raise the limit with --timeout SECONDS", options.timeout)
        } else if report.release.is_none() {
            "the guest stopped before /init ran (kernel panic?)".to_owned()
        } else {
            "the guest stopped before the command finished (kernel panic?)".to_owned()
        };
        bail!("{reason}; serial log: {}", display_relative(&log));
    };
    eprintln!(
        "Guest command exited with {code} ({:.1} s in all, serial log {})",
        finished.elapsed.as_secs_f64(),
        display_relative(&log)
    );
    // exit() runs no destructors.
    drop(initrd);
    std::process::exit(code);
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

/// Returns `prebuilt` if given and present, or else builds vethtrace.
fn vethtrace_binary(prebuilt: Option<&Path>) -> anyhow::Result<PathBuf> {
    match prebuilt {
        Some(path) if path.is_file() => Ok(path.to_path_buf()),
        Some(path) => bail!("--vethtrace-binary {} is not a file", path.display()),
        None => binaries::build_vethtrace(),
    }
}

/// Shows `path` relative to the workspace root when it is below it.
fn display_relative(path: &Path) -> String {
    let root = cmd::workspace_root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}
