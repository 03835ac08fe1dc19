//! Loads the eBPF object built from `vethtrace-ebpf`, attaches one program
//! variant per hook, and reads events from its ring buffer.
//!
//! Nothing is pinned: the programs, links and maps live as long as the
//! [`Tracer`] and go away with it. aya raises RLIMIT_MEMLOCK only before
//! Linux 5.11, because later kernels charge BPF memory to the memory cgroup,
//! and it only logs a failure to raise it. A map that then fails to load
//! reports its errno through [`TracerError::Load`].

use std::{fmt, fs};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapData, MapError, PerCpuArray, RingBuf},
};
use serde::Serialize;
use tokio::io::{Interest, unix::AsyncFd};
use vethtrace_common::{EVENT_SIZE, Event, Offsets};

use super::{
    attach::{self, AttachKind, HookStatus, Plan},
    btf::{BtfError, KernelBtf},
};
use crate::error::error_chain;

/// The eBPF object, built by `vethtrace/build.rs` through aya-build.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vethtrace"));

/// Names of the maps and globals in the eBPF object.
const EVENTS: &str = "EVENTS";
const DROPPED: &str = "DROPPED";
const OFFSETS: &str = "OFFSETS";

/// The smallest ring buffer the kernel accepts: one page.
const MIN_RING_SIZE: u32 = 4096;

/// How to start the tracer.
#[derive(Clone, Debug, Default)]
pub struct TracerOptions {
    /// Size of the event ring buffer in bytes, a power of two of at least
    /// 4096; `None` keeps the object's 256 KiB. Each event takes 144 bytes
    /// (136 plus the kernel's 8-byte record header).
    pub ring_size: Option<u32>,
    /// Attach only with this kind, failing hooks it cannot serve; `None`
    /// prefers fentry and falls back to kprobe. For testing both program
    /// variants on one kernel.
    pub only: Option<AttachKind>,
}

/// Whether events come from eBPF, and what each hook attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// `uname -r` of the running kernel.
    pub kernel_release: String,
    /// Whether the tracer can run.
    pub mode: Mode,
    /// Per hook, the attach point or why there is none. Empty when the
    /// tracer failed before choosing (no BTF, object refused).
    pub hooks: Vec<HookStatus>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel: {}", self.kernel_release)?;
        match &self.mode {
            Mode::Ebpf => writeln!(f, "mode: ebpf")?,
            Mode::Unavailable(reason) => writeln!(f, "mode: unavailable: {reason}")?,
        }
        for hook in &self.hooks {
            writeln!(f, "{hook}")?;
        }
        Ok(())
    }
}

/// Whether the tracer can run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every hook attached.
    Ebpf,
    /// The tracer cannot run, and why.
    Unavailable(String),
}

/// An error starting or reading the tracer.
#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    /// The kernel's BTF could not be read or lacks a needed struct member.
    #[error("reading kernel btf for struct offsets")]
    Btf(#[source] BtfError),
    /// aya could not parse the kernel's BTF, which fentry programs load
    /// against.
    #[error("parsing {} with aya", super::btf::VMLINUX_BTF)]
    AyaBtf(#[source] aya::BtfError),
    /// The ring buffer size is not one the kernel accepts.
    #[error("ring buffer size {0} is not a power of two of at least 4096 bytes")]
    RingSize(u32),
    /// Creating the maps or loading the object's BTF failed.
    #[error("loading the ebpf object (maps, btf): {errno}")]
    Load {
        /// The errno, or the error itself when it has none.
        errno: String,
        /// The cause, boxed because aya's error is large.
        #[source]
        source: Box<EbpfError>,
    },
    /// Some hooks found no attach point; each names its failed programs,
    /// calls and errnos.
    #[error("{}", unavailable_reason(.0))]
    Unavailable(Vec<HookStatus>),
    /// A map the programs need is missing from the object.
    #[error("map {0} missing from the ebpf object")]
    MissingMap(&'static str),
    /// A map could not be opened with the expected type.
    #[error("opening map {name}")]
    Map {
        /// The map.
        name: &'static str,
        /// The cause.
        #[source]
        source: MapError,
    },
    /// Registering or waiting on the ring buffer's fd failed.
    #[error("waiting on the {EVENTS} ring buffer fd")]
    Poll(#[source] std::io::Error),
}

/// Describes the hooks that found no attach point, in one line. A hook
/// whose attempts failed exactly as an earlier one's (same steps, calls and
/// errnos, only the program differs) is named without repeating them:
/// "ebpf unavailable for 5 of 5 hooks: list_netdevice: …; kprobe: … |
/// unlist_netdevice, …: the same".
fn unavailable_reason(failed: &[HookStatus]) -> String {
    // A problem without its leading program name, for the comparison.
    fn failure(problem: &str) -> &str {
        problem.split_once(": ").map_or(problem, |(_, rest)| rest)
    }
    let mut groups: Vec<(&HookStatus, Vec<&str>)> = Vec::new();
    for status in failed {
        let same = groups.iter_mut().find(|(first, _)| {
            first.problems.len() == status.problems.len()
                && first
                    .problems
                    .iter()
                    .zip(&status.problems)
                    .all(|(a, b)| failure(a) == failure(b))
        });
        match same {
            Some((_, alike)) => alike.push(status.hook.name()),
            None => groups.push((status, Vec::new())),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(first, alike)| {
            let mut part = format!("{}: {}", first.hook, first.problems.join("; "));
            if !alike.is_empty() {
                part.push_str(&format!(" | {}: the same", alike.join(", ")));
            }
            part
        })
        .collect();
    format!(
        "ebpf unavailable for {} of {} hooks: {}",
        failed.len(),
        attach::Hook::ALL.len(),
        parts.join(" | ")
    )
}

/// The ring buffer, registered with tokio on first use, because
/// registration needs a runtime and [`Tracer::start`] does not.
enum Ring {
    Idle(RingBuf<MapData>),
    Polled(AsyncFd<RingBuf<MapData>>),
    /// Only while moving from `Idle` to `Polled`.
    Moving,
}

/// The attached eBPF programs and their ring buffer. Dropping it detaches
/// and unloads everything.
pub struct Tracer {
    // Fields drop in order: the maps' readers before the object that owns
    // the programs and links.
    ring: Ring,
    dropped: PerCpuArray<MapData, u64>,
    status: Status,
    _ebpf: Ebpf,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Tracer {
    /// Loads the programs with the running kernel's struct offsets and
    /// attaches every hook; fails, naming each failed program, call and
    /// errno, unless every hook attached.
    ///
    /// Needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN), Linux 5.8+
    /// (ring buffer, boot-time clock) and BTF at `/sys/kernel/btf/vmlinux`.
    pub fn start(options: &TracerOptions) -> Result<Self, TracerError> {
        let (mut ebpf, status) = load_and_attach(options)?;
        if let Mode::Unavailable(_) = status.mode {
            let failed = status
                .hooks
                .into_iter()
                .filter(|hook| hook.attached.is_none())
                .collect();
            return Err(TracerError::Unavailable(failed));
        }
        let events = ebpf
            .take_map(EVENTS)
            .ok_or(TracerError::MissingMap(EVENTS))?;
        let events = RingBuf::try_from(events).map_err(|source| TracerError::Map {
            name: EVENTS,
            source,
        })?;
        let dropped = ebpf
            .take_map(DROPPED)
            .ok_or(TracerError::MissingMap(DROPPED))?;
        let dropped = PerCpuArray::try_from(dropped).map_err(|source| TracerError::Map {
            name: DROPPED,
            source,
        })?;
        Ok(Self {
            ring: Ring::Idle(events),
            dropped,
            status,
            _ebpf: ebpf,
        })
    }

    /// Chooses the attach point of every hook as [`Tracer::start`] would,
    /// attaching each for a moment, and detaches everything before
    /// returning. For `vethtrace status`.
    pub fn probe_status() -> Status {
        match load_and_attach(&TracerOptions::default()) {
            Ok((_ebpf, status)) => status,
            Err(error) => Status {
                kernel_release: kernel_release(),
                mode: Mode::Unavailable(error_chain(&error)),
                hooks: Vec::new(),
            },
        }
    }

    /// Returns what the tracer attached to.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Waits until the kernel submits events, then returns all that are
    /// ready, oldest first. Wakes only when the ring buffer's fd is
    /// readable; there is no timer. Must run inside a tokio runtime with IO
    /// enabled. Cancel-safe: an event is removed from the ring only when it
    /// is returned.
    pub async fn next_events(&mut self) -> Result<Vec<Event>, TracerError> {
        let ring = self.polled_ring()?;
        loop {
            let mut guard = ring.readable_mut().await.map_err(TracerError::Poll)?;
            let events = drain(guard.get_inner_mut());
            // Tokio clears readiness only if no wakeup arrived since it was
            // reported, so a record submitted after the drain is not missed.
            guard.clear_ready();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// Events the kernel side lost since the start, over all CPUs: a full
    /// ring buffer, or a kernel read that failed mid-event.
    pub fn dropped(&self) -> u64 {
        match self.dropped.get(&0, 0) {
            Ok(values) => values.iter().sum(),
            Err(error) => {
                log::debug!("reading map {DROPPED}: {error}");
                0
            }
        }
    }

    fn polled_ring(&mut self) -> Result<&mut AsyncFd<RingBuf<MapData>>, TracerError> {
        if matches!(self.ring, Ring::Idle(_)) {
            let Ring::Idle(ring) = std::mem::replace(&mut self.ring, Ring::Moving) else {
                unreachable!("matched just above");
            };
            // SAFETY: the RingBuf owns its map's fd (MapData keeps an OwnedFd)
            // until it is dropped, and as_raw_fd always returns that fd.
            match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
                Ok(ring) => self.ring = Ring::Polled(ring),
                Err(error) => {
                    let (ring, error) = error.into_parts();
                    self.ring = Ring::Idle(ring);
                    return Err(TracerError::Poll(error));
                }
            }
        }
        match &mut self.ring {
            Ring::Polled(ring) => Ok(ring),
            Ring::Idle(_) | Ring::Moving => unreachable!("registered just above"),
        }
    }
}

/// Decodes one ring buffer record, or `None` when its length is not
/// [`EVENT_SIZE`] (an object from another vethtrace version).
pub fn decode_event(bytes: &[u8]) -> Option<Event> {
    if bytes.len() != EVENT_SIZE {
        return None;
    }
    // SAFETY: `bytes` is EVENT_SIZE bytes long. Event is repr(C) with only
    // integer and byte-array fields (it implements aya::Pod), so every bit
    // pattern is valid, and read_unaligned needs no alignment.
    Some(unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() })
}

/// Takes every record the ring buffer holds now.
fn drain(ring: &mut RingBuf<MapData>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        match decode_event(&item) {
            Some(event) => events.push(event),
            None => log::warn!(
                "skipping a {}-byte ring buffer record; events are {EVENT_SIZE} bytes",
                item.len()
            ),
        }
    }
    events
}

/// Loads the object and attaches what it can, and returns a status that
/// lists what attached.
fn load_and_attach(options: &TracerOptions) -> Result<(Ebpf, Status), TracerError> {
    let kernel_release = kernel_release();
    let btf = KernelBtf::load().map_err(TracerError::Btf)?;
    let offsets = btf.offsets().map_err(TracerError::Btf)?;
    log::debug!(
        "kernel {kernel_release}: {offsets:?} (veth module btf: {})",
        btf.veth_module()
    );
    let aya_btf = aya::Btf::from_sys_fs().map_err(TracerError::AyaBtf)?;
    let mut ebpf = load_object(&aya_btf, &offsets, options.ring_size)?;
    let plan = Plan {
        btf: &btf,
        aya_btf: &aya_btf,
        kprobes: attach::kprobes_available(),
        only: options.only,
    };
    let hooks = attach::attach_all(&mut ebpf, &plan);
    let failed: Vec<HookStatus> = hooks
        .iter()
        .filter(|hook| hook.attached.is_none())
        .cloned()
        .collect();
    let mode = if failed.is_empty() {
        Mode::Ebpf
    } else {
        Mode::Unavailable(unavailable_reason(&failed))
    };
    Ok((
        ebpf,
        Status {
            kernel_release,
            mode,
            hooks,
        },
    ))
}

/// Creates the maps, with `offsets` written into the object first.
fn load_object(
    btf: &aya::Btf,
    offsets: &Offsets,
    ring_size: Option<u32>,
) -> Result<Ebpf, TracerError> {
    let mut loader = EbpfLoader::new();
    loader
        .btf(Some(btf))
        .override_global(OFFSETS, offsets, true);
    if let Some(size) = ring_size {
        if !size.is_power_of_two() || size < MIN_RING_SIZE {
            return Err(TracerError::RingSize(size));
        }
        loader.map_max_entries(EVENTS, size);
    }
    loader.load(OBJECT).map_err(|source| TracerError::Load {
        errno: errno_text(&source),
        source: Box::new(source),
    })
}

/// Formats the errno under `error` as "EPERM: Operation not permitted", or
/// returns the error's own message when it carries none.
fn errno_text(error: &EbpfError) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(code) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return nix::errno::Errno::from_raw(code).to_string();
        }
        current = error.source();
    }
    error.to_string()
}


/// Reads the running kernel's release, as `uname -r` prints it.
fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|error| format!("unknown ({error})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_only_whole_events() {
        let mut bytes = vec![0u8; EVENT_SIZE];
        bytes[..4].copy_from_slice(&3u32.to_ne_bytes());
        let event = decode_event(&bytes).unwrap();
        assert_eq!(event.header.kind, 3);
        assert!(decode_event(&bytes[1..]).is_none());
        bytes.push(0);
        assert!(decode_event(&bytes).is_none());
    }

    #[test]
    fn rejects_ring_sizes_the_kernel_refuses() {
        let btf = match aya::Btf::from_sys_fs() {
            Ok(btf) => btf,
            Err(error) => {
                eprintln!("skipped: no kernel btf: {error}");
                return;
            }
        };
        let offsets = Offsets::default();
        for size in [0, 1000, 4097, 2048] {
            assert!(matches!(
                load_object(&btf, &offsets, Some(size)),
                Err(TracerError::RingSize(got)) if got == size
            ));
        }
    }

    /// On a kernel where tracing programs cannot attach (the development
    /// hosts: fentry refused, no kprobes), start must fail with a message
    /// that names the program, the call and the errno, not panic.
    #[test]
    fn start_fails_with_a_named_reason_or_succeeds() {
        match Tracer::start(&TracerOptions::default()) {
            Ok(tracer) => {
                assert_eq!(tracer.status().mode, Mode::Ebpf);
                eprintln!("tracer started here:\n{}", tracer.status());
            }
            Err(error) => {
                let message = error_chain(&error);
                eprintln!("start failed as expected on this kernel: {message}");
                if let TracerError::Unavailable(hooks) = &error {
                    assert!(!hooks.is_empty());
                    assert!(message.contains("_fentry: load"), "{message}");
                }
            }
        }
        let status = Tracer::probe_status();
        eprintln!("{status}");
        assert!(!status.kernel_release.is_empty());
    }
}
