//! Walks every process in procfs and collects which netns each one holds.
//!
//! The walk is the slow part of discovery: each process costs about 17
//! procfs calls (readlink, open, read, getdents64, stat), so a host with a
//! thousand processes needs tens of thousands. Walker threads share the pid
//! list and split it in small batches, because most of that time is spent in
//! the kernel and scales with cores.

use std::collections::{HashMap, HashSet};
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;

use super::mounts::{MountNamespaces, MountSite, NetnsMount};
use super::procfs::{FdTarget, NsKind, ProcFs};
use super::sockets::{SeenSockets, SocketProbe};
use super::{
    Container, HoldKind, MountHolder, NetnsId, ProcessHolder, Skipped, check_file,
    container_of_cgroup,
};

/// Maximum number of walker threads, counting the calling thread.
/// NOTE: an estimate. The walk was measured on 2 cores only, where 2
/// walkers take about 60% of the time of one.
const MAX_WALKERS: usize = 4;

/// Minimum number of pids per walker thread. Starting a thread costs tens
/// of microseconds, about as much as walking a few processes, so small
/// hosts are walked on the calling thread alone.
const PIDS_PER_WALKER: usize = 256;

/// Pids a walker takes from the shared list at a time.
const BATCH: usize = 16;

/// Read-only state of one discovery, shared by all walker threads.
pub(super) struct Context<'a> {
    pub(super) root: &'a Path,
    pub(super) own: NetnsId,
    pub(super) own_pid: u32,
    /// The caller's own netns file, which must not be reported as an open
    /// file of the calling process.
    pub(super) own_file_fd: RawFd,
    pub(super) mount_namespaces: &'a MountNamespaces,
    /// Set when sockets are to be asked for their netns.
    pub(super) seen_sockets: Option<&'a SeenSockets>,
    /// Namespaces that a walker has tried to open already, so that each is
    /// opened once and the walk keeps at most one file per netns open.
    pub(super) opened: &'a Mutex<HashSet<NetnsId>>,
}

/// Everything found so far about one netns.
#[derive(Default)]
pub(super) struct Found {
    /// A file of the netns, opened during the walk through the first
    /// process found in it.
    pub(super) file: Option<OwnedFd>,
    pub(super) processes: Vec<ProcessHolder>,
    pub(super) mounts: Vec<FoundMount>,
    pub(super) containers: Vec<Container>,
}

pub(super) struct FoundMount {
    pub(super) holder: MountHolder,
    /// The mount point as bytes, which may not be UTF-8.
    pub(super) mount_point: Vec<u8>,
    /// A process in the mount namespace of the mount.
    pub(super) pid: u32,
}

/// The results of one walker, or of all of them once merged.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) found: HashMap<NetnsId, Found>,
    pub(super) skipped: Skipped,
}

impl Collected {
    pub(super) fn add_mount(&mut self, site: MountSite, mount: NetnsMount) {
        let holder = MountHolder {
            path: String::from_utf8_lossy(&mount.mount_point).into_owned(),
            mount_ns: site.mount_ns,
            in_own_mount_ns: site.in_own_mount_ns,
        };
        self.found
            .entry(mount.id)
            .or_default()
            .mounts
            .push(FoundMount {
                holder,
                mount_point: mount.mount_point,
                pid: site.pid,
            });
    }

    fn add_holder(
        &mut self,
        id: NetnsId,
        pid: u32,
        comm: &str,
        kind: HoldKind,
        detail: Option<u32>,
    ) {
        self.found
            .entry(id)
            .or_default()
            .processes
            .push(ProcessHolder {
                pid,
                comm: comm.to_owned(),
                kind,
                detail,
            });
    }

    fn add_container(&mut self, id: NetnsId, container: Container) {
        let containers = &mut self.found.entry(id).or_default().containers;
        if !containers.contains(&container) {
            containers.push(container);
        }
    }

    fn merge(&mut self, other: Collected) {
        for (id, found) in other.found {
            let into = self.found.entry(id).or_default();
            if into.file.is_none() {
                into.file = found.file;
            }
            into.processes.extend(found.processes);
            into.mounts.extend(found.mounts);
            into.containers.extend(found.containers);
        }
        let skipped = other.skipped;
        self.skipped.processes += skipped.processes;
        self.skipped.threads += skipped.threads;
        self.skipped.fds += skipped.fds;
        self.skipped.sockets += skipped.sockets;
        self.skipped.mount_namespaces += skipped.mount_namespaces;
        self.skipped.netns += skipped.netns;
    }
}

/// Walks every process in `pids` and adds what they hold to `collected`.
/// Returns `proc` for the caller to open namespaces with.
///
/// The calling process is walked first, before any other walker thread
/// starts: the walkers open and close files in it, which would show up as
/// its holders.
pub(super) fn walk(
    proc: ProcFs,
    context: &Context<'_>,
    pids: &[u32],
    collected: &mut Collected,
) -> ProcFs {
    let mut walker = Walker::new(proc, context);
    if pids.contains(&context.own_pid) {
        walker.visit(context.own_pid);
    }
    let next = AtomicUsize::new(0);
    let walkers = walker_count(pids.len());
    let (proc, mine) = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..walkers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("netns-walk".to_owned())
                    .spawn_scoped(scope, || helper_walk(context, pids, &next))
                    .inspect_err(|error| log::debug!("starting a walker thread failed: {error}"))
                    .ok()
            })
            .collect();
        walker.run(pids, &next);
        for helper in helpers {
            match helper.join() {
                Ok(Some(found)) => collected.merge(found),
                Ok(None) => {}
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        walker.into_parts()
    });
    collected.merge(mine);
    proc
}

fn walker_count(pids: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.min(MAX_WALKERS).min(pids / PIDS_PER_WALKER).max(1)
}

/// Runs one extra walker thread with its own procfs handle. If that cannot
/// be opened, the other walkers take its share of the pids.
fn helper_walk(context: &Context<'_>, pids: &[u32], next: &AtomicUsize) -> Option<Collected> {
    let proc = ProcFs::open(context.root)
        .inspect_err(|errno| {
            log::debug!(
                "open {} for a walker thread failed: {errno}",
                context.root.display()
            )
        })
        .ok()?;
    let mut walker = Walker::new(proc, context);
    walker.run(pids, next);
    Some(walker.into_parts().1)
}

/// One walker thread's state.
struct Walker<'a> {
    proc: ProcFs,
    context: &'a Context<'a>,
    sockets: Option<SocketProbe<'a>>,
    collected: Collected,
}

impl<'a> Walker<'a> {
    fn new(proc: ProcFs, context: &'a Context<'a>) -> Self {
        Self {
            proc,
            context,
            sockets: context.seen_sockets.map(SocketProbe::new),
            collected: Collected::default(),
        }
    }

    /// Returns the [`NetnsId`] of the netns with nsfs inode `inode`.
    ///
    /// `net:[INODE]` links carry no device. All namespaces live in the one
    /// nsfs superblock, so the device of the caller's own netns file is
    /// used, and opening the netns later checks both numbers with fstat(2).
    fn netns(&self, inode: u64) -> NetnsId {
        NetnsId {
            dev: self.context.own.dev,
            inode,
        }
    }

    fn into_parts(self) -> (ProcFs, Collected) {
        (self.proc, self.collected)
    }

    /// Visits batches of `pids` taken through `next` until none are left,
    /// except the caller's own pid, which [`walk`] visits first.
    fn run(&mut self, pids: &[u32], next: &AtomicUsize) {
        loop {
            let start = next.fetch_add(BATCH, Ordering::Relaxed);
            let Some(batch) = pids.get(start..pids.len().min(start + BATCH)) else {
                return;
            };
            for &pid in batch.iter().filter(|pid| **pid != self.context.own_pid) {
                self.visit(pid);
            }
        }
    }

    fn visit(&mut self, pid: u32) {
        if self.visit_process(pid) {
            let collected = &mut self.collected;
            self.context
                .mount_namespaces
                .visit_process(&mut self.proc, pid, |site, mount| {
                    collected.add_mount(site, mount)
                });
        }
    }

    /// Records every netns that process `pid` refers to. Returns false if
    /// the process is gone or unreadable, so its mount namespace is not
    /// worth a look.
    fn visit_process(&mut self, pid: u32) -> bool {
        let net = match self.proc.ns_inode(pid, NsKind::Net) {
            Ok(inode) => Some(self.netns(inode)),
            Err(errno) => {
                log::debug!("readlink /proc/{pid}/ns/net failed: {errno}");
                self.collected.skipped.processes += 1;
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
                    self.collected.skipped.processes += 1;
                }
                return false;
            }
        };
        if let Some(net) = net {
            self.collected
                .add_holder(net, pid, &comm, HoldKind::Process, None);
            self.open_if_new(pid, net);
            self.visit_cgroup(pid, net);
        }
        self.visit_threads(pid, net, &comm);
        if let Some(net) = net {
            self.visit_fds(pid, net, &comm);
        }
        net.is_some()
    }

    /// Opens netns `id` through process `pid` unless a walker has tried to
    /// open it already. Opening here runs in parallel on the walker threads,
    /// where the final step after the walk runs on one.
    ///
    /// The calling process is left out: the walk of its own fd table would
    /// list the new file as one of its holders.
    fn open_if_new(&mut self, pid: u32, id: NetnsId) {
        if pid == self.context.own_pid || id == self.context.own {
            return;
        }
        let first = {
            let mut opened = self
                .context
                .opened
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            opened.insert(id)
        };
        if first {
            let file = self.proc.open_relative(format_args!("{pid}/ns/net"));
            let found = self.collected.found.entry(id).or_default();
            found.file = check_file(file, id, || format!("pid {pid}"));
        }
    }

    /// Records the container that the cgroup of `pid` names, if any.
    fn visit_cgroup(&mut self, pid: u32, net: NetnsId) {
        let container = match self.proc.read(pid, "cgroup") {
            Ok(text) => container_of_cgroup_file(text),
            Err(errno) => {
                log::debug!("read /proc/{pid}/cgroup failed: {errno}");
                None
            }
        };
        if let Some(container) = container {
            self.collected.add_container(net, container);
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
                self.collected.skipped.threads += 1;
                return;
            }
        };
        for tid in tids.into_iter().filter(|tid| *tid != pid) {
            match self
                .proc
                .thread_netns_inode(pid, tid)
                .map(|inode| self.netns(inode))
            {
                Ok(id) if Some(id) != net => {
                    self.collected
                        .add_holder(id, pid, comm, HoldKind::Thread, Some(tid));
                }
                Ok(_) => {}
                Err(errno) => {
                    log::debug!("readlink /proc/{pid}/task/{tid}/ns/net failed: {errno}");
                    self.collected.skipped.threads += 1;
                }
            }
        }
    }

    /// Records the nsfs files that `pid` has open and the netns of its
    /// sockets.
    fn visit_fds(&mut self, pid: u32, net: NetnsId, comm: &str) {
        let own_file = (pid == self.context.own_pid).then_some(self.context.own_file_fd);
        let nsfs_dev = self.context.own.dev;
        let collected = &mut self.collected;
        let mut sockets = self.sockets.as_mut();
        let result = self.proc.fds(pid, own_file, |fd, target| match target {
            FdTarget::Netns(inode) => {
                let id = NetnsId {
                    dev: nsfs_dev,
                    inode,
                };
                collected.add_holder(id, pid, comm, HoldKind::OpenFile, Some(fd as u32));
            }
            FdTarget::Socket(inode) => {
                if let Some(probe) = sockets.as_deref_mut() {
                    probe.queue(fd, inode);
                }
            }
            FdTarget::Other => {}
        });
        match result {
            Ok(unreadable) => self.collected.skipped.fds += unreadable,
            Err(errno) => {
                log::debug!("list /proc/{pid}/fd failed: {errno}");
                self.collected.skipped.fds += 1;
            }
        }
        self.ask_sockets(pid, net, comm);
    }

    /// Records the sockets queued for `pid` whose netns is not the
    /// process's `net`.
    fn ask_sockets(&mut self, pid: u32, net: NetnsId, comm: &str) {
        let Some(probe) = self.sockets.as_mut() else {
            return;
        };
        let collected = &mut self.collected;
        let failed = probe.ask_queued(pid, |fd, id| {
            if id != net {
                collected.add_holder(id, pid, comm, HoldKind::Socket, Some(fd as u32));
            }
        });
        self.collected.skipped.sockets += failed;
    }
}

/// Returns the first container that a line of a `/proc/PID/cgroup` file
/// names. cgroup v1 lists one line per hierarchy, and they usually agree.
pub(super) fn container_of_cgroup_file(text: &[u8]) -> Option<Container> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines().find_map(container_of_cgroup)
}
