//! The Debian kernels the VM tests boot: which series exist, and how one is
//! fetched, unpacked and cached under `target/vm/kernels/SERIES/`.
//!
//! A cached kernel is reused without asking the mirror, so a second run
//! starts booting at once and every run tests the same kernel build until
//! `--refresh-kernels` requests the newest one.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::apt::{self, Apt, Package};
use crate::cmd;

/// A kernel series and the Debian release whose cloud kernel belongs to it.
pub struct Series {
    pub name: &'static str,
    pub suite: &'static str,
}

/// Every series the VM tests cover, oldest first.
pub const SERIES: &[Series] = &[
    Series {
        name: "5.10",
        suite: "bullseye",
    },
    Series {
        name: "6.1",
        suite: "bookworm",
    },
    Series {
        name: "6.12",
        suite: "trixie",
    },
];

/// Looks up a series by name, such as `6.1`.
pub fn series(name: &str) -> anyhow::Result<&'static Series> {
    SERIES.iter().find(|series| series.name == name).with_context(|| {
        let names: Vec<&str> = SERIES.iter().map(|series| series.name).collect();
        format!("unknown kernel series {name:?}; use one of {}", names.join(", "))
    })
}

/// An unpacked kernel package.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Kernel {
    pub package: Package,
    /// The kernel release, as `uname -r` prints it.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/RELEASE` inside the unpacked package.
    pub modules_dir: PathBuf,
}

/// A kernel module file ready for the initramfs.
pub struct Module {
    /// The uncompressed `.ko` file on the host.
    pub file: PathBuf,
    /// The path below `lib/modules/RELEASE/`, without a compression suffix.
    pub relative_path: String,
}

/// Returns the cached kernel of `series`, downloading and unpacking it first
/// when there is none or when `refresh` requests the newest package.
pub fn prepare(vm_dir: &Path, series: &Series, refresh: bool) -> anyhow::Result<Kernel> {
    let dir = vm_dir.join("kernels").join(series.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    // Runs that share the target directory take turns: apt locks its lists
    // and fails at once instead of waiting, and both would unpack into the
    // same directory. The lock is released when the file is closed.
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path).with_context(|| format!("failed to create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("failed to lock {}", lock_path.display()))?;

    let record = dir.join("kernel.json");
    // A missing or unreadable record only means the kernel is fetched again.
    let mut cached: Option<Kernel> = std::fs::read(&record)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if !refresh && let Some(kernel) = cached.take_if(|kernel| kernel.vmlinuz.exists()) {
        return Ok(kernel);
    }

    eprintln!(
        "Resolving the {} cloud kernel from Debian {}",
        series.name, series.suite
    );
    let apt = Apt::new(
        &vm_dir.join("apt").join(series.suite),
        &apt::host_debian_mirror()?,
        series.suite,
    )?;
    apt.update()?;
    let package = apt.resolve_cloud_kernel()?;
    if let Some(kernel) = cached
        && kernel.package == package
        && kernel.vmlinuz.exists()
    {
        eprintln!("{} {} is already cached", package.name, package.version);
        return Ok(kernel);
    }

    let deb = apt.download(&package, &vm_dir.join("debs").join(series.suite))?;
    unpack(&deb, &dir, package)
}

/// Unpacks the kernel package `deb` into `dir/root/NAME_VERSION/`, records
/// it in `dir/kernel.json` and deletes the trees of older packages.
fn unpack(deb: &Path, dir: &Path, package: Package) -> anyhow::Result<Kernel> {
    let root = dir.join("root");
    let unpacked = root.join(format!("{}_{}", package.name, package.version));
    let partial = root.join("partial");
    remove_dir_if_exists(&partial)?;
    std::fs::create_dir_all(&partial).with_context(|| format!("failed to create {}", partial.display()))?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&partial))?;
    remove_dir_if_exists(&unpacked)?;
    rename(&partial, &unpacked)?;

    let kernel = locate(&unpacked, package)?;
    let json = serde_json::to_vec_pretty(&kernel).context("failed to encode kernel.json")?;
    let temporary = dir.join("kernel.json.tmp");
    std::fs::write(&temporary, json).with_context(|| format!("failed to write {}", temporary.display()))?;
    rename(&temporary, &dir.join("kernel.json"))?;

    for entry in std::fs::read_dir(&root).with_context(|| format!("failed to read {}", root.display()))? {
        let path = entry?.path();
        if path != unpacked {
            remove_dir_if_exists(&path)?;
        }
    }
    Ok(kernel)
}

/// Finds `boot/vmlinuz-RELEASE` and the matching modules directory, which is
/// `lib/modules` up to bookworm and `usr/lib/modules` from trixie on.
fn locate(root: &Path, package: Package) -> anyhow::Result<Kernel> {
    let boot = root.join("boot");
    let entries = std::fs::read_dir(&boot).with_context(|| format!("{} has no boot directory", package.name))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(release) = name.to_str().and_then(|name| name.strip_prefix("vmlinuz-")) else {
            continue;
        };
        let modules_dir = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|dir| root.join(dir).join(release))
            .find(|dir| dir.is_dir())
            .with_context(|| format!("{} has vmlinuz-{release} but no lib/modules/{release}", package.name))?;
        return Ok(Kernel {
            release: release.to_owned(),
            vmlinuz: entry.path(),
            modules_dir,
            package,
        });
    }
    bail!("{} has no boot/vmlinuz-* file", package.name)
}

impl Kernel {
    /// Returns `names` and the modules they depend on, dependencies first,
    /// each decompressed into `cache_dir` if the package compresses them.
    ///
    /// Debian's packages ship no modules.dep (depmod writes it when the
    /// package is installed), so the dependencies come from each module's
    /// own `depends=` field, read with `modinfo`.
    pub fn modules(&self, names: &[&str], cache_dir: &Path) -> anyhow::Result<Vec<Module>> {
        let index = self.module_index()?;
        let mut ordered = Vec::new();
        let mut visited = HashSet::new();
        for name in names {
            self.add_module(name, &index, cache_dir, &mut visited, &mut ordered)?;
        }
        Ok(ordered)
    }

    /// Appends module `name` to `ordered` after its dependencies. A module
    /// is marked visited before its dependencies are, so a dependency cycle
    /// (which the kernel rejects anyway) ends the recursion.
    fn add_module(
        &self,
        name: &str,
        index: &BTreeMap<String, String>,
        cache_dir: &Path,
        visited: &mut HashSet<String>,
        ordered: &mut Vec<Module>,
    ) -> anyhow::Result<()> {
        let key = normalize_module_name(name);
        if !visited.insert(key.clone()) {
            return Ok(());
        }
        let packaged = index
            .get(&key)
            .with_context(|| format!("kernel {} has no module {name}; is it built in?", self.release))?;
        let file = self.decompressed(packaged, cache_dir)?;
        let depends = cmd::output(Command::new("modinfo").args(["-F", "depends"]).arg(&file)).context(
            "failed to read a module's dependencies; modinfo comes with kmod, which cargo xtask setup installs",
        )?;
        for dependency in depends.trim().split(',').filter(|dependency| !dependency.is_empty()) {
            self.add_module(dependency, index, cache_dir, visited, ordered)?;
        }
        ordered.push(Module {
            relative_path: strip_compression(packaged).0.to_owned(),
            file,
        });
        Ok(())
    }

    /// Maps each module name (with `-` spelled `_`) to its path below the
    /// modules directory.
    fn module_index(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut index = BTreeMap::new();
        let mut pending = vec![self.modules_dir.join("kernel")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("failed to read {}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&self.modules_dir) else {
                    continue;
                };
                let Some(relative) = relative.to_str() else { continue };
                let (uncompressed, _) = strip_compression(relative);
                if let Some(stem) = uncompressed.strip_suffix(".ko") {
                    let name = stem.rsplit('/').next().unwrap_or(stem);
                    index.insert(normalize_module_name(name), relative.to_owned());
                }
            }
        }
        Ok(index)
    }

    /// Returns an uncompressed copy of the packaged module `relative`,
    /// decompressing it into `cache_dir` once.
    fn decompressed(&self, relative: &str, cache_dir: &Path) -> anyhow::Result<PathBuf> {
        let source = self.modules_dir.join(relative);
        let (uncompressed, decompressor) = strip_compression(relative);
        let Some(decompressor) = decompressor else {
            return Ok(source);
        };
        let target = cache_dir.join(&self.release).join(uncompressed);
        if target.exists() {
            return Ok(target);
        }
        let parent = target.parent().context("module path has no parent")?;
        std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
        let partial = target.with_extension(format!("ko.{}.partial", std::process::id()));
        let file = File::create(&partial).with_context(|| format!("failed to create {}", partial.display()))?;
        let mut command = Command::new(decompressor);
        command.arg("-dc").arg(&source).stdout(file);
        cmd::run(&mut command).with_context(|| {
            format!(
                "failed to decompress {}; install {decompressor} with cargo xtask setup",
                source.display()
            )
        })?;
        rename(&partial, &target)?;
        Ok(target)
    }
}

fn normalize_module_name(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// Splits a compression suffix off a module path and names the program
/// that decompresses it.
fn strip_compression(path: &str) -> (&str, Option<&'static str>) {
    if let Some(stem) = path.strip_suffix(".xz") {
        (stem, Some("xz"))
    } else if let Some(stem) = path.strip_suffix(".zst") {
        (stem, Some("zstd"))
    } else if let Some(stem) = path.strip_suffix(".gz") {
        (stem, Some("gzip"))
    } else {
        (path, None)
    }
}

fn remove_dir_if_exists(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("failed to remove {}", path.display())),
    }
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to).with_context(|| format!("failed to rename {} to {}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_suffixes() {
        assert_eq!(
            strip_compression("kernel/drivers/net/veth.ko.xz"),
            ("kernel/drivers/net/veth.ko", Some("xz"))
        );
        assert_eq!(strip_compression("a.ko.zst"), ("a.ko", Some("zstd")));
        assert_eq!(strip_compression("a.ko"), ("a.ko", None));
    }

    #[test]
    fn series_lookup() {
        assert_eq!(series("6.1").unwrap().suite, "bookworm");
        assert!(series("4.19").is_err());
    }
}
