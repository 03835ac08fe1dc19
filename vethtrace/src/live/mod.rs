//! `vethtrace watch`: the veth map kept exact as it changes.
//!
//! The stream opens first (eBPF ring buffer or netlink monitor), then a
//! snapshot seeds the [`state::LiveMap`], then the buffered and new changes
//! are applied; changes are idempotent, so the overlap is harmless. The
//! process sleeps on the stream's fd and on signals, with no timer.

pub mod ebpf_source;
pub mod event;
pub mod netlink_source;
pub mod netlink_translate;
pub mod state;
pub mod time;

use std::io::Write;

use tokio::signal::unix::{SignalKind, signal};

use crate::ebpf::{Tracer, TracerOptions};
use crate::error::{Error, error_chain};
use crate::snapshot::model::Snapshot;
use crate::snapshot::{self, SnapshotOptions};
use ebpf_source::EbpfNormalizer;
use event::WatchEvent;
use netlink_source::{Batch, NetlinkMonitor};
use netlink_translate::NetlinkTranslator;
use state::LiveMap;

/// The limits of netlink mode, for the notice printed when it is used.
pub const NETLINK_LIMITS: &str = "actors are unknown, namespaces without an nsid in this netns are not seen, \
     and a move is seen only from the side of the moving link";

/// Options of `watch`.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// Use the netlink monitor even where eBPF works.
    pub netlink: bool,
    /// Ring buffer size in bytes for eBPF mode.
    pub ring_size: Option<u32>,
}

/// Receives every event `watch` produces, in order.
pub trait Sink {
    fn emit(&mut self, event: &WatchEvent, labels: &Labels) -> std::io::Result<()>;
    /// Called after each batch, so lines reach a pipe without delay.
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Short names of namespaces for human output, from the latest snapshot.
#[derive(Default)]
pub struct Labels {
    names: std::collections::HashMap<u64, String>,
    /// Inodes a snapshot was already taken for without finding them (the
    /// netns was gone), so they do not cause another.
    missing: std::collections::HashSet<u64>,
}

impl Labels {
    fn update(&mut self, snapshot: &Snapshot) {
        for netns in &snapshot.netns {
            self.names.insert(netns.inode, netns.label());
        }
    }

    /// Takes a snapshot for labels when `events` name a netns without one,
    /// so a new container's netns shows its name. A failed snapshot only
    /// leaves the inode unlabelled.
    fn learn_new_namespaces(&mut self, events: &[WatchEvent]) {
        let unknown: Vec<u64> = events
            .iter()
            .flat_map(|event| [event.netns, event.peer.as_ref().and_then(|peer| peer.netns)])
            .flatten()
            .filter(|inode| !self.names.contains_key(inode) && !self.missing.contains(inode))
            .collect();
        if unknown.is_empty() {
            return;
        }
        match take_snapshot() {
            Ok(snapshot) => self.update(&snapshot),
            Err(error) => log::debug!("snapshot for netns labels failed: {error}"),
        }
        for inode in unknown {
            if !self.names.contains_key(&inode) {
                self.missing.insert(inode);
            }
        }
    }

    /// Returns the label of a netns inode, if one was seen.
    pub fn get(&self, inode: u64) -> Option<&str> {
        self.names.get(&inode).map(String::as_str)
    }
}

/// Runs `watch` until SIGINT or SIGTERM.
pub async fn watch(options: &WatchOptions, sink: &mut dyn Sink) -> Result<(), Error> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;

    let mut labels = Labels::default();
    let mut source = open_source(options, sink, &labels)?;
    let snapshot = take_snapshot()?;
    labels.update(&snapshot);
    let (mut map, present) = LiveMap::seed(&snapshot, &time::now());
    let mut translator = NetlinkTranslator::new(&snapshot);
    for event in &present {
        sink.emit(event, &labels).map_err(Error::Output)?;
    }
    sink.flush().map_err(Error::Output)?;

    match &mut source {
        Source::Ebpf { tracer, normalizer } => {
            let mut dropped = tracer.dropped();
            loop {
                let events = tokio::select! {
                    _ = interrupt.recv() => return Ok(()),
                    _ = terminate.recv() => return Ok(()),
                    events = tracer.next_events() => events.map_err(Error::Tracer)?,
                };
                let mut batch = Vec::new();
                for raw in &events {
                    if let Some(observation) = normalizer.normalize(raw) {
                        batch.extend(map.apply(&observation));
                    }
                }
                labels.learn_new_namespaces(&batch);
                for event in &batch {
                    sink.emit(event, &labels).map_err(Error::Output)?;
                }
                let now_dropped = tracer.dropped();
                if now_dropped > dropped {
                    let lost = now_dropped - dropped;
                    dropped = now_dropped;
                    resync(&mut map, &mut labels, Some(lost), sink)?;
                }
                sink.flush().map_err(Error::Output)?;
            }
        }
        Source::Netlink(monitor) => loop {
            let batch = tokio::select! {
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                batch = monitor.next_batch() => batch.map_err(Error::Monitor)?,
            };
            match batch {
                Batch::Overrun => {
                    let snapshot = resync(&mut map, &mut labels, None, sink)?;
                    translator.refresh(&snapshot);
                }
                Batch::Notices(notices) => {
                    let fresh = || match take_snapshot() {
                        Ok(snapshot) => Some(snapshot),
                        Err(error) => {
                            log::warn!("snapshot for netlink notifications failed: {error}");
                            None
                        }
                    };
                    let mut last_snapshot = None;
                    let mut take = || {
                        let snapshot = fresh();
                        last_snapshot.clone_from(&snapshot);
                        snapshot
                    };
                    let events = translator.process(&notices, &mut map, &mut take);
                    if let Some(snapshot) = &last_snapshot {
                        labels.update(snapshot);
                    }
                    for event in &events {
                        sink.emit(event, &labels).map_err(Error::Output)?;
                    }
                }
            }
            sink.flush().map_err(Error::Output)?;
        },
    }
}

enum Source {
    Ebpf { tracer: Box<Tracer>, normalizer: EbpfNormalizer },
    Netlink(NetlinkMonitor),
}

/// Starts the eBPF tracer, or the netlink monitor with a notice saying why.
fn open_source(options: &WatchOptions, sink: &mut dyn Sink, labels: &Labels) -> Result<Source, Error> {
    let reason = if options.netlink {
        "netlink mode was requested with --netlink".to_string()
    } else {
        let tracer_options = TracerOptions {
            ring_size: options.ring_size,
            ..TracerOptions::default()
        };
        match Tracer::start(&tracer_options) {
            Ok(tracer) => {
                let mut notice = WatchEvent::new("notice", time::now());
                notice.mode = Some("ebpf".into());
                notice.message = Some(format!("tracing with eBPF on Linux {}", tracer.status().kernel_release));
                sink.emit(&notice, labels).map_err(Error::Output)?;
                return Ok(Source::Ebpf {
                    tracer: Box::new(tracer),
                    normalizer: EbpfNormalizer::new(time::BootClock::new()),
                });
            }
            Err(error) => format!("eBPF tracing is unavailable: {}", tracer_failure(&error)),
        }
    };
    let monitor = NetlinkMonitor::open().map_err(Error::Monitor)?;
    let mut notice = WatchEvent::new("notice", time::now());
    notice.mode = Some("netlink".into());
    notice.message = Some(format!("{reason}; watching netlink notifications instead: {NETLINK_LIMITS}"));
    sink.emit(&notice, labels).map_err(Error::Output)?;
    Ok(Source::Netlink(monitor))
}

fn take_snapshot() -> Result<Snapshot, Error> {
    let options = SnapshotOptions {
        map_current_nsids: true,
        ..SnapshotOptions::default()
    };
    Ok(snapshot::take(&options)?)
}

/// Emits `lost`, takes a fresh snapshot and emits the differences.
fn resync(map: &mut LiveMap, labels: &mut Labels, lost: Option<u64>, sink: &mut dyn Sink) -> Result<Snapshot, Error> {
    let mut event = WatchEvent::new("lost", time::now());
    event.count = lost;
    event.message = Some(match lost {
        Some(count) => format!("{count} kernel events were lost (ring buffer full); resynchronizing from a fresh snapshot"),
        None => "netlink notifications were lost (socket buffer full); resynchronizing from a fresh snapshot".into(),
    });
    sink.emit(&event, labels).map_err(Error::Output)?;
    let snapshot = take_snapshot()?;
    labels.update(&snapshot);
    for event in map.resync(&snapshot, &time::now()) {
        sink.emit(&event, labels).map_err(Error::Output)?;
    }
    Ok(snapshot)
}

/// Summarizes why the tracer failed in one short line: the distinct
/// reasons across hooks (usually the same for all), without the per-hook
/// detail that `vethtrace status` prints.
fn tracer_failure(error: &crate::ebpf::TracerError) -> String {
    let crate::ebpf::TracerError::Unavailable(hooks) = error else {
        return error_chain(error);
    };
    let mut reasons: Vec<String> = Vec::new();
    for problem in hooks.iter().flat_map(|hook| &hook.problems) {
        let (program, detail) = problem.split_once(": ").unwrap_or(("", problem));
        let kind = ["fentry", "fexit", "kretprobe", "kprobe"]
            .into_iter()
            .find(|kind| program.contains(kind))
            .unwrap_or(program);
        let reason = format!("{kind}: {detail}");
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    format!("{} (`vethtrace status` shows each hook)", reasons.join("; "))
}


/// Writes events to any `Write`, as JSON lines or aligned text.
pub struct WriteSink<'a> {
    pub out: &'a mut dyn Write,
    pub json: bool,
    pub color: bool,
}

impl Sink for WriteSink<'_> {
    fn emit(&mut self, event: &WatchEvent, labels: &Labels) -> std::io::Result<()> {
        if self.json {
            crate::output::write_json(self.out, event)
        } else {
            crate::output::watch::write_event(self.out, event, labels, self.color)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
