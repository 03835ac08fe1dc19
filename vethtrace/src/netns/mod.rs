//! Discovery of every network namespace reachable on the host.
//!
//! A netns lives as long as something references it: a process or thread, an
//! open nsfs file descriptor, an nsfs bind mount in some mount namespace, or a
//! socket created inside it. `ip netns list` only shows bind mounts under
//! `/run/netns`, so this module walks all four kinds of holder and returns one
//! opened nsfs file per netns, which later stages use with setns(2).

mod containers;
mod mounts;
mod procfs;
mod sockets;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use mounts::{MountNamespaces, MountSite, NetnsMount};
use procfs::{FdTarget, ProcFs, io_error, netns_id, netns_id_of};
use sockets::SocketProbe;

pub use containers::{Container, container_of_cgroup};

/// Identity of a netns as the kernel's nsfs shows it: `stat(2)` on
/// `/proc/PID/ns/net` returns this device and inode. The inode alone is what
/// `lsns` and `ip netns identify` print; it can be reused after the netns is
/// freed, so the netns cookie (read later) is the identity that never repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetnsId {
    /// Device number of the nsfs filesystem (`st_dev`).
    pub dev: u64,
    /// Inode number (`st_ino`), the number in `net:[INODE]`.
    pub inode: u64,
}

/// How a process references a netns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldKind {
    /// The process's main thread lives in it (`/proc/PID/ns/net`).
    Process,
    /// Another thread of the process lives in it (`/proc/PID/task/TID/ns/net`).
    Thread,
    /// The process has an nsfs file of it open (`/proc/PID/fd/N`).
    OpenFile,
    /// The process has a socket open that was created in it (SIOCGSKNS).
    Socket,
}

/// A process that keeps a netns alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessHolder {
    pub pid: u32,
    /// Command name from `/proc/PID/comm`.
    pub comm: String,
    pub kind: HoldKind,
    /// The thread id for [`HoldKind::Thread`], the fd number for
    /// [`HoldKind::OpenFile`] and [`HoldKind::Socket`], `None` otherwise.
    pub detail: Option<u32>,
}

/// An nsfs bind mount that keeps a netns alive, such as `/run/netns/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountHolder {
    /// The mount point as seen inside its mount namespace.
    pub path: String,
    /// Inode of the mount namespace that has this mount.
    pub mount_ns: u64,
    /// Whether that mount namespace is the caller's own, so `path` can be
    /// opened as it is.
    pub in_own_mount_ns: bool,
}

/// One netns and everything found holding it.
#[derive(Debug)]
pub struct Netns {
    pub id: NetnsId,
    /// An open nsfs file of this netns. Keeping it open keeps the netns alive
    /// until the snapshot is done; setns(2) takes it.
    pub file: OwnedFd,
    /// Processes and threads, sorted by (pid, kind, detail) with one entry
    /// for each. A socket holder is listed only when the socket's netns is
    /// not the netns of the process that has it open, and each socket is
    /// listed once even when several processes share it.
    pub processes: Vec<ProcessHolder>,
    /// Bind mounts, sorted by path.
    pub mounts: Vec<MountHolder>,
    /// Containers named by the cgroup paths of the [`HoldKind::Process`]
    /// holders, sorted and without duplicates. Holders of other kinds only
    /// reach into the netns, so their containers are not counted.
    pub containers: Vec<Container>,
}

/// Counts of `/proc` entries that could not be read. Discovery skips them
/// because processes come and go, and some entries are off limits even to
/// root in a sandbox; the counts tell the user how complete the view is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    /// Processes whose `ns/net` could not be read (vanished or EACCES).
    pub processes: u64,
    /// Threads whose `ns/net` could not be read.
    pub threads: u64,
    /// File descriptors that could not be inspected. An unreadable
    /// `/proc/PID/fd` directory counts as one.
    pub fds: u64,
    /// Sockets that could not be asked for their netns (SIOCGSKNS through
    /// pidfd_getfd(2), which needs Linux 5.6 and ptrace rights).
    pub sockets: u64,
    /// Mount namespaces whose `mountinfo` could not be read.
    pub mount_namespaces: u64,
    /// Netns found but not openable, so not part of the result.
    pub netns: u64,
}

/// Everything discovery found.
#[derive(Debug)]
pub struct Discovery {
    /// Every netns found, sorted by [`NetnsId`].
    pub namespaces: Vec<Netns>,
    /// The caller's own netns; always present in `namespaces`.
    pub own: NetnsId,
    pub skipped: Skipped,
}

/// Options for [`discover`].
#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    /// The procfs to read, normally `/proc`.
    pub proc_root: std::path::PathBuf,
    /// Whether to look for namespaces held only by sockets (SIOCGSKNS on
    /// every socket fd; the slowest part on hosts with many sockets).
    pub sockets: bool,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        Self {
            proc_root: "/proc".into(),
            sockets: true,
        }
    }
}

/// Errors that stop discovery as a whole. Per-process failures are counted
/// in [`Skipped`] instead.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("failed to read {path}: {source}")]
    ReadProc {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the caller's own netns at /proc/thread-self/ns/net: {0}")]
    OwnNetns(#[source] std::io::Error),
}

/// Finds every netns on the host and opens one nsfs file for each.
///
/// Walks the processes under `options.proc_root` once, reading each
/// process's netns, the netns of threads that differ from it, its open nsfs
/// files and, if `options.sockets` is set, the netns of its sockets. It reads
/// `mountinfo` once per mount namespace for nsfs bind mounts. Entries that
/// vanish or cannot be read are counted in [`Discovery::skipped`].
///
/// The caller keeps one open file per netns found, so `RLIMIT_NOFILE` must
/// allow that many descriptors on top of its own.
///
/// # Errors
///
/// Fails only if the procfs root cannot be listed or the caller's own netns
/// cannot be opened.
pub fn discover(options: &DiscoverOptions) -> Result<Discovery, DiscoverError> {
    let root = &options.proc_root;
    let mut proc = ProcFs::open(root).map_err(|errno| read_proc_error(root, errno))?;
    let own_file = proc
        .open_own_netns()
        .map_err(|errno| DiscoverError::OwnNetns(io_error(errno)))?;
    let own = netns_id_of(own_file.as_fd()).map_err(|errno| DiscoverError::OwnNetns(io_error(errno)))?;
    let pids = proc.pids().map_err(|errno| read_proc_error(root, errno))?;

    let mut walk = Walk::new(proc, own, own_file.as_raw_fd(), options.sockets);
    let mut mount_namespaces =
        MountNamespaces::new(&mut walk.proc, |site, mount| add_mount(&mut walk.found, site, mount));
    for pid in pids {
        if walk.visit_process(pid) {
            mount_namespaces.visit_process(&mut walk.proc, pid, |site, mount| {
                add_mount(&mut walk.found, site, mount);
            });
        }
    }
    walk.skipped.mount_namespaces = mount_namespaces.unreadable();
    Ok(walk.finish(own_file))
}

fn read_proc_error(root: &std::path::Path, errno: Errno) -> DiscoverError {
    DiscoverError::ReadProc {
        path: root.display().to_string(),
        source: io_error(errno),
    }
}

/// Everything found so far about one netns.
#[derive(Default)]
struct Found {
    processes: Vec<ProcessHolder>,
    mounts: Vec<FoundMount>,
    containers: Vec<Container>,
}

struct FoundMount {
    holder: MountHolder,
    /// The mount point as bytes, which may not be UTF-8.
    mount_point: Vec<u8>,
    /// A process in the mount namespace of the mount.
    pid: u32,
}

/// State of one discovery run over procfs.
struct Walk {
    proc: ProcFs,
    own: NetnsId,
    own_pid: u32,
    /// The caller's own netns file, which the walk must not report as an
    /// open file of the calling process.
    own_file_fd: RawFd,
    found: HashMap<NetnsId, Found>,
    sockets: Option<SocketProbe>,
    skipped: Skipped,
}

impl Walk {
    fn new(proc: ProcFs, own: NetnsId, own_file_fd: RawFd, sockets: bool) -> Self {
        Self {
            proc,
            own,
            own_pid: std::process::id(),
            own_file_fd,
            found: HashMap::new(),
            sockets: sockets.then(SocketProbe::new),
            skipped: Skipped::default(),
        }
    }

    /// Records every netns that process `pid` refers to. Returns false if
    /// the process is gone or unreadable, so its mount namespace is not
    /// worth a look.
    fn visit_process(&mut self, pid: u32) -> bool {
        let net = match self.proc.stat_ns(pid, "net") {
            Ok(stat) => Some(netns_id(&stat)),
            Err(errno) => {
                log::debug!("stat /proc/{pid}/ns/net failed: {errno}");
                self.skipped.processes += 1;
                // ENOENT also comes from a process whose main thread has
                // exited while other threads run on, so look at the threads.
                if errno != Errno::ENOENT {
                    return false;
                }
                None
            }
        };
        let comm = match self.proc.comm(pid) {
            Ok(comm) => comm,
            Err(errno) => {
                log::debug!("read /proc/{pid}/comm failed: {errno}");
                if net.is_some() {
                    self.skipped.processes += 1;
                }
                return false;
            }
        };
        if let Some(net) = net {
            self.add_holder(net, pid, &comm, HoldKind::Process, None);
            self.add_container(net, pid);
        }
        self.visit_threads(pid, net, &comm);
        if let Some(net) = net {
            self.visit_fds(pid, net, &comm);
        }
        net.is_some()
    }

    fn add_holder(&mut self, id: NetnsId, pid: u32, comm: &str, kind: HoldKind, detail: Option<u32>) {
        push_holder(&mut self.found, id, pid, comm, kind, detail);
    }

    fn add_container(&mut self, net: NetnsId, pid: u32) {
        let container = match self.proc.read(pid, "cgroup") {
            Ok(text) => container_of_cgroup_file(text),
            Err(errno) => {
                log::debug!("read /proc/{pid}/cgroup failed: {errno}");
                None
            }
        };
        if let Some(container) = container {
            let containers = &mut self.found.entry(net).or_default().containers;
            if !containers.contains(&container) {
                containers.push(container);
            }
        }
    }

    /// Records the threads of `pid` whose netns is not the process's `net`.
    fn visit_threads(&mut self, pid: u32, net: Option<NetnsId>, comm: &str) {
        if net.is_some() && !self.proc.may_have_threads(pid) {
            return;
        }
        let tids = match self.proc.threads(pid) {
            Ok(tids) => tids,
            Err(errno) => {
                log::debug!("list /proc/{pid}/task failed: {errno}");
                self.skipped.threads += 1;
                return;
            }
        };
        for tid in tids.into_iter().filter(|tid| *tid != pid) {
            match self.proc.thread_netns(pid, tid) {
                Ok(id) if Some(id) != net => self.add_holder(id, pid, comm, HoldKind::Thread, Some(tid)),
                Ok(_) => {}
                Err(errno) => {
                    log::debug!("stat /proc/{pid}/task/{tid}/ns/net failed: {errno}");
                    self.skipped.threads += 1;
                }
            }
        }
    }

    /// Records the nsfs files that `pid` has open, and asks its sockets for
    /// their netns.
    fn visit_fds(&mut self, pid: u32, net: NetnsId, comm: &str) {
        let skip_fd = (pid == self.own_pid).then_some(self.own_file_fd);
        // `net:[INODE]` links carry no device; every nsfs file has the same
        // one, so the device of the caller's own netns file stands in.
        let nsfs_dev = self.own.dev;
        let found = &mut self.found;
        let mut sockets = self.sockets.as_mut();
        let result = self.proc.fds(pid, skip_fd, |fd, target| match target {
            FdTarget::Netns(inode) => {
                let id = NetnsId { dev: nsfs_dev, inode };
                push_holder(found, id, pid, comm, HoldKind::OpenFile, Some(fd as u32));
            }
            FdTarget::Socket(inode) => {
                if let Some(probe) = sockets.as_deref_mut() {
                    probe.queue(fd, inode);
                }
            }
            FdTarget::Other => {}
        });
        match result {
            Ok(unreadable) => self.skipped.fds += unreadable,
            Err(errno) => {
                log::debug!("list /proc/{pid}/fd failed: {errno}");
                self.skipped.fds += 1;
            }
        }
        self.ask_sockets(pid, net, comm);
    }

    fn ask_sockets(&mut self, pid: u32, net: NetnsId, comm: &str) {
        let Some(probe) = self.sockets.as_mut() else {
            return;
        };
        let found = &mut self.found;
        self.skipped.sockets += probe.ask_queued(pid, |fd, id| {
            if id != net {
                push_holder(found, id, pid, comm, HoldKind::Socket, Some(fd as u32));
            }
        });
    }

    /// Opens one file for every netns found and returns them sorted. The
    /// caller's own netns is always part of the result, with `own_file`.
    fn finish(mut self, own_file: OwnedFd) -> Discovery {
        let mut found = std::mem::take(&mut self.found);
        found.entry(self.own).or_default();
        let mut own_file = Some(own_file);
        let mut namespaces = Vec::with_capacity(found.len());
        for (id, found) in found {
            let file = if id == self.own {
                own_file.take()
            } else {
                open_netns(&mut self.proc, id, &found)
            };
            match file {
                Some(file) => namespaces.push(found.into_netns(id, file)),
                None => {
                    log::debug!("no holder of netns {} could be opened, skipping it", id.inode);
                    self.skipped.netns += 1;
                }
            }
        }
        namespaces.sort_unstable_by_key(|netns| netns.id);
        Discovery {
            namespaces,
            own: self.own,
            skipped: self.skipped,
        }
    }
}

fn push_holder(
    found: &mut HashMap<NetnsId, Found>,
    id: NetnsId,
    pid: u32,
    comm: &str,
    kind: HoldKind,
    detail: Option<u32>,
) {
    found.entry(id).or_default().processes.push(ProcessHolder {
        pid,
        comm: comm.to_owned(),
        kind,
        detail,
    });
}

fn add_mount(found: &mut HashMap<NetnsId, Found>, site: MountSite, mount: &NetnsMount) {
    let holder = MountHolder {
        path: String::from_utf8_lossy(&mount.mount_point).into_owned(),
        mount_ns: site.mount_ns,
        in_own_mount_ns: site.in_own_mount_ns,
    };
    found.entry(mount.id).or_default().mounts.push(FoundMount {
        holder,
        mount_point: mount.mount_point.clone(),
        pid: site.pid,
    });
}

/// Returns the first container that a line of a `/proc/PID/cgroup` file
/// names. cgroup v1 lists one line per hierarchy, and they usually agree.
fn container_of_cgroup_file(text: &[u8]) -> Option<Container> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines().find_map(container_of_cgroup)
}

/// Opens an nsfs file of netns `id` through the first holder that still
/// refers to it.
fn open_netns(proc: &mut ProcFs, id: NetnsId, found: &Found) -> Option<OwnedFd> {
    let from_processes = found.processes.iter().find_map(|holder| {
        let file = open_process_holder(proc, holder);
        check_file(file, id, || format!("{:?} holder pid {}", holder.kind, holder.pid))
    });
    from_processes.or_else(|| {
        found.mounts.iter().find_map(|mount| {
            let file = if mount.holder.in_own_mount_ns {
                procfs::open_absolute(&mount.mount_point)
            } else {
                proc.open_under_root(mount.pid, &mount.mount_point)
            };
            check_file(file, id, || format!("mount {} in pid {}", mount.holder.path, mount.pid))
        })
    })
}

fn open_process_holder(proc: &mut ProcFs, holder: &ProcessHolder) -> Result<OwnedFd, Errno> {
    let pid = holder.pid;
    let detail = holder.detail.unwrap_or_default();
    match holder.kind {
        HoldKind::Process => proc.open_relative(format_args!("{pid}/ns/net")),
        HoldKind::Thread => proc.open_relative(format_args!("{pid}/task/{detail}/ns/net")),
        HoldKind::OpenFile => proc.open_relative(format_args!("{pid}/fd/{detail}")),
        HoldKind::Socket => sockets::open_socket_netns(pid, detail as RawFd),
    }
}

/// Returns `file` if it opened and is netns `id`. A holder can vanish or
/// move to another netns between the walk and the open.
fn check_file(file: Result<OwnedFd, Errno>, id: NetnsId, holder: impl Fn() -> String) -> Option<OwnedFd> {
    let file = file
        .inspect_err(|errno| log::debug!("opening netns {} through {} failed: {errno}", id.inode, holder()))
        .ok()?;
    match netns_id_of(file.as_fd()) {
        Ok(got) if got == id => Some(file),
        Ok(got) => {
            log::debug!("{} now refers to netns {}, not {}", holder(), got.inode, id.inode);
            None
        }
        Err(errno) => {
            log::debug!("fstat of netns {} opened through {} failed: {errno}", id.inode, holder());
            None
        }
    }
}

impl Found {
    fn into_netns(self, id: NetnsId, file: OwnedFd) -> Netns {
        let mut processes = self.processes;
        processes.sort_by_key(|holder| (holder.pid, holder.kind, holder.detail));
        processes.dedup_by_key(|holder| (holder.pid, holder.kind, holder.detail));
        let mut mounts: Vec<MountHolder> = self.mounts.into_iter().map(|mount| mount.holder).collect();
        mounts.sort_by(|a, b| (&a.path, a.mount_ns).cmp(&(&b.path, b.mount_ns)));
        let mut containers = self.containers;
        containers.sort();
        containers.dedup();
        Netns {
            id,
            file,
            processes,
            mounts,
            containers,
        }
    }
}
