//! The snapshot as data: what `vethtrace snapshot --json` prints.
//!
//! These types are the stable JSON shape. Fields are only ever added, so
//! scripts written against one version keep working with the next.

use serde::{Deserialize, Serialize};

use crate::netns::{Container, Skipped};

/// Every netns found and every veth end in them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Namespaces sorted by inode, the caller's own marked `current`.
    pub netns: Vec<NetnsEntry>,
    /// Every veth end, sorted by (netns inode, ifindex); each pair appears
    /// twice, once from each end.
    pub links: Vec<LinkEntry>,
    /// `/proc` entries that could not be read.
    pub skipped: Skipped,
}

/// One netns and what holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsEntry {
    /// The nsfs inode, as in `/proc/PID/ns/net` → `net:[INODE]`.
    pub inode: u64,
    /// The netns cookie (SO_NETNS_COOKIE, Linux 5.14+); unique during a boot,
    /// unlike the inode. `null` on older kernels.
    pub cookie: Option<u64>,
    /// Whether this is the netns vethtrace ran in.
    pub current: bool,
    /// nsfs bind mounts of this netns, such as `/run/netns/NAME`, each path
    /// once, those in the caller's mount namespace first.
    pub paths: Vec<String>,
    /// Every bind mount with the mount namespace it is in; a path outside
    /// the caller's mount namespace can be opened only through a process
    /// in that namespace (`/proc/PID/root/PATH`).
    pub mounts: Vec<MountEntry>,
    /// Ids of the processes that hold it in any way, sorted, without duplicates.
    pub pids: Vec<u32>,
    /// How each process holds it.
    pub processes: Vec<ProcessEntry>,
    /// Containers named by the holders' cgroups.
    pub containers: Vec<Container>,
    /// This netns's nsid table: which netns each local nsid names, where known.
    pub nsids: Vec<NsidEntry>,
    /// The error that stopped reading this netns's links, if any.
    pub error: Option<String>,
}

/// An nsfs bind mount of a netns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    pub path: String,
    /// Inode of the mount namespace the mount is in.
    pub mount_ns: u64,
    /// Whether that is the caller's mount namespace.
    pub own_mount_ns: bool,
}

/// A process holding a netns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    pub pid: u32,
    pub comm: String,
    /// "process", "thread", "fd" or "socket".
    pub via: String,
    /// The thread id when `via` is "thread".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tid: Option<u32>,
    /// The file descriptor when `via` is "fd" or "socket".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fd: Option<u32>,
}

/// One entry of a netns's nsid table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsidEntry {
    pub nsid: i32,
    /// Inode of the netns this nsid names, or `null` when no pairing needed
    /// it (vethtrace does not query every pair of namespaces).
    pub netns: Option<u64>,
}

/// One veth end and its peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// Inode of the netns this end is in.
    pub netns: u64,
    pub netns_cookie: Option<u64>,
    pub ifindex: u32,
    pub name: String,
    /// Alternative names, as `ip link property add ... altname` sets them.
    pub altnames: Vec<String>,
    /// Always "veth" today.
    pub kind: String,
    /// Operational state as `ip link` prints it.
    pub operstate: String,
    pub mac: Option<String>,
    /// The bridge or bond this end is enslaved to.
    pub master: Option<MasterEntry>,
    /// The raw IFLA_LINK_NETNSID, local to this end's netns; `null` when the
    /// peer is in the same netns.
    pub link_netnsid: Option<i32>,
    pub peer: PeerEntry,
}

/// The device a link is enslaved to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterEntry {
    pub ifindex: u32,
    pub name: Option<String>,
}

/// The other end of a veth.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Inode of the peer's netns, or `null` when it could not be found.
    pub netns: Option<u64>,
    pub netns_cookie: Option<u64>,
    /// The peer's ifindex inside its own netns.
    pub ifindex: Option<u32>,
    pub name: Option<String>,
    /// Whether both ends were read and point at each other.
    pub verified: bool,
    /// The reason `verified` is false.
    pub reason: Option<String>,
}

impl Snapshot {
    /// Finds a netns by inode.
    pub fn netns(&self, inode: u64) -> Option<&NetnsEntry> {
        self.netns.iter().find(|entry| entry.inode == inode)
    }

    /// Returns the netns vethtrace ran in.
    pub fn current(&self) -> Option<&NetnsEntry> {
        self.netns.iter().find(|entry| entry.current)
    }
}

impl NetnsEntry {
    /// Returns a short human name: "current" for the caller's netns without a bind
    /// mount, else the first bind-mount name, a container, a process living
    /// in it, or the inode.
    pub fn label(&self) -> String {
        if let Some(path) = self.paths.first() {
            return path.rsplit('/').next().unwrap_or(path).to_string();
        }
        if self.current {
            return "current".into();
        }
        if let Some(container) = self.containers.first() {
            return container_label(container);
        }
        if let Some(process) = self.processes.iter().find(|process| process.via == "process") {
            return format!("pid {} ({})", process.pid, process.comm);
        }
        if let Some(process) = self.processes.first() {
            return format!("{} of pid {} ({})", process.via, process.pid, process.comm);
        }
        format!("net:[{}]", self.inode)
    }
}

/// Formats a container as `RUNTIME ID`, with a 64-hex id cut to 12 digits as
/// `docker ps` prints it.
pub fn container_label(container: &Container) -> String {
    let id = &container.id;
    let is_long_hex = id.len() == 64 && id.bytes().all(|byte| byte.is_ascii_hexdigit());
    let id = if is_long_hex { &id[..12] } else { id.as_str() };
    format!("{} {id}", container.runtime)
}
