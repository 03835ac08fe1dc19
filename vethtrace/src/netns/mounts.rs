//! Finds nsfs bind mounts of network namespaces in every mount namespace.
//!
//! `ip netns add NAME` keeps a netns alive with a bind mount at
//! `/run/netns/NAME`, and Docker does the same under `EXEC_ROOT/netns/ID`
//! (`/run/docker/netns` by default). Such a mount may exist only inside one
//! container's or service's mount namespace, and then no process lists it.
//! `/proc/PID/mountinfo` shows these mounts with filesystem type `nsfs` and
//! a root of `net:[INODE]`; it is read once per distinct mount namespace.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;

use super::NetnsId;
use super::procfs::{NsKind, ProcFs, bracketed_inode};

/// One nsfs bind mount of a netns, as a line of `mountinfo` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NetnsMount {
    pub(super) id: NetnsId,
    /// The unescaped mount point, as seen from the root of the process
    /// whose `mountinfo` listed it.
    pub(super) mount_point: Vec<u8>,
}

/// The mount namespace and process in which a [`NetnsMount`] was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MountSite {
    /// Inode of the mount namespace.
    pub(super) mount_ns: u64,
    pub(super) in_own_mount_ns: bool,
    /// The process whose `mountinfo` listed the mount, so that
    /// `/proc/PID/root` followed by the mount point opens it.
    pub(super) pid: u32,
}

/// Progress of reading `mountinfo` for one mount namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// A walker thread is reading it now.
    Reading,
    Done,
    /// Every attempt so far failed. A later process in the same mount
    /// namespace gets another try.
    Failed,
}

/// The mount namespaces seen so far during one discovery, shared by the
/// walker threads.
pub(super) struct MountNamespaces {
    own: Option<u64>,
    seen: Mutex<HashMap<u64, Read>>,
}

impl MountNamespaces {
    /// Reads the nsfs mounts of the caller's own mount namespace through
    /// `/proc/thread-self`, so that their mount points are paths the caller
    /// can open as they are, and calls `visit` for each.
    pub(super) fn new(proc: &mut ProcFs, visit: impl FnMut(MountSite, NetnsMount)) -> Self {
        let own = proc
            .own_mount_ns()
            .inspect_err(|errno| log::debug!("stat /proc/thread-self/ns/mnt failed: {errno}"))
            .ok();
        let namespaces = Self {
            own,
            seen: Mutex::new(HashMap::new()),
        };
        if let Some(own) = own {
            namespaces.claim(own);
            let result = proc.read_own("mountinfo");
            namespaces.finish_read(own, std::process::id(), result, visit);
        }
        namespaces
    }

    /// Reads the nsfs mounts of the mount namespace of process `pid` unless
    /// that namespace was already read, and calls `visit` for each netns
    /// mount in it.
    pub(super) fn visit_process(
        &self,
        proc: &mut ProcFs,
        pid: u32,
        visit: impl FnMut(MountSite, NetnsMount),
    ) {
        let mount_ns = match proc.ns_inode(pid, NsKind::Mnt) {
            Ok(inode) => inode,
            Err(errno) => {
                log::debug!("readlink /proc/{pid}/ns/mnt failed: {errno}");
                return;
            }
        };
        if self.claim(mount_ns) {
            let result = proc.read(pid, "mountinfo");
            self.finish_read(mount_ns, pid, result, visit);
        }
    }

    /// Marks `mount_ns` as being read. Returns false if it was read already
    /// or another thread is reading it.
    fn claim(&self, mount_ns: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match seen.get(&mount_ns) {
            Some(Read::Reading | Read::Done) => false,
            Some(Read::Failed) | None => {
                seen.insert(mount_ns, Read::Reading);
                true
            }
        }
    }

    fn finish_read(
        &self,
        mount_ns: u64,
        pid: u32,
        result: Result<&[u8], Errno>,
        mut visit: impl FnMut(MountSite, NetnsMount),
    ) {
        let state = match result {
            Ok(text) => {
                let site = MountSite {
                    mount_ns,
                    in_own_mount_ns: self.own == Some(mount_ns),
                    pid,
                };
                for mount in netns_mounts(text) {
                    visit(site, mount);
                }
                Read::Done
            }
            Err(errno) => {
                log::debug!(
                    "read /proc/{pid}/mountinfo (mount namespace {mount_ns}) failed: {errno}"
                );
                Read::Failed
            }
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.insert(mount_ns, state);
    }

    /// Returns the number of mount namespaces whose `mountinfo` could not
    /// be read from any of their processes.
    pub(super) fn unreadable(&self) -> u64 {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.values().filter(|read| **read == Read::Failed).count() as u64
    }
}

/// Returns every nsfs mount of a netns listed in `mountinfo` text.
pub(super) fn netns_mounts(text: &[u8]) -> impl Iterator<Item = NetnsMount> + '_ {
    text.split(|byte| *byte == b'\n')
        .filter_map(parse_mountinfo_line)
}

/// Parses one `mountinfo` line (proc_pid_mountinfo(5)) and returns the mount
/// if it is an nsfs mount of a netns.
///
/// The fields are: mount ID, parent ID, `MAJOR:MINOR`, root, mount point,
/// mount options, zero or more optional fields, a `-` separator, filesystem
/// type, source and superblock options. For nsfs the root is the namespace,
/// such as `net:[4026532281]`, and `MAJOR:MINOR` is the nsfs device that
/// `stat(2)` on a namespace file reports.
pub(super) fn parse_mountinfo_line(line: &[u8]) -> Option<NetnsMount> {
    let mut fields = line.split(|byte| *byte == b' ');
    let _mount_id = fields.next()?;
    let _parent_id = fields.next()?;
    let device = fields.next()?;
    let root = fields.next()?;
    let mount_point = fields.next()?;
    let _options = fields.next()?;
    let fstype = fields
        .find(|field| *field == b"-")
        .and_then(|_| fields.next())?;
    if fstype != b"nsfs" {
        return None;
    }
    let inode = bracketed_inode(root, b"net:[")?;
    Some(NetnsMount {
        id: NetnsId {
            dev: parse_device(device)?,
            inode,
        },
        mount_point: unescape(mount_point),
    })
}

/// Parses `MAJOR:MINOR` into a `dev_t` value as `stat(2)` returns it.
fn parse_device(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let (major, minor) = text.split_once(':')?;
    Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
}

/// Undoes the octal escapes that the kernel writes into `mountinfo` paths
/// for space, tab, newline and backslash (`\040`, `\011`, `\012`, `\134`).
/// A backslash not followed by three octal digits is kept as it is.
pub(super) fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'\\'
            && let Some(value) = octal_escape(tail)
        {
            out.push(value);
            rest = &tail[3..];
        } else {
            out.push(byte);
            rest = tail;
        }
    }
    out
}

fn octal_escape(digits: &[u8]) -> Option<u8> {
    let digits = digits.get(..3)?;
    if !digits.iter().all(|digit| (b'0'..=b'7').contains(digit)) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nsfs_dev() -> u64 {
        libc::makedev(0, 4)
    }

    #[test]
    fn mountinfo_line_netns_bind_mount() {
        let line = b"512 26 0:4 net:[4026532281] /run/netns/blue rw shared:5 - nsfs nsfs rw";
        let mount = parse_mountinfo_line(line).expect("an nsfs netns mount");
        assert_eq!(
            mount.id,
            NetnsId {
                dev: nsfs_dev(),
                inode: 4026532281
            }
        );
        assert_eq!(mount.mount_point, b"/run/netns/blue");
    }

    #[test]
    fn mountinfo_line_docker_netns_without_optional_fields() {
        let line = b"1043 29 0:4 net:[4026532622] /run/docker/netns/3f1c2a9b8d7e rw - nsfs nsfs rw";
        let mount = parse_mountinfo_line(line).expect("an nsfs netns mount");
        assert_eq!(mount.id.inode, 4026532622);
        assert_eq!(mount.mount_point, b"/run/docker/netns/3f1c2a9b8d7e");
    }

    #[test]
    fn mountinfo_line_several_optional_fields() {
        let line =
            b"77 60 0:4 net:[4026532900] /var/run/netns/x rw,nosuid shared:9 master:3 propagate_from:2 - nsfs nsfs rw";
        let mount = parse_mountinfo_line(line).expect("an nsfs netns mount");
        assert_eq!(mount.id.inode, 4026532900);
        assert_eq!(mount.mount_point, b"/var/run/netns/x");
    }

    #[test]
    fn mountinfo_line_escaped_mount_point() {
        let line =
            br"90 26 0:4 net:[4026533000] /tmp/vtdisc\040dir/tab\011name\134x rw - nsfs nsfs rw";
        let mount = parse_mountinfo_line(line).expect("an nsfs netns mount");
        assert_eq!(mount.mount_point, b"/tmp/vtdisc dir/tab\tname\\x");
    }

    #[test]
    fn mountinfo_line_other_namespace_types_ignored() {
        let mnt = b"91 26 0:4 mnt:[4026531841] /tmp/vtdisc-mnt rw - nsfs nsfs rw";
        let uts = b"92 26 0:4 uts:[4026531838] /tmp/vtdisc-uts rw - nsfs nsfs rw";
        assert_eq!(parse_mountinfo_line(mnt), None);
        assert_eq!(parse_mountinfo_line(uts), None);
    }

    #[test]
    fn mountinfo_line_other_filesystems_ignored() {
        let proc = b"22 27 0:21 / /proc rw,relatime - proc proc rw";
        // A file system whose root happens to look like a netns is not nsfs.
        let fake = b"93 26 0:50 net:[1] /tmp/vtdisc-fake rw - tmpfs tmpfs rw";
        assert_eq!(parse_mountinfo_line(proc), None);
        assert_eq!(parse_mountinfo_line(fake), None);
    }

    #[test]
    fn mountinfo_line_truncated_or_empty() {
        assert_eq!(parse_mountinfo_line(b""), None);
        assert_eq!(
            parse_mountinfo_line(b"512 26 0:4 net:[4026532281] /run/netns/blue rw"),
            None
        );
        assert_eq!(
            parse_mountinfo_line(b"512 26 0:4 net:[4026532281] /run/netns/blue rw -"),
            None
        );
        assert_eq!(
            parse_mountinfo_line(b"512 26 bad net:[4026532281] /run/netns/blue rw - nsfs nsfs rw"),
            None
        );
    }

    #[test]
    fn mountinfo_text_collects_only_netns_mounts() {
        let text = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
512 26 0:4 net:[4026532281] /run/netns/blue rw shared:5 - nsfs nsfs rw\n\
513 26 0:4 net:[4026532282] /run/netns/red rw shared:5 - nsfs nsfs rw\n";
        let mounts: Vec<NetnsMount> = netns_mounts(text).collect();
        let paths: Vec<&[u8]> = mounts
            .iter()
            .map(|mount| mount.mount_point.as_slice())
            .collect();
        assert_eq!(
            paths,
            [b"/run/netns/blue".as_slice(), b"/run/netns/red".as_slice()]
        );
    }

    #[test]
    fn unescape_keeps_incomplete_escapes() {
        assert_eq!(unescape(br"/a\04"), br"/a\04");
        assert_eq!(unescape(br"/a\x41"), br"/a\x41");
        assert_eq!(unescape(br"/a\"), br"/a\");
        assert_eq!(unescape(br"/a\0401"), b"/a 1");
        assert_eq!(unescape(br"/a\777"), br"/a\777");
    }

    #[test]
    fn mountinfo_device_matches_stat_of_namespace_file() {
        let stat = nix::sys::stat::stat("/proc/self/ns/net").expect("stat /proc/self/ns/net");
        let text = std::fs::read("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
        // Round-trip the device of a namespace file through a mountinfo
        // line, then check the real nsfs mounts of this host, if it has any.
        let major = libc::major(stat.st_dev);
        let minor = libc::minor(stat.st_dev);
        let line = format!(
            "1 1 {major}:{minor} net:[{}] /vtdisc rw - nsfs nsfs rw",
            stat.st_ino
        );
        let mount = parse_mountinfo_line(line.as_bytes()).expect("an nsfs netns mount");
        assert_eq!(mount.id.dev, stat.st_dev);
        for mount in netns_mounts(&text) {
            assert_eq!(
                mount.id.dev,
                stat.st_dev,
                "device of {:?}",
                String::from_utf8_lossy(&mount.mount_point)
            );
        }
    }
}
