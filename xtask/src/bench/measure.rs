//! Runs one command under a time limit and returns its wall time and peak
//! resident set size.
//!
//! std's `Child::wait` reports no resource usage, and the xtask crate does
//! not link the libc crate, so this file declares the few libc calls it
//! needs: waitid(2) to learn that the child exited without reaping it,
//! kill(2) for the time limit, and wait4(2) to reap it with its rusage.

use std::os::raw::{c_int, c_long};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cmd;

/// How a measured command ended.
pub enum Outcome {
    Finished(Finished),
    /// The command ran past the limit and its process group was killed.
    TimedOut,
}

pub struct Finished {
    pub status: ExitStatus,
    /// From spawning the command to its exit.
    pub wall: Duration,
    /// User plus system CPU time of the command and of the children it
    /// waited for. It grows far less than `wall` when other work shares
    /// the CPUs.
    pub cpu: Duration,
    /// `ru_maxrss` of the command as wait4(2) reports it: the largest
    /// resident set of the process and of the children it waited for.
    pub max_rss_kib: u64,
}

/// Runs `command` in a process group of its own, killing the whole group
/// with SIGKILL if it is still running after `limit`.
///
/// The caller sets the command's standard streams; the wall time covers
/// spawning, running and exiting, as a shell's `time` would.
pub fn run(command: &mut Command, limit: Duration) -> anyhow::Result<Outcome> {
    command.process_group(0);
    let start = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("failed to start {}", cmd::display(command)))?;
    let pid = c_int::try_from(child.id()).context("the child's pid does not fit in pid_t")?;

    let (exited, exited_receiver) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if exited_receiver.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: kill has no memory preconditions. The child is not
            // reaped before this thread is joined, so its pid, and with it
            // its process group id, cannot have been reused yet.
            unsafe { kill(-pid, SIGKILL) };
            return true;
        }
        false
    });

    // Wait for the exit but leave the child a zombie, so the watchdog can
    // never signal a reused process group id.
    let waited = wait_for_exit(pid);
    let wall = start.elapsed();
    drop(exited);
    let timed_out = watchdog.join().expect("the watchdog thread does not panic");
    if let Err(error) = waited {
        // SAFETY: as in the watchdog; the child has not been reaped.
        unsafe { kill(-pid, SIGKILL) };
        bail!("waitid for {} failed: {error}", cmd::display(command));
    }

    let mut status: c_int = 0;
    let mut usage = Rusage::default();
    // SAFETY: `status` and `usage` are writable and of the types wait4 expects.
    let reaped = unsafe { wait4(pid, &raw mut status, 0, &raw mut usage) };
    if reaped != pid {
        let error = std::io::Error::last_os_error();
        bail!("wait4 for {} failed: {error}", cmd::display(command));
    }
    drop(child);

    if timed_out {
        return Ok(Outcome::TimedOut);
    }
    Ok(Outcome::Finished(Finished {
        status: ExitStatus::from_raw(status),
        wall,
        cpu: usage.utime.duration() + usage.stime.duration(),
        max_rss_kib: u64::try_from(usage.maxrss).unwrap_or_default(),
    }))
}

/// Blocks until process `pid` exits, without reaping it.
fn wait_for_exit(pid: c_int) -> std::io::Result<()> {
    let id = u32::try_from(pid).expect("child pids are positive");
    // siginfo_t is 128 bytes on Linux; its content is not needed.
    let mut info = [0u64; 16];
    loop {
        // SAFETY: `info` is a writable buffer of siginfo_t's size.
        let result = unsafe { waitid(P_PID, id, info.as_mut_ptr().cast(), WEXITED | WNOWAIT) };
        if result == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

const P_PID: c_int = 1;
const WEXITED: c_int = 4;
const WNOWAIT: c_int = 0x0100_0000;
const SIGKILL: c_int = 9;

/// `struct rusage` from `<sys/resource.h>`: two `struct timeval`, then 14
/// longs, of which `ru_maxrss` (in KiB) is the first. This is glibc's and
/// musl's layout on Linux.
#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    maxrss: c_long,
    rest: [c_long; 13],
}

/// `struct timeval`: seconds and microseconds.
#[repr(C)]
#[derive(Default)]
struct Timeval {
    seconds: c_long,
    microseconds: c_long,
}

impl Timeval {
    fn duration(&self) -> Duration {
        let seconds = u64::try_from(self.seconds).unwrap_or_default();
        let microseconds = u64::try_from(self.microseconds).unwrap_or_default();
        Duration::from_secs(seconds) + Duration::from_micros(microseconds)
    }
}

unsafe extern "C" {
    fn waitid(idtype: c_int, id: u32, infop: *mut std::ffi::c_void, options: c_int) -> c_int;
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, rusage: *mut Rusage) -> c_int;
    fn kill(pid: c_int, signal: c_int) -> c_int;
}
