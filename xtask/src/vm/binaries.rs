//! Builds the binaries the guest runs and finds them through cargo's JSON
//! messages, which name each artifact's path even when CARGO_TARGET_DIR
//! moves the target directory.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::cmd;

/// An executable that cargo built.
pub struct Executable {
    /// The cargo target's name, such as `integration`.
    pub name: String,
    pub path: PathBuf,
}

/// Builds `target/release/vethtrace`, whose build script compiles the eBPF
/// object with the nightly toolchain.
pub fn build_vethtrace() -> anyhow::Result<PathBuf> {
    let executables = cargo_executables(
        &["build", "--release", "--package", "vethtrace", "--bin", "vethtrace"],
        "bin",
    )?;
    match executables.into_iter().next() {
        Some(executable) => Ok(executable.path),
        None => bail!("cargo build reported no vethtrace executable"),
    }
}

/// Builds the integration test binaries of the vethtrace-tests crate without
/// running them.
pub fn build_integration_tests() -> anyhow::Result<Vec<Executable>> {
    let executables = cargo_executables(
        &["test", "--release", "--package", "vethtrace-tests", "--no-run"],
        "test",
    )?;
    if executables.is_empty() {
        bail!("cargo test --no-run reported no test executable for vethtrace-tests");
    }
    Ok(executables)
}

/// Runs cargo with `args` and returns the executables of the artifacts
/// whose target kind includes `kind`. Compiler messages still reach the
/// terminal through `json-render-diagnostics`.
fn cargo_executables(args: &[&str], kind: &str) -> anyhow::Result<Vec<Executable>> {
    let mut command = Command::new("cargo");
    command
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(cmd::workspace_root())
        .stderr(Stdio::inherit());
    eprintln!("+ {}", cmd::display(&command));
    let output = command
        .output()
        .with_context(|| format!("failed to start {}", cmd::display(&command)))?;
    if !output.status.success() {
        bail!("{} failed: {}", cmd::display(&command), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(parse_executables(&stdout, kind))
}

fn parse_executables(messages: &str, kind: &str) -> Vec<Executable> {
    let mut executables = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let target = &message["target"];
        let has_kind = target["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|value| value == kind));
        let (Some(name), Some(path)) = (target["name"].as_str(), message["executable"].as_str()) else {
            continue;
        };
        if has_kind {
            executables.push(Executable {
                name: name.to_owned(),
                path: PathBuf::from(path),
            });
        }
    }
    executables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_executable_from_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"vethtrace_tests"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["test"],"name":"integration"},"executable":"/t/release/deps/integration-1a2b"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        let executables = parse_executables(messages, "test");
        assert_eq!(executables.len(), 1);
        assert_eq!(executables[0].name, "integration");
        assert_eq!(executables[0].path, PathBuf::from("/t/release/deps/integration-1a2b"));
    }
}
