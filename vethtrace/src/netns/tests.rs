//! Tests of [`discover`] against network namespaces the tests create
//! themselves. They need root (CAP_SYS_ADMIN) and `unshare`, `sh`, `mount`
//! and `sleep` from util-linux and coreutils. Every namespace, mount and
//! process they create is released when its guard drops, also on panic, and
//! mounts are only made inside private mount namespaces of child processes.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, unshare};

use super::procfs::netns_id;
use super::*;

/// How long a test waits for a child process to reach its expected state.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A child process that is killed and reaped when the guard drops.
pub(super) struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    pub(super) fn spawn(command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {command:?} failed: {error}"));
        Self { child }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the child has executed `comm` and `ready` holds, and
    /// panics with the child's stderr if it exits first.
    fn wait_until(&mut self, comm: &str, ready: impl Fn(u32) -> bool) {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let pid = self.pid();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                let mut stderr = String::new();
                if let Some(pipe) = self.child.stderr.as_mut() {
                    pipe.read_to_string(&mut stderr).ok();
                }
                panic!("child {pid} exited with {status} during setup: {stderr}");
            }
            let current = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if current.trim_end() == comm && ready(pid) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child {pid} not ready within {SETUP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A thread of the test process that moved into a new netns with
/// unshare(2). The netns lives until the thread exits, which happens when
/// the guard drops.
struct NetnsThread {
    tid: u32,
    id: NetnsId,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl NetnsThread {
    fn spawn() -> Self {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let result = unshare(CloneFlags::CLONE_NEWNET)
                .map(|()| (nix::unistd::gettid().as_raw() as u32, thread_netns()));
            ready_tx.send(result).expect("send thread netns");
            stop_rx.recv().ok();
        });
        let mut thread = Self {
            tid: 0,
            id: NetnsId { dev: 0, inode: 0 },
            stop: Some(stop_tx),
            handle: Some(handle),
        };
        let (tid, id) = ready_rx
            .recv()
            .expect("netns thread started")
            .expect("unshare(CLONE_NEWNET) in a thread");
        thread.tid = tid;
        thread.id = id;
        thread
    }
}

impl Drop for NetnsThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            handle.join().ok();
        }
    }
}

/// Runs `make` in a short-lived thread that first moves into a new netns,
/// and returns what it made. Once the thread has exited, the netns lives
/// only as long as the returned value references it.
fn in_new_netns<T: Send + 'static>(make: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) in a thread");
        make()
    })
    .join()
    .expect("netns thread panicked")
}

fn thread_netns() -> NetnsId {
    stat_netns("/proc/thread-self/ns/net")
}

fn stat_netns(path: &str) -> NetnsId {
    let stat =
        nix::sys::stat::stat(path).unwrap_or_else(|errno| panic!("stat {path} failed: {errno}"));
    netns_id(&stat)
}

fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .expect("read /proc/self/comm")
        .trim_end()
        .to_owned()
}

fn discover_all(sockets: bool) -> Discovery {
    let options = DiscoverOptions {
        sockets,
        ..DiscoverOptions::default()
    };
    discover(&options).expect("discover")
}

fn find(discovery: &Discovery, id: NetnsId) -> &Netns {
    discovery
        .namespaces
        .iter()
        .find(|netns| netns.id == id)
        .unwrap_or_else(|| panic!("netns {} not discovered", id.inode))
}

fn file_id(netns: &Netns) -> NetnsId {
    netns_id_of(netns.file.as_fd()).expect("fstat netns file")
}

fn holder(pid: u32, comm: &str, kind: HoldKind, detail: Option<u32>) -> ProcessHolder {
    ProcessHolder {
        pid,
        comm: comm.to_owned(),
        kind,
        detail,
    }
}

#[test]
fn discover_includes_own_netns_sorted() {
    let discovery = discover_all(false);
    assert_eq!(discovery.own, thread_netns());
    let own = find(&discovery, discovery.own);
    assert_eq!(file_id(own), discovery.own);
    let own_pid = std::process::id();
    assert!(
        own.processes
            .iter()
            .any(|holder| holder.pid == own_pid && holder.kind == HoldKind::Process),
        "the test process is a holder of its own netns: {:?}",
        own.processes
    );
    for pair in discovery.namespaces.windows(2) {
        assert!(pair[0].id < pair[1].id, "namespaces sorted and distinct");
    }
    for netns in &discovery.namespaces {
        assert_eq!(file_id(netns), netns.id, "file of netns {}", netns.id.inode);
        let keys: Vec<_> = netns
            .processes
            .iter()
            .map(|h| (h.pid, h.kind, h.detail))
            .collect();
        assert!(
            keys.windows(2).all(|pair| pair[0] < pair[1]),
            "holders sorted: {keys:?}"
        );
    }
}

#[test]
fn discover_finds_unshared_process() {
    let mut child = ChildGuard::spawn(Command::new("unshare").args(["-n", "sleep", "30"]));
    let own = thread_netns();
    child.wait_until("sleep", |pid| {
        stat_netns(&format!("/proc/{pid}/ns/net")) != own
    });
    let id = stat_netns(&format!("/proc/{}/ns/net", child.pid()));

    let discovery = discover_all(false);
    let netns = find(&discovery, id);
    assert_eq!(file_id(netns), id);
    assert!(
        netns
            .processes
            .contains(&holder(child.pid(), "sleep", HoldKind::Process, None)),
        "holders: {:?}",
        netns.processes
    );
    assert!(netns.mounts.is_empty(), "mounts: {:?}", netns.mounts);
    assert!(
        netns.containers.is_empty(),
        "containers: {:?}",
        netns.containers
    );
}

#[test]
fn discover_finds_thread_in_other_netns() {
    let thread = NetnsThread::spawn();
    let discovery = discover_all(false);
    let netns = find(&discovery, thread.id);
    assert_eq!(file_id(netns), thread.id);
    let expected = holder(
        std::process::id(),
        &own_comm(),
        HoldKind::Thread,
        Some(thread.tid),
    );
    assert!(
        netns.processes.contains(&expected),
        "holders: {:?}",
        netns.processes
    );
    assert!(
        !netns
            .processes
            .iter()
            .any(|holder| holder.kind == HoldKind::Process),
        "no process lives in the thread's netns: {:?}",
        netns.processes
    );
}

#[test]
fn discover_finds_netns_held_by_open_file() {
    let file: OwnedFd = in_new_netns(|| {
        std::fs::File::open("/proc/thread-self/ns/net")
            .expect("open netns")
            .into()
    });
    let id = netns_id_of(file.as_fd()).expect("fstat netns file");

    let discovery = discover_all(false);
    let netns = find(&discovery, id);
    assert_eq!(file_id(netns), id);
    let fd = file.as_raw_fd() as u32;
    let expected = holder(
        std::process::id(),
        &own_comm(),
        HoldKind::OpenFile,
        Some(fd),
    );
    assert!(
        netns.processes.contains(&expected),
        "holders: {:?}",
        netns.processes
    );
}

#[test]
fn discover_finds_netns_held_by_socket() {
    let socket = in_new_netns(|| {
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP socket in new netns")
    });
    let id = {
        let netns =
            sockets::open_socket_netns(std::process::id(), socket.as_raw_fd()).expect("SIOCGSKNS");
        netns_id_of(netns.as_fd()).expect("fstat socket netns")
    };
    assert_ne!(id, thread_netns());

    let discovery = discover_all(true);
    let netns = find(&discovery, id);
    assert_eq!(file_id(netns), id);
    let fd = socket.as_raw_fd() as u32;
    let expected = holder(std::process::id(), &own_comm(), HoldKind::Socket, Some(fd));
    assert!(
        netns.processes.contains(&expected),
        "holders: {:?}",
        netns.processes
    );
    // The discovery keeps an nsfs file of the netns open, which another
    // discovery would find as an open-file holder.
    drop(discovery);

    let without_sockets = discover_all(false);
    assert!(
        !without_sockets
            .namespaces
            .iter()
            .any(|netns| netns.id == id),
        "a netns held only by a socket is found only with sockets enabled"
    );
}

/// A netns bind-mounted inside another process's private mount namespace,
/// with no process left in it, at a path with a space that mountinfo
/// escapes as `\040`.
#[test]
fn discover_finds_mount_in_other_mount_ns() {
    let script = r#"
        mount -t tmpfs vtdisc-tmpfs /tmp
        mkdir "/tmp/vtdisc dir"
        touch "/tmp/vtdisc dir/net"
        unshare -n mount --bind /proc/self/ns/net "/tmp/vtdisc dir/net"
        exec sleep 30
    "#;
    let mut child = ChildGuard::spawn(Command::new("unshare").args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-e",
        "-c",
        script,
    ]));
    child.wait_until("sleep", |_| true);
    let pid = child.pid();
    let id = stat_netns(&format!("/proc/{pid}/root/tmp/vtdisc dir/net"));
    let mount_ns = nix::sys::stat::stat(format!("/proc/{pid}/ns/mnt").as_str())
        .expect("stat child mount namespace")
        .st_ino;

    let discovery = discover_all(false);
    let netns = find(&discovery, id);
    assert_eq!(file_id(netns), id);
    let expected = MountHolder {
        path: "/tmp/vtdisc dir/net".to_owned(),
        mount_ns,
        in_own_mount_ns: false,
    };
    assert_eq!(netns.mounts, [expected]);
    assert!(netns.processes.is_empty(), "holders: {:?}", netns.processes);
}

/// Environment variable that lets `own_mount_ns_inner` run; set only by
/// `discover_finds_mount_in_own_mount_ns` for a child in a private mount
/// namespace.
const INNER_ENV: &str = "VTDISC_PRIVATE_MOUNT_NS";

/// Runs `own_mount_ns_inner` in a copy of this test binary that `unshare -m`
/// started in a private mount namespace, so its mounts vanish with it.
#[test]
fn discover_finds_mount_in_own_mount_ns() {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private"])
        .arg(exe)
        .args([
            "--exact",
            "netns::tests::own_mount_ns_inner",
            "--ignored",
            "--test-threads=1",
        ])
        .env(INNER_ENV, "1");
    let output = command.output().expect("run the test binary under unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "inner test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "inner test did not run:\n{stdout}"
    );
}

#[test]
#[ignore = "run by discover_finds_mount_in_own_mount_ns inside a private mount namespace"]
fn own_mount_ns_inner() {
    let parent = nix::unistd::getppid();
    let own_mnt = nix::sys::stat::stat("/proc/self/ns/mnt")
        .expect("stat own mount namespace")
        .st_ino;
    let parent_mnt =
        nix::sys::stat::stat(format!("/proc/{parent}/ns/mnt").as_str()).map(|stat| stat.st_ino);
    if std::env::var_os(INNER_ENV).is_none() {
        eprintln!("{INNER_ENV} is not set, so not mounting anything");
        return;
    }
    assert_ne!(
        parent_mnt,
        Ok(own_mnt),
        "must run in a mount namespace of its own"
    );

    use nix::mount::{MsFlags, mount};
    mount(
        Some("vtdisc-tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount tmpfs on /tmp");
    std::fs::create_dir("/tmp/vtdisc own").expect("create mount point directory");
    std::fs::File::create("/tmp/vtdisc own/net").expect("create mount point file");
    let id = in_new_netns(|| {
        mount(
            Some("/proc/thread-self/ns/net"),
            "/tmp/vtdisc own/net",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind-mount the thread's netns");
        thread_netns()
    });

    let discovery = discover_all(false);
    let netns = find(&discovery, id);
    assert_eq!(file_id(netns), id);
    let expected = MountHolder {
        path: "/tmp/vtdisc own/net".to_owned(),
        mount_ns: own_mnt,
        in_own_mount_ns: true,
    };
    assert_eq!(netns.mounts, [expected]);
    assert!(netns.processes.is_empty(), "holders: {:?}", netns.processes);
}

#[test]
fn discover_missing_proc_root_fails() {
    let options = DiscoverOptions {
        proc_root: "/nonexistent/vtdisc-proc".into(),
        sockets: false,
    };
    let error = discover(&options).expect_err("a missing procfs root is an error");
    assert!(
        matches!(&error, DiscoverError::ReadProc { path, .. } if path == "/nonexistent/vtdisc-proc"),
        "error: {error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent/vtdisc-proc"),
        "message: {message}"
    );
}

/// A pid above the kernel's maximum (`PID_MAX_LIMIT` is 2^22), so it never
/// names a process.
const MISSING_PID: u32 = 1 << 30;

#[test]
fn open_skips_vanished_holder() {
    let mut proc = ProcFs::open("/proc".as_ref()).expect("open /proc");
    let own = thread_netns();
    let found = Found {
        processes: vec![
            holder(MISSING_PID, "gone", HoldKind::Process, None),
            holder(MISSING_PID, "gone", HoldKind::Thread, Some(MISSING_PID)),
            holder(std::process::id(), "self", HoldKind::Process, None),
        ],
        ..Found::default()
    };
    let file = open_netns(&mut proc, own, &found).expect("the third holder opens");
    assert_eq!(netns_id_of(file.as_fd()).expect("fstat"), own);
}

#[test]
fn open_rejects_holder_now_in_other_netns() {
    let mut proc = ProcFs::open("/proc".as_ref()).expect("open /proc");
    let thread = NetnsThread::spawn();
    // The holder claims the test process lives in the thread's netns, as if
    // it had moved since the walk, so the opened file does not match.
    let found = Found {
        processes: vec![holder(std::process::id(), "self", HoldKind::Process, None)],
        ..Found::default()
    };
    assert!(open_netns(&mut proc, thread.id, &found).is_none());

    let none = Found {
        processes: vec![holder(MISSING_PID, "gone", HoldKind::Process, None)],
        ..Found::default()
    };
    assert!(open_netns(&mut proc, thread.id, &none).is_none());
}

#[test]
fn cgroup_file_first_container_line_wins() {
    let id = "4f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
    let text = format!("12:pids:/\n11:memory:/docker/{id}\n0::/\n");
    let container = walk::container_of_cgroup_file(text.as_bytes()).expect("a container");
    assert_eq!(container.runtime, "docker");
    assert_eq!(container.id, id);
    assert_eq!(walk::container_of_cgroup_file(b"0::/init.scope\n"), None);
}

/// Number of namespaces for [`discover_timing_many_namespaces`].
const MANY: usize = 1000;

/// Times discover() with 1000 extra namespaces, each held by one `sleep`.
/// Run with `cargo test -p vethtrace --release discover_timing -- --ignored
/// --nocapture`; it prints the times and asserts only what was found.
#[test]
#[ignore = "starts 1000 processes; run by hand to measure discover()"]
fn discover_timing_many_namespaces() {
    let mut children: Vec<ChildGuard> = (0..MANY)
        .map(|_| ChildGuard::spawn(Command::new("unshare").args(["-n", "sleep", "120"])))
        .collect();
    let own = thread_netns();
    for child in &mut children {
        child.wait_until("sleep", |pid| {
            stat_netns(&format!("/proc/{pid}/ns/net")) != own
        });
    }

    for sockets in [false, true] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let discovery = discover_all(sockets);
            times.push(start.elapsed());
            assert!(
                discovery.namespaces.len() > MANY,
                "found {}",
                discovery.namespaces.len()
            );
        }
        times.sort();
        eprintln!(
            "discover(sockets: {sockets}) over {MANY} namespaces: min {:?}, median {:?}",
            times[0], times[2]
        );
    }
}
