//! Small helpers for running external commands with clear errors.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

/// Runs `command`, echoing it first, and fails unless it exits with 0.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", display(command));
    let status = command
        .status()
        .with_context(|| format!("failed to start {}", display(command)))?;
    if !status.success() {
        bail!("{} failed: {status}", display(command));
    }
    Ok(())
}

/// Runs `command` quietly and returns its standard output, failing unless it
/// exits with 0.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("failed to start {}", display(command)))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}\n{}",
            display(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("{} printed invalid UTF-8", display(command)))
}

/// Formats a command the way a shell user would type it.
pub fn display(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The workspace root: the parent of the xtask crate.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Fails with a message naming `what` unless the process runs as root.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc_geteuid() };
    if euid != 0 {
        bail!("{what} needs root (it creates network namespaces and loads eBPF programs); run it again with sudo");
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
