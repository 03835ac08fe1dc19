//! What `vethtrace watch` reports: one [`WatchEvent`] per change, printed as
//! a line of JSON or aligned text.
//!
//! The JSON field names are a stable interface for scripts and for recorded
//! timelines: fields are only ever added.

use serde::{Deserialize, Serialize};

/// One line of `vethtrace watch --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `present`, `pair-created`, `moved`, `renamed`, `deleted`, `lost` or
    /// `notice`.
    pub event: String,
    /// When it happened, RFC 3339 in UTC: the kernel's timestamp in eBPF
    /// mode, the time the message was read in netlink mode.
    pub time: String,
    /// Inode of the netns the interface is in (after a move: the new one).
    pub netns: Option<u64>,
    pub netns_cookie: Option<u64>,
    pub ifindex: Option<u32>,
    pub name: Option<String>,
    /// The other end, where known.
    pub peer: Option<EndRef>,
    /// For `moved`: where the interface was before.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<EndRef>,
    /// For `renamed`: the name before.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub old_name: Option<String>,
    /// Who made the change; `null` where the mode cannot tell (netlink) or
    /// for the initial state.
    pub actor: Option<Actor>,
    /// For `lost`: how many kernel events were dropped, where known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub count: Option<u64>,
    /// For `notice` and `lost`: a sentence for humans.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    /// For `notice`: `ebpf` or `netlink`, the mode in use.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mode: Option<String>,
}

/// An interface by netns and ifindex, with its name where known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRef {
    pub netns: Option<u64>,
    pub ifindex: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
}

/// The process that made a change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Process id (thread group id).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub comm: String,
    /// Real uid, as seen from the initial user namespace.
    pub uid: u32,
    /// cgroup v2 id (the inode of the cgroup's folder in cgroupfs).
    pub cgroup: u64,
}

impl WatchEvent {
    /// An event of kind `event` at `time` with every other field empty.
    pub fn new(event: &str, time: String) -> Self {
        Self {
            event: event.into(),
            time,
            ..Self::default()
        }
    }
}
