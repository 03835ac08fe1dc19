//! Reads the per-process entries of procfs that show which netns a process,
//! its threads and its open files refer to.
//!
//! Paths are resolved relative to one open procfs directory with the `*at`
//! calls and reused buffers, so the walk allocates little per process.
//! Errors come back as [`Errno`]
//! because the caller only needs to count and log them: processes exit
//! between two calls, and some entries (`/proc/1` in a sandbox) are off
//! limits even to root.

use std::ffi::CStr;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};

use super::NetnsId;

/// Maximum length read from a `/proc/PID/fd/N` link. Only the short
/// `net:[INODE]` and `socket:[INODE]` targets matter, and longer targets
/// are cut at this size and match neither prefix.
const LINK_MAX: usize = 64;

/// Size of the buffer for getdents64(2). glibc's readdir uses 32 KiB too,
/// which fits about a thousand procfs entries per call.
const DIRENTS_SIZE: usize = 32 * 1024;

/// Offset of `d_reclen` and of `d_name` in `struct linux_dirent64`, after
/// the 8-byte `d_ino` and `d_off` and the 2-byte `d_reclen` and 1-byte
/// `d_type`.
const DIRENT_RECLEN: usize = 16;
const DIRENT_NAME: usize = 19;

/// An open procfs root with reusable buffers for paths, directory entries
/// and file contents.
pub(super) struct ProcFs {
    dir: OwnedFd,
    path: Vec<u8>,
    dirents: Vec<u8>,
    numbers: Vec<u32>,
    text: Vec<u8>,
}

/// The namespace types that discovery reads from `/proc/PID/ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NsKind {
    Net,
    Mnt,
}

impl NsKind {
    fn name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Mnt => "mnt",
        }
    }

    fn link_prefix(self) -> &'static [u8] {
        match self {
            NsKind::Net => b"net:[",
            NsKind::Mnt => b"mnt:[",
        }
    }
}

/// The target of a `/proc/PID/fd/N` link, classified for discovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FdTarget {
    /// An nsfs file of a netns, `net:[INODE]`.
    Netns(u64),
    /// A socket, `socket:[INODE]` with the sockfs inode.
    Socket(u64),
    Other,
}

impl ProcFs {
    /// Opens the procfs root directory, normally `/proc`.
    pub(super) fn open(root: &Path) -> Result<Self, Errno> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = nix::fcntl::open(root, flags, Mode::empty())?;
        Ok(Self {
            dir,
            path: Vec::with_capacity(256),
            dirents: vec![0; DIRENTS_SIZE],
            numbers: Vec::new(),
            text: Vec::with_capacity(16 * 1024),
        })
    }

    /// Lists the numeric entries of the procfs root, that is the process ids.
    pub(super) fn pids(&mut self) -> Result<Vec<u32>, Errno> {
        format_path(&mut self.path, format_args!("."));
        drop(self.list_numbers()?);
        Ok(self.numbers.clone())
    }

    /// Fills `self.numbers` with the numeric entry names of the directory
    /// at `self.path`, and returns that directory open.
    fn list_numbers(&mut self) -> Result<OwnedFd, Errno> {
        let path = CStr::from_bytes_until_nul(&self.path).map_err(|_| Errno::EINVAL)?;
        let dir = openat(self.dir.as_fd(), path, dir_flags(), Mode::empty())?;
        self.numbers.clear();
        let numbers = &mut self.numbers;
        for_each_dirent(dir.as_fd(), &mut self.dirents, |name| {
            if let Some(number) = parse_u32(name) {
                numbers.push(number);
            }
        })?;
        Ok(dir)
    }

    /// Opens `/proc/thread-self/ns/net`, the calling thread's netns.
    pub(super) fn open_own_netns(&self) -> Result<OwnedFd, Errno> {
        openat(
            self.dir.as_fd(),
            c"thread-self/ns/net",
            read_flags(),
            Mode::empty(),
        )
    }

    /// Returns the inode of the calling thread's mount namespace.
    pub(super) fn own_mount_ns(&self) -> Result<u64, Errno> {
        let stat = fstatat(self.dir.as_fd(), c"thread-self/ns/mnt", AtFlags::empty())?;
        Ok(stat.st_ino)
    }

    /// Returns the inode of namespace `kind` (`net` or `mnt`) of process
    /// `pid`, from the link `/proc/PID/ns/KIND` -> `KIND:[INODE]`.
    ///
    /// readlink(2) on these links only formats the inode number, while
    /// stat(2) would look up the namespace's nsfs dentry, which costs more.
    pub(super) fn ns_inode(&mut self, pid: u32, kind: NsKind) -> Result<u64, Errno> {
        let name = kind.name();
        let path = format_path(&mut self.path, format_args!("{pid}/ns/{name}"));
        read_ns_link(self.dir.as_fd(), path, kind)
    }

    /// Returns the netns inode of thread `tid` of process `pid`.
    pub(super) fn thread_netns_inode(&mut self, pid: u32, tid: u32) -> Result<u64, Errno> {
        let path = format_path(&mut self.path, format_args!("{pid}/task/{tid}/ns/net"));
        read_ns_link(self.dir.as_fd(), path, NsKind::Net)
    }

    /// Returns whether process `pid` may have more than one thread.
    ///
    /// procfs reports the link count of `/proc/PID/task` as 2 plus the number
    /// of threads (`proc_task_getattr` in fs/proc/base.c), so one stat saves
    /// listing the directory for the common single-threaded process. Any other
    /// count, or a failed stat, returns true so the caller lists the threads.
    pub(super) fn may_have_threads(&mut self, pid: u32) -> bool {
        let path = format_path(&mut self.path, format_args!("{pid}/task"));
        match fstatat(self.dir.as_fd(), path, AtFlags::empty()) {
            Ok(stat) => stat.st_nlink != 3,
            Err(_) => true,
        }
    }

    /// Lists the thread ids in `/proc/PID/task`.
    pub(super) fn threads(&mut self, pid: u32) -> Result<Vec<u32>, Errno> {
        format_path(&mut self.path, format_args!("{pid}/task"));
        drop(self.list_numbers()?);
        Ok(self.numbers.clone())
    }

    /// Reads `/proc/PID/comm` without its trailing newline.
    pub(super) fn comm(&mut self, pid: u32) -> Result<String, Errno> {
        let path = format_path(&mut self.path, format_args!("{pid}/comm"));
        let fd = openat(self.dir.as_fd(), path, read_flags(), Mode::empty())?;
        // comm is at most 15 bytes and a newline for user tasks
        // (TASK_COMM_LEN is 16). Kernel threads can show longer names,
        // which are cut at the buffer size.
        let mut buf = [0u8; 64];
        let len = nix::unistd::read(&fd, &mut buf)?;
        let comm = buf[..len].strip_suffix(b"\n").unwrap_or(&buf[..len]);
        Ok(String::from_utf8_lossy(comm).into_owned())
    }

    /// Reads `/proc/PID/NAME` whole into the reused text buffer.
    pub(super) fn read(&mut self, pid: u32, name: &str) -> Result<&[u8], Errno> {
        format_path(&mut self.path, format_args!("{pid}/{name}"));
        self.read_path_to_text()
    }

    /// Reads `/proc/thread-self/NAME` whole into the reused text buffer.
    pub(super) fn read_own(&mut self, name: &str) -> Result<&[u8], Errno> {
        format_path(&mut self.path, format_args!("thread-self/{name}"));
        self.read_path_to_text()
    }

    fn read_path_to_text(&mut self) -> Result<&[u8], Errno> {
        let path = CStr::from_bytes_until_nul(&self.path).map_err(|_| Errno::EINVAL)?;
        let fd = openat(self.dir.as_fd(), path, read_flags(), Mode::empty())?;
        // A plain read loop, because `read_to_end` on a `File` first calls
        // statx and lseek for the size and position, which procfs reports as 0.
        self.text.clear();
        loop {
            self.text.reserve(4096);
            let spare = self.text.spare_capacity_mut();
            // SAFETY: the kernel writes at most `spare.len()` bytes into the
            // spare capacity, which stays borrowed for the call, and `fd`
            // stays open.
            let len = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
            let len = Errno::result(len)? as usize;
            if len == 0 {
                return Ok(&self.text);
            }
            // SAFETY: read(2) initialized the first `len` bytes of the spare
            // capacity, and `len` is at most its size.
            unsafe { self.text.set_len(self.text.len() + len) };
        }
    }

    /// Calls `visit(fd, target)` for each entry of `/proc/PID/fd`. Returns
    /// the number of entries whose link could not be read.
    ///
    /// `own_file` is set when `pid` is the calling process. Then that fd and
    /// the fd used to list the directory are skipped, because they are
    /// discovery's own.
    pub(super) fn fds(
        &mut self,
        pid: u32,
        own_file: Option<RawFd>,
        mut visit: impl FnMut(RawFd, FdTarget),
    ) -> Result<u64, Errno> {
        format_path(&mut self.path, format_args!("{pid}/fd"));
        // The links are read relative to the open directory, which saves
        // looking up `PID/fd` again for every fd.
        let fd_dir = self.list_numbers()?;
        let fds = std::mem::take(&mut self.numbers);
        let mut unreadable = 0;
        for fd in fds.iter().map(|fd| *fd as RawFd) {
            if own_file.is_some_and(|own_file| fd == own_file || fd == fd_dir.as_raw_fd()) {
                continue;
            }
            match self.fd_target(fd_dir.as_fd(), fd) {
                Ok(target) => visit(fd, target),
                Err(errno) => {
                    log::debug!("readlink /proc/{pid}/fd/{fd} failed: {errno}");
                    unreadable += 1;
                }
            }
        }
        self.numbers = fds;
        Ok(unreadable)
    }

    fn fd_target(&mut self, fd_dir: BorrowedFd<'_>, fd: RawFd) -> Result<FdTarget, Errno> {
        let path = format_path(&mut self.path, format_args!("{fd}"));
        let mut link = [0u8; LINK_MAX];
        let len = readlinkat(fd_dir, path, &mut link)?;
        Ok(parse_fd_target(&link[..len]))
    }

    /// Opens the nsfs file at `PID/ns/net`, `PID/task/TID/ns/net` or
    /// `PID/fd/N` (relative to the procfs root) for reading.
    pub(super) fn open_relative(&mut self, args: fmt::Arguments) -> Result<OwnedFd, Errno> {
        let path = format_path(&mut self.path, args);
        openat(self.dir.as_fd(), path, read_flags(), Mode::empty())
    }

    /// Opens `PID/root` followed by the absolute `mount_point`, a path
    /// relative to the root directory of process `pid`.
    pub(super) fn open_under_root(
        &mut self,
        pid: u32,
        mount_point: &[u8],
    ) -> Result<OwnedFd, Errno> {
        self.path.clear();
        write!(self.path, "{pid}/root").expect("writing to a Vec cannot fail");
        self.path.extend_from_slice(mount_point);
        self.path.push(0);
        let path = CStr::from_bytes_until_nul(&self.path).map_err(|_| Errno::EINVAL)?;
        openat(self.dir.as_fd(), path, read_flags(), Mode::empty())
    }
}

/// Returns the identity of the namespace behind a stat result.
pub(super) fn netns_id(stat: &FileStat) -> NetnsId {
    NetnsId {
        dev: stat.st_dev,
        inode: stat.st_ino,
    }
}

/// Returns the identity of the namespace file `fd` refers to.
pub(super) fn netns_id_of(fd: BorrowedFd<'_>) -> Result<NetnsId, Errno> {
    fstat(fd).map(|stat| netns_id(&stat))
}

/// Opens an absolute path, such as a mount point in the caller's own mount
/// namespace, for reading.
pub(super) fn open_absolute(path: &[u8]) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(path, read_flags(), Mode::empty())
}

/// Converts an I/O error from `std` back to the errno it carries.
pub(super) fn io_error(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

fn format_path<'a>(buf: &'a mut Vec<u8>, args: fmt::Arguments) -> &'a CStr {
    buf.clear();
    buf.write_fmt(args).expect("writing to a Vec cannot fail");
    buf.push(0);
    // The arguments are numbers and fixed names, so the only NUL is the one
    // pushed above.
    CStr::from_bytes_until_nul(buf).expect("the buffer ends with a NUL")
}

fn read_ns_link(dir: BorrowedFd<'_>, path: &CStr, kind: NsKind) -> Result<u64, Errno> {
    let mut link = [0u8; LINK_MAX];
    let len = readlinkat(dir, path, &mut link)?;
    // Anything but `KIND:[INODE]` would mean procfs changed its format.
    bracketed_inode(&link[..len], kind.link_prefix()).ok_or(Errno::EINVAL)
}

fn readlinkat(dir: BorrowedFd<'_>, path: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `path` is NUL-terminated, and the kernel writes at most
    // `buf.len()` bytes into `buf`, which stays borrowed for the call.
    let len = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            path.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    Errno::result(len).map(|len| len as usize)
}

/// Calls `visit(name)` for each entry of directory `dir`, reading the
/// entries with getdents64(2) into `buf`.
fn for_each_dirent(
    dir: BorrowedFd<'_>,
    buf: &mut [u8],
    mut visit: impl FnMut(&[u8]),
) -> Result<(), Errno> {
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`,
        // which stays borrowed for the call, and `dir` stays open.
        let len = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let len = Errno::result(len)? as usize;
        if len == 0 {
            return Ok(());
        }
        let mut records = &buf[..len];
        while !records.is_empty() {
            let reclen = records
                .get(DIRENT_RECLEN..DIRENT_RECLEN + 2)
                .map(|bytes| usize::from(u16::from_ne_bytes([bytes[0], bytes[1]])))
                .filter(|reclen| (DIRENT_NAME..=records.len()).contains(reclen))
                .ok_or(Errno::EIO)?;
            let name = &records[DIRENT_NAME..reclen];
            let name = name.split(|byte| *byte == 0).next().unwrap_or(name);
            visit(name);
            records = &records[reclen..];
        }
    }
}

fn read_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_CLOEXEC
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// Parses a decimal number such as a pid or fd; `.` and `..` give `None`.
pub(super) fn parse_u32(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Classifies the target of a `/proc/PID/fd/N` link.
pub(super) fn parse_fd_target(link: &[u8]) -> FdTarget {
    if let Some(inode) = bracketed_inode(link, b"net:[") {
        FdTarget::Netns(inode)
    } else if let Some(inode) = bracketed_inode(link, b"socket:[") {
        FdTarget::Socket(inode)
    } else {
        FdTarget::Other
    }
}

/// Parses `PREFIX` followed by a decimal inode and `]`, as in `net:[4026531840]`.
pub(super) fn bracketed_inode(text: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = text.strip_prefix(prefix)?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_target_parses_netns_and_socket_links() {
        assert_eq!(
            parse_fd_target(b"net:[4026531840]"),
            FdTarget::Netns(4026531840)
        );
        assert_eq!(
            parse_fd_target(b"socket:[123456]"),
            FdTarget::Socket(123456)
        );
        assert_eq!(parse_fd_target(b"mnt:[4026531841]"), FdTarget::Other);
        assert_eq!(parse_fd_target(b"/run/netns/net:[1]"), FdTarget::Other);
        assert_eq!(parse_fd_target(b"net:[]"), FdTarget::Other);
        assert_eq!(parse_fd_target(b"net:[12"), FdTarget::Other);
        assert_eq!(parse_fd_target(b"pipe:[99]"), FdTarget::Other);
        assert_eq!(parse_fd_target(b"anon_inode:[eventfd]"), FdTarget::Other);
    }

    #[test]
    fn parse_u32_rejects_dot_entries() {
        assert_eq!(parse_u32(b"1234"), Some(1234));
        assert_eq!(parse_u32(b"."), None);
        assert_eq!(parse_u32(b".."), None);
        assert_eq!(parse_u32(b"self"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"99999999999"), None);
    }

    /// The single-thread shortcut in `may_have_threads` relies on the link
    /// count of `/proc/PID/task`; this checks that count on the running kernel.
    #[test]
    fn task_link_count_is_two_plus_threads() {
        let stat = |path: &str| nix::sys::stat::stat(path).expect("stat task directory");
        let count = || {
            std::fs::read_dir("/proc/self/task")
                .expect("list /proc/self/task")
                .count()
        };

        // A helper thread makes this process multi-threaded for sure. Tests
        // running in parallel add and remove threads, so retry until the
        // thread count is the same before and after the stat.
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || stop_rx.recv().ok());
        let mut matched = None;
        for _ in 0..100 {
            let before = count();
            let nlink = stat("/proc/self/task").st_nlink;
            if before == count() {
                matched = Some((before, nlink));
                if nlink == 2 + before as u64 {
                    break;
                }
            }
        }
        stop_tx.send(()).expect("stop helper thread");
        helper.join().expect("join helper thread");
        let (threads, nlink) = matched.expect("thread count never stable across a stat");
        assert!(
            threads >= 2,
            "expected at least 2 threads, counted {threads}"
        );
        assert_eq!(nlink, 2 + threads as u64, "link count of /proc/self/task");

        let child =
            super::super::tests::ChildGuard::spawn(std::process::Command::new("sleep").arg("30"));
        let single = stat(&format!("/proc/{}/task", child.pid())).st_nlink;
        drop(child);
        assert_eq!(
            single, 3,
            "link count of a single-threaded process's task directory"
        );
    }
}
