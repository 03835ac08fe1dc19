//! Starts the eBPF tracer and prints each event as one line, until SIGINT or
//! SIGTERM. A development aid for checking the kernel side in a VM before the
//! `watch` command exists; it prints the tracer status first, then "ready".
//!
//! ```text
//! cargo build --release -p vethtrace --example ebpf_events
//! ebpf_events [--only fentry|kprobe] [--ring-size BYTES] [--start-delay SECONDS]
//! ebpf_events --status
//! ```
//!
//! `--status` prints `Tracer::probe_status()` and exits. `--start-delay`
//! waits that long after "ready" before reading, so that a burst of events
//! can overflow a small ring buffer and exercise the drop counter. The
//! example exits 1, with the error on stderr, when the tracer cannot start.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use tokio::signal::unix::{SignalKind, signal};
use vethtrace::ebpf::{AttachKind, Tracer, TracerOptions};
use vethtrace::error::error_chain;
use vethtrace_common::{DeviceRef, Event, EventKind};

fn main() -> ExitCode {
    env_logger::init();
    if std::env::args().nth(1).as_deref() == Some("--status") {
        print!("{}", Tracer::probe_status());
        return ExitCode::SUCCESS;
    }
    let (options, start_delay) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("ebpf_events: {message}");
            return ExitCode::from(2);
        }
    };
    let mut tracer = match Tracer::start(&options) {
        Ok(tracer) => tracer,
        Err(error) => {
            eprintln!("ebpf_events: {}", error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    print!("{}", tracer.status());
    println!("ready");
    std::thread::sleep(start_delay);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("building a current-thread tokio runtime");
    let result = runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        loop {
            tokio::select! {
                events = tracer.next_events() => {
                    for event in events? {
                        println!("{}", format_event(&event));
                    }
                }
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    println!("dropped: {}", tracer.dropped());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ebpf_events: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<(TracerOptions, Duration), String> {
    let mut options = TracerOptions::default();
    let mut start_delay = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--only" => {
                options.only = Some(match args.next().as_deref() {
                    Some("fentry") => AttachKind::Fentry,
                    Some("kprobe") => AttachKind::Kprobe,
                    other => return Err(format!("--only wants fentry or kprobe, not {other:?}")),
                });
            }
            "--ring-size" => {
                let size = args.next().ok_or("--ring-size wants a byte count")?;
                options.ring_size = Some(
                    size.parse()
                        .map_err(|error| format!("--ring-size {size}: {error}"))?,
                );
            }
            "--start-delay" => {
                let seconds = args
                    .next()
                    .ok_or("--start-delay wants a number of seconds")?;
                start_delay = Duration::from_secs(
                    seconds
                        .parse()
                        .map_err(|error| format!("--start-delay {seconds}: {error}"))?,
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((options, start_delay))
}

/// Formats one event as a line: time since boot, kind, devices and actor.
fn format_event(event: &Event) -> String {
    let header = &event.header;
    let mut line = format!("{:.6} ", header.boot_ns as f64 / 1e9);
    match EventKind::from_raw(header.kind) {
        Some(EventKind::Listed) => write!(line, "listed {}", device(&event.dev)),
        Some(EventKind::Unlisted) => write!(line, "unlisted {}", device(&event.dev)),
        Some(EventKind::VethPair) => write!(
            line,
            "veth-pair {} peer {}",
            device(&event.dev),
            device(&event.other)
        ),
        Some(EventKind::MoveStart) => write!(
            line,
            "move-start {} to netns {}/{} new_ifindex={}",
            device(&event.dev),
            event.other.netns_inode,
            event.other.netns_cookie,
            event.value
        ),
        Some(EventKind::MoveEnd) => {
            write!(line, "move-end {} ret={}", device(&event.dev), event.value)
        }
        Some(EventKind::Renamed) => write!(
            line,
            "renamed {} from {} ret={}",
            device(&event.dev),
            name(&event.other.name),
            event.value
        ),
        None => write!(line, "kind-{}", header.kind),
    }
    .expect("writing to a String");
    let _ = write!(
        line,
        " veth={} by {}[{}/{}] uid={} cgroup={} cpu={}",
        event.is_veth,
        name(&header.comm),
        header.tgid,
        header.tid,
        header.uid,
        header.cgroup_id,
        header.cpu
    );
    line
}

/// "name#ifindex@netns-inode/netns-cookie".
fn device(dev: &DeviceRef) -> String {
    format!(
        "{}#{}@{}/{}",
        name(&dev.name),
        dev.ifindex,
        dev.netns_inode,
        dev.netns_cookie
    )
}

fn name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

