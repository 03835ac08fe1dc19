//! Finds network namespaces that only a socket keeps alive.
//!
//! A socket holds a reference to the netns it was created in. A process can
//! create a socket in a netns and leave it (setns(2) back, or the thread that
//! made it exits), and then nothing under `/proc/PID/ns` or in `mountinfo`
//! points at that netns. The socket can be asked: ioctl `SIOCGSKNS` (Linux
//! 4.9) returns a new nsfs file descriptor of the socket's netns. The ioctl
//! needs the socket in the calling process, so pidfd_getfd(2) (Linux 5.6)
//! copies it from its owner, which takes ptrace attach rights over the owner.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::stat::fstat;

use super::NetnsId;
use super::procfs::netns_id_of;

/// Inodes of the sockets already queued by any walker thread, so that a
/// socket shared by several fds or processes is asked once.
pub(super) type SeenSockets = Mutex<HashSet<u64>>;

/// Sockets queued and asked by one walker thread.
pub(super) struct SocketProbe<'a> {
    seen: &'a SeenSockets,
    /// Sockets of the process being scanned, as (fd, socket inode).
    queued: Vec<(RawFd, u64)>,
    /// Set once pidfd_open(2) or pidfd_getfd(2) returned ENOSYS.
    unsupported: bool,
}

/// Failure to get the netns of one socket.
#[derive(Debug)]
enum AskError {
    Call(&'static str, Errno),
    /// The fd number now refers to another file than the socket queued.
    Replaced,
}

impl<'a> SocketProbe<'a> {
    pub(super) fn new(seen: &'a SeenSockets) -> Self {
        Self {
            seen,
            queued: Vec::new(),
            unsupported: false,
        }
    }

    /// Queues the socket with sockfs inode `inode`, open as `fd` in the
    /// process being scanned, unless the same socket was queued before.
    pub(super) fn queue(&mut self, fd: RawFd, inode: u64) {
        let new = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(inode);
        if new {
            self.queued.push((fd, inode));
        }
    }

    /// Gets the netns of each queued socket of process `pid` and calls
    /// `found(fd, netns)` for each. Returns the number of queued sockets
    /// whose netns could not be read, and empties the queue.
    pub(super) fn ask_queued(&mut self, pid: u32, mut found: impl FnMut(RawFd, NetnsId)) -> u64 {
        let queued = std::mem::take(&mut self.queued);
        let failed = self.ask(pid, &queued, &mut found);
        self.queued = queued;
        self.queued.clear();
        failed
    }

    fn ask(
        &mut self,
        pid: u32,
        queued: &[(RawFd, u64)],
        found: &mut impl FnMut(RawFd, NetnsId),
    ) -> u64 {
        if queued.is_empty() {
            return 0;
        }
        if self.unsupported {
            return queued.len() as u64;
        }
        let pidfd = match pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(errno) => {
                self.note_failure(pid, None, &AskError::Call("pidfd_open", errno));
                return queued.len() as u64;
            }
        };
        let mut failed = 0;
        for (index, &(fd, inode)) in queued.iter().enumerate() {
            match ask_one(pidfd.as_fd(), fd, inode) {
                Ok(netns) => found(fd, netns),
                Err(error) => {
                    self.note_failure(pid, Some(fd), &error);
                    if self.unsupported {
                        return failed + (queued.len() - index) as u64;
                    }
                    failed += 1;
                }
            }
        }
        failed
    }

    fn note_failure(&mut self, pid: u32, fd: Option<RawFd>, error: &AskError) {
        if let AskError::Call(call, Errno::ENOSYS) = error {
            log::debug!(
                "{call} is not available (Linux 5.6 or later is needed), so sockets are not asked for their netns"
            );
            self.unsupported = true;
            return;
        }
        match fd {
            Some(fd) => {
                log::debug!("asking socket fd {fd} of pid {pid} for its netns failed: {error:?}")
            }
            None => {
                log::debug!("asking the sockets of pid {pid} for their netns failed: {error:?}")
            }
        }
    }
}

/// Opens the netns of socket `fd` of process `pid` as a new nsfs file.
pub(super) fn open_socket_netns(pid: u32, fd: RawFd) -> Result<OwnedFd, Errno> {
    let pidfd = pidfd_open(pid)?;
    let socket = pidfd_getfd(pidfd.as_fd(), fd)?;
    socket_netns(socket.as_fd())
}

fn ask_one(pidfd: BorrowedFd<'_>, fd: RawFd, inode: u64) -> Result<NetnsId, AskError> {
    let socket = pidfd_getfd(pidfd, fd).map_err(|errno| AskError::Call("pidfd_getfd", errno))?;
    let stat = fstat(socket.as_fd()).map_err(|errno| AskError::Call("fstat", errno))?;
    if stat.st_ino != inode {
        return Err(AskError::Replaced);
    }
    let netns =
        socket_netns(socket.as_fd()).map_err(|errno| AskError::Call("ioctl SIOCGSKNS", errno))?;
    netns_id_of(netns.as_fd()).map_err(|errno| AskError::Call("fstat", errno))
}

fn pidfd_open(pid: u32) -> Result<OwnedFd, Errno> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| Errno::ESRCH)?;
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new file
    // descriptor (with close-on-exec set) or -1, touching no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned_fd_from(fd)
}

fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_getfd takes two descriptor numbers and a flags word and
    // returns a new file descriptor (with close-on-exec set) or -1, touching
    // no memory of ours. `pidfd` stays open for the call.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    owned_fd_from(copy)
}

fn socket_netns(socket: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new nsfs file
    // descriptor (with close-on-exec set) or -1. `socket` stays open for the
    // call.
    let fd = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGSKNS) };
    owned_fd_from(fd.into())
}

fn owned_fd_from(result: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = Errno::result(result)?;
    let fd = RawFd::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor, and nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_queues_each_socket_once() {
        let seen = SeenSockets::default();
        let mut probe = SocketProbe::new(&seen);
        probe.queue(3, 100);
        probe.queue(4, 100);
        probe.queue(5, 101);
        assert_eq!(probe.queued, [(3, 100), (5, 101)]);
    }

    #[test]
    fn socket_of_own_process_reports_own_netns() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
        let inode = fstat(socket.as_fd()).expect("fstat socket").st_ino;
        let own = netns_id_of(
            std::fs::File::open("/proc/thread-self/ns/net")
                .expect("open own netns")
                .as_fd(),
        )
        .expect("fstat own netns");

        let seen = SeenSockets::default();
        let mut probe = SocketProbe::new(&seen);
        probe.queue(socket.as_raw_fd(), inode);
        let mut answers = Vec::new();
        let failed = probe.ask_queued(std::process::id(), |fd, netns| answers.push((fd, netns)));
        assert_eq!(failed, 0, "sockets that could not be asked");
        assert_eq!(answers, [(socket.as_raw_fd(), own)]);
    }

    #[test]
    fn replaced_fd_is_not_attributed() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
        let seen = SeenSockets::default();
        let mut probe = SocketProbe::new(&seen);
        // An inode that is not the socket's, as if the fd had been closed
        // and reused between readlink and pidfd_getfd.
        probe.queue(socket.as_raw_fd(), u64::MAX);
        let mut answers = Vec::new();
        let failed = probe.ask_queued(std::process::id(), |fd, netns| answers.push((fd, netns)));
        assert_eq!(failed, 1);
        assert!(answers.is_empty());
    }
}
