//! Turns netlink link notifications into [`Change`]s and applies them.
//!
//! A notification names its netns by an nsid local to the caller's netns and
//! its peer by an nsid local to its own netns, so most of them cannot be
//! placed without a lookup. Renames and deletions of known ends can; a new
//! end or a move cannot, and for those one fresh snapshot per batch of
//! notifications gives the exact answer.

use std::collections::HashMap;

use super::event::WatchEvent;
use super::netlink_source::LinkNotice;
use super::state::{Change, Device, Key, LiveMap, Observation};
use super::time;
use crate::snapshot::model::Snapshot;

/// The caller's netns and its nsid table, refreshed from each snapshot.
pub struct NetlinkTranslator {
    own: u64,
    own_cookie: Option<u64>,
    /// nsid in the caller's netns → (inode, cookie).
    nsids: HashMap<i32, (u64, Option<u64>)>,
}

impl NetlinkTranslator {
    pub fn new(snapshot: &Snapshot) -> Self {
        let mut translator = Self {
            own: 0,
            own_cookie: None,
            nsids: HashMap::new(),
        };
        translator.refresh(snapshot);
        translator
    }

    /// Re-reads the caller's netns and nsid table from a snapshot.
    pub fn refresh(&mut self, snapshot: &Snapshot) {
        let Some(current) = snapshot.current() else { return };
        self.own = current.inode;
        self.own_cookie = current.cookie;
        self.nsids = current
            .nsids
            .iter()
            .filter_map(|entry| {
                let inode = entry.netns?;
                let cookie = snapshot.netns(inode).and_then(|netns| netns.cookie);
                Some((entry.nsid, (inode, cookie)))
            })
            .collect();
    }

    /// Applies a batch of notifications to `map` and returns the events.
    /// `take_snapshot` is called at most once, when the batch has a
    /// notification that needs it.
    pub fn process(
        &mut self,
        notices: &[LinkNotice],
        map: &mut LiveMap,
        take_snapshot: &mut dyn FnMut() -> Option<Snapshot>,
    ) -> Vec<WatchEvent> {
        let mut snapshot = None;
        if notices.iter().any(|notice| self.needs_snapshot(notice, map)) {
            snapshot = take_snapshot();
            if let Some(snapshot) = &snapshot {
                self.refresh(snapshot);
            }
        }

        let now = time::now();
        let mut events = Vec::new();
        for notice in notices {
            for change in self.changes(notice, map, snapshot.as_ref()) {
                let observation = Observation {
                    change,
                    time: now.clone(),
                    actor: None,
                };
                events.extend(map.apply(&observation));
            }
        }
        events
    }

    fn source(&self, notice: &LinkNotice) -> Option<(u64, Option<u64>)> {
        match notice.source_nsid {
            None => Some((self.own, self.own_cookie)),
            Some(nsid) => self.nsids.get(&nsid).copied(),
        }
    }

    fn needs_snapshot(&self, notice: &LinkNotice, map: &LiveMap) -> bool {
        let Some((netns, _)) = self.source(notice) else {
            return true;
        };
        let key = (netns, notice.link.ifindex);
        match map.name(key) {
            Some(_) if notice.deleted => notice.moved_to_nsid.is_some(),
            None if notice.deleted => false,
            Some(name) => name != notice.link.name,
            None => notice.link.is_veth(),
        }
    }

    fn changes(&self, notice: &LinkNotice, map: &LiveMap, snapshot: Option<&Snapshot>) -> Vec<Change> {
        let Some((netns, cookie)) = self.source(notice) else {
            log::debug!("notification from nsid {:?}, which no netns found has", notice.source_nsid);
            return Vec::new();
        };
        let link = &notice.link;
        let key = (netns, link.ifindex);
        let device = Device {
            netns,
            cookie,
            ifindex: link.ifindex,
            name: link.name.clone(),
            veth: link.is_veth(),
        };

        if notice.deleted {
            if !map.contains(key) {
                return Vec::new();
            }
            if notice.moved_to_nsid.is_some() {
                let Some(arrived) = snapshot.and_then(|snapshot| moved_to(snapshot, map, key)) else {
                    return vec![Change::Deleted { key }];
                };
                // Report the move under the name it had, as the kernel did;
                // a rename during the move follows as its own notice when the
                // target netns has an nsid here, or from the snapshot now.
                let to = Device {
                    name: link.name.clone(),
                    ..arrived.clone()
                };
                let mut changes = vec![Change::Moved { from: key, to }];
                let target_has_nsid = self.nsids.values().any(|(inode, _)| *inode == arrived.netns) || arrived.netns == self.own;
                if !target_has_nsid && arrived.name != link.name {
                    changes.push(Change::Renamed {
                        device: arrived,
                        old_name: link.name.clone(),
                    });
                }
                return changes;
            }
            // A veth's ends are always deleted together, and the far end's
            // notification may never arrive (its netns may have no nsid here).
            let mut changes = vec![Change::Deleted { key }];
            if let Some(peer) = map.peer(key) {
                changes.push(Change::Deleted { key: peer });
            }
            return changes;
        }

        if let Some(old_name) = map.name(key) {
            if old_name == link.name {
                return Vec::new();
            }
            // Every rename takes a snapshot (see needs_snapshot). When it
            // still shows the name the map has, this notice is older than a
            // snapshot the map was updated from, so it changes nothing.
            if snapshot.and_then(|snapshot| name_in(snapshot, key)).as_deref() == Some(old_name) {
                return Vec::new();
            }
            return vec![Change::Renamed {
                device,
                old_name: old_name.to_string(),
            }];
        }
        if !link.is_veth() {
            return Vec::new();
        }
        let Some(peer) = snapshot.and_then(|snapshot| pair_in(snapshot, key)) else {
            return vec![Change::Listed { device, peer: None }];
        };
        // A veth's peer never changes, so a known peer that pointed at
        // another key means this end moved here from there, unseen because
        // the netns it left has no nsid here.
        if let Some(previous) = map.peer(peer.key())
            && previous != key
            && map.contains(previous)
        {
            return vec![Change::Moved { from: previous, to: device }];
        }
        vec![Change::Paired { a: device, b: peer }]
    }
}

/// Returns the name of `key` in `snapshot`, where it is a veth end there.
fn name_in(snapshot: &Snapshot, key: Key) -> Option<String> {
    snapshot
        .links
        .iter()
        .find(|link| link.netns == key.0 && link.ifindex == key.1)
        .map(|link| link.name.clone())
}

/// Returns the verified peer of `key` in `snapshot`, as a device.
fn pair_in(snapshot: &Snapshot, key: Key) -> Option<Device> {
    let link = snapshot
        .links
        .iter()
        .find(|link| link.netns == key.0 && link.ifindex == key.1)?;
    if !link.peer.verified {
        return None;
    }
    let netns = link.peer.netns?;
    Some(Device {
        netns,
        cookie: link.peer.netns_cookie,
        ifindex: link.peer.ifindex?,
        name: link.peer.name.clone()?,
        veth: true,
    })
}

/// Finds where the end at `from` went: its peer stayed put, and the snapshot
/// shows the peer's new peer.
fn moved_to(snapshot: &Snapshot, map: &LiveMap, from: Key) -> Option<Device> {
    let peer = map.peer(from)?;
    pair_in(snapshot, peer)
}
