//! `cargo xtask vm-test`: boots each kernel with the integration tests,
//! echoes each test's result and prints a summary line per kernel.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::report::{Event, Outcome, Report};
use super::{
    Dirs, PreparedKernel, TemporaryFile, TestOptions, binaries, display_relative, initramfs, job_env, kernel,
    prepare_kernel, qemu, vethtrace_layer,
};
use crate::setup;

/// Console lines shown when a guest printed no result.
const TAIL_LINES: usize = 30;

/// Runs the integration tests on each kernel that `options` selects and
/// fails if any kernel fails.
pub fn test(options: &TestOptions) -> anyhow::Result<()> {
    let series: Vec<&'static kernel::Series> = if options.kernel == "all" {
        kernel::SERIES.iter().collect()
    } else {
        vec![kernel::series(&options.kernel)?]
    };
    setup::setup(&setup::Options { no_packages: false })?;
    let dirs = Dirs::new()?;

    let vethtrace_layer = vethtrace_layer(&dirs, options.vethtrace_binary.as_deref())?;
    let tests = test_binaries(&options.test_binary)?;
    let base = initramfs::base_layer(&dirs.layers())?;
    let tests_layer = initramfs::programs_layer(&dirs.layers(), "tests", &tests)?;

    let mut summaries = Vec::new();
    let mut failed = Vec::new();
    for series in series {
        let outcome = prepare_kernel(&dirs, series, options.refresh_kernels).and_then(|prepared| {
            let layers = [
                base.clone(),
                prepared.modules_layer.clone(),
                vethtrace_layer.clone(),
                tests_layer.clone(),
            ];
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

/// Returns the guest and host paths of the test binaries: `prebuilt`, or
/// else those built from the vethtrace-tests crate.
fn test_binaries(prebuilt: &[PathBuf]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if prebuilt.is_empty() {
        let built = binaries::build_integration_tests()?;
        return Ok(built
            .into_iter()
            .map(|test| (format!("{}/{}", initramfs::GUEST_TESTS_DIR, test.name), test.path))
            .collect());
    }
    let mut binaries = Vec::new();
    for path in prebuilt {
        if !path.is_file() {
            bail!("--test-binary {} is not a file", path.display());
        }
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("--test-binary {} has no UTF-8 file name", path.display()))?;
        binaries.push((format!("{}/{name}", initramfs::GUEST_TESTS_DIR), path.clone()));
    }
    Ok(binaries)
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
    let initrd = TemporaryFile(
        dirs.boot()
            .join(format!("{}-test.{}.initrd", series.name, std::process::id())),
    );
    initramfs::assemble(layers, &job, &initrd.0)?;
    let log = dirs.logs().join(format!("{}-test.log", series.name));

    let mut report = Report::default();
    let mut recent = VecDeque::new();
    let start = Instant::now();
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
            show(report.read_line(text, start.elapsed()));
        },
    )?;

    if report.result.is_none() {
        println!("The guest printed no result; its last lines:");
        for line in &recent {
            println!("    {line}");
        }
    }
    Ok(summarize(series, &report, &finished, &log))
}

/// Prints what a console line means to the person running the tests.
fn show(event: Event) {
    match event {
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
}

/// Returns whether the kernel passed and its summary line, such as `6.1
/// (6.1.0-50-cloud-amd64): pass, 25 passed, 0 failed, 0 skipped, mode
/// ebpf, modules veth loaded, booted in 9.7 s, 73.1 s in all`.
fn summarize(series: &kernel::Series, report: &Report, finished: &qemu::Finished, log: &Path) -> (bool, String) {
    let passed = report.result == Some(true) && report.failed == 0 && !finished.timed_out;
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
        let mut reason = failure_reason(report, finished.timed_out).to_owned();
        if let Some(test) = report.running_test() {
            reason.push_str(&format!(" in test {test}"));
        }
        summary.push_str(&format!("; {reason}; serial log: {}", display_relative(log)));
    }
    (passed, summary)
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

/// Returns the job of a test boot: each test binary in turn, single-threaded
/// because the tests share the kernel's network state, then the verdict.
/// `--nocapture` puts each test's output into the serial log in order; the
/// report shows it for the tests that fail.
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
