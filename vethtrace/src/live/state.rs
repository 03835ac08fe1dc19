//! The live map of veth ends, seeded from a snapshot and kept exact by
//! applying [`Change`]s from either event source.
//!
//! Changes are idempotent: applying one that the map already reflects
//! produces no event. That is what lets the stream open before the snapshot
//! is taken and replay its buffered changes afterwards without duplicates.

use std::collections::HashMap;

use super::event::{Actor, EndRef, WatchEvent};
use crate::snapshot::model::Snapshot;

/// An interface's key: netns inode and ifindex. The cookie is kept beside
/// it, and a different cookie for a known inode means the inode was reused.
pub type Key = (u64, u32);

/// One network device as a source reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub netns: u64,
    pub cookie: Option<u64>,
    pub ifindex: u32,
    pub name: String,
    pub veth: bool,
}

impl Device {
    pub fn key(&self) -> Key {
        (self.netns, self.ifindex)
    }
}

/// A state change, as both event sources describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A device is present in a netns (registered, or seen in a dump).
    /// `peer` is its veth peer where the source could tell.
    Listed { device: Device, peer: Option<Key> },
    /// Two veth ends are tied to each other.
    Paired { a: Device, b: Device },
    /// A device moved between namespaces.
    Moved { from: Key, to: Device },
    /// A device got a new name.
    Renamed { device: Device, old_name: String },
    /// A device left its netns for good (unregistered).
    Deleted { key: Key },
}

/// A change with its time and actor.
#[derive(Clone, Debug)]
pub struct Observation {
    pub change: Change,
    /// RFC 3339.
    pub time: String,
    pub actor: Option<Actor>,
}

#[derive(Clone, Debug)]
struct Entry {
    device: Device,
    peer: Option<Key>,
}

/// The live map.
#[derive(Default)]
pub struct LiveMap {
    devices: HashMap<Key, Entry>,
    /// Names of deleted ends, so the event for the second end of a deleted
    /// pair can still name the first. Cleared when the key is reused.
    deleted_names: HashMap<Key, String>,
}

impl LiveMap {
    /// Builds the map from a snapshot and returns one `present` event per
    /// veth end.
    pub fn seed(snapshot: &Snapshot, time: &str) -> (Self, Vec<WatchEvent>) {
        let mut map = Self::default();
        for link in &snapshot.links {
            let device = Device {
                netns: link.netns,
                cookie: link.netns_cookie,
                ifindex: link.ifindex,
                name: link.name.clone(),
                veth: true,
            };
            let peer = match (link.peer.netns, link.peer.ifindex) {
                (Some(netns), Some(ifindex)) if link.peer.verified => Some((netns, ifindex)),
                _ => None,
            };
            map.devices.insert(device.key(), Entry { device, peer });
        }
        let mut keys: Vec<Key> = map.devices.keys().copied().collect();
        keys.sort_unstable();
        let events = keys
            .iter()
            .map(|key| map.event_for("present", *key, time, None))
            .collect();
        (map, events)
    }

    /// Replaces the map with a fresh snapshot after lost events, returning
    /// the differences as events: `deleted` for ends that vanished and
    /// `present` for ends that are new or changed.
    pub fn resync(&mut self, snapshot: &Snapshot, time: &str) -> Vec<WatchEvent> {
        let (mut fresh, _) = Self::seed(snapshot, time);
        fresh.deleted_names = std::mem::take(&mut self.deleted_names);
        let mut events = Vec::new();
        let mut old_keys: Vec<Key> = self.devices.keys().copied().collect();
        old_keys.sort_unstable();
        for key in old_keys {
            if !fresh.devices.contains_key(&key) {
                events.push(self.event_for("deleted", key, time, None));
            }
        }
        let mut new_keys: Vec<Key> = fresh.devices.keys().copied().collect();
        new_keys.sort_unstable();
        for key in new_keys {
            let changed = match (self.devices.get(&key), fresh.devices.get(&key)) {
                (Some(old), Some(new)) => old.device.name != new.device.name || old.peer != new.peer,
                _ => true,
            };
            if changed {
                events.push(fresh.event_for("present", key, time, None));
            }
        }
        *self = fresh;
        events
    }

    /// Applies one observation and returns the events it causes (none when
    /// the map already reflects it, or when it concerns no veth).
    pub fn apply(&mut self, observation: &Observation) -> Vec<WatchEvent> {
        let time = observation.time.as_str();
        let actor = observation.actor.clone();
        match &observation.change {
            Change::Listed { device, peer } => self.listed(device, *peer, time, actor),
            Change::Paired { a, b } => self.paired(a, b, time, actor),
            Change::Moved { from, to } => self.moved(*from, to, time, actor),
            Change::Renamed { device, old_name } => self.renamed(device, old_name, time, actor),
            Change::Deleted { key } => self.deleted(*key, time, actor),
        }
    }

    /// Checks whether the map has a device with this key.
    pub fn contains(&self, key: Key) -> bool {
        self.devices.contains_key(&key)
    }

    /// Returns the name of a device, where known.
    pub fn name(&self, key: Key) -> Option<&str> {
        self.devices.get(&key).map(|entry| entry.device.name.as_str())
    }

    /// Returns the peer of a device, where known.
    pub fn peer(&self, key: Key) -> Option<Key> {
        self.devices.get(&key).and_then(|entry| entry.peer)
    }

    /// Returns the number of veth ends in the map.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    fn listed(&mut self, device: &Device, peer: Option<Key>, time: &str, actor: Option<Actor>) -> Vec<WatchEvent> {
        if !device.veth {
            return Vec::new();
        }
        self.forget_reused_netns(device);
        let key = device.key();
        let mut events = Vec::new();
        match self.devices.get_mut(&key) {
            Some(entry) if entry.device.name != device.name => {
                let old_name = std::mem::replace(&mut entry.device.name, device.name.clone());
                events.push(self.renamed_event(key, &old_name, time, actor.clone()));
            }
            Some(_) => {}
            None => {
                self.deleted_names.remove(&key);
                self.devices.insert(
                    key,
                    Entry {
                        device: device.clone(),
                        peer: None,
                    },
                );
            }
        }
        if let Some(peer) = peer
            && self.devices.contains_key(&peer)
        {
            let peer_points_elsewhere = self.devices[&peer].peer.is_some_and(|other| other != key);
            if !peer_points_elsewhere {
                events.extend(self.tie(key, peer, time, actor));
            }
        }
        events
    }

    fn paired(&mut self, a: &Device, b: &Device, time: &str, actor: Option<Actor>) -> Vec<WatchEvent> {
        for device in [a, b] {
            self.forget_reused_netns(device);
            self.deleted_names.remove(&device.key());
            self.devices
                .entry(device.key())
                .and_modify(|entry| entry.device.name.clone_from(&device.name))
                .or_insert_with(|| Entry {
                    device: device.clone(),
                    peer: None,
                });
        }
        self.tie(a.key(), b.key(), time, actor)
    }

    /// Points two ends at each other; returns `pair-created` unless they
    /// already were.
    fn tie(&mut self, a: Key, b: Key, time: &str, actor: Option<Actor>) -> Vec<WatchEvent> {
        let already = self.devices.get(&a).and_then(|entry| entry.peer) == Some(b)
            && self.devices.get(&b).and_then(|entry| entry.peer) == Some(a);
        if already {
            return Vec::new();
        }
        if let Some(entry) = self.devices.get_mut(&a) {
            entry.peer = Some(b);
        }
        if let Some(entry) = self.devices.get_mut(&b) {
            entry.peer = Some(a);
        }
        vec![self.event_for("pair-created", a, time, actor)]
    }

    fn moved(&mut self, from: Key, to: &Device, time: &str, actor: Option<Actor>) -> Vec<WatchEvent> {
        let Some(mut entry) = self.devices.remove(&from) else {
            // Not a veth we know: a move of some other device, or one
            // already applied.
            return Vec::new();
        };
        self.forget_reused_netns(to);
        let old_name = entry.device.name.clone();
        entry.device = Device {
            veth: true,
            ..to.clone()
        };
        let new_key = to.key();
        if let Some(peer) = entry.peer
            && let Some(peer_entry) = self.devices.get_mut(&peer)
        {
            peer_entry.peer = Some(new_key);
        }
        self.deleted_names.remove(&new_key);
        self.devices.insert(new_key, entry);
        let mut event = self.event_for("moved", new_key, time, actor);
        event.from = Some(EndRef {
            netns: Some(from.0),
            ifindex: Some(from.1),
            name: Some(old_name),
        });
        vec![event]
    }

    fn renamed(&mut self, device: &Device, old_name: &str, time: &str, actor: Option<Actor>) -> Vec<WatchEvent> {
        let key = device.key();
        let Some(entry) = self.devices.get_mut(&key) else {
            return Vec::new();
        };
        if entry.device.name == device.name {
            return Vec::new();
        }
        entry.device.name.clone_from(&device.name);
        vec![self.renamed_event(key, old_name, time, actor)]
    }

    fn renamed_event(&self, key: Key, old_name: &str, time: &str, actor: Option<Actor>) -> WatchEvent {
        let mut event = self.event_for("renamed", key, time, actor);
        event.old_name = Some(old_name.to_string());
        event
    }

    fn deleted(&mut self, key: Key, time: &str, actor: Option<Actor>) -> Vec<WatchEvent> {
        if !self.devices.contains_key(&key) {
            return Vec::new();
        }
        let event = self.event_for("deleted", key, time, actor);
        let entry = self.devices.remove(&key).expect("checked above");
        // The peer keeps pointing here: a veth's ends die together, and
        // the peer's own deletion event should still name this end.
        self.deleted_names.insert(key, entry.device.name);
        vec![event]
    }

    /// Drops every device of `device`'s netns inode whose cookie differs:
    /// the kernel reused the inode for a new netns, so they are gone.
    fn forget_reused_netns(&mut self, device: &Device) {
        let Some(cookie) = device.cookie.filter(|cookie| *cookie != 0) else {
            return;
        };
        self.devices.retain(|_, entry| {
            entry.device.netns != device.netns || entry.device.cookie.is_none_or(|known| known == 0 || known == cookie)
        });
    }

    /// Builds an event about the device at `key` with its peer.
    fn event_for(&self, kind: &str, key: Key, time: &str, actor: Option<Actor>) -> WatchEvent {
        let mut event = WatchEvent::new(kind, time.to_string());
        event.actor = actor;
        event.netns = Some(key.0);
        event.ifindex = Some(key.1);
        if let Some(entry) = self.devices.get(&key) {
            event.netns_cookie = entry.device.cookie;
            event.name = Some(entry.device.name.clone());
            event.peer = entry.peer.map(|peer| EndRef {
                netns: Some(peer.0),
                ifindex: Some(peer.1),
                name: match self.devices.get(&peer) {
                    Some(peer) => Some(peer.device.name.clone()),
                    None => self.deleted_names.get(&peer).cloned(),
                },
            });
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(netns: u64, ifindex: u32, name: &str) -> Device {
        Device {
            netns,
            cookie: Some(netns + 1000),
            ifindex,
            name: name.into(),
            veth: true,
        }
    }

    fn observe(change: Change) -> Observation {
        Observation {
            change,
            time: "t".into(),
            actor: None,
        }
    }

    fn kinds(events: &[WatchEvent]) -> Vec<&str> {
        events.iter().map(|event| event.event.as_str()).collect()
    }

    #[test]
    fn pair_then_move_then_rename_then_delete() {
        let mut map = LiveMap::default();
        let h1 = device(1, 2, "h1");
        let m1 = device(2, 2, "m1");

        let events = map.apply(&observe(Change::Paired { a: h1.clone(), b: m1.clone() }));
        assert_eq!(kinds(&events), ["pair-created"]);
        assert_eq!(events[0].peer.as_ref().unwrap().name.as_deref(), Some("m1"));

        let moved_m1 = device(3, 3, "m1");
        let events = map.apply(&observe(Change::Moved { from: (2, 2), to: moved_m1.clone() }));
        assert_eq!(kinds(&events), ["moved"]);
        assert_eq!(events[0].netns, Some(3));
        assert_eq!(events[0].from.as_ref().unwrap().netns, Some(2));
        assert_eq!(events[0].peer.as_ref().unwrap().name.as_deref(), Some("h1"));

        let renamed = Device { name: "net1".into(), ..moved_m1 };
        let events = map.apply(&observe(Change::Renamed { device: renamed, old_name: "m1".into() }));
        assert_eq!(kinds(&events), ["renamed"]);
        assert_eq!(events[0].old_name.as_deref(), Some("m1"));

        // h1's peer now names the moved and renamed end.
        let events = map.apply(&observe(Change::Deleted { key: (1, 2) }));
        assert_eq!(kinds(&events), ["deleted"]);
        let peer = events[0].peer.as_ref().unwrap();
        assert_eq!((peer.netns, peer.ifindex, peer.name.as_deref()), (Some(3), Some(3), Some("net1")));
        assert_eq!(kinds(&map.apply(&observe(Change::Deleted { key: (3, 3) }))), ["deleted"]);
        assert!(map.is_empty());
    }

    #[test]
    fn changes_are_idempotent() {
        let mut map = LiveMap::default();
        let a = device(1, 2, "a");
        let b = device(2, 2, "b");
        let pair = observe(Change::Paired { a: a.clone(), b: b.clone() });
        assert_eq!(map.apply(&pair).len(), 1);
        assert!(map.apply(&pair).is_empty(), "a replayed pairing is not new");
        let listed = observe(Change::Listed { device: a, peer: Some(b.key()) });
        assert!(map.apply(&listed).is_empty(), "a listing of a known end is not new");
        assert!(map.apply(&observe(Change::Deleted { key: (9, 9) })).is_empty());
        assert!(map.apply(&observe(Change::Moved { from: (9, 9), to: device(1, 5, "x") })).is_empty());
    }

    #[test]
    fn listed_ends_pair_when_both_seen() {
        let mut map = LiveMap::default();
        let a = device(1, 5, "h1");
        let b = device(2, 2, "eth0");
        let first = map.apply(&observe(Change::Listed { device: a.clone(), peer: Some(b.key()) }));
        assert!(first.is_empty(), "the peer is not known yet");
        let second = map.apply(&observe(Change::Listed { device: b, peer: Some(a.key()) }));
        assert_eq!(kinds(&second), ["pair-created"]);
    }

    #[test]
    fn reused_inode_drops_stale_ends() {
        let mut map = LiveMap::default();
        map.apply(&observe(Change::Paired { a: device(1, 2, "h1"), b: device(2, 2, "eth0") }));
        let newcomer = Device { cookie: Some(77), ..device(2, 3, "n1") };
        map.apply(&observe(Change::Listed { device: newcomer, peer: None }));
        assert!(!map.contains((2, 2)), "eth0 belonged to the netns that died");
        assert!(map.contains((2, 3)));
    }
}
