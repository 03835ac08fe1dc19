//! `cargo xtask setup`: installs what building and testing vethtrace need.
//!
//! Every step checks first and does nothing when its tool is already there,
//! so `run` and `test` call it on every start and a fresh machine needs no
//! manual step.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;

/// Debian packages the tests, VM harness and benchmarks use, with the command
/// each one provides (checked before installing).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "/usr/sbin/ip"),
    ("util-linux", "/usr/bin/unshare"),
    ("busybox-static", "/bin/busybox"),
    ("bpftool", "/usr/sbin/bpftool"),
    ("cpio", "/usr/bin/cpio"),
    ("kmod", "/usr/bin/kmod"),
    ("xz-utils", "/usr/bin/xz"),
    ("zstd", "/usr/bin/zstd"),
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("dash", "/bin/dash"),
    ("debian-archive-keyring", "/usr/share/keyrings/debian-archive-keyring.gpg"),
    ("python3-pyroute2", "/usr/lib/python3/dist-packages/pyroute2/__init__.py"),
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("docker.io", "/usr/sbin/dockerd"),
    ("containerd", "/usr/bin/containerd"),
    ("runc", "/usr/sbin/runc"),
    ("lxc", "/usr/bin/lxc-start"),
];

/// The bpf-linker release line that builds against an external LLVM 22.
const BPF_LINKER_VERSION: &str = "^0.13";

#[derive(clap::Args)]
pub struct Options {
    /// Skip the Debian packages (for a machine where apt is not available).
    #[arg(long)]
    pub no_packages: bool,
}

pub fn setup(options: &Options) -> anyhow::Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    if !options.no_packages {
        ensure_debian_packages()?;
    }
    Ok(())
}

/// Installs the nightly's rust-src, which `-Z build-std=core` needs to build
/// the eBPF crate.
fn ensure_rust_src() -> anyhow::Result<()> {
    let installed = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .context("the nightly toolchain is missing; install it with `rustup toolchain install nightly`")?;
    if installed.lines().any(|line| line.starts_with("rust-src")) {
        return Ok(());
    }
    cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// Builds bpf-linker against the nightly's own libLLVM, so the LLVM that emits
/// the eBPF bitcode and the one that links it are the same version.
fn ensure_bpf_linker() -> anyhow::Result<()> {
    let llvm_major = nightly_llvm_major()?;
    let prefix = llvm_prefix(llvm_major)?;
    if bpf_linker_works() {
        return Ok(());
    }

    let sysroot = cmd::output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let library = find_libllvm(&lib_dir, llvm_major)?;
    let link_dir = prefix.join("lib64");
    std::fs::create_dir_all(&link_dir).with_context(|| format!("failed to create {}", link_dir.display()))?;
    // LLVM_PREFIX needs lib64/libLLVM.so at build time; at run time the
    // binary looks for the library's soname through its rpath.
    let soname = library.file_name().context("libLLVM path has no file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname] {
        let link = link_dir.join(name);
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).with_context(|| format!("failed to remove {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&library, &link)
            .with_context(|| format!("failed to link {} to {}", link.display(), library.display()))?;
    }

    cmd::run(
        Command::new("cargo")
            .args(["install", "--force", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .arg("--no-default-features")
            .args(["--features", &format!("llvm-{llvm_major}")])
            .env("LLVM_PREFIX", &prefix)
            // Build from the registry, outside this workspace's settings.
            .current_dir(std::env::temp_dir()),
    )?;
    if !bpf_linker_works() {
        bail!("bpf-linker was installed but `bpf-linker --version` still fails; check that ~/.cargo/bin is on PATH");
    }
    Ok(())
}

fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Reads the LLVM major version from `rustc +nightly -vV`.
fn nightly_llvm_major() -> anyhow::Result<u32> {
    let version = cmd::output(Command::new("rustc").args(["+nightly", "-vV"]))
        .context("the nightly toolchain is missing; install it with `rustup toolchain install nightly`")?;
    let line = version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` printed no `LLVM version:` line")?;
    let major = line.split('.').next().unwrap_or_default();
    major
        .parse()
        .with_context(|| format!("invalid LLVM version {line:?} from `rustc +nightly -vV`"))
}

/// A stable folder for the libLLVM symlink, because bpf-linker keeps an rpath
/// to it.
fn llvm_prefix(llvm_major: u32) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(format!(".local/share/vethtrace/llvm-{llvm_major}")))
}

/// Finds the nightly's `libLLVM.so.MAJOR.*` in its sysroot.
fn find_libllvm(lib_dir: &Path, llvm_major: u32) -> anyhow::Result<PathBuf> {
    let wanted = format!("libLLVM.so.{llvm_major}.");
    let entries = std::fs::read_dir(lib_dir).with_context(|| format!("failed to read {}", lib_dir.display()))?;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&wanted) {
            return Ok(entry.path());
        }
    }
    bail!("no {wanted}* in {}; is the nightly toolchain complete?", lib_dir.display())
}

/// Installs the missing Debian packages with apt-get, running `apt-get update`
/// first only when something is missing.
fn ensure_debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, path)| !Path::new(path).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    cmd::require_root(&format!("installing the Debian packages {}", missing.join(" ")))?;
    cmd::run(Command::new("apt-get").args(["update", "-qq"]))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
