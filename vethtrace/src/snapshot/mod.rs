//! The snapshot: every netns, every veth end, and each end's verified peer.
//!
//! Order matters for correctness: all link dumps come before any nsid
//! query, because dumping the links of a netns can assign new nsids (the
//! kernel assigns one when it reports a peer in a netns that has none yet).

pub mod model;
pub mod pairing;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::netlink::{self, Link, NetlinkError, RouteSocket};
use crate::netns::{self, DiscoverError, DiscoverOptions, Discovery, HoldKind, Netns};
use model::{LinkEntry, MasterEntry, MountEntry, NetnsEntry, NsidEntry, PeerEntry, ProcessEntry, Snapshot};
use pairing::{NsidOracle, Peer};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// Options for [`take`].
#[derive(Clone, Debug, Default)]
pub struct SnapshotOptions {
    pub discover: DiscoverOptions,
    /// Also resolve which nsid every netns has in the caller's netns (one
    /// RTM_GETNSID per netns), so the current netns's `nsids` table is
    /// complete. The netlink monitor needs it to place notifications.
    pub map_current_nsids: bool,
}

/// One netns during a snapshot: its discovery record, its socket, and what
/// was read through it.
struct Reading {
    netns: Netns,
    socket: Option<RouteSocket>,
    cookie: Option<u64>,
    links: Vec<Link>,
    nsids: Vec<i32>,
    error: Option<String>,
}

/// Takes a snapshot of every netns on the host.
pub fn take(options: &SnapshotOptions) -> Result<Snapshot, SnapshotError> {
    raise_open_file_limit();
    reserve_fd_table();
    let started = std::time::Instant::now();
    let discovery = netns::discover(&options.discover)?;
    log::info!(
        "found {} network namespaces in {:.1?} (skipped: {:?})",
        discovery.namespaces.len(),
        started.elapsed(),
        discovery.skipped
    );
    let Discovery {
        namespaces,
        own,
        skipped,
    } = discovery;

    let files: Vec<_> = namespaces
        .iter()
        .map(|netns| (netns.file.as_fd(), netns.id.inode))
        .collect();
    let sockets = netlink::open_sockets(&files)?;
    drop(files);

    let mut readings: Vec<Reading> = namespaces
        .into_iter()
        .zip(sockets)
        .map(|(netns, socket)| {
            let (socket, error) = match socket {
                Ok(socket) => (Some(socket), None),
                Err(error) => (None, Some(error.to_string())),
            };
            Reading {
                netns,
                socket,
                cookie: None,
                links: Vec::new(),
                nsids: Vec::new(),
                error,
            }
        })
        .collect();

    // Two passes, so that every link dump ends before the first nsid dump.
    for_each_reading(&mut readings, |reading| {
        let Some(socket) = reading.socket.as_mut() else { return };
        reading.cookie = socket.netns_cookie();
        match netlink::dump_links(socket) {
            Ok(links) => reading.links = links,
            Err(error) => reading.error = Some(error.to_string()),
        }
    });
    for_each_reading(&mut readings, |reading| {
        let Some(socket) = reading.socket.as_mut() else { return };
        match netlink::dump_nsids(socket) {
            Ok(nsids) => reading.nsids = nsids,
            Err(error) => log::debug!("netns {}: {error}", reading.netns.id.inode),
        }
    });

    log::info!("read links and nsid tables of every netns after {:.1?}", started.elapsed());
    for reading in &readings {
        log::debug!(
            "netns {}: cookie {:?}, {} links, nsids {:?}{}",
            reading.netns.id.inode,
            reading.cookie,
            reading.links.len(),
            reading.nsids,
            reading.error.as_deref().map(|error| format!(", error: {error}")).unwrap_or_default()
        );
    }
    let all_links: Vec<Vec<Link>> = readings.iter_mut().map(|reading| std::mem::take(&mut reading.links)).collect();
    let mut oracle = SocketOracle {
        readings: &mut readings,
        answers: HashMap::new(),
    };
    let peers = pairing::pair(&all_links, &mut oracle);
    if options.map_current_nsids
        && let Some(own_index) = oracle.readings.iter().position(|reading| reading.netns.id == own)
    {
        for target in 0..oracle.readings.len() {
            if target != own_index {
                oracle.nsid_of(own_index, target);
            }
        }
    }
    let answers = oracle.answers;
    let answers_count = answers.len();

    let mut snapshot = Snapshot {
        netns: Vec::with_capacity(readings.len()),
        links: Vec::new(),
        skipped,
    };
    // The nsids each netns learned from pairing, grouped once here because
    // a scan of every answer per netns would cost O(namespaces × answers).
    let mut learned_nsids: Vec<Vec<i32>> = vec![Vec::new(); readings.len()];
    for &(observer, nsid) in answers.keys() {
        learned_nsids[observer].push(nsid);
    }
    for (index, reading) in readings.iter().enumerate() {
        snapshot.netns.push(netns_entry(index, reading, own, &answers, &learned_nsids[index], &readings));
    }
    for (netns_index, links) in all_links.iter().enumerate() {
        for (link_index, link) in links.iter().enumerate() {
            let Some(peer) = peers.get(&(netns_index, link_index)) else { continue };
            let entry = link_entry(netns_index, link, links, peer, &all_links, &mut readings);
            snapshot.links.push(entry);
        }
    }
    snapshot.links.sort_by_key(|link| (link.netns, link.ifindex));
    let unverified = snapshot.links.iter().filter(|link| !link.peer.verified).count();
    log::info!(
        "paired {} veth ends ({unverified} unverified) with {} nsid queries in {:.1?}",
        snapshot.links.len(),
        answers_count,
        started.elapsed()
    );
    Ok(snapshot)
}

/// Maximum number of threads that read namespaces, counting the calling
/// thread.
/// NOTE: an estimate, like the discovery walker's limit. It could only be
/// tried on 2 cores.
const MAX_READERS: usize = 4;

/// Minimum number of namespaces per reader thread. Starting a thread costs
/// about as much as reading a few namespaces, so small hosts are read on the
/// calling thread alone.
const NAMESPACES_PER_READER: usize = 64;

/// Calls `visit` on every reading, spread over up to [`MAX_READERS`]
/// threads. Each thread takes the next reading from a shared counter,
/// because one netns (a host with a veth per container) can take as long
/// as hundreds of others.
fn for_each_reading(readings: &mut [Reading], visit: impl Fn(&mut Reading) + Sync) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = cores.min(MAX_READERS).min(readings.len() / NAMESPACES_PER_READER);
    if threads <= 1 {
        readings.iter_mut().for_each(visit);
        return;
    }
    let slots: Vec<Mutex<&mut Reading>> = readings.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        while let Some(slot) = slots.get(next.fetch_add(1, Ordering::Relaxed)) {
            visit(&mut slot.lock().unwrap_or_else(PoisonError::into_inner));
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let spawned = std::thread::Builder::new()
                .name("vethtrace-reader".into())
                .spawn_scoped(scope, work);
            if let Err(error) = spawned {
                // The other threads, the calling one included, do its share.
                log::debug!("starting a reader thread failed: {error}");
            }
        }
        work();
    });
}

/// Answers nsid queries with RTM_GETNSID on the observer's socket and
/// remembers every answer for the nsid tables in the output.
struct SocketOracle<'a> {
    readings: &'a mut [Reading],
    answers: HashMap<(usize, i32), usize>,
}

impl NsidOracle for SocketOracle<'_> {
    fn nsid_of(&mut self, observer: usize, target: usize) -> Option<i32> {
        let (observer_reading, target_reading) = if observer < target {
            let (left, right) = self.readings.split_at_mut(target);
            (&mut left[observer], &right[0])
        } else {
            let (left, right) = self.readings.split_at_mut(observer);
            (&mut right[0], &left[target])
        };
        let socket = observer_reading.socket.as_mut()?;
        match netlink::nsid_of(socket, target_reading.netns.file.as_fd()) {
            Ok(Some(nsid)) => {
                self.answers.insert((observer, nsid), target);
                Some(nsid)
            }
            Ok(None) => None,
            Err(error) => {
                log::debug!(
                    "nsid of netns {} in netns {}: {error}",
                    target_reading.netns.id.inode,
                    observer_reading.netns.id.inode
                );
                None
            }
        }
    }
}

fn netns_entry(
    index: usize,
    reading: &Reading,
    own: netns::NetnsId,
    answers: &HashMap<(usize, i32), usize>,
    learned_nsids: &[i32],
    readings: &[Reading],
) -> NetnsEntry {
    let netns = &reading.netns;
    let mut pids: Vec<u32> = netns.processes.iter().map(|process| process.pid).collect();
    pids.dedup();
    let processes = netns
        .processes
        .iter()
        .map(|process| {
            let (via, tid, fd) = match process.kind {
                HoldKind::Process => ("process", None, None),
                HoldKind::Thread => ("thread", process.detail, None),
                HoldKind::OpenFile => ("fd", None, process.detail),
                HoldKind::Socket => ("socket", None, process.detail),
            };
            ProcessEntry {
                pid: process.pid,
                comm: process.comm.clone(),
                via: via.into(),
                tid,
                fd,
            }
        })
        .collect();
    // The dump, plus nsids the kernel assigned after it and pairing learned.
    let mut all_nsids = reading.nsids.clone();
    all_nsids.extend_from_slice(learned_nsids);
    all_nsids.sort_unstable();
    all_nsids.dedup();
    let nsids = all_nsids
        .into_iter()
        .map(|nsid| NsidEntry {
            nsid,
            netns: answers
                .get(&(index, nsid))
                .map(|&target| readings[target].netns.id.inode),
        })
        .collect();
    NetnsEntry {
        inode: netns.id.inode,
        cookie: reading.cookie,
        current: netns.id == own,
        paths: unique_paths(netns),
        mounts: netns
            .mounts
            .iter()
            .map(|mount| MountEntry {
                path: mount.path.clone(),
                mount_ns: mount.mount_ns,
                own_mount_ns: mount.in_own_mount_ns,
            })
            .collect(),
        pids,
        processes,
        containers: netns.containers.clone(),
        nsids,
        error: reading.error.clone(),
    }
}

/// Each bind-mount path once, those in the caller's mount namespace first,
/// because the same `/run/netns/NAME` shows up in every mount namespace
/// that inherited it.
fn unique_paths(netns: &Netns) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for own in [true, false] {
        for mount in netns.mounts.iter().filter(|mount| mount.in_own_mount_ns == own) {
            if !paths.contains(&mount.path) {
                paths.push(mount.path.clone());
            }
        }
    }
    paths
}

fn link_entry(
    netns_index: usize,
    link: &Link,
    siblings: &[Link],
    peer: &Peer,
    all_links: &[Vec<Link>],
    readings: &mut [Reading],
) -> LinkEntry {
    let master = link.master.map(|ifindex| MasterEntry {
        ifindex,
        name: siblings
            .iter()
            .find(|other| other.ifindex == ifindex)
            .map(|other| other.name.clone()),
    });
    let peer = match peer {
        Peer::Verified { netns, link: index } => {
            let other = &all_links[*netns][*index];
            PeerEntry {
                netns: Some(readings[*netns].netns.id.inode),
                netns_cookie: readings[*netns].cookie,
                ifindex: Some(other.ifindex),
                name: Some(other.name.clone()),
                verified: true,
                reason: None,
            }
        }
        Peer::Unverified {
            nsid,
            ifindex,
            netns,
            reason,
        } => {
            // Ask the kernel for the peer's name through the nsid, which works
            // even when the peer's netns could not be opened.
            let name = match (nsid, ifindex, readings[netns_index].socket.as_mut()) {
                (Some(nsid), Some(ifindex), Some(socket)) if *nsid >= 0 => {
                    netlink::get_link_in_nsid(socket, *nsid, *ifindex)
                        .ok()
                        .flatten()
                        .map(|peer| peer.name)
                }
                _ => None,
            };
            PeerEntry {
                netns: netns.map(|index| readings[index].netns.id.inode),
                netns_cookie: netns.and_then(|index| readings[index].cookie),
                ifindex: *ifindex,
                name,
                verified: false,
                reason: Some(reason.describe().into()),
            }
        }
    };
    LinkEntry {
        netns: readings[netns_index].netns.id.inode,
        netns_cookie: readings[netns_index].cookie,
        ifindex: link.ifindex,
        name: link.name.clone(),
        altnames: link.altnames.clone(),
        kind: link.kind.clone().unwrap_or_default(),
        operstate: link.operstate.clone(),
        mac: link.mac.clone(),
        master,
        link_netnsid: link.link_netnsid,
        peer,
    }
}

/// The number of file descriptors [`reserve_fd_table`] makes room for. A
/// snapshot keeps two per netns (an nsfs file and a socket), so this covers
/// about 4000 namespaces.
const RESERVED_FDS: i32 = 8192;

/// Grows the fd table once, to [`RESERVED_FDS`] slots or the soft
/// RLIMIT_NOFILE if that is lower.
///
/// The kernel grows the table by doubling it, and in a process with more
/// than one thread each growth waits for an RCU grace period
/// (`expand_fdtable` in fs/file.c). With 1000 namespaces the growths to 256,
/// 512, 1024 and 2048 slots happen on the discovery and socket threads and
/// cost about 30 ms of a 0.14 s snapshot (`cargo xtask bench snapshot`).
/// Before those threads start, the growth waits for nothing.
fn reserve_fd_table() {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::sys::resource::{Resource, getrlimit};
    use std::os::fd::{FromRawFd, OwnedFd};

    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
    let highest = i32::try_from(soft.saturating_sub(1)).unwrap_or(i32::MAX).min(RESERVED_FDS - 1);
    // F_DUPFD returns the lowest free descriptor at or above `highest`, so
    // the table must grow to hold it.
    match fcntl(std::io::stderr().as_fd(), FcntlArg::F_DUPFD_CLOEXEC(highest)) {
        // SAFETY: fcntl returned a new descriptor that nothing else owns.
        Ok(fd) => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(error) => log::debug!("growing the fd table to {} slots failed: {error}", highest + 1),
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, because a snapshot keeps
/// one nsfs file and one netlink socket open per netns.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::warn!("failed to raise RLIMIT_NOFILE from {soft} to {hard}: {error}");
            }
        }
        Ok(_) => {}
        Err(error) => log::warn!("failed to read RLIMIT_NOFILE: {error}"),
    }
}
