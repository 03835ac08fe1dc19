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
mod walk;

#[cfg(test)]
mod tests;

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Mutex;

use nix::errno::Errno;

use mounts::MountNamespaces;
use procfs::{ProcFs, io_error, netns_id_of};
use sockets::SeenSockets;
use walk::{Collected, Context, Found};

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
    /// Sockets whose netns could not be read (SIOCGSKNS through
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
/// vanish or cannot be read are counted in [`Discovery::skipped`]. On hosts
/// with many processes the walk runs on up to 4 threads.
///
/// The caller keeps one open file per netns found, so `RLIMIT_NOFILE` must
/// allow that many descriptors on top of its own.
///
/// # Errors
///
/// Fails only if the procfs root cannot be listed or the caller's own netns
/// cannot be opened.
pub fn discover(options: &DiscoverOptions) -> Result<Discovery, DiscoverError> {
    let root = options.proc_root.as_path();
    let mut proc = ProcFs::open(root).map_err(|errno| read_proc_error(root, errno))?;
    let own_file = proc.open_own_netns().map_err(own_netns_error)?;
    let own = netns_id_of(own_file.as_fd()).map_err(own_netns_error)?;
    let pids = proc.pids().map_err(|errno| read_proc_error(root, errno))?;

    let mut collected = Collected::default();
    let mount_namespaces =
        MountNamespaces::new(&mut proc, |site, mount| collected.add_mount(site, mount));
    let seen_sockets = SeenSockets::default();
    let opened = Mutex::default();
    let context = Context {
        root,
        own,
        own_pid: std::process::id(),
        own_file_fd: own_file.as_raw_fd(),
        mount_namespaces: &mount_namespaces,
        seen_sockets: options.sockets.then_some(&seen_sockets),
        opened: &opened,
    };
    let mut proc = walk::walk(proc, &context, &pids, &mut collected);
    collected.skipped.mount_namespaces = mount_namespaces.unreadable();
    Ok(open_all(&mut proc, own, own_file, collected))
}

fn read_proc_error(root: &Path, errno: Errno) -> DiscoverError {
    DiscoverError::ReadProc {
        path: root.display().to_string(),
        source: io_error(errno),
    }
}

fn own_netns_error(errno: Errno) -> DiscoverError {
    DiscoverError::OwnNetns(io_error(errno))
}

/// Opens one file for every netns collected and returns them sorted. The
/// caller's own netns is always part of the result, with `own_file`.
fn open_all(proc: &mut ProcFs, own: NetnsId, own_file: OwnedFd, collected: Collected) -> Discovery {
    let Collected {
        mut found,
        mut skipped,
    } = collected;
    found.entry(own).or_default();
    let mut own_file = Some(own_file);
    let mut namespaces = Vec::with_capacity(found.len());
    for (id, mut found) in found {
        let file = if id == own {
            own_file.take()
        } else {
            found.file.take().or_else(|| open_netns(proc, id, &found))
        };
        match file {
            Some(file) => namespaces.push(into_netns(id, file, found)),
            None => {
                log::debug!(
                    "no holder of netns {} could be opened, skipping it",
                    id.inode
                );
                skipped.netns += 1;
            }
        }
    }
    namespaces.sort_unstable_by_key(|netns| netns.id);
    Discovery {
        namespaces,
        own,
        skipped,
    }
}

/// Opens an nsfs file of netns `id` through the first holder that still
/// refers to it.
fn open_netns(proc: &mut ProcFs, id: NetnsId, found: &Found) -> Option<OwnedFd> {
    let from_processes = found.processes.iter().find_map(|holder| {
        let file = open_process_holder(proc, holder);
        check_file(file, id, || {
            format!("{:?} holder pid {}", holder.kind, holder.pid)
        })
    });
    from_processes.or_else(|| {
        found.mounts.iter().find_map(|mount| {
            let file = if mount.holder.in_own_mount_ns {
                procfs::open_absolute(&mount.mount_point)
            } else {
                proc.open_under_root(mount.pid, &mount.mount_point)
            };
            check_file(file, id, || {
                format!("mount {} seen by pid {}", mount.holder.path, mount.pid)
            })
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

/// Returns `file` if it opened and is netns `id`. A holder can exit or move
/// to another netns between the walk and the open.
fn check_file(
    file: Result<OwnedFd, Errno>,
    id: NetnsId,
    holder: impl Fn() -> String,
) -> Option<OwnedFd> {
    let file = file
        .inspect_err(|errno| {
            log::debug!(
                "opening netns {} through {} failed: {errno}",
                id.inode,
                holder()
            )
        })
        .ok()?;
    match netns_id_of(file.as_fd()) {
        Ok(got) if got == id => Some(file),
        Ok(got) => {
            log::debug!(
                "{} now refers to netns {}, not {}",
                holder(),
                got.inode,
                id.inode
            );
            None
        }
        Err(errno) => {
            log::debug!(
                "fstat of netns {} opened through {} failed: {errno}",
                id.inode,
                holder()
            );
            None
        }
    }
}

/// Builds the public [`Netns`] with holders sorted and deduplicated.
fn into_netns(id: NetnsId, file: OwnedFd, found: Found) -> Netns {
    let mut processes = found.processes;
    processes.sort_by_key(|holder| (holder.pid, holder.kind, holder.detail));
    processes.dedup_by_key(|holder| (holder.pid, holder.kind, holder.detail));
    let mut mounts: Vec<MountHolder> = found.mounts.into_iter().map(|mount| mount.holder).collect();
    mounts.sort_by(|a, b| (&a.path, a.mount_ns).cmp(&(&b.path, b.mount_ns)));
    mounts.dedup();
    let mut containers = found.containers;
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
