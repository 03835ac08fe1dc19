//! Builds the guest's initramfs from layers, so that a run rebuilds only the
//! layer whose inputs changed.
//!
//! The kernel unpacks concatenated cpio archives one after the other into
//! the same root, so the image is several archives in one file:
//!
//! - `base`: `/init`, busybox, dash, iproute2, bpftool, the other programs
//!   in [`HOST_TOOLS`] and their shared libraries;
//! - `modules-SERIES`: the kernel modules of one kernel and their load order;
//! - `vethtrace` and `tests`: the binaries under test;
//! - the job: an uncompressed archive with `/job/run` and `/job/env`, written
//!   for every boot.
//!
//! Each cached layer is stored in `target/vm/layers/` as NAME-HASH.cpio.gz
//! next to NAME-HASH.manifest, a text listing of every entry with the size
//! and mtime of its host file. HASH is the manifest's hash, so a layer is
//! rebuilt only when its manifest changes.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::cpio::{Archive, Content};
use super::kernel::{Kernel, Module};
use crate::cmd;

/// Guest path of the vethtrace binary, which `/init` exports as
/// `VETHTRACE_BIN`.
pub const GUEST_VETHTRACE: &str = "/usr/bin/vethtrace";
/// Guest directory of the integration test binaries.
pub const GUEST_TESTS_DIR: &str = "/usr/libexec/vethtrace-tests";

const INIT: &str = include_str!("init.sh");

/// Host programs copied into every image, at the same path in the guest,
/// in place of busybox's applets of the same name.
///
/// Debian's busybox-static is built with FEATURE_PREFER_APPLETS and
/// FEATURE_SH_STANDALONE: its shell, and its applets that start another
/// program (unshare, nsenter, env, timeout, xargs...), run an applet of
/// that name before searching PATH. `unshare -n ip link` would then run
/// busybox's reduced ip, so every program that starts others, and the
/// shell, comes from the host.
const HOST_TOOLS: &[&str] = &[
    "/bin/dash",
    "/usr/sbin/ip",
    "/usr/sbin/bridge",
    "/usr/sbin/bpftool",
    // util-linux
    "/usr/bin/unshare",
    "/usr/bin/nsenter",
    "/usr/bin/setsid",
    "/usr/bin/setpriv",
    "/usr/bin/taskset",
    // coreutils and findutils
    "/usr/bin/env",
    "/usr/bin/timeout",
    "/usr/bin/nice",
    "/usr/bin/nohup",
    "/usr/sbin/chroot",
    "/usr/bin/xargs",
];
const BUSYBOX: &str = "/bin/busybox";

/// Kernel modules every image loads at boot, after their dependencies. The
/// guest cannot autoload modules (it has no modules.dep or modules.alias),
/// so a test that creates another link type needs its module added here.
pub const GUEST_MODULES: &[&str] = &["veth", "bridge"];

/// Builds or reuses the layer with busybox, the host tools and `/init`.
pub fn base_layer(layers_dir: &Path) -> anyhow::Result<PathBuf> {
    let mut archive = Archive::default();
    for dir in [
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/tmp",
        "/root",
        "/mnt",
        "/var/tmp",
        "/usr/local/bin",
    ] {
        archive.add_directory(dir)?;
    }
    // The kernel opens /dev/console for init's standard streams before
    // /init can mount devtmpfs.
    archive.add_char_device("/dev/console", 5, 1, 0o600)?;
    archive.add_symlink("/var/run", "/run")?;
    archive.add_bytes("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    archive.add_bytes("/etc/group", "root:x:0:\n", 0o644)?;
    archive.add_bytes("/etc/hostname", "vethtrace-vm\n", 0o644)?;
    archive.add_bytes("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644)?;
    archive.add_bytes("/init", INIT, 0o755)?;

    for tool in HOST_TOOLS {
        add_executable(&mut archive, tool, Path::new(tool))?;
    }
    // /bin/sh is dash, not busybox, for the reason given at HOST_TOOLS.
    archive.add_symlink("/bin/sh", "dash")?;
    add_busybox(&mut archive)?;
    write_cached(&archive, layers_dir, "base")
}

/// Links every busybox applet into /bin, except those a host tool provides.
fn add_busybox(archive: &mut Archive) -> anyhow::Result<()> {
    add_executable(archive, BUSYBOX, Path::new(BUSYBOX))?;
    let applets = cmd::output(Command::new(BUSYBOX).arg("--list"))
        .context("busybox-static is missing; install it with cargo xtask setup")?;
    for applet in applets.lines().map(str::trim).filter(|applet| !applet.is_empty()) {
        let shadowed = HOST_TOOLS.iter().any(|tool| tool.rsplit('/').next() == Some(applet));
        let path = format!("/bin/{applet}");
        if shadowed || applet == "busybox" || archive.contains(&path) {
            continue;
        }
        archive.add_symlink(&path, "busybox")?;
    }
    Ok(())
}

/// Builds or reuses the layer with `modules` under `/lib/modules/RELEASE/`
/// and their load order in `/etc/vethtrace-vm/modules`.
pub fn modules_layer(layers_dir: &Path, series: &str, kernel: &Kernel, modules: &[Module]) -> anyhow::Result<PathBuf> {
    let mut archive = Archive::default();
    let mut load_order = String::new();
    for module in modules {
        let path = format!("/lib/modules/{}/{}", kernel.release, module.relative_path);
        archive.add_host_file(&path, &module.file, 0o644)?;
        load_order.push_str(&path);
        load_order.push('\n');
    }
    archive.add_bytes("/etc/vethtrace-vm/modules", load_order, 0o644)?;
    write_cached(&archive, layers_dir, &format!("modules-{series}"))
}

/// Builds or reuses a layer named `name` with the host executables
/// `programs` (guest path, host path) and their shared libraries.
pub fn programs_layer(layers_dir: &Path, name: &str, programs: &[(String, PathBuf)]) -> anyhow::Result<PathBuf> {
    let mut archive = Archive::default();
    for (guest, host) in programs {
        add_executable(&mut archive, guest, host)?;
    }
    write_cached(&archive, layers_dir, name)
}

/// Returns the uncompressed job archive: `/job/run`, the shell script that
/// `/init` runs, `/job/env`, sourced by `/init` before that, and `extra`
/// files (guest path, contents).
pub fn job_archive(run: &str, env: &str, extra: &[(&str, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let mut archive = Archive::default();
    archive.add_bytes("/job/run", run, 0o755)?;
    archive.add_bytes("/job/env", env, 0o644)?;
    for (path, contents) in extra {
        archive.add_bytes(path, contents.clone(), 0o755)?;
    }
    let mut bytes = Vec::new();
    archive.write_to(&mut bytes)?;
    Ok(bytes)
}

/// Writes the initrd `output`: the `layers` in order, then `job`.
pub fn assemble(layers: &[PathBuf], job: &[u8], output: &Path) -> anyhow::Result<()> {
    let file = File::create(output).with_context(|| format!("failed to create {}", output.display()))?;
    let mut out = BufWriter::new(file);
    for layer in layers {
        let bytes = std::fs::read(layer).with_context(|| format!("failed to read {}", layer.display()))?;
        out.write_all(&bytes)?;
        // The kernel skips zero bytes between archives; an uncompressed
        // archive must start on a 4-byte boundary.
        out.write_all(&[0; 3][..(4 - bytes.len() % 4) % 4])?;
    }
    out.write_all(job)?;
    out.flush()
        .with_context(|| format!("failed to write {}", output.display()))
}

/// Adds the executable `host` as `guest` with the shared libraries and
/// dynamic loader that `ldd` lists for it, each at the path ldd prints.
fn add_executable(archive: &mut Archive, guest: &str, host: &Path) -> anyhow::Result<()> {
    if !host.exists() {
        bail!("{} is missing; install it with cargo xtask setup", host.display());
    }
    archive.add_host_file(guest, host, 0o755)?;
    for library in shared_libraries(host)? {
        let guest_library = library.to_str().context("library path is not UTF-8")?.to_owned();
        archive.add_host_file(&guest_library, &library, 0o755)?;
    }
    Ok(())
}

fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("failed to start ldd; install libc-bin")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stdout.contains("statically linked") || stderr.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        bail!(
            "ldd {} failed: {}\n{}",
            binary.display(),
            output.status,
            stderr.trim_end()
        );
    }
    parse_ldd(&stdout).with_context(|| format!("ldd {}", binary.display()))
}

/// Reads library paths from ldd's output; the vDSO has no path and is
/// skipped.
fn parse_ldd(output: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for line in output.lines().map(str::trim) {
        if line.contains("=> not found") {
            bail!("a shared library is not found: {line}");
        }
        let path = line.split_once("=> ").map_or(line, |(_, path)| path);
        let path = path.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// Returns `layers_dir/NAME-HASH.cpio.gz`, the gzip-compressed `archive`,
/// writing it unless a file built from the same inputs is there already.
///
/// HASH is the hash of the archive's manifest, so runs that share the
/// target directory but build different inputs (two worktrees' binaries,
/// say) never overwrite each other's layers. Other versions of the layer
/// are deleted once unused for a day.
fn write_cached(archive: &Archive, layers_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let manifest = manifest(archive)?;
    let version = format!("{name}-{:016x}", fnv1a(manifest.as_bytes()));
    let file_name = format!("{version}.cpio.gz");
    let path = layers_dir.join(&file_name);
    if let Ok(file) = File::options().append(true).open(&path) {
        // The new mtime keeps the pruning below from deleting a layer in use.
        file.set_modified(SystemTime::now())
            .with_context(|| format!("failed to touch {}", path.display()))?;
        return Ok(path);
    }

    eprintln!("Building the initramfs layer {}", path.display());
    std::fs::create_dir_all(layers_dir).with_context(|| format!("failed to create {}", layers_dir.display()))?;
    let partial = layers_dir.join(format!("{file_name}.{}.partial", std::process::id()));
    let file = File::create(&partial).with_context(|| format!("failed to create {}", partial.display()))?;
    // On the base layer, level 1 gives a file 8% larger than level 6 in
    // 40% of the time (gzip 1.12, 7.9 MB of input, 2-core host).
    let mut encoder = GzEncoder::new(BufWriter::new(file), Compression::fast());
    archive.write_to(&mut encoder)?;
    let mut out = encoder
        .finish()
        .with_context(|| format!("failed to write {}", partial.display()))?;
    out.flush()
        .with_context(|| format!("failed to write {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("failed to rename {}", partial.display()))?;
    let manifest_path = layers_dir.join(format!("{version}.manifest"));
    std::fs::write(&manifest_path, &manifest)
        .with_context(|| format!("failed to write {}", manifest_path.display()))?;
    prune_old_versions(layers_dir, name, &file_name)?;
    Ok(path)
}

/// Deletes the versions of layer `name` other than `current` that no run
/// used for a day.
fn prune_old_versions(layers_dir: &Path, name: &str, current: &str) -> anyhow::Result<()> {
    const UNUSED_FOR: Duration = Duration::from_secs(24 * 60 * 60);
    let entries = std::fs::read_dir(layers_dir).with_context(|| format!("failed to read {}", layers_dir.display()))?;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        let Some(stem) = file_name.strip_suffix(".cpio.gz") else {
            continue;
        };
        let is_version = stem
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|byte| byte.is_ascii_hexdigit()));
        let unused = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > UNUSED_FOR));
        if is_version && unused && file_name != current {
            // Another run may have deleted it first, and a leftover file
            // only costs disk space.
            let _ = std::fs::remove_file(entry.path());
            let _ = std::fs::remove_file(layers_dir.join(format!("{stem}.manifest")));
        }
    }
    Ok(())
}

/// Lists every entry with what identifies its content: size and mtime for a
/// host file, a hash for generated bytes.
fn manifest(archive: &Archive) -> anyhow::Result<String> {
    let mut text = String::new();
    for entry in archive.entries() {
        let content = match &entry.content {
            Content::Directory => "directory".to_owned(),
            Content::HostFile(source) => {
                let metadata =
                    std::fs::metadata(source).with_context(|| format!("failed to read {}", source.display()))?;
                let mtime = metadata
                    .modified()
                    .ok()
                    .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                    .unwrap_or_default();
                format!(
                    "file {} size {} mtime {}",
                    source.display(),
                    metadata.len(),
                    mtime.as_nanos()
                )
            }
            Content::Bytes(bytes) => format!("bytes size {} fnv1a {:016x}", bytes.len(), fnv1a(bytes)),
            Content::Symlink(target) => format!("symlink {target}"),
            Content::CharDevice { major, minor } => format!("char device {major}:{minor}"),
        };
        text.push_str(&format!("{} {:o} {content}\n", entry.path, entry.permissions));
    }
    Ok(text)
}

/// Computes the 64-bit FNV-1a hash, which unlike `std::hash::DefaultHasher`
/// is the same in every Rust release, so cached layer names stay valid.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Quotes `word` for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_paths() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libraries = parse_ldd(output).unwrap();
        assert_eq!(
            libraries,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn ldd_missing_library() {
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn shell_quote_single_quote() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
