//! Netns references as users write them, resolved to an nsfs inode.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A netns reference after parsing, before any syscall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsRef {
    /// A name under /run/netns.
    Name(String),
    /// A path to an nsfs file.
    Path(String),
    /// The netns of a process.
    Pid(u32),
    /// An inode number.
    Inode(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsRefError {
    #[error(
        "invalid netns reference {0:?}: use a /run/netns name, a path to an nsfs file, pid:PID, net:[INODE] or an inode number"
    )]
    Invalid(String),
    #[error("netns {reference:?} not found: {path} does not exist or cannot be read ({source}); `ip netns list` shows the names")]
    NotFound {
        reference: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a network namespace file (expected an nsfs file such as /proc/PID/ns/net)")]
    NotNsfs { path: String },
    #[error("{path} is a {kind} namespace, not a network namespace; use /proc/PID/ns/net or a /run/netns name")]
    NotNetns { path: String, kind: &'static str },
}

impl NetnsRef {
    /// Parses a reference without touching the filesystem.
    pub fn parse(text: &str) -> Result<Self, NetnsRefError> {
        let invalid = || NetnsRefError::Invalid(text.to_string());
        if text.is_empty() {
            return Err(invalid());
        }
        if let Some(pid) = text.strip_prefix("pid:") {
            return pid.parse().map(Self::Pid).map_err(|_| invalid());
        }
        if let Some(rest) = text.strip_prefix("net:") {
            let inode = rest.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).ok_or_else(invalid)?;
            return inode.parse().map(Self::Inode).map_err(|_| invalid());
        }
        if text.bytes().all(|byte| byte.is_ascii_digit()) {
            return text.parse().map(Self::Inode).map_err(|_| invalid());
        }
        if text.contains('/') {
            return Ok(Self::Path(text.to_string()));
        }
        if text == "." || text == ".." {
            return Err(invalid());
        }
        Ok(Self::Name(text.to_string()))
    }

    /// Resolves the reference to an nsfs inode.
    pub fn inode(&self, original: &str) -> Result<u64, NetnsRefError> {
        let path = match self {
            Self::Inode(inode) => return Ok(*inode),
            Self::Name(name) => format!("/run/netns/{name}"),
            Self::Path(path) => path.clone(),
            Self::Pid(pid) => format!("/proc/{pid}/ns/net"),
        };
        let metadata = std::fs::metadata(Path::new(&path)).map_err(|source| NetnsRefError::NotFound {
            reference: original.to_string(),
            path: path.clone(),
            source,
        })?;
        if !is_nsfs(&path) {
            return Err(NetnsRefError::NotNsfs { path });
        }
        if let Some(kind) = namespace_kind(&path)
            && kind != "network"
        {
            return Err(NetnsRefError::NotNetns { path, kind });
        }
        Ok(metadata.ino())
    }
}

/// Whether `path` lives on nsfs (NSFS_MAGIC).
fn is_nsfs(path: &str) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|stat| stat.filesystem_type().0 == NSFS_MAGIC)
}

/// The kind of namespace an nsfs file refers to, from the NS_GET_NSTYPE
/// ioctl (Linux 4.11+); `None` when it cannot be asked.
fn namespace_kind(path: &str) -> Option<&'static str> {
    use std::os::fd::AsRawFd;
    /// `_IO(0xb7, 0x3)` from `<linux/nsfs.h>`.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: the fd is valid while `file` lives, and NS_GET_NSTYPE takes
    // no argument.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    Some(match kind {
        libc::CLONE_NEWNET => "network",
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWPID => "PID",
        libc::CLONE_NEWUTS => "UTS",
        libc::CLONE_NEWIPC => "IPC",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWTIME => "time",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_every_form() {
        assert_eq!(NetnsRef::parse("c1").unwrap(), NetnsRef::Name("c1".into()));
        assert_eq!(NetnsRef::parse("/run/netns/c1").unwrap(), NetnsRef::Path("/run/netns/c1".into()));
        assert_eq!(NetnsRef::parse("pid:42").unwrap(), NetnsRef::Pid(42));
        assert_eq!(NetnsRef::parse("net:[4026531840]").unwrap(), NetnsRef::Inode(4026531840));
        assert_eq!(NetnsRef::parse("4026531840").unwrap(), NetnsRef::Inode(4026531840));
    }

    #[test]
    fn parse_rejects_malformed() {
        for text in ["", "pid:", "pid:x", "net:[12", "net:[x]", "..", "99999999999999999999999"] {
            assert!(NetnsRef::parse(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn inode_of_missing_name_names_it() {
        let reference = NetnsRef::parse("vtref-missing").unwrap();
        let error = reference.inode("vtref-missing").unwrap_err().to_string();
        assert!(error.contains("/run/netns/vtref-missing"), "{error}");
    }

    #[test]
    fn inode_rejects_mount_namespace() {
        let reference = NetnsRef::parse("/proc/self/ns/mnt").unwrap();
        let error = reference.inode("/proc/self/ns/mnt").unwrap_err().to_string();
        assert!(error.contains("is a mount namespace, not a network namespace"), "{error}");
    }

    #[test]
    fn inode_rejects_regular_file() {
        let reference = NetnsRef::parse("/etc/hostname").unwrap();
        assert!(matches!(reference.inode("/etc/hostname"), Err(NetnsRefError::NotNsfs { .. })));
    }
}
