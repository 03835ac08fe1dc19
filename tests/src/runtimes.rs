//! Helpers for the acceptance tests in which real container runtimes (the
//! CNI bridge plugin, Docker, LXC, systemd-nspawn) create the veths.
//!
//! Unlike [`crate::sandbox`], these tests run in the host's own namespaces:
//! the runtimes keep state in fixed host paths (`/run/docker`,
//! `/run/containerd`, cgroup folders), so a private sandbox would not test
//! them as users run them. To stay out of everyone else's way, each helper
//!
//! - names every interface, netns, network and container with a prefix and
//!   the test process's id ([`unique`]), and checks that the name is free
//!   before using it;
//! - keeps the runtime's own state in a temporary folder ([`TempDir`]);
//! - records which shared host paths existed before it started
//!   ([`CreatedPaths`]) and removes only those it created;
//! - undoes everything in `Drop`, so a failed assert still cleans up;
//! - takes [`HostLock`] while a runtime that writes shared host paths runs,
//!   so two test processes never race on them.
//!
//! The runtimes get no uplink: bridges have no physical port, subnets are
//! private, and nothing is sent anywhere.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Snapshot, is_root, vethtrace_bin};

/// Finds a program by name, looking in the distribution's folders before
/// `PATH`, so the client packaged with a daemon wins over a newer one in
/// `/usr/local/bin` (this matters for `docker`). An absolute path is
/// returned as it is if it exists.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|folder| folder.join(name))
        .find(|candidate| candidate.is_file())
}

/// Returns a command for the program `name` as [`find_program`] finds it,
/// so the tests run the same binaries whose presence they checked.
pub fn tool(name: &str) -> Command {
    Command::new(find_program(name).unwrap_or_else(|| PathBuf::from(name)))
}

/// Prints why a test skips and returns true unless it runs as root and
/// every one of `programs` (names or absolute paths) is installed.
pub fn skip_unless_installed(test: &str, programs: &[&str]) -> bool {
    if !is_root() {
        eprintln!("skip {test}: needs root to start container runtimes");
        return true;
    }
    let missing: Vec<&str> = programs.iter().copied().filter(|program| find_program(program).is_none()).collect();
    if missing.is_empty() {
        return false;
    }
    eprintln!("skip {test}: not installed: {}", missing.join(", "));
    true
}

/// Finds a statically linked busybox, which a container rootfs needs to
/// run without a libc. Prints why `test` skips and returns `None` if there
/// is none: Debian's `busybox` package is dynamic, `busybox-static` is not.
pub fn static_busybox(test: &str) -> Option<PathBuf> {
    let Some(path) = find_program("busybox") else {
        eprintln!("skip {test}: not installed: busybox (busybox-static)");
        return None;
    };
    if !is_static_elf(&path) {
        eprintln!("skip {test}: {} is dynamically linked; install busybox-static", path.display());
        return None;
    }
    Some(path)
}

/// Returns whether `path` is a 64-bit little-endian ELF file without a
/// program interpreter (`PT_INTERP`), that is, statically linked.
fn is_static_elf(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |offset: usize| u16::from_le_bytes([bytes[offset], bytes[offset + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (entry_size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|index| {
        let start = phoff + index * entry_size;
        bytes
            .get(start..start + 4)
            .is_some_and(|kind| u32::from_le_bytes(kind.try_into().unwrap()) != PT_INTERP)
    })
}

/// Returns `PREFIX` followed by this process's id and a per-process counter,
/// in hex, so that names from concurrent test runs never collide. The
/// result fits an interface name (15 bytes) for prefixes of up to 7 bytes.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}{n:x}", std::process::id())
}

/// Runs `command` with no standard input and returns its standard output.
/// Panics with the command line, status and both outputs when it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("failed to start {command:?}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed with {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `command` for cleanup: ignores its output and returns whether it
/// succeeded.
fn run_quietly(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Calls `ready` every 50 ms until it returns true. Panics after `timeout`
/// with `what` in the message.
pub fn wait_until(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (a name such as `TERM`) to the process `pid` with the
/// shell's `kill` builtin, which every system has.
fn signal(pid: u32, signal: &str) -> bool {
    run_quietly(Command::new("/bin/sh").args(["-c", r#"kill -s "$0" "$1""#, signal, &pid.to_string()]))
}

/// Waits up to `timeout` for `child` to exit after SIGTERM, then kills it.
fn terminate(child: &mut Child, timeout: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    signal(child.id(), "TERM");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Returns the pids of the processes whose command line contains `needle`.
/// Cleanup passes a test's unique temporary folder to find the helper
/// processes that a runtime started and left behind.
fn pids_with_argument(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
        })
        .collect()
}

/// Returns the netns inode of a netns file (`/run/netns/NAME`, a bind
/// mount, or `/proc/PID/ns/net`), as `stat -L -c %i` prints it.
pub fn netns_inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("stat {}: {error}", path.display()))
        .ino()
}

/// A temporary folder named `PREFIX-PID-N`, removed on drop after
/// unmounting whatever is still mounted below it (a runtime that died can
/// leave overlay or nsfs mounts there).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        assert!(!path.exists(), "{} already exists", path.display());
        std::fs::create_dir_all(&path).unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
        Self { path }
    }

    /// Writes a folder with a static busybox as `bin/busybox`, `bin/sh` and
    /// `bin/sleep`, plus the empty folders a container runtime mounts onto,
    /// and returns its path.
    pub fn busybox_rootfs(&self, busybox: &Path) -> PathBuf {
        let rootfs = self.path.join("rootfs");
        // systemd-nspawn rejects a rootfs without /usr.
        for folder in ["bin", "dev", "proc", "sys", "etc", "usr", "tmp"] {
            std::fs::create_dir_all(rootfs.join(folder)).expect("create the rootfs folders");
        }
        std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox into the rootfs");
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("link a busybox applet");
        }
        rootfs
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let prefix = format!("{}/", self.path.display());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|mount_point| mount_point.starts_with(&prefix))
            .collect();
        // Deepest first, so nested mounts come off before their parents.
        mounts.sort_by_key(|mount_point| std::cmp::Reverse(mount_point.len()));
        for mount_point in mounts {
            run_quietly(tool("umount").args(["--lazy", mount_point]));
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// An exclusive lock, across processes, over the shared host paths that
/// Docker, LXC and systemd-nspawn write. It is a `flock(2)` on a file in
/// the temporary folder (left in place, empty), released on drop.
pub struct HostLock(#[allow(dead_code)] File);

impl HostLock {
    pub fn acquire() -> Self {
        let path = std::env::temp_dir().join("vethtrace-tests-runtimes.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
        file.lock().unwrap_or_else(|error| panic!("lock {}: {error}", path.display()));
        Self(file)
    }
}

/// Shared host paths that a runtime may create, each remembered only if it
/// did not exist when [`CreatedPaths::watch`] was called. [`clean`] removes
/// those.
///
/// [`clean`]: CreatedPaths::clean
pub struct CreatedPaths {
    paths: Vec<PathBuf>,
}

impl CreatedPaths {
    pub fn watch(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        Self {
            paths: paths.into_iter().filter(|path| !path.exists()).collect(),
        }
    }

    /// Removes every watched path that now exists: cgroup folders with
    /// rmdir(2) from the deepest up (cgroupfs allows nothing else, and a
    /// cgroup still in use stays), anything else recursively.
    pub fn clean(&self) {
        for path in &self.paths {
            if path.starts_with("/sys/fs/cgroup") {
                remove_cgroup(path);
            } else if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Removes the cgroup folder `path` and every cgroup below it, deepest
/// first. Folders that still hold processes are left in place.
pub fn remove_cgroup(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

/// Returns the mount points of every cgroup hierarchy (v1 and v2) in the
/// caller's mount namespace, such as `/sys/fs/cgroup/memory` and
/// `/sys/fs/cgroup/unified` on a hybrid host or `/sys/fs/cgroup` on a v2
/// host.
pub fn cgroup_roots() -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            let fstype = rest.split(' ').next()?;
            let mount_point = fields.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// The value of `/proc/sys/net/ipv4/ip_forward` when recorded. Dropping it
/// restores that value if it changed.
pub struct IpForward {
    pub before: String,
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl IpForward {
    pub fn record() -> Self {
        Self { before: Self::current() }
    }

    pub fn current() -> String {
        std::fs::read_to_string(IP_FORWARD).expect("read ip_forward").trim().to_string()
    }
}

impl Drop for IpForward {
    fn drop(&mut self) {
        if Self::current() != self.before {
            let _ = std::fs::write(IP_FORWARD, &self.before);
        }
    }
}

/// One interface as `ip -j link show` reports it: the ground truth that the
/// tests compare vethtrace's output with.
#[derive(Debug)]
pub struct IpLink {
    pub ifindex: u64,
    pub name: String,
    /// The `N` of `NAME@ifN`: the peer's ifindex, for a veth.
    pub link_index: Option<u64>,
    pub master: Option<String>,
}

/// Runs `ip -j link show ARGS` in the netns of `netns` (a netns file, via
/// nsenter), or in the caller's netns for `None`. Returns no links when ip
/// fails, as it does for a device that does not exist.
pub fn ip_links(netns: Option<&Path>, args: &[&str]) -> Vec<IpLink> {
    let mut command = match netns {
        Some(path) => {
            let mut command = tool("nsenter");
            command.arg(format!("--net={}", path.display())).arg(find_program("ip").unwrap_or_else(|| "ip".into()));
            command
        }
        None => tool("ip"),
    };
    let output = command
        .args(["-j", "link", "show"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("failed to start ip");
    if !output.status.success() {
        return Vec::new();
    }
    let links: Vec<Value> = serde_json::from_slice(&output.stdout).expect("ip -j prints a JSON array");
    links
        .iter()
        .map(|link| IpLink {
            ifindex: link["ifindex"].as_u64().expect("ifindex"),
            name: link["ifname"].as_str().expect("ifname").to_string(),
            link_index: link["link_index"].as_u64(),
            master: link["master"].as_str().map(str::to_string),
        })
        .collect()
}

/// Returns the interface `name` in `netns`, or `None` if it does not exist.
pub fn ip_link(netns: Option<&Path>, name: &str) -> Option<IpLink> {
    ip_links(netns, &["dev", name]).pop()
}

/// Returns whether the host netns has an interface called `name`.
fn host_has_link(name: &str) -> bool {
    ip_link(None, name).is_some()
}

/// Panics unless no interface in the host netns is called `name`, so a
/// test never adopts (and later deletes) someone else's interface.
fn assert_free_link_name(name: &str) {
    assert!(!host_has_link(name), "an interface called {name} already exists");
}

/// `vethtrace snapshot --json` run in the host's namespaces.
pub struct HostSnapshot {
    pub value: Value,
}

impl HostSnapshot {
    pub fn take() -> Self {
        let stdout = run(Command::new(vethtrace_bin()).args(["snapshot", "--json"]));
        let value = serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("snapshot printed invalid JSON ({error})"));
        Self { value }
    }

    /// Returns the snapshot with netns labels, for the accessors that the
    /// [`crate::sandbox`] tests use. `labels` pairs each name with a netns
    /// inode, and "host" is the netns that the snapshot ran in.
    pub fn labelled(&self, labels: &[(&str, u64)]) -> Snapshot<'_> {
        Snapshot {
            value: &self.value,
            labels: labels.iter().map(|(name, inode)| (name.to_string(), *inode)).collect(),
        }
    }

    /// Returns whether any netns entry lists `path` among its bind mounts.
    pub fn has_netns_path(&self, path: &Path) -> bool {
        let path = path.to_string_lossy();
        self.value["netns"]
            .as_array()
            .expect("netns array")
            .iter()
            .any(|netns| netns["paths"].as_array().is_some_and(|paths| paths.iter().any(|known| *known == *path)))
    }
}

/// A network namespace under `/run/netns` wired by the CNI reference
/// `bridge` plugin, called the way a Kubernetes runtime calls it. The
/// plugin creates the bridge and a veth pair, moves one end into the netns
/// as `eth0` and enslaves the other to the bridge. `Drop` runs DEL and
/// removes the bridge, the netns and the IPAM folder.
pub struct CniNetwork {
    pub netns: String,
    pub netns_path: PathBuf,
    pub bridge: String,
    /// The host end of the veth pair, from the plugin's ADD result.
    pub host_veth: String,
    plugin: PathBuf,
    config: PathBuf,
    netns_created: bool,
    add_ran: bool,
    added: bool,
    _dir: TempDir,
}

impl CniNetwork {
    /// Creates the netns and runs ADD. `plugin` is the bridge plugin, and
    /// its folder is the `CNI_PATH` where it finds `host-local`.
    pub fn add(plugin: &Path) -> Self {
        let netns = unique("vtcni");
        let bridge = unique("vtcnibr");
        let netns_path = Path::new("/run/netns").join(&netns);
        assert!(!netns_path.exists(), "{} already exists", netns_path.display());
        assert_free_link_name(&bridge);

        let dir = TempDir::new("vtcni");
        let config = dir.path.join("conf.json");
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": netns,
            "type": "bridge",
            "bridge": bridge,
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "subnet": "10.213.7.0/24",
                "dataDir": dir.path.join("ipam"),
            },
        });
        std::fs::write(&config, conf.to_string()).expect("write the CNI config");

        let mut network = Self {
            netns,
            netns_path,
            bridge,
            host_veth: String::new(),
            plugin: plugin.to_path_buf(),
            config,
            netns_created: false,
            add_ran: false,
            added: false,
            _dir: dir,
        };
        run(tool("ip").args(["netns", "add", &network.netns]));
        network.netns_created = true;

        // A failed ADD can leave half of its work behind, so `added` is set
        // before ADD runs and Drop runs DEL after a failure too.
        network.add_ran = true;
        network.added = true;
        let result: Value = serde_json::from_str(&network.call("ADD").expect("CNI ADD")).expect("ADD prints a JSON result");
        let interfaces = result["interfaces"].as_array().expect("interfaces in the ADD result");
        network.host_veth = interfaces
            .iter()
            .filter(|interface| interface.get("sandbox").is_none() && interface["name"] != network.bridge.as_str())
            .find_map(|interface| interface["name"].as_str())
            .unwrap_or_else(|| panic!("no host veth in the ADD result: {result:#}"))
            .to_string();
        network
    }

    /// Runs DEL, which removes both veth ends and leaves the bridge.
    pub fn del(&mut self) {
        self.call("DEL").expect("CNI DEL");
        self.added = false;
    }

    /// Runs the plugin with `CNI_COMMAND=command` and the config on stdin.
    /// Returns its stdout, or its stdout and stderr as the error.
    fn call(&self, command: &str) -> Result<String, String> {
        let plugin_folder = self.plugin.parent().expect("the plugin is in a folder");
        let output = Command::new(&self.plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.netns)
            .env("CNI_NETNS", &self.netns_path)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", plugin_folder)
            .stdin(File::open(&self.config).expect("open the CNI config"))
            .output()
            .expect("failed to start the CNI plugin");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{command} failed with {}: {stdout}{}", output.status, String::from_utf8_lossy(&output.stderr)))
        }
    }
}

impl Drop for CniNetwork {
    fn drop(&mut self) {
        if self.added {
            let _ = self.call("DEL");
        }
        if self.add_ran && host_has_link(&self.bridge) {
            run_quietly(tool("ip").args(["link", "del", &self.bridge]));
        }
        if self.netns_created {
            run_quietly(tool("ip").args(["netns", "del", &self.netns]));
        }
    }
}

/// A private Docker daemon whose state lives in a temporary folder: data
/// root, exec root (where container netns files are bind-mounted, under
/// `netns/`), API socket and pidfile. It touches neither iptables nor
/// ip_forward and creates no default bridge. `Drop` removes its containers
/// and networks, stops it by its pid, and removes the shared host paths it
/// created: `/etc/docker/key.json`, `/run/docker`, `/run/containerd`,
/// `/run/runc` and the `docker` cgroups.
pub struct DockerDaemon {
    docker: PathBuf,
    socket: String,
    daemon: Child,
    containers: Vec<String>,
    networks: Vec<(String, String)>,
    created: CreatedPaths,
    dir: TempDir,
    _lock: HostLock,
}

impl DockerDaemon {
    pub fn start(dockerd: &Path, docker: &Path) -> Self {
        let lock = HostLock::acquire();
        let shared = ["/etc/docker/key.json", "/etc/docker", "/run/docker", "/run/containerd", "/run/runc"]
            .into_iter()
            .map(PathBuf::from);
        let cgroups = cgroup_roots().into_iter().map(|root| root.join("docker"));
        let created = CreatedPaths::watch(shared.chain(cgroups));

        let dir = TempDir::new("vtdk");
        let socket = format!("unix://{}", dir.path.join("docker.sock").display());
        let log = File::create(dir.path.join("dockerd.log")).expect("create the dockerd log");
        let daemon = Command::new(dockerd)
            .arg("--data-root")
            .arg(dir.path.join("data"))
            .arg("--exec-root")
            .arg(dir.path.join("exec"))
            .args(["-H", &socket])
            .arg("--pidfile")
            .arg(dir.path.join("docker.pid"))
            .args(["--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"])
            .args(["--bridge=none", "--userland-proxy=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .expect("failed to start dockerd");
        let mut daemon = Self {
            docker: docker.to_path_buf(),
            socket,
            daemon,
            containers: Vec::new(),
            networks: Vec::new(),
            created,
            dir,
            _lock: lock,
        };

        let started = Instant::now();
        while !run_quietly(daemon.client().arg("version")) {
            let exited = daemon.daemon.try_wait().expect("poll dockerd");
            assert!(exited.is_none(), "dockerd exited with {exited:?}:\n{}", daemon.log());
            let waited = started.elapsed();
            assert!(waited < Duration::from_secs(30), "timed out after {waited:?} waiting for dockerd:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    /// Returns the exec root, under which Docker bind-mounts each
    /// container's netns as `netns/ID`.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.path.join("exec")
    }

    /// Returns the temporary folder that contains all of the daemon's state.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("dockerd.log")).unwrap_or_default()
    }

    /// Returns a `docker` client command for this daemon, with its own
    /// (empty) client config folder.
    fn client(&self) -> Command {
        let mut command = Command::new(&self.docker);
        command.env("DOCKER_CONFIG", self.dir.path.join("client")).args(["-H", &self.socket]);
        command
    }

    /// Runs `docker ARGS` against this daemon and returns its stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        run(self.client().args(args))
    }

    /// Imports a busybox rootfs as image `name`: `tar -C ROOTFS -cf
    /// rootfs.tar . && docker import rootfs.tar NAME`.
    pub fn import_busybox(&self, busybox: &Path, name: &str) {
        let rootfs = self.dir.busybox_rootfs(busybox);
        let tarball = self.dir.path.join("rootfs.tar");
        run(tool("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg("."));
        run(self.client().arg("import").arg(&tarball).arg(name));
    }

    /// Creates an internal bridge network whose Linux bridge is `bridge`.
    pub fn create_network(&mut self, name: &str, bridge: &str, subnet: &str) {
        assert_free_link_name(bridge);
        self.networks.push((name.to_string(), bridge.to_string()));
        let bridge_option = format!("com.docker.network.bridge.name={bridge}");
        self.docker(&["network", "create", "--internal", "--driver", "bridge", "--subnet", subnet, "-o", &bridge_option, name]);
    }

    /// Runs `docker run -d ARGS` and returns the full container id.
    pub fn run_detached(&mut self, args: &[&str]) -> String {
        let id = run(self.client().args(["run", "-d"]).args(args)).trim().to_string();
        self.containers.push(id.clone());
        id
    }
}

impl Drop for DockerDaemon {
    fn drop(&mut self) {
        for id in &self.containers {
            run_quietly(self.client().args(["rm", "-f", id]));
        }
        for (name, _) in &self.networks {
            run_quietly(self.client().args(["network", "rm", name]));
        }
        terminate(&mut self.daemon, Duration::from_secs(20));
        // The command lines of containerd and its shims contain the exec
        // root. They outlive a dockerd that was killed.
        for pid in pids_with_argument(&self.dir.path.to_string_lossy()) {
            signal(pid, "KILL");
        }
        for (_, bridge) in &self.networks {
            if host_has_link(bridge) {
                run_quietly(tool("ip").args(["link", "del", bridge]));
            }
        }
        for root in cgroup_roots() {
            for id in &self.containers {
                remove_cgroup(&root.join("docker").join(id));
            }
        }
        self.created.clean();
    }
}

/// An LXC container with a private lxcpath in a temporary folder, a busybox
/// rootfs that runs `sleep`, and one veth whose host end has a name of our
/// choice. `Drop` kills it and removes its cgroups, the `lxc.pivot` cgroup
/// and `/run/lxc` if it created them, and its lock folder.
pub struct LxcContainer {
    pub name: String,
    pub host_veth: String,
    /// The container's init process (`sleep`), as `lxc-info -p` prints it.
    pub pid: u32,
    lxcpath: PathBuf,
    created: CreatedPaths,
    started: bool,
    dir: TempDir,
    _lock: HostLock,
}

impl LxcContainer {
    pub fn start(busybox: &Path) -> Self {
        let lock = HostLock::acquire();
        let name = unique("vtlxc");
        let host_veth = unique("vtlxh");
        assert_free_link_name(&host_veth);
        let pivots = cgroup_roots().into_iter().map(|root| root.join("lxc.pivot"));
        let created = CreatedPaths::watch(pivots.chain([PathBuf::from("/run/lxc")]));

        let dir = TempDir::new("vtlxc");
        let rootfs = dir.busybox_rootfs(busybox);
        let lxcpath = dir.path.join("lxc");
        std::fs::create_dir_all(lxcpath.join(&name)).expect("create the container folder");
        let config = format!(
            "lxc.uts.name = {name}\n\
             lxc.rootfs.path = dir:{rootfs}\n\
             lxc.init.cmd = /bin/sleep 120\n\
             lxc.apparmor.profile = unconfined\n\
             lxc.mount.auto = proc:mixed sys:mixed\n\
             lxc.net.0.type = veth\n\
             lxc.net.0.veth.pair = {host_veth}\n\
             lxc.net.0.name = eth0\n\
             lxc.net.0.flags = up\n",
            rootfs = rootfs.display()
        );
        std::fs::write(lxcpath.join(&name).join("config"), config).expect("write the LXC config");

        let mut container = Self {
            name,
            host_veth,
            pid: 0,
            lxcpath,
            created,
            started: false,
            dir,
            _lock: lock,
        };
        container.started = true;
        let log = container.dir.path.join("lxc.log");
        let status = container.lxc("lxc-start").arg("-o").arg(&log).args(["-l", "INFO"]).status();
        assert!(
            status.as_ref().is_ok_and(|status| status.success()),
            "lxc-start failed ({status:?}):\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let pid = run(container.lxc("lxc-info").args(["-p", "-H"]));
        container.pid = pid.trim().parse().unwrap_or_else(|_| panic!("lxc-info -p printed {pid:?}"));
        container
    }

    /// Returns the command `PROGRAM -P LXCPATH -n NAME`.
    fn lxc(&self, program: &str) -> Command {
        let mut command = tool(program);
        command.arg("-P").arg(&self.lxcpath).args(["-n", &self.name]);
        command
    }

    /// Kills the container with `lxc-stop -k`.
    pub fn stop(&mut self) {
        run(self.lxc("lxc-stop").arg("-k"));
        self.started = false;
    }
}

impl Drop for LxcContainer {
    fn drop(&mut self) {
        if self.started {
            run_quietly(self.lxc("lxc-stop").arg("-k"));
        }
        if host_has_link(&self.host_veth) {
            run_quietly(tool("ip").args(["link", "del", &self.host_veth]));
        }
        for root in cgroup_roots() {
            for prefix in ["lxc.payload.", "lxc.monitor."] {
                remove_cgroup(&root.join(format!("{prefix}{}", self.name)));
            }
        }
        // LXC keeps lock files in /run/lxc/lock/LXCPATH.
        let lock_root = Path::new("/run/lxc/lock");
        let mut lock_folder = lock_root.join(self.lxcpath.strip_prefix("/").unwrap_or(&self.lxcpath));
        let _ = std::fs::remove_dir_all(&lock_folder);
        while lock_folder.pop() && lock_folder.starts_with(lock_root) && lock_folder != lock_root {
            if std::fs::remove_dir(&lock_folder).is_err() {
                break;
            }
        }
        self.created.clean();
    }
}

/// A systemd-nspawn container on a host whose PID 1 is not systemd. With
/// `--register=no --keep-unit`, nspawn puts its payload in a `payload`
/// cgroup below its own cgroup. To keep that off the host's root cgroup,
/// nspawn starts in a cgroup of its own, created here in the
/// `name=systemd` and v2 hierarchies. The payload is `sleep`; `--network-veth` gives `ve-NAME`
/// on the host and `host0` inside. `Drop` stops nspawn by its pid and
/// removes the cgroups and `/run/systemd/nspawn` if it created it.
pub struct NspawnContainer {
    pub name: String,
    pub host_veth: String,
    /// The payload process (`sleep`) in the container.
    pub pid: u32,
    nspawn: Option<Child>,
    cgroups: Vec<PathBuf>,
    created: CreatedPaths,
    _dir: TempDir,
    _lock: HostLock,
}

impl NspawnContainer {
    pub fn start(nspawn: &Path, busybox: &Path) -> Self {
        let lock = HostLock::acquire();
        let name = unique("vtns");
        let host_veth = format!("ve-{name}");
        assert_free_link_name(&host_veth);
        let created = CreatedPaths::watch([PathBuf::from("/run/systemd/nspawn")]);

        let dir = TempDir::new("vtns");
        let rootfs = dir.busybox_rootfs(busybox);
        let log = dir.path.join("nspawn.log");
        let mut container = Self {
            name,
            host_veth,
            pid: 0,
            nspawn: None,
            cgroups: Vec::new(),
            created,
            _dir: dir,
            _lock: lock,
        };
        let roots = cgroup_roots()
            .into_iter()
            .filter(|root| root.ends_with("systemd") || root.join("cgroup.controllers").exists());
        for root in roots {
            let cgroup = root.join(&container.name);
            std::fs::create_dir(&cgroup).unwrap_or_else(|error| panic!("create cgroup {}: {error}", cgroup.display()));
            container.cgroups.push(cgroup);
        }
        assert!(!container.cgroups.is_empty(), "no name=systemd or cgroup v2 hierarchy is mounted");

        let procs: Vec<String> = container.cgroups.iter().map(|cgroup| cgroup.join("cgroup.procs").display().to_string()).collect();
        // The shell moves itself into the new cgroups, then becomes nspawn.
        let script = r#"for procs in $VT_CGROUP_PROCS; do echo $$ > "$procs"; done; exec "$@""#;
        let spawned = Command::new("/bin/sh")
            .args(["-c", script, "sh"])
            .arg(nspawn)
            .args(["-q", "--keep-unit", "--register=no", "-M", &container.name, "-D"])
            .arg(&rootfs)
            .args(["--network-veth", "/bin/sleep", "120"])
            .env("VT_CGROUP_PROCS", procs.join(" "))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the nspawn log"))
            .spawn();
        let nspawn = container.nspawn.insert(spawned.expect("failed to start systemd-nspawn"));

        let payload_procs: Vec<PathBuf> = container.cgroups.iter().map(|cgroup| cgroup.join("payload/cgroup.procs")).collect();
        let started = Instant::now();
        loop {
            let pid = payload_procs
                .iter()
                .filter_map(|procs| std::fs::read_to_string(procs).ok())
                .find_map(|procs| procs.lines().next().and_then(|pid| pid.parse().ok()));
            if let Some(pid) = pid.filter(|pid| comm_of(*pid).as_deref() == Some("sleep")) {
                container.pid = pid;
                return container;
            }
            let log = || std::fs::read_to_string(&log).unwrap_or_default();
            let exited = nspawn.try_wait().expect("poll systemd-nspawn");
            assert!(exited.is_none(), "systemd-nspawn exited with {exited:?}:\n{}", log());
            let waited = started.elapsed();
            assert!(waited < Duration::from_secs(30), "timed out after {waited:?} waiting for the payload:\n{}", log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops nspawn with SIGTERM, which kills the payload, and waits for it.
    pub fn stop(&mut self) {
        if let Some(nspawn) = &mut self.nspawn {
            terminate(nspawn, Duration::from_secs(20));
        }
    }
}

/// Returns the command name of process `pid`.
fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|comm| comm.trim().to_string())
}

impl Drop for NspawnContainer {
    fn drop(&mut self) {
        self.stop();
        if host_has_link(&self.host_veth) {
            run_quietly(tool("ip").args(["link", "del", &self.host_veth]));
        }
        for cgroup in &self.cgroups {
            remove_cgroup(cgroup);
        }
        let propagate = Path::new("/run/systemd/nspawn/propagate").join(&self.name);
        let _ = std::fs::remove_dir_all(propagate);
        self.created.clean();
    }
}
