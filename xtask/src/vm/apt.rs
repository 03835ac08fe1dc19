//! Downloads Debian kernel packages with apt-get, through a private apt
//! configuration under `target/vm/apt/SUITE/`.
//!
//! Each test kernel comes from another Debian release than the host's, so
//! the harness needs those suites' package lists. Adding them to `/etc/apt`
//! would change what the host installs. Instead each suite gets its own
//! sources.list, state and cache directories and an `apt.conf` passed with
//! `apt-get -c`, which apt reads after the host's own configuration (so proxy
//! and mirror settings in `/etc/apt/apt.conf.d` still apply).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;

/// The keyring that signs bullseye, bookworm and trixie: the bookworm
/// `debian-archive-keyring` package (2023.3+deb12u2) carries all three
/// releases' keys.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The metapackage whose Depends names the current cloud kernel of a suite.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// A binary package name and version, as apt-get download takes them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// One suite's private apt configuration.
pub struct Apt {
    config: PathBuf,
}

impl Apt {
    /// Writes the configuration for `suite` of `mirror` under `dir`.
    pub fn new(dir: &Path, mirror: &str, suite: &str) -> anyhow::Result<Self> {
        if !Path::new(DEBIAN_KEYRING).exists() {
            bail!("{DEBIAN_KEYRING} is missing; install it with `apt-get install debian-archive-keyring`");
        }
        let dir = std::path::absolute(dir).with_context(|| format!("invalid path {}", dir.display()))?;
        let text = dir.to_str().context("the target directory path is not UTF-8")?;
        if text.contains(['"', '\n']) {
            bail!("apt.conf cannot quote the path {text}; move the workspace to a path without quotes or newlines");
        }
        for sub in [
            "sources.list.d",
            "preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).with_context(|| format!("failed to create {}", path.display()))?;
        }
        // An empty dpkg status keeps the host's installed packages out of
        // apt's decisions.
        write_if_changed(&dir.join("status"), "")?;
        write_if_changed(
            &dir.join("sources.list"),
            &format!("deb [signed-by={DEBIAN_KEYRING}] {mirror} {suite} main\n"),
        )?;
        let config = dir.join("apt.conf");
        write_if_changed(&config, &apt_conf(text))?;
        Ok(Self { config })
    }

    fn apt_get(&self) -> Command {
        let mut command = Command::new("apt-get");
        command.arg("-c").arg(&self.config).arg("-q");
        command
    }

    /// Downloads the suite's package lists.
    pub fn update(&self) -> anyhow::Result<()> {
        let mut command = self.apt_get();
        command.arg("update");
        cmd::run(&mut command).context(
            "apt-get could not download the package lists; check the network and the mirror configured in /etc/apt",
        )
    }

    /// Returns the versioned kernel package that the suite's
    /// `linux-image-cloud-amd64` depends on, such as
    /// `linux-image-6.1.0-50-cloud-amd64` version `6.1.176-1`.
    pub fn resolve_cloud_kernel(&self) -> anyhow::Result<Package> {
        let mut command = Command::new("apt-cache");
        command
            .arg("-c")
            .arg(&self.config)
            .args(["show", "--no-all-versions", KERNEL_METAPACKAGE]);
        let record = cmd::output(&mut command)?;
        let depends = record
            .lines()
            .find_map(|line| line.strip_prefix("Depends:"))
            .with_context(|| format!("`{}` printed no Depends field", cmd::display(&command)))?;
        parse_kernel_dependency(depends)
            .with_context(|| format!("{KERNEL_METAPACKAGE} depends on no linux-image package: {depends}"))
    }

    /// Downloads `package` into `dir` and returns the path of the .deb file.
    pub fn download(&self, package: &Package, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let mut command = self.apt_get();
        command
            .arg("download")
            .arg(format!("{}={}", package.name, package.version))
            .current_dir(dir);
        cmd::run(&mut command)?;
        // apt-get names the file NAME_VERSION_ARCH.deb, with the version's
        // colon (of an epoch) encoded as %3a.
        let prefix = format!("{}_{}_", package.name, package.version.replace(':', "%3a"));
        let entries = std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".deb") {
                return Ok(entry.path());
            }
        }
        bail!("apt-get download left no {prefix}*.deb in {}", dir.display())
    }
}

fn apt_conf(dir: &str) -> String {
    format!(
        r#"// Written by the VM harness (cargo xtask vm-test and vm-run); apt reads it
// after /etc/apt/apt.conf.d.
Dir::State "{dir}/state";
Dir::State::status "{dir}/status";
Dir::Cache "{dir}/cache";
Dir::Etc::sourcelist "{dir}/sources.list";
Dir::Etc::sourceparts "{dir}/sources.list.d";
Dir::Etc::preferences "{dir}/preferences";
Dir::Etc::preferencesparts "{dir}/preferences.d";
// The directories belong to the user who runs the harness, and the _apt
// user may not be able to write them. apt ignores this setting when not run as root.
APT::Sandbox::User "root";
// Only the Packages index is needed.
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled "false";
"#
    )
}

fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// Picks the `linux-image-*` package and its exact version out of a Depends
/// field such as `linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)`.
fn parse_kernel_dependency(depends: &str) -> Option<Package> {
    depends.split([',', '|']).map(str::trim).find_map(|dependency| {
        let (name, constraint) = dependency.split_once(' ')?;
        if !name.starts_with("linux-image-") {
            return None;
        }
        let version = constraint.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
        Some(Package {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    })
}

/// Finds the Debian mirror that the host's apt uses: the first `deb` source
/// whose URI ends in `/debian`, from `/etc/apt/sources.list` or
/// `/etc/apt/sources.list.d/*.list` (one-line format) or `*.sources`
/// (deb822 format).
pub fn host_debian_mirror() -> anyhow::Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut parts: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        parts.sort();
        files.extend(parts);
    }
    for file in files {
        let name = file.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        let parse: fn(&str) -> Option<String> = if name == "sources.list" || name.ends_with(".list") {
            mirror_in_one_line_format
        } else if name.ends_with(".sources") {
            mirror_in_deb822_format
        } else {
            continue;
        };
        let Some(text) = read_to_string_if_exists(&file)? else {
            continue;
        };
        if let Some(mirror) = parse(&text) {
            return Ok(mirror);
        }
    }
    bail!(
        "found no Debian mirror (a `deb` source whose URI ends in /debian) in /etc/apt/sources.list or \
         /etc/apt/sources.list.d; the VM harness downloads its kernels from that mirror"
    )
}

fn read_to_string_if_exists(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("failed to read {}", path.display())),
    }
}

fn is_debian_archive(uri: &str) -> bool {
    uri.trim_end_matches('/').ends_with("/debian")
}

fn mirror_in_one_line_format(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        // Skip an options block such as `[signed-by=... arch=amd64]`.
        if uri.starts_with('[') {
            uri = words.find(|word| word.ends_with(']')).and_then(|_| words.next())?;
        }
        is_debian_archive(uri).then(|| uri.trim_end_matches('/').to_owned())
    })
}

fn mirror_in_deb822_format(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
            })
        };
        if field("Enabled").is_some_and(|enabled| enabled.eq_ignore_ascii_case("no")) {
            continue;
        }
        if !field("Types").is_some_and(|types| types.split_whitespace().any(|kind| kind == "deb")) {
            continue;
        }
        if let Some(uri) = field("URIs").and_then(|uris| uris.split_whitespace().find(|uri| is_debian_archive(uri))) {
            return Some(uri.trim_end_matches('/').to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dependency_from_bookworm() {
        let package = parse_kernel_dependency(" linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)").unwrap();
        assert_eq!(package.name, "linux-image-6.1.0-50-cloud-amd64");
        assert_eq!(package.version, "6.1.176-1");
    }

    #[test]
    fn kernel_dependency_among_others() {
        let depends = "initramfs-tools, linux-image-6.12.117+deb13-cloud-amd64 (= 6.12.117-1)";
        let package = parse_kernel_dependency(depends).unwrap();
        assert_eq!(package.name, "linux-image-6.12.117+deb13-cloud-amd64");
        assert_eq!(package.version, "6.12.117-1");
    }

    #[test]
    fn kernel_dependency_missing() {
        assert_eq!(parse_kernel_dependency("initramfs-tools"), None);
        assert_eq!(parse_kernel_dependency("linux-image-6.1.0-50-cloud-amd64"), None);
    }

    #[test]
    fn mirror_from_deb822_skips_security() {
        let text = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                    Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(
            mirror_in_deb822_format(text).as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }

    #[test]
    fn mirror_from_deb822_skips_disabled() {
        let text = "Enabled: no\nTypes: deb\nURIs: http://deb.debian.org/debian\n";
        assert_eq!(mirror_in_deb822_format(text), None);
    }

    #[test]
    fn mirror_from_one_line_with_options() {
        let text = "# comment\ndeb-src http://x/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n";
        assert_eq!(
            mirror_in_one_line_format(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }
}
