//! Turns the kernel's raw events into [`Change`]s.
//!
//! The kernel reports the halves of an operation: a netns move is
//! MoveStart, Unlisted (old netns), Listed (new netns), MoveEnd, all on the
//! same thread. This module pairs the halves per thread, so that an
//! Unlisted inside a move is not mistaken for a deletion.

use std::collections::HashMap;

use vethtrace_common::{DeviceRef, Event, EventKind};

use super::event::Actor;
use super::state::{Change, Device, Key, Observation};
use super::time::BootClock;

/// A move in progress on one thread.
#[derive(Clone, Debug)]
struct PendingMove {
    from: Key,
    to: Option<Device>,
}

/// Per-thread state for pairing the halves of moves.
#[derive(Default)]
pub struct EbpfNormalizer {
    moves: HashMap<u32, PendingMove>,
    clock: Option<BootClock>,
}

impl EbpfNormalizer {
    pub fn new(clock: BootClock) -> Self {
        Self {
            moves: HashMap::new(),
            clock: Some(clock),
        }
    }

    /// Converts one raw event; returns `None` for events that only feed a
    /// pending move or that carry nothing to apply.
    pub fn normalize(&mut self, event: &Event) -> Option<Observation> {
        let header = &event.header;
        let kind = EventKind::from_raw(header.kind)?;
        let tid = header.tid;
        let veth = event.is_veth != 0;
        let change = match kind {
            EventKind::MoveStart => {
                self.moves.insert(
                    tid,
                    PendingMove {
                        from: key_of(&event.dev),
                        to: None,
                    },
                );
                return None;
            }
            EventKind::Unlisted if self.moves.contains_key(&tid) => return None,
            EventKind::Listed if self.moves.contains_key(&tid) => {
                if let Some(pending) = self.moves.get_mut(&tid) {
                    pending.to = Some(device_of(&event.dev, veth));
                }
                return None;
            }
            EventKind::MoveEnd => {
                let pending = self.moves.remove(&tid)?;
                if event.value != 0 {
                    log::debug!("netns move of {:?} failed with {}", pending.from, event.value);
                    return None;
                }
                let to = pending.to.unwrap_or_else(|| device_of(&event.dev, veth));
                Change::Moved { from: pending.from, to }
            }
            EventKind::Listed => Change::Listed {
                device: device_of(&event.dev, veth),
                peer: None,
            },
            EventKind::Unlisted => Change::Deleted {
                key: key_of(&event.dev),
            },
            EventKind::VethPair => Change::Paired {
                a: device_of(&event.dev, true),
                b: device_of(&event.other, true),
            },
            EventKind::Renamed => {
                if event.value != 0 {
                    return None;
                }
                Change::Renamed {
                    device: device_of(&event.dev, veth),
                    old_name: name_of(&event.other.name),
                }
            }
        };
        let time = match &self.clock {
            Some(clock) => clock.format_boot_ns(header.boot_ns),
            None => header.boot_ns.to_string(),
        };
        Some(Observation {
            change,
            time,
            actor: Some(actor_of(event)),
        })
    }
}

fn key_of(device: &DeviceRef) -> Key {
    (u64::from(device.netns_inode), device.ifindex as u32)
}

fn device_of(device: &DeviceRef, veth: bool) -> Device {
    Device {
        netns: u64::from(device.netns_inode),
        cookie: (device.netns_cookie != 0).then_some(device.netns_cookie),
        ifindex: device.ifindex as u32,
        name: name_of(&device.name),
        veth,
    }
}

fn name_of(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&byte| byte == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn actor_of(event: &Event) -> Actor {
    let header = &event.header;
    Actor {
        pid: header.tgid,
        tid: header.tid,
        comm: name_of(&header.comm),
        uid: header.uid,
        cgroup: header.cgroup_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vethtrace_common::{Header, IFNAME_LEN};

    fn reference(inode: u32, ifindex: i32, name: &str) -> DeviceRef {
        let mut bytes = [0u8; IFNAME_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        DeviceRef {
            netns_cookie: u64::from(inode) + 100,
            netns_inode: inode,
            ifindex,
            name: bytes,
        }
    }

    fn raw(kind: EventKind, tid: u32, dev: DeviceRef, other: DeviceRef, value: i64) -> Event {
        Event {
            header: Header {
                kind: kind as u32,
                cpu: 0,
                boot_ns: 1,
                tgid: tid,
                tid,
                uid: 0,
                _pad: 0,
                cgroup_id: 7,
                comm: *b"ip\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            },
            dev,
            other,
            value,
            is_veth: 1,
            _pad: 0,
        }
    }

    #[test]
    fn move_halves_become_one_change() {
        let mut normalizer = EbpfNormalizer::default();
        let old = reference(10, 2, "m1");
        let new = reference(20, 3, "m1");
        let target = DeviceRef { ifindex: 0, ..reference(20, 0, "") };
        assert!(normalizer.normalize(&raw(EventKind::MoveStart, 5, old, target, 0)).is_none());
        assert!(normalizer.normalize(&raw(EventKind::Unlisted, 5, old, DeviceRef::EMPTY, 0)).is_none());
        assert!(normalizer.normalize(&raw(EventKind::Listed, 5, new, DeviceRef::EMPTY, 0)).is_none());
        let observation = normalizer
            .normalize(&raw(EventKind::MoveEnd, 5, new, DeviceRef::EMPTY, 0))
            .expect("a move");
        assert_eq!(
            observation.change,
            Change::Moved {
                from: (10, 2),
                to: device_of(&new, true)
            }
        );
        assert_eq!(observation.actor.as_ref().map(|actor| actor.comm.as_str()), Some("ip"));
    }

    #[test]
    fn unlisted_outside_move_is_deletion() {
        let mut normalizer = EbpfNormalizer::default();
        let observation = normalizer
            .normalize(&raw(EventKind::Unlisted, 9, reference(10, 2, "h1"), DeviceRef::EMPTY, 0))
            .expect("a deletion");
        assert_eq!(observation.change, Change::Deleted { key: (10, 2) });
    }

    #[test]
    fn failed_rename_is_ignored() {
        let mut normalizer = EbpfNormalizer::default();
        let event = raw(EventKind::Renamed, 9, reference(10, 2, "new"), reference(10, 2, "old"), -17);
        assert!(normalizer.normalize(&event).is_none());
    }
}
