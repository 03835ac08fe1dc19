//! The event ABI shared by vethtrace's eBPF programs and its user space.
//!
//! Every record in the ring buffer is one [`Event`]: a fixed [`Header`]
//! followed by up to two device references. One size for every kind keeps the
//! kernel side free of variable-length writes and lets user space record and
//! replay raw events byte for byte. All integers are in the host's byte order.
#![no_std]

/// Length of `task_struct.comm`, including the trailing NUL.
pub const COMM_LEN: usize = 16;
/// Length of `net_device.name` (IFNAMSIZ), including the trailing NUL.
pub const IFNAME_LEN: usize = 16;

/// What happened to a device. The values are part of the recorded format:
/// never renumber them, only add new ones.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A device entered a netns: registration, or the second half of a move
    /// (`list_netdevice`). `dev` is the device in its new netns.
    Listed = 1,
    /// A device left a netns: unregistration, or the first half of a move
    /// (`unlist_netdevice`). `dev` is the device in the netns it leaves.
    Unlisted = 2,
    /// A veth pair was configured (`rtnl_configure_link` on a veth). `dev` is
    /// the end being configured and `other` its peer.
    VethPair = 3,
    /// A netns move starts (`__dev_change_net_namespace` entry). `dev` is the
    /// device before the move; `other.netns_*` names the target netns and
    /// `value` the requested ifindex (0 lets the kernel choose).
    MoveStart = 4,
    /// A netns move ended (`__dev_change_net_namespace` return). `dev` is the
    /// device after the move and `value` the return code (0 or -errno).
    MoveEnd = 5,
    /// A device was renamed (`dev_change_name` or `netif_change_name` return).
    /// `dev.name` is the new name, `other.name` the old one, `value` the
    /// return code.
    Renamed = 6,
}

impl EventKind {
    /// Converts the raw `Header::kind` value, or returns `None` for a value
    /// this version does not know.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Listed),
            2 => Some(Self::Unlisted),
            3 => Some(Self::VethPair),
            4 => Some(Self::MoveStart),
            5 => Some(Self::MoveEnd),
            6 => Some(Self::Renamed),
            _ => None,
        }
    }
}

/// The fixed start of every event: what happened, when, and who did it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// CPU that emitted the event.
    pub cpu: u32,
    /// Time since boot in nanoseconds (`bpf_ktime_get_boot_ns`, Linux 5.8+).
    pub boot_ns: u64,
    /// Thread group id (the process id user space sees) of the actor.
    pub tgid: u32,
    /// Thread id of the actor.
    pub tid: u32,
    /// Real uid of the actor, as seen from the initial user namespace.
    pub uid: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// cgroup v2 id of the actor (`bpf_get_current_cgroup_id`); 0 where the
    /// kernel has no cgroup v2 hierarchy.
    pub cgroup_id: u64,
    /// Command name of the actor, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// One network device as the kernel saw it when the event fired.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRef {
    /// Netns cookie (`net.net_cookie`); never reused during a boot. 0 where
    /// the kernel has none, and on older kernels that assign it lazily for a
    /// netns whose cookie nothing has asked for yet. On Debian's 5.10 that
    /// is every netns but the initial one.
    pub netns_cookie: u64,
    /// Netns inode number (`net.ns.inum`), as `/proc/PID/ns/net` shows it.
    pub netns_inode: u32,
    /// Interface index inside that netns; 0 where unknown.
    pub ifindex: i32,
    /// Interface name, NUL-padded.
    pub name: [u8; IFNAME_LEN],
}

impl DeviceRef {
    /// A reference with every field zero, meaning "not present".
    pub const EMPTY: Self = Self {
        netns_cookie: 0,
        netns_inode: 0,
        ifindex: 0,
        name: [0; IFNAME_LEN],
    };
}

/// One record of the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened, when, and who did it.
    pub header: Header,
    /// The device the event is about.
    pub dev: DeviceRef,
    /// A second device or netns, depending on [`Header::kind`].
    pub other: DeviceRef,
    /// A kind-specific number: a return code or a requested ifindex.
    pub value: i64,
    /// Whether `dev` is a veth (its `rtnl_link_ops.kind` is "veth"): 1 or 0.
    pub is_veth: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

/// Size of one [`Event`] in bytes; part of the recorded format.
pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();

// SAFETY: every type below is `repr(C)`, has only integer and byte-array
// fields, and has explicit padding fields, so any bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Event {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Offsets {}

/// Kernel struct layout, read from the running kernel's BTF by user space and
/// written into the programs' globals before they load, because aya-ebpf
/// emits no CO-RE relocations. Offsets are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `net_device.ifindex`.
    pub dev_ifindex: u32,
    /// `net_device.name`.
    pub dev_name: u32,
    /// `net_device.nd_net` (a `possible_net_t`, which holds one `struct net *`).
    pub dev_nd_net: u32,
    /// `net_device.rtnl_link_ops`.
    pub dev_rtnl_link_ops: u32,
    /// `rtnl_link_ops.kind` (a `const char *`).
    pub link_ops_kind: u32,
    /// `net.net_cookie` (a `u64`, or on older kernels such as 5.10 an
    /// `atomic64_t` that is 0 until first asked for); `u32::MAX` where the
    /// kernel has none.
    pub net_cookie: u32,
    /// `net.ns` plus `ns_common.inum`.
    pub net_inum: u32,
    /// `veth_priv.peer`.
    pub veth_peer: u32,
    /// Start of the driver's private area (`netdev_priv()`): the offset of
    /// the `net_device.priv` flexible array where it exists (6.12 and
    /// later), else `sizeof(struct net_device)` rounded up to NETDEV_ALIGN
    /// (32).
    pub dev_priv: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_layout_is_fixed() {
        assert_eq!(core::mem::size_of::<Header>(), 56);
        assert_eq!(core::mem::size_of::<DeviceRef>(), 32);
        assert_eq!(EVENT_SIZE, 136);
        assert_eq!(core::mem::align_of::<Event>(), 8);
    }

    #[test]
    fn event_kind_round_trips() {
        for kind in [
            EventKind::Listed,
            EventKind::Unlisted,
            EventKind::VethPair,
            EventKind::MoveStart,
            EventKind::MoveEnd,
            EventKind::Renamed,
        ] {
            assert_eq!(EventKind::from_raw(kind as u32), Some(kind));
        }
        assert_eq!(EventKind::from_raw(0), None);
        assert_eq!(EventKind::from_raw(7), None);
    }
}
