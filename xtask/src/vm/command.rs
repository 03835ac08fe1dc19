//! `cargo xtask vm-run`: boots one kernel, runs vethtrace or a script in it,
//! streams the guest's output and exits with the command's exit status.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::report::{self, Event, Report};
use super::{
    Dirs, RunOptions, TemporaryFile, display_relative, initramfs, job_env, kernel, prepare_kernel, qemu,
    vethtrace_layer,
};
use crate::setup;

/// Runs `cargo xtask vm-run`. When the guest command finishes, this exits
/// the process with its status instead of returning.
pub fn run(options: &RunOptions) -> anyhow::Result<()> {
    let series = kernel::series(&options.kernel)?;
    let script = match &options.script {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("failed to read the script {}", path.display()))?)
        }
        None => None,
    };
    setup::setup(&setup::Options { no_packages: false })?;
    let dirs = Dirs::new()?;

    let vethtrace_layer = vethtrace_layer(&dirs, options.vethtrace_binary.as_deref())?;
    let base = initramfs::base_layer(&dirs.layers())?;
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
    let initrd = TemporaryFile(
        dirs.boot()
            .join(format!("{}-run.{}.initrd", series.name, std::process::id())),
    );
    initramfs::assemble(&[base, prepared.modules_layer, vethtrace_layer], &job, &initrd.0)?;
    let log = dirs.logs().join(format!("{}-run.log", series.name));

    eprintln!(
        "Booting {} {} under QEMU (TCG); the guest's output follows",
        prepared.kernel.package.name, prepared.kernel.package.version
    );
    let mut report = Report::default();
    let start = Instant::now();
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
                if text.contains(report::MARKER) {
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
            format!(
                "the guest timed out after {} s; raise the limit with --timeout SECONDS",
                options.timeout
            )
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
